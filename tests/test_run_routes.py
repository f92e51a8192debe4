"""A run serves every route with work: a client, a pacer, in-flight slots and submitters
per route, end to end over real sockets, with two Gemini-format simulators standing in
for two routes (``gptproto`` and ``gemini``: two keys, two quotas).

Each job's route is stored with it (``JobSpec.route``): batch ``a`` goes by route A,
batch ``b`` by route B.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from batchveo.api import VeoClient, resolve_provider
from batchveo.clock import alarms_for
from batchveo.routes import Route
from batchveo.run.context import ClientsByRoute
from batchveo.run.lanes import Lanes
from batchveo.run.runner import Runner, RunResult
from batchveo.sim import Simulator
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import FakeClock, make_spec
from tests.pipeline_helpers import KEY, fast_config, fast_sim, is_sim_video

S = JobState
A, B = Route("gptproto"), Route("gemini")
ROUTES = {"a": A, "b": B}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "jobs.db")
    try:
        yield s
    finally:
        await s.close()


def specs(batch: str, n: int, prompt: str = "") -> list[Any]:
    return [
        make_spec(f"{batch}{i}", f"{batch} {i} {prompt}".strip(), batch=batch, route=ROUTES[batch])
        for i in range(n)
    ]


@asynccontextmanager
async def two_routes(
    sim_a: dict[str, Any] | None = None, sim_b: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Simulator, Simulator, ClientsByRoute]]:
    """Route A on one simulator, route B on another, each with its own client."""
    async with AsyncExitStack() as stack:
        sa = await stack.enter_async_context(fast_sim(**(sim_a or {})))
        sb = await stack.enter_async_context(fast_sim(**(sim_b or {})))
        ca = await stack.enter_async_context(VeoClient(resolve_provider("gptproto", sa.url), KEY))
        cb = await stack.enter_async_context(VeoClient(resolve_provider("gemini", sb.url), KEY))
        yield sa, sb, ClientsByRoute(A, [(A, ca), (B, cb)])


async def run(store: Store, clients: ClientsByRoute, config: Any, **kw: Any) -> RunResult:
    runner = Runner(store, clients, config, rng=random.Random(1), **kw)
    return await asyncio.wait_for(runner.run(), 60)


def states(jobs: list[Any]) -> dict[str, JobState]:
    return {j.id: j.state for j in jobs}


async def test_each_routes_jobs_go_to_its_own_server(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "v"
    await store.add_jobs(specs("a", 3) + specs("b", 4))
    async with two_routes() as (sa, sb, clients):
        result = await run(store, clients, fast_config(out))
        stats_a, stats_b = sa.stats(), sb.stats()
    assert result.exit_code == 0
    assert set(states(await store.jobs()).values()) == {S.DONE}
    # Submits, polls and downloads of a route reached its own server only, once each.
    assert sorted(stats_a["submits_by_prompt"]) == [f"a {i}" for i in range(3)]
    assert sorted(stats_b["submits_by_prompt"]) == [f"b {i}" for i in range(4)]
    assert stats_a["requests"]["download"] == {"200": 3}
    assert stats_b["requests"]["download"] == {"200": 4}
    assert stats_a["polls_after_done"] == stats_b["polls_after_done"] == 0
    assert all(is_sim_video(out / f"{j.id}.mp4") for j in await store.jobs())


async def test_each_route_is_paced_by_its_own_pacer(store: Store, tmp_path: Path) -> None:
    # Each server allows 5 submits per 0.5 s window; the run paces each route 10% under
    # it (as tests/test_pipeline.py does for one route). Each server sees its own pace
    # kept, and together the two routes send more than one pacer would let through.
    await store.add_jobs(specs("a", 8) + specs("b", 8))
    quota = {"rpm_limit": 5, "rate_window_s": 0.5}
    async with two_routes(quota, quota) as (sa, sb, clients):
        result = await run(store, clients, fast_config(tmp_path / "v", rpm=540))
        stats_a, stats_b = sa.stats(), sb.stats()
    assert result.exit_code == 0
    for stats in (stats_a, stats_b):
        assert stats["quota_violations"] == 0 and stats["requests"]["submit"] == {"200": 8}
    both = sorted(stats_a["accepted_submit_times"] + stats_b["accepted_submit_times"])
    in_a_window = max(
        sum(1 for t in both if start <= t < start + 0.5) for start in both
    )  # one pacer at this rate: 5 at most
    assert in_a_window > 5, [round(b - a, 3) for a, b in itertools.pairwise(both)]


async def test_a_429_on_one_route_pauses_that_route_only(store: Store, tmp_path: Path) -> None:
    # Route A's server says "retry in 30 s": A's pacer waits that long; B's submits, one
    # per 0.1 s, are all sent and done meanwhile (one pacer for both would hold B's next
    # ones back 30 s too, and time the test out).
    await store.add_jobs(specs("a", 1, "[sim:429x1]") + specs("b", 3))
    config = fast_config(tmp_path / "v", rpm=600, backoff_max_s=30.0)
    slow = {"retry_after_style": "retryinfo", "retry_after_s": 30.0}
    done: list[str] = []

    def observer(event: str, details: dict[str, Any]) -> None:
        if event == "done":
            done.append(details["job"])
            if len(done) == 3:
                runner.request_stop("test over")  # B is done; A still waits its pause

    async with two_routes(slow, None) as (sa, sb, clients):
        runner = Runner(store, clients, config, rng=random.Random(1), observer=observer)
        result = await asyncio.wait_for(runner.run(), 20)
        stats_a, stats_b = sa.stats(), sb.stats()
    b_states = states(await store.jobs(batch="b"))
    assert b_states == {"b0": S.DONE, "b1": S.DONE, "b2": S.DONE}
    assert stats_a["requests"]["submit"] == {"429": 1}  # A waits out its pause
    assert stats_b["requests"]["submit"] == {"200": 3}
    a0 = await store.get("a0")
    assert a0 is not None and a0.state is S.PENDING and a0.attempts == 0
    assert result.exit_code == 75  # A's job is left for the next run


async def test_an_account_error_stops_only_that_routes_submits(
    store: Store, tmp_path: Path
) -> None:
    # Route A's balance runs out after one submit. A sends no more; B (one submit per
    # 0.1 s) goes on to the end; the paid operation of A is still brought home; the run
    # exits 4, naming A.
    await store.add_jobs(specs("a", 3) + specs("b", 3))
    config = fast_config(tmp_path / "v", submitters=1, rpm=600)
    async with two_routes({"balance_submits": 1}, None) as (sa, sb, clients):
        result = await run(store, clients, config)
        stats_a, stats_b = sa.stats(), sb.stats()
    assert stats_a["requests"]["submit"] == {"200": 1, "403": 1}
    assert stats_b["requests"]["submit"] == {"200": 3}
    assert states(await store.jobs(batch="a")) == {"a0": S.DONE, "a1": S.PENDING, "a2": S.PENDING}
    assert set(states(await store.jobs(batch="b")).values()) == {S.DONE}
    assert result.exit_code == 4
    assert result.account_error is not None
    assert result.account_error.startswith("gptproto: ")
    assert "insufficient balance" in result.account_error.lower()
    assert result.summary().startswith("stopped: gptproto: ")


async def test_max_jobs_caps_the_runs_sends_over_every_route(store: Store, tmp_path: Path) -> None:
    await store.add_jobs(specs("a", 3) + specs("b", 3))
    config = fast_config(tmp_path / "v", max_jobs=2)
    async with two_routes() as (sa, sb, clients):
        result = await run(store, clients, config)
        sent = sum(s.stats()["requests"].get("submit", {}).get("200", 0) for s in (sa, sb))
    assert sent == 2 and result.exit_code == 75
    assert sorted(states(await store.jobs()).values()).count(S.DONE) == 2


async def test_max_inflight_is_per_route(store: Store, tmp_path: Path) -> None:
    # Each server refuses more than one operation at once; one in flight per route
    # keeps both within it, and the two routes still run side by side.
    await store.add_jobs(specs("a", 2) + specs("b", 2))
    one = {"max_concurrent_ops": 1, "generation_s": (0.2, 0.2)}
    async with two_routes(one, one) as (sa, sb, clients):
        result = await run(store, clients, fast_config(tmp_path / "v", max_inflight=1))
        stats_a, stats_b = sa.stats(), sb.stats()
    assert result.exit_code == 0
    for stats in (stats_a, stats_b):
        assert stats["quota_violations"] == 0 and stats["max_concurrent_ops"] == 1
    # Side by side: B's first operation started while A's first was generating (with
    # one slot for the run, B's would wait until A's is over: 0.2 s at least).
    first_a, first_b = stats_a["accepted_submit_times"][0], stats_b["accepted_submit_times"][0]
    assert abs(first_a - first_b) < 0.1


async def test_a_job_in_flight_at_the_start_holds_a_slot_of_its_own_route(
    store: Store, tmp_path: Path
) -> None:
    # What a restart finds running counts against its own route's --max-inflight only.
    await store.add_jobs(specs("a", 1) + specs("b", 1))
    [job] = await store.claim_pending(1, route=A, default_route=A)
    await store.transition(job.id, S.SUBMITTING, S.RUNNING, operation="operations/x")
    clients = ClientsByRoute(A, [(A, cast(Any, object())), (B, cast(Any, object()))])
    clock = FakeClock()
    lanes = Lanes.build(
        clients, fast_config(tmp_path, max_inflight=1), alarms_for(clock),
        in_flight=await store.jobs([S.RUNNING]),
    )  # fmt: skip
    lane_a, lane_b = lanes.all
    assert (lane_a.routes, lane_b.routes) == ((A,), (B,))
    assert lane_a.slots.in_flight == 1 and lane_b.slots.in_flight == 0
    assert lane_a.pacer is not lane_b.pacer
    assert lanes.for_job(job) is lane_a
