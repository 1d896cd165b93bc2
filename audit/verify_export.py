#!/usr/bin/env python3
"""Verify a Patterm audit export offline: python3 verify_export.py audit-export.jsonl

Needs Python 3.11+ and the `cryptography` package, nothing of Patterm or Django: an auditor
runs it on their own machine. It checks that

1. every event chains from the one before it (sequence numbers 1, 2, 3, ... without gaps,
   `prev_hash` equal to the previous `hash`, the first from 64 zeros), and that each event's
   `hash` is SHA-256(prev_hash || canonical JSON of the event);
2. every checkpoint is signed by one of the public keys in the header (Ed25519);
3. the event at each checkpoint has exactly the signed hash (no rewrite since), and no
   checkpoint signs more events than the file holds (no cut tail).

Compare the public key ids in the header with the ones the operator published (docs/audit.md).
Exit status 0: intact; 1: the first problem found is printed; 2: the file cannot be read.
"""

import base64
import hashlib
import json
import sys
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS_HASH = "0" * 64
FORMAT = "patterm-audit-export/v1"
# The hashed fields, as in Patterm's audit/chain.py.
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


def canonical_json(event: dict) -> str:
    payload = {name: event[name] for name in HASHED_FIELDS}
    occurred_at = datetime.fromisoformat(payload["occurred_at"])
    payload["occurred_at"] = occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def checkpoint_message(checkpoint: dict) -> bytes:
    created_at = datetime.fromisoformat(checkpoint["created_at"]).astimezone(UTC)
    return (
        f"patterm-audit-checkpoint/v1\n{checkpoint['head_seq']}\n{checkpoint['head_hash']}\n"
        f"{created_at.isoformat(timespec='microseconds')}\n"
    ).encode()


class Broken(Exception):
    pass


def verify(lines) -> tuple[int, int, str]:
    """(events, checkpoints, head hash) of an intact export; raises Broken otherwise."""
    header = json.loads(next(lines))
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise Broken(f"not a {FORMAT} file")
    keys = {
        key_id: Ed25519PublicKey.from_public_bytes(base64.b64decode(raw))
        for key_id, raw in header["public_keys"].items()
    }
    expected_seq, expected_prev, hashes_at = 1, GENESIS_HASH, {}
    checkpoints = []
    for number, line in enumerate(lines, 2):
        item = json.loads(line)
        if item["type"] == "checkpoint":
            checkpoints.append(item)
            continue
        if item["type"] != "event" or checkpoints:
            raise Broken(f"line {number}: unexpected {item['type']!r} line")
        if item["seq"] != expected_seq:
            raise Broken(f"event #{expected_seq} is missing (line {number} holds #{item['seq']})")
        if item["prev_hash"] != expected_prev:
            raise Broken(f"event #{expected_seq} does not chain from the event before it")
        digest = hashlib.sha256((item["prev_hash"] + canonical_json(item)).encode()).hexdigest()
        if digest != item["hash"]:
            raise Broken(f"event #{expected_seq}: its content does not match its hash")
        hashes_at[expected_seq] = item["hash"]
        expected_seq, expected_prev = expected_seq + 1, item["hash"]
    last_seq = expected_seq - 1
    for checkpoint in checkpoints:
        key = keys.get(checkpoint["key_id"])
        if key is None:
            raise Broken(
                f"checkpoint #{checkpoint['head_seq']}: unknown key {checkpoint['key_id']}"
            )
        try:
            key.verify(base64.b64decode(checkpoint["signature"]), checkpoint_message(checkpoint))
        except InvalidSignature:
            raise Broken(
                f"checkpoint #{checkpoint['head_seq']}: the signature is invalid"
            ) from None
        if checkpoint["head_seq"] > last_seq:
            raise Broken(
                f"checkpoint #{checkpoint['head_seq']} signs more events than the file holds "
                f"(it ends at #{last_seq}): the tail was cut"
            )
        if hashes_at[checkpoint["head_seq"]] != checkpoint["head_hash"]:
            raise Broken(
                f"event #{checkpoint['head_seq']} does not match its signed checkpoint: the "
                "chain was rewritten"
            )
    return last_seq, len(checkpoints), expected_prev


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as export:
            events, checkpoints, head = verify(iter(export))
    except Broken as problem:
        print(f"BROKEN: {problem}")
        return 1
    except (OSError, ValueError, KeyError, StopIteration) as error:
        print(f"cannot read {argv[1]}: {error!r}", file=sys.stderr)
        return 2
    print(f"INTACT: {events} events, {checkpoints} signed checkpoints, head #{events} {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
