"""Relatives (Angehörige, decision 0014): an account holder adds a child or another relative,
who becomes a patient of their own (data key, encrypted profile, record, consents, access log)
without a login. The holder acts for them on the `holder` basis of `consent.policy`; every such
action is audited with the holder as actor and the relative as subject.

From PATTERM_RELATIVE_OWN_ACCOUNT_AGE the holder may invite the relative to take over: a signed
link that expires, sent to the relative's own address; setting a password there gives the
relative their login and ends the holder's link at once (the next request of any session or
token of the holder finds no basis).
"""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import EmailValidator
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accounts.models import Role, User, normalize_email
from accounts.services import user_create_without_login, user_login_give
from audit.models import AuditAction
from audit.signals import send_event
from consent.models import Relationship, RelativeLink
from consent.relatives import active_links, relative_link_get
from patterm.errors import Conflict, Forbidden, InvalidInput, NotFound
from vault import keys
from vault.insurance import insurance_values_check
from vault.models import PatientProfile
from vault.services import RecordRead, record_read

# Audited actions of this feature (their labels are AuditAction's).
RELATIVE_INVITE = AuditAction.RELATIVE_INVITE
RELATIVE_TAKEOVER = AuditAction.RELATIVE_TAKEOVER

INVITATION_SALT = "patterm.relatives.invitation"
NAME_MAX_LENGTH = 100
EARLIEST_BIRTH = datetime.date(1900, 1, 1)

MESSAGE_ONLY_PATIENTS = _("Only patients with an account of their own manage relatives.")
MESSAGE_NAME_REQUIRED = _("This field is required.")
MESSAGE_NAME_TOO_LONG = _("At most %(max)s characters.")
MESSAGE_CONTROL_CHARACTERS = _("Control characters are not allowed.")
MESSAGE_BIRTH_IN_FUTURE = _("The date of birth lies in the future.")
MESSAGE_BIRTH_TOO_EARLY = _("Please check the year of birth.")
MESSAGE_UNKNOWN_RELATIONSHIP = _("Choose one of the relationships offered.")
MESSAGE_TOO_MANY = _("An account manages at most %(max)s relatives.")
MESSAGE_TOO_YOUNG = _(
    "A relative can take over their record from the age of %(age)s. Until then you manage it."
)
MESSAGE_INVALID_EMAIL = _("Enter a valid e-mail address.")
MESSAGE_EMAIL_TAKEN = _("An account with this e-mail address already exists.")
MESSAGE_INVITATION_INVALID = _("This invitation link is not valid (any more).")
MESSAGE_INVITATION_EXPIRED = _(
    "This invitation has expired. Please ask for a new one from whoever manages your record."
)


@dataclass(frozen=True)
class Relative:
    """One relative as their holder sees them: the link, the decrypted profile and the age."""

    link: RelativeLink
    profile: PatientProfile

    @property
    def id(self) -> int:
        return self.link.relative_id

    @property
    def user(self) -> User:
        return self.link.relative

    @property
    def age(self) -> int:
        return age_on(self.profile.date_of_birth, timezone.localdate())

    @property
    def may_take_over(self) -> bool:
        """Old enough to manage the record alone (the holder is told and may invite)."""
        return self.age >= settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE


def age_on(born: datetime.date, day: datetime.date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _holder_check(holder: User) -> None:
    if holder.role != Role.PATIENT or not holder.is_active:
        raise Forbidden(MESSAGE_ONLY_PATIENTS, "not_a_patient")
    if RelativeLink.objects.filter(relative=holder, ended_at__isnull=True).exists():
        raise Forbidden(MESSAGE_ONLY_PATIENTS, "not_a_patient")


def _validated(*, first_name: str, last_name: str, date_of_birth, relationship: str) -> dict:
    errors = []
    names = {"first_name": first_name.strip(), "last_name": last_name.strip()}
    for field, value in names.items():
        if not value:
            errors.append({"field": field, "message": str(MESSAGE_NAME_REQUIRED)})
        elif len(value) > NAME_MAX_LENGTH:
            message = MESSAGE_NAME_TOO_LONG % {"max": NAME_MAX_LENGTH}
            errors.append({"field": field, "message": str(message)})
        elif any(ord(char) < 32 or ord(char) == 127 for char in value):
            errors.append({"field": field, "message": str(MESSAGE_CONTROL_CHARACTERS)})
    if date_of_birth > timezone.localdate():
        errors.append({"field": "date_of_birth", "message": str(MESSAGE_BIRTH_IN_FUTURE)})
    elif date_of_birth < EARLIEST_BIRTH:
        errors.append({"field": "date_of_birth", "message": str(MESSAGE_BIRTH_TOO_EARLY)})
    if relationship not in Relationship.values:
        errors.append({"field": "relationship", "message": str(MESSAGE_UNKNOWN_RELATIONSHIP)})
    if errors:
        raise InvalidInput(errors)
    return names


# --- Adding and listing ---------------------------------------------------------------------


@keys.request_key_cache()
@transaction.atomic
def relative_add(
    *,
    holder: User,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date,
    relationship: str = Relationship.CHILD,
    insurance_type: str | None = None,
    insurer_name: str | None = None,
    insurance_number: str | None = None,
) -> Relative:
    """Add a relative: a patient account without login, their data key and encrypted profile
    (with their insurance, if given), and the holder's link. Audited as a registration by the
    holder."""
    _holder_check(holder)
    names = _validated(
        first_name=first_name,
        last_name=last_name,
        date_of_birth=date_of_birth,
        relationship=relationship,
    )
    insured = insurance_values_check(
        insurance_type=insurance_type, insurer_name=insurer_name, insurance_number=insurance_number
    )
    # One addition at a time per holder, so the limit below cannot be raced past.
    User.objects.select_for_update(no_key=True).filter(pk=holder.pk).exists()
    if active_links(holder=holder).count() >= settings.PATTERM_RELATIVES_MAX:
        raise Conflict(
            MESSAGE_TOO_MANY % {"max": settings.PATTERM_RELATIVES_MAX}, "too_many_relatives"
        )
    relative = user_create_without_login(role=Role.PATIENT, language=holder.language)
    keys.data_key_create(patient_id=relative.pk)
    profile = PatientProfile.objects.create(
        patient=relative, date_of_birth=date_of_birth, **names, **insured
    )
    link = RelativeLink.objects.create(holder=holder, relative=relative, relationship=relationship)
    send_event(
        action=AuditAction.AUTH_REGISTER,
        actor=holder,
        object_type="user",
        object_id=relative.pk,
        subject_id=relative.pk,
        details={"bases": ["holder"], "relationship": relationship},
    )
    return Relative(link=link, profile=profile)


@keys.request_key_cache()
def relatives_of(*, holder: User) -> list[Relative]:
    """The relatives `holder` manages now, with their profiles: three queries for any number
    (links, profiles, data keys)."""
    links = list(active_links(holder=holder).order_by("created_at", "pk"))
    keys.data_keys_preload({link.relative_id for link in links})
    profiles = PatientProfile.objects.in_bulk([link.relative_id for link in links])
    return [Relative(link=link, profile=profiles[link.relative_id]) for link in links]


@keys.request_key_cache()
def relative_get(*, holder: User, relative_id) -> Relative:
    """One relative of `holder`; anyone else's, a former one or an unknown id: NotFound."""
    link = relative_link_get(holder=holder, relative_id=relative_id)
    return Relative(link=link, profile=PatientProfile.objects.get(patient_id=link.relative_id))


@keys.request_key_cache()
def relative_record_read(*, holder: User, relative_id) -> tuple[Relative, RecordRead]:
    """The holder reads the relative's record: decided by `consent.policy` (basis `holder`)
    and audited like every read, with the relative as subject."""
    relative = relative_get(holder=holder, relative_id=relative_id)
    return relative, record_read(actor=holder, patient=relative.user)


# --- Taking over ----------------------------------------------------------------------------


def _invitation_stamp(link: RelativeLink) -> int:
    return int(link.invited_at.timestamp() * 1_000_000)


def invitation_token(link: RelativeLink) -> str:
    """The signed token of the link's newest invitation (it expires, see invitation_link)."""
    return signing.dumps({"l": link.pk, "n": _invitation_stamp(link)}, salt=INVITATION_SALT)


@keys.request_key_cache()
@transaction.atomic
def relative_invite(*, holder: User, relative_id, email: str) -> Relative:
    """Invite a relative old enough to take over their record with their own account.

    The e-mail with the signed link (valid PATTERM_RELATIVE_INVITATION_DAYS) goes to the
    relative's address; a new invitation replaces the one before. Audited.
    """
    relative = relative_get(holder=holder, relative_id=relative_id)
    link = RelativeLink.objects.select_for_update().get(pk=relative.link.pk)
    email = normalize_email(email)
    errors = []
    try:
        EmailValidator()(email)
    except ValidationError:
        errors.append({"field": "email", "message": str(MESSAGE_INVALID_EMAIL)})
    if not errors and User.objects.filter(email=email).exists():
        errors.append({"field": "email", "message": str(MESSAGE_EMAIL_TAKEN)})
    if errors:
        raise InvalidInput(errors)
    if not relative.may_take_over:
        age = settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE
        raise Conflict(MESSAGE_TOO_YOUNG % {"age": age}, "relative_too_young")
    link.invited_at, link.invited_email = timezone.now(), email
    link.save(update_fields=["invited_at", "invited_email"])
    send_event(
        action=RELATIVE_INVITE,
        actor=holder,
        object_type="relative_link",
        object_id=link.pk,
        subject_id=link.relative_id,
        details={"bases": ["holder"]},
    )
    url = settings.PATTERM_PUBLIC_URL.rstrip("/") + reverse(
        "vault:relative_takeover", kwargs={"token": invitation_token(link)}
    )
    language, first_name = holder.language, relative.profile.first_name
    transaction.on_commit(
        lambda: _send_invitation(to=email, url=url, first_name=first_name, language=language)
    )
    return Relative(link=link, profile=relative.profile)


def _send_invitation(*, to: str, url: str, first_name: str, language: str) -> None:
    """To the relative's own address: their first name (they are being addressed), the link
    and its expiry; no medical data."""
    with translation.override(language):
        send_mail(
            subject=str(_("Your own Patterm account")),
            message=render_to_string(
                "vault/relative_invitation_email.txt",
                {
                    "first_name": first_name,
                    "url": url,
                    "days": settings.PATTERM_RELATIVE_INVITATION_DAYS,
                },
            ),
            from_email=None,
            recipient_list=[to],
        )


def invitation_open(*, token: str) -> RelativeLink:
    """The link a takeover token stands for, if it is still valid: signed by us, not expired,
    the newest invitation, and the link still active. Else NotFound or `invitation_expired`."""
    max_age = datetime.timedelta(days=settings.PATTERM_RELATIVE_INVITATION_DAYS)
    try:
        data = signing.loads(token, salt=INVITATION_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise Conflict(MESSAGE_INVITATION_EXPIRED, "invitation_expired") from None
    except signing.BadSignature:
        raise NotFound(MESSAGE_INVITATION_INVALID, "invitation_invalid") from None
    link = (
        RelativeLink.objects.filter(
            pk=data.get("l"), ended_at__isnull=True, invited_at__isnull=False
        )
        .select_related("relative", "holder")
        .first()
        if isinstance(data, dict)
        else None
    )
    if link is None or _invitation_stamp(link) != data.get("n"):
        raise NotFound(MESSAGE_INVITATION_INVALID, "invitation_invalid")
    return link


@keys.request_key_cache()
@transaction.atomic
def relative_takeover(*, token: str, password: str) -> User:
    """The relative accepts the invitation: the invited address becomes their login, with the
    password they choose; the holder's link ends now (audited). Returns the relative's
    account, ready to sign in."""
    link = invitation_open(token=token)
    link = RelativeLink.objects.select_for_update().get(pk=link.pk, ended_at__isnull=True)
    relative = link.relative
    profile = PatientProfile.objects.get(patient=relative)
    user_login_give(
        user=relative,
        email=link.invited_email,
        password=password,
        personal_names=(profile.first_name, profile.last_name),
    )
    link.ended_at = timezone.now()
    link.save(update_fields=["ended_at"])
    send_event(
        action=RELATIVE_TAKEOVER,
        actor=relative,
        object_type="relative_link",
        object_id=link.pk,
        subject_id=relative.pk,
        details={"former_holder": link.holder_id},
    )
    return relative


# --- Telling the holder ---------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeRun:
    told: int
    checked: int


def takeover_notices_send(*, progress=lambda items: items) -> NoticeRun:
    """E-mail each holder once when a relative they manage reaches
    PATTERM_RELATIVE_OWN_ACCOUNT_AGE (run daily: `manage.py notify_relatives`).

    The e-mail names no one and holds no date of birth (e-mail is not an encrypted channel): it
    says that one of the relatives may now take over and links to the relatives page, which
    names them. Idempotent: a told link is not told again; a new relative already of age is
    told on the next run. `progress` wraps the links checked (a progress bar).
    """
    links = list(
        RelativeLink.objects.filter(
            ended_at__isnull=True, holder_told_at__isnull=True, relative__is_active=True
        )
        .select_related("holder")
        .order_by("pk")
    )
    today, told = timezone.localdate(), 0
    with keys.request_key_cache():
        keys.data_keys_preload({link.relative_id for link in links})
        profiles = PatientProfile.objects.in_bulk([link.relative_id for link in links])
        for link in progress(links):
            profile = profiles.get(link.relative_id)
            if profile is None or not link.holder.is_active:
                continue
            if age_on(profile.date_of_birth, today) < settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE:
                continue
            with transaction.atomic():
                claimed = RelativeLink.objects.filter(
                    pk=link.pk, holder_told_at__isnull=True
                ).update(holder_told_at=timezone.now())
                if claimed:  # not told by a run at the same time
                    holder = link.holder
                    transaction.on_commit(lambda holder=holder: _send_notice(holder=holder))
                    told += 1
    return NoticeRun(told=told, checked=len(links))


def _send_notice(*, holder: User) -> None:
    url = settings.PATTERM_PUBLIC_URL.rstrip("/") + reverse("vault:relatives")
    with translation.override(holder.language):
        send_mail(
            subject=str(_("A relative may now manage their own record")),
            message=render_to_string(
                "vault/relative_of_age_email.txt",
                {"url": url, "age": settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE},
            ),
            from_email=None,
            recipient_list=[holder.email],
        )
