#!/usr/bin/env python3
"""Verify Patterm audit evidence offline, without Patterm or Django.

    python3 verify_export.py EXPORT.jsonl [--kept CHECKPOINT.txt ...]
    python3 verify_export.py --inclusion PROOF.json --key VERIFIER_KEY
    python3 verify_export.py --consistency PROOF.json --kept CHECKPOINT.txt --key VERIFIER_KEY

Needs Python 3.11+ and the `cryptography` package: an auditor runs it on their own machine.

The audit log is a Merkle tree as RFC 9162 (certificate transparency) builds it: leaf i is the
canonical JSON of event i (the export and proofs carry it as text, byte for byte), its hash
SHA-256(0x00 || leaf), an inner node SHA-256(0x01 || left || right). A checkpoint is a C2SP
signed note: "<origin>\\n<tree size>\\n<base64 root hash>\\n",
signed with Ed25519 (the same format Go's golang.org/x/mod/sumdb/note reads).

An export (`manage.py export_audit`) is checked in one pass and constant memory: leaf indices
0, 1, 2, ... without gaps, every checkpoint's signature, and that the tree the events build has
the signed root at each checkpoint's size (a changed, dropped, inserted or reordered event
changes it). Events of the hash chain older versions wrote (`prev_hash`, `hash`) are checked
against that chain and its old checkpoints too. `--kept` compares checkpoints kept elsewhere
(the ones you saved last quarter) with the file: a log rewritten or cut since shows there.

`--inclusion` checks a proof (GET /api/audit/proof/inclusion, or a patient's download) that
an event is in the log; `--consistency` that the log of a kept checkpoint is a prefix of the
newer one in the proof (GET /api/audit/proof/consistency): nothing before it was rewritten.
VERIFIER_KEY is the log's published key, `name+hash+base64`, as the export header lists it.

Exit status 0: verified; 1: broken (the first problem is printed); 2: unreadable input.
"""

import argparse
import base64
import binascii
import hashlib
import json
import sys
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "patterm-audit-export/v2"
GENESIS_HASH = "0" * 64
ED25519 = 1  # the signed-note algorithm byte


class Broken(Exception):
    """The evidence does not hold; the message names what and where."""


class Unreadable(Exception):
    """The input is not evidence at all (not JSON, not UTF-8, missing fields)."""


# --- RFC 9162 hashing ---------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


class TreeBuilder:
    """A tree grown leaf by leaf, holding only the complete subtrees of its right edge (at
    most log2(n) hashes): constant memory at any size."""

    def __init__(self):
        self.size = 0
        self._edge: list[bytes] = []

    def append_hash(self, hashed: bytes) -> list[bytes]:
        """Add the leaf with this leaf hash; returns the hashes it completes, the leaf's first
        (in the order sumdb/tlog stores them: `StoredHashIndex`)."""
        completed = [hashed]
        n = self.size
        while n & 1:
            hashed = node_hash(self._edge.pop(), hashed)
            completed.append(hashed)
            n >>= 1
        self._edge.append(hashed)
        self.size += 1
        return completed

    def append(self, leaf: bytes) -> list[bytes]:
        return self.append_hash(leaf_hash(leaf))

    def root(self) -> bytes:
        if not self._edge:
            return EMPTY_ROOT
        hashed = self._edge[-1]
        for left in reversed(self._edge[:-1]):
            hashed = node_hash(left, hashed)
        return hashed


def _split(size: int) -> int:
    """k of RFC 9162: the largest power of two smaller than `size` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_root(proof: list[bytes], index: int, size: int, hashed: bytes) -> bytes:
    """The root that `proof` proves for leaf `index` with leaf hash `hashed` in a tree of
    `size` leaves (sumdb/tlog's RecordProof, leaf to root); raises Broken for a proof of the
    wrong shape."""

    def run(proof: list[bytes], lo: int, hi: int) -> bytes:
        if lo + 1 == hi:
            if proof:
                raise Broken("the inclusion proof has more hashes than the tree has levels")
            return hashed
        if not proof:
            raise Broken("the inclusion proof has too few hashes")
        k = _split(hi - lo)
        if index < lo + k:
            return node_hash(run(proof[:-1], lo, lo + k), proof[-1])
        return node_hash(proof[-1], run(proof[:-1], lo + k, hi))

    if not 0 <= index < size:
        raise Broken(f"leaf {index} lies outside a tree of {size} leaves")
    return run(proof, 0, size)


def consistency_roots(
    proof: list[bytes], old_size: int, new_size: int, old_root: bytes
) -> tuple[bytes, bytes]:
    """(old root, new root) that a consistency proof (sumdb/tlog's TreeProof) yields."""

    def run(proof: list[bytes], lo: int, hi: int) -> tuple[bytes, bytes]:
        if old_size == hi:
            if lo == 0:
                if proof:
                    raise Broken("the consistency proof has hashes to spare")
                return old_root, old_root
            if len(proof) != 1:
                raise Broken("the consistency proof has the wrong number of hashes")
            return proof[0], proof[0]
        if not proof:
            raise Broken("the consistency proof has too few hashes")
        k = _split(hi - lo)
        if old_size <= lo + k:
            old, new = run(proof[:-1], lo, lo + k)
            return old, node_hash(new, proof[-1])
        old, new = run(proof[:-1], lo + k, hi)
        return node_hash(proof[-1], old), node_hash(proof[-1], new)

    if not 1 <= old_size <= new_size:
        raise Broken(f"no consistency proof from size {old_size} to size {new_size}")
    return run(proof, 0, new_size)


# --- Signed notes (C2SP signed-note, Ed25519) ---------------------------------------------


def key_hash(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_raw).digest()[:4]


def verifier_parse(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """(name, key hash, key) of a verifier key `name+hash+base64(0x01 || key)`."""
    try:
        name, hash_hex, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
        if raw[0] != ED25519 or len(raw) != 33:
            raise ValueError
        key = Ed25519PublicKey.from_public_bytes(raw[1:])
        expected = bytes.fromhex(hash_hex)
    except (ValueError, IndexError, binascii.Error):
        raise Unreadable(f"{text.strip()!r} is not an Ed25519 verifier key") from None
    if key_hash(name, raw[1:]) != expected:
        raise Unreadable(f"the verifier key {name} does not match its own key hash")
    return name, expected, key


def note_open(note: str, verifiers: dict) -> tuple[str, list[str]]:
    """(body, names of the keys whose signature verified). `verifiers` maps (name, key hash)
    to a public key. Raises Broken when no known key signed the note or a known one's
    signature is false."""
    if not note.endswith("\n") or "\n\n" not in note:
        raise Broken("the checkpoint is not a signed note (no signature block)")
    split = note.rindex("\n\n") + 1
    body, signatures = note[:split], note[split + 1 :]
    signed_by = []
    unknown = []
    for line in signatures.splitlines():
        try:
            dash, name, encoded = line.split(" ")
            blob = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise Broken(f"the checkpoint's signature line {line!r} is malformed") from None
        if dash != "\u2014" or len(blob) < 5:
            raise Broken(f"the checkpoint's signature line {line!r} is malformed")
        key = verifiers.get((name, blob[:4]))
        if key is None:
            unknown.append(f"{name}+{blob[:4].hex()}")
            continue
        try:
            key.verify(blob[4:], body.encode())
        except InvalidSignature:
            raise Broken(f"the signature of {name} on the checkpoint is invalid") from None
        signed_by.append(name)
    if not signed_by:
        raise Broken(
            "the checkpoint is signed by no known key"
            + (f" (only by unknown {', '.join(unknown)})" if unknown else "")
        )
    return body, signed_by


def checkpoint_parse(body: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root hash) of a C2SP tlog-checkpoint body."""
    lines = body.split("\n")
    try:
        origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (IndexError, ValueError, binascii.Error):
        raise Broken("the checkpoint's body is not origin, tree size, root hash") from None
    if not origin or size < 0 or len(root) != 32 or lines[1] != str(size):
        raise Broken("the checkpoint's body is not origin, tree size, root hash")
    return origin, size, root


def checkpoint_verify(note: str, verifiers: dict, origin: str | None = None):
    """(origin, size, root) of a checkpoint whose signature verifies."""
    body, _ = note_open(note, verifiers)
    found = checkpoint_parse(body)
    if origin is not None and found[0] != origin:
        raise Broken(f"the checkpoint is of the log {found[0]!r}, not {origin!r}")
    return found


# --- Leaves ------------------------------------------------------------------------------


def legacy_checkpoint_message(checkpoint: dict) -> bytes:
    created_at = datetime.fromisoformat(checkpoint["created_at"]).astimezone(UTC)
    return (
        f"patterm-audit-checkpoint/v1\n{checkpoint['head_seq']}\n{checkpoint['head_hash']}\n"
        f"{created_at.isoformat(timespec='microseconds')}\n"
    ).encode()


def legacy_key(key_id: str, raw: str) -> Ed25519PublicKey:
    """A key of the old chain's checkpoints, after checking that `key_id` names it."""
    try:
        raw_bytes = base64.b64decode(raw, validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw_bytes)
    except (ValueError, binascii.Error):
        raise Broken(f"the header's key id {key_id} holds no Ed25519 public key") from None
    if hashlib.sha256(raw_bytes).hexdigest()[:16] != key_id:
        raise Broken(f"the header's key id {key_id} does not name the public key it holds")
    return key


# --- The export -------------------------------------------------------------------------


def _verifiers(keys: list[str]) -> dict:
    verifiers = {}
    for text in keys:
        name, hashed, key = verifier_parse(text)
        verifiers[(name, hashed)] = key
    return verifiers


def _json(line: str, number: int) -> dict:
    try:
        item = json.loads(line)
    except (ValueError, RecursionError):
        raise Unreadable(f"line {number} is not JSON (is the file cut short?)") from None
    if not isinstance(item, dict):
        raise Unreadable(f"line {number} is not a JSON object")
    return item


def verify(lines, kept: list[tuple[int, bytes]] = (), extra_keys: list[str] = ()) -> dict:
    """Check an export, line by line; returns a summary, raises Broken or Unreadable."""
    numbered = enumerate(lines, 1)
    try:
        header = _json(next(numbered)[1], 1)
    except StopIteration:
        raise Unreadable("the file is empty") from None
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise Unreadable(f"not a {FORMAT} file")
    try:
        origin = header["origin"]
        verifiers = _verifiers([*header["verifier_keys"], *extra_keys])
        legacy_keys = {
            key_id: legacy_key(key_id, raw) for key_id, raw in header["legacy_keys"].items()
        }
    except (KeyError, TypeError, AttributeError):
        raise Unreadable("the header lacks origin, verifier_keys or legacy_keys") from None
    kept_at = dict(kept)
    tree = TreeBuilder()
    chain_prev, chain_seq, checkpoints, legacy_checkpoints, last_size = GENESIS_HASH, 0, 0, 0, 0
    last_root = None
    for number, line in numbered:
        item = _json(line, number)
        try:
            kind = item["type"]
            if kind == "event":
                index = item["leaf_index"]
                if index != tree.size:
                    raise Broken(
                        f"line {number}: leaf {tree.size} is missing or out of order "
                        f"(the line holds leaf {index})"
                    )
                leaf = item["leaf"].encode()
                if item.get("hash") is not None:  # an event of the old hash chain
                    chain_seq += 1
                    if (
                        json.loads(item["leaf"])["seq"] != chain_seq
                        or item["prev_hash"] != chain_prev
                    ):
                        raise Broken(f"leaf {index}: does not chain from the event before it")
                    digest = hashlib.sha256(chain_prev.encode() + leaf).hexdigest()
                    if digest != item["hash"]:
                        raise Broken(f"leaf {index}: its content does not match its chain hash")
                    chain_prev = digest
                tree.append(leaf)
                if tree.size in kept_at and tree.root() != kept_at.pop(tree.size):
                    raise Broken(
                        f"line {number}: the file's tree of {tree.size} events has another root "
                        f"than the checkpoint of size {tree.size} you kept: a fork, or an event "
                        f"before leaf {tree.size} was changed, dropped or reordered"
                    )
            elif kind == "checkpoint":
                try:
                    _, size, root = checkpoint_verify(item["note"], verifiers, origin)
                except Broken as problem:
                    raise Broken(f"line {number}: {problem}") from None
                if checkpoints and size == last_size and root != last_root:
                    raise Broken(
                        f"line {number}: two checkpoints of size {size} with different roots: "
                        "a fork"
                    )
                if size < last_size:
                    raise Broken(
                        f"line {number}: the checkpoint of size {size} follows one of size "
                        f"{last_size}: the tree shrank"
                    )
                if size > tree.size:
                    raise Broken(
                        f"a checkpoint signs {size} events but the file holds {tree.size} before "
                        "it: the log's tail was cut"
                    )
                if size < tree.size:
                    raise Broken(f"line {number}: the checkpoint of size {size} is out of place")
                if root != tree.root():
                    raise Broken(
                        f"the tree of {size} events does not have the signed root: an event "
                        f"among leaves {last_size} to {size - 1} was changed, dropped or "
                        "reordered"
                    )
                checkpoints, last_size, last_root = checkpoints + 1, size, root
            elif kind == "legacy_checkpoint":
                key = legacy_keys.get(item["key_id"])
                if key is None:
                    raise Broken(f"old checkpoint #{item['head_seq']}: unknown key")
                try:
                    signature = base64.b64decode(item["signature"], validate=True)
                    key.verify(signature, legacy_checkpoint_message(item))
                except (InvalidSignature, ValueError, binascii.Error):
                    raise Broken(
                        f"old checkpoint #{item['head_seq']}: the signature is invalid"
                    ) from None
                if item["head_seq"] != chain_seq or item["head_hash"] != chain_prev:
                    raise Broken(
                        f"the old chain at #{item['head_seq']} does not match its signed "
                        "checkpoint: it was cut or rewritten"
                    )
                legacy_checkpoints += 1
            else:
                raise Unreadable(f"line {number}: unknown line type {kind!r}")
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            if isinstance(error, Unreadable | Broken):
                raise
            raise Unreadable(f"line {number}: a {item.get('type')!r} line lacks {error}") from None
    if tree.size and not checkpoints:
        raise Broken("the file holds no signed checkpoint: nothing proves it was not rewritten")
    if kept_at:
        size = min(kept_at)
        raise Broken(
            f"the tree shrank: you kept a checkpoint of size {size}, the file holds {tree.size} "
            "events (the log's tail was cut)"
        )
    return {
        "events": tree.size,
        "checkpoints": checkpoints,
        "legacy_checkpoints": legacy_checkpoints,
        "signed_to": last_size,
        "root": base64.b64encode(tree.root()).decode(),
        "origin": origin,
    }


def proof_hashes(values) -> list[bytes]:
    """A proof's base64 hashes as bytes; Unreadable unless each is a SHA-256 hash."""
    try:
        hashes = [base64.b64decode(value, validate=True) for value in values]
    except (TypeError, ValueError, binascii.Error):
        raise Unreadable("the proof's hashes are not base64") from None
    if any(len(value) != 32 for value in hashes):
        raise Unreadable("the proof's hashes are not SHA-256 hashes")
    return hashes


def inclusion_verify(proof: dict, verifiers: dict) -> str:
    """Check an inclusion proof document; returns a line to show."""
    try:
        _, size, root = checkpoint_verify(proof["checkpoint"], verifiers)
        index, tree_size = proof["leaf_index"], proof["tree_size"]
        hashes = proof_hashes(proof["proof"])
        leaf = proof["leaf"].encode()
    except (KeyError, TypeError, AttributeError) as error:
        if isinstance(error, Unreadable):
            raise
        raise Unreadable(f"not an inclusion proof ({error})") from None
    if tree_size != size:
        raise Broken(f"the proof is for a tree of {tree_size} leaves, the checkpoint has {size}")
    if inclusion_root(hashes, index, size, leaf_hash(leaf)) != root:
        raise Broken(f"leaf {index} is not in the signed tree of {size} events")
    return f"INCLUDED: leaf {index} is in the signed tree of {size} events: {proof['leaf']}"


def consistency_verify(proof: dict, kept_note: str, verifiers: dict) -> str:
    try:
        origin, old_size, old_root = checkpoint_verify(kept_note, verifiers)
        _, new_size, new_root = checkpoint_verify(proof["checkpoint"], verifiers, origin)
        hashes = proof_hashes(proof["proof"])
        claimed_from, claimed_to = proof["from"], proof["to"]
    except (KeyError, TypeError) as error:
        raise Unreadable(f"not a consistency proof ({error})") from None
    if (claimed_from, claimed_to) != (old_size, new_size):
        raise Broken(
            f"the proof is from {claimed_from} to {claimed_to}, the checkpoints are of "
            f"{old_size} and {new_size}"
        )
    if new_size < old_size:
        raise Broken(f"the newer checkpoint has {new_size} events, the kept one {old_size}: shrank")
    if new_size == old_size:
        if hashes or old_root != new_root:
            raise Broken(f"two checkpoints of size {old_size} with different roots: a fork")
        return f"CONSISTENT: both checkpoints sign the same {old_size} events"
    old, new = consistency_roots(hashes, old_size, new_size, old_root)
    if old != old_root or new != new_root:
        raise Broken(
            f"the log of {new_size} events does not extend the kept one of {old_size}: "
            "something before it was rewritten"
        )
    return f"CONSISTENT: the log of {new_size} events extends the kept one of {old_size}"


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise Unreadable(f"{path} is not UTF-8 text") from None


def note_body(note: str) -> str:
    return note[: note.rindex("\n\n") + 1] if "\n\n" in note else note


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="verify_export.py", description=__doc__.strip().splitlines()[0]
    )
    parser.add_argument("export", nargs="?", help="a JSON Lines export of manage.py export_audit")
    parser.add_argument("--kept", action="append", default=[], help="a checkpoint kept earlier")
    parser.add_argument("--inclusion", help="an inclusion proof (JSON) to check")
    parser.add_argument("--consistency", help="a consistency proof (JSON) to check")
    parser.add_argument("--key", action="append", default=[], help="a verifier key of the log")
    arguments = parser.parse_args(argv[1:])
    try:
        if arguments.inclusion or arguments.consistency:
            if not arguments.key:
                parser.error("--inclusion and --consistency need the log's --key")
            verifiers = _verifiers(arguments.key)
            if arguments.inclusion:
                print(inclusion_verify(_load(arguments.inclusion), verifiers))
            if arguments.consistency:
                if len(arguments.kept) != 1:
                    parser.error("--consistency needs one --kept checkpoint")
                kept = _read_text(arguments.kept[0])
                print(consistency_verify(_load(arguments.consistency), kept, verifiers))
            return 0
        if not arguments.export:
            parser.error("give an export file, or --inclusion / --consistency")
        kept = [(size, root) for size, root in _kept(arguments.kept, arguments.key)]
        with open(arguments.export, encoding="utf-8") as export:
            summary = verify(export, kept=kept, extra_keys=arguments.key)
    except Broken as problem:
        print(f"BROKEN: {problem}")
        return 1
    except Unreadable as problem:
        print(f"cannot read the evidence: {problem}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print("cannot read the evidence: the file is not UTF-8 text", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    print(
        f"INTACT: {summary['events']} events, {summary['checkpoints']} signed checkpoints of "
        f"{summary['origin']}, root {summary['root']}"
    )
    if summary["legacy_checkpoints"]:
        print(f"and {summary['legacy_checkpoints']} checkpoints of the old hash chain")
    if summary["signed_to"] < summary["events"]:
        print(
            f"leaves {summary['signed_to']} to {summary['events'] - 1} come after the last "
            "checkpoint: no signature vouches for them yet"
        )
    return 0


def _kept(paths: list[str], keys: list[str]) -> list[tuple[int, bytes]]:
    """Kept checkpoints: their signatures are checked when the log's key is given."""
    kept = []
    verifiers = _verifiers(keys) if keys else None
    for path in paths:
        note = _read_text(path)
        try:
            if verifiers:
                _, size, root = checkpoint_verify(note, verifiers)
            else:
                _, size, root = checkpoint_parse(note_body(note))
        except Broken as problem:
            raise Broken(f"the kept checkpoint {path}: {problem}") from None
        kept.append((size, root))
    return kept


def _load(path: str) -> dict:
    try:
        document = json.loads(_read_text(path))
    except ValueError:
        raise Unreadable(f"{path} is not JSON") from None
    if not isinstance(document, dict):
        raise Unreadable(f"{path} is not a JSON object")
    return document


if __name__ == "__main__":
    sys.exit(main(sys.argv))
