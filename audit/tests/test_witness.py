"""`manage.py audit_witness`: a second party co-signs a checkpoint only after checking it
extends the last one it co-signed. The log's real checkpoints and proofs (events, integrator,
the proof services) are the input, as files or from the running portal; Go's sumdb/note checks
the witness's signature."""

import base64
import fcntl
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import CommandError, call_command

from accounts.models import Role
from audit import signing, witness
from audit.integrator import checkpoint_create
from audit.services import consistency_proof_document, event_append
from audit.tests.builders import staff_with_token
from audit.tests.helpers import go_program_build
from audit.verify_export import note_open, verifier_parse

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
NAME = "witness.example.org"


def _events(count: int) -> str:
    """`count` more events, integrated and signed: the new checkpoint's note."""
    for number in range(count):
        event_append(action="record.read", outcome="success", details={"n": number})
    return checkpoint_create().note


class Witness:
    """The witness's files in a folder of its own, and a way to run it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.key_file = folder / "witness.key"
        self.state = folder / "state.json"
        out = StringIO()
        call_command("audit_witness", "--new-key", self.key_file, "--name", NAME, stdout=out)
        self.verifier_key = out.getvalue().strip()
        self.log_key = signing.note_verifier_keys()[0]

    def file(self, name: str, content) -> Path:
        path = self.folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def run(self, *arguments, log_key: str | None = None) -> tuple[str, str]:
        out, err = StringIO(), StringIO()
        call_command(
            "audit_witness",
            "--state",
            self.state,
            "--key-file",
            self.key_file,
            "--name",
            NAME,
            "--log-key",
            log_key or self.log_key,
            *map(str, arguments),
            stdout=out,
            stderr=err,
        )
        return out.getvalue(), err.getvalue()

    def cosign(self, note: str, proof: dict | None = None) -> tuple[str, str]:
        arguments = ["--checkpoint", self.file("checkpoint.txt", note)]
        if proof is not None:
            arguments += ["--consistency", self.file("consistency.json", proof)]
        return self.run(*arguments)

    def refused(self, *arguments, log_key: str | None = None) -> str:
        before = self.state.read_bytes() if self.state.exists() else None
        with pytest.raises(CommandError) as refusal:
            self.run(*arguments, log_key=log_key)
        after = self.state.read_bytes() if self.state.exists() else None
        assert after == before, "a refusal must leave the witness's state as it was"
        return str(refusal.value)

    def size(self) -> int:
        return next(iter(json.loads(self.state.read_text())["logs"].values()))["size"]


@pytest.fixture
def witnessed(tmp_path) -> Witness:
    return Witness(tmp_path)


def _verified_by(note: str, *keys: str) -> list[str]:
    verifiers = {}
    for text in keys:
        name, hashed, key = verifier_parse(text)
        verifiers[(name, hashed)] = key
    return note_open(note, verifiers)[1]


def test_the_first_checkpoint_is_trusted_on_first_use_and_co_signed(witnessed):
    note = _events(3)

    cosigned, progress = witnessed.cosign(note)

    assert "trusted on first use" in progress
    assert cosigned.startswith(note)  # the log's own signature stays, the witness's is added
    assert cosigned.count("\n\u2014 ") == 2
    assert _verified_by(cosigned, witnessed.verifier_key) == [NAME]
    assert witnessed.size() == 3
    key_on_disk = witnessed.key_file.stat().st_mode & 0o777
    assert key_on_disk == 0o600


def test_growth_with_a_consistency_proof_is_co_signed(witnessed):
    witnessed.cosign(_events(3))
    note = _events(5)

    cosigned, progress = witnessed.cosign(note, consistency_proof_document(old_size=3, new_size=8))

    assert "grew from 3 to 8 events" in progress
    assert _verified_by(cosigned, witnessed.verifier_key, witnessed.log_key) == [
        signing.log_origin(),
        NAME,
    ]
    assert witnessed.size() == 8


def test_the_proof_alone_carries_the_checkpoint_and_output_goes_to_a_file(witnessed):
    witnessed.cosign(_events(2))
    _events(2)
    proof = witnessed.file("proof.json", consistency_proof_document(old_size=2, new_size=4))
    output = witnessed.folder / "cosigned.txt"

    printed, _ = witnessed.run("--consistency", proof, "--output", output)

    assert "Co-signed as witness.example.org" in printed
    assert NAME in _verified_by(output.read_text(), witnessed.verifier_key)


def test_the_same_checkpoint_again_is_co_signed_again_unchanged(witnessed):
    note = _events(3)
    first, _ = witnessed.cosign(note)

    again, progress = witnessed.cosign(first)  # even the co-signed file itself

    assert "unchanged" in progress
    assert again == first  # Ed25519 is deterministic; the witness's old line is not doubled


def test_a_fork_same_size_other_root_is_refused(witnessed):
    witnessed.cosign(_events(4))
    forked = signing.checkpoint_note(tree_size=4, root_hash=b"\x42" * 32)

    message = witnessed.refused("--checkpoint", witnessed.file("fork.txt", forked))

    assert "fork" in message and "4 events" in message


def test_a_tree_that_shrank_is_refused(witnessed):
    older = _events(3)
    witnessed.cosign(_events(3))

    message = witnessed.refused("--checkpoint", witnessed.file("old.txt", older))

    assert "shrank" in message and "3 events" in message and "co-signed 6" in message


def test_a_checkpoint_of_an_unknown_key_is_refused_naming_the_key(witnessed):
    body = signing.checkpoint_body(tree_size=3, root_hash=b"\x01" * 32)
    stranger = Ed25519PrivateKey.generate()
    note = signing.note_sign(body, stranger, signing.log_origin())
    unknown = verifier_parse(signing.note_verifier_key(stranger.public_key()))
    name_and_hash = f"{unknown[0]}+{unknown[1].hex()}"

    message = witnessed.refused("--checkpoint", witnessed.file("stranger.txt", note))

    assert name_and_hash in message and "not a log key this witness trusts" in message


def test_a_checkpoint_signed_by_another_name_than_its_origin_is_refused(witnessed):
    other = Ed25519PrivateKey.generate()
    note = signing.note_sign(
        signing.checkpoint_body(tree_size=3, root_hash=b"\x01" * 32), other, "other.example/log"
    )
    trusted = signing.note_verifier_key(other.public_key(), "other.example/log")

    message = witnessed.refused("--checkpoint", witnessed.file("other.txt", note), log_key=trusted)

    assert "not by the log's own key" in message


def test_a_bad_consistency_proof_is_refused(witnessed):
    witnessed.cosign(_events(3))
    note = _events(5)
    proof = consistency_proof_document(old_size=3, new_size=8)
    proof["proof"][0] = base64.b64encode(b"\x00" * 32).decode()

    message = witnessed.refused(
        "--checkpoint",
        witnessed.file("new.txt", note),
        "--consistency",
        witnessed.file("bad.json", proof),
    )

    assert "consistency proof fails" in message


def test_growth_without_a_proof_or_with_one_of_other_sizes_is_refused(witnessed):
    witnessed.cosign(_events(3))
    _events(2)
    note = _events(2)
    checkpoint = witnessed.file("new.txt", note)

    without = witnessed.refused("--checkpoint", checkpoint)
    other_sizes = witnessed.refused(
        "--checkpoint",
        checkpoint,
        "--consistency",
        witnessed.file("p.json", consistency_proof_document(old_size=5, new_size=7)),
    )

    assert "a consistency proof from 3 to 7 is needed" in without
    assert "from 5 to 7" in other_sizes and "needs one from 3" in other_sizes


def test_a_proof_for_another_checkpoint_than_the_one_given_is_refused(witnessed):
    witnessed.cosign(_events(3))
    _events(2)
    proof = consistency_proof_document(old_size=3, new_size=5)
    later = _events(1)

    message = witnessed.refused(
        "--checkpoint",
        witnessed.file("later.txt", later),
        "--consistency",
        witnessed.file("p.json", proof),
    )

    assert "ends at another checkpoint" in message


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.txt", None, "does not exist"),
        ("latin1.txt", "Prüfpunkt\n".encode("latin-1"), "is not UTF-8 text"),
        ("garbled.txt", "patterm.local/audit\nzwei\n\n\u2014 x y\n", "signed by x: not a log"),
        ("body.txt", "signed: patterm.local/audit\nzwei\n", "body is not origin, tree size"),
        ("empty.txt", "", "does not verify"),
        ("api.json", '{"tree_size": 3}', "not GET /api/audit/checkpoint's answer"),
    ],
)
def test_a_missing_or_garbled_checkpoint_is_a_clear_error(witnessed, name, content, expected):
    path = witnessed.folder / name
    if isinstance(content, str) and content.startswith("signed: "):
        content = signing.note_sign(content.removeprefix("signed: "))
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    message = witnessed.refused("--checkpoint", path)

    assert expected in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a consistency proof"),
        ('{"from": 3, "to": 5, "proof": ["***"]}', "not base64"),
        ('{"from": 3, "to": 5}', "no `proof` hashes"),
    ],
)
def test_a_garbled_consistency_proof_is_a_clear_error(witnessed, content, expected):
    witnessed.cosign(_events(3))
    note = _events(2)

    message = witnessed.refused(
        "--checkpoint",
        witnessed.file("new.txt", note),
        "--consistency",
        witnessed.file("garbled.json", content),
    )

    assert expected in message


def test_a_second_run_at_the_same_time_is_refused(witnessed):
    """Two runs from the same last checkpoint could co-sign two forks of it: one at a time."""
    checkpoint = witnessed.file("c.txt", _events(2))
    with open(f"{witnessed.state}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        message = witnessed.refused("--checkpoint", checkpoint)
    assert "another audit_witness run holds" in message
    _, progress = witnessed.run("--checkpoint", checkpoint)  # released: it runs
    assert "trusted on first use" in progress


def test_a_state_folder_that_does_not_exist_is_a_clear_error(witnessed):
    witnessed.state = witnessed.folder / "nowhere" / "state.json"
    message = witnessed.refused("--checkpoint", witnessed.file("c.txt", _events(2)))
    assert "cannot be opened" in message


def test_a_garbled_state_file_is_refused_not_reset(witnessed):
    witnessed.state.write_text('{"format": "something else"}')

    message = witnessed.refused("--checkpoint", witnessed.file("c.txt", _events(2)))

    assert "is not a witness state" in message and "restore it" in message


def test_a_garbled_key_or_log_key_or_no_input_is_a_clear_error(witnessed):
    note = witnessed.file("c.txt", _events(2))
    witnessed.file("witness.key", "not a key")
    assert "is not a raw 32-byte Ed25519 private key" in witnessed.refused("--checkpoint", note)
    witnessed.key_file.unlink()
    call_command(
        "audit_witness", "--new-key", witnessed.key_file, "--name", NAME, stdout=StringIO()
    )

    bad_log_key = witnessed.refused("--checkpoint", note, log_key="nonsense")
    no_input = witnessed.refused()

    assert "is not an Ed25519 verifier key" in bad_log_key
    assert "Nothing to witness" in no_input
    with pytest.raises(CommandError, match="never overwritten"):
        call_command("audit_witness", "--new-key", witnessed.key_file, "--name", NAME)


def test_the_command_line_exits_non_zero_without_a_traceback(witnessed):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "patterm.settings.test"}
    arguments = ["--state", witnessed.state, "--key-file", witnessed.key_file, "--name", NAME]
    arguments += ["--log-key", witnessed.log_key, "--checkpoint", witnessed.folder / "nothing"]

    finished = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "audit_witness", *map(str, arguments)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )

    assert finished.returncode == 1
    assert "does not exist" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_show_key_prints_the_verifier_key_to_publish(witnessed):
    out = StringIO()
    call_command(
        "audit_witness", "--key-file", witnessed.key_file, "--name", NAME, "--show-key", stdout=out
    )
    assert out.getvalue().strip() == witnessed.verifier_key
    assert witnessed.verifier_key.startswith(f"{NAME}+")


# --- From the running portal ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_witness_fetches_checkpoint_and_proof_from_the_portal(witnessed, live_server):
    token = staff_with_token(role=Role.AUDITOR)[1].raw
    _events(3)
    _, progress = witnessed.run("--url", live_server.url, "--token", token)
    assert "trusted on first use" in progress
    _events(4)

    second, progress = witnessed.run("--url", live_server.url, "--token", token)

    assert "Consistency proof from 3 to 7 fetched" in progress
    assert "grew from 3 to 7 events" in progress
    assert NAME in _verified_by(second, witnessed.verifier_key)
    refused = witnessed.refused("--url", live_server.url, "--token", "not-a-token")
    assert "answered 401" in refused
    assert "not an API token" in witnessed.refused("--url", live_server.url, "--token", "t\u2026")
    unreachable = witnessed.refused("--url", "http://127.0.0.1:18199", "--token", token)
    assert "cannot be reached" in unreachable


# --- Go's sumdb/note verifies the witness's signature ------------------------------------------


@pytest.fixture(scope="session")
def witnesscheck(tmp_path_factory) -> str:
    """audit/witnesscheck, built offline as tlogcheck is."""
    return go_program_build(tmp_path_factory, "audit/witnesscheck")


def test_go_sumdb_note_verifies_the_witness_and_the_log_signature(witnessed, witnesscheck):
    witnessed.cosign(_events(3))
    cosigned, _ = witnessed.cosign(_events(2), consistency_proof_document(old_size=3, new_size=5))
    path = witnessed.file("cosigned.txt", cosigned)
    another = witness.verifier_key(Ed25519PrivateKey.generate(), NAME)

    def check(*keys):
        arguments = [witnesscheck, "-note", str(path)]
        for key in keys:
            arguments += ["-key", key]
        return subprocess.run(arguments, capture_output=True, text=True, check=False)  # noqa: S603

    both = check(witnessed.log_key, witnessed.verifier_key)
    not_this_witness = check(witnessed.log_key, another)

    assert both.returncode == 0, both.stdout + both.stderr
    assert both.stdout.strip() == f"COSIGNED: signed by {signing.log_origin()}, {NAME}"
    assert not_this_witness.returncode == 1
    assert f"BROKEN: {NAME} did not sign" in not_this_witness.stdout
