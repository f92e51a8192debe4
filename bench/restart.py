"""Part 6 (issue 14), a restart at scale: the first submit, and the hot queries, at 1k and 1M.

Each size is a night half done (``bench.gen_db`` with ``pending_from=50`` and its event
log: half the jobs done, half pending, four lines of history per job done; made by SQL in
the real schema of the code measured, kept under ``bench/out/restart``, not timed), copied
before the part writes to it. On the copy, against a simulator (``batchveo simulate --port
0``, one per checkout and size, its generation instant), ``batchveo run`` is started as a
fresh process and stopped (SIGTERM) as soon as the simulator has accepted its first submit:

* ``run``: as a cron line restarts it (paced: ``RUN_FLAGS``, so the pacer reads the last
  submit);
* ``run --budget``: a budget far above the night's cost, so every claim judges it;
* ``run --prices`` twice with the same price file: the first reprices every job, the
  second (the same prices again, as a cron line's next run) what was loaded since.

The figure is the time from spawning the run to the simulator's acceptance of its first
submit (both on the machine's monotonic clock): start-up, imports, the restart's reads and
one claim. Target: below ``FIRST_SUBMIT_MAX_S`` at the largest size, for every case. Then
``bench/claim_times.py`` times the hot queries (a claim with and without a budget, the
next due, the poller's due query, the routes with work, the last submit) in the code under
test on the same copy. With ``--against DIR`` every case runs in that checkout first, then
here, on a database of its own schema: before and after side by side, interleaved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.proc import API_KEY, OUT, ROOT, SimProcess, run_child
from bench.reads import Code
from bench.report import PartResult, secs, table

SIZES = (1_000, 1_000_000)
PENDING_FROM = 50
"""Half the night done, half still to send."""
FIRST_SUBMIT_MAX_S = 1.0
TIMEOUT_S = 300.0
PRICES = "veo-3.1-fast-generate-preview: 0.15\n"
"""The night's model at the table's price: a reprice changes no estimate, but reads them."""
RUN_FLAGS = ("--rpm", "600")
"""Paced, so the pacer reads the last submit at start-up, as a cron line's run does; at a
tenth of a second apart, so the restarts seconds apart here never wait out a gap (the
pacing part measures that)."""
CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("run", ()),
    ("run --budget", ("--budget", "100000000")),
    ("run --prices (new)", ("--prices", "{prices}")),
    ("run --prices (same)", ("--prices", "{prices}")),
)


@dataclass
class Restart:
    code: Code
    case: str
    jobs: int
    first_submit_s: float | None
    exit_code: int
    note: str = ""


def night_copy(code: Code, folder: Path, jobs: int) -> Path:
    """A fresh copy of the half-done night of ``jobs`` in ``code``'s schema."""
    made = run_child(
        [
            code.python,
            str(ROOT / "bench" / "gen_db.py"),
            str(folder),
            str(jobs),
            "--pending-from",
            str(PENDING_FROM),
            "--events",
        ],
        log_stem=folder / f"gen_{code.name}_{jobs}",
        cwd=code.root,
        timeout_s=1800.0,
    )
    if made.returncode != 0:
        raise RuntimeError(f"gen_db failed for {code.name}: {made.stderr[-500:]}")
    cached = Path(made.stdout.split(" in ")[0].strip())
    work = folder / code.name / f"restart-{jobs}.db"
    work.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(cached, work)
    return work


def first_submit(
    code: Code, sim: SimProcess, db: Path, case: tuple[str, tuple[str, ...]], jobs: int
) -> Restart:
    """Start ``batchveo run`` on ``db``; stop it once the simulator took its first submit."""
    work = db.parent
    name, args = case
    before = len(sim.stats().get("accepted_submit_times", []))
    argv = code.argv(
        "run", "--db", db, "--out", work / "videos", "--base-url", sim.url, "-q", *RUN_FLAGS, *args
    )
    env = dict(os.environ, BATCHVEO_API_KEY=API_KEY, PYTHONUNBUFFERED="1")
    env.pop("BATCHVEO_DB", None)
    with (work / "run.stderr").open("ab") as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=code.root)
        seen: float | None = None
        while time.monotonic() - start < TIMEOUT_S and proc.poll() is None:
            times = sim.stats().get("accepted_submit_times", [])
            if len(times) > before:
                seen = float(times[before]) - start  # the simulator's clock is monotonic too
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code_ = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code_ = proc.wait()
    return Restart(code, name, jobs, seen, code_)


def query_times(code: Code, db: Path, work: Path) -> dict[str, float]:
    res = run_child(
        [code.python, str(ROOT / "bench" / "claim_times.py"), str(db)],
        log_stem=work / f"claim_times_{code.name}_{db.stem}",
        cwd=code.root,
        timeout_s=1800.0,
    )
    if res.returncode != 0:
        raise RuntimeError(f"claim_times failed for {code.name}: {res.stderr[-500:]}")
    data: dict[str, float] = json.loads(res.stdout)
    return data


def run_restart(sizes: tuple[int, ...] = SIZES, *, against: Path | None = None) -> PartResult:
    work = OUT / "restart"
    work.mkdir(parents=True, exist_ok=True)
    prices = work / "prices.yaml"
    prices.write_text(PRICES)
    codes = [Code("after", ROOT)]
    if against is not None:
        codes.insert(0, Code("before", against.resolve()))
    part = PartResult("restart")
    restarts: list[Restart] = []
    times: dict[tuple[str, int], dict[str, float]] = {}
    for jobs in sizes:
        dbs = {c.name: night_copy(c, work, jobs) for c in codes}
        sims = {
            c.name: SimProcess(work / f"sim_{c.name}_{jobs}", "--generation-s", "0,0")
            for c in codes
        }
        try:
            for s in sims.values():
                s.start()
            for name, args in CASES:
                case = (name, tuple(a.format(prices=prices) for a in args))
                for code in codes:  # before, then after: interleaved
                    sim, db = sims[code.name], dbs[code.name]
                    restarts.append(first_submit(code, sim, db, case, jobs))
        finally:
            for s in sims.values():
                s.stop()
        for code in codes:
            times[(code.name, jobs)] = query_times(code, dbs[code.name], work)
            for suffix in ("", "-wal", "-shm"):  # the copies are big: not kept
                Path(f"{dbs[code.name]}{suffix}").unlink(missing_ok=True)
    part.tables.append(_restart_table(restarts, codes))
    part.tables.append(_times_table(times, codes, sizes))
    for r in restarts:
        if r.code.name == "after" and r.jobs == max(sizes):
            ok = r.first_submit_s is not None and r.first_submit_s < FIRST_SUBMIT_MAX_S
            value = "none" if r.first_submit_s is None else secs(r.first_submit_s)
            part.check(f"{r.case} {r.jobs:,}: first submit", value, f"< {FIRST_SUBMIT_MAX_S} s", ok)
    part.data = {
        "sizes": list(sizes),
        "against": str(against) if against else None,
        "restarts": [
            {
                "code": r.code.name,
                "case": r.case,
                "jobs": r.jobs,
                "first_submit_s": r.first_submit_s,
                "exit_code": r.exit_code,
            }
            for r in restarts
        ],
        "query_ms": [{"code": name, "jobs": jobs, **ms} for (name, jobs), ms in times.items()],
    }
    part.notes.append(
        f"night: {PENDING_FROM}% done with its event log, the rest pending; made by"
        " bench/gen_db.py, copied for each checkout; the simulator's generation instant"
    )
    return part


def _restart_table(restarts: list[Restart], codes: list[Code]) -> str:
    headers = ["case", "jobs"] + [f"{c.name}: first submit" for c in codes]
    rows: dict[tuple[str, int], list[str]] = {}
    for r in restarts:
        row = rows.setdefault((r.case, r.jobs), [r.case, f"{r.jobs:,}"])
        row.append("none" if r.first_submit_s is None else secs(r.first_submit_s))
    title = "RESTART (spawn to the simulator's first accepted submit"
    title += "; before and after interleaved)" if len(codes) > 1 else ")"
    return table(title, headers, list(rows.values()))


def _times_table(
    times: dict[tuple[str, int], dict[str, float]], codes: list[Code], sizes: tuple[int, ...]
) -> str:
    names = list(next(iter(times.values())))
    headers = ["query (ms, median)"] + [f"{c.name} {n:,}" for c in codes for n in sizes]
    rows = [
        [name] + [f"{times[(c.name, n)].get(name, float('nan')):.2f}" for c in codes for n in sizes]
        for name in names
    ]
    return table("HOT QUERIES (in the store, on the same night)", headers, rows)
