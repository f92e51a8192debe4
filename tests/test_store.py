"""The job store: guarded transitions, atomic claims, idempotent loading, migrations."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sqlite3
import threading
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

import batchveo.store.claims as store_claims
from batchveo.errors import (
    DatabaseUnusable,
    IllegalTransition,
    ManifestError,
    StaleTransition,
    StoreError,
)
from batchveo.states import TRANSITIONS, JobState
from batchveo.store import (
    BudgetRoom,
    Job,
    Snapshot,
    Store,
    Transition,
    TransitionEvent,
    micro_usd,
)
from batchveo.store.migrations import MIGRATIONS
from tests.helpers import make_spec

S = JobState


async def turns(n: int = 5) -> None:
    """Let the tasks just created run up to their first real wait."""
    for _ in range(n):
        await asyncio.sleep(0)


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def test_add_is_idempotent_and_counts_what_is_new(store: Store) -> None:
    specs = [make_spec(f"j{i}") for i in range(5)]
    first = await store.add_jobs(specs)
    again = await store.add_jobs(specs)
    assert (first.new, first.existing) == (5, 0)
    assert (again.new, again.existing) == (0, 5)
    assert rows(store.path, "SELECT COUNT(*) FROM jobs") == [(5,)]
    assert await store.counts() == {"b1": {"pending": 5}}


async def test_a_job_is_stored_with_its_specs_estimated_cost(store: Store) -> None:
    # The store prices nothing: the cost comes with the spec, from the price table.
    fast_4k = make_spec("a", model="veo-3.1-fast-generate-preview", params={"resolution": "4k"})
    plain = make_spec("b", params={"durationSeconds": 4, "sampleCount": 2})
    await store.add_jobs([fast_4k, plain])
    assert fast_4k.cost_usd == pytest.approx(0.35 * 8) and plain.cost_usd == pytest.approx(3.2)
    assert [j.cost_usd for j in await store.jobs()] == [fast_4k.cost_usd, plain.cost_usd]


async def test_same_id_with_another_spec_is_refused_naming_both_places(store: Store) -> None:
    await store.add_jobs([make_spec("intro", "a cat", source="night1.yaml:3")])
    with pytest.raises(ManifestError) as err:
        await store.add_jobs(
            [
                make_spec("new", source="night2.yaml:2"),
                make_spec("intro", "a dog", source="night2.yaml:7"),
            ]
        )
    msg = str(err.value)
    assert "night2.yaml:7, job intro" in msg and "night1.yaml:3" in msg and "--replace" in msg
    # All or nothing: the valid job of the refused load was not written either.
    assert rows(store.path, "SELECT id FROM jobs") == [("intro",)]


async def test_replace_only_while_not_submitted(store: Store) -> None:
    await store.add_jobs([make_spec("a", "old"), make_spec("b", "old")])
    await store.claim_pending(1)  # a -> submitting
    with pytest.raises(ManifestError, match="job a: cannot replace: already submitted"):
        await store.add_jobs([make_spec("a", "new"), make_spec("b", "new")], replace=True)
    heard: list[TransitionEvent] = []
    store.observers.append(heard.append)
    result = await store.add_jobs([make_spec("b", "new", source="night2.yaml:4")], replace=True)
    assert result.replaced == 1
    job = await store.get("b")
    assert job is not None and job.prompt == "new" and job.state is S.PENDING
    # A pending job replaced stays pending: no state changed, so no transition is logged
    # (pending -> pending is not in the table); its history names the manifest it is from now.
    assert await store.events("b") == [] and heard == []
    assert [(e.to_state, e.detail) for e in await store.history(job)] == [
        ("pending", "loaded from night2.yaml:4")
    ]


async def test_replacing_a_cancelled_job_brings_it_back_as_a_logged_transition(
    store: Store,
) -> None:
    await store.add_jobs([make_spec("a", "old")])
    await store.cancel(["a"])
    heard: list[tuple[str, str, str | None]] = []
    store.observers.append(lambda e: heard.append((e.from_state, e.to_state, e.detail)))
    await store.add_jobs([make_spec("a", "new", source="night2.yaml:2")], replace=True)
    job = await store.get("a")
    assert job is not None and job.state is S.PENDING and job.prompt == "new"
    back = ("cancelled", "pending", "replaced from night2.yaml:2")
    assert [(e.from_state, e.to_state, e.detail) for e in await store.events("a")][-1] == back
    assert heard == [back]


def _forbid(monkeypatch: pytest.MonkeyPatch, src: JobState, dst: JobState) -> None:
    """Take one edge out of the state table, as if it had never been allowed."""
    monkeypatch.setitem(TRANSITIONS, src, TRANSITIONS[src] - {dst})


async def test_a_claim_obeys_the_state_table(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await store.add_jobs([make_spec("a")])
    _forbid(monkeypatch, S.PENDING, S.SUBMITTING)
    with pytest.raises(IllegalTransition, match="pending -> submitting"):
        await store.claim_pending(1)
    assert rows(store.path, "SELECT state, attempts FROM jobs") == [("pending", 0)]
    assert rows(store.path, "SELECT COUNT(*) FROM events") == [(0,)]


async def test_replacing_a_cancelled_job_obeys_the_state_table(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.add_jobs([make_spec("a", "old")])
    await store.cancel(["a"])
    _forbid(monkeypatch, S.CANCELLED, S.PENDING)
    with pytest.raises(IllegalTransition, match="cancelled -> pending"):
        await store.add_jobs([make_spec("a", "new")], replace=True)
    assert rows(store.path, "SELECT state, prompt FROM jobs") == [("cancelled", "old")]


async def test_transition_is_guarded_and_logged(store: Store) -> None:
    await store.add_jobs([make_spec("a")])
    [job] = await store.claim_pending(5)
    assert job.state is S.SUBMITTING and job.attempts == 1
    job = await store.transition("a", S.SUBMITTING, S.RUNNING, operation="operations/x")
    assert job.operation == "operations/x"
    with pytest.raises(StaleTransition, match=r"expected state submitting.*it is running"):
        await store.transition("a", S.SUBMITTING, S.RUNNING)
    with pytest.raises(IllegalTransition):
        await store.transition("a", S.RUNNING, S.PENDING)
    with pytest.raises(StaleTransition, match="no such job"):
        await store.transition("zzz", S.RUNNING, S.GENERATED)
    job = await store.get("a")
    assert job is not None
    history = [(e.from_state, e.to_state, e.attempt) for e in await store.history(job)]
    assert history == [
        (None, "pending", 0),
        ("pending", "submitting", 1),
        ("submitting", "running", 1),
    ]
    assert (await store.history(job))[0].detail == "loaded from jobs.yaml:a"


async def test_apply_is_all_or_nothing(store: Store) -> None:
    await store.add_jobs([make_spec("a"), make_spec("b")])
    await store.claim_pending(2)
    with pytest.raises(StaleTransition):
        await store.apply(
            [
                Transition("a", S.SUBMITTING, S.RUNNING, {"operation": "op-a"}),
                Transition("b", S.RUNNING, S.GENERATED),  # b is submitting: refused
            ]
        )
    a = await store.get("a")
    assert a is not None and a.state is S.SUBMITTING and a.operation is None


async def test_only_known_columns_can_be_written(store: Store) -> None:
    await store.add_jobs([make_spec("a")])
    with pytest.raises(StoreError, match="not an updatable column: prompt"):
        await store.update("a", S.PENDING, prompt="sneaky")


async def test_claims_are_oldest_first_and_respect_backoff(store: Store) -> None:
    await store.add_jobs([make_spec(f"j{i}") for i in range(4)])
    [first] = await store.claim_pending(1)
    assert first.id == "j0"
    await store.transition("j0", S.SUBMITTING, S.PENDING, next_attempt_at=store.clock() + 3600)
    claimed = await store.claim_pending(10)
    assert [j.id for j in claimed] == ["j1", "j2", "j3"]
    assert await store.claim_pending(10) == []  # j0 is backing off


async def test_concurrent_coroutine_claims_never_share_a_job(store: Store) -> None:
    await store.add_jobs([make_spec(f"j{i}") for i in range(200)])
    results = await asyncio.gather(*(store.claim_pending(7) for _ in range(40)))
    ids = [j.id for batch in results for j in batch]
    assert len(ids) == len(set(ids)) == 200


def _claim_all_in_process(db: str, out: mp.Queue[list[str]]) -> None:
    async def main() -> list[str]:
        got: list[str] = []
        async with await Store.open(db) as s:
            while batch := await s.claim_pending(3):
                got.extend(j.id for j in batch)
        return got

    out.put(asyncio.run(main()))


async def test_concurrent_processes_never_claim_the_same_job(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    async with await Store.open(db) as s:
        await s.add_jobs([make_spec(f"j{i}") for i in range(300)])
    ctx = mp.get_context("spawn")
    q: mp.Queue[list[str]] = ctx.Queue()
    procs = [ctx.Process(target=_claim_all_in_process, args=(str(db), q)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [await asyncio.to_thread(q.get, True, 60) for _ in procs]
    for p in procs:
        p.join(30)
    ids = [i for chunk in claimed for i in chunk]
    assert len(ids) == len(set(ids)) == 300


async def test_interrupted_submits_become_uncertain_not_pending(store: Store) -> None:
    await store.add_jobs([make_spec("a"), make_spec("b")])
    await store.claim_pending(1)
    assert await store.recover_interrupted() == ["a"]
    a = await store.get("a")
    assert a is not None and a.state is S.UNCERTAIN and a.error_kind == "interrupted"
    assert await store.requeue([S.UNCERTAIN]) == ["a"]
    a = await store.get("a")
    assert a is not None and a.state is S.PENDING and a.attempts == 0


async def test_cancel_touches_pending_jobs_only(store: Store) -> None:
    await store.add_jobs([make_spec("a"), make_spec("b"), make_spec("c", batch="b2")])
    await store.claim_pending(1)
    assert await store.cancel() == ["b", "c"]
    assert await store.counts() == {"b1": {"submitting": 1, "cancelled": 1}, "b2": {"cancelled": 1}}


async def test_migrations_from_an_empty_file(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    async with await Store.open(db) as s:
        assert await s.applied_migrations() == [m.name for m in MIGRATIONS]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]


async def test_migrations_upgrade_the_previous_schema_keeping_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    # A database written by the previous schema: only the first migration applied.
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0].sql)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    conn.execute("INSERT INTO _migrations VALUES (?, 0)", (MIGRATIONS[0].name,))
    conn.execute("INSERT INTO batches VALUES ('old', 0, 'old.yaml')")
    conn.execute(
        "INSERT INTO jobs (id, batch, state, spec_hash, prompt, model, params, inputs,"
        " created_at, updated_at)"
        " VALUES ('keep', 'old', 'running', 'h', 'p', 'm', '{}', '{}', 0, 0)"
    )
    conn.commit()
    conn.close()
    async with await Store.open(db) as s:
        assert await s.applied_migrations() == [m.name for m in MIGRATIONS]
        job = await s.get("keep")
        assert job is not None and job.state is S.RUNNING
        # The upgraded schema works: the event log exists now.
        await s.update("keep", S.RUNNING, next_poll_at=1.0)
        await s.transition("keep", S.RUNNING, S.GENERATED)
        assert [e.to_state for e in await s.events("keep")] == ["generated"]


def _open_fresh_databases_in_step(
    dbs: list[str], start: Barrier, out: mp.Queue[list[str | None]]
) -> None:
    async def open_one(db: str) -> str | None:
        try:
            async with await Store.open(db):
                return None
        except StoreError as e:
            return str(e)

    errors = []
    for db in dbs:
        start.wait()  # every process opens the same fresh file at the same moment
        errors.append(asyncio.run(open_one(db)))
    out.put(errors)


async def test_processes_opening_a_fresh_database_together_set_it_up_once(tmp_path: Path) -> None:
    # `run` from cron and `status` from a shell, say, on a database that does not exist
    # yet: each must see the other's migrations, never apply one twice ("table exists").
    dbs = [str(tmp_path / f"fresh{i}.db") for i in range(6)]
    ctx = mp.get_context("spawn")
    n = 3
    start, q = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_open_fresh_databases_in_step, args=(dbs, start, q)) for _ in range(n)
    ]
    for p in procs:
        p.start()
    results = [await asyncio.to_thread(q.get, True, 60) for _ in procs]
    for p in procs:
        p.join(30)
    assert [e for errors in results for e in errors if e is not None] == []
    for db in dbs:
        applied = rows(Path(db), "SELECT name FROM _migrations ORDER BY name")
        assert applied == [(m.name,) for m in MIGRATIONS]


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    async with await Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO _migrations VALUES ('999_future', 0)")
    with pytest.raises(StoreError, match=r"newer batchveo.*999_future"):
        await Store.open(db)


async def test_observers_hear_every_committed_transition_and_no_refused_one(store: Store) -> None:
    heard: list[tuple[str, str, str, int]] = []
    store.observers.append(lambda e: heard.append((e.job_id, e.from_state, e.to_state, e.attempt)))
    await store.add_jobs([make_spec("a")])
    await store.claim_pending(1)
    await store.transition("a", S.SUBMITTING, S.RUNNING, operation="op")
    with pytest.raises(StaleTransition):
        await store.transition("a", S.SUBMITTING, S.RUNNING)
    assert heard == [("a", "pending", "submitting", 1), ("a", "submitting", "running", 1)]


async def test_a_file_that_is_not_a_database_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match=r"notes\.db: not a usable batchveo database"):
        await Store.open(bad)
    assert bad.read_text().startswith("these are my notes")


async def test_concurrent_transitions_share_statements_each_with_its_own_fields(
    tmp_path: Path,
) -> None:
    # Transitions asked for while another statement holds the connection wait for it,
    # then share one statement.
    async with await Store.open(tmp_path / "jobs.db") as store:
        await store.add_jobs([make_spec(f"j{i}") for i in range(6)])
        await store.claim_pending(6)
        await store.transition("j0", S.SUBMITTING, S.RUNNING, operation="op0")
        before = store.grouped_batches
        moves = [
            store.transition("j1", S.SUBMITTING, S.RUNNING, operation="op1", detail="op1"),
            store.transition(
                "j2", S.SUBMITTING, S.FAILED, error_kind="bad_request", error="no", detail="no"
            ),
            store.transition("j3", S.SUBMITTING, S.PENDING, next_attempt_at=5.0, attempts=0),
            store.transition("j4", S.RUNNING, S.GENERATED),  # j4 is submitting: refused
            store.transition("j0", S.RUNNING, S.GENERATED, video_uris=["u0"], polls=1),
        ]
        async with store._lock:
            task = asyncio.gather(*moves, return_exceptions=True)
            await turns()
        results = await task
    assert store.grouped_batches == before + 1
    assert isinstance(results[3], StaleTransition) and "it is submitting" in str(results[3])
    got = rows(
        tmp_path / "jobs.db",
        "SELECT id, state, operation, error_kind, error, attempts, next_attempt_at, video_uris,"
        " polls FROM jobs ORDER BY id",
    )
    assert got == [
        ("j0", "generated", "op0", None, None, 1, None, '["u0"]', 1),
        ("j1", "running", "op1", None, None, 1, None, None, 0),
        ("j2", "failed", None, "bad_request", "no", 1, None, None, 0),
        ("j3", "pending", None, None, None, 0, 5.0, None, 0),
        ("j4", "submitting", None, None, None, 1, None, None, 0),
        ("j5", "submitting", None, None, None, 1, None, None, 0),
    ]
    events = rows(
        tmp_path / "jobs.db",
        "SELECT job_id, from_state, to_state, detail FROM events"
        " WHERE from_state != 'pending' ORDER BY seq",
    )
    assert sorted(events) == [
        ("j0", "running", "generated", None),
        ("j0", "submitting", "running", None),
        ("j1", "submitting", "running", "op1"),
        ("j2", "submitting", "failed", "no"),
        ("j3", "submitting", "pending", None),
    ]


async def test_waiting_submitters_share_one_claim_oldest_job_to_the_first(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "jobs.db") as store:
        await store.add_jobs([make_spec(f"j{i}") for i in range(5)])
        [first] = await store.claim_pending(1)
        before = store.grouped_batches
        async with store._lock:  # they all ask while another statement holds the connection
            asks = asyncio.gather(*(store.claim_pending(1) for _ in range(6)))
            await turns()
        got = await asks
    assert first.id == "j0" and store.grouped_batches == before + 1
    assert [[j.id for j in c] for c in got] == [["j1"], ["j2"], ["j3"], ["j4"], [], []]
    assert rows(tmp_path / "jobs.db", "SELECT COUNT(*) FROM jobs WHERE state='submitting'") == [
        (5,)
    ]


async def test_a_claim_whose_submitter_is_cancelled_leaves_the_job_pending(
    tmp_path: Path,
) -> None:
    # Cancelled (a second Ctrl-C) before its claim is made: nothing will be sent, so
    # nothing is claimed (a job left `submitting` would be called uncertain next run).
    async with await Store.open(tmp_path / "jobs.db") as store:
        await store.add_jobs([make_spec("a"), make_spec("b")])
        await store.claim_pending(1)
        async with store._lock:  # the connection is busy: the claim waits its turn
            doomed = asyncio.create_task(store.claim_pending(1))
            await turns()
            doomed.cancel()
            await turns()
    assert doomed.cancelled()
    assert rows(tmp_path / "jobs.db", "SELECT id, state, attempts FROM jobs ORDER BY id") == [
        ("a", "submitting", 1),
        ("b", "pending", 0),
    ]
    assert rows(tmp_path / "jobs.db", "SELECT COUNT(*) FROM events WHERE job_id='b'") == [(0,)]


async def test_a_claim_made_for_a_submitter_cancelled_meanwhile_is_handed_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Store.open(tmp_path / "jobs.db") as store:
        await store.add_jobs([make_spec("a"), make_spec("b")])
        committed, release = asyncio.Event(), asyncio.Event()
        take = store_claims.Claims._take_committed

        async def take_then_wait(self: store_claims.Claims, *args: Any) -> list[Job]:
            jobs = await take(self, *args)
            committed.set()
            await release.wait()  # the claim is in the database; the caller leaves now
            return jobs

        monkeypatch.setattr(store_claims.Claims, "_take_committed", take_then_wait)
        doomed = asyncio.create_task(store.claim_pending(1))
        await committed.wait()
        assert rows(store.path, "SELECT state FROM jobs WHERE id='a'") == [("submitting",)]
        doomed.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await doomed
    assert rows(tmp_path / "jobs.db", "SELECT id, state, attempts FROM jobs ORDER BY id") == [
        ("a", "pending", 0),
        ("b", "pending", 0),
    ]
    last = rows(tmp_path / "jobs.db", "SELECT from_state, to_state, detail FROM events")[-1]
    assert last == ("submitting", "pending", "claimed as the run stopped; not sent")


@pytest.mark.parametrize("budget_usd", [None, 100.0], ids=["no budget", "--budget"])
async def test_a_claim_cancelled_between_its_commit_and_its_use_is_handed_back(
    tmp_path: Path, budget_usd: float | None
) -> None:
    # The stop lands in the loop turn between the claim's result and the submitter
    # resuming (a signal handler's callback already queued): the job is not sent.
    loop = asyncio.get_running_loop()
    async with await Store.open(tmp_path / "jobs.db") as store:
        await store.add_jobs([make_spec("a"), make_spec("b")])
        tasks: list[asyncio.Task[list[Job]]] = []
        store.observers.append(lambda e: loop.call_soon(tasks[0].cancel))
        tasks.append(asyncio.create_task(store.claim_pending(1, budget_usd=budget_usd)))
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
    assert rows(tmp_path / "jobs.db", "SELECT id, state, attempts FROM jobs ORDER BY id") == [
        ("a", "pending", 0),
        ("b", "pending", 0),
    ]


async def test_a_claim_handed_back_obeys_the_state_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were submitting -> pending not in the table, a claim nobody will send would stay
    # submitting (the next run calls it uncertain): never moved along an edge the table lacks.
    loop = asyncio.get_running_loop()
    _forbid(monkeypatch, S.SUBMITTING, S.PENDING)
    with pytest.raises(IllegalTransition, match="submitting -> pending"):
        async with await Store.open(tmp_path / "jobs.db") as store:
            await store.add_jobs([make_spec("a")])
            tasks: list[asyncio.Task[list[Job]]] = []
            store.observers.append(lambda e: loop.call_soon(tasks[0].cancel))
            tasks.append(asyncio.create_task(store.claim_pending(1)))
            await tasks[0]
    assert rows(tmp_path / "jobs.db", "SELECT id, state, attempts FROM jobs") == [
        ("a", "submitting", 1)
    ]


async def test_every_commit_reaches_the_disk_before_the_caller_goes_on(store: Store) -> None:
    # synchronous=FULL: a power cut after a claim's request left must not bring the
    # job back as pending (it would be sent and paid for again).
    assert await store._scalar("PRAGMA synchronous") == 2
    assert await store._scalar("PRAGMA journal_mode") == "wal"


async def test_an_sqlite_too_old_for_returning_is_named_not_a_syntax_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"needs SQLite 3\.35\.0 or newer.*has 3\.31\.1"):
        await Store.open(tmp_path / "jobs.db")
    assert not (tmp_path / "jobs.db").exists()


def test_the_budget_rule_is_one_rule_for_the_claims_filter_and_the_plan() -> None:
    # --budget $5 with $1.50 committed in all; batch b capped at $3 with $1 committed.
    room = BudgetRoom(5.0, {"b": 3.0}, {"b": 1_000_000, "c": 500_000})  # micro-dollars
    jobs = [("b", 2.0), ("b", 2.01), ("c", 3.5), ("c", 3.51), ("d", 3.5), ("b", 0.0)]
    verdicts = [None, "batch", None, "budget", None, None]
    assert [room.blocking(batch, usd) for batch, usd in jobs] == verdicts
    # The claim's SQL filter keeps exactly the rows the plan lets through.
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE jobs (batch TEXT, cost_usd REAL)")
        conn.executemany("INSERT INTO jobs VALUES (?, ?)", jobs)
        fits, args = room.sql()
        kept = conn.execute(f"SELECT rowid FROM jobs WHERE 1{fits} ORDER BY rowid", args)
        assert [r for (r,) in kept] == [i + 1 for i, v in enumerate(verdicts) if v is None]
    room.spend("b", 2.0)  # a claim commits its cost against both budgets
    assert room.blocking("b", 0.01) == "batch" and room.blocking("c", 1.5) is None
    assert room.blocking("c", 1.51) == "budget"
    # Sums that reach a budget exactly still fit it (0.1 + 0.1 + 0.1 > 0.3 in floats),
    # and a micro-dollar more does not.
    exact = BudgetRoom(0.3, {"x": 0.3}, {})
    for _ in range(3):
        assert exact.blocking("x", 0.1) is None
        exact.spend("x", 0.1)
    assert exact.committed_micro_usd == {"x": 300_000}
    assert exact.blocking("x", 0.0) is None and exact.blocking("x", 0.000001) == "budget"
    assert micro_usd(1.2) == 1_200_000 and micro_usd(0.0000005) == 1


async def test_a_snapshot_reads_what_the_store_holds_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with Snapshot.open(db) as snap:
        assert snap is None
    assert not db.exists()  # `plan` before any load creates no database
    async with await Store.open(db) as store:
        await store.add_jobs(
            [make_spec("a"), make_spec("b", batch="b2"), make_spec("c")], budgets={"b2": 5.0}
        )
        await store.claim_pending(1)  # a: its $3.20 is committed now
    before = db.read_bytes()
    with Snapshot.open(db) as snap:
        assert snap is not None
        assert [(j.id, j.batch, j.cost_usd) for j in snap.costed([S.PENDING])] == [
            ("b", "b2", pytest.approx(3.2)),
            ("c", "b1", pytest.approx(3.2)),
        ]
        assert snap.states_of(["a", "c", "zzz"]) == {"a": S.SUBMITTING, "c": S.PENDING}
        assert snap.caps() == {"b2": 5.0}
        assert snap.committed_micro_usd() == {"b1": 3_200_000}
        assert snap.committed_micro_usd(cost_of=lambda model, params: 1.0) == {"b1": 1_000_000}
    assert db.read_bytes() == before


def _aiosqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


def test_a_database_that_cannot_be_opened_leaves_no_thread_behind(tmp_path: Path) -> None:
    # aiosqlite's worker thread of a connection that failed to open posts its last answer
    # to the loop; were it still running when asyncio.run closes the loop, it would raise
    # "Event loop is closed" in that thread (a flake under load, after --db nodir/x.db).
    before = set(_aiosqlite_threads())

    async def go() -> None:
        with pytest.raises(DatabaseUnusable, match="unable to open"):
            await Store.open(tmp_path / "nodir" / "jobs.db")
        assert set(_aiosqlite_threads()) <= before  # ended before open() raised

    asyncio.run(go())


async def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path: Path) -> None:
    # A COMMIT refused (here a deferred foreign key, checked at COMMIT: the same path as a
    # disk that refuses the write) must roll the transaction back, so the next one begins.
    import aiosqlite

    from batchveo.store.db import immediate

    async with aiosqlite.connect(tmp_path / "t.db", isolation_level=None) as db:
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        await db.execute(
            "CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"
        )
        with pytest.raises(sqlite3.IntegrityError):
            async with immediate(db):
                await db.execute("INSERT INTO c VALUES (7)")  # no parent: refused at COMMIT
        assert not db.in_transaction
        async with immediate(db):
            await db.execute("INSERT INTO p VALUES (7)")
        assert [r async for r in await db.execute("SELECT COUNT(*) FROM c")] == [(0,)]
