"""What the report's first page says of the whole night, gathered as the jobs go by.

The report reads its jobs one at a time (a million of them must not be in memory at
once), so the numbers at the top are added up job by job while the cards are written:
counts per state, cost, the hours it ran, and the jobs that need attention with the page
their card is on. Those are listed up to ``MAX_ATTENTION_LINKS`` and counted beyond. So are
the reviews: how many passed, were flagged, failed or were skipped, what they cost, and
the flagged takes with their score and page (the flagged filter acts on one page's cards;
this list reaches every page).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from batchveo.states import JobState
from batchveo.store import Job, Review, ReviewStatus

S = JobState

BAR_ORDER: tuple[JobState, ...] = (
    S.DONE,
    S.GENERATED,
    S.RUNNING,
    S.SUBMITTING,
    S.PENDING,
    S.WAITING,
    S.CANCELLED,
    S.EXPIRED,
    S.UNCERTAIN,
    S.FAILED,
)
"""States in the order the bar, the legend and the state filter show them."""

ATTENTION: frozenset[JobState] = frozenset({S.FAILED, S.UNCERTAIN, S.EXPIRED})
"""States the user has to look at in the morning."""

MAX_ATTENTION_LINKS = 1000
"""Jobs needing attention the first page links one by one (the rest are counted: a night
where everything failed must still give a page a browser opens; ``batchveo export
--state failed`` lists them all)."""


@dataclass(frozen=True)
class Flagged:
    """A take its review flagged, its score, and the page its card is on."""

    id: str
    score: float | None
    page: int


@dataclass(frozen=True)
class Attention:
    """A job needing attention, and the page its card is on (1: the first)."""

    id: str
    state: JobState
    page: int


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class Night:
    """The numbers of the jobs seen so far (``add``), and the batches of the report."""

    batches: Mapping[str, int]
    """Jobs per batch in the report, known before the first card (the title, the batch
    label on cards)."""
    batch: str | None = None
    """The batch asked for (``--batch``), None for every batch."""
    counts: dict[JobState, int] = field(default_factory=lambda: dict.fromkeys(BAR_ORDER, 0))
    jobs: int = 0
    done: int = 0
    video_s: int = 0
    """Seconds of video made: each done job's duration times its files."""
    cost_usd: float = 0.0
    """Estimated cost of the done jobs."""
    partly_filtered: int = 0
    first_submit: float | None = None
    first_created: float | None = None
    last_finished: float | None = None
    last_download: float | None = None
    """The latest end of a done job."""
    attention: list[Attention] = field(default_factory=list)
    attention_total: int = 0
    reviews: dict[ReviewStatus, int] = field(default_factory=lambda: dict.fromkeys(ReviewStatus, 0))
    """Recorded reviews per outcome (a review still due is not counted)."""
    review_cost_usd: float = 0.0
    flagged: list[Flagged] = field(default_factory=list)
    """The first ``MAX_ATTENTION_LINKS`` flagged takes, in the order of the cards."""

    @property
    def reviewed(self) -> int:
        return sum(self.reviews.values())

    @classmethod
    def of(
        cls,
        jobs: Iterable[Job],
        *,
        batch: str | None = None,
        reviews: Mapping[str, Review] | None = None,
    ) -> Night:
        """The night of ``jobs`` all on one page (``reviews``: theirs, by job id)."""
        jobs = list(jobs)
        reviews = reviews or {}
        batches: dict[str, int] = {}
        for job in jobs:
            batches[job.batch] = batches.get(job.batch, 0) + 1
        night = cls(batches, batch)
        for job in jobs:
            night.add(job, 1, reviews.get(job.id))
        return night

    def add(self, job: Job, page: int, review: Review | None = None) -> None:
        """Count ``job``, whose card is on ``page``, and its recorded ``review``."""
        self.jobs += 1
        self.counts[job.state] += 1
        self.first_submit = _min(self.first_submit, job.submitted_at)
        self.first_created = _min(self.first_created, job.created_at)
        self.last_finished = _max(self.last_finished, job.finished_at)
        if job.state is S.DONE:
            self.done += 1
            self.video_s += int(job.params.get("durationSeconds") or 0) * max(1, len(job.files))
            self.cost_usd += job.cost_usd
            self.last_download = _max(self.last_download, job.finished_at)
            self.partly_filtered += job.partly_filtered
        if job.state in ATTENTION:
            self.attention_total += 1
            if len(self.attention) < MAX_ATTENTION_LINKS:
                self.attention.append(Attention(job.id, job.state, page))
        if review is not None and review.status is not None:
            self.reviews[review.status] += 1
            self.review_cost_usd += review.cost_usd
            if review.status is ReviewStatus.FLAGGED and len(self.flagged) < MAX_ATTENTION_LINKS:
                self.flagged.append(Flagged(job.id, review.score, page))

    def title(self) -> str:
        if self.batch is not None:
            return self.batch
        if len(self.batches) == 1:
            return next(iter(self.batches))
        return f"{len(self.batches)} batches" if self.batches else "batchveo"

    @property
    def started(self) -> float | None:
        """The first submit, or before any, the first load."""
        return self.first_submit if self.first_submit is not None else self.first_created
