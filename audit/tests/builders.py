"""Builders for the tests of checkpoints, export, the auditor API and event coverage: staff with
tokens, slots written directly, signing keys, and the rows appended since a point."""

import base64
import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Clinic, Role, User
from accounts.services import ClientInfo, IssuedToken, token_issue
from accounts.tests.factories import ClinicFactory, StaffFactory
from audit import triggers
from audit.chain import GENESIS_HASH, chain_hash
from audit.models import AuditCheckpoint, AuditEvent, AuditTreeCheckpoint
from booking.models import Slot, Specialty


def staff_with_token(*, role: str = Role.PRACTITIONER, clinic: Clinic | None = None, **fields):
    """(user, IssuedToken) for a staff account at `clinic` (a new one by default)."""
    user = StaffFactory(clinic=clinic or ClinicFactory(), role=role, **fields)
    return user, token_for(user)


def token_for(user: User) -> IssuedToken:
    return token_issue(user=user, client=ClientInfo(address="127.0.0.1", user_agent="pytest"))


def bearer(token: IssuedToken | str) -> dict:
    raw = token if isinstance(token, str) else token.raw
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def slot_make(*, practitioner: User, clinic: Clinic, days: int = 3, hour: int = 0) -> Slot:
    """A free slot `days` days (and `hour` hours) ahead, written directly."""
    specialty, _ = Specialty.objects.get_or_create(
        slug="allgemeinmedizin",
        defaults={"name_de": "Allgemeinmedizin", "name_en": "General practice"},
    )
    starts_at = (timezone.now() + datetime.timedelta(days=days, hours=hour)).replace(
        minute=0, second=0, microsecond=0
    )
    return Slot.objects.create(
        clinic=clinic,
        practitioner=practitioner,
        specialty=specialty,
        starts_at=starts_at,
        ends_at=starts_at + datetime.timedelta(minutes=20),
    )


def every_stored_value() -> str:
    """Every column of every audit and checkpoint row, as text, the way a dump shows them."""
    texts = []
    with connection.cursor() as cursor:
        for table in (
            AuditEvent._meta.db_table,
            AuditCheckpoint._meta.db_table,
            AuditTreeCheckpoint._meta.db_table,
        ):
            cursor.execute(f"SELECT * FROM {table}")
            texts += [str(value) for row in cursor.fetchall() for value in row]
    return "\n".join(texts)


def head_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def events_since(seq: int) -> list[AuditEvent]:
    """The rows appended after row `seq`, in order."""
    return list(AuditEvent.objects.filter(seq__gt=seq).order_by("seq"))


# --- Keys -----------------------------------------------------------------------------------


def new_signing_key() -> tuple[str, str]:
    """(private key, public key), both raw and base64, as the settings take them."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


# --- Tampering ------------------------------------------------------------------------------


def checkpoint_triggers_drop() -> None:
    triggers.drop(connection, triggers.CHECKPOINTS)


def checkpoint_triggers_install() -> None:
    triggers.install(connection, triggers.CHECKPOINTS)


def rewrite_from(seq: int, **changes) -> None:
    """Change row `seq` and recompute the hash of it and of every later row, the way a forger
    who controls the database would: the plain chain holds again. Needs the triggers dropped."""
    previous = AuditEvent.objects.filter(seq=seq - 1).values_list("hash", flat=True).first()
    prev_hash = previous or GENESIS_HASH
    with transaction.atomic():
        rows = list(AuditEvent.objects.filter(seq__gte=seq).order_by("seq").values())
        for index, row in enumerate(rows):
            if index == 0:
                row.update(changes)
            row["prev_hash"] = prev_hash
            row["hash"] = chain_hash(prev_hash, row)
            fields = {name: value for name, value in row.items() if name != "seq"}
            AuditEvent.objects.filter(seq=row["seq"]).update(**fields)
            prev_hash = row["hash"]


def plain_chain_holds() -> bool:
    """Every row chains from the one before and matches its own hash (checkpoints ignored)."""
    expected_prev, expected_seq = GENESIS_HASH, 1
    for row in AuditEvent.objects.order_by("seq").values():
        if (
            row["seq"] != expected_seq
            or row["prev_hash"] != expected_prev
            or chain_hash(row["prev_hash"], row) != row["hash"]
        ):
            return False
        expected_prev, expected_seq = row["hash"], expected_seq + 1
    return True
