"""Part 2, ``batchveo run`` end to end against a local simulator that generates instantly.

The Gemini format's route is this module's (``GEMINI``); a trial takes any ``Route``, which
is how ``bench.vertex`` runs the same trial on the Vertex AI route.
"""

from __future__ import annotations

import io
import json
import pstats
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gen_manifest import write_csv
from bench.proc import (
    API_KEY,
    OUT,
    ROOT,
    ChildResult,
    SimProcess,
    batchveo_argv,
    run_child,
)
from bench.report import PartResult, mb, secs, table

MIN_JOBS_PER_S = 300.0
MAX_CPU_MS_PER_JOB = 3.0
MAX_RSS_MB = 150.0
SIM_FLAGS = ("--generation-s", "0,0")
_LIB_PATH = re.compile(r"\S*/lib/python3\.\d+/(?:site-packages/)?")


@dataclass(frozen=True)
class Setting:
    max_inflight: int
    submitters: int
    downloaders: int
    posters: bool = False
    """Poster frames made as videos are saved (``run``'s default). The targets measure the
    runner, so the headline setting runs ``--no-posters``; one setting shows what a
    poster costs (decoding a frame of the simulator's video, about 4 ms of CPU)."""

    @property
    def label(self) -> str:
        label = f"inflight {self.max_inflight}, sub {self.submitters}, dl {self.downloaders}"
        return label + (", posters" if self.posters else "")

    @property
    def slug(self) -> str:
        slug = f"i{self.max_inflight}_s{self.submitters}_d{self.downloaders}"
        return slug + ("_posters" if self.posters else "")


DEFAULT = Setting(max_inflight=500, submitters=64, downloaders=16)
"""The headline setting: the targets are judged on it."""
SWEEP = (
    DEFAULT,
    Setting(max_inflight=500, submitters=64, downloaders=16, posters=True),
    Setting(max_inflight=500, submitters=16, downloaders=8),
    Setting(max_inflight=500, submitters=8, downloaders=4),
    Setting(max_inflight=2000, submitters=8, downloaders=4),
)
"""Fewer workers, and a cap the batch never reaches, to show what the worker count costs."""


class Route:
    """How a trial reaches the simulator: the Gemini format (an API key), by default.

    ``bench.vertex`` subclasses it for Vertex AI. ``submit_kind``/``poll_kind``: the
    simulator's names (``/__sim/stats`` ``requests``) of the route's submit and poll.
    """

    label = "Gemini format"
    slug = ""
    """Prefix of the trial folders' names (none: the Gemini format's keep their names)."""
    submit_kind = "submit"
    poll_kind = "poll"

    def sim_flags(self, tdir: Path) -> tuple[str, ...]:
        return SIM_FLAGS

    def sim_started(self, sim: SimProcess) -> None:
        """Return once the simulator is ready for the run (it is, once it listens)."""

    def load_args(self) -> list[str]:
        return []

    def run_args(self, sim_url: str) -> list[str]:
        return []

    def run_env(self, sim_url: str, tdir: Path) -> dict[str, str]:
        return {"BATCHVEO_API_KEY": API_KEY, "BATCHVEO_BASE_URL": sim_url}


GEMINI = Route()


def requests_of(stats: dict[str, Any], kind: str) -> int:
    """Every request of ``kind`` the simulator answered, whatever the status."""
    return sum(stats.get("requests", {}).get(kind, {}).values())


@dataclass
class Trial:
    setting: Setting
    jobs: int
    run: ChildResult
    stats: dict[str, Any]
    sim_cpu_s: float | None
    files: int
    last_file_s: float | None
    """When the last video landed, in seconds from the run's start (from file times)."""
    route: Route = GEMINI

    @property
    def complete(self) -> bool:
        return self.run.returncode == 0 and self.files == self.jobs

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.run.wall_s

    @property
    def cpu_ms_per_job(self) -> float:
        return 1000 * self.run.cpu_s / self.jobs

    @property
    def exit_tail_s(self) -> float | None:
        """From the last video on disk to the process's exit."""
        return None if self.last_file_s is None else self.run.wall_s - self.last_file_s

    @property
    def polls_per_job(self) -> float:
        return requests_of(self.stats, self.route.poll_kind) / self.jobs

    @property
    def accepted_submits(self) -> int:
        return int(self.stats.get("requests", {}).get(self.route.submit_kind, {}).get("200", 0))

    def row(self, label: str | None = None) -> list[str]:
        r = self.run
        sim_cpu = "-" if self.sim_cpu_s is None else secs(self.sim_cpu_s)
        return [
            self.setting.label if label is None else label,
            secs(r.wall_s),
            f"{self.jobs_per_s:.0f}",
            f"{self.cpu_ms_per_job:.2f}",
            f"{r.user_s:.1f}+{r.sys_s:.1f}",
            mb(r.max_rss_mb),
            f"{self.polls_per_job:.2f}",
            "-" if self.exit_tail_s is None else secs(self.exit_tail_s),
            sim_cpu,
            f"{self.files:,}",
            str(r.returncode),
        ]

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "route": self.route.label,
            "setting": self.setting.__dict__,
            "jobs": self.jobs,
            "complete": self.complete,
            "files": self.files,
            "jobs_per_s": round(self.jobs_per_s, 1),
            "cpu_ms_per_job": round(self.cpu_ms_per_job, 3),
            "polls_per_job": round(self.polls_per_job, 3),
            "last_file_s": None if self.last_file_s is None else round(self.last_file_s, 3),
            "exit_tail_s": None if self.exit_tail_s is None else round(self.exit_tail_s, 3),
            "sim_cpu_s": None if self.sim_cpu_s is None else round(self.sim_cpu_s, 2),
            "sim_requests": s.get("requests"),
            "polls_after_done": s.get("polls_after_done"),
            "run": self.run.summary() | {"stderr_tail": self.run.stderr.strip()[-500:]},
        }


def run_trial(
    work: Path,
    manifest: Path,
    jobs: int,
    setting: Setting,
    *,
    route: Route = GEMINI,
    profile: Path | None = None,
    counters: Path | None = None,
) -> Trial:
    """Load (not timed) into a fresh db, then time one ``batchveo run`` on a fresh simulator.

    ``profile``: run it under cProfile, writing there; ``counters``: under ``bench.counters``.
    """
    suffix = "_profile" if profile else "_counters" if counters else ""
    stem = f"{route.slug}_{setting.slug}" if route.slug else setting.slug
    n = 1
    while (work / f"{stem}{suffix}_{n}").exists():
        n += 1
    tdir = work / f"{stem}{suffix}_{n}"  # fresh: see delete_trials
    tdir.mkdir(parents=True)
    db, out = tdir / "jobs.db", tdir / "videos"
    load_argv = batchveo_argv("load", manifest, "--db", db, *route.load_args())
    loaded = run_child(load_argv, log_stem=tdir / "load")
    if loaded.returncode != 0:
        raise RuntimeError(f"load failed: {loaded.stderr.strip()}")
    args: list[str | Path] = ["run", "--db", db, "--out", out, "--rpm", "0", "--first-poll", "0"]
    args += ["--poll-interval", "0.05s", "--max-inflight", str(setting.max_inflight)]
    args += ["--submitters", str(setting.submitters), "--downloaders", str(setting.downloaders)]
    args += [] if setting.posters else ["--no-posters"]
    with SimProcess(tdir / "sim", *route.sim_flags(tdir)) as sim:
        route.sim_started(sim)
        argv = batchveo_argv(*args, *route.run_args(sim.url))
        env = route.run_env(sim.url, tdir)
        if profile is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile), *argv[1:]]
        elif counters is not None:
            argv = [sys.executable, "-m", "bench.counters", *argv[3:]]
            env["BENCH_COUNTERS_OUT"] = str(counters)
        cpu_before = sim.cpu_s()
        res = run_child(argv, log_stem=tdir / "run", env=env, timeout_s=600)
        cpu_after = sim.cpu_s()
        stats = sim.stats()
    sim_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    times = [p.stat().st_mtime for p in out.glob("*.mp4")] if out.exists() else []
    last_file_s = max(times) - res.started_at if times else None
    return Trial(setting, jobs, res, stats, sim_cpu, len(times), last_file_s, route)


def trial_dirs(work: Path) -> list[Path]:
    return [d for d in work.iterdir() if d.is_dir()] if work.exists() else []


def delete_trials(dirs: list[Path]) -> None:
    """Delete an earlier bench run's trial folders, once every trial of this one is over.

    Never before or between trials: on the bench machines' ext4 (perf shows the kernel's
    ``recently_deleted`` check, which ext4 runs when it has no journal), for a minute
    after thousands of files are deleted, creating a file scans past their freed inodes.
    Each new video's ``open`` then cost about 0.6 ms of the runner's event loop, and a
    run measured 300 jobs/s instead of 470: the bench was measuring its own clean-up,
    not batchveo. So each run leaves its
    videos for the next run to delete at its end (a few hundred MB at most). A part hands
    the folders back (``PartResult.cleanup``) and ``python -m bench`` deletes them after
    its last part, so that one part's clean-up does not slow the next part's trials.
    """
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def hotspots(profile: Path, top: int = 20) -> str:
    """The functions with the most own time, then batchveo's by cumulative time.

    cProfile counts every resumption of a coroutine as a call, so ``ncalls`` of a coroutine
    is its number of awaits that suspended, not of calls.
    """
    parts = []
    for title, order, restrict in (
        ("own time, all code", "tottime", ()),
        ("cumulative time, batchveo only", "cumulative", (r"batchveo/",)),
    ):
        buf = io.StringIO()
        stats = pstats.Stats(str(profile), stream=buf)
        stats.sort_stats(order).print_stats(*restrict, top)
        lines = buf.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        body = [_short(line) for line in lines[start:] if line.strip()]
        parts.append(f"-- {title}\n" + "\n".join(body))
    return "\n\n".join(parts)


def _short(line: str) -> str:
    """Paths relative to the repository or to the Python library folder."""
    return _LIB_PATH.sub("", line.replace(str(ROOT) + "/", ""))


def counters_table(trial: Trial, counts: dict[str, int]) -> str:
    """Per-job counts of the instrumented run, with the simulator's requests for scale."""
    rows = [[name, f"{n:,}", f"{n / trial.jobs:.2f}"] for name, n in counts.items()]
    for kind, by_status in trial.stats.get("requests", {}).items():
        if by_status:
            n = sum(by_status.values())
            rows.append([f"HTTP {kind} requests (simulator)", f"{n:,}", f"{n / trial.jobs:.2f}"])
    what = f"{trial.route.label}, " if trial.route.slug else ""
    title = f"COUNTED ({what}{trial.setting.label}, instrumented run: {trial.run.wall_s:.1f} s)"
    return table(title, ["counter", "total", "per job"], rows)


def best_trial(
    work: Path, manifest: Path, jobs: int, setting: Setting, repeat: int, route: Route = GEMINI
) -> Trial:
    """The fastest complete one of ``repeat`` trials (the machine may be shared)."""
    trials = [run_trial(work, manifest, jobs, setting, route=route) for _ in range(max(1, repeat))]
    return max(trials, key=lambda t: (t.complete, t.jobs_per_s))


def judge(part: PartResult, trial: Trial, prefix: str = "") -> None:
    """The targets, on ``trial`` (a run of the default setting); ``prefix`` names its route."""
    jobs = trial.jobs
    ok = trial.complete
    part.check(
        f"{prefix}{trial.setting.label}: all done",
        f"exit {trial.run.returncode}, {trial.files:,} files",
        f"exit 0, {jobs:,} files",
        ok and trial.accepted_submits == jobs,
    )
    part.check(
        f"{prefix}throughput",
        f"{trial.jobs_per_s:.0f} jobs/s",
        f">= {MIN_JOBS_PER_S:.0f} jobs/s",
        ok and trial.jobs_per_s >= MIN_JOBS_PER_S,
    )
    part.check(
        f"{prefix}runner CPU per job",
        f"{trial.cpu_ms_per_job:.2f} ms",
        f"< {MAX_CPU_MS_PER_JOB:.0f} ms",
        ok and trial.cpu_ms_per_job < MAX_CPU_MS_PER_JOB,
    )
    part.check(
        f"{prefix}runner peak RSS",
        mb(trial.run.max_rss_mb),
        f"< {MAX_RSS_MB:.0f} MB",
        ok and trial.run.max_rss_mb < MAX_RSS_MB,
    )
    part.check(f"{prefix}polls per job", f"{trial.polls_per_job:.2f}", "(reported)", None)
    tail = trial.exit_tail_s
    part.check(
        f"{prefix}exit tail (last video to exit)",
        "-" if tail is None else secs(tail),
        "(reported)",
        None,
    )
    after_done = trial.stats.get("polls_after_done")
    part.check(f"{prefix}polls after done", str(after_done), "0", after_done == 0)


def profile_runs(
    part: PartResult,
    work: Path,
    manifest: Path,
    jobs: int,
    route: Route = GEMINI,
    name: str = "the default setting",
) -> dict[str, Any]:
    """A counted and a cProfile run of the default setting: their tables, and their data."""
    stem = f"{route.slug}_" if route.slug else ""
    counts_path = work / f"{stem}counters.json"
    counted = run_trial(work, manifest, jobs, DEFAULT, route=route, counters=counts_path)
    counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
    part.tables.append(counters_table(counted, counts))
    prof_path = work / f"{stem}run.prof"
    prof_trial = run_trial(work, manifest, jobs, DEFAULT, route=route, profile=prof_path)
    text = hotspots(prof_path)
    hot_path = work / f"{stem}hotspots.txt"
    hot_path.write_text(text)
    part.notes.append(
        f"cProfile of {name} ({prof_trial.run.wall_s:.1f} s under the profiler):"
        f" {prof_path}, top functions in {hot_path}"
    )
    part.tables.append(f"PROFILE (cProfile of {name})\n" + text)
    return {
        "counters": counts,
        "profile": {"path": str(prof_path), "wall_s": round(prof_trial.run.wall_s, 2)},
    }


def run_pipeline(
    jobs: int = 2_000, *, sweep: bool = True, profile: bool = False, repeat: int = 1
) -> PartResult:
    work = OUT / "pipeline"
    earlier_trials = trial_dirs(work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = write_csv(work / f"pipeline_{jobs}.csv", jobs)
    part = PartResult("pipeline")
    settings = SWEEP if sweep else (DEFAULT,)
    trials = [best_trial(work, manifest, jobs, s, repeat) for s in settings]

    headers = ["setting", "wall", "jobs/s", "cpu ms/job", "user+sys s", "peak RSS"]
    headers += ["polls/job", "exit tail", "sim cpu", "files", "exit"]
    title = (
        f"PIPELINE ({jobs:,} text jobs, simulator --generation-s 0,0, --rpm 0, first poll 0,"
        " poll interval 0.05 s)"
    )
    part.tables.append(table(title, headers, [t.row() for t in trials]))

    judge(part, trials[0])
    good = [t for t in trials if t.complete]
    if len(trials) > 1 and good:
        best = max(good, key=lambda t: t.jobs_per_s)
        part.check(
            "best setting tried",
            f"{best.setting.label}: {best.jobs_per_s:.0f} jobs/s, {best.cpu_ms_per_job:.2f} ms/job",
            "(reported)",
            None,
        )
    part.data = {"jobs": jobs, "trials": [t.to_json() for t in trials]}

    if profile:
        part.data.update(profile_runs(part, work, manifest, jobs))
    part.cleanup += earlier_trials
    return part
