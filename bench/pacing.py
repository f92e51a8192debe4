"""Part 3, pacing: does ``--rpm`` hold the submit rate at the limit, and across a restart?"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gen_manifest import write_csv
from bench.proc import (
    API_KEY,
    OUT,
    ChildResult,
    SimProcess,
    batchveo_argv,
    run_child,
)
from bench.report import PartResult, secs, table

MIN_RATIO = 0.98
EXIT_STOPPED = 75


@dataclass(frozen=True)
class Window:
    """What the simulator saw of the accepted submits."""

    times: list[float]
    max_in_window: int
    quota_violations: int
    rejected_429: int

    @classmethod
    def from_stats(cls, stats: dict[str, Any]) -> Window:
        return cls(
            times=[float(t) for t in stats.get("accepted_submit_times", [])],
            max_in_window=int(stats.get("max_submits_in_window", 0)),
            quota_violations=int(stats.get("quota_violations", 0)),
            rejected_429=int(stats.get("requests", {}).get("submit", {}).get("429", 0)),
        )

    @property
    def accepted(self) -> int:
        return len(self.times)

    @property
    def span_s(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    @property
    def per_minute(self) -> float:
        """Intervals per minute between the first and last accepted submit: n-1 over span."""
        return 60.0 * (self.accepted - 1) / self.span_s if self.span_s else 0.0

    @property
    def min_gap_s(self) -> float | None:
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return min(gaps) if gaps else None


def _run_argv(db: Path, out: Path, rpm: int, *extra: str) -> list[str]:
    args: list[str | Path] = ["run", "--db", db, "--out", out, "--rpm", str(rpm)]
    args += ["--max-inflight", "50"]
    args += ["--first-poll", "2s", "--poll-interval", "1s", *extra]
    return batchveo_argv(*args)


def _prepare(work: Path, name: str, jobs: int) -> tuple[Path, Path, Path]:
    tdir = work / name
    shutil.rmtree(tdir, ignore_errors=True)
    tdir.mkdir(parents=True)
    manifest = write_csv(tdir / "pacing.csv", jobs)
    db = tdir / "jobs.db"
    loaded = run_child(batchveo_argv("load", manifest, "--db", db), log_stem=tdir / "load")
    if loaded.returncode != 0:
        raise RuntimeError(f"load failed: {loaded.stderr.strip()}")
    return tdir, db, tdir / "videos"


def _sim_flags(rpm: int) -> tuple[str, ...]:
    return ("--rpm-limit", str(rpm), "--generation-s", "1,3")


def run_pacing(
    rpm: int = 60, runtime: str = "2m", jobs: int = 200, restart_s: float = 30.0
) -> PartResult:
    work = OUT / "pacing"
    part = PartResult("pacing")
    period_s = 60.0 / rpm

    # 1. One long run, stopped by --max-runtime.
    tdir, db, out = _prepare(work, "steady", jobs)
    with SimProcess(tdir / "sim", *_sim_flags(rpm)) as sim:
        env = {"BATCHVEO_API_KEY": API_KEY, "BATCHVEO_BASE_URL": sim.url}
        argv = _run_argv(db, out, rpm, "--max-runtime", runtime)
        steady_run = run_child(argv, log_stem=tdir / "run", env=env, timeout_s=600)
        steady = Window.from_stats(sim.stats())

    # 2. Two runs back to back on one database and one simulator, each stopped by SIGTERM.
    tdir, db, out = _prepare(work, "restart", jobs)
    with SimProcess(tdir / "sim", *_sim_flags(rpm)) as sim:
        env = {"BATCHVEO_API_KEY": API_KEY, "BATCHVEO_BASE_URL": sim.url}
        argv = _run_argv(db, out, rpm)
        first = run_child(argv, log_stem=tdir / "run1", env=env, stop_after_s=restart_s)
        n_first = Window.from_stats(sim.stats()).accepted
        second = run_child(argv, log_stem=tdir / "run2", env=env, stop_after_s=restart_s)
        both = Window.from_stats(sim.stats())
    gap_s = both.times[n_first] - both.times[n_first - 1] if 0 < n_first < both.accepted else None

    rows = [
        _row(f"--max-runtime {runtime}", steady_run, steady, None),
        _row(f"{restart_s:.0f} s + SIGTERM, then {restart_s:.0f} s more", second, both, gap_s),
    ]
    headers = ["run", "exit", "accepted", "span", "per min", "max in 60 s", "quota 429s"]
    headers += ["min gap", "restart gap"]
    title = (
        f"PACING (--rpm {rpm}; simulator --rpm-limit {rpm} per 60 s window, generation 1-3 s,"
        " polls not counted)"
    )
    part.tables.append(table(title, headers, rows))

    steady_ok = steady_run.returncode == EXIT_STOPPED and steady.accepted > 1
    part.check(
        "achieved rate",
        f"{steady.per_minute:.2f}/min ({steady.per_minute / rpm:.1%})",
        f"{MIN_RATIO * rpm:.1f} to {rpm} /min",
        steady_ok and MIN_RATIO * rpm <= steady.per_minute <= rpm,
    )
    part.check(
        "max submits in any 60 s window",
        str(steady.max_in_window),
        f"<= {rpm}",
        steady_ok and steady.max_in_window <= rpm,
    )
    no_429 = steady_ok and steady.quota_violations == 0
    part.check("quota violations (429)", str(steady.quota_violations), "0", no_429)
    restart_ok = first.returncode == EXIT_STOPPED and second.returncode == EXIT_STOPPED
    part.check(
        "restart: runs stopped cleanly",
        f"exit {first.returncode}, {second.returncode}",
        f"exit {EXIT_STOPPED} twice",
        restart_ok,
    )
    part.check(
        "restart: max in 60 s / quota 429s",
        f"{both.max_in_window} / {both.quota_violations}",
        f"<= {rpm} / 0",
        both.max_in_window <= rpm and both.quota_violations == 0,
    )
    part.check(
        "restart: gap across the restart",
        "-" if gap_s is None else secs(gap_s),
        f">= {MIN_RATIO * period_s:.2f} s (no burst)",
        gap_s is not None and gap_s >= MIN_RATIO * period_s,
    )
    part.data = {
        "rpm": rpm,
        "steady": _window_json(steady) | {"run": steady_run.summary()},
        "restart": _window_json(both)
        | {
            "accepted_first_run": n_first,
            "restart_gap_s": gap_s,
            "runs": [first.summary(), second.summary()],
        },
    }
    return part


def _row(name: str, run: ChildResult, w: Window, gap_s: float | None) -> list[str]:
    return [
        name,
        str(run.returncode),
        str(w.accepted),
        secs(w.span_s),
        f"{w.per_minute:.2f}",
        str(w.max_in_window),
        str(w.quota_violations),
        "-" if w.min_gap_s is None else secs(w.min_gap_s),
        "-" if gap_s is None else secs(gap_s),
    ]


def _window_json(w: Window) -> dict[str, Any]:
    return {
        "accepted": w.accepted,
        "span_s": round(w.span_s, 3),
        "per_minute": round(w.per_minute, 3),
        "max_in_window": w.max_in_window,
        "quota_violations": w.quota_violations,
        "rejected_429": w.rejected_429,
        "min_gap_s": None if w.min_gap_s is None else round(w.min_gap_s, 4),
        "accepted_submit_times": [round(t, 4) for t in w.times],
    }
