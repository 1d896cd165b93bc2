"""A witness for the audit log (issue 15, decision 0017), in the spirit of C2SP tlog-witness.

A second party (a data-protection officer, another clinic, a notary) keeps the last checkpoint
it co-signed for each log and co-signs a new one only after checking, with the log's consistency
proof, that the new tree extends that one: a log that shows the witness one history and an
auditor another (a fork), that shrinks or that rewrote its past cannot get the witness's
signature. Anyone who trusts the witness's key then trusts a co-signed checkpoint without having
seen the log's history themselves.

No database: the witness runs on its own machine with a state file (JSON, one entry per log
origin), its own Ed25519 key and the log's verifier key(s) it was told to trust. Hashing and
proof checking are verify_export.py's (the same code the offline verifier runs); the signature
line is audit/signing.py's `note_sign`, so Go's golang.org/x/mod/sumdb/note verifies it.
"""

import base64
import binascii
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import signing
from audit.verify_export import (
    Broken,
    Unreadable,
    checkpoint_parse,
    consistency_roots,
    key_hash,
    note_open,
    proof_hashes,
    verifier_parse,
)

STATE_FORMAT = "patterm-witness-state/v1"


class Refused(Exception):
    """The witness does not co-sign; the message says why (a fork, a shrink, a bad proof...)."""


@dataclass(frozen=True)
class Witnessed:
    origin: str
    old_size: int  # 0: the first checkpoint of this log (trusted on first use)
    new_size: int
    cosigned: str  # the checkpoint with the witness's signature line added
    unchanged: bool  # the same tree as last time, co-signed again


# --- Keys ---------------------------------------------------------------------------------


def key_name_check(name: str) -> str:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise Unreadable(
            f"the witness name {name!r} must be non-empty, without spaces or '+' "
            "(e.g. witness.example.org)"
        )
    return name


def private_key_parse(text: str, source: str) -> Ed25519PrivateKey:
    """A raw 32-byte Ed25519 private key in base64 (the format of PATTERM_AUDIT_SIGNING_KEY)."""
    try:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise Unreadable(f"{source} is not a raw 32-byte Ed25519 private key in base64") from None


def new_private_key_text() -> str:
    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    return base64.b64encode(raw).decode() + "\n"


def verifier_key(key: Ed25519PrivateKey, name: str) -> str:
    """The witness's public verifier key `name+hash+base64`, to publish for those who check
    its co-signatures (note.NewVerifier reads it)."""
    return signing.note_verifier_key(key.public_key(), name)


def log_verifiers(keys: list[str]) -> dict:
    """(name, key hash) -> public key of the log keys the witness trusts."""
    verifiers = {}
    for text in keys:
        name, hashed, key = verifier_parse(text)
        verifiers[(name, hashed)] = key
    return verifiers


# --- State --------------------------------------------------------------------------------


@contextlib.contextmanager
def state_locked(path: Path) -> Iterator[None]:
    """Hold `<state>.lock` from reading the state to writing it: two runs at once could
    otherwise both start from the same last checkpoint and co-sign two forks of it."""
    try:
        handle = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise Unreadable(f"the lock file {path}.lock cannot be opened ({error.strerror})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                f"another audit_witness run holds {path}.lock; run one at a time"
            ) from None
        yield
    finally:
        os.close(handle)


def state_read(path: Path) -> dict:
    """{origin: {"size", "root", "checkpoint"}}; a file that does not exist yet is empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise Unreadable(f"the state file {path} is not UTF-8 text") from None
    except OSError as error:
        raise Unreadable(f"the state file {path} cannot be read ({error.strerror})") from None
    try:
        state = json.loads(text)
        if state.get("format") != STATE_FORMAT:
            raise ValueError
        logs = state["logs"]
        for entry in logs.values():
            if not (isinstance(entry["size"], int) and entry["size"] >= 1):
                raise ValueError
            if len(base64.b64decode(entry["root"], validate=True)) != 32:
                raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise Unreadable(
            f"the state file {path} is not a witness state ({STATE_FORMAT}); restore it from "
            "your backup rather than starting afresh, or the witness would trust anything"
        ) from None
    return logs


def state_write(path: Path, logs: dict) -> None:
    """Atomically: a crash leaves the old state or the new one, never half a file."""
    document = json.dumps({"format": STATE_FORMAT, "logs": logs}, indent=2, sort_keys=True)
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(document + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- Co-signing ---------------------------------------------------------------------------


def _line_signer(line: str) -> str:
    """name+keyhash of a signature line (the name alone when its signature is not base64)."""
    parts = line.split(" ")
    if len(parts) != 3:
        return line
    try:
        return f"{parts[1]}+{base64.b64decode(parts[2], validate=True)[:4].hex()}"
    except (binascii.Error, ValueError):
        return parts[1]


def _signature_lines(note: str) -> list[str]:
    return note[note.rindex("\n\n") + 2 :].splitlines() if "\n\n" in note else []


def checkpoint_open(note: str, verifiers: dict) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint signed by a trusted log key under the log's own
    name (its origin); Refused naming the key otherwise."""
    trusted = {f"{name}+{hashed.hex()}" for name, hashed in verifiers}
    signers = [_line_signer(line) for line in _signature_lines(note)]
    if signers and not trusted & set(signers):
        raise Refused(
            f"the checkpoint is signed by {', '.join(signers)}: not a log key this witness "
            f"trusts ({', '.join(sorted(trusted))}); pass the log's key with --log-key if it "
            "rotated its key"
        )
    try:
        body, signed_by = note_open(note, verifiers)
        origin, size, root = checkpoint_parse(body)
    except Broken as problem:
        raise Refused(f"the checkpoint does not verify: {problem}") from None
    if origin not in signed_by:
        raise Refused(
            f"the checkpoint of the log {origin!r} is signed by the key of {signed_by[0]!r}, "
            "not by the log's own key"
        )
    return origin, size, root


def note_cosign(note: str, key: Ed25519PrivateKey, name: str) -> str:
    """`note` with the witness's Ed25519 signature line over its body added (a line of the
    same key from an earlier run replaced)."""
    body = note[: note.rindex("\n\n") + 1]
    mine = signing.note_sign(body, key, name).rsplit("\n", 2)[-2]
    own = f"{name}+{key_hash(name, signing.public_key_bytes(key.public_key())).hex()}"
    lines = [line for line in _signature_lines(note) if _line_signer(line) != own]
    return body + "\n" + "\n".join([*lines, mine]) + "\n"


def witness(
    *,
    note: str,
    proof: dict | None,
    state: dict,
    verifiers: dict,
    key: Ed25519PrivateKey,
    name: str,
) -> Witnessed:
    """Check `note` against the last checkpoint co-signed for its log (in `state`, which is
    updated on success) with the consistency `proof` (GET /api/audit/proof/consistency), and
    co-sign it. Refused: an untrusted key, a smaller tree, the same size with another root (a
    fork), a proof that does not prove the new tree extends the old one."""
    origin, new_size, new_root = checkpoint_open(note, verifiers)
    last = state.get(origin)
    old_size = last["size"] if last else 0
    unchanged = False
    if new_size == 0:
        raise Refused("the checkpoint signs an empty log: nothing to witness yet")
    if last is None:
        pass  # trusted on first use: every tree extends the empty one (decision 0017)
    elif new_size < old_size:
        raise Refused(
            f"the log {origin} shrank: this checkpoint has {new_size} events, the witness "
            f"co-signed {old_size} before. Events were removed: keep both checkpoints as evidence"
        )
    elif new_size == old_size:
        if base64.b64decode(last["root"]) != new_root:
            raise Refused(
                f"a fork of the log {origin}: this checkpoint and the one the witness co-signed "
                f"both have {new_size} events but different roots "
                f"({base64.b64encode(new_root).decode()} against {last['root']}): "
                "keep both checkpoints as evidence"
            )
        unchanged = True
    else:
        _consistency_check(proof, origin, old_size, new_size, last["root"], new_root)
    cosigned = note_cosign(note, key, name)
    state[origin] = {
        "size": new_size,
        "root": base64.b64encode(new_root).decode(),
        "checkpoint": cosigned,
    }
    return Witnessed(origin, old_size, new_size, cosigned, unchanged)


def _consistency_check(proof, origin, old_size, new_size, old_root_text, new_root) -> None:
    if proof is None:
        raise Refused(
            f"the witness co-signed {old_size} events of {origin} before: a consistency proof "
            f"from {old_size} to {new_size} is needed (--consistency, or --url)"
        )
    try:
        claimed = (proof["from"], proof["to"])
    except (KeyError, TypeError):
        raise Unreadable("the consistency proof has no `from` and `to`") from None
    if claimed != (old_size, new_size):
        raise Refused(
            f"the consistency proof is from {claimed[0]} to {claimed[1]}, but the witness needs "
            f"one from {old_size} (its last co-signed checkpoint) to {new_size}"
        )
    old_root = base64.b64decode(old_root_text)
    try:
        hashes = proof_hashes(proof["proof"])
    except (KeyError, TypeError):
        raise Unreadable("the consistency proof has no `proof` hashes") from None
    try:
        old, new = consistency_roots(hashes, old_size, new_size, old_root)
    except Broken as problem:
        raise Refused(
            f"the consistency proof from {old_size} to {new_size} fails: {problem}"
        ) from None
    if old != old_root or new != new_root:
        raise Refused(
            f"the consistency proof fails: the log {origin} of {new_size} events does not extend "
            f"the {old_size} events the witness co-signed. Something before was rewritten, or "
            "the log shows different histories: keep both checkpoints as evidence"
        )
