"""The hash chain: how a row's hash is computed from the row before it.

hash = SHA-256(prev_hash || canonical JSON of the row's fields). The canonical JSON sorts keys,
has no spaces, writes times in UTC with microseconds and client addresses in one spelling, so the
same row hashes the same on SQLite and PostgreSQL and after any dump and restore.
"""

import hashlib
import ipaddress
import json
from datetime import UTC, datetime
from functools import lru_cache

GENESIS_HASH = "0" * 64

# The fields covered by the hash, in the order they are documented (docs/audit.md).
HASHED_FIELDS = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "subject_ref",
    "clinic_id",
    "purpose",
    "outcome",
    "request_id",
    "client_address",
    "details",
)


# Parsing an address is the costliest step of hashing a row (bench/audit.py, pyinstrument), and
# a chain holds few distinct addresses: verification remembers the recent ones.
@lru_cache(maxsize=4096)
def canonical_address(value: str | None) -> str | None:
    """The one spelling of a client address, whatever form was given or the database returns.

    Django stores an IPv6 address lowercased and compressed, and PostgreSQL's inet prints some
    addresses differently again (`::1.2.3.4` for `::102:304`); the hash must not depend on that.
    Same form as Django's `clean_ipv6_address`, spelled out so it does not change with Python's
    `str()` of IPv4-mapped addresses (3.13). An empty value is stored as NULL; a value that is
    no address is left as it is.
    """
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return f"::ffff:{address.ipv4_mapped}"
    return str(ipaddress.IPv6Address(int(address)))  # without a zone id, as it is stored


def canonical_json(row: dict) -> str:
    payload = {name: row[name] for name in HASHED_FIELDS}
    occurred_at: datetime = payload["occurred_at"]
    payload["occurred_at"] = occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    payload["client_address"] = canonical_address(payload["client_address"])
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, row: dict) -> str:
    return hashlib.sha256((prev_hash + canonical_json(row)).encode()).hexdigest()


_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes for a str
_details_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# The C encoder that `json.dumps` builds on every call (and `encode` as well), built once, with
# the same arguments as JSONEncoder.iterencode gives it: half the cost of a leaf's details.
_c_details_encoder = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None,  # no check for cycles: details come from JSON, which has none
    _details_encoder.default,
    _string,
    None,
    _details_encoder.key_separator,
    _details_encoder.item_separator,
    True,  # sort_keys
    False,  # skipkeys
    True,  # allow_nan
)


def _details(value) -> str:
    if _c_details_encoder is None:  # a Python without the json module's C part
        return _details_encoder.encode(value)
    return "".join(_c_details_encoder(value, 0))


def _number(value: int | None) -> str:
    return "null" if value is None else str(value)


def _text(value: str | None) -> str:
    return "null" if value is None else _string(value)


def canonical_leaf(
    seq: int,
    occurred_at_utc: str,
    actor_id: int | None,
    actor_role: str,
    action: str,
    object_type: str,
    object_id: str,
    subject_ref: str,
    clinic_id: int | None,
    purpose: str,
    outcome: str,
    request_id: str,
    client_address: str | None,
    details,
) -> bytes:
    """`canonical_json(row).encode()` for the values of one row as the database streams them
    (HASHED_FIELDS' order), written directly in the sorted key order: verification hashes a
    million of these, and the generic dict, sort and isoformat were most of its time.
    `occurred_at_utc` is already the UTC isoformat with microseconds; tests hold the two equal."""
    return (
        f'{{"action":{_string(action)},"actor_id":{_number(actor_id)},'
        f'"actor_role":{_string(actor_role)},'
        f'"client_address":{_text(canonical_address(client_address))},'
        f'"clinic_id":{_number(clinic_id)},"details":{_details(details)},'
        f'"object_id":{_string(object_id)},"object_type":{_string(object_type)},'
        f'"occurred_at":"{occurred_at_utc}","outcome":{_string(outcome)},'
        f'"purpose":{_string(purpose)},"request_id":{_string(request_id)},'
        f'"seq":{seq},"subject_ref":{_string(subject_ref)}}}'
    ).encode()
