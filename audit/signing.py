"""Ed25519 signatures over audit checkpoints.

The signed message is a small text, one field a line, in the spirit of C2SP's tlog-checkpoint:

    patterm-audit-checkpoint/v1
    <head sequence number>
    <head hash, hex>
    <signing time, UTC, ISO 8601 with microseconds>

`audit/verify_export.py` rebuilds exactly this text without Django; keep the two in step.
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
