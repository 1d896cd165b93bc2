"""Master keys and per-patient data keys (envelope encryption).

Master keys (key-encryption keys) come from PATTERM_MASTER_KEYS as `VERSION:BASE64` entries,
newest first: the newest wraps new data keys, every listed version still unwraps, like
`PASSWORD_HASHERS`. Each patient has one AES-256 data key, stored only wrapped.
"""

import base64
import binascii
from contextlib import contextmanager
from contextvars import ContextVar
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


def wrap(*, patient_id: int, key: bytes, version: int | None = None) -> tuple[int, bytes]:
    """(master version, wrapped key): `key` sealed under the given or the active master key."""
    ring = master_key_ring()
    version = ring.active_version if version is None else version
    return version, crypto.seal(ring.key(version), key, _wrap_context(patient_id, version))


def unwrap(patient_key: PatientKey) -> bytes:
    if patient_key.wrapped_key is None:
        raise crypto.KeyDestroyed("the patient's data key was destroyed (erased)")
    version = patient_key.master_key_version
    return crypto.open_sealed(
        master_key_ring().key(version),
        bytes(patient_key.wrapped_key),
        _wrap_context(patient_key.patient_id, version),
    )


# Unwrapped data keys, for the current request (or command batch) only: a record page costs one
# key lookup and one unwrap, and no plaintext key outlives the request that needed it.
_request_keys: ContextVar[dict | None] = ContextVar("patterm_request_data_keys", default=None)


@contextmanager
def request_key_cache():
    """Keep unwrapped data keys for the duration of the block, then forget them.

    Re-entrant: inside an open block (a request), a service's own block shares its cache.
    """
    if _request_keys.get() is not None:
        yield
        return
    token = _request_keys.set({})
    try:
        yield
    finally:
        _request_keys.reset(token)


def forget_cached_keys() -> None:
    """Drop what the current block cached (after a key was created, rotated or destroyed)."""
    if (cache := _request_keys.get()) is not None:
        cache.clear()


def _cached(cache_key: tuple, load):
    cache = _request_keys.get()
    if cache is None:
        return load()
    if cache_key not in cache:
        cache[cache_key] = load()
    value = cache[cache_key]
    if isinstance(value, crypto.DecryptionError):  # preloaded: a destroyed or broken key
        raise value
    return value


def data_keys_preload(patient_ids) -> None:
    """Unwrap the keys of many patients with one query, for a page that shows all of them.

    Only inside an open `request_key_cache()` block (every request has one); elsewhere keys
    are loaded one by one as values are read.
    """
    cache = _request_keys.get()
    if cache is None:
        return
    wanted = {pid for pid in patient_ids if ("current", pid) not in cache}
    for patient_key in PatientKey.objects.filter(patient_id__in=wanted):
        try:
            key = unwrap(patient_key)
        except crypto.DecryptionError as error:
            key = error
        cache[("key", patient_key.pk, patient_key.patient_id)] = key
        if patient_key.destroyed_at is None and not isinstance(key, Exception):
            cache[("current", patient_key.patient_id)] = (patient_key.pk, key)


def data_key_create(*, patient_id: int) -> PatientKey:
    """Create the patient's data key, wrapped under the active master key."""
    version, wrapped = wrap(patient_id=patient_id, key=crypto.generate_key())
    forget_cached_keys()
    return PatientKey.objects.create(
        patient_id=patient_id, master_key_version=version, wrapped_key=wrapped
    )


def current_data_key(patient_id: int) -> tuple[int, bytes]:
    """(key id, key) that encrypts new values of this patient."""

    def load():
        patient_key = PatientKey.objects.filter(patient_id=patient_id, destroyed_at=None).first()
        if patient_key is None:
            if PatientKey.objects.filter(patient_id=patient_id).exists():
                raise crypto.KeyDestroyed("the patient's data key was destroyed (erased)")
            raise crypto.DecryptionError(f"patient {patient_id} has no data key")
        return patient_key.pk, unwrap(patient_key)

    return _cached(("current", patient_id), load)


def data_key(key_id: int, patient_id: int) -> bytes:
    """The data key a stored value names; it must belong to the same patient."""

    def load():
        patient_key = PatientKey.objects.filter(pk=key_id, patient_id=patient_id).first()
        if patient_key is None:
            raise crypto.DecryptionError("the value names a data key of another patient or none")
        return unwrap(patient_key)

    return _cached(("key", key_id, patient_id), load)
