"""A run that learns when to poll: the flags that decide it, and two nights end to end.

The nights run over real sockets against the simulator, on a run clock a thousand times
as fast as real time and a simulator scaled alike (``lognormal:...,scale=0.001``): minute-
long generations in a tenth of a second. What is asserted only gets truer on a busy
machine (a late poll is one poll fewer, never one more); how fresh the notices are is
``bench/polls.py``'s to measure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from batchveo.api import VeoClient, resolve_provider
from batchveo.cli import main
from batchveo.clock import RunClock
from batchveo.run import app as run_app
from batchveo.run.app import Night, RunOptions
from batchveo.run.config import RunConfig
from batchveo.run.context import RunStats
from batchveo.run.pollplan import group_of
from batchveo.run.runner import Runner, RunResult
from batchveo.run.schedule import LogNormal, evaluate, fixed_gap_s
from batchveo.sim import SimConfig, Simulator
from batchveo.store import Store
from tests.helpers import make_spec
from tests.pipeline_helpers import KEY

RATE = 200.0
"""Seconds of the run per real second."""
MODEL = "veo-3.1-generate-preview"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["run", *args], env=env)


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """The config ``batchveo run`` builds (and then runs nothing)."""
    seen: list[RunConfig] = []

    async def fake_run_night(options: RunOptions, **kw: Any) -> Night:
        seen.append(options.config)
        return Night(RunResult(states={}, stats=RunStats()))

    monkeypatch.setattr(run_app, "run_night", fake_run_night)
    return seen


def test_a_run_learns_unless_both_poll_flags_are_given(configs: list[RunConfig]) -> None:
    assert invoke().exit_code == 0
    assert invoke("--max-notice-delay", "5s").exit_code == 0
    assert invoke("--first-poll", "30s").exit_code == 0
    assert invoke("--poll-interval", "5s").exit_code == 0
    assert invoke("--first-poll", "30s", "--poll-interval", "5s").exit_code == 0
    env = {"BATCHVEO_FIRST_POLL": "30s", "BATCHVEO_POLL_INTERVAL": "5s"}
    assert invoke(env=env).exit_code == 0  # given in the environment is given
    plain, tight, first, interval, both, from_env = configs
    assert (plain.max_notice_delay_s, plain.learn_first_poll, plain.learn_poll_interval) == (
        10.0, True, True,
    )  # fmt: skip
    assert tight.max_notice_delay_s == 5.0
    assert (first.learn_first_poll, first.learn_poll_interval) == (False, True)
    assert first.first_poll_s == 30.0
    assert (interval.learn_first_poll, interval.learn_poll_interval) == (True, False)
    assert both.max_notice_delay_s is None and from_env.max_notice_delay_s is None
    assert (both.first_poll_s, both.poll_interval_s) == (30.0, 5.0)


def test_a_bound_of_nothing_is_refused_in_one_line(configs: list[RunConfig]) -> None:
    result = invoke("--max-notice-delay", "0")
    assert result.exit_code == 2 and not configs
    assert result.output.strip().splitlines() == [
        "batchveo: --max-notice-delay must be more than 0"
    ]


def test_the_simulator_help_names_both_forms_of_generation_time() -> None:
    text = " ".join(CliRunner().invoke(main, ["simulate", "--help"]).output.split())
    assert "MIN,MAX" in text and "lognormal:median=M,sigma=S[,scale=K]" in text


def fixed_polls(dist: LogNormal) -> float:
    """What ``--first-poll 10s --poll-interval 10s`` costs per job, in expectation."""
    ages, t = [], 10.0
    while t < 20_000:
        ages.append(t)
        t += fixed_gap_s(t, 10.0, 60.0)
    return evaluate(ages, dist).polls


async def night(
    store: Store, sim: Simulator, out: Path, jobs: list[str], log: list[Any] | None = None
) -> Runner:
    await store.add_jobs([make_spec(j) for j in jobs])
    config = RunConfig(out_dir=out, rpm=0, max_inflight=100, max_notice_delay_s=10.0)

    def observer(event: str, details: dict[str, Any]) -> None:
        if log is not None:
            log.append((event, details))

    async with VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
        clock = RunClock(store.clock, rate=RATE)
        runner = Runner(store, client, config, clock=clock, observer=observer)
        result = await asyncio.wait_for(runner.run(), 60)
    assert result.exit_code == 0, result
    return runner


async def test_two_nights_poll_less_than_the_fixed_schedule_and_learn_from_the_store(
    tmp_path: Path,
) -> None:
    true = LogNormal(120.0, 0.5)  # the prior says 60 s: the first night must learn it
    sim_config = SimConfig(
        api_key=KEY, seed=5, generation_s=f"lognormal:median=120,sigma=0.5,scale={1 / RATE}"
    )
    async with await Store.open(tmp_path / "jobs.db") as store, Simulator(sim_config) as sim:
        first = await night(store, sim, tmp_path / "v1", [f"a{i}" for i in range(40)])
        polls = sum(op["polls"] for op in sim.operations()["operations"])
        assert polls / 40 < 0.7 * fixed_polls(true)  # about 12.5 per job
        rows = await store.generation_times(100)
        assert len(rows) == 40 and all(d > 0 and p >= 1 for _, _, d, p in rows)
        assert first.ctx is not None
        learned_tonight = first.ctx.polls.schedule(group_of(MODEL, "720p")).dist
        assert learned_tonight.median_s > 80  # from this night's own jobs (the prior: 60)

        # The next run starts from what the first left in the store, and its log says
        # what it learned: a user can see why a night polled when it did.
        log: list[Any] = []
        second = await night(store, sim, tmp_path / "v2", ["b0"], log)
        schedules = [d for e, d in log if e == "poll_schedule"]
        assert schedules and schedules[0]["model"] == MODEL and schedules[0]["samples"] >= 40
        first_logged = schedules[0]
        assert first_logged["median_s"] > 80 and first_logged["max_notice_delay_s"] == 10.0
        assert first_logged["poll_ages_s"][0] == first_logged["first_poll_s"] > 0
        assert second.ctx is not None
        read_back = second.ctx.polls.schedule(group_of(MODEL, "720p")).dist
        assert read_back.median_s > 80  # its 40 jobs, read at the start (the prior: 60)
        assert second.ctx.polls.schedule(group_of(MODEL, "4k")).dist.median_s == 60.0
