"""The pipeline end to end, in process, against the simulator over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batchveo.api import OperationStatus, VeoClient, resolve_provider
from batchveo.errors import QuotaExhausted
from batchveo.run.context import RunConfig
from batchveo.run.downloader import output_paths
from batchveo.run.runner import Runner
from batchveo.sim import Simulator
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import FakeClock, make_spec, without_posters
from tests.pipeline_helpers import (
    KEY,
    fast_config,
    fast_sim,
    is_sim_video,
    run_batch,
    sha256_file,
)

S = JobState


async def test_a_batch_with_every_kind_of_failure_ends_right(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "videos"
    specs = [
        make_spec("ok1", "a calm sea"),
        make_spec("ok2", "a busy street"),
        make_spec("flaky", "flaky server [sim:500x2]"),
        make_spec("throttled", "throttled [sim:429x1]"),
        make_spec("policy", "rejected [sim:content_policy]"),
        make_spec("badreq", "invalid [sim:bad_request]"),
        make_spec("operr", "breaks [sim:op_error]"),
        make_spec("filtered", "blocked [sim:filtered]"),
        make_spec("lost", "answer lost [sim:lostx1]"),
        make_spec("reset", "connection reset [sim:resetx1]"),
        make_spec("trunc", "cut download [sim:truncatedx2]"),
        make_spec("hopeless", "always down [sim:500x99]"),
    ]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out, max_attempts=3), specs)
        stats = sim.stats()

    jobs = {j.id: j for j in await store.jobs()}
    expect = {
        "ok1": (S.DONE, None),
        "ok2": (S.DONE, None),
        "flaky": (S.DONE, None),
        "throttled": (S.DONE, None),
        "trunc": (S.DONE, None),
        "policy": (S.FAILED, "content_policy"),
        "badreq": (S.FAILED, "bad_request"),
        "operr": (S.FAILED, "operation_error"),
        "filtered": (S.FAILED, "filtered"),
        "lost": (S.UNCERTAIN, "submit_outcome_unknown"),
        "reset": (S.UNCERTAIN, "submit_outcome_unknown"),
        "hopeless": (S.FAILED, "retries_exhausted"),
    }
    assert {k: (j.state, j.error_kind) for k, j in jobs.items()} == expect
    assert "not charged" in (jobs["filtered"].error or "")
    assert jobs["hopeless"].attempts == 3
    assert result.exit_code == 1

    for job in jobs.values():
        if job.state is S.DONE:
            [f] = job.files
            path = out / f"{job.id}.mp4"
            assert f["path"] == str(path) and f["sha256"] == sha256_file(path)
            assert is_sim_video(path) and path.stat().st_size == f["size"]
    assert without_posters(p.name for p in out.iterdir()) == sorted(
        f"{k}.mp4" for k, (s, _) in expect.items() if s is S.DONE
    )
    # Nothing was paid for twice, and finished operations were never polled again.
    assert all(n == 1 for n in stats["submits_by_prompt"].values())
    assert stats["polls_after_done"] == 0
    assert stats["key_leaks"] == 0


async def test_rate_limit_is_respected_and_quota_never_trips(store: Store, tmp_path: Path) -> None:
    # The server allows 5 submits per 0.5 s window (600/min); the client paces 10% under
    # it. The window is scaled down 120 times, and the simulator shares the test's event
    # loop: 10% leaves 60 ms for a stall of that loop on a busy machine (5% left 30 ms,
    # and a full suite run tripped it about once in ten), as 6 s would at --rpm 10.
    specs = [make_spec(f"j{i}") for i in range(16)]
    async with fast_sim(rpm_limit=5, rate_window_s=0.5) as sim:
        result = await run_batch(store, sim, fast_config(tmp_path / "v", rpm=540), specs)
        stats = sim.stats()
    assert result.exit_code == 0
    t = stats["accepted_submit_times"]
    assert stats["quota_violations"] == 0, [round(b - a, 4) for a, b in itertools.pairwise(t)]
    assert stats["max_submits_in_window"] <= 5
    assert stats["requests"]["submit"] == {"200": 16}


async def test_inflight_cap_holds_against_the_server_concurrency_quota(
    store: Store, tmp_path: Path
) -> None:
    specs = [make_spec(f"j{i}") for i in range(12)]
    async with fast_sim(max_concurrent_ops=3) as sim:
        result = await run_batch(store, sim, fast_config(tmp_path / "v", max_inflight=3), specs)
        stats = sim.stats()
    assert result.exit_code == 0
    assert stats["quota_violations"] == 0 and stats["max_concurrent_ops"] <= 3


async def test_rate_limited_submits_pause_and_are_not_counted_as_attempts(
    store: Store, tmp_path: Path
) -> None:
    specs = [make_spec("a", "busy [sim:429x3]")]
    async with fast_sim(retry_after_style="retryinfo", retry_after_s=0.01) as sim:
        result = await run_batch(store, sim, fast_config(tmp_path / "v", max_attempts=2), specs)
    job = await store.get("a")
    assert job is not None and job.state is S.DONE and job.attempts == 1
    assert result.stats.submitted == 1


async def test_a_refused_send_spends_no_max_jobs_place(store: Store, tmp_path: Path) -> None:
    # --max-jobs 2: a submit answered 429 was not counted by the server, so it does not
    # count against the cap either; exactly two jobs are paid for, and the run ends.
    specs = [make_spec("a", "busy [sim:429x1]"), make_spec("b"), make_spec("c")]
    config = fast_config(tmp_path / "v", max_jobs=2, submitters=1)
    async with fast_sim(retry_after_style="retryinfo", retry_after_s=0.01) as sim:
        result = await run_batch(store, sim, config, specs)
        stats = sim.stats()
    assert stats["requests"]["submit"] == {"200": 2, "429": 1}
    assert await store.counts() == {"b1": {"done": 2, "pending": 1}}
    assert result.exit_code == 75


async def test_account_error_stops_the_run_and_leaves_jobs_pending(
    store: Store, tmp_path: Path
) -> None:
    specs = [make_spec(f"j{i}") for i in range(6)]
    config = fast_config(tmp_path / "v", submitters=1)
    async with fast_sim(balance_submits=2, generation_s="0.2,0.2") as sim:
        result = await run_batch(store, sim, config, specs)
        stats = sim.stats()
    assert result.exit_code == 4
    assert "insufficient balance" in (result.account_error or "").lower()
    counts = (await store.counts())["b1"]
    assert counts.get("pending") == 4 and counts.get("failed", 0) == 0
    # The two operations paid for before the money ran out were still brought home.
    assert counts.get("done") == 2
    assert stats["requests"]["submit"].get("403") == 1


async def test_a_retired_model_stops_the_run(store: Store, tmp_path: Path) -> None:
    specs = [make_spec("a", model="veo-3.1-fast-generate-preview")]
    async with fast_sim(retired_models="veo-3.1-fast-generate-preview") as sim:
        result = await run_batch(store, sim, fast_config(tmp_path / "v"), specs)
    assert result.exit_code == 4 and "no longer available" in (result.account_error or "")
    job = await store.get("a")
    assert job is not None and job.state is S.PENDING and job.attempts == 0


async def test_video_deleted_before_download_ends_expired(tmp_path: Path) -> None:
    # Both the service and the runner see time jump by more than the retention
    # window right after the video is made: the download finds it deleted.
    # (The run's own clock: a jump of the store's wall clock is not time passing.)
    skew = [0.0]
    store = await Store.open(tmp_path / "jobs.db")
    out = tmp_path / "v"

    def observer(event: str, details: dict[str, object]) -> None:
        if event == "generated":
            skew[0] += 3 * 24 * 3600

    try:
        sim_clock = lambda: time.monotonic() + skew[0]  # noqa: E731
        async with fast_sim(retention_s=2 * 24 * 3600, clock=sim_clock) as sim:
            await store.add_jobs([make_spec("late")])
            config = fast_config(out, retention_s=2 * 24 * 3600)
            run_clock = lambda: time.time() + skew[0]  # noqa: E731
            result = await run_batch(store, sim, config, observer=observer, clock=run_clock)
            stats = sim.stats()
        job = await store.get("late")
        assert job is not None and job.state is S.EXPIRED and job.error_kind == "expired"
        assert stats["requests"]["download"] == {"404": 1}
        assert result.exit_code == 1
        assert not out.exists() or not list(out.rglob("*.mp4*"))
    finally:
        await store.close()


async def test_several_samples_and_unsafe_ids_stay_inside_out(tmp_path: Path) -> None:
    from dataclasses import replace

    from batchveo.store import Job

    out = tmp_path / "videos"
    job = Job.from_row(
        (
            "../../etc/passwd", "b", "generated", "h", "p", "m", "{}", "{}", None, None, 0.0,
            "op", '["u1", "u2"]', None, None, None, 1, None, None, 0, 0.0, 0.0, None, 1.0, None,
        )
    )  # fmt: skip
    paths = output_paths(out, job)
    assert [p.name[:11] for p in paths] == ["etc_passwd-"] * 2
    assert [p.name[-6:] for p in paths] == ["_1.mp4", "_2.mp4"]
    assert all(p.parent == out for p in paths)
    # Ids that clean up to the same name still get files of their own.
    names = {output_paths(out, replace(job, id=i))[0].name for i in ("a b", "a?b", "a_b")}
    assert len(names) == 3 and "a_b_1.mp4" in names


async def test_rerun_of_a_finished_database_does_nothing(store: Store, tmp_path: Path) -> None:
    specs = [make_spec(f"j{i}") for i in range(3)]
    async with fast_sim() as sim:
        first = await run_batch(store, sim, fast_config(tmp_path / "v"), specs)
        second = await run_batch(store, sim, fast_config(tmp_path / "v"), specs)
        stats = sim.stats()
    assert first.exit_code == second.exit_code == 0
    assert stats["requests"]["submit"] == {"200": 3}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_outage_pauses_submits_without_burning_attempts(
    store: Store, tmp_path: Path
) -> None:
    import asyncio

    from batchveo.api import VeoClient, resolve_provider
    from batchveo.run.runner import Runner
    from tests.pipeline_helpers import KEY

    port = _free_port()
    await store.add_jobs([make_spec(f"j{i}") for i in range(4)])
    config = fast_config(tmp_path / "v", max_attempts=2)
    sim = fast_sim()
    provider = resolve_provider("gptproto", f"http://127.0.0.1:{port}")
    async with VeoClient(provider, KEY) as client:
        run = asyncio.create_task(Runner(store, client, config).run())
        await asyncio.sleep(0.3)  # nothing listens yet: every connection is refused
        await sim.start(port=port)
        try:
            result = await asyncio.wait_for(run, 20)
        finally:
            await sim.stop()
    assert result.exit_code == 0
    assert all(j.state is S.DONE and j.attempts == 1 for j in await store.jobs())


async def test_a_long_outage_stops_the_run_with_work_kept(store: Store, tmp_path: Path) -> None:
    from batchveo.api import VeoClient, resolve_provider
    from batchveo.run.runner import Runner
    from tests.pipeline_helpers import KEY

    await store.add_jobs([make_spec(f"j{i}") for i in range(3)])
    config = fast_config(tmp_path / "v", unreachable_limit_s=0.2)
    provider = resolve_provider("gptproto", f"http://127.0.0.1:{_free_port()}")
    async with VeoClient(provider, KEY) as client:
        result = await Runner(store, client, config).run()
    assert result.exit_code == 75
    assert "service unreachable" in result.summary()
    assert all(j.state is S.PENDING and j.attempts == 0 for j in await store.jobs())


async def test_a_404_right_after_submit_is_retried_later_it_means_gone(
    store: Store, tmp_path: Path
) -> None:
    from batchveo.api import VeoClient, resolve_provider
    from batchveo.clock import alarms_for
    from batchveo.run.context import RunContext
    from batchveo.run.downloader import DownloadQueue
    from batchveo.run.poller import POLL_ERRORS_TO_FAIL, Poller
    from tests.pipeline_helpers import KEY

    await store.add_jobs([make_spec("young"), make_spec("old")])
    await store.claim_pending(2)
    now = store.clock()
    # Operations the service does not know (any more).
    await store.transition("young", S.SUBMITTING, S.RUNNING, operation="operations/nope1",
                           submitted_at=now - 5, next_poll_at=now)  # fmt: skip
    await store.transition("old", S.SUBMITTING, S.RUNNING, operation="operations/nope2",
                           submitted_at=now - 600, next_poll_at=now)  # fmt: skip
    config = fast_config(tmp_path / "v", operation_grace_s=60)
    async with fast_sim() as sim, VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
        clock = alarms_for(store.clock)
        poller = Poller(RunContext(store, client, config, DownloadQueue(clock), clock=clock))
        for _ in range(POLL_ERRORS_TO_FAIL):
            for job in await store.jobs([S.RUNNING]):
                await poller.poll_one(job)
    young, old = await store.get("young"), await store.get("old")
    # Young: the service may still be catching up. Old: repeated 404s mean it is gone.
    assert young is not None and young.state is S.RUNNING
    assert young.polls == POLL_ERRORS_TO_FAIL and (young.next_poll_at or 0) > now
    assert old is not None and old.state is S.FAILED and old.error_kind == "operation_lost"
    assert old.polls == POLL_ERRORS_TO_FAIL


async def test_polls_can_share_the_submit_rate(store: Store, tmp_path: Path) -> None:
    # With polls counted, submits + polls together stay within the server's window.
    specs = [make_spec(f"j{i}") for i in range(4)]
    config = fast_config(tmp_path / "v", rpm=570, polls_count_against_rpm=True)
    async with fast_sim(rpm_limit=5, rate_window_s=0.5, count_polls_in_rpm=True) as sim:
        result = await run_batch(store, sim, config, specs)
        stats = sim.stats()
    assert result.exit_code == 0
    assert stats["quota_violations"] == 0


async def test_an_unexpected_poll_answer_is_retried_not_fatal(store: Store, tmp_path: Path) -> None:
    from batchveo.api import VeoClient, resolve_provider
    from batchveo.errors import BadRequest
    from batchveo.run.runner import Runner
    from tests.pipeline_helpers import KEY

    class Grumpy(VeoClient):
        """A service that answers the first polls of one operation with a 400."""

        refusals = 2

        async def poll(self, operation_name: str, model: str):  # type: ignore[no-untyped-def]
            if self.refusals:
                self.refusals -= 1
                raise BadRequest("HTTP 400 INVALID_ARGUMENT: odd")
            return await super().poll(operation_name, model)

    await store.add_jobs([make_spec(f"j{i}") for i in range(3)])
    async with fast_sim() as sim, Grumpy(resolve_provider("gptproto", sim.url), KEY) as client:
        result = await Runner(store, client, fast_config(tmp_path / "v")).run()
    assert result.exit_code == 0
    assert all(j.state is S.DONE for j in await store.jobs())


async def test_a_submit_in_flight_when_claims_stop_is_recorded(tmp_path: Path) -> None:
    # Every answer takes 0.9 s; the run must end at 1.2 s, so claims stop at 0.6 s (half
    # of it: the 2 s shutdown grace does not fit). The submit sent at the start is still
    # out then: it comes back and is recorded, none is left "uncertain", and the second
    # job is never claimed. (The poll that follows is cut off at the limit: harmless.)
    db = tmp_path / "jobs.db"
    async with await Store.open(db) as store:
        specs = [make_spec("sent"), make_spec("left")]
        config = fast_config(tmp_path / "v", max_runtime_s=1.2, submitters=1)
        async with fast_sim(latency_s="0.9,0.9") as sim:
            result = await run_batch(store, sim, config, specs)
        assert result.exit_code == 75
        assert {j.id: j.state for j in await store.jobs()} == {"sent": S.RUNNING, "left": S.PENDING}
        assert await store.recover_interrupted() == []


class ShiftedClock:
    """The real clock plus an offset a test can move: "tomorrow" without waiting for it."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset_s


async def test_a_spent_daily_quota_stops_submits_until_it_resets(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "videos"
    clock = ShiftedClock()
    specs = [make_spec(f"j{i}", f"prompt {i}") for i in range(5)]
    async with fast_sim(rpd_limit=3, day_s=3600.0, clock=clock) as sim:
        today = await run_batch(store, sim, fast_config(out, max_inflight=1), specs)
        refused_today = sim.stats()["per_day_quota_429s"]
        # Not an account problem: exit 75 (run again later), the paid videos are on disk,
        # the rest wait as they were, not failed and with no attempt spent.
        assert today.exit_code == 75 and today.account_error is None
        assert "daily quota is used up" in today.summary()
        assert await store.counts() == {"b1": {"done": 3, "pending": 2}}
        assert all(j.attempts == 0 for j in await store.jobs([S.PENDING]))
        assert refused_today == 1  # one refusal was enough to stop asking
        clock.offset_s += 3600.0  # the next quota day
        tomorrow = await run_batch(store, sim, fast_config(out, max_inflight=1))
        stats = sim.stats()
    assert tomorrow.exit_code == 0
    assert await store.counts() == {"b1": {"done": 5}}
    assert without_posters(p.name for p in out.iterdir()) == [f"j{i}.mp4" for i in range(5)]
    assert all(n == 1 for n in stats["submits_by_prompt"].values())


async def test_operations_not_yet_known_right_after_submit_still_finish(
    store: Store, tmp_path: Path
) -> None:
    # Google: a poll just after the submit may 404. Within the grace period that is
    # "not yet", not "gone".
    specs = [make_spec(f"j{i}") for i in range(4)]
    async with fast_sim(early_404_s=0.2) as sim:
        result = await run_batch(
            store, sim, fast_config(tmp_path / "v", operation_grace_s=1.0), specs
        )
        stats = sim.stats()
    assert result.exit_code == 0
    assert await store.counts() == {"b1": {"done": 4}}
    assert stats["early_404s"] >= 4 and stats["polls_after_done"] == 0


async def test_jobs_wanting_one_file_name_each_keep_their_video(
    store: Store, tmp_path: Path
) -> None:
    # Monday's manifest names its video "hero"; so does Tuesday's, loaded later, and a
    # job whose id is "hero" too. No paid video may overwrite another.
    out = tmp_path / "videos"
    monday = [make_spec("m1", "monday", output_name="hero", batch="monday")]
    tuesday = [
        make_spec("t1", "tuesday", output_name="hero", batch="tuesday"),
        make_spec("hero", "by id", batch="tuesday"),
    ]
    async with fast_sim() as sim:
        assert (await run_batch(store, sim, fast_config(out), monday)).exit_code == 0
        assert (await run_batch(store, sim, fast_config(out), tuesday)).exit_code == 0
    jobs = {j.id: j for j in await store.jobs()}
    paths = {k: Path(j.files[0]["path"]) for k, j in jobs.items()}
    assert paths["m1"] == out / "hero.mp4"
    assert {paths["t1"].name, paths["hero"].name} == {"hero-2.mp4", "hero-3.mp4"}
    assert without_posters(p.name for p in out.iterdir()) == [
        "hero-2.mp4",
        "hero-3.mp4",
        "hero.mp4",
    ]
    for k, job in jobs.items():
        assert sha256_file(paths[k]) == job.files[0]["sha256"] and is_sim_video(paths[k])


async def watch_run_until(
    store: Store,
    sim: Simulator,
    config: RunConfig,
    done: int,
    timeout_s: float = 10.0,
    on_tick: Callable[[], None] | None = None,
) -> tuple[int, dict[str, dict[str, int]], bool]:
    """Run in --watch mode until ``done`` jobs are done (or the run ends by itself);
    then stop it as a signal would. The exit code, the counts when it was stopped, and
    whether it had ended by itself. ``on_tick`` is called at each look (a test's hand on
    the simulator's clock)."""
    async with VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
        runner = Runner(store, client, config, rng=random.Random(1))
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + timeout_s
        while not task.done() and time.monotonic() < deadline:
            counts = await store.counts()
            if sum(c.get("done", 0) for c in counts.values()) >= done:
                break
            if on_tick is not None:
                on_tick()
            await asyncio.sleep(0.02)
        counts = await store.counts()
        ended_by_itself = task.done()
        if not ended_by_itself:
            runner.request_stop("test over")
        result = await asyncio.wait_for(task, 10)
    return result.exit_code, counts, ended_by_itself


async def test_a_watching_run_holds_submits_back_until_the_quota_day_turns(
    store: Store, tmp_path: Path
) -> None:
    # A daemon watching a drop folder outlives a quota day: it waits for the reset
    # (the server says when) and goes on, instead of ending or spinning.
    (tmp_path / "drop").mkdir()
    await store.add_jobs([make_spec(f"j{i}", f"prompt {i}") for i in range(4)])
    # The simulator's day turns only when the test turns it (once the run has met the
    # per-day 429), so the third submit meets it however slow the machine is.
    config = fast_config(tmp_path / "v", max_inflight=1, watch_dir=tmp_path / "drop")
    clock = FakeClock()
    turned: list[float] = []
    sim_knobs: dict[str, Any] = {"generation_s": (0.0, 0.0), "clock": clock}
    async with fast_sim(rpd_limit=2, day_s=0.3, retry_after_style="retryinfo", **sim_knobs) as sim:

        def turn_the_day() -> None:
            if not turned and sim.stats()["per_day_quota_429s"]:
                turned.append(clock())
                clock.advance(0.31)  # past the day (0.3 exactly rounds short of it)

        _, counts, ended = await watch_run_until(store, sim, config, done=4, on_tick=turn_the_day)
        stats = sim.stats()
    assert counts == {"b1": {"done": 4}} and not ended  # still watching for new work
    assert turned and stats["per_day_quota_429s"] >= 1
    assert stats["received_by_prompt"]["prompt 2"] <= 3  # it waited for the day, no spinning
    assert all(n == 1 for n in stats["submits_by_prompt"].values())


async def test_a_watching_run_ends_after_an_account_error_once_paid_work_is_in(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "drop").mkdir()
    await store.add_jobs([make_spec(f"j{i}", f"prompt {i}") for i in range(3)])
    config = fast_config(tmp_path / "v", max_inflight=1, watch_dir=tmp_path / "drop")
    async with fast_sim(balance_submits=1) as sim:
        exit_code, counts, ended = await watch_run_until(store, sim, config, done=99)
    assert ended and exit_code == 4  # not left polling forever
    assert counts == {"b1": {"done": 1, "pending": 2}}


async def test_a_per_day_429_on_a_poll_does_not_drop_the_paid_operation(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Google counts only submits; a reseller counting polls must not make us give up
    # operations that are already paid for.
    real_poll = VeoClient.poll
    refused: list[str] = []

    async def poll(self: VeoClient, name: str, model: str) -> OperationStatus:
        if not refused:
            refused.append(name)
            raise QuotaExhausted("HTTP 429 RESOURCE_EXHAUSTED: quota per day", status=429)
        return await real_poll(self, name, model)

    monkeypatch.setattr(VeoClient, "poll", poll)
    specs = [make_spec(f"j{i}") for i in range(3)]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(tmp_path / "v"), specs)
    assert refused and result.exit_code == 0 and result.account_error is None
    assert await store.counts() == {"b1": {"done": 3}}


class ShiftedWall:
    """The wall clock plus an offset a test can move (the store's clock, between runs)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


async def submit_then_stop(store: Store, sim: Simulator, config: RunConfig, n: int) -> int:
    """A run stopped (as by a signal) the moment its ``n``-th submit is recorded."""
    submitted: list[object] = []
    runners: list[Runner] = []

    def observer(event: str, details: dict[str, object]) -> None:
        if event == "submitted":
            submitted.append(details["job"])
            if len(submitted) == n:
                runners[0].request_stop("test: all submitted")

    async with VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
        runners.append(Runner(store, client, config, observer=observer, rng=random.Random(1)))
        result = await asyncio.wait_for(runners[0].run(), 30)
    return result.exit_code


async def test_operations_left_past_the_retention_end_expired_at_the_first_404(
    tmp_path: Path,
) -> None:
    # 20 videos are made, then nobody polls for longer than the service keeps them
    # (the machine was off): the operations are gone for good, and they are expired,
    # not "lost" after a minute of pointless polling.
    retention_s = 600.0
    wall, sim_clock = ShiftedWall(), ShiftedClock()
    config = fast_config(tmp_path / "v", retention_s=retention_s, first_poll_s=300.0)
    async with await Store.open(tmp_path / "jobs.db", clock=wall) as store:
        await store.add_jobs([make_spec(f"j{i:02d}", f"prompt {i}") for i in range(20)])
        async with fast_sim(retention_s=retention_s, clock=sim_clock) as sim:
            assert await submit_then_stop(store, sim, config, 20) == 75
            assert await store.counts() == {"b1": {"running": 20}}
            wall.offset_s += 2 * retention_s
            sim_clock.offset_s += 2 * retention_s
            result = await run_batch(store, sim, replace(config, first_poll_s=0.01))
            stats = sim.stats()
        jobs = await store.jobs()
    assert result.exit_code == 1
    assert {(j.state, j.error_kind) for j in jobs} == {(S.EXPIRED, "expired")}
    assert stats["requests"]["poll"] == {"404": 20}  # one answer each was enough
    why = jobs[0].error or ""
    assert "submitted" in why and "10 min" in why and "deleted by the service" in why, why


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A service that reads every request and never answers (a hung load balancer)."""
    release, seen = asyncio.Event(), list[str]()

    async def hang(request: web.Request) -> web.Response:
        seen.append(request.path)
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        release.set()
        await runner.cleanup()


async def test_max_runtime_holds_even_when_a_submit_never_answers(tmp_path: Path) -> None:
    # --max-runtime 1s, a minute of shutdown grace, two minutes of request timeout: the
    # run still ends at its limit (the old one waited out the grace on top: 61 s), and
    # the submit cut off stays submitting, so the next run marks it uncertain.
    db = tmp_path / "jobs.db"
    config = fast_config(tmp_path / "v", max_runtime_s=1.0, shutdown_grace_s=60.0)
    async with await Store.open(db) as store, silent_server() as (url, seen):
        await store.add_jobs([make_spec("hung")])
        provider = resolve_provider("gptproto", url)
        async with VeoClient(provider, KEY, request_timeout_s=120) as client:
            started = time.monotonic()
            result = await asyncio.wait_for(Runner(store, client, config).run(), 10)
            took_s = time.monotonic() - started
        assert result.exit_code == 75 and took_s < 10
        assert "max runtime reached" in result.summary()
        assert len(seen) == 1 and seen[0].endswith(":predictLongRunning")
        assert await store.counts() == {"b1": {"submitting": 1}}
        assert await store.recover_interrupted() == ["hung"]
