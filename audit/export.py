"""The evidence file: the audit log and its checkpoints as JSON Lines, verifiable offline.

Line 1 is a header (format, time, the public keys that sign checkpoints), then one line per event
in sequence order, then one line per checkpoint. `audit/verify_export.py` checks such a file with
the standard library and `cryptography` only.
"""

import base64
import json
from collections.abc import Callable, Iterator

from django.utils import timezone

from audit import signing
from audit.chain import HASHED_FIELDS, canonical_address
from audit.models import AuditCheckpoint, AuditEvent

FORMAT = "patterm-audit-export/v1"


def _event_line(row: dict) -> dict:
    line = {"type": "event", **{name: row[name] for name in HASHED_FIELDS}}
    line["occurred_at"] = row["occurred_at"].isoformat(timespec="microseconds")
    line["client_address"] = canonical_address(row["client_address"])
    line["prev_hash"], line["hash"] = row["prev_hash"], row["hash"]
    return line


def export_lines(
    *, chunk_size: int = 2000, on_progress: Callable[[int], None] | None = None
) -> Iterator[str]:
    public_keys = {
        key: base64.b64encode(signing.public_key_bytes(public_key)).decode()
        for key, public_key in signing.verify_keys().items()
    }
    header = {
        "type": "header",
        "format": FORMAT,
        "exported_at": timezone.now().isoformat(timespec="microseconds"),
        "public_keys": public_keys,
    }
    yield json.dumps(header, sort_keys=True)
    rows = AuditEvent.objects.order_by("seq").values(*HASHED_FIELDS, "prev_hash", "hash")
    for count, row in enumerate(rows.iterator(chunk_size=chunk_size), 1):
        yield json.dumps(_event_line(row), sort_keys=True, ensure_ascii=False)
        if on_progress and count % chunk_size == 0:
            on_progress(chunk_size)
    for checkpoint in AuditCheckpoint.objects.order_by("head_seq").iterator():
        yield json.dumps(
            {
                "type": "checkpoint",
                "head_seq": checkpoint.head_seq,
                "head_hash": checkpoint.head_hash,
                "created_at": checkpoint.created_at.isoformat(timespec="microseconds"),
                "key_id": checkpoint.key_id,
                "signature": checkpoint.signature,
            },
            sort_keys=True,
        )
