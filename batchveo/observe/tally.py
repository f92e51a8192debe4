"""What the progress displays count: a run's work, fed by transitions and run events.

Jobs move only through the store, so the counts follow the store's ``TransitionEvent``s
(one per committed state change); the few run-level events (a 429 pause, a manifest
dropped in the ``--watch`` folder) add what no transition says. Counting is a few
dictionary updates per event: the displays read the counters when they redraw.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from batchveo.observe.text import one_line
from batchveo.states import JobState
from batchveo.store import TransitionEvent

S = JobState

TODO_STATES = (S.WAITING, S.PENDING, S.SUBMITTING, S.RUNNING, S.GENERATED)
"""Jobs in these states at the start of a run are the run's work ("total to do"; a scene
chain's waiting hops too: the run sends them once their parent is done)."""
ERROR_STATES = frozenset({S.FAILED, S.UNCERTAIN, S.EXPIRED})
ENDED_STATES = frozenset({S.DONE, *ERROR_STATES})


def flatten_counts(per_batch: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """``Store.counts()`` (per batch) to the ``{state: n}`` the displays start from."""
    out: dict[str, int] = {}
    for counts in per_batch.values():
        for state, n in counts.items():
            out[state] = out.get(state, 0) + n
    return out


class Tally:
    """Counters of one run, fed by transitions and run events; cheap per event.

    ``total`` is the run's work: jobs in pending/submitting/running/generated
    at the start, plus jobs that re-enter pending from a finished state later
    (a ``retry`` from another terminal), minus pending jobs cancelled meanwhile.
    """

    def __init__(self, counts: Mapping[str, int] | None = None, *, keep_errors: int = 5):
        self.states: dict[str, int] = {}
        self.total = 0
        self.ended: Counter[str] = Counter()
        """Jobs that reached done/failed/uncertain/expired during this run."""
        self.pauses = 0
        self.pause_s = 0.0
        self.errors: deque[str] = deque(maxlen=keep_errors)
        self._rate_limited: set[str] = set()
        """Jobs refused by a 429 whose hand-back to pending is still to come."""
        self.reset(counts or {})

    def reset(self, counts: Mapping[str, int]) -> None:
        self.states = {s.value: 0 for s in JobState}
        for state, n in counts.items():
            self.states[str(state)] = self.states.get(str(state), 0) + int(n)
        self.total = sum(self.states[s.value] for s in TODO_STATES)
        self.ended.clear()

    def transition(self, e: TransitionEvent) -> None:
        src, dst = e.from_state, e.to_state
        self.states[src] = max(0, self.states.get(src, 0) - 1)
        self.states[dst] = self.states.get(dst, 0) + 1
        if dst == S.PENDING and src not in (S.SUBMITTING, S.WAITING):
            self.total += 1
        elif src in (S.PENDING, S.WAITING) and dst == S.CANCELLED:
            self.total = max(0, self.total - 1)
        if dst in ENDED_STATES:
            self.ended[dst] += 1
        if dst in ERROR_STATES:
            self.note_error(e.job_id, e.error or e.error_kind or dst)
        elif src == S.SUBMITTING and dst == S.PENDING and e.error:
            self._retried(e.job_id, e.error)

    def _retried(self, job: str, error: str) -> None:
        """A submit handed back to pending to be sent again, with why (a claim given back
        unsent as a run stops carries no error). A 429 is counted as a pause, not shown
        as an error: it was announced by its ``rate_limited`` event just before."""
        if job in self._rate_limited:
            self._rate_limited.discard(job)
        else:
            self.note_error(job, error)

    def run_event(self, name: str, details: Mapping[str, Any]) -> None:
        if name == "rate_limited":
            self.pauses += 1
            self.pause_s += float(details.get("pause_s") or 0.0)
            self._rate_limited.add(str(details.get("job", "?")))
        elif name == "manifest_loaded":  # --watch: new jobs arrive without a transition
            new = int(details.get("new") or 0)
            self.total += new
            self.states[S.PENDING] = self.states.get(S.PENDING, 0) + new
        elif name == "manifest_rejected":
            self.note_error(str(details.get("path", "?")), "manifest rejected")

    def note_error(self, job: str, error: str) -> None:
        self.errors.append(one_line(f"{job}: {error}", 200))

    @property
    def submitted(self) -> int:
        """Jobs of this run past the submit step (accepted, or finished at submit)."""
        waiting = sum(self.states.get(s, 0) for s in (S.WAITING, S.PENDING, S.SUBMITTING))
        return max(0, self.total - waiting)

    @property
    def generating(self) -> int:
        return self.states.get(S.RUNNING, 0)

    @property
    def downloaded(self) -> int:
        return self.ended[S.DONE]
