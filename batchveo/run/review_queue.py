"""The reviews to ask: due now, or again at a later time (a backoff, a 429's pause).

Filled from the database when a run starts (the due reviews) and as jobs become done
(the reviewer watches the store's transitions), so reviewers never sweep a table. Idle
reviewers wait here: a new job wakes one of them, and one alarm rings at the earliest
retry time while any waits (the download queue's shape).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from batchveo.clock import Alarm, Alarms
from batchveo.run.wakeups import Waiters


class ReviewQueue:
    """Job ids whose review is due, each once, in the order they came or fall due."""

    def __init__(self, clock: Alarms) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._known: set[str] = set()
        self._waiters = Waiters()
        self._alarm: Alarm | None = None
        self._alarm_at = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, job_id: str, due_at: float = 0.0) -> None:
        """``job_id`` at ``due_at`` (now if 0), unless it is queued or being reviewed."""
        if job_id not in self._known:
            self._known.add(job_id)
            self.again(job_id, due_at)

    def again(self, job_id: str, due_at: float) -> None:
        """``job_id``, taken and not done, again at ``due_at``."""
        heapq.heappush(self._heap, (due_at, next(self._seq), job_id))
        self._arm()

    def forget(self, job_id: str) -> None:
        """``job_id``'s review is recorded: it may come again (``--force`` in a later run)."""
        self._known.discard(job_id)

    async def take(self, ended: Callable[[], bool]) -> str | None:
        """The next job id due; None once ``ended()`` (``wake_all`` makes waiters look)."""
        while not ended():
            if self._heap and self._heap[0][0] <= self._clock():
                _, _, job_id = heapq.heappop(self._heap)
                self._arm()
                return job_id
            self._ring_at_first()
            await self._waiters.wait()
        return None

    def wake_all(self) -> None:
        self._waiters.wake_all()

    def _arm(self) -> None:
        if not len(self._waiters) or not self._heap:
            return
        if self._heap[0][0] <= self._clock():
            self._waiters.wake_one()
        else:
            self._ring_at_first()

    def _ring_at_first(self) -> None:
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
