"""The hash chain: how a row's hash is computed from the row before it.

hash = SHA-256(prev_hash || canonical JSON of the row's fields). The canonical JSON sorts keys,
has no spaces and writes times in UTC with microseconds, so the same row hashes the same on
SQLite and PostgreSQL and after any dump and restore.
"""

import hashlib
import json
from datetime import UTC, datetime

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


def canonical_json(row: dict) -> str:
    payload = {name: row[name] for name in HASHED_FIELDS}
    occurred_at: datetime = payload["occurred_at"]
    payload["occurred_at"] = occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, row: dict) -> str:
    return hashlib.sha256((prev_hash + canonical_json(row)).encode()).hexdigest()
