"""Work items each due at a time, taken by a pool of idle workers: one heap, one alarm.

The downloader's videos and the reviewer's takes wait the same way: each item is due now
or at a later time (a backoff, a 429's pause, a retention's deadline), is queued once per
key while it is known, and an idle worker waits until the first item is due. The queue
keeps a heap ordered by (due time, rank, arrival), wakes one waiter when an item is due
and rings one alarm on the run clock at the first due time while any worker waits
(aiolimiter's shape: one heap, one ``call_at`` wake-up), so no worker polls.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

from batchveo.clock import Alarm, Alarms
from batchveo.run.wakeups import Waiters

T = TypeVar("T")


class DueQueue(Generic[T]):
    """Items by due time, each key once while it is known (``push`` ... ``forget``)."""

    def __init__(self, clock: Alarms, key: Callable[[T], str]) -> None:
        self._clock = clock
        self._key = key
        self._heap: list[tuple[float, float, int, T]] = []
        self._seq = itertools.count()
        self._known: set[str] = set()
        self._waiters = Waiters()
        self._alarm: Alarm | None = None
        self._alarm_at = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, due_at: float = 0.0, rank: float = 0.0) -> None:
        """``item`` at ``due_at`` (now if 0), unless its key is queued or being worked on;
        among items due alike, the lower ``rank`` first, then the earlier come."""
        key = self._key(item)
        if key not in self._known:
            self._known.add(key)
            self.again(item, due_at, rank)

    def again(self, item: T, due_at: float, rank: float = 0.0) -> None:
        """``item``, taken and not finished, queued again at ``due_at``."""
        heapq.heappush(self._heap, (due_at, rank, next(self._seq), item))
        self._arm()

    def forget(self, key: str) -> None:
        """``key``'s work is over: it may be pushed again later."""
        self._known.discard(key)

    async def take(self, ended: Callable[[], bool]) -> T | None:
        """The next item due; None once ``ended()`` (``wake_all`` makes waiters look)."""
        while not ended():
            if self._heap and self._heap[0][0] <= self._clock():
                item = heapq.heappop(self._heap)[3]
                self._arm()  # the next one may be due too: another idle worker takes it
                return item
            self._idle_until_due()
            await self._waiters.wait()
        return None

    def wake_all(self) -> None:
        self._waiters.wake_all()

    def _arm(self) -> None:
        """Wake an idle worker now if the first item is due, else ring when it is."""
        if not len(self._waiters) or not self._heap:
            return
        if self._heap[0][0] <= self._clock():
            self._waiters.wake_one()
        else:
            self._idle_until_due()

    def _idle_until_due(self) -> None:
        """The one alarm, at the first item's due time (none if the queue is empty)."""
        due = self._heap[0][0] if self._heap else None
        if self._alarm is not None and self._alarm_at == due:
            return
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        if due is not None:
            self._alarm, self._alarm_at = self._clock.call_at(due, self._ring), due

    def _ring(self) -> None:
        self._alarm = None
        self._waiters.wake_one()
