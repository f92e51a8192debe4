"""What a run would do, without doing it: ``batchveo plan`` and ``run --dry-run``.

A plan validates the manifests exactly as a run would, compares them with what
the database already holds (read only: nothing is written, nothing is sent),
and estimates seconds of video and cost from the price table.

It lets through what the budgets would let through, by the run's own rule
(``store.BudgetRoom``): a run sends the pending jobs one claim at a time, oldest
row first (the database's pending jobs before the manifests' new ones), each
claim committing its estimated cost; the plan walks the same jobs in the same
order, from the same committed amounts, with the manifests' batch budgets and
``--budget``. What a run cannot know in advance it does not guess: jobs that
fail uncharged (a safety filter) free budget during a run, so a run may send
more than its plan, never less.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from batchveo.models import Prices, billed_params, estimate_params_cost_usd
from batchveo.run.config import ReviewFlags
from batchveo.run.review_cost import estimate_review_usd
from batchveo.spec import JobSpec
from batchveo.states import JobState
from batchveo.store import COMMITTED_STATES, MICRO_USD, BudgetRoom, Snapshot
from batchveo.verdicts import ReviewSettings

S = JobState


@dataclass
class Plan:
    jobs: int = 0
    new: int = 0
    already: Counter[JobState] = field(default_factory=Counter)
    """Jobs of the manifests already in the database, by their state there."""
    other_pending: int = 0
    """Pending jobs of the database not in these manifests: a run sends them too, first."""
    to_submit: int = 0
    video_s: int = 0
    cost_usd: float = 0.0
    over_budget: int = 0
    over_run_budget: int = 0
    """Of ``over_budget``: the jobs ``--budget`` holds back."""
    over_batch_budget: Counter[str] = field(default_factory=Counter)
    """Of ``over_budget``: the jobs their batch's budget holds back, by batch."""
    budget_usd: float | None = None
    committed_usd: float = 0.0
    """Estimated cost already committed in the database (submitted or made)."""
    batch_budgets: dict[str, dict[str, float]] = field(default_factory=dict)
    """The budgets of the batches with jobs to send: ``{batch: {budget_usd, committed_usd}}``."""
    by_model: Counter[str] = field(default_factory=Counter)
    reviews: int = 0
    """Videos of the jobs to send that their batch's ``review:`` has a model watch."""
    review_cost_usd: float = 0.0
    """Their reviews' estimated cost (``review_cost``: tokens from seconds of video)."""
    retakes_worst_usd: float = 0.0
    """If every reviewed job were flagged and retaken ``retakes`` times: the extra takes'
    cost with their reviews (a worst case; a budget caps what is actually sent)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "new": self.new,
            "already_loaded": dict(self.already),
            "other_pending": self.other_pending,
            "to_submit": self.to_submit,
            "video_seconds": self.video_s,
            "estimated_cost_usd": round(self.cost_usd, 2),
            "over_budget": self.over_budget,
            "over_budget_by": {
                "budget": self.over_run_budget,
                "batch_budgets": dict(self.over_batch_budget),
            },
            "budget_usd": self.budget_usd,
            "already_committed_usd": round(self.committed_usd, 2),
            "batch_budgets": {
                name: {k: round(v, 2) for k, v in b.items()}
                for name, b in self.batch_budgets.items()
            },
            "by_model": dict(self.by_model),
            "reviews": self.reviews,
            "estimated_review_cost_usd": round(self.review_cost_usd, 4),
            "retakes_worst_case_usd": round(self.retakes_worst_usd, 2),
        }


@dataclass(frozen=True)
class _Candidate:
    """A job a run would try to claim, in the order it would."""

    batch: str
    model: str
    params: Mapping[str, Any]
    cost_usd: float
    take: int = 1
    """Which take of its job it is (a retake waiting to be sent: 2, 3, ...)."""


@dataclass
class _Stored:
    states: dict[str, JobState] = field(default_factory=dict)
    """The stored state of each of the manifests' ids that is in the database."""
    queued: list[tuple[str, _Candidate]] = field(default_factory=list)
    """The database's sendable jobs, oldest row first: ``(id, candidate)``."""
    caps: dict[str, float] = field(default_factory=dict)
    committed_micro_usd: dict[str, int] = field(default_factory=dict)
    reviews: dict[str, ReviewSettings] = field(default_factory=dict)
    """The batches' review settings stored by earlier loads."""


def _read(
    db: Path, ids: list[str], prices: Prices | None, sendable: tuple[JobState, ...]
) -> _Stored:
    """What the database holds that the run would act on (read only)."""
    out = _Stored()
    with Snapshot.open(db) as snap:
        if snap is None:
            return out  # no database (plan creates none), or one with no job table yet
        # A run with --prices reprices every job before its first claim: so does this.
        cost_of = None if prices is None else partial(_priced, prices=prices)
        out.caps = snap.caps()
        # Jobs the run sends again (--resubmit-uncertain) are pending, not committed, by then.
        still_committed = [s for s in COMMITTED_STATES if s not in sendable]
        out.committed_micro_usd = snap.committed_micro_usd(still_committed, cost_of)
        takes = snap.take_numbers(sendable)
        for job in snap.costed(sendable):  # the claim's order
            usd = job.cost_usd if cost_of is None else cost_of(job.model, job.params)
            take = takes.get(job.id, 1)
            out.queued.append((job.id, _Candidate(job.batch, job.model, job.params, usd, take)))
        out.states = snap.states_of(ids)
        out.reviews = snap.review_settings()
    return out


def _priced(model: str, params: Mapping[str, Any], *, prices: Prices) -> float:
    return estimate_params_cost_usd(model, params, prices)


def make_plan(
    specs: list[JobSpec],
    db: Path,
    *,
    budgets: Mapping[str, float] | None = None,
    prices: Prices | None = None,
    budget_usd: float | None = None,
    resubmit_uncertain: bool = False,
    reviews: Mapping[str, ReviewSettings] | None = None,
    review_all: bool = False,
) -> Plan:
    """What ``batchveo run`` with these manifests (``specs``, their batches' ``budgets``
    and ``reviews``) and flags would send from ``db``, what its budgets would keep pending,
    and what reviewing the videos would cost (``review_all``: every batch's, as
    ``run --review``)."""
    # A hop waiting on its parent is sent this run too, once the parent is done.
    sendable: tuple[JobState, ...] = (S.WAITING, S.PENDING)
    if resubmit_uncertain:
        sendable += (S.UNCERTAIN, S.SUBMITTING)
    stored = _read(db, [s.id for s in specs], prices, sendable)
    plan = Plan(jobs=len(specs), budget_usd=budget_usd)
    mine = {s.id for s in specs}
    candidates = [c for _, c in stored.queued]
    plan.other_pending = sum(1 for jid, _ in stored.queued if jid not in mine)
    for spec in specs:
        state = stored.states.get(spec.id)
        if state is not None:
            plan.already[state] += 1
            continue
        plan.new += 1
        billed = billed_params(spec.params, spec.output_s)  # a hop: its whole video
        cost = estimate_params_cost_usd(spec.model, billed, prices)
        candidates.append(_Candidate(spec.batch, spec.model, billed, cost))
    # Loading the manifests sets their batches' budgets and review settings (the
    # manifest's latest word wins).
    known = {**stored.reviews, **(reviews or {})}
    flags = ReviewFlags(review_all=review_all)

    def review_of(batch: str) -> ReviewSettings | None:
        return flags.settings_for(known.get(batch))

    committed = stored.committed_micro_usd
    room = BudgetRoom(budget_usd, {**stored.caps, **(budgets or {})}, dict(committed))
    plan.committed_usd = sum(committed.values()) / MICRO_USD
    for name in dict.fromkeys(c.batch for c in candidates):
        cap = room.caps.get(name)
        if cap is not None:
            plan.batch_budgets[name] = {
                "budget_usd": cap,
                "committed_usd": committed.get(name, 0) / MICRO_USD,
            }
    for c in candidates:
        held = room.blocking(c.batch, c.cost_usd)
        if held is not None:
            plan.over_budget += 1
            if held == "budget":
                plan.over_run_budget += 1
            else:
                plan.over_batch_budget[c.batch] += 1
            continue
        room.spend(c.batch, c.cost_usd)
        plan.to_submit += 1
        plan.video_s += int(c.params.get("durationSeconds", 8)) * int(
            c.params.get("sampleCount", 1)
        )
        plan.cost_usd += c.cost_usd
        plan.by_model[c.model] += 1
        if (settings := review_of(c.batch)) is not None:
            _add_reviews(plan, c, settings)
    return plan


def _add_reviews(plan: Plan, c: _Candidate, settings: ReviewSettings) -> None:
    """A job to send whose batch is reviewed: its videos' reviews, its retakes' worst case."""
    videos = int(c.params.get("sampleCount", 1))
    review_usd = videos * estimate_review_usd(settings, int(c.params.get("durationSeconds", 8)))
    plan.reviews += videos
    plan.review_cost_usd += review_usd
    left = max(0, 1 + settings.retakes - c.take)  # a retake has the rest of its job's
    plan.retakes_worst_usd += left * (c.cost_usd + review_usd)
