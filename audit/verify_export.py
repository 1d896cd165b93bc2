#!/usr/bin/env python3
"""Verify a Patterm audit export offline: python3 verify_export.py audit-export.jsonl

Needs Python 3.11+ and the `cryptography` package, nothing of Patterm or Django: an auditor
runs it on their own machine. It checks that

1. every event chains from the one before it (sequence numbers 1, 2, 3, ... without gaps,
   `prev_hash` equal to the previous `hash`, the first from 64 zeros), and that each event's
   `hash` is SHA-256(prev_hash || canonical JSON of the event);
2. every checkpoint is signed by one of the public keys in the header (Ed25519), and each
   key id in the header is the one its key has (SHA-256 of the raw key, 16 hex digits);
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


def public_key(key_id: str, raw: str) -> Ed25519PublicKey:
    """The header's key, after checking that `key_id` names it (the first 16 hex digits of
    SHA-256 over the raw key): the ids are what the operator publishes, so a key swapped in
    under a published id must not pass."""
    try:
        raw_bytes = base64.b64decode(raw, validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw_bytes)
    except ValueError:
        raise Broken(f"the header's key id {key_id} holds no Ed25519 public key") from None
    if hashlib.sha256(raw_bytes).hexdigest()[:16] != key_id:
        raise Broken(f"the header's key id {key_id} does not name the public key it holds")
    return key


def verify(lines) -> tuple[int, list[dict], str]:
    """(events, checkpoints, head hash) of an intact export; raises Broken otherwise."""
    header = json.loads(next(lines))
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise Broken(f"not a {FORMAT} file")
    keys = {key_id: public_key(key_id, raw) for key_id, raw in header["public_keys"].items()}
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
    if not checkpoints and last_seq:
        # The chain alone proves nothing against a rewrite: export_audit always signs one.
        raise Broken("the file holds no signed checkpoint: nothing proves it was not rewritten")
    for checkpoint in checkpoints:
        key = keys.get(checkpoint["key_id"])
        if key is None:
            raise Broken(
                f"checkpoint #{checkpoint['head_seq']}: unknown key {checkpoint['key_id']}"
            )
        try:
            signature = base64.b64decode(checkpoint["signature"], validate=True)
            key.verify(signature, checkpoint_message(checkpoint))
        except (InvalidSignature, ValueError):  # ValueError: not base64, or a bad time
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
    return last_seq, checkpoints, expected_prev


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
    signed_to = max((checkpoint["head_seq"] for checkpoint in checkpoints), default=0)
    key_ids = sorted({checkpoint["key_id"] for checkpoint in checkpoints})
    print(f"INTACT: {events} events, {len(checkpoints)} signed checkpoints, head #{events} {head}")
    print(f"signed by key id(s) {', '.join(key_ids)}: compare with the ids the operator published")
    if signed_to < events:
        print(
            f"events #{signed_to + 1} to #{events} come after the last checkpoint: the chain "
            "alone vouches for them"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
