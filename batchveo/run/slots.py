"""What a claim needs first: a free in-flight slot, and a place under ``--max-jobs``.

``--max-inflight`` caps the jobs submitting or running (``states.IN_FLIGHT``): each is
an operation that may exist on the server. ``--max-jobs`` caps the sends of this run
that count: a send the server provably never saw or refused to count (not sent, a 429,
a spent quota, an account error) is no attempt, so it spends no place either.

Both are taken by a submitter *before* it claims a job (so that the other workers see
them taken while it waits for the pacer and the claim), and from the claim on both
belong to the job's record. The store tells ``observe`` every committed transition:

* a job leaving ``IN_FLIGHT`` (running -> generated, submitting -> failed, ...) frees
  its slot;
* a job handed back from ``submitting`` to ``pending`` with its attempt given back (the
  submitter's reaction to a send that did not count) gives its place back.

So no stage frees either by hand, on any path: the record says what the job holds. A
claim that found nothing gives the reservation back as its ``claiming`` block ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from batchveo.run.wakeups import Waiters
from batchveo.states import IN_FLIGHT, JobState
from batchveo.store import TransitionEvent

S = JobState


class InflightSlots:
    """``max_inflight`` slots and ``max_sends`` places (None: no cap), counted from the
    store's transitions; ``in_flight`` jobs hold a slot already (running at the start)."""

    def __init__(self, max_inflight: int, max_sends: int | None = None, *, in_flight: int = 0):
        self._max_inflight = max_inflight
        self._max_sends = max_sends
        self._in_flight = in_flight
        self._claiming = 0
        self._sends = 0
        """Sends of this run that count, or may still: claimed and not given back."""
        self._claimed_attempt: dict[str, int] = {}
        """Jobs in ``submitting`` claimed by this run: the attempt number the claim made."""
        self._waiters = Waiters()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def sends_spent(self) -> bool:
        """Every ``--max-jobs`` place is spent (once no submit is out, for good)."""
        return self._max_sends is not None and self._sends >= self._max_sends

    @asynccontextmanager
    async def claiming(self, stopped: Callable[[], bool]) -> AsyncIterator[bool]:
        """Hold a slot and a place while the block claims a job; False if submits stopped
        before one was free (the stop wakes the waiters: ``wake_all``)."""
        while not stopped() and not self._room():
            await self._waiters.wait()
        if stopped():
            yield False
            return
        self._claiming += 1
        try:
            yield True
        finally:
            self._claiming -= 1
            self._wake()

    def observe(self, event: TransitionEvent) -> None:
        """A committed transition (a store observer): count slots and places from it."""
        src, dst = event.from_state, event.to_state
        if src == S.PENDING and dst == S.SUBMITTING:
            self._claimed_attempt[event.job_id] = event.attempt
            self._sends += 1
        elif src == S.SUBMITTING:
            claimed = self._claimed_attempt.pop(event.job_id, None)
            if claimed is not None and dst == S.PENDING and event.attempt < claimed:
                self._sends -= 1  # not an attempt: it does not count against --max-jobs
        was, now = src in IN_FLIGHT, dst in IN_FLIGHT
        if now and not was:
            self._in_flight += 1
        elif was and not now:
            self._in_flight -= 1
        self._wake()

    def wake_all(self) -> None:
        """Every waiter looks again (the run is stopping)."""
        self._waiters.wake_all()

    def _free(self) -> int:
        free = self._max_inflight - self._in_flight - self._claiming
        if self._max_sends is not None:
            free = min(free, self._max_sends - self._sends - self._claiming)
        return free

    def _room(self) -> bool:
        return self._free() > 0

    def _wake(self) -> None:
        for _ in range(min(self._free(), len(self._waiters))):
            self._waiters.wake_one()
