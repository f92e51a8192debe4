"""What a run ends with: its jobs' states and counts, its exit code and its one-line summary.

``RunResult`` is the one place a run's exit code is decided (``exit_code``: an account
refused, work left, failures, or all well, in that order) and the words the run's last
line says (``summary``), so the command line, cron's log and the tests read the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchveo.exitcodes import ExitCode
from batchveo.run.context import RunStats
from batchveo.states import WORK_LEFT, JobState

S = JobState


@dataclass
class RunResult:
    states: dict[str, int]
    stats: RunStats
    stop_reason: str | None = None
    account_error: str | None = None
    """What stopped the run for good (``StopPolicy.fatal_error``: an account refused, a
    retired model, a disk that refuses): exit 4."""
    recovered_uncertain: list[str] = field(default_factory=list)
    cleaned_partials: int = 0
    over_budget: int = 0
    """Pending jobs left alone because their estimated cost would exceed a budget."""
    reviews: dict[str, int] = field(default_factory=dict)
    """Reviews recorded in this run, by outcome (``passed``, ``flagged``, ...): told, never
    part of the exit code."""
    reviews_stopped: str | None = None
    reviews_over_budget: int = 0
    """Reviews left due because their estimate would exceed a budget (a later run with
    room asks them): told, like every review, never part of the exit code."""

    @property
    def work_left(self) -> int:
        return sum(self.states.get(s.value, 0) for s in WORK_LEFT)

    @property
    def exit_code(self) -> ExitCode:
        if self.account_error:
            return ExitCode.ACCOUNT
        if self.work_left:
            return ExitCode.STOPPED
        bad = sum(self.states.get(s.value, 0) for s in (S.FAILED, S.EXPIRED, S.UNCERTAIN))
        return ExitCode.FAILURES if bad else ExitCode.OK

    def summary(self) -> str:
        parts = [f"{n} {state}" for state, n in self.states.items() if n]
        text = ", ".join(parts) or "no jobs"
        if self.reviews or self.reviews_stopped or self.reviews_over_budget:
            told = ", ".join(f"{n} {outcome}" for outcome, n in self.reviews.items())
            text += f"; reviews: {told or 'none'}"
            text += f" ({self.reviews_stopped})" if self.reviews_stopped else ""
            if self.reviews_over_budget:
                text += (
                    f"; {self.reviews_over_budget} review(s) left for later: their estimated"
                    " cost would exceed the budget"
                )
        if self.account_error:
            return f"stopped: {self.account_error}; jobs left pending ({text})"
        if self.over_budget:
            text += (
                f"; {self.over_budget} job(s) left pending: their estimated cost would exceed"
                " the budget"
            )
        if self.work_left and self.stop_reason:
            return f"{self.stop_reason} with work left, run again to continue ({text})"
        return text
