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

from batchveo.routes import Route, resolve_route
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
    "provider",
    "project",
    "location",
    "storage_uri",
    "samples_requested",
    "samples_returned",
    "samples_filtered",
    "filtered_reasons",
    "sample_cost_usd",
    "extends",
    "chain_root",
    "hop",
    "parent_generated_at",
    "output_s",
    "posters",
)
_COLUMNS_BEFORE_006 = COLUMNS.index("finished_at") + 1
_LATER_COLUMNS = 6
"""Migration 011's five columns and 013's one, the last ones: a row written before chains
and posters has none."""
ROUTE_COLUMNS = ("provider", "project", "location", "storage_uri")
"""A job's stored route, in ``Route``'s order (migration 006; NULL: the run's)."""
RETURNING = ", ".join(COLUMNS)
"""The columns of a ``Job``, in order: for ``SELECT`` and ``RETURNING``."""
SELECT = f"SELECT {RETURNING} FROM jobs"
JSON_COLUMNS = frozenset({"params", "inputs", "video_uris", "files", "filtered_reasons", "posters"})
_LIST_COLUMNS = frozenset({"video_uris", "files", "filtered_reasons", "posters"})
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
        "samples_returned",
        "samples_filtered",
        "filtered_reasons",
        "posters",
        "inputs",
        "parent_generated_at",
    }
)
"""The bookkeeping a transition or ``update`` may set; what a job asks for is fixed at load.
Setting ``samples_returned`` also sets ``cost_usd`` (``writes``): a job costs the videos
it returned. ``inputs`` and ``parent_generated_at`` are a hop's, set once its parent's
video is known (``chainwrites``): the video it extends is known only then."""


_NO_ROUTE = (None, None, None, None)


def route_parts(route: Route | None) -> tuple[str | None, str | None, str | None, str | None]:
    """A route as its four columns (``ROUTE_COLUMNS``); all NULL for None."""
    if route is None:
        return _NO_ROUTE
    return (route.provider, route.project, route.location, route.storage_uri)


def in_states(states: Iterable[JobState]) -> str:
    """``state IN ('a','b')``: SQL text of states built from the enum, never typed by hand.

    One state is ``state = 'a'``: a partial index on one state (``jobs_backoff``) is
    used only by a query whose terms imply its own, and SQLite sees that of ``=`` alone."""
    values = [repr(s.value) for s in states]
    return f"state = {values[0]}" if len(values) == 1 else f"state IN ({','.join(values)})"


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
    provider: str | None
    project: str | None
    location: str | None
    storage_uri: str | None
    samples_requested: int
    """Videos the job asked for (``sampleCount``)."""
    samples_returned: int | None
    """Videos the service returned; None until it answered (or on a Gemini-format route,
    which returns what was asked or nothing)."""
    samples_filtered: int | None
    """Videos the safety filter kept back (``raiMediaFilteredCount``)."""
    filtered_reasons: list[str]
    """The filter's reasons for those (``raiMediaFilteredReasons``)."""
    sample_cost_usd: float
    """Estimated cost of one returned video; ``cost_usd`` is it times the videos returned
    (or asked for, until the answer)."""
    posters: list[str | None]
    """Each video's poster frame (migration 013), in the order of ``files``: its path
    relative to the video's folder (its name: it lies beside the video, and moves with
    it), None for a video that gave none; empty until made."""
    extends: str | None = None
    """A hop of a scene chain: the job whose video it extends (migration 011)."""
    chain_root: str | None = None
    hop: int | None = None
    parent_generated_at: float | None = None
    """When the parent's video was made, written as the hop is released."""
    output_s: int | None = None
    """A hop's video length (what it is priced as); None for any other job."""

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        """A row of ``COLUMNS``; a row of the columns before migration 006 (a literal row
        written before routes) gets that migration's defaults."""
        if len(row) == _COLUMNS_BEFORE_006:
            row = (*row, None, None, None, None, 1, None, None, None, row[10])
        if len(row) == len(COLUMNS) - _LATER_COLUMNS:
            row = (*row, *(None,) * _LATER_COLUMNS)
        d = dict(zip(COLUMNS, row, strict=True))
        d["state"] = JobState(d["state"])
        for col in JSON_COLUMNS:
            d[col] = decode(col, d[col])
        return cls(**d)

    @property
    def route(self) -> Route | None:
        """Where the job was loaded to go: None parts (None for a job loaded before routes,
        or without any) are the run's (``resolved_route``)."""
        parts = (self.provider, self.project, self.location, self.storage_uri)
        return None if parts == _NO_ROUTE else Route(*parts)

    def resolved_route(self, default: Route) -> Route:
        """The whole route this job goes by in a run whose own route is ``default``."""
        return resolve_route(self.route, default)

    @property
    def partly_filtered(self) -> bool:
        """Fewer videos came back than were asked for (the rest kept back by the filter)."""
        return self.samples_returned is not None and 0 < self.samples_returned < (
            self.samples_requested
        )

    def spec(self, default_route: Route | None = None) -> JobSpec:
        """The job's request; with ``default_route`` (the run's), its route made whole, as
        the client that sends it needs it."""
        return JobSpec.from_row(
            id=self.id,
            batch=self.batch,
            prompt=self.prompt,
            model=self.model,
            params=self.params,
            inputs=self.inputs,
            output_name=self.output_name,
            source=self.source or "",
            route=self.route if default_route is None else self.resolved_route(default_route),
            extends=self.extends,
            chain_root=self.chain_root,
            hop=self.hop,
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
    rerouted: int = 0
    """Of ``existing``: never-sent jobs given this load's route (the latest load's word)."""


@dataclass(frozen=True)
class Transition:
    """One guarded state change: applies only if the job is still in ``src``."""

    job_id: str
    src: JobState
    dst: JobState
    fields: Mapping[str, Any] = field(default_factory=dict)
    detail: str | None = None
