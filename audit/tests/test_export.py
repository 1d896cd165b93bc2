"""The evidence file and the proofs, checked by tools that share no code with the app where they
can: audit/verify_export.py on its own (a subprocess), and the Go program audit/tlogcheck built on
golang.org/x/mod/sumdb/note and sumdb/tlog. The proof endpoints answer bad input with a JSON 4xx."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from accounts.models import Role, User
from audit.integrator import checkpoint_create, integrate_pending
from audit.services import consistency_proof_document, inclusion_proof_document
from audit.signing import checkpoint_note
from audit.tests.builders import bearer, new_signing_key, staff_with_token, token_for
from audit.tests.helpers import append_varied, go_program_build

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
VERIFIER = ROOT / "audit" / "verify_export.py"


def run_verifier(*arguments) -> subprocess.CompletedProcess:
    # A clean environment and another working directory: nothing of Patterm is importable.
    return subprocess.run(  # noqa: S603
        [sys.executable, str(VERIFIER), *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": os.environ["PATH"]},
        check=False,
    )


@pytest.fixture
def evidence(tmp_path):
    """An export of 30 events with checkpoints at 10 and 30, a kept checkpoint of 10, and
    proofs of inclusion and consistency from the services."""
    for index in range(1, 11):
        append_varied(index)
    kept = checkpoint_create()
    for index in range(11, 31):
        append_varied(index)
    integrate_pending()
    newest = checkpoint_create()
    path = tmp_path / "export.jsonl"
    call_command("export_audit", str(path), stdout=StringIO())
    (tmp_path / "kept.txt").write_text(kept.note, encoding="utf-8")
    inclusion = inclusion_proof_document(index=7, tree_size=newest.tree_size)
    (tmp_path / "inclusion.json").write_text(json.dumps(inclusion), encoding="utf-8")
    consistency = consistency_proof_document(old_size=kept.tree_size, new_size=newest.tree_size)
    (tmp_path / "consistency.json").write_text(json.dumps(consistency), encoding="utf-8")
    header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    return tmp_path, header["verifier_keys"][0]


def test_the_offline_verifier_accepts_the_export_a_kept_checkpoint_and_the_proofs(evidence):
    folder, key = evidence
    checked = run_verifier(folder / "export.jsonl", "--kept", folder / "kept.txt", "--key", key)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("INTACT: 30 events, 2 signed checkpoints")
    included = run_verifier("--inclusion", folder / "inclusion.json", "--key", key)
    assert included.returncode == 0, included.stdout + included.stderr
    assert "INCLUDED: leaf 7 is in the signed tree of 30 events" in included.stdout
    consistent = run_verifier(
        "--consistency", folder / "consistency.json", "--kept", folder / "kept.txt", "--key", key
    )
    assert consistent.returncode == 0, consistent.stdout + consistent.stderr
    assert "extends the kept one of 10" in consistent.stdout


def _lines(folder) -> list[str]:
    return (folder / "export.jsonl").read_text(encoding="utf-8").splitlines()


def _event_lines(lines) -> list[int]:
    return [number for number, line in enumerate(lines) if '"type": "event"' in line]


def edit_leaf(lines):
    number = _event_lines(lines)[4]
    item = json.loads(lines[number])
    item["leaf"] = item["leaf"].replace('"success"', '"denied"').replace('"failure"', '"denied"')
    lines[number] = json.dumps(item)
    return lines


def drop_event(lines):
    del lines[_event_lines(lines)[3]]
    return lines


def swap_events(lines):
    first, second = _event_lines(lines)[2:4]
    one, two = json.loads(lines[first]), json.loads(lines[second])
    one["leaf"], two["leaf"] = two["leaf"], one["leaf"]
    lines[first], lines[second] = json.dumps(one), json.dumps(two)
    return lines


def cut_tail(lines):
    # The last events go, the last checkpoint stays: the file is shorter than it signs.
    events = _event_lines(lines)
    return lines[: events[-3]] + lines[events[-1] + 1 :]


def forge_signature(lines):
    number = max(n for n, line in enumerate(lines) if '"type": "checkpoint"' in line)
    item = json.loads(lines[number])
    item["note"] = item["note"].replace("\n30\n", "\n31\n")
    lines[number] = json.dumps(item)
    return lines


def _checkpoint_lines(lines) -> list[int]:
    return [number for number, line in enumerate(lines) if '"type": "checkpoint"' in line]


def _checkpoint_line(note: str) -> str:
    return json.dumps({"type": "checkpoint", "note": note})


def fork(lines):
    # The log's own key signs a second, different tree of the same size: a split view.
    lines.append(_checkpoint_line(checkpoint_note(tree_size=30, root_hash=bytes(32))))
    return lines


def unknown_key(lines):
    private, _ = new_signing_key()
    with override_settings(PATTERM_AUDIT_SIGNING_KEY=private):
        note = checkpoint_note(tree_size=30, root_hash=bytes(32))
    lines[_checkpoint_lines(lines)[-1]] = _checkpoint_line(note)
    return lines


def shrink(lines):
    # The signed checkpoint of 10 again after the one of 30: the tree went back.
    lines.append(lines[_checkpoint_lines(lines)[0]])
    return lines


def reorder_lines(lines):
    first, second = _event_lines(lines)[5:7]
    lines[first], lines[second] = lines[second], lines[first]
    return lines


# name: (tampering, what verify_export.py says, what the Go program says); each names where.
TAMPERINGS = {
    "edit_leaf": (edit_leaf, "among leaves 0 to 9", "among 0 to 9"),
    "drop_event": (drop_event, "leaf 3 is missing", "leaf 3 missing"),
    "swap_events": (swap_events, "among leaves 0 to 9", "among 0 to 9"),
    "reorder_lines": (reorder_lines, "leaf 5 is missing or out of order", "leaf 5 missing"),
    "cut_tail": (cut_tail, "tail was cut", "tail cut"),
    "forge_signature": (forge_signature, "signature", "signature"),
    "fork": (fork, "two checkpoints of size 30 with different roots: a fork", "size 30"),
    "unknown_key": (unknown_key, "no known key (only by unknown", "no known key (only by"),
    "shrink": (shrink, "checkpoint of size 10 follows one of size 30: the tree shrank", "shrank"),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_the_offline_verifier_and_the_go_program_reject_a_tampered_export(
    evidence, tlogcheck, name
):
    folder, _ = evidence
    tamper, problem, go_problem = TAMPERINGS[name]
    (folder / "export.jsonl").write_text("\n".join(tamper(_lines(folder))) + "\n", "utf-8")

    checked = run_verifier(folder / "export.jsonl")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stdout.startswith("BROKEN: ")
    assert problem in checked.stdout
    assert "Traceback" not in checked.stderr
    go = subprocess.run(  # noqa: S603
        [tlogcheck, "-export", folder / "export.jsonl"], capture_output=True, text=True
    )
    assert go.returncode == 1, go.stdout + go.stderr
    assert go.stdout.startswith("BROKEN: ")
    assert go_problem in go.stdout


def _kept_fork(tmp_path):
    return checkpoint_note(tree_size=10, root_hash=bytes(32))


def _kept_beyond(tmp_path):
    return checkpoint_note(tree_size=40, root_hash=bytes(32))


def _kept_by_unknown_key(tmp_path):
    private, _ = new_signing_key()
    with override_settings(PATTERM_AUDIT_SIGNING_KEY=private):
        return checkpoint_note(tree_size=10, root_hash=bytes(32))


# A checkpoint the auditor kept, against the export: (note, verify_export.py, Go program).
KEPT = {
    "fork": (_kept_fork, "another root than the checkpoint of size 10 you kept: a fork", "a fork"),
    "shrunk": (_kept_beyond, "the tree shrank: you kept a checkpoint of size 40", "shrank"),
    "unknown_key": (_kept_by_unknown_key, "no known key (only by unknown", "no known key"),
}


@pytest.mark.parametrize("name", sorted(KEPT))
def test_a_kept_checkpoint_the_export_does_not_extend_fails_in_both_verifiers(
    evidence, tlogcheck, tmp_path, name
):
    folder, key = evidence
    make, problem, go_problem = KEPT[name]
    kept = tmp_path / "kept-elsewhere.txt"
    kept.write_text(make(tmp_path), encoding="utf-8")

    checked = run_verifier(folder / "export.jsonl", "--kept", kept, "--key", key)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stdout.startswith("BROKEN: ")
    assert problem in checked.stdout
    go = subprocess.run(  # noqa: S603
        [tlogcheck, "-export", folder / "export.jsonl", "-kept", kept],
        capture_output=True,
        text=True,
    )
    assert go.returncode == 1, go.stdout + go.stderr
    assert go_problem in go.stdout


def _truncated(content: bytes) -> bytes:
    return content[: len(content) * 2 // 3]  # mid-line: its JSON is cut


def _reordered(content: bytes) -> bytes:
    lines = content.splitlines(keepends=True)  # the first ten events, last one first
    return b"".join([lines[0], *reversed(lines[1:11]), *lines[11:]])


def _not_utf8_inside(content: bytes) -> bytes:
    lines = content.splitlines(keepends=True)
    lines[5] = lines[5].replace(b"token", b"tok\xffen", 1)
    return b"".join(lines)


BAD_EXPORTS = {
    "truncated": (_truncated, 2, "is not JSON"),
    "reordered": (_reordered, 1, "leaf 0 is missing or out of order"),
    "not utf-8 inside": (_not_utf8_inside, 2, "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(BAD_EXPORTS))
def test_a_damaged_export_exits_non_zero_with_a_message_and_no_traceback(evidence, name):
    folder, _ = evidence
    damage, status, message = BAD_EXPORTS[name]
    path = folder / "export.jsonl"
    path.write_bytes(damage(path.read_bytes()))

    checked = run_verifier(path)

    assert checked.returncode == status, checked.stdout + checked.stderr
    assert message in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe not utf-8\n", b"{not json\n", b'{"type": "header", "format": "other"}\n'],
    ids=["empty", "not utf-8", "not json", "wrong format"],
)
def test_unreadable_evidence_exits_2_with_a_message_and_no_traceback(tmp_path, content):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    checked = run_verifier(path)
    assert checked.returncode == 2
    assert checked.stderr.startswith("cannot read the evidence")
    assert "Traceback" not in checked.stderr


def test_a_consistency_proof_against_a_forked_checkpoint_fails(evidence, tmp_path):
    folder, key = evidence
    kept = (folder / "kept.txt").read_text(encoding="utf-8")
    forged_inclusion = json.loads((folder / "inclusion.json").read_text(encoding="utf-8"))
    forged_inclusion["leaf"] = forged_inclusion["leaf"].replace('"seq":', '"seq": ')
    (tmp_path / "forged.json").write_text(json.dumps(forged_inclusion), encoding="utf-8")
    assert run_verifier("--inclusion", tmp_path / "forged.json", "--key", key).returncode == 1
    (tmp_path / "other.txt").write_text(kept.replace("\n10\n", "\n11\n"), encoding="utf-8")
    checked = run_verifier(
        "--consistency", folder / "consistency.json", "--kept", tmp_path / "other.txt", "--key", key
    )
    assert checked.returncode == 1
    assert "BROKEN" in checked.stdout


# --- The Go program (sumdb/note, sumdb/tlog) ------------------------------------------------


@pytest.fixture(scope="session")
def tlogcheck(tmp_path_factory) -> str:
    """audit/tlogcheck, built offline with Debian's golang-golang-x-mod-dev."""
    return go_program_build(tmp_path_factory, "audit/tlogcheck")


def test_go_sumdb_note_and_tlog_verify_the_export_and_the_proofs(evidence, tlogcheck):
    folder, _ = evidence
    checked = subprocess.run(  # noqa: S603
        [
            tlogcheck,
            "-export",
            folder / "export.jsonl",
            "-inclusion",
            folder / "inclusion.json",
            "-consistency",
            folder / "consistency.json",
            "-kept",
            folder / "kept.txt",
        ],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "export: 30 leaves, 2 checkpoints verified" in checked.stdout
    assert "inclusion: leaf 7 in the signed tree of 30" in checked.stdout
    assert "consistency: the tree of 30 extends the kept one of 10" in checked.stdout


# --- The proof endpoints ----------------------------------------------------------------------


@pytest.fixture
def signed_log():
    for index in range(1, 11):
        append_varied(index)
    checkpoint_create()
    for index in range(11, 21):
        append_varied(index)
    checkpoint_create()


def test_the_auditor_gets_checkpoint_and_proofs_that_verify(api_client, signed_log, tmp_path):
    _, token = staff_with_token(role=Role.AUDITOR)
    checkpoint = api_client.get("/api/audit/checkpoint", **bearer(token)).json()
    assert checkpoint["tree_size"] == 20
    assert checkpoint["note"].startswith("patterm.local/audit\n20\n")
    inclusion = api_client.get(
        "/api/audit/proof/inclusion", {"index": 0, "tree_size": 20}, **bearer(token)
    )
    assert inclusion.status_code == 200
    consistency = api_client.get(
        "/api/audit/proof/consistency", {"from": 10, "to": 20}, **bearer(token)
    )
    assert consistency.status_code == 200
    assert consistency.json()["from"] == 10
    key = checkpoint["verifier_keys"][0]
    (tmp_path / "inclusion.json").write_text(inclusion.content.decode(), encoding="utf-8")
    assert run_verifier("--inclusion", tmp_path / "inclusion.json", "--key", key).returncode == 0


@pytest.mark.parametrize(
    ("url", "params", "status", "code"),
    [
        ("inclusion", {"index": -1, "tree_size": 20}, 422, "validation_error"),
        ("inclusion", {"index": "x", "tree_size": 20}, 422, "validation_error"),
        ("inclusion", {"index": 0, "tree_size": 0}, 422, "validation_error"),
        ("inclusion", {"index": 0, "tree_size": 2**70}, 422, "validation_error"),
        ("inclusion", {"index": 0}, 422, "validation_error"),
        ("inclusion", {"index": 20, "tree_size": 20}, 422, "index_outside_tree"),
        ("inclusion", {"index": 0, "tree_size": 15}, 422, "no_checkpoint_of_size"),
        ("consistency", {"from": 20, "to": 10}, 422, "from_after_to"),
        ("consistency", {"from": 0, "to": 10}, 422, "validation_error"),
        ("consistency", {"from": "ten", "to": 20}, 422, "validation_error"),
        ("consistency", {"from": 10, "to": 2**63}, 422, "validation_error"),
        ("consistency", {"from": 5, "to": 20}, 422, "no_checkpoint_of_size"),
        ("consistency", {"from": 10, "to": 25}, 422, "no_checkpoint_of_size"),
    ],
)
def test_bad_proof_requests_answer_json_4xx_with_detail_and_code(
    api_client, signed_log, url, params, status, code
):
    _, token = staff_with_token(role=Role.AUDITOR)
    response = api_client.get(f"/api/audit/proof/{url}", params, **bearer(token))
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert body["detail"]


def test_without_a_checkpoint_the_checkpoint_endpoint_is_a_404(api_client):
    _, token = staff_with_token(role=Role.AUDITOR)
    response = api_client.get("/api/audit/checkpoint", **bearer(token))
    assert (response.status_code, response.json()["code"]) == (404, "no_checkpoint")


@pytest.mark.parametrize("url", ["checkpoint", "proof/inclusion?index=0&tree_size=20"])
def test_only_auditors_get_checkpoints_and_proofs(api_client, signed_log, url):
    _, token = staff_with_token(role=Role.PRACTITIONER)
    response = api_client.get(f"/api/audit/{url}", **bearer(token))
    assert (response.status_code, response.json()["code"]) == (403, "auditors_only")


def test_a_patient_downloads_the_proof_of_an_event_of_their_own_access_log(api_client):
    from audit.services import event_append

    patient, other = (
        User.objects.create(email=f"p{n}@example.com", role=Role.PATIENT, last_name="P")
        for n in (1, 2)
    )
    mine = event_append(action="record.read", outcome="success", subject_id=patient.pk)
    theirs = event_append(action="record.read", outcome="success", subject_id=other.pk)
    token = token_for(patient)
    staged = api_client.get(f"/api/audit/access-log/{mine.seq}/proof", **bearer(token))
    assert (staged.status_code, staged.json()["code"]) == (422, "not_yet_signed")
    checkpoint_create()

    response = api_client.get(f"/api/audit/access-log/{mine.seq}/proof", **bearer(token))

    assert response.status_code == 200
    body = response.json()
    assert json.loads(body["leaf"])["seq"] == mine.seq
    assert body["verifier_keys"]
    other_one = api_client.get(f"/api/audit/access-log/{theirs.seq}/proof", **bearer(token))
    assert other_one.status_code == 404
    assert api_client.get("/api/audit/access-log/0/proof", **bearer(token)).status_code == 422
