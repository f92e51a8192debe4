"""``make bench`` / ``python -m bench [PART...]``: batchveo's performance targets.

Every figure comes from the real CLI run as a fresh child process (``python -m batchveo``),
so start-up and imports count, and each child's CPU and memory are its own: the child is
reaped with ``os.wait4``, whose rusage gives ``ru_utime + ru_stime`` (CPU, all threads) and
``ru_maxrss`` (peak resident memory). Wall time runs from just before the child is spawned to
its exit. Work files (manifests, databases, videos, each child's stdout/stderr, the
simulators' logs) go to ``bench/out/``; the figures go to stdout and ``bench/out/results.json``
(parts run separately are merged into it, each stamped with its time). Several parts may be
named at once (``python -m bench pipeline vertex``); ``all`` (the default) is every part:
load, pipeline, vertex, pacing, reads, polls, restart (``poll-bound``, polls' closed-form
table alone, runs only when named).

1. load (issues 2 and 14): ``batchveo load FILE --db fresh.db`` on a 100,000-row text-only
   CSV and its reload into the same database (must print "0 new, 100000 already loaded"),
   targets < 2 s and < 100 MB each; a 100,000-job text-only YAML (< 3 s, < 100 MB); a
   1,000-job CSV and YAML cycling over 10 shared PNGs. ``--million`` adds a 1,000,000-row
   CSV and its reload (< 20 s, < 100 MB each; the CSV is kept between runs), and a
   1,000,000-job YAML (< 45 s, < 100 MB). A ``batchveo
   --version`` run gives the start-up cost included in every figure. Generating the
   manifests is not timed. ``--against DIR`` runs every case in another checkout too,
   interleaved, as for reads (``bench/load.py``).

2. pipeline (issue 4): a simulator (``batchveo simulate --port 0 --generation-s 0,0``) and a
   2,000-job text-only manifest loaded into a fresh database (not timed), then
   ``batchveo run --rpm 0 --first-poll 0 --poll-interval 0.05s`` with a few
   ``--max-inflight/--submitters/--downloaders`` settings, each on a fresh database and a
   fresh simulator. jobs/s = 2,000 / wall time of the run; CPU per job = the run's CPU
   seconds / 2,000; polls per job = poll requests the simulator answered / 2,000 (1.00 is
   ideal here: every operation is done by its first poll); "exit tail" = from the newest
   video's modification time to the run's exit (work done, process still up); "sim cpu" is
   what the simulator burnt meanwhile (from /proc), since both share the machine's cores.
   A run is complete only if it exits 0 and 2,000 .mp4 files are on disk. Each trial
   gets a fresh folder, and a bench run deletes the previous run's folders only after
   its own trials (see ``bench.pipeline._delete_trials``: deleting thousands of files
   just before a trial slows every file creation on this file system). Targets (>= 300
   jobs/s, < 3 ms CPU per job, < 150 MB) are judged on the first setting (the one the issue
   names); the best one tried is reported too. ``--profile`` adds two runs of the first
   setting: one under ``bench.counters`` (event-loop iterations, tasks, aiosqlite round
   trips, worker wake-ups, store calls, per job) and one under cProfile (the functions with
   the most own time).

2b. vertex (issue 13): part 2's trial of the first setting on the Vertex AI route, twice:
   videos inline (base64 in the poll answer that says done: that answer is the download),
   and in Cloud Storage (``--storage-uri gs://bkt/night/``, the simulator's own bucket, so
   each job adds a metadata read and a media read verified by ``md5Hash``). Each trial
   starts a fresh ``batchveo simulate --port 0 --generation-s 0,0 --write-vertex-key KEY``,
   loads the manifest with ``--provider vertex`` (the GA model, the default) and times
   ``batchveo run --provider vertex --project P --location us-central1 --base-url SIM
   --storage-base-url SIM`` with the same flags as part 2 and
   ``GOOGLE_APPLICATION_CREDENTIALS=KEY``: google-auth's real flow (a signed JWT assertion
   traded for a bearer token at the simulator's token endpoint) is part of what is timed,
   and the bearer token is checked on every request. Same figures and the same targets as
   part 2, judged on each of the two, plus the token requests (one per run: a token lives an
   hour), Cloud Storage requests per job, and a check that the videos really came the way
   the trial says (bucket objects written and read: 2,000 each for storage, none inline).
   ``--profile`` adds a counted and a cProfile run of each.

3. pacing: a simulator with ``--rpm-limit 60`` (60 s sliding window, generation 1-3 s) and
   a 200-job run with ``--rpm 60 --max-runtime 2m`` (and ``--max-inflight 50 --first-poll 2s
   --poll-interval 1s``, so that only the pacer limits submits). From the simulator's
   accepted submit times: achieved rate = 60 * (accepted - 1) / (last - first accepted
   submit), which must be within 2% under the limit and never above; the simulator's
   largest count of accepted submits in any 60 s window (<= 60) and its quota 429s (0: it
   refuses any submit over the limit, so this count, not the window maximum, is what
   reveals a burst). Then a restart: a run SIGTERMed after 30 s and a second one started at
   once on the same database and simulator, also stopped after 30 s: no quota 429, and the
   gap between the last submit before the restart and the first after it is at least a
   pacing period (no start-up burst). This part takes about 3 minutes by nature.

4. reads (issue 14): ``export`` (JSONL, CSV), ``report`` and ``status`` over a finished
   night of 100,000 and 1,000,000 jobs, made in seconds by SQL in the real schema
   (``bench/gen_db.py``, kept between runs): seconds and peak memory, targets export
   < 100 MB and report < 150 MB at every size, status < 0.5 s at 1M (``bench/reads.py``).
   ``--against DIR`` runs every case in another checkout too (with its own ``.venv``),
   interleaved: before and after side by side.

5. polls (issue 14): polls per job and the median, 95th-percentile and mean notice delay
   (the simulator's done time against the job's generated time at the client) of the
   learned schedule (``--max-notice-delay 10s``, the default, and ``5s``) beside the fixed
   one (``--first-poll 10s --poll-interval 10s``), on the same simulated generation times:
   300 jobs at ``--rpm 60`` on a fresh database each, all arms of a distribution at once,
   on a night compressed 20 or 40 times (``bench.fastclock``, and a simulator scaled
   alike). Two distributions: log-normal median 60 s sigma 0.5 (the targets: at most half
   the polls, a median delay no worse) and median 150 s ("one to six minutes"). About a
   minute. Then a table in closed form, no runs (``bench/poll_sweep.py``): for median 60 s
   at sigma 0.25, 0.35, 0.5 and 0.75, and median 150 s sigma 0.5, each schedule's expected
   polls, median and mean delay under the known distribution, beside the fewest polls
   any schedule could have at that median (``bench/poll_bound.py``: a dynamic program over
   every schedule on a 0.5 s grid, and a lower bound for schedules off the grid) and at
   that mean (``bench/poll_bound_mean.py``, the learned rule's own target), and whether
   half the fixed schedule's polls at no worse a median is within any schedule's reach.
   ``python -m bench poll-bound`` prints that table alone, in about five seconds (a part
   run only when named: ``polls`` and ``all`` print it already).

6. restart (issue 14): ``batchveo run`` restarted on a night half done (50% done with its
   event log, 50% pending) of 1,000 and 1,000,000 jobs, against a simulator: the time
   from spawning it to the simulator's first accepted submit, as a cron line restarts it,
   with ``--budget``, and with ``--prices`` (new prices, then the same again); target
   < 1 s at 1M for each. Then the hot queries timed in the store (``bench/claim_times.py``:
   a claim with and without a budget, the next due, the poller's due query, the routes
   with work, the last submit) at both sizes. ``--against DIR`` as for reads
   (``bench/restart.py``).

Every measured checkout is byte-compiled first (``compileall``, not timed) and the children
may write bytecode whatever the session's ``PYTHONDONTWRITEBYTECODE``: an installed batchveo
starts from its ``.pyc`` files, and compiling every module it imports would add 0.1-0.3 s
to each figure (it did to the figures measured before this rule).

The machine may be shared: every part prints the load average around it, CPU per job is
the figure least disturbed by other processes, and ``--repeat N`` keeps the fastest of N
runs of each load case and pipeline setting. Missed targets print FAIL; the exit status is
0 unless ``--strict`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import run_load
from bench.pacing import run_pacing
from bench.pipeline import delete_trials, run_pipeline
from bench.polls import run_poll_bound, run_polls
from bench.proc import OUT, ROOT, compile_code, machine_info
from bench.reads import SIZES, Code, run_reads
from bench.report import PartResult, table
from bench.restart import SIZES as RESTART_SIZES
from bench.restart import run_restart
from bench.vertex import run_vertex

PARTS = ("load", "pipeline", "vertex", "pacing", "reads", "polls", "restart")
NAMED_ONLY = ("poll-bound",)
"""Parts run only when named: ``all`` has them already (polls prints poll-bound's table)."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "part",
        nargs="*",
        metavar="PART",
        help=f"{', '.join(PARTS + NAMED_ONLY)} or all (the default)",
    )
    p.add_argument("--rows", type=int, default=100_000, help="load: rows of the big manifests")
    p.add_argument("--jobs", type=int, default=2_000, help="pipeline, vertex: jobs per run")
    p.add_argument("--no-sweep", action="store_true", help="pipeline: the default setting only")
    p.add_argument(
        "--profile",
        action="store_true",
        help="pipeline, vertex: add a counted and a cProfile run",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="load, pipeline, vertex, reads: best of N runs of each case",
    )
    p.add_argument(
        "--read-sizes",
        default=",".join(str(n) for n in SIZES),
        help="reads: jobs of each night, comma-separated",
    )
    p.add_argument(
        "--restart-sizes",
        default=",".join(str(n) for n in RESTART_SIZES),
        help="restart: jobs of each night, comma-separated",
    )
    p.add_argument(
        "--against",
        type=Path,
        help="load, reads, restart: also run each case in this checkout (before/after)",
    )
    p.add_argument(
        "--million",
        action="store_true",
        help="load: add a 1,000,000-row CSV and its reload, and a 1,000,000-job YAML",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    unknown = [name for name in args.part if name not in (*PARTS, *NAMED_ONLY, "all")]
    if unknown:
        p.error(f"unknown part {unknown[0]!r} (choose from {', '.join(PARTS + NAMED_ONLY)}, all)")
    return args


def _save(parts: list[PartResult], machine: dict[str, Any], stamps: dict[str, str]) -> None:
    path = OUT / "results.json"
    try:
        saved: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    saved["machine"] = machine
    for part in parts:
        saved[part.name] = {"finished_at": stamps[part.name], **part.to_json()}
    path.write_text(json.dumps(saved, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    named = args.part or ["all"]
    wanted = PARTS if "all" in named else tuple(dict.fromkeys(named))
    runners: dict[str, Callable[[], PartResult]] = {
        "load": lambda: run_load(
            rows=args.rows, repeat=args.repeat, million=args.million, against=args.against
        ),
        "pipeline": lambda: run_pipeline(
            args.jobs, sweep=not args.no_sweep, profile=args.profile, repeat=args.repeat
        ),
        "vertex": lambda: run_vertex(args.jobs, profile=args.profile, repeat=args.repeat),
        "pacing": run_pacing,
        "reads": lambda: run_reads(
            tuple(int(n) for n in args.read_sizes.split(",")),
            against=args.against,
            repeat=args.repeat,
        ),
        "polls": run_polls,
        "poll-bound": run_poll_bound,
        "restart": lambda: run_restart(
            tuple(int(n) for n in args.restart_sizes.split(",")), against=args.against
        ),
    }
    machine = machine_info()
    for code in [Code("after", ROOT)] + ([Code("before", args.against)] if args.against else []):
        compile_code(code.python, code.root)  # as installed: no child compiles source
    print(
        f"batchveo bench: {machine.get('cpus')} CPUs ({machine.get('cpu_model')}),"
        f" {machine.get('memory_mb')} MB, Python {machine['python']},"
        f" git {machine.get('git')}, load average {machine['loadavg_at_start']}",
        flush=True,
    )
    parts: list[PartResult] = []
    stamps: dict[str, str] = {}
    for name in wanted:
        print(f"\n== {name} ...", flush=True)
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        part = runners[name]()
        load_after = os.getloadavg()[0]
        stamps[name] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        part.data["loadavg_1min"] = {"before": round(load_before, 2), "after": round(load_after, 2)}
        parts.append(part)
        for text in part.tables:
            print("\n" + text)
        print("\n" + part.checks_table())
        for note in part.notes:
            print(f"note: {note}")
        took = f"{name} took {time.perf_counter() - started:.0f} s"
        took += f"; 1-min load average {load_before:.1f} before, {load_after:.1f} after"
        if load_before > 0.5 * (os.cpu_count() or 1):  # before: our own load not in it yet
            took += "; the machine is busy: wall times are inflated, CPU times less so"
        print(f"({took})", flush=True)
        _save(parts, machine, stamps)

    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    _save(parts, machine, stamps)
    delete_trials([d for p in parts for d in p.cleanup])  # after every part's trials
    rows = [[p.name, _count(p, True), _count(p, False)] for p in parts]
    print("\n" + table("SUMMARY", ["part", "pass", "fail"], rows))
    print(f"results: {OUT / 'results.json'}")
    failed = any(not p.passed for p in parts)
    return 1 if failed and args.strict else 0


def _count(part: PartResult, ok: bool) -> int:
    return sum(c.ok is ok for c in part.checks)


if __name__ == "__main__":
    sys.exit(main())
