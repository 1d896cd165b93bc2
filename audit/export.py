"""The evidence file: the log's leaves and its signed checkpoints as JSON Lines, verifiable
offline in one pass.

Line 1 is a header (format, time, the log's origin and verifier keys, the old chain's public
keys), then one line per leaf in leaf order (the leaf's bytes as text), each checkpoint right
`audit/verify_export.py` (stdlib and `cryptography`) and `audit/tlogcheck` (Go's sumdb/note and
sumdb/tlog) check such a file.
"""

import base64
import json
from collections.abc import Callable, Iterator

from django.utils import timezone

from audit import integrator, signing
from audit.chain import HASHED_FIELDS, canonical_json
from audit.models import AuditCheckpoint, AuditEvent, AuditTreeCheckpoint

FORMAT = "patterm-audit-export/v2"


def _event_line(row: dict) -> dict:
    """The leaf itself (the event's canonical JSON, as text): what the tree hashes, byte for
    byte, so that no verifier has to rebuild canonical JSON."""
    line = {"type": "event", "leaf_index": row["leaf_index"], "leaf": canonical_json(row)}
    if row["hash"] is not None:
        line["prev_hash"], line["hash"] = row["prev_hash"], row["hash"]
    return line


def _legacy_line(checkpoint: AuditCheckpoint) -> str:
    return json.dumps(
        {
            "type": "legacy_checkpoint",
            "head_seq": checkpoint.head_seq,
            "head_hash": checkpoint.head_hash,
            "created_at": checkpoint.created_at.isoformat(timespec="microseconds"),
            "key_id": checkpoint.key_id,
            "signature": checkpoint.signature,
        },
        sort_keys=True,
    )


def export_lines(
    *, chunk_size: int = 2000, on_progress: Callable[[int], None] | None = None
) -> Iterator[str]:
    size = integrator.tree_size()
    header = {
        "type": "header",
        "format": FORMAT,
        "exported_at": timezone.now().isoformat(timespec="microseconds"),
        "origin": signing.log_origin(),
        "verifier_keys": signing.note_verifier_keys(),
        "legacy_keys": {
            key: base64.b64encode(signing.public_key_bytes(public_key)).decode()
            for key, public_key in signing.verify_keys().items()
        },
    }
    yield json.dumps(header, sort_keys=True)
    checkpoints = AuditTreeCheckpoint.objects.filter(tree_size__lte=size).order_by("tree_size")
    checkpoints = iter(checkpoints.values_list("tree_size", "note").iterator())
    legacy = iter(AuditCheckpoint.objects.order_by("head_seq").iterator())
    next_checkpoint, next_legacy = next(checkpoints, None), next(legacy, None)
    rows = AuditEvent.objects.filter(leaf_index__lt=size).order_by("leaf_index")
    rows = rows.values("leaf_index", *HASHED_FIELDS, "prev_hash", "hash")
    for count, row in enumerate(rows.iterator(chunk_size=chunk_size), 1):
        yield json.dumps(_event_line(row), sort_keys=True, ensure_ascii=False)
        while next_legacy is not None and row["hash"] and next_legacy.head_seq == row["seq"]:
            yield _legacy_line(next_legacy)
            next_legacy = next(legacy, None)
        while next_checkpoint is not None and next_checkpoint[0] == count:
            yield json.dumps({"type": "checkpoint", "note": next_checkpoint[1]})
            next_checkpoint = next(checkpoints, None)
        if on_progress and count % chunk_size == 0:
            on_progress(chunk_size)
    # What the events did not reach (a cut tail) still goes out: the verifier names it.
    while next_legacy is not None:
        yield _legacy_line(next_legacy)
        next_legacy = next(legacy, None)
    while next_checkpoint is not None:
        yield json.dumps({"type": "checkpoint", "note": next_checkpoint[1]})
        next_checkpoint = next(checkpoints, None)
