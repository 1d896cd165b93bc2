"""Master keys and per-patient data keys (envelope encryption).

Master keys (key-encryption keys) come from PATTERM_MASTER_KEYS as `VERSION:BASE64` entries,
newest first: the newest wraps new data keys, every listed version still unwraps, like
`PASSWORD_HASHERS`. Each patient has one AES-256 data key, stored only wrapped.
"""

import base64
import binascii
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache

from cryptography.exceptions import InvalidTag
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Expression, TextField

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


_WRAP_CONTEXT = b"patterm:patient-key:v1|patient=%d|master=%d"


def _wrap_context(patient_id: int, version: int) -> bytes:
    """What a wrapped data key is bound to: its patient and its master key version."""
    return _WRAP_CONTEXT % (patient_id, version)


@lru_cache(maxsize=16)
def _master_cipher(master_key: bytes):
    """One AES-GCM object per master key, not one per data key wrapped or unwrapped.

    It holds nothing the ring (itself cached for the process) does not already hold.
    """
    return crypto.cipher(master_key)


def wrap(*, patient_id: int, key: bytes, version: int | None = None) -> tuple[int, bytes]:
    """(master version, wrapped key): `key` sealed under the given or the active master key."""
    ring = master_key_ring()
    version = ring.active_version if version is None else version
    aead = _master_cipher(ring.key(version))
    return version, crypto.seal_with(aead, key, _wrap_context(patient_id, version))


def unwrap_stored(*, patient_id: int, version: int, wrapped: bytes | None) -> bytes:
    """The data key stored as `wrapped` under master key `version`, from the row's plain values."""
    if wrapped is None:
        raise crypto.KeyDestroyed("the patient's data key was destroyed (erased)")
    return crypto.open_with(
        _master_cipher(master_key_ring().key(version)),
        bytes(wrapped),
        _wrap_context(patient_id, version),
    )


def unwrap(patient_key: PatientKey) -> bytes:
    return unwrap_stored(
        patient_id=patient_key.patient_id,
        version=patient_key.master_key_version,
        wrapped=patient_key.wrapped_key,
    )


def rewrap_many(rows, *, target: int) -> list[tuple[int, bytes]]:
    """(key id, wrapped under `target`) for each `(key id, patient id, version, wrapped)` row:
    `rewrap` for a rotation batch, with the ring read and each master key's cipher looked up
    once per batch instead of twice per key.

    The loop is `crypto.open_with` and `crypto.seal_with` written out (same nonce size, same
    checks, same errors): the calls and attribute look-ups around the two AES operations were
    a third of the batch's Python time (bench/keys.py).
    """
    ring = master_key_ring()
    seal = _master_cipher(ring.key(target)).encrypt
    opens: dict[int, object] = {}
    context, nonce_size = _WRAP_CONTEXT, crypto.NONCE_SIZE
    shortest = nonce_size + crypto.TAG_SIZE
    rows = list(rows)
    # Every nonce of the batch from one draw of the system's CSPRNG, each slice used once:
    # one `getrandom` call per batch instead of one per key (bench/keys.py).
    nonces, rewrapped = os.urandom(nonce_size * len(rows)), []
    append = rewrapped.append
    for start, (key_id, patient_id, version, wrapped) in zip(
        range(0, len(nonces), nonce_size), rows, strict=True
    ):
        if wrapped is None:
            raise crypto.KeyDestroyed("the patient's data key was destroyed (erased)")
        if (open_ := opens.get(version)) is None:
            open_ = opens[version] = _master_cipher(ring.key(version)).decrypt
        sealed = bytes(wrapped)
        if len(sealed) < shortest:
            raise crypto.DecryptionError("sealed value is too short")
        try:
            plain = open_(sealed[:nonce_size], sealed[nonce_size:], context % (patient_id, version))
        except InvalidTag as error:
            raise crypto.DecryptionError(
                "authentication failed: wrong key, wrong context, or the value was altered"
            ) from error
        nonce = nonces[start : start + nonce_size]
        append((key_id, nonce + seal(nonce, plain, context % (patient_id, target))))
    return rewrapped


# Unwrapped data keys, for the current request (or command batch) only: a record page costs one
# key lookup and one unwrap, and no plaintext key outlives the request that needed it.
_request_keys: ContextVar[dict | None] = ContextVar("patterm_request_data_keys", default=None)


# The open block's cache (or None), for the encrypted fields' reading of each value: the
# ContextVar's own `get`, no Python call in between.
request_key_cache_of_block = _request_keys.get


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
    if not wanted:
        return
    rows = PatientKey.objects.filter(patient_id__in=wanted).values_list(
        "pk", "patient_id", "master_key_version", "wrapped_key", "destroyed_at"
    )
    for key_id, patient_id, version, wrapped, destroyed_at in rows:
        _remember(cache, key_id, patient_id, version, wrapped, live=destroyed_at is None)


def _remember(cache: dict, key_id, patient_id, version, wrapped, *, live: bool) -> None:
    try:
        key = unwrap_stored(patient_id=patient_id, version=version, wrapped=wrapped)
    except crypto.DecryptionError as error:
        key = error
    cache[("key", key_id, patient_id)] = key
    if live and not isinstance(key, Exception):
        cache[("current", patient_id)] = (key_id, key)


# The live data key of each row's patient, brought by the rows' own query (`with_live_data_key`)
# as one text column, `id$patient$version$hex of the wrapped key`.
LIVE_KEY = "_patterm_live_key"


class _LiveDataKey(Expression):
    """The patient's one live data key as `id$patient$version$hex`, or NULL (erased): a
    subquery on the partial unique index `patient_key_one_live_per_patient`.

    Correlated with each row's patient, or, when the rows are known to be one patient's,
    on that patient's id: PostgreSQL then runs it once for the query, not once per row
    (bench/record_read.py; decision 0019). Raw SQL, not a `FilteredRelation` join: the join's
    three column annotations cost more to compile than the whole page's decryption. The
    correlated subquery names the row's table by the alias the compiler gave it.
    """

    output_field = TextField()

    def __init__(self, patient_column: str, patient_id: int | None = None):
        super().__init__()
        self.patient_column, self.patient_id = patient_column, patient_id

    def as_sql(self, compiler, connection):
        quote = connection.ops.quote_name
        if connection.vendor == "postgresql":
            value = (
                "k.id::text || '$' || k.patient_id::text || '$' || "
                "k.master_key_version::text || '$' || encode(k.wrapped_key, 'hex')"
            )
        else:
            value = (
                "k.id || '$' || k.patient_id || '$' || k.master_key_version || '$' || "
                "hex(k.wrapped_key)"
            )
        if self.patient_id is None:
            row_table = compiler.quote_name_unless_alias(compiler.query.get_initial_alias())
            patient, params = f"{row_table}.{quote(self.patient_column)}", []
        else:
            patient, params = "%s", [self.patient_id]
        return (
            f"(SELECT {value} FROM {quote(PatientKey._meta.db_table)} k "  # noqa: S608
            f"WHERE k.patient_id = {patient} AND k.destroyed_at IS NULL)",
            params,
        )


def with_live_data_key(queryset, patient_field: str = "patient", *, patient_id=None):
    """`queryset` with each row's patient's live data key in its own query (a subquery on the
    one live key a patient has), so that a page of rows and its keys cost one query.

    `patient_id`: the rows are all this patient's (the queryset filters on it), so the key is
    read once for the query instead of once per row; a row of another patient gets no key
    from it (`data_keys_from_rows` checks) and its values are looked up as before.

    Call `data_keys_from_rows` on the rows it returns; a patient without a live key (erased)
    brings none, and their values are looked up, and read as erased, as before.
    """
    column = queryset.model._meta.get_field(patient_field).column
    return queryset.annotate(**{LIVE_KEY: _LiveDataKey(column, patient_id)})


def data_keys_from_rows(rows, patient_field: str = "patient") -> None:
    """Unwrap, once per patient, the live keys `with_live_data_key` brought with `rows`, into
    the open request cache (no query). Outside a `request_key_cache()` block it does nothing."""
    cache = _request_keys.get()
    if cache is None:
        return
    patient_attname = f"{patient_field}_id"
    seen = None  # (key text, patient) of the row before: a page is mostly one patient's rows
    for row in rows:
        live_key = getattr(row, LIVE_KEY)
        if live_key is None:
            continue
        patient_id = getattr(row, patient_attname)
        if seen is not None and seen[0] == live_key and seen[1] == patient_id:
            continue
        seen = (live_key, patient_id)
        key_text, key_patient_text, version_text, wrapped_hex = live_key.split("$")
        key_id = int(key_text)
        # Another patient's key (a row the caller's filter let through; its unwrap would fail
        # on the patient the wrapping binds anyway), or one known already.
        if int(key_patient_text) != patient_id or ("key", key_id, patient_id) in cache:
            continue
        wrapped = bytes.fromhex(wrapped_hex)
        _remember(cache, key_id, patient_id, int(version_text), wrapped, live=True)


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


def current_cipher(patient_id: int):
    """(key id, AES-GCM object) that encrypts new values of this patient: one object per key
    per request, not one per value."""
    cache = _request_keys.get()
    # Once per value saved: the cached pair straight from the dict (a cached pair is never an
    # error, see `_cached`), no closure made per call.
    if cache is not None and (pair := cache.get(("current-cipher", patient_id))) is not None:
        return pair

    def load():
        key_id, key = current_data_key(patient_id)
        cache = _request_keys.get()
        if cache is None:
            return key_id, crypto.cipher(key)
        if ("cipher", key_id, patient_id) not in cache:  # shared with the values it opens
            cache[("cipher", key_id, patient_id)] = crypto.cipher(key)
        return key_id, cache[("cipher", key_id, patient_id)]

    return _cached(("current-cipher", patient_id), load)


def cipher(key_id: int, patient_id: int):
    """The AES-GCM object of the data key a stored value names (see `data_key`)."""
    cache_key = ("cipher", key_id, patient_id)
    cache = _request_keys.get()
    # Once per value of a page: the cached object straight from the dict (a cached cipher is
    # never an error, see `_cached`), no closure made per call.
    if cache is not None and (aead := cache.get(cache_key)) is not None:
        return aead
    return _cached(cache_key, lambda: crypto.cipher(data_key(key_id, patient_id)))
