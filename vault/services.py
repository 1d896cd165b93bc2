"""The vault's operations: sign-up with the encrypted profile, the medical record, key rotation
and erasure.

Every read of medical data asks `consent.policy` first and is audited, allowed or denied.
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Case, Count, IntegerField, Q, Subquery, Value, When
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic, Membership, Role, User
from accounts.services import ClientInfo, IssuedToken, session_start, token_issue, user_create
from accounts.sessions import EndReason, sessions_end_all
from audit.models import AuditAction, Outcome
from audit.signals import send_event
from consent import policy
from consent.models import CareRelationship, CareSource, EmergencyAccess
from consent.relatives import contact_for
from consent.services import care_relationship_record
from patterm.errors import Forbidden, InvalidInput, NotFound
from vault import coding, crypto, keys
from vault.bulk import pipelined, rows_read, rows_update, rows_update_sent
from vault.fields import EncryptedTextField, Sealed, is_erased
from vault.models import (
    EmergencyNote,
    ErasureRequest,
    PatientKey,
    PatientProfile,
    RecordEntry,
)

MESSAGE_NOT_A_PATIENT = _("Only patients have a record here.")
MESSAGE_NOT_YOUR_CLINIC = _("You can only write entries for a clinic where you practise.")


# --- Sign-up and profile --------------------------------------------------------------------


@keys.request_key_cache()
@transaction.atomic
def patient_register(
    *,
    email: str,
    password: str,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date,
    client: ClientInfo,
    language: str = "de",
) -> IssuedToken:
    """Create a patient account, their data key and encrypted profile, and a first API token.

    Names and the date of birth never reach the database in plaintext; the audit row names the
    patient only by pseudonym.
    """
    user = _patient_account_create(
        email=email,
        password=password,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=date_of_birth,
        language=language,
    )
    return token_issue(user=user, client=client)


@keys.request_key_cache()
@transaction.atomic
def patient_register_session(
    *,
    request: HttpRequest,
    email: str,
    password: str,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date,
    language: str = "de",
) -> User:
    """Sign-up in the portal: the same account as `patient_register`, then a browser session
    (no API token), audited as a registration and a login."""
    user = _patient_account_create(
        email=email,
        password=password,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=date_of_birth,
        language=language,
    )
    return session_start(request=request, user=user)


def _patient_account_create(
    *,
    email: str,
    password: str,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date,
    language: str,
) -> User:
    user = user_create(
        email=email,
        password=password,
        role=Role.PATIENT,
        personal_names=(first_name, last_name),
        language=language,
    )
    keys.data_key_create(patient_id=user.pk)
    PatientProfile.objects.create(
        patient=user, first_name=first_name, last_name=last_name, date_of_birth=date_of_birth
    )
    send_event(
        action=AuditAction.AUTH_REGISTER,
        actor=user,
        object_type="user",
        object_id=user.pk,
        subject_id=user.pk,
    )
    return user


def patient_profile_get(*, patient: User) -> PatientProfile | None:
    """The patient's profile, with their live data key in the same query: inside a request's
    key cache (`keys.request_key_cache`) reading its values and encrypting new ones of this
    patient (a booking's snapshot) need no key lookup of their own."""
    found = keys.with_live_data_key(
        PatientProfile.objects.filter(patient=patient), patient_id=patient.pk
    )
    profile = found.first()
    if profile is not None:
        keys.data_keys_from_rows([profile])
    return profile


# --- The medical record ---------------------------------------------------------------------


@keys.request_key_cache()
@transaction.atomic
def record_entry_create(
    *,
    actor: User,
    patient: User,
    clinic: Clinic,
    category: str,
    title: str,
    body: str,
    code: str | None = None,
    puts_in_care: bool = True,
) -> RecordEntry:
    """A practitioner writes an entry for a patient, authored by one of their clinics.

    Writing puts the patient in care at that clinic, except under emergency access
    (`puts_in_care=False`): break-glass must not turn into lasting access.
    """
    if not Membership.objects.filter(user=actor, clinic=clinic, role=Role.PRACTITIONER).exists():
        raise Forbidden(MESSAGE_NOT_YOUR_CLINIC, "not_your_clinic")
    if patient.role != Role.PATIENT or not patient.is_active:
        raise NotFound()
    code = (code or "").strip().upper() or None
    if code is not None and (message := coding.code_error(category, code)):
        raise InvalidInput([{"field": "code", "message": message}])
    entry = RecordEntry.objects.create(
        patient=patient,
        clinic=clinic,
        author=actor,
        category=category,
        title=title,
        body=body,
        code=code,
    )
    if puts_in_care:
        care_relationship_record(patient=patient, clinic=clinic, source=CareSource.RECORD_ENTRY)
    send_event(
        action=AuditAction.RECORD_WRITE,
        actor=actor,
        object_type="record_entry",
        object_id=entry.pk,
        subject_id=patient.pk,
        clinic_id=clinic.pk,
        purpose=policy.Purpose.TREATMENT,
        details={"category": category},
    )
    return entry


@dataclass(frozen=True)
class RecordRead:
    """The entries `actor` may see, each with `.basis` set, and how many stayed hidden.

    `granted` is False when no basis applied at all (the reader has no relationship).
    """

    entries: list[RecordEntry]
    hidden_count: int
    granted: bool = True


@keys.request_key_cache()
def record_read(
    *,
    actor: User,
    patient: User,
    purpose: str = policy.Purpose.TREATMENT,
    categories: frozenset[str] | None = None,
) -> RecordRead:
    """Read a patient's record as `actor` sees it, decided by `consent.policy` and audited.

    One query for the visible entries (each annotated with its legal basis, the patient's data
    key a column of it, and the size of the whole record when some of it may be hidden), and
    one audit row: `success` with the bases used, or `denied` when nothing of the record may be
    read. Decryption happens when a title or body is first read, with the key unwrapped once
    for the request.

    No transaction of its own (decision 0023): the reads need none (each is one statement),
    and the audit row, staged last, is then one INSERT that commits itself, durably, before
    anything is returned; inside a caller's transaction it is part of that one.

    `categories`: only the entries of those categories are read (and counted as hidden): a
    FHIR search for one resource type reads that part of the record (the audit row names it).
    """
    grants, acting_clinic_id = policy.grants_and_acting_clinic(
        actor=actor, patient=patient, purpose=purpose
    )
    own_entries = RecordEntry.objects.filter(patient=patient)
    if categories is not None:
        own_entries = own_entries.filter(category__in=sorted(categories))
    entries: list[RecordEntry] = []
    granted_rows = _any_of(grants) if grants else None
    # A grant without conditions (the patient themself, a holder, emergency access) covers the
    # whole record (`_any_of` is then empty): nothing is hidden, so there is nothing to count.
    covers_all = granted_rows is not None and not granted_rows
    if grants:
        visible = keys.with_live_data_key(own_entries.filter(granted_rows), patient_id=patient.pk)
        if not covers_all:  # the record's size, as a column of the same query and snapshot
            visible = visible.annotate(record_size=_count_of(own_entries))
        basis = _first_basis(grants)
        if not isinstance(basis, Value):  # one basis for every row is set below, not selected
            visible = visible.annotate(basis=basis)
        entries = list(visible.select_related("clinic", "author").order_by("-created_at", "pk"))
        if isinstance(basis, Value):
            for entry in entries:
                entry.basis = basis.value
        keys.data_keys_from_rows(entries)  # the key came with the entries: no query of its own
    if covers_all:
        hidden_count = 0
    elif entries:
        hidden_count = entries[0].record_size - len(entries)
    else:  # nothing visible (or no grant at all): all there is stayed hidden
        hidden_count = own_entries.count()
    # Denied too when the grants cover none of the entries there are (a practitioner whose
    # clinics wrote none of them): the reader was refused everything the record holds.
    allowed = bool(grants) and (bool(entries) or hidden_count == 0)
    _read_audit(
        actor=actor,
        allowed=allowed,
        object_type="patient_record",
        subject_id=patient.pk,
        purpose=purpose,
        clinic_id=acting_clinic_id,
        details={
            # The bases that showed something (those of the grants for an empty record).
            "bases": sorted({e.basis for e in entries} or {g.basis for g in grants})
            if allowed
            else [],
            "entries": len(entries),
            "hidden": hidden_count,
            **({"categories": sorted(categories)} if categories is not None else {}),
        },
    )
    return RecordRead(entries=entries, hidden_count=hidden_count, granted=bool(grants))


def _count_of(rows) -> Subquery:
    """`SELECT COUNT(*)` of `rows` as a subquery expression (uncorrelated: computed once)."""
    return Subquery(
        rows.order_by().annotate(one=Value(1)).values("one").annotate(n=Count("*")).values("n"),
        output_field=IntegerField(),
    )


def _read_audit(
    *,
    actor: User,
    allowed: bool,
    object_type: str,
    subject_id: int | None,
    purpose: str,
    details: dict,
    clinic_id: int | None,
    object_id: object = "",
) -> None:
    """The one audit row of a medical read, allowed or denied: in the caller's transaction if
    there is one, else an INSERT that commits itself (decision 0023). `clinic_id`: the clinic
    the actor acts for (`policy.acting_clinic_id`; `grants_and_acting_clinic` brings it)."""
    send_event(
        action=AuditAction.RECORD_READ,
        actor=actor,
        outcome=Outcome.SUCCESS if allowed else Outcome.DENIED,
        object_type=object_type,
        object_id=object_id,
        subject_id=subject_id,
        clinic_id=clinic_id,
        purpose=purpose,
        details=details,
    )


def record_entry_read(
    *,
    actor: User,
    entry_id,
    categories: frozenset[str],
    patient_ids: frozenset[int] | None = None,
    purpose: str = policy.Purpose.TREATMENT,
) -> RecordEntry:
    """One entry by id (the FHIR read API), decided by `consent.policy.decide` and audited.

    `patient_ids`: the patients the caller's token may concern at all (its SMART context);
    an entry of anyone else is refused like one the policy refuses. Refused, missing, or
    not of `categories`: NotFound, so the answer does not tell whether the entry exists. A
    refusal of an existing entry leaves a `denied` row (committed before the refusal is raised).
    """
    entry = _record_entry_decide(
        actor=actor,
        entry_id=entry_id,
        categories=categories,
        patient_ids=patient_ids,
        purpose=purpose,
    )
    if entry is None:
        raise NotFound()
    return entry


@keys.request_key_cache()
def _record_entry_decide(*, actor, entry_id, categories, patient_ids, purpose):
    entry = (
        keys.with_live_data_key(RecordEntry.objects.filter(pk=entry_id, category__in=categories))
        .select_related("clinic", "author", "patient")
        .first()
    )
    if entry is None or not entry.patient.is_active:  # a closed account: as `_patient` does
        return None
    keys.data_keys_from_rows([entry])
    decision = policy.Decision(False, None, "token_context")
    if patient_ids is None or entry.patient_id in patient_ids:
        decision = policy.decide(
            actor=actor,
            patient=entry.patient,
            category=entry.category,
            source_clinic_id=entry.clinic_id,
            purpose=purpose,
        )
    _read_audit(
        actor=actor,
        allowed=decision.allowed,
        object_type="record_entry",
        object_id=entry.pk,
        subject_id=entry.patient_id,
        purpose=purpose,
        clinic_id=policy.acting_clinic_id(actor),
        details={
            "bases": [decision.basis] if decision.allowed else [],
            "entries": int(decision.allowed),
            "hidden": int(not decision.allowed),
            **({} if decision.allowed else {"reason": decision.reason}),
        },
    )
    if not decision.allowed:
        return None
    entry.basis = decision.basis
    return entry


def patient_profile_read(
    *, actor: User, patient: User, purpose: str = policy.Purpose.TREATMENT
) -> PatientProfile | None:
    """A patient's profile (name, birth date) for the FHIR Patient resource: read on any basis
    the consent policy gives `actor` for this patient, audited like a record read (the
    profile is personal data of the record's subject). No basis: NotFound, audited denied."""
    found, acting_clinic_id = policy.grants_and_acting_clinic(
        actor=actor, patient=patient, purpose=purpose
    )
    # Outside a transaction the row commits itself before the refusal is raised (as
    # `record_read`'s: decision 0023).
    _read_audit(
        actor=actor,
        allowed=bool(found),
        object_type="patient_profile",
        subject_id=patient.pk,
        purpose=purpose,
        clinic_id=acting_clinic_id,
        details={"bases": sorted({grant.basis for grant in found})},
    )
    if not found:
        raise NotFound()
    return patient_profile_get(patient=patient)


def _any_of(grants: list[policy.Grant]) -> Q:
    """The rows any of `grants` covers. A grant without conditions covers every row, and must
    not be ORed: `Q(a) | Q()` is `Q(a)` in Django, which would hide what it allows."""
    conditions = [grant.as_q() for grant in grants]
    if not all(conditions):
        return Q()
    condition = conditions[0]
    for other in conditions[1:]:
        condition |= other
    return condition


def _first_basis(grants: list[policy.Grant]):
    """The basis of the first grant covering each row, as one SQL expression."""
    whens = []
    for grant in grants:
        condition = grant.as_q()
        if not condition:  # covers every row: the remaining grants can never apply
            return Case(*whens, default=Value(grant.basis)) if whens else Value(grant.basis)
        whens.append(When(condition, then=Value(grant.basis)))
    return Case(*whens)


def own_record_read(*, patient: User) -> tuple[PatientProfile | None, RecordRead]:
    """A patient reading their own record (GET /api/patient/record)."""
    if patient.role != Role.PATIENT:
        raise Forbidden(MESSAGE_NOT_A_PATIENT, "not_a_patient")
    return patient_profile_get(patient=patient), record_read(actor=patient, patient=patient)


# --- Erasure (crypto-shredding) -------------------------------------------------------------


ERASED_EMAIL_DOMAIN = "erased.invalid"


def patient_is_erased(patient: User) -> bool:
    """Erased: the account is the anonymised one and no live data key is left.

    Not the address alone: anyone may sign up as `someone@erased.invalid`, and their erasure
    must still destroy their key.
    """
    return (
        patient.email == _erased_email(patient)
        and not PatientKey.objects.filter(patient=patient, destroyed_at=None).exists()
    )


def _erased_email(patient: User) -> str:
    return f"erased-{patient.pk}@{ERASED_EMAIL_DOMAIN}"


@transaction.atomic
def erasure_retained_until(*, patient: User) -> datetime.date | None:
    """The date until which an open erasure request must wait (retention), if any lies ahead."""
    open_requests = ErasureRequest.objects.filter(patient=patient, completed_at=None)
    latest = open_requests.order_by("-retain_until").values_list("retain_until", flat=True)
    retain_until = latest.first()
    return retain_until if retain_until and retain_until > timezone.localdate() else None


def patient_erase(*, patient: User, actor: User | None = None) -> bool:
    """Destroy the patient's data key: every value encrypted with it is gone at once.

    The account is anonymised and closed, its tokens revoked; rows stay in place (their
    ciphertexts read as ERASED) so the audit chain and other records keep their references.
    Returns False, changing nothing, when the patient was erased before.
    """
    if patient.role != Role.PATIENT:
        raise NotFound()
    if patient_is_erased(patient):
        return False
    now = timezone.now()
    destroyed = PatientKey.objects.filter(patient=patient, destroyed_at=None).update(
        wrapped_key=None, destroyed_at=now
    )
    keys.forget_cached_keys()
    sessions_end_all(user=patient, actor=actor, reason=EndReason.ACCOUNT_CLOSED, audited=False)
    patient.email = _erased_email(patient)
    patient.first_name = patient.last_name = ""
    patient.is_active = False
    patient.set_unusable_password()
    patient.save()
    ErasureRequest.objects.filter(patient=patient, completed_at=None).update(completed_at=now)
    send_event(
        action=AuditAction.ERASURE_COMPLETE,
        actor=actor,
        object_type="user",
        object_id=patient.pk,
        subject_id=patient.pk,
        details={"keys_destroyed": destroyed},
    )
    return True


# --- Key rotation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKeyRotation:
    target_version: int
    pending: int
    rewrapped: int = 0


def master_key_rotation_pending(*, target_version: int | None = None):
    target = keys.master_key_ring().active_version if target_version is None else target_version
    return PatientKey.objects.filter(destroyed_at=None).exclude(master_key_version=target)


# Passes over the keys at most; a pass only follows one in which a key changed under a batch.
_ROTATION_PASSES = 5


class _KeysChangedUnderTheBatch(Exception):
    """A key of the batch was erased or re-wrapped between its read and the batch's UPDATE."""


def master_key_rotate(
    *,
    batch_size: int = 2000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
    actor: User | None = None,
) -> MasterKeyRotation:
    """Re-wrap every live data key under the active (newest) master key.

    Works in batches, each its own transaction and audit row, so a killed run loses at most one
    batch of work: a rerun picks up what is still on an older version, and a run with nothing
    left changes nothing (not even the audit log). Values are not re-encrypted: only the data
    keys' wrapping changes.

    Each batch's `UPDATE` runs on the server while the next batch is re-wrapped (decision
    0019, fourth round): the next batch is read, without a lock, before the `UPDATE` is sent,
    and the `UPDATE` is a compare-and-set, writing a key only where its row still holds the
    very wrapped key that was unwrapped (and is still live). A batch in which a key was erased,
    or rotated by someone else, in between rolls back whole, its audit row with it, and its
    keys still pending are taken again after the pass.
    """
    target = keys.master_key_ring().active_version
    pending = master_key_rotation_pending(target_version=target)
    total = pending.count()
    if dry_run or total == 0:
        return MasterKeyRotation(target_version=target, pending=total)
    send_event(
        action=AuditAction.KEY_ROTATION_START,
        actor=actor,
        details={"target_version": target, "pending": total},
    )

    def batch_after(last_key: int) -> list[tuple]:
        # Plain tuples, in key order from where the last batch ended (the keys before it are
        # done: no rescan of them per batch).
        return rows_read(
            pending.filter(pk__gt=last_key)
            .order_by("pk")
            .values_list("pk", "patient_id", "master_key_version", "wrapped_key")[:batch_size]
        )

    def rewrapped_rows(batch: list[tuple]) -> list[tuple]:
        # (key id, new version, new wrapped key, the wrapped key it must still have): values
        # as stored, the last one for the compare-and-set.
        return [
            (key_id, target, wrapped, row[3])
            for (key_id, wrapped), row in zip(
                keys.rewrap_many(batch, target=target), batch, strict=True
            )
        ]

    # Each batch commits without waiting for its WAL to reach the disk; the finish row's commit
    # waits, and with it everything before it (decision 0019, fourth round). Only when the
    # batches are transactions of their own: inside a caller's transaction nothing commits.
    commits_without_flush = connection.vendor == "postgresql" and not connection.in_atomic_block
    rewrapped = 0
    for _pass in range(_ROTATION_PASSES):  # another only if a key changed under the last one
        batch = batch_after(0)
        rows = rewrapped_rows(batch) if batch else []
        changed_under_us = 0
        while batch:
            failure = None
            try:
                with transaction.atomic(), pipelined():
                    if commits_without_flush:
                        with connection.cursor() as cursor:
                            cursor.execute("SET LOCAL synchronous_commit TO OFF")
                    # The next batch is read first; then this batch's UPDATE is sent and,
                    # while the server runs it, the next batch is re-wrapped (vault/bulk.py).
                    following = batch_after(batch[-1][0])
                    update = rows_update_sent(
                        PatientKey,
                        ["master_key_version", "wrapped_key"],
                        rows,
                        prepared=True,
                        unchanged=("wrapped_key",),
                    )
                    try:
                        following_rows = rewrapped_rows(following) if following else []
                    except crypto.DecryptionError as error:  # raised once this batch is in
                        following_rows, failure = [], error
                    # The audit row goes with the UPDATE (one round trip for both); should a
                    # key have changed in between, the batch and its row roll back together.
                    send_event(
                        action=AuditAction.KEY_ROTATION_BATCH,
                        actor=actor,
                        details={
                            "target_version": target,
                            "count": len(batch),
                            "first_key": batch[0][0],
                            "last_key": batch[-1][0],
                        },
                    )
                    if update() != len(batch):
                        raise _KeysChangedUnderTheBatch
            except _KeysChangedUnderTheBatch:
                changed_under_us += len(batch)
            else:
                rewrapped += len(batch)
                if on_batch:
                    on_batch(len(batch))
            if failure is not None:
                raise failure
            batch, rows = following, following_rows
        # Keys erased in between are no longer pending; a key rotated by another run is on the
        # target already; the others are read again. Keys that keep changing under every pass
        # (a writer racing each one) are left to a rerun, as after an interrupted run.
        if not changed_under_us:
            break
    send_event(
        action=AuditAction.KEY_ROTATION_FINISH,
        actor=actor,
        details={"target_version": target, "rewrapped": rewrapped},
    )
    return MasterKeyRotation(target_version=target, pending=total, rewrapped=rewrapped)


class MasterKeyInUse(Exception):
    pass


@transaction.atomic
def master_key_retire(*, version: int, actor: User | None = None) -> None:
    """Confirm that no live data key needs `version` any more, so it may leave the setting.

    Refuses while it is the active version or wraps any live data key.
    """
    ring = keys.master_key_ring()
    if version not in ring.keys:
        raise MasterKeyInUse(f"version {version} is not in PATTERM_MASTER_KEYS")
    if version == ring.active_version:
        raise MasterKeyInUse(
            f"version {version} is the active master key: add a newer key first and rotate"
        )
    still_used = PatientKey.objects.filter(destroyed_at=None, master_key_version=version).count()
    if still_used:
        raise MasterKeyInUse(
            f"{still_used} data keys are still wrapped under version {version}: "
            "run rotate_master_key first"
        )
    send_event(action=AuditAction.KEY_MASTER_RETIRE, actor=actor, details={"version": version})


def _encrypted_models():
    """(model, patient field, encrypted fields) for every model holding encrypted values."""
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            yield model, fields[0].patient_field, fields


@keys.request_key_cache()
@transaction.atomic
def patient_key_rotate(*, patient: User, actor: User | None = None) -> int:
    """Re-encrypt every value of one patient under a fresh data key; returns rows rewritten.

    Use after a suspected leak of one patient's key. The old key is destroyed in the same
    transaction, so no value is left under it.
    """
    old_key = PatientKey.objects.select_for_update().filter(patient=patient, destroyed_at=None)
    old = old_key.first()
    if old is None:
        raise NotFound()
    # Every value read as plain tuples and opened under the old key, then the old key goes,
    # and every value is sealed again under the new one: one UPDATE per model (vault/bulk.py).
    plans = []
    for model, patient_field, fields in _encrypted_models():
        stored = model._default_manager.filter(**{patient_field: patient}).values_list(
            "pk", *(field.attname for field in fields)
        )
        plans.append((model, fields, [_row_open(patient.pk, fields, row) for row in stored]))
    PatientKey.objects.filter(pk=old.pk).update(wrapped_key=None, destroyed_at=timezone.now())
    new_key = keys.data_key_create(patient_id=patient.pk)
    rewritten = 0
    for model, fields, rows in plans:
        rows_update(
            model,
            [field.name for field in fields],
            [_row_seal(patient.pk, fields, row_id, values) for row_id, values in rows],
        )
        rewritten += len(rows)
    send_event(
        action=AuditAction.KEY_PATIENT_ROTATE,
        actor=actor,
        object_type="patient_key",
        object_id=new_key.pk,
        subject_id=patient.pk,
        details={"rows": rewritten, "old_key": old.pk},
    )
    return rewritten


def _row_open(patient_id: int, fields, row: tuple) -> tuple:
    """(row id, plaintext per field) of one stored row (plain tuples, no model instance).

    None stays None; a value whose key was destroyed before (it reads as erased) stays the
    envelope it is, to be written back unchanged.
    """
    row_id, *envelopes = row
    values = []
    for field, envelope in zip(fields, envelopes, strict=True):
        if envelope is None:
            values.append(None)
            continue
        try:
            value = field.unseal_for(patient_id, field.row_context(patient_id, row_id), envelope)
        except crypto.DecryptionError as error:
            raise crypto.DecryptionError(
                f"{field.model.__name__}.{field.name} (row {row_id}) cannot be decrypted: {error}"
            ) from error
        values.append(Sealed(envelope) if is_erased(value) else value)
    return row_id, values


def _row_seal(patient_id: int, fields, row_id, values: list) -> tuple:
    """(row id, envelope per field): every plaintext sealed under the patient's current key."""
    return row_id, *(
        value
        if value is None or isinstance(value, Sealed)
        else field.seal_for(patient_id, field.row_context(patient_id, row_id), value)
        for field, value in zip(fields, values, strict=True)
    )


# --- The practitioner's view ----------------------------------------------------------------

MESSAGE_PRACTITIONERS_ONLY = _("Only practitioners read and write medical records.")
MESSAGE_NO_CLINIC_FOR_ENTRY = _(
    "You can write entries only for a patient in care at your clinic or under emergency access."
)


def _patient(patient_id: int) -> User:
    patient = User.objects.filter(pk=patient_id, role=Role.PATIENT, is_active=True).first()
    if patient is None:
        raise NotFound()
    return patient


def record_read_refusal_audit(*, actor: User, patient_id: int | None, reason: str = "role") -> None:
    """A record read refused for the actor's role (or, `reason` "scope", for their token's
    SMART scopes) is audited as denied, like every read."""
    patient = User.objects.filter(pk=patient_id, role=Role.PATIENT).first() if patient_id else None
    _read_audit(  # outside a transaction, committed by itself before the refusal is raised
        actor=actor,
        allowed=False,
        object_type="patient_record",
        subject_id=patient.pk if patient else None,
        purpose=policy.Purpose.TREATMENT,
        clinic_id=policy.acting_clinic_id(actor),
        details={"bases": [], "reason": reason},
    )


def practitioner_record_read(*, actor: User, patient_id: int) -> tuple[User, RecordRead]:
    """A practitioner reads a patient's record as consent allows (audited, allowed or denied).

    Without any basis the patient is "not found": the answer reveals no relationship. Any
    other role is refused before the policy is asked, and that refusal is audited too.
    """
    if actor.role != Role.PRACTITIONER:
        record_read_refusal_audit(actor=actor, patient_id=patient_id)
        raise Forbidden(MESSAGE_PRACTITIONERS_ONLY, "not_a_practitioner")
    patient = _patient(patient_id)
    record = record_read(actor=actor, patient=patient)
    if not record.granted:
        raise NotFound()
    return patient, record


def practitioner_entry_write(
    *, actor: User, patient_id: int, category: str, title: str, body: str, code: str | None = None
) -> RecordEntry:
    """Write an entry authored by the practitioner's clinic where the patient is in care, or
    by the clinic of an active emergency access."""
    patient = _patient(patient_id)
    clinic_ids = Membership.objects.filter(user=actor, role=Role.PRACTITIONER).values_list(
        "clinic_id", flat=True
    )
    care = CareRelationship.objects.filter(patient=patient, clinic_id__in=clinic_ids)
    clinic = Clinic.objects.filter(pk__in=care.values("clinic_id")).order_by("name").first()
    basis = policy.Basis.OWN_CLINIC
    if clinic is None:
        emergency = policy.active_emergency_access(practitioner=actor, patient=patient)
        clinic, basis = (emergency.clinic, policy.Basis.EMERGENCY) if emergency else (None, None)
    if clinic is None:
        raise NotFound(MESSAGE_NO_CLINIC_FOR_ENTRY, "no_care_relationship")
    entry = record_entry_create(
        actor=actor,
        patient=patient,
        clinic=clinic,
        category=category,
        title=title,
        body=body,
        code=code,
        puts_in_care=basis == policy.Basis.OWN_CLINIC,
    )
    entry.basis = basis
    return entry


EMERGENCY_JUSTIFICATION_MIN_LENGTH = 20
EMERGENCY_JUSTIFICATION_MAX_LENGTH = 2000
MESSAGE_JUSTIFICATION_LENGTH = _("Explain the emergency in %(min)s to %(max)s characters.") % {
    "min": EMERGENCY_JUSTIFICATION_MIN_LENGTH,
    "max": EMERGENCY_JUSTIFICATION_MAX_LENGTH,
}


@keys.request_key_cache()
@transaction.atomic
def emergency_access_declare(*, actor: User, patient_id: int, justification: str):
    """Break-glass: the practitioner may read the whole record for a few hours (settings).

    Audited, listed for the clinic admin's review and in the patient's access log, and the
    patient is told by e-mail at once (which clinic, when; no justification, no medical data).
    """
    membership = (
        Membership.objects.filter(user=actor, role=Role.PRACTITIONER)
        .select_related("clinic")
        .order_by("clinic__name")
        .first()
    )
    if membership is None:
        raise Forbidden(MESSAGE_NOT_YOUR_CLINIC, "not_a_practitioner")
    patient = _patient(patient_id)
    length = len(justification.strip())
    if not EMERGENCY_JUSTIFICATION_MIN_LENGTH <= length <= EMERGENCY_JUSTIFICATION_MAX_LENGTH:
        raise InvalidInput(
            [
                {
                    "field": "justification",
                    "message": str(MESSAGE_JUSTIFICATION_LENGTH)
                    % {
                        "min": EMERGENCY_JUSTIFICATION_MIN_LENGTH,
                        "max": EMERGENCY_JUSTIFICATION_MAX_LENGTH,
                    },
                }
            ]
        )
    now = timezone.now()
    access = EmergencyAccess.objects.create(
        practitioner=actor,
        clinic=membership.clinic,
        patient=patient,
        declared_at=now,
        expires_at=now + settings.PATTERM_EMERGENCY_ACCESS_DURATION,
    )
    EmergencyNote.objects.create(
        emergency_access=access, patient=patient, justification=justification
    )
    send_event(
        action=AuditAction.EMERGENCY_DECLARE,
        actor=actor,
        object_type="emergency_access",
        object_id=access.pk,
        subject_id=patient.pk,
        clinic_id=membership.clinic_id,
        purpose=policy.Purpose.TREATMENT,
        details={"expires_at": access.expires_at.isoformat()},
    )
    # A relative has no address of their own: their account holder is told.
    email, clinic = contact_for(patient).email, membership.clinic
    transaction.on_commit(lambda: _emergency_notice(to=email, clinic=clinic, access=access))
    return access


def _emergency_notice(*, to: str, clinic: Clinic, access) -> None:
    context = {
        "clinic": clinic,
        "declared_at": timezone.localtime(access.declared_at),
        "expires_at": timezone.localtime(access.expires_at),
        "access_log_url": settings.PATTERM_PUBLIC_URL.rstrip("/") + "/api/patient/access-log",
    }
    send_mail(
        subject=str(_("Emergency access to your medical record")),
        message=render_to_string("vault/emergency_notice_email.txt", context),
        from_email=None,
        recipient_list=[to],
    )


def emergency_accesses_for_review(*, actor: User):
    """The emergency accesses declared at the clinics `actor` administers, newest first."""
    clinics = Membership.objects.filter(user=actor, role=Role.CLINIC_ADMIN).values("clinic_id")
    return EmergencyAccess.objects.filter(clinic_id__in=clinics).select_related(
        "practitioner", "clinic", "note"
    )


# --- Erasure requests -----------------------------------------------------------------------


def erasure_retention_date(*, patient: User) -> datetime.date:
    """Until when an erasure request filed today keeps the medical record: the legal retention
    period (PATTERM_RECORD_RETENTION_YEARS) after the newest entry; today without entries."""
    last_entry = (
        RecordEntry.objects.filter(patient=patient)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if last_entry is None:
        return timezone.localdate()
    return _years_after(
        timezone.localtime(last_entry).date(), settings.PATTERM_RECORD_RETENTION_YEARS
    )


def erasure_request_file(*, patient: User) -> ErasureRequest:
    """Close the account and file the request; the data stays until the retention duty ends.

    Called by `booking.services.erasure_request`, which also cancels future appointments.
    """
    if patient.role != Role.PATIENT:
        raise Forbidden(MESSAGE_NOT_A_PATIENT, "not_a_patient")
    retain_until = erasure_retention_date(patient=patient)
    request = ErasureRequest.objects.create(patient=patient, retain_until=retain_until)
    User.objects.filter(pk=patient.pk).update(is_active=False)
    # Every browser session and token ends; the erasure.request row below says why.
    sessions_end_all(user=patient, actor=patient, reason=EndReason.ACCOUNT_CLOSED, audited=False)
    send_event(
        action=AuditAction.ERASURE_REQUEST,
        actor=patient,
        object_type="erasure_request",
        object_id=request.pk,
        subject_id=patient.pk,
        details={"retain_until": retain_until.isoformat()},
    )
    return request


def _years_after(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February, in a year without one
        return day.replace(year=day.year + years, day=28)
