"""Request pacing: how fast submits (and, where counted, polls) may leave.

One request per ``60 / rpm`` seconds (a hair slower, ``SAFETY``, so that network jitter
cannot make two requests land closer than the server's window allows), and never a
burst: not at the start, and not after a restart (a cron run), which waits out the gap
since the last submit recorded in the database. A server counting requests per minute
would see a burst on top of the previous run's last minute and answer 429.

Why one next-slot scheduler and not ``aiolimiter``: its leaky bucket lets a whole
``max_rate`` through at once whenever the bucket is empty, which is at every start, so
it must be shaped to a bucket of one; and a turn granted *before* a claim then needs a
second spacing right before the request leaves, or a claim slowed by the disk (an
fsync) lets the next request catch up with it. That was the same thing twice, on the
loop's clock, which tests cannot own. Here there is one rule: a *turn* is granted one
period after the previous paced request left, and is held while the job is claimed;
the request leaves as the turn ends (``Turn.spend``), and the next period starts then.
A turn that claimed nothing starts no period. Turns go first come, first served, from
one queue of waiters and one alarm on the run clock (aiolimiter's own shape: a heap of
waiters, one ``call_at`` wake-up), so tests drive the clock instead of sleeping.

The pacer also owns the reaction to 429s: every worker pauses until the server's
``retry_after`` (or an exponential backoff with jitter), and after repeated 429s the
rate itself adapts down, then creeps back up slowly. A pause may last an hour (a spent
daily quota, a long outage): a stop ends the wait at once (the stop policy calls
``wake_all``), not at the end of the pause or the shutdown grace.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchveo.clock import Alarm, Alarms

SAFETY = 1.01
"""Pace 1% under the quota: requests that leave evenly arrive unevenly."""


@dataclass
class PacerStats:
    rate_limited: int = 0
    paused_s: float = 0.0
    current_rpm: float = 0.0


@dataclass
class Turn:
    """The right to send one request, from its grant until its block ends."""

    granted: bool
    spent: bool = False

    def spend(self) -> None:
        """The request leaves as the turn ends: the next one waits a period from then."""
        self.spent = True


def _never() -> bool:
    return False


class Pacer:
    """One request per ``60/rpm`` seconds, shared by every worker; ``rpm=0`` means unpaced
    (only a pause holds requests back then, and turns are not held)."""

    def __init__(
        self,
        rpm: float,
        *,
        clock: Alarms,
        initial_delay_s: float = 0.0,
        min_rpm: float = 1.0,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
        recover_after: int = 20,
        rng: random.Random | None = None,
    ):
        self._clock = clock
        self.max_rpm = rpm
        self.rpm = rpm
        self.min_rpm = min(min_rpm, rpm) if rpm else 0.0
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._recover_after = recover_after
        self._rng = rng or random.Random()
        self._not_before = clock() + max(0.0, initial_delay_s)
        """A pause (a restart's gap, a 429, an outage, a spent quota): no turn before it."""
        self._next_at = float("-inf")
        """One period after the last paced request left."""
        self._held = False
        """A paced turn is out: granted, its request not yet gone."""
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._alarm: Alarm | None = None
        self._alarm_at = 0.0
        self._consecutive_429 = 0
        self._successes = 0
        self.stats = PacerStats(current_rpm=rpm)

    @property
    def period_s(self) -> float:
        return 60.0 / self.rpm * SAFETY if self.rpm else 0.0

    def due_at(self) -> float:
        """When the next turn may be granted (on the run clock)."""
        return max(self._not_before, self._next_at)

    @asynccontextmanager
    async def turn(self, stopped: Callable[[], bool] = _never) -> AsyncIterator[Turn]:
        """Wait for a turn (``granted`` False if ``stopped()`` first) and hold it for the
        block; call ``spend()`` in it when a request is about to leave."""
        turn = Turn(granted=await self._take(stopped))
        try:
            yield turn
        finally:
            if turn.granted:
                self._give_back(spent=turn.spent)

    def wake_all(self) -> None:
        """Every waiter looks at its stop condition again (the run is stopping)."""
        waiting, self._waiting = self._waiting, deque()
        for fut in waiting:
            if not fut.done():
                fut.set_result(False)
        self._arm()

    def on_success(self) -> None:
        self._consecutive_429 = 0
        if self.rpm and self.rpm < self.max_rpm:
            self._successes += 1
            if self._successes >= self._recover_after:
                self._successes = 0
                self._set_rpm(min(self.max_rpm, self.rpm * 1.1 + 0.5))

    def on_rate_limited(self, retry_after_s: float | None) -> float:
        """Pause every worker; returns the pause in seconds."""
        self._consecutive_429 += 1
        self._successes = 0
        self.stats.rate_limited += 1
        if retry_after_s is None or retry_after_s <= 0:
            doublings = min(self._consecutive_429 - 1, 30)  # capped: 2 ** n overflows a float
            exp = min(self._backoff_max_s, self._backoff_base_s * 2.0**doublings)
            pause_s = exp * (0.5 + self._rng.random() / 2)
        else:
            pause_s = min(self._backoff_max_s, retry_after_s)
        if self._consecutive_429 >= 2 and self.rpm:
            self._set_rpm(max(self.min_rpm, self.rpm * 0.7))
        now = self._clock()
        until = now + pause_s
        if until > self._not_before:
            self.stats.paused_s += until - max(self._not_before, now)
            self._not_before = until
            self._arm()
        return pause_s

    def pause(self, pause_s: float) -> None:
        """Hold every request back for ``pause_s`` (the service is unreachable, a spent
        daily quota in a watching run)."""
        self._not_before = max(self._not_before, self._clock() + pause_s)
        self._arm()

    # -- the queue of turns -------------------------------------------------------------

    async def _take(self, stopped: Callable[[], bool]) -> bool:
        while not stopped():
            if not self._waiting and self._free():
                self._held = bool(self.rpm)
                return True
            fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._waiting.append(fut)
            self._arm()
            try:
                if await fut:
                    return True  # granted: ``_grant`` marked it held
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result():
                    self._give_back(spent=False)  # granted as we were cancelled: hand it on
                elif fut in self._waiting:
                    self._waiting.remove(fut)
                    self._arm()
                raise
        return False

    def _free(self) -> bool:
        return not self._held and self._clock() >= self.due_at()

    def _give_back(self, *, spent: bool) -> None:
        self._held = False
        if spent and self.rpm:
            self._next_at = self._clock() + self.period_s
        self._arm()

    def _arm(self) -> None:
        """One alarm, at the next turn's due time, while anyone waits and no turn is out."""
        if not self._waiting or self._held:
            self._disarm()
            return
        at = self.due_at()
        if self._alarm is not None and self._alarm_at == at:
            return
        self._disarm()
        self._alarm, self._alarm_at = self._clock.call_at(at, self._grant), at

    def _disarm(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None

    def _grant(self) -> None:
        """The alarm: the first waiter gets the turn (unpaced: every waiter), if it is due."""
        self._alarm = None
        while self._waiting and self._free():
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(True)
                self._held = bool(self.rpm)
        self._arm()  # early (the pause grew meanwhile), or more wait: the next due time

    def _set_rpm(self, rpm: float) -> None:
        if rpm != self.rpm:
            self.rpm = rpm
            self.stats.current_rpm = rpm
            # A new rate starts with a full period of its own: no burst.
            self._not_before = max(self._not_before, self._clock() + self.period_s)
            self._arm()
