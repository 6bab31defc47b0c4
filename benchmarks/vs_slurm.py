"""Trivial jobs (`true`) through commonpool and a tuned Slurm, side by side, in one run.

    python -m benchmarks.vs_slurm                       # N = 1000 and 5000, everything
    python -m benchmarks.vs_slurm --sizes 1000 --cli-n 100 --cap-s 300
    python -m benchmarks.vs_slurm --skip-slurm          # commonpool only

Slurm first: the peer's own `bench.sh -p tuned -r 1` (one node with the machine's
CPUs, so at most 2 jobs at once on 2 cores) for `sbatch` in a loop and one
`--array`, then its `stop.sh`. Then commonpool at the same concurrency: a fresh
`LocalPool` (1 agent, 2 CPUs; its scheduler a process of its own, as compose deploys
it, or with `--scheduler thread` a thread of the API's) per variant and size, so runs
never see each other's jobs, for a loop of `commonpool run -- true` processes (the
sbatch loop's twin), a loop of SDK submits (Slurm has no API: compared with the sbatch
loop) and one array. Figures, as bench.sh defines them:
- submit jobs/s: jobs submitted / wall time of the submit step;
- all-done jobs/s: jobs final / (first submit -> all final); a run that hits
  `--cap-s` (submit step included) reports the rate it reached, marked capped;
- submit->start latency: median of `--latency-n` single jobs on an idle pool (after
  one unmeasured job that creates the node's executor), each
  `sh -c 'date +%s.%N > FILE'` after a random 0-1 s pause; latency = stamp - the
  client's clock just before the submit call.
Prints a table (stderr) with commonpool/Slurm ratios and, last on stdout, one JSON
line with every number and the goals. Exit 1 if a job failed or Slurm could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.scheduler.domain.errors import CommonpoolError, RateLimited
from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.spec import JobSpec

PEER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "slurm"
FINAL = frozenset(s.value for s in JobState if s.terminal)
VARIANTS = {"cli": "loop", "api": "loop", "array": "array"}  # ours -> the Slurm variant
POLL_S = 0.2  # one summary query per poll: cheap, and does not flood the API
GOALS = {"done_ratio": 3.0, "latency_s": 0.1, "array_n": 5000, "array_submit_s": 1.0}
TRUE = JobSpec(name="true", kind="command", command=["true"])
LAYOUTS = {  # where the pool's scheduler runs (`--scheduler`)
    "process": "a `commonpool scheduler` process beside the API, as compose deploys it",
    "thread": "a thread in the API's process, as `commonpool up` runs it",
}
console = Console(stderr=True, width=max(Console(stderr=True).width, 120))


@dataclass
class Run:
    """One submit-and-drain run; the field names match bench.sh's columns."""

    variant: str
    n: int
    submitted: int
    submit_s: float
    done_s: float
    completed: int
    succeeded: int
    submit_fail: int
    capped: bool
    rate_limited: int = 0
    peer_n: int = 0  # the Slurm run's N it is compared with (the CLI loop may be shorter)

    @property
    def failed(self) -> int:
        return self.completed - self.succeeded

    def mark(self) -> str:
        """What the table must flag next to this run's figures."""
        bad = self.failed + self.submit_fail
        return (" (capped)" if self.capped else "") + (f" ({bad} FAILED)" if bad else "")

    def figures(self) -> dict[str, float]:
        return {
            "submit_s": self.submit_s,
            "submit_per_s": self.submitted / self.submit_s if self.submit_s > 0 else 0.0,
            "done_per_s": self.completed / self.done_s if self.done_s > 0 else 0.0,
        }


# -- pure helpers ------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    return [int(part) for part in text.replace(" ", ",").split(",") if part.strip()]


def parse_variants(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"variants are {', '.join(VARIANTS)}; got {text!r}")
    return chosen


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object a bench prints as its last non-empty line."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output")
    return json.loads(lines[-1])


def count_final(by_state: dict[str, int]) -> tuple[int, int]:
    """(jobs in a final state, of which SUCCEEDED) from a jobs-by-state count."""
    final = sum(count for state, count in by_state.items() if state in FINAL)
    return final, by_state.get(JobState.SUCCEEDED.value, 0)


def slurm_figures(report: dict[str, Any]) -> tuple[dict[tuple[str, int], dict], float | None]:
    """bench.sh's medians by (variant, N), and its latency median in seconds."""
    runs = {
        (r["variant"], int(r["N"])): {
            "submit_s": r["submit_s"]["median"],
            "submit_per_s": r["submit_per_s"]["median"],
            "done_per_s": r["done_per_s"]["median"],
            "failed": sum(r["submit_fail"]) > 0,
            "mark": (" (capped)" if r["capped_runs"] else "")
            + (" (sbatch FAILED)" if sum(r["submit_fail"]) else ""),
        }
        for r in report.get("results", [])
    }
    latency = [x["median_ms"] / 1000 for x in report.get("latency", [])]
    return runs, (latency[0] if latency else None)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if not ours or not theirs else round(ours / theirs, 3)


def compare(runs: list[Run], slurm: dict[tuple[str, int], dict]) -> list[dict[str, Any]]:
    """Rows of (variant, N, figure): both values and commonpool/Slurm."""
    rows = []
    for run in runs:
        peer_n = run.peer_n or run.n
        ours, theirs = run.figures(), slurm.get((VARIANTS[run.variant], peer_n), {})
        figures = ["submit_s" if run.variant == "array" else "submit_per_s", "done_per_s"]
        for figure in figures:
            rows.append({"variant": run.variant, "n": run.n, "peer_n": peer_n, "figure": figure,
                         "commonpool": round(ours[figure], 4), "slurm": theirs.get(figure),
                         "ratio": ratio(ours[figure], theirs.get(figure)), "cp_mark": run.mark(),
                         "slurm_mark": theirs.get("mark", "")})  # fmt: skip
    return rows


def judge(rows: list[dict[str, Any]], runs: list[Run], latency_s: float | None) -> list[dict]:
    """The issue's goals; `met` is None when the run did not measure the figure.

    Throughput is judged on the API loop and the array: a CLI loop's all-done rate
    is bounded by its submit rate (a Python start-up per call), not by dispatch.
    """
    done = [r["ratio"] for r in rows if r["figure"] == "done_per_s" and r["variant"] != "cli"]
    done = [value for value in done if value is not None]
    arrays = [r for r in runs if r.variant == "array" and r.n >= GOALS["array_n"]]
    array_s = max((r.submit_s for r in arrays), default=None)
    return [
        {"goal": "all-done >= 3x tuned Slurm (API loop, array)", "value": min(done, default=None),
         "met": min(done) >= GOALS["done_ratio"] if done else None},
        {"goal": "submit-to-start median <= 0.1 s", "value": latency_s,
         "met": latency_s <= GOALS["latency_s"] if latency_s is not None else None},
        {"goal": "API submit of an array of 5,000 < 1 s", "value": array_s,
         "met": array_s < GOALS["array_submit_s"] if array_s is not None else None},
    ]  # fmt: skip


# -- Slurm -------------------------------------------------------------------------


def run_slurm(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """bench.sh's JSON; its progress goes to our stderr. stop.sh runs whatever happens."""
    peer_variants = " ".join(sorted({VARIANTS[v] for v in args.variants}))
    cmd = [str(args.slurm_peer / "bench.sh"), "-p", "tuned", "-r", "1", "-v", peer_variants,
           "-n", " ".join(map(str, args.sizes)), "-l", str(args.latency_n),
           "-c", str(args.cap_s), "-g", "1", "-o", str(out)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench.sh exited {proc.returncode} (see the lines above)")
        return last_json(proc.stdout)
    finally:
        subprocess.run([str(args.slurm_peer / "stop.sh")], capture_output=True)


# -- commonpool --------------------------------------------------------------------


class SubmitCounts(NamedTuple):
    """What one submit variant achieved: accepted, refused, and 429s waited out."""

    submitted: int
    failed: int
    rate_limited: int = 0


def submit_cli(pool: LocalPool, n: int, deadline: float) -> SubmitCounts:
    """`commonpool run` processes, one after another (a 429 ends a process: failed)."""
    env = {**os.environ, "COMMONPOOL_SERVER_URL": pool.url, "COMMONPOOL_TOKEN": pool.admin_token}
    cli = [str(Path(sys.executable).parent / "commonpool"), "run", "--cpus", "1", "--", "true"]
    ok = failed = 0
    while ok + failed < n and time.time() < deadline:
        proc = subprocess.run(cli, env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            ok += 1
        else:
            failed += 1
            if failed == 1:
                console.print(f"  [red]commonpool run failed[/]: {proc.stderr.strip()[-300:]}")
    return SubmitCounts(ok, failed)


def submit_api(client: Client, n: int, deadline: float) -> SubmitCounts:
    """SDK submits, one after another; a 429 waits as told and retries (counted)."""
    ok = failed = limited = 0
    while ok + failed < n and time.time() < deadline:
        try:
            client.submit_job(TRUE)
            ok += 1
        except RateLimited as exc:
            limited += 1
            time.sleep(float(exc.fields.get("retry_after_s", 1)))
        except CommonpoolError as exc:
            failed += 1
            console.print(f"  [red]submit failed[/]: {exc}")
    return SubmitCounts(ok, failed, limited)


def submit_array(client: Client, n: int) -> SubmitCounts:
    """One array of `n` tasks in one request: all accepted or all refused."""
    try:
        client.submit_array(TRUE.model_copy(update={"array": f"0-{n - 1}"}))
        return SubmitCounts(n, 0)
    except CommonpoolError as exc:
        console.print(f"  [red]array submit failed[/]: {exc}")
        return SubmitCounts(0, n)


def wait_done(client: Client, submitted: int, deadline: float) -> tuple[int, int, bool]:
    """Poll the pool's jobs-by-state until `submitted` jobs are final or the cap passes."""
    while True:
        final, succeeded = count_final(client.pool_summary().jobs_by_state)
        if final >= submitted or time.time() > deadline:
            return final, succeeded, final < submitted
        time.sleep(POLL_S)


@contextmanager
def fresh_pool(work: Path, label: str, layout: str) -> Iterator[tuple[LocalPool, Client]]:
    """A new pool with its own state dir: 1 agent with 2 CPUs, as Slurm's one 2-CPU node;
    its scheduler in a process of its own or in a thread of the API's (`LAYOUTS`)."""
    with (
        open(work / f"{label}.log", "w") as log,
        LocalPool(work / label, agents=1, cpus_per_agent=2, log=log,
                  scheduler_process=layout == "process") as pool,  # fmt: skip
        pool.client() as client,
    ):
        yield pool, client


def run_variant(variant: str, n: int, cap_s: int, work: Path, layout: str) -> Run:
    with fresh_pool(work, f"{variant}-{n}", layout) as (pool, client):
        t0 = time.time()
        deadline = t0 + cap_s
        if variant == "cli":
            submitted, failed, limited = submit_cli(pool, n, deadline)
        elif variant == "api":
            submitted, failed, limited = submit_api(client, n, deadline)
        else:
            submitted, failed, limited = submit_array(client, n)
        submit_s = time.time() - t0
        completed, succeeded, capped = wait_done(client, submitted, deadline)
        capped = capped or submitted + failed < n  # the cap cut the submit loop short
        run = Run(variant, n, submitted, round(submit_s, 4), round(time.time() - t0, 4),
                  completed, succeeded, failed, capped, limited)  # fmt: skip
    figures = run.figures()
    console.print(
        f"  commonpool {variant:<5} N={n:<5} submit {submit_s:7.2f}s "
        f"({figures['submit_per_s']:8.1f}/s)  all-done {run.done_s:8.2f}s "
        f"({figures['done_per_s']:6.2f}/s){run.mark()}"
    )
    return run


def run_latency(samples: int, work: Path, layout: str) -> list[float]:
    """submit -> first line of the job runs, one job at a time on an idle pool."""
    found: list[float] = []
    with fresh_pool(work, "latency", layout) as (_, client):
        # The node's first command creates its executor (once per node, ~1-2 s), as
        # slurmd is up before Slurm's first job: warm it, unmeasured.
        client.wait(client.submit_job(TRUE).id, timeout_s=120, poll_s=0.05)
        for i in range(samples):
            time.sleep(random.random())  # not phase-locked to the scheduler's tick
            stamp = work / f"latency-{i}.stamp"
            spec = TRUE.model_copy(update={"command": ["/bin/sh", "-c", f"date +%s.%N > {stamp}"]})
            submitted = time.time()
            job = client.submit_job(spec)
            while time.time() - submitted < 60 and not (stamp.exists() and stamp.read_text()):
                time.sleep(0.005)
            with suppress(TimeoutError):  # a lost sample shows as n < latency-n
                client.wait(job.id, timeout_s=60, poll_s=0.05)
            if stamp.exists() and stamp.read_text():
                found.append(float(stamp.read_text()) - submitted)
    if found:
        ms = sorted(round(x * 1000, 1) for x in found)
        console.print(f"  commonpool latency: median {statistics.median(ms):.1f} ms, {ms}")
    return found


# -- output ------------------------------------------------------------------------

LABELS = {"submit_per_s": ("submit jobs/s", "higher"), "submit_s": ("submit s (1 call)", "lower"),
          "done_per_s": ("all-done jobs/s", "higher"),
          "latency_s": ("submit->start s", "lower")}  # fmt: skip
NAMES = {"cli": "CLI loop vs sbatch loop", "api": "API loop vs sbatch loop", "array": "array"}


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def render(rows: list[dict], goals: list[dict], notes: list[str]) -> None:
    table = Table(title="trivial jobs: commonpool vs Slurm (tuned), 2-way concurrency")
    for column in ("variant", "N", "figure", "better", "commonpool", "Slurm", "cp/Slurm"):
        table.add_column(column, justify="left" if column in ("variant", "figure") else "right")
    for row in rows:
        label, better = LABELS[row["figure"]]
        n = "-" if row["n"] is None else str(row["n"])
        if row.get("peer_n", row["n"]) != row["n"]:
            n += f" (Slurm {row['peer_n']})"
        ours = cell(row["commonpool"]) + row.get("cp_mark", "")
        theirs = cell(row["slurm"]) + row.get("slurm_mark", "")
        table.add_row(NAMES.get(row["variant"], "latency"), n, label, better, ours, theirs,
                      cell(row["ratio"]))  # fmt: skip
    console.print(table)
    for goal in goals:
        met = {True: "[green]met[/]", False: "[red]not met[/]", None: "not measured"}
        console.print(f"goal: {goal['goal']}: {cell(goal['value'])} -> {met[goal['met']]}")
    for note in notes:
        console.print(f"note: {note}")


def commit() -> str:
    """The code measured (the scheduler changes fast): HEAD, `+dirty` with local edits."""
    git = ["git", "-C", str(Path(__file__).parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[1000, 5000], help="Job counts N.")
    parser.add_argument("--variants", type=parse_variants, default=list(VARIANTS),
                        help="commonpool variants, comma-separated: cli,api,array.")  # fmt: skip
    parser.add_argument("--cli-n", type=int, help="Cap on the CLI loop's N (default: N).")
    parser.add_argument("--latency-n", type=int, default=20, help="Latency samples (median).")
    parser.add_argument("--cap-s", type=int, default=600, help="Cap, seconds, on one run.")
    parser.add_argument("--skip-slurm", action="store_true", help="Measure commonpool only.")
    parser.add_argument("--slurm-peer", type=Path, default=PEER, help="The Slurm peer's dir.")
    parser.add_argument("--no-submit-limit", action="store_true",
                        help="Lift the API's submit rate limit (default: as shipped).")  # fmt: skip
    parser.add_argument("--scheduler", choices=list(LAYOUTS), default="process",
                        help="Where the pool's scheduler runs: " + "; ".join(
                            f"{k}: {v}" for k, v in LAYOUTS.items()) + " (default: process).")
    parser.add_argument("--keep", action="store_true", help="Keep the work dir (pool logs).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cp-vs-slurm-"))
    os.environ["COMMONPOOL_CONFIG"] = str(work / "absent.toml")  # no user config file
    notes = [
        "Slurm has no API: the API loop is compared with the sbatch loop",
        f"commonpool's scheduler: {LAYOUTS[args.scheduler]} (--scheduler {args.scheduler})",
    ]
    if args.no_submit_limit:
        os.environ["COMMONPOOL_SUBMIT_RATE_PER_S"] = "0"  # read by each pool's settings
        notes.append("--no-submit-limit: the API's submit rate limit was off")
    slurm_report: dict[str, Any] | None = None
    try:
        if args.skip_slurm:
            notes.append("--skip-slurm: commonpool only, no Slurm figures or ratios")
        else:
            try:
                slurm_report = run_slurm(args, work / "slurm")
            except (RuntimeError, ValueError, OSError) as exc:
                console.print(f"[red]Slurm peer failed[/]: {exc}")
                return 1
        runs: list[Run] = []
        measured: dict[tuple[str, int], Run] = {}  # a capped CLI loop runs once, not per N
        for n in args.sizes:
            for variant in args.variants:
                size = min(n, args.cli_n) if variant == "cli" and args.cli_n else n
                if size < n:
                    notes.append(f"CLI loop capped at N={size} (--cli-n), compared with N={n}")
                if (variant, size) not in measured:
                    measured[variant, size] = run_variant(
                        variant, size, args.cap_s, work, args.scheduler
                    )
                runs.append(replace(measured[variant, size], peer_n=n))
        latencies = run_latency(args.latency_n, work, args.scheduler)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    slurm, slurm_latency = slurm_figures(slurm_report or {})
    latency_s = statistics.median(latencies) if latencies else None
    rows = compare(runs, slurm)
    rows.append({"variant": "latency", "n": None, "figure": "latency_s", "commonpool": latency_s,
                 "slurm": slurm_latency, "ratio": ratio(latency_s, slurm_latency)})  # fmt: skip
    goals = judge(rows, runs, latency_s)
    if any(r.rate_limited for r in runs):
        notes.append("the API loop was rate limited (429, retried): see rate_limited in the JSON")
    if any(r.capped for r in runs):
        notes.append(f"capped: the run hit --cap-s {args.cap_s:g}; its rate is what it reached")
    render(rows, goals, notes)
    failed = any(r.failed or r.submit_fail for r in runs) or any(
        x["failed"] for x in slurm.values()
    )
    print(json.dumps({
        "benchmark": "vs_slurm", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(), "cpus": os.cpu_count(), "sizes": args.sizes, "cli_n": args.cli_n,
        "cap_s": args.cap_s, "scheduler": args.scheduler,
        "commonpool": {"runs": [{**asdict(r), **r.figures(), "failed": r.failed} for r in runs],
                       "latency_s": latencies, "latency_median_s": latency_s},
        "slurm": slurm_report, "rows": rows, "goals": goals, "notes": notes, "failed": failed,
    }))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
