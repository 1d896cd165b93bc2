"""The evidence file: `manage.py export_audit` writes it, `audit/verify_export.py` (standard
library and `cryptography`, run as its own process without Django) accepts it intact and rejects
each way of tampering with it."""

import ast
import base64
import datetime
import hashlib
import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.management import CommandError, call_command

from audit import signing, verify_export
from audit.chain import GENESIS_HASH, HASHED_FIELDS
from audit.models import AuditAction, AuditCheckpoint, AuditEvent
from audit.services import checkpoint_create
from audit.tests.builders import new_signing_key
from audit.tests.helpers import append_varied

pytestmark = pytest.mark.django_db

VERIFIER = Path(verify_export.__file__).resolve()
EVENTS = 25


def export(path: Path) -> str:
    out = StringIO()
    call_command("export_audit", str(path), stdout=out, stderr=StringIO())
    return out.getvalue()


def run_verifier(path: Path) -> subprocess.CompletedProcess:
    """The verifier as an auditor runs it: its own process, isolated mode (no PYTHONPATH, no
    current directory on the path), an empty environment, started elsewhere."""
    return subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-I", str(VERIFIER), str(path)],
        cwd=path.parent,
        env={},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


@pytest.fixture
def evidence(settings, tmp_path) -> Path:
    """An export of 25 varied events, checkpoints at 10 and 20 (automatic) and 25 (the
    export's own)."""
    settings.PATTERM_AUDIT_CHECKPOINT_EVERY = 10
    for index in range(1, EVENTS + 1):
        append_varied(index)
    path = tmp_path / "audit-export.jsonl"
    export(path)
    return path


def events_of(items: list[dict]) -> list[dict]:
    return [item for item in items if item["type"] == "event"]


def checkpoints_of(items: list[dict]) -> list[dict]:
    return [item for item in items if item["type"] == "checkpoint"]


def event(items: list[dict], seq: int) -> dict:
    return next(item for item in events_of(items) if item["seq"] == seq)


def rehash_from(items: list[dict], seq: int) -> None:
    """Recompute `prev_hash` and `hash` of event `seq` and every later one, as a forger would."""
    prev_hash = event(items, seq - 1)["hash"] if seq > 1 else GENESIS_HASH
    for item in events_of(items):
        if item["seq"] < seq:
            continue
        item["prev_hash"] = prev_hash
        payload = prev_hash + verify_export.canonical_json(item)
        item["hash"] = prev_hash = hashlib.sha256(payload.encode()).hexdigest()


def sign_as(key: Ed25519PrivateKey, checkpoint: dict) -> None:
    checkpoint["signature"] = base64.b64encode(
        key.sign(verify_export.checkpoint_message(checkpoint))
    ).decode()


def raw_public(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


# --- The intact export --------------------------------------------------------------------------


def test_the_export_holds_header_events_and_checkpoints(evidence):
    items = read(evidence)

    header = items[0]
    assert header["type"] == "header"
    assert header["format"] == "patterm-audit-export/v1"
    assert [item["type"] for item in items[1:]] == ["event"] * EVENTS + ["checkpoint"] * 3
    assert [item["head_seq"] for item in checkpoints_of(items)] == [10, 20, 25]
    stored = dict(AuditEvent.objects.filter(seq__lte=EVENTS).values_list("seq", "hash"))
    assert {item["seq"]: item["hash"] for item in events_of(items)} == stored
    checkpoint_keys = {item["key_id"] for item in checkpoints_of(items)}
    assert checkpoint_keys <= set(header["public_keys"])
    # The export itself is audited, after the file was written.
    exported = AuditEvent.objects.get(seq=EVENTS + 1)
    assert (exported.action, exported.outcome, exported.details) == (
        AuditAction.AUDIT_EXPORT,
        "success",
        {"events": EVENTS},
    )


def test_the_offline_verifier_accepts_the_intact_export(evidence):
    finished = run_verifier(evidence)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    head = AuditEvent.objects.get(seq=EVENTS).hash
    key = AuditCheckpoint.objects.values_list("key_id", flat=True).first()
    assert finished.stdout.splitlines() == [
        f"INTACT: {EVENTS} events, 3 signed checkpoints, head #{EVENTS} {head}",
        f"signed by key id(s) {key}: compare with the ids the operator published",
    ]


def test_the_verifier_needs_nothing_of_django_or_patterm():
    tree = ast.parse(VERIFIER.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


def test_the_verifier_loads_no_django_or_patterm_module_when_it_runs(evidence):
    """Django is installed in this interpreter; the verifier must still not touch it."""
    ours = ("django", "audit", "accounts", "booking", "consent", "patterm", "vault")
    program = (
        "import runpy, sys\n"
        f"sys.argv = ['verify_export.py', {str(evidence)!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(VERIFIER)!r}, run_name='__main__')\n"
        "except SystemExit as exit_:\n"
        "    assert exit_.code == 0, exit_.code\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ours!r}))\n"
    )
    finished = subprocess.run(  # noqa: S603
        [sys.executable, "-I", "-c", program],
        cwd=evidence.parent,
        env={},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[-1] == "[]"  # no module of Django or Patterm loaded
    assert finished.stdout.startswith("INTACT: ")


def test_an_export_with_a_retired_key_verifies(settings, tmp_path):
    old_private, old_public = new_signing_key()
    new_private, _ = new_signing_key()
    settings.PATTERM_AUDIT_SIGNING_KEY = old_private
    for index in range(1, 6):
        append_varied(index)
    checkpoint_create()
    settings.PATTERM_AUDIT_SIGNING_KEY = new_private
    settings.PATTERM_AUDIT_VERIFY_KEYS = [old_public]
    append_varied(6)

    path = tmp_path / "rotated.jsonl"
    export(path)

    header = read(path)[0]
    assert len(header["public_keys"]) == 2
    assert len({checkpoint.key_id for checkpoint in AuditCheckpoint.objects.all()}) == 2
    finished = run_verifier(path)
    assert finished.returncode == 0, finished.stdout
    assert "INTACT: 6 events, 2 signed checkpoints" in finished.stdout


def test_an_empty_log_exports_and_verifies(tmp_path):
    path = tmp_path / "empty.jsonl"
    assert "Exported 0 events" in export(path)

    assert [item["type"] for item in read(path)] == ["header"]
    finished = run_verifier(path)
    assert finished.returncode == 0
    assert "INTACT: 0 events, 0 signed checkpoints" in finished.stdout


def test_export_refuses_an_existing_file(evidence):
    before = evidence.read_bytes()
    events_before = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="exists"):
        export(evidence)

    assert evidence.read_bytes() == before
    assert not AuditEvent.objects.filter(seq__gt=events_before).exists()


def test_export_refuses_a_folder_that_does_not_exist(tmp_path):
    with pytest.raises(CommandError, match="Cannot write"):
        export(tmp_path / "missing" / "audit.jsonl")


# --- Tampered exports -----------------------------------------------------------------------


def change_details(items):
    event(items, 7)["details"]["index"] = -7
    return "event #7: its content does not match its hash"


def change_outcome(items):
    changed = event(items, 18)
    changed["outcome"] = "success" if changed["outcome"] != "success" else "denied"
    return "event #18: its content does not match its hash"


def change_client_address(items):
    event(items, 3)["client_address"] = "192.0.2.1"
    return "event #3: its content does not match its hash"


def delete_event(items):
    items.remove(event(items, 12))
    return "event #12 is missing"


def delete_first_event(items):
    items.remove(event(items, 1))
    return "event #1 is missing"


def swap_two_lines(items):
    first, second = items.index(event(items, 5)), items.index(event(items, 6))
    items[first], items[second] = items[second], items[first]
    return "event #5 is missing"


def swap_two_events_renumbered(items):
    """The two events trade places and sequence numbers, each keeping its hashes."""
    first, second = event(items, 8), event(items, 9)
    first["seq"], second["seq"] = 9, 8
    one, two = items.index(first), items.index(second)
    items[one], items[two] = items[two], items[one]
    return "event #8 does not chain from the event before it"


def cut_last_event(items):
    items.remove(event(items, 25))
    return "checkpoint #25 signs more events than the file holds (it ends at #24)"


def cut_last_three_events(items):
    for seq in (23, 24, 25):
        items.remove(event(items, seq))
    return "the tail was cut"


def rewrite_and_rehash(items):
    event(items, 15)["details"] = {"forged": True}
    rehash_from(items, 15)
    return "event #20 does not match its signed checkpoint: the chain was rewritten"


def rewrite_and_rehash_the_last_rows(items):
    event(items, 22)["actor_id"] = None
    rehash_from(items, 22)
    return "event #25 does not match its signed checkpoint"


def alter_checkpoint_signature(items):
    checkpoint = checkpoints_of(items)[1]
    raw = bytearray(base64.b64decode(checkpoint["signature"]))
    raw[10] ^= 0x40
    checkpoint["signature"] = base64.b64encode(bytes(raw)).decode()
    return "checkpoint #20: the signature is invalid"


def garble_checkpoint_signature(items):
    checkpoints_of(items)[0]["signature"] = "not base64!"
    return "checkpoint #10: the signature is invalid"


def alter_checkpoint_head_hash(items):
    checkpoints_of(items)[2]["head_hash"] = event(items, 24)["hash"]
    return "checkpoint #25: the signature is invalid"


def move_checkpoint_to_an_earlier_row(items):
    checkpoints_of(items)[1]["head_seq"] = 19
    return "checkpoint #19: the signature is invalid"


def checkpoint_with_an_unknown_key(items):
    key = Ed25519PrivateKey.generate()
    checkpoint = checkpoints_of(items)[0]
    checkpoint["key_id"] = hashlib.sha256(base64.b64decode(raw_public(key))).hexdigest()[:16]
    sign_as(key, checkpoint)
    return f"checkpoint #10: unknown key {checkpoint['key_id']}"


def replace_header_key(items):
    """The header's public key swapped for another, under the same key id."""
    (key_id,) = items[0]["public_keys"]
    items[0]["public_keys"][key_id] = raw_public(Ed25519PrivateKey.generate())
    return "BROKEN"


def forge_everything_under_the_published_key_id(items):
    """Rewrite, re-hash, re-sign every checkpoint with a key of one's own and put that key in
    the header under the key id the operator published: the id no longer names the key."""
    key = Ed25519PrivateKey.generate()
    (key_id,) = items[0]["public_keys"]
    items[0]["public_keys"][key_id] = raw_public(key)
    event(items, 4)["details"] = {"forged": True}
    rehash_from(items, 4)
    for checkpoint in checkpoints_of(items):
        checkpoint["head_hash"] = event(items, checkpoint["head_seq"])["hash"]
        sign_as(key, checkpoint)
    return f"key id {key_id}"


def garble_header_key(items):
    (key_id,) = items[0]["public_keys"]
    items[0]["public_keys"][key_id] = "AAAA"
    return f"the header's key id {key_id} holds no Ed25519 public key"


def event_after_the_checkpoints(items):
    extra = dict(event(items, 25), seq=26)
    items.append(extra)
    return "unexpected 'event' line"


def wrong_format(items):
    items[0]["format"] = "patterm-audit-export/v0"
    return "not a patterm-audit-export/v1 file"


TAMPERING = [
    change_details,
    change_outcome,
    change_client_address,
    delete_event,
    delete_first_event,
    swap_two_lines,
    swap_two_events_renumbered,
    cut_last_event,
    cut_last_three_events,
    rewrite_and_rehash,
    rewrite_and_rehash_the_last_rows,
    alter_checkpoint_signature,
    garble_checkpoint_signature,
    alter_checkpoint_head_hash,
    move_checkpoint_to_an_earlier_row,
    checkpoint_with_an_unknown_key,
    replace_header_key,
    forge_everything_under_the_published_key_id,
    garble_header_key,
    event_after_the_checkpoints,
    wrong_format,
]


@pytest.mark.parametrize("tamper", TAMPERING, ids=lambda tamper: tamper.__name__)
def test_the_offline_verifier_rejects_a_tampered_export(evidence, tamper):
    items = read(evidence)
    expected = tamper(items)
    tampered = write(evidence.with_name("tampered.jsonl"), items)

    finished = run_verifier(tampered)

    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert finished.stdout.startswith("BROKEN: ")
    assert expected in finished.stdout


def test_a_rewrite_with_its_checkpoints_stripped_is_refused(evidence):
    """The plain chain of a forged rewrite is consistent again; without checkpoints nothing
    proves it, so the verifier refuses a non-empty file that holds none."""
    items = read(evidence)
    rewrite_and_rehash(items)
    events = [items[0], *events_of(items)]

    with pytest.raises(verify_export.Broken, match="no signed checkpoint"):
        verify_export.verify(iter(json.dumps(item) for item in events))


@pytest.mark.parametrize(
    ("content", "arguments"),
    [(None, []), (None, ["missing.jsonl"]), ("not json\n", ["garbage.jsonl"]), ("", ["empty"])],
    ids=["no-argument", "missing-file", "not-json", "empty-file"],
)
def test_the_verifier_exits_2_when_it_cannot_read(tmp_path, content, arguments):
    if content is not None:
        (tmp_path / arguments[0]).write_text(content, encoding="utf-8")
    finished = subprocess.run(  # noqa: S603
        [sys.executable, "-I", str(VERIFIER), *arguments],
        cwd=tmp_path,
        env={},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert finished.stdout == ""


def test_the_standalone_verifier_keeps_the_chain_and_checkpoint_formats_of_the_app():
    """verify_export.py copies the hashed fields and the signed text on purpose (it must run
    without Django); this names the copy that drifted, before any export fails to verify."""
    created_at = datetime.datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=datetime.UTC)
    checkpoint = {"head_seq": 42, "head_hash": "ab" * 32, "created_at": created_at.isoformat()}

    assert verify_export.HASHED_FIELDS == HASHED_FIELDS
    assert verify_export.GENESIS_HASH == GENESIS_HASH
    assert verify_export.checkpoint_message(checkpoint) == signing.checkpoint_message(
        head_seq=42, head_hash="ab" * 32, created_at=created_at
    )
