"""Part 2b, the pipeline benchmark on the Vertex AI route: videos inline, or in Cloud Storage.

The trial is part 2's (``bench.pipeline.run_trial``, default setting, same targets), with the
route a user of Vertex AI has: the simulator writes a throwaway service-account key it
trusts (``--write-vertex-key``), the run gets it as ``GOOGLE_APPLICATION_CREDENTIALS`` (so
google-auth's real flow trades a signed assertion for the bearer token), and the jobs are
loaded with ``--provider vertex`` (the GA model, the default). Inline, every video comes
back base64 in the poll that says done; with ``--storage-uri`` it lands in the simulator's
own Cloud Storage, and the run reads its metadata and then its bytes (two more requests per
job, verified by ``md5Hash``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.gen_manifest import write_csv
from bench.pipeline import (
    DEFAULT,
    SIM_FLAGS,
    Route,
    Trial,
    best_trial,
    judge,
    profile_runs,
    requests_of,
    trial_dirs,
)
from bench.proc import OUT, SimProcess
from bench.report import PartResult, table

PROJECT = "batchveo-bench"
"""The project of the key the simulator writes, and the run's ``--project``."""
LOCATION = "us-central1"
STORAGE_URI = "gs://bkt/night/"
_KEY_WRITTEN = "wrote a service-account key"


class VertexRoute(Route):
    """Vertex AI on the simulator: its key, its token endpoint, its Cloud Storage."""

    submit_kind = "vertex_submit"
    poll_kind = "vertex_poll"

    def __init__(self, *, storage: bool):
        self.storage = storage
        self.name = "storage" if storage else "inline"
        self.label = f"Vertex AI, {'Cloud Storage' if storage else 'inline'}"
        self.slug = self.name

    @staticmethod
    def key_path(tdir: Path) -> Path:
        return tdir / "service-account.json"

    def sim_flags(self, tdir: Path) -> tuple[str, ...]:
        key = str(self.key_path(tdir))
        return (*SIM_FLAGS, "--write-vertex-key", key, "--vertex-key-project", PROJECT)

    def sim_started(self, sim: SimProcess) -> None:
        """The simulator writes the key just after it starts listening: wait for it."""
        deadline = time.monotonic() + 20
        while _KEY_WRITTEN not in sim.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator wrote no key; see {sim.log_path}")
            time.sleep(0.02)

    def load_args(self) -> list[str]:
        return ["--provider", "vertex"]

    def run_args(self, sim_url: str) -> list[str]:
        args = ["--provider", "vertex", "--project", PROJECT, "--location", LOCATION]
        args += ["--base-url", sim_url, "--storage-base-url", sim_url]
        return args + (["--storage-uri", STORAGE_URI] if self.storage else [])

    def run_env(self, sim_url: str, tdir: Path) -> dict[str, str]:
        return {"GOOGLE_APPLICATION_CREDENTIALS": str(self.key_path(tdir))}


ROUTES = (VertexRoute(storage=False), VertexRoute(storage=True))


def _vertex_stats(trial: Trial) -> dict[str, Any]:
    vertex: dict[str, Any] = trial.stats.get("vertex", {})
    return vertex


def _objects(trial: Trial) -> tuple[int, int]:
    """Objects the simulator wrote to its bucket, and media reads of them."""
    vertex = _vertex_stats(trial)
    media = vertex.get("storage_reads", {}).get("media", 0)
    return int(vertex.get("objects_written", 0)), int(media)


def _row(trial: Trial) -> list[str]:
    tokens = requests_of(trial.stats, "token")
    gcs = requests_of(trial.stats, "gcs") / trial.jobs
    return [*trial.row(trial.route.label), str(tokens), f"{gcs:.2f}"]


def run_vertex(jobs: int = 2_000, *, profile: bool = False, repeat: int = 1) -> PartResult:
    work = OUT / "vertex"
    earlier_trials = trial_dirs(work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = write_csv(work / f"vertex_{jobs}.csv", jobs)
    part = PartResult("vertex")
    trials = [best_trial(work, manifest, jobs, DEFAULT, repeat, route) for route in ROUTES]

    headers = ["route", "wall", "jobs/s", "cpu ms/job", "user+sys s", "peak RSS", "polls/job"]
    headers += ["exit tail", "sim cpu", "files", "exit", "tokens", "gcs/job"]
    title = (
        f"VERTEX ({jobs:,} text jobs, --provider vertex, {DEFAULT.label}, simulator"
        " --generation-s 0,0, --rpm 0, first poll 0, poll interval 0.05 s)"
    )
    part.tables.append(table(title, headers, [_row(t) for t in trials]))

    for trial in trials:
        route = trial.route
        assert isinstance(route, VertexRoute)
        prefix = f"{route.name}: "
        judge(part, trial, prefix)
        written, read = _objects(trial)
        if route.storage:
            part.check(
                f"{prefix}videos through the bucket",
                f"{written:,} written, {read:,} read",
                f"{jobs:,} and {jobs:,}",
                written == jobs and read == jobs,
            )
        else:
            part.check(f"{prefix}objects in the bucket", f"{written:,}", "0", written == 0)
        tokens = requests_of(trial.stats, "token")
        part.check(f"{prefix}token requests", str(tokens), "(reported)", None)
    part.data = {
        "jobs": jobs,
        "setting": DEFAULT.__dict__,
        "trials": [
            t.to_json() | {"route_name": t.route.slug, "sim_vertex": _vertex_stats(t)}
            for t in trials
        ],
    }

    if profile:
        for route in ROUTES:
            name = f"{route.label}, {DEFAULT.label}"
            part.data[f"profile_{route.name}"] = profile_runs(
                part, work, manifest, jobs, route, name
            )
    part.cleanup += earlier_trials
    return part
