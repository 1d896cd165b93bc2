"""Helpers shared by the audit tests: varied events appended through the real path, and the
rows exactly as the database returns them, and the project's Go checkers built offline."""

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings

from audit import context
from audit.chain import HASHED_FIELDS
from audit.models import AuditAction, AuditEvent, Outcome
from audit.services import event_append

ACTIONS = [AuditAction.AUTH_REGISTER, AuditAction.AUTH_LOGIN, AuditAction.AUTH_LOGOUT]
ADDRESSES = [None, "198.51.100.7", "2001:db8::42"]
OUTCOMES = [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.FAILURE]


def append_varied(index: int) -> AuditEvent:
    """Append event number `index`, with fields that differ from one row to the next."""
    actor = SimpleNamespace(pk=1000 + index % 7, role="patient") if index % 5 else None
    id_token = context.request_id.set(f"request-{index:08d}")
    address_token = context.client_address.set(ADDRESSES[index % len(ADDRESSES)])
    try:
        return event_append(
            action=ACTIONS[index % len(ACTIONS)],
            actor=actor,
            outcome=OUTCOMES[index % len(OUTCOMES)],
            object_type="token",
            object_id=str(index),
            subject_id=index % 11 or None,
            clinic_id=index % 3 or None,
            purpose="treatment" if index % 2 else "",
            details={"index": index, "method": "password", "codes": [index, "x"]},
        )
    finally:
        context.request_id.reset(id_token)
        context.client_address.reset(address_token)


def stored_rows() -> list[dict]:
    """Every row as the database returns it: the leaf's fields, the leaf index, the old chain's."""
    return list(
        AuditEvent.objects.order_by("seq").values(*HASHED_FIELDS, "leaf_index", "prev_hash", "hash")
    )


def go_program_build(tmp_path_factory, package: str) -> str:
    """Build the project's Go program `package` (e.g. "audit/tlogcheck") offline, GOPATH mode,
    against Debian's golang-golang-x-mod-dev. In CI (PATTERM_REQUIRE_GO=1, set by .ci/run after
    installing Go) a missing Go fails; elsewhere the test is skipped."""
    go = shutil.which("go")
    if go is None or not Path("/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog").is_dir():
        if os.environ.get("PATTERM_REQUIRE_GO"):
            pytest.fail("go and golang-golang-x-mod-dev are required (apt-get install ...)")
        pytest.skip("needs go and golang-golang-x-mod-dev (installed by .ci/run)")
    binary = tmp_path_factory.mktemp("go") / Path(package).name
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOCACHE": str(tmp_path_factory.mktemp("gocache")),
        "GOFLAGS": "",
    }
    subprocess.run(  # noqa: S603
        [go, "build", "-o", str(binary), f"./{package}"],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
    )
    return str(binary)
