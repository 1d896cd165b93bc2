"""Master keys and per-patient data keys (envelope encryption).

Master keys (key-encryption keys) come from PATTERM_MASTER_KEYS as `VERSION:BASE64` entries,
newest first: the newest wraps new data keys, every listed version still unwraps, like
`PASSWORD_HASHERS`. Each patient has one AES-256 data key, stored only wrapped.
"""

import base64
import binascii
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from vault import crypto
from vault.models import PatientKey


@dataclass(frozen=True)
class MasterKeyRing:
    keys: dict[int, bytes]  # version -> key, in the order given (newest first)

    @property
    def active_version(self) -> int:
        return next(iter(self.keys))

    def key(self, version: int) -> bytes:
        try:
            return self.keys[version]
        except KeyError:
            raise crypto.DecryptionError(
                f"master key version {version} is not configured"
            ) from None


@cache
def _parse_master_keys(value: str) -> MasterKeyRing:
    keys: dict[int, bytes] = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in value.split(","))), 1):
        version_text, _, key_text = entry.partition(":")
        try:
            version = int(version_text)
            key = base64.b64decode(key_text, validate=True)
        except (ValueError, binascii.Error):
            raise ImproperlyConfigured(
                f"PATTERM_MASTER_KEYS entry {position} is not VERSION:BASE64KEY"
            ) from None
        if version < 1 or len(key) != crypto.KEY_SIZE:
            raise ImproperlyConfigured(
                f"PATTERM_MASTER_KEYS entry {position} needs a positive version and a "
                f"{crypto.KEY_SIZE}-byte key"
            )
        # Newest first, strictly: a new key appended at the end would silently not be used.
        if keys and version >= min(keys):
            raise ImproperlyConfigured(
                f"PATTERM_MASTER_KEYS entry {position}: versions must be listed newest first, "
                "each lower than the one before"
            )
        keys[version] = key
    if not keys:
        raise ImproperlyConfigured("PATTERM_MASTER_KEYS holds no key")
    return MasterKeyRing(keys)


def master_key_ring() -> MasterKeyRing:
    return _parse_master_keys(settings.PATTERM_MASTER_KEYS)


def _wrap_context(patient_id: int, version: int) -> bytes:
    return f"patterm:patient-key:v1|patient={patient_id}|master={version}".encode()


def data_key_create(*, patient_id: int):
    """Create the patient's data key, wrapped under the active master key."""
    ring = master_key_ring()
    version = ring.active_version
    wrapped = crypto.seal(
        ring.key(version), crypto.generate_key(), _wrap_context(patient_id, version)
    )
    return PatientKey.objects.create(
        patient_id=patient_id, master_key_version=version, wrapped_key=wrapped
    )


def _unwrap(patient_key) -> bytes:
    if patient_key.wrapped_key is None:
        raise crypto.DecryptionError("the patient's data key was destroyed")
    version = patient_key.master_key_version
    return crypto.open_sealed(
        master_key_ring().key(version),
        bytes(patient_key.wrapped_key),
        _wrap_context(patient_key.patient_id, version),
    )


def current_data_key(patient_id: int) -> tuple[int, bytes]:
    """(key id, key) that encrypts new values of this patient."""
    patient_key = PatientKey.objects.filter(patient_id=patient_id, destroyed_at=None).first()
    if patient_key is None:
        raise crypto.DecryptionError(f"patient {patient_id} has no data key")
    return patient_key.pk, _unwrap(patient_key)


def data_key(key_id: int, patient_id: int) -> bytes:
    """The data key a stored value names; it must belong to the same patient."""
    patient_key = PatientKey.objects.filter(pk=key_id, patient_id=patient_id).first()
    if patient_key is None:
        raise crypto.DecryptionError("the value names a data key of another patient or none")
    return _unwrap(patient_key)
