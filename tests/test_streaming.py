"""Reading every job one at a time (``export``, the report): of one moment, in load order.

``Snapshot`` reads on a connection of its own: a run writing meanwhile (here the store's
own connection) neither waits for it nor shows up half-way through what it reads.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from batchveo.cli import main
from batchveo.states import JobState
from batchveo.store import Snapshot, Store
from tests.helpers import make_spec

S = JobState


async def test_a_stream_reads_one_moment_while_the_store_writes(store: Store) -> None:
    await store.add_jobs([make_spec(f"j{i}") for i in range(5)])
    with Snapshot.open(store.path) as snap:
        assert snap is not None
        with snap.one_moment():
            assert snap.batch_jobs() == {"b1": 5}
            rows = snap.rows(["id", "state", "params"])
            first = next(rows)
            await store.cancel(["j1", "j4"])  # committed while the stream is half-way
            await store.add_jobs([make_spec("late")])
            rest = list(rows)
            assert snap.batch_jobs() == {"b1": 5}  # the same moment
    assert [r["id"] for r in [first, *rest]] == [f"j{i}" for i in range(5)]
    assert {r["state"] for r in [first, *rest]} == {"pending"}
    assert first["params"]["durationSeconds"] == 8  # JSON columns decoded
    assert {j.id: j.state for j in await store.jobs()}["j4"] is S.CANCELLED


def test_export_filters_by_state_and_batch_in_load_order(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"

    async def night() -> None:
        async with await Store.open(db) as store:
            specs = [make_spec("a"), make_spec("b", batch="b2"), make_spec("c")]
            await store.add_jobs([*specs, make_spec("d", batch="b2")])
            await store.cancel(["c", "d"])

    asyncio.run(night())

    def ids(*args: str) -> list[str]:
        result = CliRunner().invoke(main, ["export", "--db", str(db), *args])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["id"] for line in result.stdout.splitlines()]

    assert ids() == ["a", "b", "c", "d"]
    assert ids("--state", "cancelled") == ["c", "d"]
    assert ids("--batch", "b2") == ["b", "d"]
    assert ids("--batch", "b2", "--state", "pending", "--state", "cancelled") == ["b", "d"]
    assert ids("--batch", "nope") == []
