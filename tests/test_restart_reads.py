"""A restart, budgeted claims and the poller read in constant time, whatever the table's size.

Budgets are judged from the running totals in integer micro-dollars (exact however many
moves), a restart with the same prices reprices only the jobs loaded since, and no
statement a run makes, from its first read to its end, scans the job table or the event
log (``EXPLAIN QUERY PLAN`` of every one of them).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from batchveo.routes import Route
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import make_spec
from tests.pipeline_helpers import fast_config, fast_sim, run_batch

S = JobState


async def dime_jobs(store: Store, n: int, **kw: object) -> None:
    """``n`` pending jobs at $0.10 each: a cost no float adds up exactly."""
    await store.add_jobs([make_spec(f"j{i:02d}") for i in range(n)], **kw)  # type: ignore[arg-type]
    await store.reprice(lambda model, params: 0.1)


async def test_a_budget_reached_exactly_is_reached_after_any_number_of_moves(
    store: Store,
) -> None:
    await dime_jobs(store, 10)
    claimed = []
    while jobs := await store.claim_pending(1, budget_usd=0.7):
        (job,) = jobs
        claimed.append(job.id)
        await store.transition(job.id, S.SUBMITTING, S.RUNNING, operation=f"op-{job.id}")
        await store.transition(job.id, S.RUNNING, S.DONE)
    # 0.1 added seven times is 0.7000000000000001: in micro-dollars, exactly 700,000.
    assert claimed == [f"j{i:02d}" for i in range(7)]
    assert await store.claimable_pending(budget_usd=0.7) == (0, 3)
    assert await store.next_attempt_at(budget_usd=0.7) is None
    assert await store.next_attempt_at(budget_usd=0.8) == 0.0  # one more fits
    assert (await store.costs())["b1"]["committed"] == 0.7
    assert len(await store.claim_pending(3, budget_usd=1e300)) == 3  # past SQLite's integers


async def test_next_attempt_at_is_the_earliest_backoff_of_the_jobs_that_fit(
    store: Store,
) -> None:
    await dime_jobs(store, 3)
    await store.claim_pending(3)
    for job_id, at in (("j00", 50.0), ("j01", 40.0), ("j02", 60.0)):
        await store.transition(job_id, S.SUBMITTING, S.PENDING, next_attempt_at=at)
    assert await store.next_attempt_at() == 40.0
    vertex = Route("vertex", "p", "us-central1")
    assert await store.next_attempt_at(route=vertex) is None  # none goes by it
    assert await store.next_attempt_at(budget_usd=0.05) is None  # none fits
    assert await store.pull_in_schedules(latest=45.0, now=10.0) == 2  # a clock set back
    assert await store.next_attempt_at() == 10.0
    assert [j.id for j in await store.claim_pending(3, now=10.0)] == ["j00", "j02"]
    assert await store.next_attempt_at() == 40.0


async def test_the_same_prices_again_reprice_only_the_jobs_loaded_since(store: Store) -> None:
    await store.add_jobs([make_spec(f"j{i}") for i in range(5)])

    def price(usd: float) -> float:
        return usd

    assert await store.reprice(lambda m, p: price(1.0), prices_key="A") == 5
    assert await store.reprice(lambda m, p: price(1.0), prices_key="A") == 0
    await store.add_jobs([make_spec("new1"), make_spec("new2")])  # priced by the table
    assert await store.reprice(lambda m, p: price(1.0), prices_key="A") == 2
    assert {j.cost_usd for j in await store.jobs()} == {1.0}
    # A replace prices its job by the table again, in place: every job is read next time.
    await store.add_jobs([make_spec("j1", "another prompt")], replace=True)
    assert (await store.get("j1")).cost_usd == 3.2  # type: ignore[union-attr]
    assert await store.reprice(lambda m, p: price(1.0), prices_key="A") == 7
    assert (await store.get("j1")).cost_usd == 1.0  # type: ignore[union-attr]
    assert await store.reprice(lambda m, p: price(2.0), prices_key="B") == 7  # other prices
    assert await store.reprice(lambda m, p: price(2.0)) == 7  # no key: every job, always
    assert await store.reprice(lambda m, p: price(2.0), prices_key="B") == 7
    assert {j.cost_usd for j in await store.jobs()} == {2.0}
    assert (await store.costs())["b1"]["all_jobs"] == 14.0


def plan_of(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


async def test_a_restart_reads_nothing_in_proportion_to_the_table(
    store: Store, tmp_path: Path
) -> None:
    """A night half done, then a budgeted run to its end: every statement it runs finds
    its rows by an index (or reads the totals), none reads every job or every event."""
    await store.add_jobs(
        [make_spec(f"a{i:02d}") for i in range(12)] + [make_spec("c0", batch="capped")],
        budgets={"capped": 0.0},
    )
    await store.reprice(lambda model, params: 0.1, prices_key="dimes")
    for job in await store.claim_pending(6):
        await store.transition(job.id, S.SUBMITTING, S.RUNNING, operation=f"op-{job.id}")
        await store.transition(job.id, S.RUNNING, S.DONE)
    await store.claim_pending(2)  # left submitting by a run that died
    await store.transition("a07", S.SUBMITTING, S.PENDING, next_attempt_at=1.0)

    seen: list[str] = []
    await store._db.set_trace_callback(seen.append)
    try:
        assert await store.reprice(lambda model, params: 0.1, prices_key="dimes") == 0
        assert await store.routes_with_work() == [None]
        assert await store.last_submit_at() is not None
        async with fast_sim() as sim:
            result = await run_batch(store, sim, fast_config(tmp_path / "v", budget_usd=1.0))
    finally:
        await store._db.set_trace_callback(None)
    # $0.60 done and $0.10 interrupted (uncertain now) leave $0.30: three more of five.
    assert result.states["done"] == 9 and result.states["uncertain"] == 1
    assert result.over_budget == 3  # two over --budget, and the capped batch's one
    statements = {q.strip() for q in seen if q.lstrip()[:6].upper() in ("SELECT", "UPDATE")}
    assert len(statements) > 20
    finished = [f"'{s.value}'" for s in (S.DONE, S.FAILED, S.CANCELLED, S.EXPIRED)]
    with sqlite3.connect(store.path) as conn:
        for sql in statements:
            plan = plan_of(conn, sql)
            scans = [p for p in plan if p.startswith(("SCAN jobs", "SCAN events"))]
            assert not scans, (sql, plan)
            # Finished jobs are most of a big table: never read through the state index
            # (the committed cost of a budget is the totals' now).
            by_state = any("INDEX jobs_state" in p for p in plan)
            assert not (by_state and any(f in sql for f in finished)), (sql, plan)


def test_the_hot_queries_go_down_their_indexes(tmp_path: Path) -> None:
    """The claim, the due polls and the backoff reads, as the planner takes them."""
    import asyncio

    async def make() -> Path:
        async with await Store.open(tmp_path / "jobs.db") as store:
            await store.add_jobs([make_spec("a")])
        return tmp_path / "jobs.db"

    db = asyncio.run(make())
    from batchveo.store.budget import BudgetRoom

    fits, args = BudgetRoom(5.0, {"b1": 3.0}, {"b1": 1}).sql()
    queries = {
        "claim": (
            "UPDATE jobs SET state='submitting' WHERE id IN (SELECT id FROM jobs"
            f" WHERE state='pending' AND (next_attempt_at IS NULL OR next_attempt_at<=1){fits}"
            " ORDER BY rowid LIMIT 4)",
            args,
            ["SEARCH jobs USING INDEX jobs_state (state=?)"],
        ),
        "due polls": (
            "SELECT id FROM jobs WHERE state = 'running' AND next_poll_at<=1"
            " ORDER BY next_poll_at LIMIT 10",
            [],
            ["SEARCH jobs USING INDEX jobs_state (state=?)"],
        ),
        "backoff": (
            "SELECT MIN(next_attempt_at) FROM jobs INDEXED BY jobs_backoff"
            " WHERE state = 'pending' AND next_attempt_at IS NOT NULL",
            [],
            ["SEARCH jobs USING INDEX jobs_backoff"],
        ),
        "last submit": (
            "SELECT MAX(at) FROM events WHERE to_state = 'submitting'",
            [],
            ["SEARCH events USING INDEX events_submits"],
        ),
    }
    with sqlite3.connect(db) as conn:
        for name, (sql, sql_args, wanted) in queries.items():
            plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", sql_args)]
            for w in wanted:
                assert any(p.startswith(w) for p in plan), (name, plan)


async def test_new_prices_rewrite_the_jobs_of_the_shapes_they_change_and_read_none(
    store: Store,
) -> None:
    """A loaded night remembers its price shapes: new prices rewrite, in one statement, the
    jobs of each shape whose price changed (partly returned ones at what they returned),
    read no page of jobs, and leave the totals what counting the jobs says."""
    from batchveo.models import estimate_params_cost_usd
    from tests.test_totals import TRIPLE, VERTEX, assert_agree

    ga, hd = "veo-3.1-generate-001", {"durationSeconds": 8, "resolution": "1080p"}
    await store.add_jobs(
        [make_spec(f"t{i}", model=ga, params=TRIPLE, route=VERTEX) for i in range(3)]
        + [make_spec(f"h{i}", model=ga, params=hd, route=VERTEX) for i in range(2)]
    )
    claimed = await store.claim_pending(1)
    await store.transition(claimed[0].id, S.SUBMITTING, S.RUNNING, operation="op")
    await store.transition(claimed[0].id, S.RUNNING, S.DONE, samples_returned=1)

    def prices(usd_per_s: float) -> dict[str, dict[str, float]]:
        return {ga: {"720p": usd_per_s, "1080p": 0.4}}  # 1080p at the table's price

    pages: list[str] = []
    await store._db.set_trace_callback(
        lambda sql: pages.append(sql) if "LIMIT" in sql and "FROM jobs" in sql else None
    )
    try:
        cheap = prices(0.1)
        rewritten = await store.reprice(
            lambda m, p: estimate_params_cost_usd(m, p, cheap), prices_key="cheap"
        )
        again = await store.reprice(
            lambda m, p: estimate_params_cost_usd(m, p, cheap), prices_key="cheap"
        )
    finally:
        await store._db.set_trace_callback(None)
    assert (rewritten, again) == (3, 0)  # the three 720p jobs; the 1080p ones kept theirs
    assert pages and all("rowid > 0 " not in sql for sql in pages)  # none from the first
    costs = {j.id: round(j.cost_usd, 9) for j in await store.jobs()}
    assert costs[claimed[0].id] == 0.8  # one of the three videos it asked for: $0.10 x 8 s
    assert sorted(costs.values()) == [0.8, 2.4, 2.4, 3.2, 3.2]
    assert_agree(store.path)
    # A job loaded since is read (priced by the table, not by these prices), and only it.
    await store.add_jobs([make_spec("late", model=ga, params=TRIPLE, route=VERTEX)])
    assert (
        await store.reprice(lambda m, p: estimate_params_cost_usd(m, p, cheap), prices_key="cheap")
        == 1
    )
    assert round((await store.get("late")).cost_usd, 9) == 2.4  # type: ignore[union-attr]
    assert_agree(store.path)
