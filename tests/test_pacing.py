"""The pacer: no burst at start or after a restart, pauses on 429, adapts its rate.

Time never passes for real here: each pacer runs on a ``FakeClock`` that the test moves
from one alarm to the next, so every turn's time is exact and a busy machine changes
nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from batchveo.run.context import StopLevel, StopPolicy
from batchveo.run.pacing import SAFETY, Pacer
from batchveo.run.wakeups import Signal
from tests.helpers import FakeClock, wait_until

PERIOD_S = 60.0 / 1200 * SAFETY
"""At --rpm 1200: one request every 50 ms, 1% slower."""


async def drive(clock: FakeClock, done: Callable[[], bool]) -> None:
    """Move the clock from alarm to alarm until ``done()``; nothing sleeps.

    Before each move, every task the last alarm woke has run on to its next wait: the
    pacer sets its alarm only once no turn is out.
    """
    while not done():
        await wait_until(lambda: done() or clock.next_alarm_s() is not None)
        if not done():
            clock.advance_to_next_alarm()


async def turns(
    pacer: Pacer, clock: FakeClock, n: int, *, claim_s: float = 0.0
) -> tuple[list[float], list[float]]:
    """``n`` workers asking for a turn at once, each claiming for ``claim_s`` (on the
    clock) and then sending: when each turn was granted, and when each request left."""
    granted: list[float] = []
    sent: list[float] = []
    claimed = Signal(clock)

    async def worker() -> None:
        async with pacer.turn() as turn:
            granted.append(clock())
            if claim_s:
                await claimed.wait(claimed.mark(), until_s=clock() + claim_s)  # an fsync
            turn.spend()
            sent.append(clock())

    tasks = [asyncio.create_task(worker()) for _ in range(n)]
    await drive(clock, lambda: len(sent) == n)
    await asyncio.gather(*tasks)
    return granted, sent


async def test_requests_are_evenly_spaced_with_no_start_burst() -> None:
    clock = FakeClock()
    start = clock()
    granted, _ = await turns(Pacer(1200, clock=clock), clock, 5)
    # aiolimiter's default would let all five through at once; here none comes early.
    assert granted == pytest.approx([start + i * PERIOD_S for i in range(5)])


async def test_a_restart_waits_out_the_gap_since_the_last_submit() -> None:
    clock = FakeClock()
    start = clock()
    granted, _ = await turns(Pacer(1200, clock=clock, initial_delay_s=0.05), clock, 2)
    assert granted == pytest.approx([start + 0.05, start + 0.05 + PERIOD_S])


async def test_a_429_pauses_everyone_for_the_servers_delay() -> None:
    clock = FakeClock()
    pacer = Pacer(0, clock=clock)  # unpaced: only the pause holds requests back
    granted, _ = await turns(pacer, clock, 1)
    assert granted == [clock()]  # at once
    pacer.on_rate_limited(0.08)
    paused_at = clock()
    granted, _ = await turns(pacer, clock, 2)
    assert granted == pytest.approx([paused_at + 0.08] * 2)  # both, when the pause ends
    assert pacer.stats.rate_limited == 1


async def test_requests_leave_a_period_apart_even_if_their_claims_bunched() -> None:
    # Turns are granted before the claim; a claim slowed by an fsync must not let the
    # next request catch up with it at the server: the next turn starts a period after
    # the previous request *left*.
    clock = FakeClock()
    start = clock()
    granted, sent = await turns(Pacer(1200, clock=clock), clock, 3, claim_s=0.2)
    assert sent == pytest.approx([start + 0.2 + i * (0.2 + PERIOD_S) for i in range(3)])
    assert all(b - a >= PERIOD_S for a, b in itertools.pairwise(sent))
    assert granted == pytest.approx([s - 0.2 for s in sent])


async def test_a_turn_that_sent_nothing_starts_no_period() -> None:
    # A claim that found nothing to send must not hold the next worker back.
    clock = FakeClock()
    pacer = Pacer(1200, clock=clock)
    async with pacer.turn() as turn:
        assert turn.granted  # and not spent
    granted, _ = await turns(pacer, clock, 1)
    assert granted == [clock()]


async def test_repeated_429s_lower_the_rate_and_successes_raise_it_slowly() -> None:
    pacer = Pacer(60, clock=FakeClock(), rng=random.Random(0), recover_after=5)
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


async def test_a_new_rate_starts_with_a_full_period_of_its_own() -> None:
    clock = FakeClock()
    pacer = Pacer(60, clock=clock, rng=random.Random(0), recover_after=1)
    pacer.on_rate_limited(0.001)
    pacer.on_rate_limited(0.001)  # the second in a row: 42 per minute
    assert pacer.due_at() == pytest.approx(clock() + 60 / 42 * SAFETY)  # no burst at 42


async def test_without_a_server_delay_the_pause_backs_off_exponentially() -> None:
    pacer = Pacer(60, clock=FakeClock(), rng=random.Random(0), backoff_base_s=1, backoff_max_s=8)
    pauses = [pacer.on_rate_limited(None) for _ in range(6)]
    assert 0.5 <= pauses[0] <= 1 and 1 <= pauses[1] <= 2 and 2 <= pauses[2] <= 4
    assert all(p <= 8 for p in pauses)


async def test_a_stop_ends_a_long_pause_instead_of_waiting_it_out() -> None:
    clock = FakeClock()
    pacer = Pacer(0, clock=clock)
    stop = StopPolicy(clock)
    stop.on_change(pacer.wake_all)
    pacer.pause(3600.0)  # a spent daily quota: an hour before the next try
    paused_at = clock()

    async def submit_turn() -> bool:
        async with pacer.turn(stop.submits_stopped) as turn:
            return turn.granted

    waiting = asyncio.create_task(submit_turn())
    await wait_until(lambda: clock.next_alarm_s() == paused_at + 3600.0)
    assert not waiting.done()
    stop.raise_to(StopLevel.WIND_DOWN, "SIGTERM")  # the run must not sit out the hour
    assert await asyncio.wait_for(waiting, 5) is False
    assert clock() == paused_at  # ended by the stop, not by time


async def test_backoff_stays_capped_however_many_tries(tmp_path: Path) -> None:
    # A paid video is retried until the retention ends: with short backoffs that is
    # thousands of tries, and 2 ** tries must not overflow into a crashed downloader.
    from batchveo.run.context import RunConfig, RunContext
    from batchveo.run.downloader import DownloadQueue
    from batchveo.store import Store

    clock = FakeClock()
    async with await Store.open(tmp_path / "jobs.db") as store:
        config = RunConfig(backoff_max_s=300.0)
        ctx = RunContext(store, None, config, DownloadQueue(clock), clock=clock)  # type: ignore[arg-type]
        assert all(0 < ctx.backoff_s(n) <= 300.0 for n in (1, 10, 1100, 10**6))
