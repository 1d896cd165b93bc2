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


# D2: what a browser gets from the production settings: one login page, one sign-in.
HEADER_PROBE = """
import json
from django.test import Client, override_settings
from django.test.utils import setup_test_environment
from accounts.models import User

setup_test_environment()
User.objects.create_user("probe@example.com", "Lange-Reise-2026")
# Static files are not collected for the probe; the headers do not depend on them.
plain = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
with override_settings(STORAGES=plain):
    client = Client(HTTP_HOST="portal.example.de")
    insecure = client.get("/account/login/")
    page = client.get("/account/login/", secure=True)
    login = client.post("/account/login/", {"email": "probe@example.com",
                        "password": "Lange-Reise-2026"}, secure=True)
cookies = {}
for response in (page, login):
    for name, morsel in response.cookies.items():
        cookies[name] = {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"]),
                         "samesite": morsel["samesite"], "path": morsel["path"],
                         "domain": morsel["domain"]}
print(json.dumps({"insecure": [insecure.status_code, insecure.get("Location", "")],
                  "status": [page.status_code, login.status_code],
                  "headers": dict(page.headers), "cookies": cookies}))
"""


@pytest.fixture(scope="module")
def production_responses(tmp_path_factory):
    database = tmp_path_factory.mktemp("production") / "probe.sqlite3"
    environment = {**COMPLETE, "DATABASE_URL": f"sqlite:///{database}"}
    migrated = manage("migrate", "--no-input", environment=environment)
    assert migrated.returncode == 0, migrated.stderr
    result = manage("shell", "-c", HEADER_PROBE, environment=environment)
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_redirects_plain_http_to_https(production_responses):
    status, location = production_responses["insecure"]

    assert status == 301
    assert location.startswith("https://portal.example.de/")


def test_production_response_headers(production_responses):
    headers = {name.lower(): value for name, value in production_responses["headers"].items()}

    assert production_responses["status"] == [200, 302]
    hsts = headers["strict-transport-security"]
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts
    policy = {
        part.strip().split(" ", 1)[0]: part.strip()
        for part in headers["content-security-policy"].split(";")
    }
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_production_cookies_are_host_only_secure_httponly_and_samesite(production_responses):
    cookies = production_responses["cookies"]

    assert {"__Host-sessionid", "__Host-csrftoken"} <= set(cookies)
    for name in ("__Host-sessionid", "__Host-csrftoken"):
        flags = cookies[name]
        assert flags["secure"] and flags["httponly"], name
        assert flags["samesite"] == "Lax", name
        assert flags["path"] == "/" and not flags["domain"], name  # what __Host- requires
