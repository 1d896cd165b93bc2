"""What the benchmarks share: a throwaway PostgreSQL database, timed threads, and the figures.

Every bench script builds its own database `bench_<name>` on the server of DATABASE_URL, prints
its own lines, and with `--json PATH` writes its figures for `bench/run.py` (`make bench`) to
gather into one table. A figure is Patterm's number beside a comparison measured in the same
run, their ratio, and the goal the ratio is held to (issue 10).
"""

import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Figure:
    """One row of the table: `ratio` is patterm / comparison, in `unit`."""

    name: str
    unit: str
    patterm: float
    comparison: float
    comparison_name: str
    goal: str = ""  # "<= 1.5" or ">= 0.5": what the ratio must be; "" when only reported
    scaling: list = field(default_factory=list)  # [(size, value), ...] for the plot
    note: str = ""
    # The median of per-round ratios, when the bench measured both sides in each round: a
    # change of the machine's load between rounds then cancels out instead of skewing it.
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float:
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.patterm / self.comparison if self.comparison else float("inf")

    @property
    def met(self) -> bool | None:
        if not self.goal:
            return None
        operator, _, bound = self.goal.partition(" ")
        return self.ratio <= float(bound) if operator == "<=" else self.ratio >= float(bound)

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def add_output_arguments(parser) -> None:
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")


def write_figures(path: str | None, bench: str, figures: list[Figure], **extra) -> None:
    if not path:
        return
    with open(path, "w") as out:
        json.dump(
            {"bench": bench, "figures": [f.as_dict() for f in figures], **extra}, out, indent=2
        )


def postgres_url_or_exit(script: str) -> str:
    """DATABASE_URL when it names a PostgreSQL server that answers; else a clear exit (2)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        print(f"{script} measures PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        raise SystemExit(2)
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"{script}: no PostgreSQL server answers at {url} ({reason})", file=sys.stderr)
        raise SystemExit(2) from None
    return url


def recreate_database(url: str, name: str) -> str:
    """Drop and create database `name` on the server of `url`; returns its URL.

    BENCH_DB_SUFFIX is appended to the name, so that two checkouts benching on one server at the
    same time do not drop each other's database.
    """
    import psycopg

    name += os.environ.get("BENCH_DB_SUFFIX", "")

    with psycopg.connect(url, autocommit=True, connect_timeout=3) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def django_on(database: str, script: str) -> str:
    """Recreate `database`, point Django at it with the bench settings, migrate. Returns its URL."""
    url = recreate_database(postgres_url_or_exit(script), database)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def run_threads(count: int, work) -> float:
    """Seconds for `count` threads to run `work(number)`, all released at once.

    Each thread closes its Django connection; the first error of any thread is raised.
    """
    barrier = threading.Barrier(count + 1)
    errors = []

    def worker(number):
        from django.db import connection

        try:
            barrier.wait()
            work(number)
        except Exception as error:  # re-raised below: a failed run has no figure
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def median_seconds(action, repeat: int) -> float:
    import statistics

    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def profile_to(path: str | None, action) -> None:
    """Run `action` once under pyinstrument and write its text report to `path`."""
    if not path:
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    action()
    profiler.stop()
    with open(path, "w") as out:
        out.write(profiler.output_text(unicode=True, color=False, show_all=False))


class Gunicorn:
    """gunicorn serving Patterm on loopback `port` with the bench settings, for a `with` block.

    Started with the current DATABASE_URL; stopped (TERM, then KILL) when the block ends.
    """

    def __init__(self, port: int, *, workers: int = 3, threads: int = 8, log_path=None):
        self.port, self.workers, self.threads, self.log_path = port, workers, threads, log_path
        self.process = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        import subprocess
        import urllib.request
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent
        command = [
            str(Path(sys.executable).parent / "gunicorn"),
            "patterm.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(self.threads),
            "--timeout",
            "30",
            "--graceful-timeout",
            "5",
            "--backlog",
            "2048",
        ]
        log = open(self.log_path or os.devnull, "ab")
        self._log = log
        self.process = subprocess.Popen(
            command,
            cwd=root,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"},
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited at start ({self.process.returncode})")
            try:
                with urllib.request.urlopen(f"{self.base}/api/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise SystemExit(f"gunicorn did not answer on port {self.port} within 30 s")

    def worker_pids(self) -> list[int]:
        from pathlib import Path

        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def __exit__(self, *exc):
        import subprocess

        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return False


def http_json(method: str, url: str, body=None, token: str | None = None, timeout: float = 30):
    """(status, parsed JSON or None) of one request with the standard library only."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None
