"""Request pacing: how fast submits (and, where counted, polls) may leave.

Why not a plain ``AsyncLimiter(rpm, 60)``: aiolimiter's leaky bucket lets a
whole ``max_rate`` through at once whenever the bucket is empty, which is at
every start, and so after every restart of a cron job. A server counting
requests per minute sees that burst on top of the previous run's last minute
and answers 429. So the bucket holds one request and drains one per
``60 / rpm`` seconds (a hair slower, so network jitter cannot make two
requests land closer than the server's window allows), and a new run waits
out the gap since the last submit recorded in the database.

The pacer also owns the reaction to 429s: every worker pauses until the
server's ``retry_after`` (or an exponential backoff with jitter), and after
repeated 429s the rate itself adapts down, then creeps back up slowly.

Time is read only from the running loop's clock, so tests can drive it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

SAFETY = 1.01
"""Pace 1% under the quota: requests that leave evenly arrive unevenly."""


@dataclass
class PacerStats:
    rate_limited: int = 0
    paused_s: float = 0.0
    current_rpm: float = 0.0


_STOP_CHECK_S = 1.0
"""How often a paused acquire looks at its stop event."""


class Pacer:
    """One request per ``60/rpm`` seconds, shared by every worker; ``rpm=0`` means unpaced."""

    def __init__(
        self,
        rpm: float,
        *,
        initial_delay_s: float = 0.0,
        min_rpm: float = 1.0,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
        recover_after: int = 20,
        rng: random.Random | None = None,
    ):
        self._loop = asyncio.get_running_loop()  # created inside the loop, never at import
        self.max_rpm = rpm
        self.rpm = rpm
        self.min_rpm = min(min_rpm, rpm) if rpm else 0.0
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._recover_after = recover_after
        self._rng = rng or random.Random()
        self._limiter = self._make_limiter(rpm)
        self._not_before = self._loop.time() + max(0.0, initial_delay_s)
        self._next_send = float("-inf")
        self._consecutive_429 = 0
        self._successes = 0
        self.stats = PacerStats(current_rpm=rpm)

    @staticmethod
    def _make_limiter(rpm: float) -> AsyncLimiter | None:
        if not rpm:
            return None
        return AsyncLimiter(1, 60.0 / rpm * SAFETY)

    @property
    def period_s(self) -> float:
        return 60.0 / self.rpm * SAFETY if self.rpm else 0.0

    def paused_for_s(self) -> float:
        return max(0.0, self._not_before - self._loop.time())

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for the right to send one request; False if ``stop`` was set meanwhile.

        A pause may last an hour (a spent daily quota, a long outage): waiting in
        slices lets a stop end the wait instead of the shutdown grace period.
        """
        while True:
            if stop is not None and stop.is_set():
                return False
            wait_s = self._not_before - self._loop.time()
            if wait_s > 0:
                await asyncio.sleep(min(wait_s, _STOP_CHECK_S) if stop is not None else wait_s)
                continue
            if self._limiter is not None:
                await self._limiter.acquire()
            # A 429 may have arrived while we waited in the bucket: honour it too.
            if self._not_before <= self._loop.time():
                return True

    async def spaced(self) -> None:
        """Right before a paced request leaves: one period after the previous one left.

        ``acquire`` grants turns before the job is claimed (so that no job sits in
        ``submitting`` while it merely waits); a claim slowed by the disk (an
        fsync) must not let the next request catch up and arrive with it. The
        slot is reserved before sleeping, so concurrent callers queue up.
        """
        if not self.rpm:
            return
        now = self._loop.time()
        slot = max(now, self._next_send)
        self._next_send = slot + self.period_s
        if slot > now:
            await asyncio.sleep(slot - now)

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
        until = self._loop.time() + pause_s
        if until > self._not_before:
            self.stats.paused_s += until - max(self._not_before, self._loop.time())
            self._not_before = until
        return pause_s

    def pause(self, pause_s: float) -> None:
        """Hold every request back for ``pause_s`` (the service is unreachable)."""
        self._not_before = max(self._not_before, self._loop.time() + pause_s)

    def _set_rpm(self, rpm: float) -> None:
        if rpm != self.rpm:
            self.rpm = rpm
            self.stats.current_rpm = rpm
            self._limiter = self._make_limiter(rpm)
            # The new bucket starts empty: make it wait a full period, no burst.
            self._not_before = max(self._not_before, self._loop.time() + self.period_s)
