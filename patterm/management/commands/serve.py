"""`manage.py serve`: what `make run` (and `make dev`) start: the web server and the helpers.

    manage.py serve [--port 8000] [--dev]

The web server is gunicorn (threads; one worker per core; WhiteNoise serves the static files),
or with `--dev` Django's `runserver` with autoreload. The helpers are the other long-running
processes the product needs on this database (HELPERS below). honcho runs them all, prefixes
their output, and ends them all on Ctrl-C or SIGTERM (each process group TERM, then KILL after 5
seconds), and when any one of them stops: no orphan stays behind.
"""

import os
import shlex
import sys
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand
from honcho.manager import Manager
from honcho.printer import Printer

SQLITE, POSTGRESQL = "sqlite", "postgresql"


@dataclass(frozen=True)
class Helper:
    """A long-running process beside the web server, started on the databases named."""

    name: str
    arguments: tuple[str, ...]  # of manage.py
    databases: frozenset[str] = frozenset({SQLITE, POSTGRESQL})


# Add a helper here: one line, its manage.py arguments and the databases it runs on.
HELPERS: list[Helper] = [
    # The audit log's one integrator (decision 0011). SQLite integrates inline at commit.
    Helper("audit-integrator", ("audit_integrate",), frozenset({POSTGRESQL})),
    # The appointment e-mails' outbox (decision 0022). SQLite also sends inline at commit; the
    # sender there retries what a refusing mail server left.
    Helper("mail-sender", ("send_mails",)),
]


def web_command(port: int, *, dev: bool = False, host: str = "127.0.0.1") -> list[str]:
    """The web server's command line (the 200-client test starts the same one)."""
    python = sys.executable
    manage = str(settings.BASE_DIR / "manage.py")
    if dev:
        return [python, manage, "runserver", f"{host}:{port}"]
    cores = os.cpu_count() or 1
    return [
        os.path.join(os.path.dirname(python), "gunicorn"),
        "patterm.wsgi:application",
        f"--bind={host}:{port}",
        f"--workers={cores}",  # one per core: SQLite has one writer at a time anyway
        "--worker-class=gthread",
        "--threads=16",  # requests waiting on the database wait in threads, not the backlog
        "--backlog=2048",  # runserver's 5 reset connections at 40 clients (issue 18)
        "--timeout=30",
        "--graceful-timeout=4",  # below honcho's 5 s before KILL
        "--access-logfile=-",
        # Nothing uses gunicorn's control socket, and its one default path per user
        # (~/.gunicorn/gunicorn.ctl) makes a second server on the machine (a test, a second
        # checkout) take it over from the first.
        "--no-control-socket",
    ]


def processes(port: int, *, dev: bool = False) -> dict[str, list[str]]:
    vendor = POSTGRESQL if "postgresql" in settings.DATABASES["default"]["ENGINE"] else SQLITE
    python, manage = sys.executable, str(settings.BASE_DIR / "manage.py")
    found = {"web": web_command(port, dev=dev)}
    for helper in HELPERS:
        if vendor in helper.databases:
            found[helper.name] = [python, manage, *helper.arguments]
    return found


class Command(BaseCommand):
    help = "Serve the portal (gunicorn, or runserver with --dev) with its helper processes."

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=int,
            default=int(os.environ.get("PORT", "8000")),
            help="loopback port to serve on (default: $PORT, else 8000)",
        )
        parser.add_argument(
            "--dev",
            action="store_true",
            help="serve with runserver and autoreload instead of gunicorn (make dev)",
        )

    def handle(self, *args, port, dev, **options):
        # The children use the same settings (development unless DJANGO_SETTINGS_MODULE says).
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
            "PYTHONUNBUFFERED": "1",
        }
        manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
        for name, command in processes(port, dev=dev).items():
            manager.add_process(name, shlex.join(command), env=env, cwd=str(settings.BASE_DIR))
        self.stdout.write(f"Patterm: http://127.0.0.1:{port}/ (Ctrl-C stops everything)")
        self.stdout.flush()
        manager.loop()
        sys.exit(manager.returncode)
