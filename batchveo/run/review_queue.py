"""The reviews to ask: due now, or again at a later time (a backoff, a 429's pause).

Filled from the database when a run starts (the due reviews) and as jobs become done
(the reviewer watches the store's transitions), so reviewers never sweep a table. Idle
reviewers wait here: a new job wakes one of them, and one alarm rings at the earliest
retry time while any waits (``DueQueue``, the download queue's too).
"""

from __future__ import annotations

from batchveo.clock import Alarms
from batchveo.run.duequeue import DueQueue


class ReviewQueue(DueQueue[str]):
    """Job ids whose review is due, each once, in the order they came or fall due
    (``again(job_id, due_at)``: taken and not done, again later; ``forget``: its review is
    recorded, it may come again with ``--force`` in a later run)."""

    def __init__(self, clock: Alarms) -> None:
        super().__init__(clock, key=lambda job_id: job_id)

    def add(self, job_id: str, due_at: float = 0.0) -> None:
        """``job_id`` at ``due_at`` (now if 0), unless it is queued or being reviewed."""
        self.push(job_id, due_at)
