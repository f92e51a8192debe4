"""The pacer: no burst at start or after a restart, pauses on 429, adapts its rate."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

from batchveo.run.pacing import SAFETY, Pacer


async def timed_acquires(pacer: Pacer, n: int) -> list[float]:
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(n):
        await pacer.acquire()
        times.append(loop.time())
    return times


async def test_requests_are_evenly_spaced_with_no_start_burst() -> None:
    pacer = Pacer(1200)  # one request every 50 ms
    times = await timed_acquires(pacer, 5)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # aiolimiter's default would let all five through at once; shaped, none comes early.
    assert all(gap >= 0.05 * SAFETY - 0.002 for gap in gaps), gaps


async def test_a_restart_waits_out_the_gap_since_the_last_submit() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    pacer = Pacer(1200, initial_delay_s=0.05)
    await pacer.acquire()
    assert loop.time() - start >= 0.049


async def test_a_429_pauses_everyone_for_the_servers_delay() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(0)  # unpaced: only the pause holds requests back
    await pacer.acquire()
    pacer.on_rate_limited(0.08)
    start = loop.time()
    await asyncio.gather(pacer.acquire(), pacer.acquire())
    assert loop.time() - start >= 0.079
    assert pacer.stats.rate_limited == 1


async def test_repeated_429s_lower_the_rate_and_successes_raise_it_slowly() -> None:
    pacer = Pacer(60, rng=random.Random(0), recover_after=5)
    pacer.on_rate_limited(0.0)
    assert pacer.rpm == 60  # one 429 is a pause, not yet a new rate
    pacer.on_rate_limited(0.0)
    assert pacer.rpm == 42  # 60 x 0.7
    pacer.on_rate_limited(0.0)
    assert round(pacer.rpm, 1) == 29.4
    for _ in range(4):
        pacer.on_success()
    assert round(pacer.rpm, 1) == 29.4  # not yet: recovery is slow
    pacer.on_success()
    assert round(pacer.rpm, 2) == round(29.4 * 1.1 + 0.5, 2)
    for _ in range(500):
        pacer.on_success()
    assert pacer.rpm == 60  # never above the configured rate


async def test_without_a_server_delay_the_pause_backs_off_exponentially() -> None:
    pacer = Pacer(60, rng=random.Random(0), backoff_base_s=1, backoff_max_s=8)
    pauses = [pacer.on_rate_limited(None) for _ in range(6)]
    assert 0.5 <= pauses[0] <= 1 and 1 <= pauses[1] <= 2 and 2 <= pauses[2] <= 4
    assert all(p <= 8 for p in pauses)


async def test_a_stop_ends_a_long_pause_instead_of_waiting_it_out(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import batchveo.run.pacing

    monkeypatch.setattr(batchveo.run.pacing, "_STOP_CHECK_S", 0.01)
    pacer = Pacer(0)
    pacer.pause(3600.0)  # a spent daily quota: an hour before the next try
    stop = asyncio.Event()
    waiting = asyncio.create_task(pacer.acquire(stop))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    stop.set()  # SIGTERM: the run must not sit out the hour (or the shutdown grace)
    assert await asyncio.wait_for(waiting, 1.0) is False


async def test_requests_leave_a_period_apart_even_if_their_claims_bunched() -> None:
    # Turns are granted before the claim; a claim slowed by an fsync must not let
    # the next request catch up with it at the server.
    loop = asyncio.get_running_loop()
    pacer = Pacer(1200)  # 50 ms apart
    sent: list[float] = []

    async def send() -> None:
        await pacer.spaced()
        sent.append(loop.time())

    await asyncio.gather(send(), send(), send())  # three claims done at the same instant
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(gap >= 0.05 * SAFETY - 0.002 for gap in gaps), gaps


async def test_backoff_stays_capped_however_many_tries(tmp_path: Path) -> None:
    # A paid video is retried until the retention ends: with short backoffs that is
    # thousands of tries, and 2 ** tries must not overflow into a crashed downloader.
    from batchveo.run.context import RunConfig, RunContext
    from batchveo.store import Store

    async with await Store.open(tmp_path / "jobs.db") as store:
        ctx = RunContext(store, None, RunConfig(backoff_max_s=300.0), Pacer(0))  # type: ignore[arg-type]
        assert all(0 < ctx.backoff_s(n) <= 300.0 for n in (1, 10, 1100, 10**6))
