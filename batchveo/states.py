"""The job states and the only transitions allowed between them.

This module is the single owner of the state machine: the store refuses any
transition that is not listed here, so a bug elsewhere cannot quietly move a
job from, say, ``running`` back to ``pending`` (which would submit it twice).

    waiting ──► pending ──► submitting ──► running ──► generated ──► done
       │  ▲        │  ▲          │            │            │  ▲
       │  │        │  └─(retry)──┤            ├─► failed   │  └─(retry)── failed (at download)
       │  │        ▼             │            └─► expired  ├─► failed (at download)
       │  │    cancelled         ├─► uncertain             └─► expired
       │  │                      └─► failed
       │  └─(retry of its parent, or its own)── failed / cancelled
       ├─► failed (parent_failed, parent_expired)
       └─► cancelled

(uncertain: a submit in flight when we died, or whose outcome is unknown.)
``waiting``: a hop of a scene chain whose parent's video is not known yet (``chains``).
It becomes pending once its parent is done (carrying the parent's video uri), and ends
failed (``parent_failed``) when its parent ends failed, expired or cancelled, or
(``parent_expired``) when the parent's video is past the server's retention. An
uncertain parent holds it: neither the run nor the store moves it until the user
decides on the parent. ``retry`` of a parent sends its failed descendants back here.
``running -> expired``: polled only after the retention, the operation is gone
with its video (the machine was off for days); no poll can bring it back.
``running -> done``: the poll's answer carried the videos themselves (Vertex AI
inline), saved and made durable before the transition is written.

``pending`` is re-entered on the user's word (``retry``) from failed, uncertain
and expired, and by the submitter itself when a submit provably never left.
``retry`` sends a job whose *download* failed back to ``generated`` instead while
its video is still within the retention: it is fetched again, not paid again.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    WAITING = "waiting"
    PENDING = "pending"
    SUBMITTING = "submitting"
    RUNNING = "running"
    GENERATED = "generated"
    DONE = "done"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


S = JobState

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # waiting -> pending: the parent is done and its video still live (the store, in the
    # parent's own transaction); -> failed: the parent broke or its video is gone.
    S.WAITING: frozenset({S.PENDING, S.FAILED, S.CANCELLED}),
    # pending -> waiting: a released hop never sent, replaced (``load --replace``): it waits
    # for its parent's video again, and the load releases it at once.
    S.PENDING: frozenset({S.SUBMITTING, S.CANCELLED, S.WAITING}),
    # submitting -> pending: the request provably never reached the server.
    S.SUBMITTING: frozenset({S.RUNNING, S.PENDING, S.FAILED, S.UNCERTAIN}),
    # running -> running is not a transition: a still-running poll only reschedules.
    # running -> expired: a 404 past the retention, the video deleted before it was fetched.
    # running -> done: the poll's answer carried the videos themselves (Vertex inline),
    # saved and made durable before this transition is written.
    S.RUNNING: frozenset({S.GENERATED, S.DONE, S.FAILED, S.EXPIRED}),
    S.GENERATED: frozenset({S.DONE, S.EXPIRED, S.FAILED}),
    S.DONE: frozenset(),
    # The user's word (`batchveo retry`) sends these back to pending; a failed
    # download of a video still on the server goes back to generated (nothing billed).
    # A hop goes back to waiting instead: its parent's video is known again only once
    # the parent is done (the store releases it then).
    S.FAILED: frozenset({S.PENDING, S.GENERATED, S.WAITING}),
    S.UNCERTAIN: frozenset({S.PENDING, S.CANCELLED}),
    S.EXPIRED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING, S.WAITING}),
}

TERMINAL: frozenset[JobState] = frozenset({S.DONE, S.FAILED, S.EXPIRED, S.CANCELLED, S.UNCERTAIN})
"""States a run will not move a job out of by itself (uncertain waits for the user)."""

IN_FLIGHT: frozenset[JobState] = frozenset({S.SUBMITTING, S.RUNNING})
"""States that count against ``--max-inflight``: an operation may exist on the server."""

IN_PROGRESS: frozenset[JobState] = frozenset({S.SUBMITTING, S.RUNNING, S.GENERATED})
"""States a run moves a job on from by itself: while any job is in one, a run is not over."""

WORK_LEFT: frozenset[JobState] = IN_PROGRESS | {S.PENDING}
"""States that mean "run again to continue" when a run ends with jobs in them (exit 75)."""

HELD: frozenset[JobState] = frozenset({S.WAITING})
"""Neither terminal nor work left: a hop waits on its parent (released in the parent's
own transaction, so a run that ends with one waiting has its parent uncertain: the
user's to decide, not a reason to run again)."""


class ErrorKind(StrEnum):
    """Why a job ended failed (stored in ``jobs.error_kind``)."""

    CONTENT_POLICY = "content_policy"
    BAD_REQUEST = "bad_request"
    OPERATION_ERROR = "operation_error"
    FILTERED = "filtered"
    RETRIES_EXHAUSTED = "retries_exhausted"
    OPERATION_LOST = "operation_lost"
    SUBMIT_UNKNOWN = "submit_outcome_unknown"
    INTERRUPTED = "interrupted"
    EXPIRED = "expired"
    DOWNLOAD = "download"
    PARENT_FAILED = "parent_failed"
    """A hop of a scene chain whose parent (or an earlier hop) ended without a video."""
    PARENT_EXPIRED = "parent_expired"
    """A hop whose parent's video is past the server's retention: it cannot be extended."""


def is_allowed(src: JobState, dst: JobState) -> bool:
    return dst in TRANSITIONS[src]


def check_transition(src: JobState, dst: JobState) -> None:
    """Raise ``IllegalTransition`` unless ``src -> dst`` is in the table."""
    if not is_allowed(src, dst):
        from batchveo.errors import IllegalTransition

        raise IllegalTransition(f"illegal transition {src.value} -> {dst.value}")
