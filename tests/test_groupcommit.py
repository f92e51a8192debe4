"""Group commit: batching, per-request results, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from batchveo.store.groupcommit import GroupCommit


class Recorder:
    """A batch runner that records its batches and doubles each number (odd ones fail)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.abandoned: list[int] = []
        self.gate: asyncio.Event | None = None

    async def run(self, reqs: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(reqs))
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"odd {r}") if r % 2 else 2 * r for r in reqs]

    async def abandon(self, results: Sequence[int]) -> None:
        self.abandoned.extend(results)


def group(rec: Recorder, **kw: object) -> GroupCommit[int, int]:
    return GroupCommit(rec.run, lock=asyncio.Lock(), **kw)  # type: ignore[arg-type]


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_request_is_written_at_once_and_those_arriving_meanwhile_share_a_batch() -> None:
    rec = Recorder()
    g = group(rec)
    assert await g.submit(2) == 4  # nothing being written: no waiting at all
    rec.gate = asyncio.Event()
    first = asyncio.create_task(g.submit(10))
    await turns()
    # While that batch is being written, requests gather instead of each paying a trip.
    tasks = [asyncio.create_task(g.submit(n)) for n in (4, 6, 8)]
    await turns()
    assert rec.batches == [[2], [10]] and not any(t.done() for t in tasks)
    rec.gate.set()
    await g.drain()  # closing the store waits for everything queued
    assert first.result() == 20 and [t.result() for t in tasks] == [8, 12, 16]
    assert rec.batches == [[2], [10], [4, 6, 8]] and g.batches == 3


async def test_each_caller_gets_its_own_result_or_error() -> None:
    rec = Recorder()
    g = group(rec)
    results = await asyncio.gather(*(g.submit(n) for n in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 4
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 1"
    assert isinstance(results[3], ValueError)


async def test_a_failing_batch_fails_each_of_its_callers() -> None:
    async def broken(reqs: Sequence[int]) -> list[int | BaseException]:
        raise OSError("disk full")

    g: GroupCommit[int, int] = GroupCommit(broken, lock=asyncio.Lock())
    results = await asyncio.gather(g.submit(1), g.submit(2), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)


async def test_one_key_is_never_twice_in_a_batch_and_keeps_its_order() -> None:
    rec = Recorder()
    g = group(rec, key=lambda n: n // 10)  # 10 and 12 share a key
    rec.gate = asyncio.Event()
    first = asyncio.create_task(g.submit(0))
    await turns()
    queued = [asyncio.create_task(g.submit(n)) for n in (10, 20, 12)]
    rec.gate.set()
    await g.drain()
    assert rec.batches == [[0], [10, 20], [12]]
    assert first.result() == 0 and [t.result() for t in queued] == [20, 40, 24]


async def test_the_lock_keeps_batches_apart_from_other_statements() -> None:
    rec = Recorder()
    lock = asyncio.Lock()
    g: GroupCommit[int, int] = GroupCommit(rec.run, lock=lock)
    async with lock:
        task = asyncio.create_task(g.submit(2))
        await turns()
        assert rec.batches == []  # waits for the statement holding the lock
    assert await task == 4


async def test_a_transition_cancelled_before_its_batch_is_still_written() -> None:
    rec = Recorder()
    lock = asyncio.Lock()
    g: GroupCommit[int, int] = GroupCommit(rec.run, lock=lock)
    async with lock:  # what happened in the world gets recorded, heard or not
        doomed = asyncio.create_task(g.submit(4))
        await turns()
        doomed.cancel()
    await g.drain()
    assert rec.batches == [[4]] and doomed.cancelled()


async def test_a_request_cancelled_before_its_batch_is_dropped_if_asked() -> None:
    rec = Recorder()
    lock = asyncio.Lock()
    g: GroupCommit[int, int] = GroupCommit(rec.run, lock=lock, drop_cancelled=True)
    async with lock:  # a claim nobody will send must not be made
        doomed = asyncio.create_task(g.submit(4))
        kept = asyncio.create_task(g.submit(6))
        await turns()
        doomed.cancel()
    await g.drain()
    assert rec.batches == [[6]] and kept.result() == 12


async def test_a_result_whose_caller_left_during_the_batch_is_handed_back() -> None:
    rec = Recorder()
    g = group(rec, drop_cancelled=True, on_abandoned=rec.abandon)
    rec.gate = asyncio.Event()
    left = asyncio.create_task(g.submit(4))
    stays = asyncio.create_task(g.submit(6))
    await turns()
    assert rec.batches == [[4, 6]]
    left.cancel()
    rec.gate.set()
    await g.drain()
    assert stays.result() == 12 and rec.abandoned == [8]
    with pytest.raises(asyncio.CancelledError):
        await left


async def test_a_flush_cancelled_before_it_ran_does_not_wedge_the_group() -> None:
    rec = Recorder()
    g = group(rec)
    first = asyncio.create_task(g.submit(2))
    while g._task is None:
        await asyncio.sleep(0)
    g._task.cancel()  # e.g. a sweep cancelling every task at shutdown
    assert await asyncio.wait_for(first, 5) == 4  # the next flush took it
    assert await asyncio.wait_for(g.submit(4), 5) == 8  # and later requests still flow
    await g.drain()


async def test_a_flush_cancelled_mid_batch_finishes_it_and_tells_its_callers() -> None:
    rec = Recorder()
    g = group(rec)
    rec.gate = asyncio.Event()
    caller = asyncio.create_task(g.submit(2))
    await turns()
    assert rec.batches == [[2]] and g._task is not None
    g._task.cancel()
    await turns()
    rec.gate.set()
    assert await caller == 4  # the batch was not cut in half: its caller got its result
