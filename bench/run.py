"""`make bench`: every benchmark on PostgreSQL, one table of Patterm against its comparisons.

    make bench                                   # the full run (under 15 minutes on 2 cores)
    make bench BENCH_ARGS=--quick                # small sizes (under 3 minutes); CI runs this
    .venv/bin/python bench/run.py --only writes audit
    .venv/bin/python bench/run.py --args booking "--sizes 10000 100000 --clients 8"

Each bench script runs in its own process on its own throwaway database `bench_<name>` on the
server of DATABASE_URL (default: the local server). This script checks that the server
answers (and stops with a clear message if not), runs them one after the other, and prints one
table: figure, Patterm's number, the comparison's number from the same run, the ratio, the goal
and whether it was met. It writes `bench/results/latest.json` (and a copy named by the time),
`latest.md` (the table as Markdown, with the machine) and `scaling.png` (the figures measured
at several sizes). Where a goal is missed the scripts write pyinstrument reports to
`bench/results/profiles/`.

Exit status: 0 when every bench ran (goals missed or not: speed on shared machines is noise);
1 when a bench crashed or found a double booking, a lost write or a broken chain; 2 when no
PostgreSQL server answers.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import postgres_url_or_exit  # noqa: E402

BENCHES = ["writes", "booking", "audit", "keys", "record_read", "load"]
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"
# Issue 17: the full run within 15 minutes, the quick one within 3, on an idle 2-core machine.
BUDGET_SECONDS = {False: 15 * 60, True: 3 * 60}


def machine(url: str) -> dict:
    import psycopg

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    with psycopg.connect(url, connect_timeout=3) as connection:
        server = connection.execute("SHOW server_version").fetchone()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgresql": server,
        "os": platform.platform(),
    }


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table_rows(figures: list[dict]) -> list[list[str]]:
    rows = []
    for f in figures:
        met = {True: "yes", False: "NO", None: "-"}[f["met"]]
        rows.append(
            [
                f["name"],
                f"{number(f['patterm'])} {f['unit']}",
                f"{number(f['comparison'])} ({f['comparison_name']})",
                f"{f['ratio']:.2f}x",
                f"{f['goal']}x" if f["goal"] else "-",
                met,
            ]
        )
    return rows


HEADER = ["figure", "Patterm", "comparison (same run)", "ratio", "goal", "met?"]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot(figures: list[dict], path: Path) -> bool:
    scaling = [f for f in figures if f.get("scaling")]
    if not scaling:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scaling), figsize=(4.5 * len(scaling), 3.8), squeeze=False)
    for axis, figure in zip(axes[0], scaling, strict=True):
        for series in figure["scaling"]:
            sizes = [point[0] for point in series["points"]]
            values = [point[1] for point in series["points"]]
            axis.plot(sizes, values, marker="o", label=series["label"])
        axis.set_xscale("log")
        axis.set_ylim(bottom=0)
        axis.set_title(figure["name"], fontsize=9)
        axis.set_xlabel(figure["scaling"][0].get("x", "size"))
        axis.set_ylabel(figure["unit"])
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


CORES = os.cpu_count() or 1


class LoadSampler:
    """The mean number of runnable tasks on the machine while a bench runs (`procs_running`
    of /proc/stat, sampled every half second), for `idle_estimate`."""

    def __init__(self):
        self.samples: list[int] = []
        self._stop = threading.Event()

    @staticmethod
    def runnable() -> int:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running"):
                return int(line.split()[1]) - 1  # not counting the sampler itself
        return 0

    def _sample(self):
        while not self._stop.wait(0.5):
            self.samples.append(self.runnable())

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


def idle_estimate(seconds: float, runnable: float, cpu_seconds: float) -> float:
    """What `seconds` of wall time would have been with the machine to the bench alone.

    With more runnable tasks than cores, each got `CORES / runnable` of a core; the bench
    (its process, its threads and the PostgreSQL backends serving it) is some of them, so this
    stretches its time by at most that factor. Below the core count nothing is scaled: the
    estimate is never below the time measured on a machine that was not full. Nor is it below
    the bench's own CPU seconds: a bench is one Python process driving its work (its threads
    share one interpreter lock), so that much it needs on any machine. A model, not a
    measurement: the PostgreSQL server's own CPU time is in neither figure.
    """
    stretched = seconds * min(1.0, CORES / runnable) if runnable > 0 else seconds
    return max(stretched, cpu_seconds)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sizes_text(sizes: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in sizes.items())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under three minutes")
    parser.add_argument("--only", nargs="+", choices=BENCHES, help="run only these benches")
    parser.add_argument("--skip", nargs="+", choices=BENCHES, default=[], help="leave these out")
    parser.add_argument(
        "--args",
        nargs=2,
        action="append",
        default=[],
        metavar=("BENCH", "OPTIONS"),
        help='extra options (sizes) for one bench, e.g. --args audit "--verify-events 50000"; '
        "each script's --help lists them",
    )
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"))
    arguments = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    url = postgres_url_or_exit("make bench")
    results = Path(arguments.results)
    (results / "profiles").mkdir(parents=True, exist_ok=True)
    extra = {}
    for bench, options in arguments.args:
        if bench not in BENCHES:
            parser.error(f"--args: unknown bench {bench!r} (one of {', '.join(BENCHES)})")
        extra.setdefault(bench, []).extend(shlex.split(options))
    benches = [b for b in (arguments.only or BENCHES) if b not in arguments.skip]
    about = machine(url)
    print(
        f"make bench{' --quick' if arguments.quick else ''}: PostgreSQL {about['postgresql']} "
        f"at {url}, {about['cores']} cores ({about['cpu']}), load {about['load_average']}"
    )

    figures, runs, started = [], [], time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        for bench in benches:
            out = Path(scratch) / f"{bench}.json"
            command = [sys.executable, str(ROOT / "bench" / f"{bench}.py"), "--json", str(out)]
            # Quick runs (CI) only keep the harness working: no time spent profiling.
            command += (
                ["--quick"] if arguments.quick else ["--profile-dir", str(results / "profiles")]
            )
            command += extra.get(bench, [])
            print(f"\n=== {bench}: {shlex.join(command[1:])}", flush=True)
            bench_started, cpu_before = time.monotonic(), children_cpu_seconds()
            load_before = round(os.getloadavg()[0], 2)
            with LoadSampler() as sampler:
                status = subprocess.run(command, cwd=ROOT, env=os.environ.copy()).returncode
            seconds = time.monotonic() - bench_started
            produced = json.loads(out.read_text()) if out.exists() else {"figures": []}
            ok = status == 0 and out.exists()
            # The script's own CPU time beside its wall time: on a shared machine the gap is
            # the time it waited for a core (the database server's CPU is not in it).
            runs.append(
                {
                    "bench": bench,
                    "ok": ok,
                    "status": status,
                    "seconds": round(seconds, 1),
                    "cpu_seconds": round(children_cpu_seconds() - cpu_before, 1),
                    "load_average": [load_before, round(os.getloadavg()[0], 2)],
                    "runnable_mean": round(sampler.mean, 2),
                    "idle_estimate_seconds": round(
                        idle_estimate(seconds, sampler.mean, children_cpu_seconds() - cpu_before),
                        1,
                    ),
                    "sizes": produced.get("sizes", {}),
                    **(
                        {"requests_per_second": round(produced["requests_per_second"], 1)}
                        if "requests_per_second" in produced
                        else {}
                    ),
                }
            )
            print(
                f"=== {bench}: {seconds:.0f} s ({runs[-1]['cpu_seconds']:.0f} s CPU), load "
                f"{load_before} -> {runs[-1]['load_average'][1]}, {sampler.mean:.1f} runnable "
                f"on {CORES} cores: about {runs[-1]['idle_estimate_seconds']:.0f} s idle"
                + (f"; sizes: {sizes_text(runs[-1]['sizes'])}" if runs[-1]["sizes"] else ""),
                flush=True,
            )
            figures += produced["figures"]
            if not ok:
                print(f"!!! bench {bench} FAILED (exit status {status})", file=sys.stderr)

    rows = table_rows(figures)
    total = time.monotonic() - started
    print(f"\n=== Patterm against its comparisons ({total:.0f} s)\n")
    print(text_table(rows))
    print("\n" + "\n".join(run_line(run) for run in runs))
    budget = BUDGET_SECONDS[arguments.quick]
    idle_total = sum(run["idle_estimate_seconds"] for run in runs)
    print(
        f"\nWall time {total:.0f} s; on an idle {CORES}-core machine about {idle_total:.0f} s "
        f"(budget {budget} s)"
    )
    if len(benches) == len(BENCHES) and max(total, idle_total) > budget:
        print(
            f"!! over the {budget} s this run should take on an idle 2-core machine"
            + (" (measured on a busy one: see the estimate)" if idle_total <= budget else "")
        )
    failed = [run["bench"] for run in runs if not run["ok"]]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "started": stamp,
        "quick": arguments.quick,
        "seconds": round(total, 1),
        "idle_estimate_seconds": round(idle_total, 1),
        "machine": about,
        "runs": runs,
        "figures": figures,
    }
    for name in ("latest.json", f"bench-{stamp}.json"):
        (results / name).write_text(json.dumps(report, indent=2))
    machine_line = (
        f"{about['cores']} cores ({about['cpu']}), {about['memory_gib']} GiB, "
        f"PostgreSQL {about['postgresql']} on the same host, Python {about['python']}, "
        f"load average {about['load_average']} at the start, {stamp}"
    )
    (results / "latest.md").write_text(
        f"Machine: {machine_line}. `make bench{' BENCH_ARGS=--quick' if arguments.quick else ''}`"
        f", {total:.0f} s (about {idle_total:.0f} s on an idle machine).\n\n"
        f"{markdown_table(rows)}\n\n" + "\n".join(f"- {run_line(run)}" for run in runs) + "\n"
    )
    plotted = plot(figures, results / "scaling.png")
    print(
        f"\nResults: {results / 'latest.json'}, {results / 'latest.md'}"
        + (f", {results / 'scaling.png'}" if plotted else "")
    )
    missed = [f["name"] for f in figures if f["met"] is False]
    if missed:
        print(f"Goals missed ({len(missed)}): profiles in {results / 'profiles'}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (see the output above)", file=sys.stderr)
    print(f"bench: {len(runs) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def run_line(run: dict) -> str:
    """One bench's sizes, time, CPU time and load: what its figures were measured at."""
    held = (
        f", held {run['requests_per_second']:.0f} requests/s"
        if "requests_per_second" in run
        else ""
    )
    sizes = f": {sizes_text(run['sizes'])}" if run.get("sizes") else ""
    idle = (
        f", {run['runnable_mean']:.1f} runnable: about {run['idle_estimate_seconds']:.0f} s idle"
        if "idle_estimate_seconds" in run
        else ""
    )
    return (
        f"{run['bench']}{sizes}{held} ({run['seconds']:.0f} s, {run['cpu_seconds']:.0f} s CPU, "
        f"load {run['load_average'][0]} -> {run['load_average'][1]}{idle})"
    )


if __name__ == "__main__":
    sys.exit(main())
