"""The store with routes and samples: migration 006, claims by route, partial results and
what they cost, budgets that count a Vertex job's videos."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from batchveo.errors import StoreError
from batchveo.models import estimate_params_cost_usd, parse_prices
from batchveo.routes import Route, resolve_route
from batchveo.states import JobState
from batchveo.store import Snapshot, Store
from batchveo.store.migrations import MIGRATIONS
from batchveo.store.routesql import route_filter
from tests.helpers import make_spec

S = JobState
GA = "veo-3.1-generate-001"
VERTEX_P1 = Route("vertex", "proj-one", "us-central1")
VERTEX_P2 = Route("vertex", "proj-two", "europe-west4", "gs://bkt/out/")
TRIPLE = {"durationSeconds": 8, "resolution": "720p", "sampleCount": 3}
"""Three videos with audio: 3 x 8 s x $0.40 = $9.60."""


def rows(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def running(store: Store, job_id: str, **claim: Any) -> None:
    """Claim ``job_id`` (it must be the next due one of its route) and mark it running."""
    [job] = await store.claim_pending(1, **claim)
    assert job.id == job_id
    await store.transition(job_id, S.SUBMITTING, S.RUNNING, operation=f"op-{job_id}")


# -- migration 006 -------------------------------------------------------------------------


async def test_a_database_of_the_previous_schema_gets_routes_and_samples(tmp_path: Path) -> None:
    """Rows written before routes keep everything, have no route (the run's), asked for one
    video each, and cost what they did; a run claims them by its own route."""
    db = tmp_path / "old.db"
    async with await Store.open(db, migrations=MIGRATIONS[:5]) as old:
        assert await old.applied_migrations() == [m.name for m in MIGRATIONS[:5]]
    with sqlite3.connect(db) as conn:  # what the previous add_jobs wrote
        conn.execute("INSERT INTO batches (name, created_at) VALUES ('night', 0)")
        conn.executemany(
            "INSERT INTO jobs (id, batch, state, spec_hash, prompt, model, params, inputs,"
            " output_name, source, cost_usd, created_at, updated_at)"
            " VALUES (?, 'night', ?, 'h', 'p', 'veo-3.1-generate-preview', '{}', '{}',"
            " NULL, 'n.yaml:1', ?, 0, 0)",
            [("a", "pending", 3.2), ("b", "done", 3.2)],
        )
    async with await Store.open(db) as store:
        assert "006_routes_and_samples" in await store.applied_migrations()
        a, b = await store.jobs()
        assert a.route is None and b.route is None
        assert (a.samples_requested, a.samples_returned, a.filtered_reasons) == (1, None, [])
        assert a.cost_usd == a.sample_cost_usd == 3.2
        assert await store.routes_with_work() == [None]
        assert await store.costs() == {
            "night": {"budget": None, "spent": 3.2, "committed": 3.2, "all_jobs": 6.4}
        }
        [claimed] = await store.claim_pending(5, route=Route("gptproto"))
        assert claimed.id == "a"
        # A done transition of an old row with a count of videos prices it as before.
        await store.transition("a", S.SUBMITTING, S.RUNNING, operation="op")
        done = await store.transition("a", S.RUNNING, S.DONE, samples_returned=1)
        assert done.cost_usd == 3.2


# -- loading: the route is stored, and a reload re-routes only what was never sent ------------


async def test_loading_stores_the_route_and_what_one_video_costs(store: Store) -> None:
    await store.add_jobs(
        [
            make_spec("v", model=GA, params=TRIPLE, route=VERTEX_P2),
            make_spec("g"),
        ]
    )
    v, g = await store.jobs()
    assert v.route == VERTEX_P2 and g.route is None
    assert (v.samples_requested, v.cost_usd, v.sample_cost_usd) == (3, 9.6, pytest.approx(3.2))
    assert v.spec().route == VERTEX_P2
    # Made whole with the run's route, as the client that sends it needs it.
    assert g.spec(default_route=Route("vertex", "run-proj")).route == Route(
        "vertex", "run-proj", "us-central1"
    )
    assert v.spec(default_route=Route("gemini")).route == VERTEX_P2


async def test_a_reload_reroutes_jobs_never_sent_and_only_those(store: Store) -> None:
    first = [make_spec(i, model=GA, route=VERTEX_P1) for i in ("sent", "waiting")]
    await store.add_jobs(first)
    await running(store, "sent")
    again = await store.add_jobs(
        [make_spec(i, model=GA, route=VERTEX_P2) for i in ("sent", "waiting")]
    )
    assert (again.new, again.existing, again.rerouted) == (0, 2, 1)
    sent, waiting = await store.jobs()
    assert sent.route == VERTEX_P1  # its operation lives there
    assert waiting.route == VERTEX_P2
    quiet = await store.add_jobs([make_spec("waiting", model=GA, route=VERTEX_P2)])
    assert (quiet.existing, quiet.rerouted) == (1, 0)


# -- claims by route -------------------------------------------------------------------------

ROUTED = [
    ("legacy", None),
    ("p1", VERTEX_P1),
    ("p1-partial", Route("vertex", "proj-one")),
    ("p2", VERTEX_P2),
    ("gemini", Route("gemini")),
    ("vertex-bare", Route("vertex")),
]


async def load_routed(store: Store) -> None:
    await store.add_jobs([make_spec(i, route=r) for i, r in ROUTED])


async def test_routes_with_work_are_the_stored_ones_or_made_whole(store: Store) -> None:
    await load_routed(store)
    assert await store.routes_with_work() == [
        None,
        Route("gemini"),
        Route("vertex"),
        Route("vertex", "proj-one"),
        VERTEX_P1,
        VERTEX_P2,
    ]
    # A run on Vertex in proj-one: the legacy job, the bare and partial ones are its own.
    run = Route("vertex", "proj-one")
    assert await store.routes_with_work(default_route=run) == [
        Route("gemini"),
        VERTEX_P1,
        VERTEX_P2,
    ]
    await store.cancel(["gemini"])
    assert Route("gemini") not in await store.routes_with_work()


async def test_a_claim_takes_only_its_routes_jobs_with_the_runs_default(store: Store) -> None:
    await load_routed(store)
    run = Route("vertex", "proj-one")
    mine = await store.claim_pending(10, route=VERTEX_P1, default_route=run)
    assert [j.id for j in mine] == ["legacy", "p1", "p1-partial", "vertex-bare"]
    assert [j.id for j in await store.claim_pending(10, route=VERTEX_P2, default_route=run)] == [
        "p2"
    ]
    assert await store.claim_pending(10, route=Route("gptproto"), default_route=run) == []
    assert [j.id for j in await store.claim_pending(10, route=Route("gemini"))] == ["gemini"]


async def test_without_a_default_a_job_without_route_goes_to_the_default_provider(
    store: Store,
) -> None:
    await load_routed(store)
    assert [j.id for j in await store.claim_pending(10, route=Route("gptproto"))] == ["legacy"]
    # A Vertex job left without a project: the run's project is None too.
    bare = await store.claim_pending(10, route=Route("vertex"))
    assert [j.id for j in bare] == ["vertex-bare"]
    # No route at all: any job, as before routes.
    assert len(await store.claim_pending(10)) == 4


def test_the_claim_filter_is_the_route_rule_itself() -> None:
    """Every stored route and run default: the SQL keeps a row exactly when
    ``resolve_route`` of its route is the claimed route made whole."""
    stored = [
        None,
        Route("gptproto"),
        Route("gemini"),
        Route("vertex"),
        Route("vertex", "proj-one"),
        Route("vertex", "proj-one", "global"),
        Route("vertex", None, "europe-west4"),
        Route("vertex", "proj-one", None, "gs://bkt/"),
        VERTEX_P1,
    ]
    defaults = [
        Route(),
        Route("gemini"),
        Route("vertex"),
        Route("vertex", "proj-one"),
        Route("vertex", "proj-two", "global", "gs://bkt/"),
        Route(None, "proj-one", "europe-west4"),
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE jobs (i INTEGER, provider TEXT, project TEXT, location TEXT,"
        " storage_uri TEXT)"
    )
    conn.executemany(
        "INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
        [(i, *(r or Route()).__dict__.values()) for i, r in enumerate(stored)],
    )
    for default, claimed in itertools.product(defaults, stored[1:]):  # None: no filter
        want = resolve_route(claimed, default)
        sql, args = route_filter(claimed, default)
        found = {i for (i,) in conn.execute(f"SELECT i FROM jobs WHERE 1{sql}", args)}
        expected = {i for i, r in enumerate(stored) if resolve_route(r, default) == want}
        assert found == expected, (default, claimed)


async def test_claims_of_several_routes_at_once_each_get_their_own(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "jobs.db") as store:
        await store.add_jobs(
            [make_spec(f"v{i}", route=VERTEX_P1) for i in range(3)]
            + [make_spec(f"g{i}") for i in range(3)]
        )
        before = store.grouped_batches
        async with store._lock:  # they all ask while another statement holds the connection
            asks = asyncio.gather(
                store.claim_pending(1, route=VERTEX_P1),
                store.claim_pending(1, route=Route("gptproto")),
                store.claim_pending(1, route=VERTEX_P1),
                store.claim_pending(5, route=Route("gptproto")),
            )
            await turns()
        got = await asks
    assert store.grouped_batches == before + 1  # one flush, one UPDATE per route
    assert [[j.id for j in c] for c in got] == [["v0"], ["g0"], ["v1"], ["g1", "g2"]]


async def test_a_routes_claim_cancelled_before_it_is_made_claims_nothing(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "jobs.db") as store:
        await store.add_jobs([make_spec("a", route=VERTEX_P1), make_spec("b", route=VERTEX_P1)])
        await store.claim_pending(1, route=VERTEX_P1)
        async with store._lock:
            doomed = asyncio.create_task(store.claim_pending(1, route=VERTEX_P1))
            await turns()
            doomed.cancel()
            await turns()
    assert doomed.cancelled()
    assert rows(tmp_path / "jobs.db", "SELECT id, state, attempts FROM jobs ORDER BY id") == [
        ("a", "submitting", 1),
        ("b", "pending", 0),
    ]


async def test_a_claim_by_route_is_still_found_through_an_index(store: Store) -> None:
    """The claim's own walk, as SQLite ran it, is planned through the state index, from
    its start on (``claimmarks``)."""
    await load_routed(store)
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    [job] = await store.claim_pending(1, route=VERTEX_P2, default_route=Route("vertex"))
    await store._db.set_trace_callback(None)
    assert job.id == "p2"
    claim = next(s for s in statements if s.startswith("SELECT rowid FROM jobs WHERE state="))
    assert "COALESCE(storage_uri" in claim
    plan = " ".join(r[-1] for r in rows(store.path, "EXPLAIN QUERY PLAN " + claim))
    assert "INDEX jobs_state (state=? AND rowid>?)" in plan, plan
    assert "SCAN jobs" not in plan, plan


# -- partial results: the store counts the videos returned ------------------------------------


async def test_a_partly_filtered_done_job_costs_the_videos_it_returned(store: Store) -> None:
    await store.add_jobs([make_spec("v", model=GA, params=TRIPLE, route=VERTEX_P1)])
    await running(store, "v")
    done = await store.transition(
        "v",
        S.RUNNING,
        S.DONE,
        files=[{"path": "v_1.mp4"}, {"path": "v_2.mp4"}],
        samples_returned=2,
        samples_filtered=1,
        filtered_reasons=["58061214"],
        finished_at=5.0,
    )
    assert (done.samples_requested, done.samples_returned, done.samples_filtered) == (3, 2, 1)
    assert done.filtered_reasons == ["58061214"] and done.partly_filtered
    assert done.cost_usd == pytest.approx(6.4)  # 2 of 3 videos at $3.20
    assert (await store.costs())["b1"]["spent"] == pytest.approx(6.4)
    assert rows(store.path, "SELECT cost_usd, filtered_reasons FROM jobs") == [
        (pytest.approx(6.4), '["58061214"]')
    ]


async def test_grouped_and_two_step_answers_count_the_same(store: Store) -> None:
    """Several transitions at once share one UPDATE; a generated job carries its count on
    to done; the same count again changes nothing."""
    await store.add_jobs([make_spec(i, model=GA, params=TRIPLE) for i in ("a", "b", "c")])
    for i in ("a", "b", "c"):
        await running(store, i)
    before = store.grouped_batches
    async with store._lock:
        writes = asyncio.gather(
            store.transition(
                "a", S.RUNNING, S.GENERATED, video_uris=["gs://x/1"], samples_returned=1
            ),
            store.transition("b", S.RUNNING, S.DONE, samples_returned=3, samples_filtered=0),
            store.transition("c", S.RUNNING, S.GENERATED, video_uris=["gs://x/2"]),
        )
        await turns()
    a, b, c = await writes
    assert store.grouped_batches == before + 1
    assert (a.cost_usd, b.cost_usd, c.cost_usd) == (pytest.approx(3.2), 9.6, 9.6)
    a = await store.transition("a", S.GENERATED, S.DONE, files=[{"path": "a.mp4"}])
    assert a.cost_usd == pytest.approx(3.2)
    a = await store.update("a", S.DONE, samples_returned=1)
    assert a.cost_usd == pytest.approx(3.2)


async def test_all_filtered_costs_nothing_and_a_retry_asks_for_every_video_again(
    store: Store,
) -> None:
    await store.add_jobs([make_spec("v", model=GA, params=TRIPLE)])
    await running(store, "v")
    failed = await store.transition(
        "v",
        S.RUNNING,
        S.FAILED,
        error_kind="filtered",
        error="blocked",
        samples_returned=0,
        samples_filtered=3,
        filtered_reasons=["a", "b"],
    )
    assert failed.cost_usd == 0
    assert await store.requeue([S.FAILED]) == ["v"]
    again = await store.get("v")
    assert again is not None and again.state is S.PENDING
    assert (again.samples_returned, again.samples_filtered, again.filtered_reasons) == (
        None,
        None,
        [],
    )
    assert again.cost_usd == 9.6  # what a budget must hold for the next try


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"samples_returned": -1}, "samples_returned must be a count of videos"),
        ({"samples_filtered": "2"}, "samples_filtered must be a count of videos"),
        ({"samples_returned": True}, "samples_returned must be a count of videos"),
        ({"filtered_reasons": "x"}, "filtered_reasons must be a list of texts"),
        ({"samples_requested": 2}, "not an updatable column: samples_requested"),
        ({"cost_usd": 0}, "not an updatable column: cost_usd"),
    ],
)
async def test_sample_fields_are_checked(
    store: Store, fields: dict[str, Any], message: str
) -> None:
    await store.add_jobs([make_spec("v")])
    await running(store, "v")
    with pytest.raises(StoreError, match=message):
        await store.transition("v", S.RUNNING, S.DONE, **fields)


# -- budgets and prices count a Vertex job's videos and audio ----------------------------------


async def test_budgets_count_every_video_asked_then_only_those_returned(store: Store) -> None:
    silent = {**TRIPLE, "generateAudio": False}  # 3 x 8 s x $0.20 = $4.80
    spec = make_spec("v", model=GA, params=silent, route=VERTEX_P1)
    assert spec.cost_usd == pytest.approx(4.8)
    await store.add_jobs([spec, make_spec("w", model=GA, params=silent, route=VERTEX_P1)])
    assert await store.claim_pending(1, budget_usd=4.0) == []
    assert await store.claimable_pending(budget_usd=4.0, route=VERTEX_P1) == (0, 2)
    await running(store, "v", budget_usd=5.0)
    assert await store.claimable_pending(budget_usd=8.0) == (0, 1)  # 4.80 committed
    await store.transition("v", S.RUNNING, S.DONE, samples_returned=1, samples_filtered=2)
    # One video of three came back: $1.60 is spent, and the second job fits now.
    assert await store.claimable_pending(budget_usd=8.0) == (1, 0)
    assert await store.next_attempt_at(budget_usd=8.0, route=VERTEX_P1) == 0
    assert await store.next_attempt_at(budget_usd=8.0, route=Route("gemini")) is None


async def test_repricing_keeps_a_partial_job_at_the_videos_it_returned(store: Store) -> None:
    await store.add_jobs(
        [make_spec("v", model=GA, params=TRIPLE), make_spec("w", model=GA, params=TRIPLE)]
    )
    await running(store, "v")
    await store.transition("v", S.RUNNING, S.DONE, samples_returned=2)
    prices = parse_prices({GA: 1.0}, "p.yaml")
    await store.reprice(lambda m, p: estimate_params_cost_usd(m, p, prices))
    v, w = await store.jobs()
    assert (v.cost_usd, v.sample_cost_usd) == (16.0, 8.0)  # 2 of 3 videos at 8 s x $1
    assert w.cost_usd == 24.0
    # plan --prices reads the same from a snapshot.
    with Snapshot.open(store.path) as snap:
        assert snap is not None
        priced = snap.committed_micro_usd(
            [S.DONE, S.PENDING], lambda m, p: estimate_params_cost_usd(m, p, prices)
        )
        assert priced == {"b1": (16 + 24) * 1_000_000}
        assert snap.committed_micro_usd([S.DONE]) == {"b1": 16_000_000}
