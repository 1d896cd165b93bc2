"""schemathesis against the development server's /api/openapi.json, as every demo role.

    .venv/bin/python scripts/api_fuzz.py                     # `make fuzz`; CI runs this
    .venv/bin/python scripts/api_fuzz.py --port 18150 --max-examples 30

Needs requirements-bench.txt (schemathesis). Builds a fresh SQLite database in
`var/fuzz.sqlite3`, loads the demo data (`seed_demo`), starts `manage.py runserver` on loopback
--port, logs in as the demo patient and each staff role (practitioner, clinic administrator,
auditor), and runs schemathesis with its default checks (no server error, status codes, content
types and bodies as the schema says, ...) once anonymously and once per account. Calls that end
the session are left out: `POST /api/auth/logout`, and `POST /api/patient/erasure-request`
(revokes every token of the patient). Exit status 1 when any run finds a failure.
"""

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SESSION_ENDING = ["/api/auth/logout", "/api/patient/erasure-request"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18150, help="loopback port for runserver")
    parser.add_argument("--max-examples", type=int, default=8, help="test cases per operation")
    parser.add_argument(
        "--phases",
        default="examples,fuzzing",
        help="schemathesis phases (default examples,fuzzing; add coverage for a long run)",
    )
    parser.add_argument("--seed", type=int, default=10, help="schemathesis seed (reproducible)")
    parser.add_argument(
        "--report-dir", default=str(ROOT / "var" / "fuzz"), help="JUnit reports per account"
    )
    arguments = parser.parse_args()

    database = ROOT / "var" / "fuzz.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "DJANGO_SETTINGS_MODULE": "patterm.settings.base",
    }
    env.pop("PATTERM_CI", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--no-input", "-v0"], ["seed_demo", "-v0"]):
        subprocess.run([*manage, *command], cwd=ROOT, env=env, check=True)  # noqa: S603

    os.environ.update(DATABASE_URL=env["DATABASE_URL"])
    os.environ["DJANGO_SETTINGS_MODULE"] = env["DJANGO_SETTINGS_MODULE"]
    import django

    django.setup()
    from bench.common import http_json
    from patterm.demo import ACCOUNTS

    base = f"http://127.0.0.1:{arguments.port}"
    log_path = ROOT / "var" / "fuzz-server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(  # noqa: S603
            [*manage, "runserver", f"127.0.0.1:{arguments.port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/health", timeout=2):  # noqa: S310
                        break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        print(f"the development server did not start: see {log_path}")
                        return 1
                    time.sleep(0.3)
            failed = []
            accounts = [("anonymous", None)]
            for account in ACCOUNTS:
                status, body = http_json(
                    "POST",
                    f"{base}/api/auth/login",
                    {"email": account.email, "password": account.password},
                )
                if status != 200:
                    print(f"login as {account.role} failed: {status} {body}")
                    return 1
                accounts.append((str(account.role), body["token"]))
            Path(arguments.report_dir).mkdir(parents=True, exist_ok=True)
            for name, token in accounts:
                command = [
                    str(Path(sys.executable).parent / "schemathesis"),
                    "run",
                    f"{base}/api/openapi.json",
                    # The document's server is "/" (its origin); say which one explicitly.
                    "--url",
                    base,
                    "--max-examples",
                    str(arguments.max_examples),
                    "--seed",
                    str(arguments.seed),
                    "--phases",
                    arguments.phases,
                    # The API validates more than JSON Schema can say (a real e-mail address,
                    # names that are not blank, dates after 1900): schema-valid input it rejects
                    # with a 422 is S4 working, not a failure.
                    "--exclude-checks",
                    "positive_data_acceptance",
                    "--workers",
                    "2",
                    "--request-timeout",
                    "30",
                    "--no-color",
                    "--generation-database",
                    "none",
                    "--report",
                    "junit",
                    "--report-junit-path",
                    str(Path(arguments.report_dir) / f"{name}.xml"),
                ]
                for path in SESSION_ENDING:
                    command += ["--exclude-path", path]
                if token:
                    command += ["--header", f"Authorization: Bearer {token}"]
                print(f"\n=== schemathesis as {name}", flush=True)
                started = time.monotonic()
                status = subprocess.run(command, cwd=ROOT).returncode  # noqa: S603
                print(f"=== {name}: exit {status} in {time.monotonic() - started:.0f} s")
                if status != 0:
                    failed.append(name)
        finally:
            server.terminate()
            server.wait(timeout=10)
    if failed:
        print(f"\nschemathesis found failures as: {', '.join(failed)} (server log: {log_path})")
    else:
        print(f"\nschemathesis: no failures as {', '.join(n for n, _ in accounts)}")
    print(f"schemathesis: {len(accounts) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
