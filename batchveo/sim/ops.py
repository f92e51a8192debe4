"""The simulator's operations: created by accepted submits, finished by the clock alone.

Generation is lazy: an operation is finished when ``clock() >= created + generation time``,
computed on demand, so thousands of operations cost a few small objects and no tasks. A heap
of the unfinished ones orders them by when they finish, for ``max_concurrent_ops`` and the
statistics; operations and their files are forgotten once past retention, so a long-running
simulator keeps its memory flat.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["ok", "error", "filtered", "empty"]
"""``empty`` (Vertex): done with no video, no error, nothing filtered (counted as failed)."""


@dataclass(slots=True)
class Op:
    """One operation; slots keep 2,000+ of them to a few hundred KB."""

    id: str
    name: str
    model: str
    done_at: float
    outcome: Outcome
    trunc: int  # downloads still to truncate ([sim:truncatedxN])
    file_id: str | None = None
    polls: int = 0
    reported: bool = False  # a poll has already been told done
    created_at: float = 0.0
    file403: bool = False  # downloads answer 403 PERMISSION_DENIED ([sim:file403])
    length_s: float = 8.0
    """How long its videos last: the asked duration, or an extension's input plus 7 s."""
    extends: str | None = None
    """An extension's input video as the request named it (a URI, or ``inline``)."""
    parent: str | None = None
    """The name of the operation that made that input, when this service made it."""

    def expired(self, now: float, retention_s: float) -> bool:
        """Past retention: the service has deleted the operation and its video.

        Counted from when it finished, and never reset: Google reports that extending a
        video resets its retention timer, but does not document it, so the simulator does
        not (a client must not rely on it)."""
        return now >= self.done_at + retention_s

    def entry(self) -> dict[str, object]:
        """Its line in ``GET /__sim/operations``; an extension also names its input video
        (``extends``) and the operation that made it (``parent``): the proof that a hop
        was submitted only once its parent was done."""
        line: dict[str, object] = {
            "name": self.name, "created_at": self.created_at, "done_at": self.done_at,
            "polls": self.polls, "outcome": self.outcome,
        }  # fmt: skip
        if self.extends is not None:
            line["extends"] = self.extends
            line["parent"] = self.parent
        return line


@dataclass(slots=True)
class VertexOp(Op):
    """A Vertex operation: its project and region, its samples, where its videos go."""

    project: str = ""
    """The project's id (an operation named by its number is still this project's)."""
    location: str = ""
    samples: int = 1
    filtered: int = 0
    """Samples the filter blocked; fewer than ``samples`` with outcome "ok" is partial."""
    storage: tuple[str, str] | None = None
    """(bucket, prefix) from ``storageUri``; None: the videos come back inline."""
    corrupt: int = 0  # media reads of each object still to corrupt ([sim:corruptxN])
    written: bool = False  # its videos are in the bucket (written by the first done poll)
    error_message: str | None = None  # why it failed, when it was not a generation error

    @property
    def returned(self) -> int:
        """How many videos the finished operation gives back."""
        return self.samples - self.filtered if self.outcome == "ok" else 0

    def tag(self, n: int) -> str:
        """What the ``free`` box of sample ``n`` names: its bytes are its own."""
        return f"{self.id}/sample_{n}"

    def object_name(self, n: int) -> str:
        """Where sample ``n`` lands in the bucket: ``PREFIX/<operation id>/sample_<n>.mp4``."""
        prefix = self.storage[1] if self.storage else ""
        return f"{prefix}{self.id}/sample_{n}.mp4"


_COUNT_OF_OUTCOME: dict[Outcome, str] = {
    "ok": "done",
    "error": "failed",
    "filtered": "filtered",
    "empty": "failed",
}


class Operations:
    """Every operation still kept, by id and by file id, and those still generating."""

    def __init__(self) -> None:
        self.by_id: dict[str, Op] = {}
        self.files: dict[str, Op] = {}
        self.counts = {"created": 0, "done": 0, "failed": 0, "filtered": 0}
        self._order: deque[Op] = deque()  # creation order, to forget expired operations
        self._running: list[tuple[float, int, Op]] = []  # heap of unfinished operations
        self._seq = 0

    def add(self, op: Op, now: float, retention_s: float) -> None:
        """Keep a new operation (forgetting expired ones first)."""
        if op.file_id is not None:
            self.files[op.file_id] = op
        self.by_id[op.id] = op
        self._order.append(op)
        self._forget_expired(now, retention_s)
        self.counts["created"] += 1
        self.advance(now)  # so max_concurrent_ops counts only operations still generating
        if op.done_at > now:
            self._seq += 1
            heapq.heappush(self._running, (op.done_at, self._seq, op))
        else:
            self._finished(op)

    def timeline(self) -> list[dict[str, object]]:
        """When each kept operation was created and finished (or will), on the simulator's
        clock, and how often it was polled: ``GET /__sim/operations``."""
        return [op.entry() for op in self._order]

    def fresh_id(self, ids: random.Random) -> str:
        """A new operation id (64 random bits in hex) that no kept operation has."""
        op_id = f"{ids.getrandbits(64):016x}"
        while op_id in self.by_id:
            op_id = f"{ids.getrandbits(64):016x}"
        return op_id

    def fresh_uuid(self, ids: random.Random) -> str:
        """A new operation id in Vertex's form (a random UUID) that no kept operation has."""
        while True:
            op_id = str(uuid.UUID(int=ids.getrandbits(128), version=4))
            if op_id not in self.by_id:
                return op_id

    def running(self, now: float) -> int:
        """How many operations are still generating at ``now``."""
        self.advance(now)
        return len(self._running)

    def next_done_at(self) -> float | None:
        """When the first operation still generating finishes (after ``running``)."""
        return self._running[0][0] if self._running else None

    def live_file(self, file_id: str, now: float, retention_s: float) -> Op | None:
        """The operation whose video ``file_id`` is, if that video exists now: finished,
        and not past retention (what a download and an extension both need)."""
        op = self.files.get(file_id)
        if op is None or now < op.done_at or op.expired(now, retention_s):
            return None
        return op

    def advance(self, now: float) -> None:
        """Count the operations that have finished by ``now``."""
        while self._running and self._running[0][0] <= now:
            self._finished(heapq.heappop(self._running)[2])

    def finish_all(self, now: float) -> None:
        """Every operation still generating finishes now."""
        for _, _, op in self._running:
            op.done_at = min(op.done_at, now)
            self._finished(op)
        self._running.clear()

    def _finished(self, op: Op) -> None:
        self.counts[_COUNT_OF_OUTCOME[op.outcome]] += 1

    def fail_finished(self, op: Op, now: float) -> None:
        """A finished operation turns out failed after all (its videos could not be written)."""
        self.advance(now)  # so that ``op`` has been counted under its first outcome
        self.counts[_COUNT_OF_OUTCOME[op.outcome]] -= 1
        op.outcome = "error"
        self._finished(op)

    def _forget_expired(self, now: float, retention_s: float) -> None:
        """Keep memory flat on a long-running server: drop operations past retention."""
        while self._order and self._order[0].expired(now, retention_s):
            op = self._order.popleft()
            self.by_id.pop(op.id, None)
            if op.file_id:
                self.files.pop(op.file_id, None)
