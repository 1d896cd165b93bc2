"""Ed25519 signatures over audit checkpoints.

Checkpoints of the Merkle tree are C2SP signed notes (`checkpoint_note`, `note_verify`): the body
"<origin>\n<tree size>\n<base64 root hash>\n" and one signature line per key, "— <key name>
<base64(key hash || signature)>", which Go's golang.org/x/mod/sumdb/note opens. The key name is
the log's origin (PATTERM_AUDIT_LOG_ORIGIN); the key hash (SHA-256 of name, newline, 0x01 and the
public key, 4 bytes) tells a rotated key from the current one under the same name.

Checkpoints of the old hash chain (before the tree, still verified) signed this text:

    patterm-audit-checkpoint/v1
    <head sequence number>
    <head hash, hex>
    <signing time, UTC, ISO 8601 with microseconds>

`audit/verify_export.py` checks both without Django; keep the two in step.
"""

import base64
import binascii
import hashlib
from datetime import UTC, datetime
from functools import cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit import verify_export

MESSAGE_HEADER = "patterm-audit-checkpoint/v1"


def checkpoint_message(*, head_seq: int, head_hash: str, created_at: datetime) -> bytes:
    timestamp = created_at.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{MESSAGE_HEADER}\n{head_seq}\n{head_hash}\n{timestamp}\n".encode()


def public_key_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw public key: names the key, reveals nothing."""
    return hashlib.sha256(public_key_bytes(public_key)).hexdigest()[:16]


@cache
def _private_key(value: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(value, validate=True)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(
            "PATTERM_AUDIT_SIGNING_KEY must be a raw 32-byte Ed25519 private key in base64"
        ) from None


def signing_key() -> Ed25519PrivateKey:
    return _private_key(settings.PATTERM_AUDIT_SIGNING_KEY)


def verify_keys() -> dict[str, Ed25519PublicKey]:
    """Every public key whose checkpoints verify: the current one and the retired ones."""
    keys = [signing_key().public_key()]
    for value in settings.PATTERM_AUDIT_VERIFY_KEYS:
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True)))
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(
                "PATTERM_AUDIT_VERIFY_KEYS holds a value that is not a raw Ed25519 public key"
            ) from None
    return {key_id(key): key for key in keys}


def sign(message: bytes) -> tuple[str, str]:
    """(key id, base64 signature) with the current signing key."""
    key = signing_key()
    return key_id(key.public_key()), base64.b64encode(key.sign(message)).decode()


def signature_valid(*, key: str, signature: str, message: bytes) -> bool:
    public_key = verify_keys().get(key)
    if public_key is None:
        return False
    try:
        public_key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# --- Signed notes ---------------------------------------------------------------------------


def log_origin() -> str:
    return settings.PATTERM_AUDIT_LOG_ORIGIN


def note_verifier_key(public_key: Ed25519PublicKey, name: str | None = None) -> str:
    """The verifier key `name+hash+base64(0x01 || key)` that note.NewVerifier reads."""
    name = name or log_origin()
    raw = public_key_bytes(public_key)
    hashed = verify_export.key_hash(name, raw).hex()
    return f"{name}+{hashed}+{base64.b64encode(bytes([verify_export.ED25519]) + raw).decode()}"


def note_verifier_keys() -> list[str]:
    """The verifier keys of every key whose checkpoints verify, the current one first."""
    return [note_verifier_key(key) for key in verify_keys().values()]


def note_sign(body: str, key: Ed25519PrivateKey | None = None, name: str | None = None) -> str:
    """`body` as a signed note with one Ed25519 signature line (note.Sign)."""
    key = key or signing_key()
    name = name or log_origin()
    hashed = verify_export.key_hash(name, public_key_bytes(key.public_key()))
    signature = base64.b64encode(hashed + key.sign(body.encode())).decode()
    return f"{body}\n\u2014 {name} {signature}\n"


def checkpoint_body(*, tree_size: int, root_hash: bytes) -> str:
    """The C2SP tlog-checkpoint body: origin, tree size, base64 root hash."""
    return f"{log_origin()}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


def checkpoint_note(*, tree_size: int, root_hash: bytes) -> str:
    return note_sign(checkpoint_body(tree_size=tree_size, root_hash=root_hash))


def note_verifiers(extra: list[str] = ()) -> dict:
    verifiers = {}
    for text in [*note_verifier_keys(), *extra]:
        name, hashed, key = verify_export.verifier_parse(text)
        verifiers[(name, hashed)] = key
    return verifiers


def note_verify(note: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root) of a checkpoint signed by one of the log's keys; raises
    verify_export.Broken naming the problem otherwise."""
    return verify_export.checkpoint_verify(note, note_verifiers(), log_origin())
