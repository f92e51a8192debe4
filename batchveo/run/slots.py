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

A run that serves several routes has slots per route (``--max-inflight`` is per route:
operations that may exist on *that* service) and one set of places for the whole run
(``--max-jobs`` caps the run's sends, whatever their route): the routes' slots share
one ``SendPlaces``, and a place given back wakes the waiters of every route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from batchveo.run.wakeups import Waiters
from batchveo.states import IN_FLIGHT, JobState
from batchveo.store import TransitionEvent

S = JobState


class SendPlaces:
    """``--max-jobs``: the sends of a run that count (None: no cap), shared by every
    route's slots; counted from the transitions the slots are told."""

    def __init__(self, max_sends: int | None = None) -> None:
        self.max_sends = max_sends
        self.sends = 0
        """Sends of this run that count, or may still: claimed and not given back."""
        self.claiming = 0
        """Claims under way, each holding a place until it ends."""
        self._claimed_attempt: dict[str, int] = {}
        """Jobs in ``submitting`` claimed by this run: the attempt number the claim made."""
        self._sharers: list[InflightSlots] = []

    def free(self) -> int | None:
        return None if self.max_sends is None else self.max_sends - self.sends - self.claiming

    def spent(self) -> bool:
        """Every place is spent (once no submit is out, for good)."""
        return self.max_sends is not None and self.sends >= self.max_sends

    def share(self, slots: InflightSlots) -> None:
        self._sharers.append(slots)

    def observe(self, event: TransitionEvent) -> bool:
        """Count a send from a committed transition; True if a place was given back."""
        src, dst = event.from_state, event.to_state
        if src == S.PENDING and dst == S.SUBMITTING:
            self._claimed_attempt[event.job_id] = event.attempt
            self.sends += 1
        elif src == S.SUBMITTING:
            claimed = self._claimed_attempt.pop(event.job_id, None)
            if claimed is not None and dst == S.PENDING and event.attempt < claimed:
                self.sends -= 1  # not an attempt: it does not count against --max-jobs
                return True
        return False

    def wake_sharers(self, but: InflightSlots) -> None:
        """A place came back: the other routes' waiters look again too."""
        if self.max_sends is None:
            return  # no cap: a route waits for its own slots only
        for slots in self._sharers:
            if slots is not but:
                slots.wake()


class InflightSlots:
    """``max_inflight`` slots and ``max_sends`` places (None: no cap; or the run's
    ``SendPlaces``, shared with other routes), counted from the store's transitions;
    ``in_flight`` jobs hold a slot already (running at the start)."""

    def __init__(
        self,
        max_inflight: int,
        max_sends: int | SendPlaces | None = None,
        *,
        in_flight: int = 0,
    ):
        self._max_inflight = max_inflight
        self._places = max_sends if isinstance(max_sends, SendPlaces) else SendPlaces(max_sends)
        self._places.share(self)
        self._in_flight = in_flight
        self._claiming = 0
        self._waiters = Waiters()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def sends_spent(self) -> bool:
        """Every ``--max-jobs`` place is spent (once no submit is out, for good)."""
        return self._places.spent()

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
        self._places.claiming += 1
        try:
            yield True
        finally:
            self._claiming -= 1
            self._places.claiming -= 1
            self._wake()
            self._places.wake_sharers(but=self)

    def observe(self, event: TransitionEvent) -> None:
        """A committed transition (a store observer): count slots and places from it."""
        src, dst = event.from_state, event.to_state
        place_back = self._places.observe(event)
        was, now = src in IN_FLIGHT, dst in IN_FLIGHT
        if now and not was:
            self._in_flight += 1
        elif was and not now:
            self._in_flight -= 1
        self._wake()
        if place_back:
            self._places.wake_sharers(but=self)

    def wake_all(self) -> None:
        """Every waiter looks again (the run is stopping)."""
        self._waiters.wake_all()

    def _free(self) -> int:
        free = self._max_inflight - self._in_flight - self._claiming
        places = self._places.free()
        return free if places is None else min(free, places)

    def _room(self) -> bool:
        return self._free() > 0

    def wake(self) -> None:
        """As many waiters as there is room for look again."""
        self._wake()

    def _wake(self) -> None:
        for _ in range(min(self._free(), len(self._waiters))):
            self._waiters.wake_one()
