"""Production settings refuse to start without their secrets (D3) and pass `check --deploy` (D1)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The contract (SECURITY.md D3), written out here rather than imported: importing the production
# settings is exactly what refuses to work without them.
REQUIRED_SETTINGS = (
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "PATTERM_MASTER_KEYS",
    "PATTERM_AUDIT_PSEUDONYM_KEY",
    "PATTERM_AUDIT_SIGNING_KEY",
)

COMPLETE = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "portal.example.de",
    "DATABASE_URL": "sqlite:////tmp/patterm-deploy-check.sqlite3",
    "PATTERM_MASTER_KEYS": "1:" + "A" * 43 + "=",
    "PATTERM_AUDIT_PSEUDONYM_KEY": "p" * 43,
    "PATTERM_AUDIT_SIGNING_KEY": "A" * 43 + "=",
}


def manage(*args, environment):
    env = {
        key: value
        for key, value in os.environ.items()
        # The browser tests allow the ORM beside Playwright's event loop in the test process;
        # production must not inherit that (Django's check async.E001 refuses it).
        if key not in REQUIRED_SETTINGS and key not in ("DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(environment, DJANGO_SETTINGS_MODULE="patterm.settings.production")
    return subprocess.run(  # noqa: S603  (our own interpreter and manage.py)
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("missing", REQUIRED_SETTINGS)
def test_production_refuses_to_start_naming_the_missing_setting(missing):
    environment = {key: value for key, value in COMPLETE.items() if key != missing}

    result = manage("check", environment=environment)

    assert result.returncode != 0
    assert f"refuses to start in production without: {missing}" in result.stderr


def test_production_settings_pass_the_deployment_checklist():
    result = manage("check", "--deploy", "--fail-level", "WARNING", environment=COMPLETE)

    assert result.returncode == 0, result.stderr + result.stdout
