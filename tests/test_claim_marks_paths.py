"""Every way a pending job behind a claim's walk can come to fit, against a real ``Store``.

A claim walks from where the last claim of its kind stopped (``store/claimmarks.py``). What
a user would notice if the mark were wrong: a job that fits left pending while later jobs
go first, or left for good (the run ends "drained" with it pending, ``next_attempt_at``
saying None). Each test puts the job behind the walk by a path of its own and checks the
next claims take it in oldest-first order, and that nothing fitting is left at the end.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchveo.manifest import read_manifests
from batchveo.routes import Route
from batchveo.states import JobState
from batchveo.store import Job, RetakeAsk, Review, ReviewStatus, Store
from batchveo.store import claims as store_claims
from tests.helpers import FakeClock, make_spec
from tests.pipeline_helpers import fast_config, fast_sim, run_batch

S = JobState
BUDGET_USD = 1e6
"""The run's ``--budget`` in these tests: large, so only the batch budgets block."""


async def claim(store: Store, budget_usd: float | None = BUDGET_USD) -> str | None:
    jobs = await store.claim_pending(1, budget_usd=budget_usd)
    return jobs[0].id if jobs else None


async def claim_all(store: Store, budget_usd: float | None = BUDGET_USD) -> list[str]:
    """Claims one at a time until none is left (at most 400)."""
    got: list[str] = []
    for _ in range(400):
        job = await claim(store, budget_usd)
        if job is None:
            return got
        got.append(job)
    raise AssertionError(f"more than 400 claims: {got}")


async def nothing_fitting_left(store: Store, budget_usd: float | None = BUDGET_USD) -> None:
    """What ``_drained`` reads says no job could be sent, and that is the truth."""
    fit, _ = await store.claimable_pending(budget_usd=budget_usd)
    assert fit == 0, f"{fit} pending job(s) fit"
    assert await store.next_attempt_at(budget_usd=budget_usd) is None


async def dear_then_open(db: Path, dear: int = 200, opened: int = 5, **kw: Any) -> Store:
    """Pending jobs of a batch with $1 left ($3.20 jobs: none fits), then ``opened`` jobs of
    an open batch (o0..)."""
    store = await Store.open(db, clock=FakeClock())
    await store.add_jobs([make_spec(f"d{i}", batch="dear") for i in range(dear)],
                         budgets={"dear": 1.0})  # fmt: skip
    await store.add_jobs([make_spec(f"o{i}", batch="open", **kw) for i in range(opened)])
    return store


# -- a claim that fails ----------------------------------------------------------------


async def test_a_claim_that_fails_leaves_its_job_to_the_next_claim(tmp_path: Path) -> None:
    """The disk fills up in the middle of a claim (a real SQLITE_FULL: the database may not
    grow): the claim's transaction rolls back, its job is pending still. Once there is room
    again, the next claim takes that job, the oldest; none is left behind."""
    store = await dear_then_open(tmp_path / "jobs.db", opened=300)
    try:
        [[pages]] = await store._db.execute_fetchall("PRAGMA page_count")
        await store._db.execute(f"PRAGMA max_page_count={pages}")
        got: list[str] = []
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for _ in range(300):  # each claim logs its event; one needs a new page
                got += [j.id for j in await store.claim_pending(1, budget_usd=BUDGET_USD)]
        failed = f"o{len(got)}"
        job = await store.get(failed)
        assert job is not None and job.state is S.PENDING  # rolled back: never claimed
        await store._db.execute("PRAGMA max_page_count=1073741823")  # room again
        rest = await claim_all(store)
        assert rest == [f"o{i}" for i in range(len(got), 300)]
        await nothing_fitting_left(store)
    finally:
        await store.close()


# -- the user's word, beside the walk ----------------------------------------------------


async def test_cancel_then_retry_behind_the_walk_is_claimed_first(tmp_path: Path) -> None:
    store = await dear_then_open(tmp_path / "jobs.db")
    try:
        assert await store.cancel(["o1"]) == ["o1"]
        assert [await claim(store) for _ in range(3)] == ["o0", "o2", "o3"]
        assert await store.requeue([S.CANCELLED], ["o1"]) == ["o1"]  # `batchveo retry o1`
        assert await claim_all(store) == ["o1", "o4"]
        await nothing_fitting_left(store)
    finally:
        await store.close()


async def test_a_failed_job_retried_and_an_uncertain_one_resent_are_claimed_in_order(
    tmp_path: Path,
) -> None:
    store = await dear_then_open(tmp_path / "jobs.db")
    try:
        assert [await claim(store) for _ in range(3)] == ["o0", "o1", "o2"]
        await store.transition("o0", S.SUBMITTING, S.FAILED, error_kind="rejected")
        await store.transition("o1", S.SUBMITTING, S.UNCERTAIN, error_kind="interrupted")
        assert await claim(store) == "o3"
        assert await store.requeue([S.FAILED, S.UNCERTAIN]) == ["o0", "o1"]
        assert await claim_all(store) == ["o0", "o1", "o4"]
        await nothing_fitting_left(store)
    finally:
        await store.close()


CLAIM_THEN_HANG = """
import asyncio, sys
from batchveo.store import Store

async def main():
    store = await Store.open(sys.argv[1])
    for _ in range(2):
        [job] = await store.claim_pending(1, budget_usd=1e6)
        print(job.id, flush=True)
    print("claimed", flush=True)
    await asyncio.Event().wait()  # killed here, its claims committed, nothing sent

asyncio.run(main())
"""


async def test_a_process_killed_after_its_claims_leaves_the_rest_in_order(tmp_path: Path) -> None:
    """kill -9 of a real process that claimed two jobs (its marks die with it): the next
    process finds them ``submitting`` (uncertain, never resent on its own), claims the
    rest oldest first, and the user's resend makes the two claimable again."""
    db = tmp_path / "jobs.db"
    store = await dear_then_open(db)
    await store.close()
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIM_THEN_HANG, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline().strip() for _ in range(3)]
        assert lines == ["o0", "o1", "claimed"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()
    async with await Store.open(db, clock=FakeClock()) as store:
        assert await store.recover_interrupted() == ["o0", "o1"]
        assert [await claim(store) for _ in range(2)] == ["o2", "o3"]
        assert await store.requeue([S.UNCERTAIN]) == ["o0", "o1"]
        assert await claim_all(store) == ["o0", "o1", "o4"]
        await nothing_fitting_left(store)


async def test_a_claim_handed_back_by_a_submitter_that_left_is_claimed_again_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submitter is cancelled (a stop) after its claim is committed: the job is handed
    back (``_hand_back``), behind the walk, and is the next claimed."""
    store = await Store.open(tmp_path / "jobs.db", clock=FakeClock())
    try:
        await store.add_jobs([make_spec(f"g{i}", route=Route("gemini")) for i in range(100)])
        await store.add_jobs([make_spec(f"r{i}", route=Route("gptproto")) for i in range(3)])
        committed, release = asyncio.Event(), asyncio.Event()
        take = store_claims.Claims._take_committed

        async def take_then_wait(self: store_claims.Claims, *args: Any) -> list[Job]:
            jobs = await take(self, *args)
            committed.set()
            await release.wait()  # the claim is in the database; the caller leaves now
            return jobs

        async def reseller() -> list[Job]:
            return await store.claim_pending(
                1, route=Route("gptproto"), default_route=Route("gemini")
            )

        with monkeypatch.context() as patch:
            patch.setattr(store_claims.Claims, "_take_committed", take_then_wait)
            doomed = asyncio.create_task(reseller())
            await committed.wait()
            doomed.cancel()
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await doomed
        got = [j.id for _ in range(4) for j in await reseller()]
        assert got == ["r0", "r1", "r2"]
        back = await store.get("r0")
        assert back is not None and back.attempts == 1  # sent once, after the hand-back
    finally:
        await store.close()


# -- loads and prices --------------------------------------------------------------------


async def test_a_replaced_job_made_cheap_enough_is_claimed_in_its_place(tmp_path: Path) -> None:
    store = await dear_then_open(tmp_path / "jobs.db")
    try:
        assert await claim(store) == "o0"
        # d5 reloaded as 4 s of the fast model: $0.60, within the dear batch's $1
        four_s = {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 4}
        spec = make_spec("d5", batch="dear", model="veo-3.1-fast-generate-preview", params=four_s)
        assert spec.cost_usd <= 1.0
        await store.add_jobs([spec], replace=True)
        assert await claim_all(store) == ["d5", "o1", "o2", "o3", "o4"]
        await nothing_fitting_left(store)
    finally:
        await store.close()


async def test_a_job_rerouted_by_a_load_is_claimed_by_its_new_routes_walk(tmp_path: Path) -> None:
    gemini, reseller = Route("gemini"), Route("gptproto")
    async with await Store.open(tmp_path / "jobs.db", clock=FakeClock()) as store:
        await store.add_jobs([make_spec(f"g{i}", route=gemini) for i in range(100)])
        await store.add_jobs([make_spec(f"r{i}", route=reseller) for i in range(3)])

        async def reseller_claim() -> str | None:
            got = await store.claim_pending(1, route=reseller, default_route=gemini)
            return got[0].id if got else None

        assert await reseller_claim() == "r0"
        await store.add_jobs([make_spec("g7", route=reseller)], replace=True)  # a reroute
        assert [await reseller_claim() for _ in range(4)] == ["g7", "r1", "r2", None]
        assert await store.next_attempt_at(route=reseller, default_route=gemini) is None
        assert await store.next_attempt_at(route=gemini, default_route=gemini) == 0.0


async def test_a_budget_raised_by_a_load_of_this_process_lets_the_batch_through(
    tmp_path: Path,
) -> None:
    store = await dear_then_open(tmp_path / "jobs.db", dear=20)
    try:
        assert await claim(store) == "o0"
        await store.add_jobs([], budgets={"dear": 7.0})  # room for two $3.20 jobs
        assert await claim_all(store) == ["d0", "d1", "o1", "o2", "o3", "o4"]
        await nothing_fitting_left(store)
    finally:
        await store.close()


async def test_a_new_capped_batch_and_a_cap_gone_are_new_budgets(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = await dear_then_open(db, dear=20)
    try:
        assert await claim(store) == "o0"
        with sqlite3.connect(db) as other:  # another process: a cap set to none
            other.execute("UPDATE batches SET budget_usd = NULL WHERE name = 'dear'")
        assert await claim(store) == "d0"  # the oldest, now that nothing caps it
        await store.add_jobs([make_spec("late", batch="open")], budgets={"open": 100.0})
        assert await claim(store) == "d1"
    finally:
        await store.close()


# -- money given back --------------------------------------------------------------------


async def test_fewer_videos_returned_give_money_back_to_the_batch(tmp_path: Path) -> None:
    """A job that asked for two videos and returned one costs one: its batch's room grows,
    and a job of that batch stepped over before fits now."""
    two = {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 8, "sampleCount": 2}
    store = await Store.open(tmp_path / "jobs.db", clock=FakeClock())
    try:
        dear = [make_spec(f"d{i}", batch="dear", params=two) for i in range(50)]
        per_job = dear[0].cost_usd
        await store.add_jobs(dear, budgets={"dear": 1.5 * per_job})  # one, not two
        await store.add_jobs([make_spec(f"o{i}", batch="open") for i in range(3)])
        assert [await claim(store) for _ in range(2)] == ["d0", "o0"]
        await store.transition("d0", S.SUBMITTING, S.RUNNING, operation="operations/d0")
        await store.transition(
            "d0", S.RUNNING, S.GENERATED, video_uris=["https://x/v"], generated_at=1.0,
            samples_returned=1,
        )  # fmt: skip
        assert await claim_all(store) == ["d1", "o1", "o2"]
        await nothing_fitting_left(store)
    finally:
        await store.close()


async def test_a_backoff_over_is_claimed_before_later_jobs(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await Store.open(tmp_path / "jobs.db", clock=clock)
    try:
        await store.add_jobs([make_spec(f"d{i}", batch="dear") for i in range(50)],
                             budgets={"dear": 1.0})  # fmt: skip
        await store.add_jobs([make_spec(f"o{i}", batch="open") for i in range(4)])
        assert await claim(store) == "o0"
        await store.transition("o0", S.SUBMITTING, S.PENDING, next_attempt_at=clock.now + 5)
        assert await claim(store) == "o1"
        clock.advance(6)
        assert await claim_all(store) == ["o0", "o2", "o3"]
        await nothing_fitting_left(store)
    finally:
        await store.close()


# -- scene chains ------------------------------------------------------------------------


async def test_a_hop_released_behind_the_walk_goes_before_later_jobs(tmp_path: Path) -> None:
    manifest = tmp_path / "c.yaml"
    manifest.write_text(
        "jobs:\n  - {id: a, prompt: a root, chain: [hop two]}\n"
        + "".join(f"  - {{id: p{i}, prompt: plain {i}}}\n" for i in range(4))
    )
    specs = read_manifests([manifest]).specs
    clock = FakeClock()
    async with await Store.open(tmp_path / "jobs.db", clock=clock) as store:
        await store.add_jobs(specs)  # a, p0..p3, then the hop a-2 (waiting)
        await store.add_jobs([make_spec(f"q{i}") for i in range(3)])
        assert [await claim(store, None) for _ in range(6)] == ["a", "p0", "p1", "p2", "p3", "q0"]
        await store.transition("a", S.SUBMITTING, S.RUNNING, operation="operations/a")
        await store.transition(
            "a", S.RUNNING, S.GENERATED, video_uris=["https://x/a"], generated_at=clock.now
        )
        await store.transition("a", S.GENERATED, S.DONE, files=[], finished_at=clock.now)
        # a-2 (loaded before q0) is pending now, behind the walk
        assert await claim_all(store, None) == ["a-2", "q1", "q2"]
        await nothing_fitting_left(store, None)


async def test_a_retake_made_after_the_walk_reached_the_end_is_claimed(tmp_path: Path) -> None:
    """A flagged verdict makes a new take (a new row, after every mark) once the claims
    of its route found nothing left: the next claim takes it, and the drain check sees it."""
    gemini, reseller = Route("gemini"), Route("gptproto")
    async with await Store.open(tmp_path / "jobs.db", clock=FakeClock()) as store:
        await store.add_jobs([make_spec(f"g{i}", route=gemini) for i in range(100)])
        await store.add_jobs([make_spec("r0", route=reseller)])

        async def reseller_claim() -> str | None:
            got = await store.claim_pending(1, route=reseller, default_route=gemini)
            return got[0].id if got else None

        assert await reseller_claim() == "r0"
        assert await reseller_claim() is None
        assert await store.next_attempt_at(route=reseller, default_route=gemini) is None
        await store.transition("r0", S.SUBMITTING, S.RUNNING, operation="operations/r0")
        await store.transition("r0", S.RUNNING, S.DONE, files=[])
        flagged = Review(job_id="r0", batch="b1", status=ReviewStatus.FLAGGED, score=2.0,
                         model="m", cost_usd=0.01)  # fmt: skip
        made = await store.record_verdict(flagged, RetakeAsk(1, 0.0, None))
        assert made.retake.job_id == "r0~2"
        assert await store.next_attempt_at(route=reseller, default_route=gemini) == 0.0
        assert [await reseller_claim() for _ in range(2)] == ["r0~2", None]


# -- routes ------------------------------------------------------------------------------


def vertex(project: str | None) -> Route:
    return Route("vertex", project=project, location="us-central1", storage_uri="gs://b/o")


async def test_two_vertex_projects_share_the_filters_sql_not_their_walks(tmp_path: Path) -> None:
    """Two routes whose filters are the same SQL with other arguments, and rows loaded
    with no project (the run's default's): each route's walk is its own."""
    async with await Store.open(tmp_path / "jobs.db", clock=FakeClock()) as store:
        await store.add_jobs([make_spec(f"a{i}", route=vertex("pa")) for i in range(60)])
        await store.add_jobs([make_spec(f"n{i}", route=vertex(None)) for i in range(2)])
        await store.add_jobs([make_spec(f"b{i}", route=vertex("pb")) for i in range(2)])

        async def take(project: str, default: str) -> str | None:
            got = await store.claim_pending(1, route=vertex(project), default_route=vertex(default))
            return got[0].id if got else None

        # the rows without a project go by pb while the run's default is pb ...
        assert await take("pb", "pb") == "n0"
        assert await take("pa", "pb") == "a0"
        # ... and by pa once it is pa: pb's walk without n1, its own
        assert [await take("pb", "pa") for _ in range(3)] == ["b0", "b1", None]
        assert await take("pb", "pb") == "n1"  # the walk of pb under pb, n1 in it again
        assert await take("pb", "pb") is None
        assert await take("pa", "pa") == "a1"


# -- two processes -----------------------------------------------------------------------


async def test_two_processes_claiming_take_every_job_once_oldest_first(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    one = await dear_then_open(db, opened=40)
    two = await Store.open(db, clock=FakeClock())
    try:
        got: dict[str, list[str]] = {"one": [], "two": []}
        for i in range(45):
            name, store = ("one", one) if i % 3 else ("two", two)
            job = await claim(store)
            if job is not None:
                got[name].append(job)
            if i == 20:  # the other process hands one of this one's claims back
                back = got["one"][0]
                await two.transition(back, S.SUBMITTING, S.FAILED, error_kind="rejected")
                assert await two.requeue([S.FAILED]) == [back]
        everything = sorted(got["one"] + got["two"], key=lambda j: int(j[1:]))
        assert len(everything) == 41 and len(set(everything)) == 40  # one claimed twice: o?
        assert everything.count(got["one"][0]) == 2  # the job sent back, and only that
        for claims in got.values():  # each process took its jobs oldest first
            rest = [j for j in claims if j != got["one"][0]]
            assert rest == sorted(rest, key=lambda j: int(j[1:]))
        await nothing_fitting_left(one)
        await nothing_fitting_left(two)
    finally:
        await two.close()
        await one.close()


async def test_another_processs_retry_is_seen_by_a_claim_in_its_own_transaction(
    tmp_path: Path,
) -> None:
    """A budgeted claim reads ``PRAGMA data_version`` inside its BEGIN IMMEDIATE: a job
    another process retries (no budget's room changes: a cancelled job costs nothing) is
    still the next claimed, behind the walk."""
    db = tmp_path / "jobs.db"
    store = await dear_then_open(db)
    try:
        assert await store.cancel(["o0"]) == ["o0"]
        assert [await claim(store) for _ in range(2)] == ["o1", "o2"]
        with sqlite3.connect(db) as other:  # `batchveo retry o0`, beside the run
            other.execute("UPDATE jobs SET state='pending' WHERE id='o0'")
        assert await claim_all(store) == ["o0", "o3", "o4"]
        await nothing_fitting_left(store)
    finally:
        await store.close()


# -- end to end --------------------------------------------------------------------------


async def test_a_run_sends_every_job_that_comes_to_fit_and_ends_drained(tmp_path: Path) -> None:
    """A capped batch with room for one job, ahead of an open batch: its first job is
    refused (never billed), its second filtered (never billed), so the third fits in
    turn; a 429 puts an open job in a backoff. The run sends each, and ends "drained"
    with only the jobs over the batch's budget pending."""
    store = await Store.open(tmp_path / "jobs.db")
    try:
        dear = [
            make_spec("d0", "refused [sim:content_policy]", batch="dear"),
            make_spec("d1", "filtered [sim:filtered]", batch="dear"),
            *[make_spec(f"d{i}", batch="dear") for i in range(2, 60)],
        ]
        await store.add_jobs(dear, budgets={"dear": 1.5 * dear[2].cost_usd})
        opened = [make_spec("o0", "busy [sim:429x2]", batch="open")]
        opened += [make_spec(f"o{i}", batch="open") for i in range(1, 5)]
        async with fast_sim(retry_after_style="retryinfo", retry_after_s=0.01) as sim:
            config = fast_config(tmp_path / "v", budget_usd=1e6, submitters=2)
            result = await run_batch(store, sim, config, opened)
        states = {j.id: j.state for j in await store.jobs(list(S))}
        assert states["d0"] is S.FAILED and states["d1"] is S.FAILED
        assert states["d2"] is S.DONE
        assert all(states[f"o{i}"] is S.DONE for i in range(5))
        assert {j for j, s in states.items() if s is S.PENDING} == {f"d{i}" for i in range(3, 60)}
        assert result.over_budget == 57
        await nothing_fitting_left(store)
    finally:
        await store.close()


async def test_concurrent_claims_of_two_stores_never_take_a_job_twice(tmp_path: Path) -> None:
    """Submitters of two processes (two connections on one file) claiming at the same
    moment, with and without budgets: each job is taken once, and every open one is."""
    db = tmp_path / "jobs.db"
    one = await dear_then_open(db, opened=60)
    two = await Store.open(db, clock=FakeClock())
    try:

        async def claims(store: Store, budget_usd: float | None) -> list[str]:
            return [j.id for j in await store.claim_pending(1, budget_usd=budget_usd)]

        asks = [claims(one if i % 2 else two, BUDGET_USD if i % 3 else None) for i in range(80)]
        got = [j for jobs in await asyncio.gather(*asks) for j in jobs]
        assert len(got) == len(set(got)) == 60  # the dear batch's cap holds either way
        assert set(got) == {f"o{i}" for i in range(60)}
        submitting = await one.jobs([S.SUBMITTING])
        assert sorted(j.id for j in submitting) == sorted(got)
    finally:
        await two.close()
        await one.close()


async def test_a_job_that_returned_fewer_videos_retried_costs_all_again(tmp_path: Path) -> None:
    """A job that asked for two videos and returned one (costing one), then failed and
    was retried: it asks for two again, costs two again, and is claimed in its turn."""
    two = {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 8, "sampleCount": 2}
    store = await Store.open(tmp_path / "jobs.db", clock=FakeClock())
    try:
        dear = [make_spec(f"d{i}", batch="dear", params=two) for i in range(30)]
        per_job = dear[0].cost_usd
        await store.add_jobs(dear, budgets={"dear": 1.5 * per_job})
        await store.add_jobs([make_spec(f"o{i}", batch="open") for i in range(3)])
        assert [await claim(store) for _ in range(2)] == ["d0", "o0"]
        await store.transition("d0", S.SUBMITTING, S.RUNNING, operation="operations/d0")
        await store.transition(
            "d0", S.RUNNING, S.FAILED, samples_returned=1, error_kind="operation"
        )
        assert await store.requeue([S.FAILED]) == ["d0"]
        back = await store.get("d0")
        assert back is not None and back.cost_usd == pytest.approx(per_job)
        assert await claim_all(store) == ["d0", "o1", "o2"]  # d1 does not fit beside it
        await nothing_fitting_left(store)
    finally:
        await store.close()
