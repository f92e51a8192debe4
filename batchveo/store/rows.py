"""The job table's row types and their codec: a row as Python sees it, and back.

Every other store module reads and writes rows through these names: the column
list (``COLUMNS``, in table order), which columns hold JSON, which ones a
transition may set, and the one function that turns a committed row into the
event observers hear.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchveo.spec import JobSpec
from batchveo.states import JobState

COLUMNS = (
    "id",
    "batch",
    "state",
    "spec_hash",
    "prompt",
    "model",
    "params",
    "inputs",
    "output_name",
    "source",
    "cost_usd",
    "operation",
    "video_uris",
    "files",
    "error_kind",
    "error",
    "attempts",
    "next_attempt_at",
    "next_poll_at",
    "polls",
    "created_at",
    "updated_at",
    "submitted_at",
    "generated_at",
    "finished_at",
)
RETURNING = ", ".join(COLUMNS)
"""The columns of a ``Job``, in order: for ``SELECT`` and ``RETURNING``."""
SELECT = f"SELECT {RETURNING} FROM jobs"
JSON_COLUMNS = frozenset({"params", "inputs", "video_uris", "files"})
_LIST_COLUMNS = frozenset({"video_uris", "files"})
UPDATABLE = frozenset(
    {
        "operation",
        "video_uris",
        "files",
        "error_kind",
        "error",
        "attempts",
        "next_attempt_at",
        "next_poll_at",
        "polls",
        "submitted_at",
        "generated_at",
        "finished_at",
    }
)
"""The bookkeeping a transition or ``update`` may set; what a job asks for is fixed at load."""


def in_states(states: Iterable[JobState]) -> str:
    """``state IN ('a','b')``: SQL text of states built from the enum, never typed by hand."""
    return f"state IN ({','.join(repr(s.value) for s in states)})"


def encode(col: str, value: Any) -> Any:
    """A value as the column stores it (JSON columns as canonical JSON text)."""
    if col in JSON_COLUMNS and value is not None and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def decode(col: str, raw: Any) -> Any:
    """A JSON column's value as Python (an empty list or dict where nothing is stored)."""
    if not raw:
        return [] if col in _LIST_COLUMNS else {}
    return json.loads(raw)


@dataclass(frozen=True)
class Job:
    """One row of the job table, decoded."""

    id: str
    batch: str
    state: JobState
    spec_hash: str
    prompt: str
    model: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    output_name: str | None
    source: str | None
    cost_usd: float
    operation: str | None
    video_uris: list[str]
    files: list[dict[str, Any]]
    error_kind: str | None
    error: str | None
    attempts: int
    next_attempt_at: float | None
    next_poll_at: float | None
    polls: int
    created_at: float
    updated_at: float
    submitted_at: float | None
    generated_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        d = dict(zip(COLUMNS, row, strict=True))
        d["state"] = JobState(d["state"])
        for col in JSON_COLUMNS:
            d[col] = decode(col, d[col])
        return cls(**d)

    def spec(self) -> JobSpec:
        return JobSpec.from_row(
            id=self.id,
            batch=self.batch,
            prompt=self.prompt,
            model=self.model,
            params=self.params,
            inputs=self.inputs,
            output_name=self.output_name,
            source=self.source or "",
        )

    def as_dict(self) -> dict[str, Any]:
        d = {col: getattr(self, col) for col in COLUMNS}
        d["state"] = self.state.value
        return d


@dataclass(frozen=True)
class Event:
    """One line of a job's history, as ``batchveo show`` prints it."""

    job_id: str
    from_state: str | None
    to_state: str
    at: float
    attempt: int
    detail: str | None


@dataclass(frozen=True)
class TransitionEvent:
    """One committed state change, as told to observers (log file, progress display)."""

    job_id: str
    batch: str
    from_state: str
    to_state: str
    at: float
    attempt: int
    detail: str | None
    operation: str | None
    error_kind: str | None
    error: str | None

    @classmethod
    def of(cls, job: Job, src: JobState, at: float, detail: str | None) -> TransitionEvent:
        """The event of ``job`` having just left ``src``: the only way the store builds one.

        ``job`` is the row as committed (its new state, attempt and error), so what
        observers hear is what the database holds, whichever write made the change.
        """
        return cls(
            job.id, job.batch, src.value, job.state.value, at, job.attempts, detail,
            job.operation, job.error_kind, job.error,
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "job": self.job_id,
            "batch": self.batch,
            "from": self.from_state,
            "to": self.to_state,
            "attempt": self.attempt,
            "operation": self.operation,
            "error_kind": self.error_kind,
            "error": self.error,
            "detail": self.detail,
        }


TransitionObserver = Callable[[TransitionEvent], None]


@dataclass(frozen=True)
class AddResult:
    new: int
    existing: int
    replaced: int


@dataclass(frozen=True)
class Transition:
    """One guarded state change: applies only if the job is still in ``src``."""

    job_id: str
    src: JobState
    dst: JobState
    fields: Mapping[str, Any] = field(default_factory=dict)
    detail: str | None = None
