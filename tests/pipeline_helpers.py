"""Shared pieces for the end-to-end tests: a fast simulator and a fast run configuration."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from batchveo import mp4
from batchveo.api import VeoClient, resolve_provider
from batchveo.run.context import RunConfig
from batchveo.run.runner import Runner, RunResult
from batchveo.sim import SimConfig, Simulator
from batchveo.spec import JobSpec
from batchveo.store import Store

KEY = "test-key-5f1d9c"
SAMPLE_MP4 = (Path(__file__).parent.parent / "batchveo" / "data" / "sample.mp4").read_bytes()


def sim_head(data: bytes) -> bytes:
    """How a simulator video as long as ``data`` says it lasts begins: the sample MP4 made
    to last that long (``batchveo.sim.storage.sample_lasting``); NotAnMp4 for other bytes."""
    return mp4.with_duration(SAMPLE_MP4, mp4.duration_s(data))


def is_sim_video(path: Path) -> bool:
    """A whole video from the simulator: its sample MP4 (made to last the video's length),
    then a ``free`` box naming the file (so that, as with the real service, no two videos
    have the same bytes)."""
    data = path.read_bytes()
    try:
        head = sim_head(data)
    except mp4.NotAnMp4:
        return False
    tail = data[len(head) :]
    return data.startswith(head) and tail[4:21] == b"freebatchveo-sim "


def fast_sim(**overrides: Any) -> Simulator:
    config = SimConfig(api_key=KEY, generation_s=(0.01, 0.05), seed=7)
    return Simulator(config.with_changes(overrides) if overrides else config)


def fast_config(out_dir: Path, **overrides: Any) -> RunConfig:
    base = RunConfig(
        out_dir=out_dir,
        rpm=0,
        max_inflight=20,
        first_poll_s=0.01,
        poll_interval_s=0.02,
        poll_max_interval_s=0.05,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        operation_grace_s=0.5,
        shutdown_grace_s=2.0,
    )
    return replace(base, **overrides)


async def run_batch(
    store: Store,
    sim: Simulator,
    config: RunConfig,
    specs: list[JobSpec] | None = None,
    **runner_kw: Any,
) -> RunResult:
    if specs:
        await store.add_jobs(specs)
    async with VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
        runner = Runner(store, client, config, rng=random.Random(1), **runner_kw)
        return await runner.run()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
