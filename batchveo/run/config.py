"""A run's settings: what ``batchveo run``'s flags say, in one frozen value.

Every field has its unit in its name and a line on why it exists; the command line fills
them (``cli``), tests build them with ``dataclasses.replace``. Nothing here reads the
environment or the clock: a config is the same value however often it is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from batchveo.models import RETENTION_S
from batchveo.verdicts import MediaResolution, ReviewSettings


@dataclass(frozen=True)
class ReviewFlags:
    """``run --review`` and its flags: which batches' videos are reviewed, and how."""

    review_all: bool = False
    """``--review``: every batch (its manifest's ``review:`` or the defaults); without it,
    only the batches whose manifest asks for reviews."""
    model: str | None = None
    rubric: str | None = None
    threshold: float | None = None
    retakes: int | None = None
    fps: float | None = None
    media_resolution: MediaResolution | None = None
    """The flags that override a batch's settings (None: not given)."""
    rpm: float = 10.0
    """``--review-rpm``: review requests per minute (their own pacer; 0: unpaced)."""
    in_flight: int = 2
    """``--review-inflight``: reviews on their way at once."""
    location: str | None = None
    """``--review-location`` (Vertex AI): the region of the reviewing model, where it is
    offered (None: the route's own region)."""

    def settings_for(self, stored: ReviewSettings | None) -> ReviewSettings | None:
        """A batch's review settings (its manifest's ``stored`` ones, with the flags over
        them); None if its videos are not reviewed."""
        if stored is None and not self.review_all:
            return None
        given = {
            name: value
            for name in ("model", "rubric", "threshold", "retakes", "fps", "media_resolution")
            if (value := getattr(self, name)) is not None
        }
        return replace(stored or ReviewSettings(), **given)


@dataclass(frozen=True)
class RunConfig:
    out_dir: Path = Path("videos")
    """``--out``: every video lands below this folder, never outside it."""
    rpm: float = 10.0
    """Submits per minute; 0 means unpaced (a local simulator, a benchmark)."""
    max_inflight: int = 10
    """Cap on submitting + running jobs: operations that may exist on the server."""
    max_attempts: int = 5
    """Sends of one job that reached the server (a 5xx, a timeout) before it is failed."""
    first_poll_s: float = 10.0
    """The first poll of a new operation, this long after its submit (fixed schedule)."""
    poll_interval_s: float = 10.0
    """Between two polls of an operation, for its first two minutes (fixed schedule); also
    the shortest wait after a 429 or an early 404 on a poll."""
    poll_max_interval_s: float = 60.0
    """Long generations are polled less and less often, up to this interval (either
    schedule)."""
    max_notice_delay_s: float | None = None
    """``--max-notice-delay``: learn the poll schedule per model and resolution from the
    finished jobs (``run.pollplan``), keeping the expected delay between an operation's
    end and its done answer within this. None: the fixed schedule of ``first_poll_s`` and
    ``poll_interval_s`` (what a run given both flags does, and every test that builds a
    config by hand)."""
    learn_first_poll: bool = True
    """With ``max_notice_delay_s``: the first poll is learned too (False: ``--first-poll``
    was given, and wins)."""
    learn_poll_interval: bool = True
    """With ``max_notice_delay_s``: the intervals are learned too (False:
    ``--poll-interval`` was given, and wins)."""
    poll_max_first_s: float = 300.0
    """A learned first poll is never later than this after the submit."""
    poll_jitter: float = 0.1
    """Each poll interval is this share longer or shorter at random: polls do not bunch."""
    polls_count_against_rpm: bool = False
    """Polls take a pacer turn too (a reseller counting them in its per-minute quota)."""
    operation_grace_s: float = 60.0
    """A 404 on a poll this soon after submit is the service catching up, not a loss."""
    retention_s: float = RETENTION_S
    """How long the service keeps a video (two days): past it, a 404 means deleted."""
    backoff_base_s: float = 2.0
    """The first retry of one job waits about this; each further one twice as long."""
    backoff_max_s: float = 300.0
    """No retry of one job (nor a 429's pause) waits longer than this."""
    submitters: int = 4
    """Submit workers: requests that may be on their way to the server at once."""
    poll_concurrency: int = 8
    """Polls that may be on their way at once."""
    downloaders: int = 4
    """Download workers: videos streaming to disk at once."""
    max_runtime_s: float | None = None
    """``--max-runtime``: the run ends at this limit, whatever is in flight (cron)."""
    shutdown_grace_s: float = 60.0
    """How long a stop waits for submits in flight to come back and be recorded."""
    resubmit_uncertain: bool = False
    """Send ``uncertain`` jobs again (the user's word: they may be paid twice)."""
    unreachable_limit_s: float = 900.0
    """Stop the run (work kept, exit 75) when the service stays unreachable this long."""
    max_jobs: int | None = None
    """Cap on new submits in this run (a first small try of a big batch)."""
    watch_dir: Path | None = None
    """Keep running and load every new manifest that appears here (a drop folder)."""
    watch_interval_s: float = 10.0
    """How often the drop folder (and the database, for another process's loads) is read."""
    budget_usd: float | None = None
    """Cap on the estimated cost of every job ever submitted from this database."""
    review: ReviewFlags = field(default_factory=ReviewFlags)
    """The review stage's flags (``run.reviewer``)."""
    posters: bool = True
    """Make each video's poster frame as it is saved (``--no-posters``: not now; ``report``
    makes the missing ones when it is written). Decoding a frame is most of a saved video's
    CPU on a fast simulator; against a real quota it is nothing."""

    @property
    def schedule_horizon_s(self) -> float:
        """The furthest ahead a run schedules a poll or a retry (the first poll, the
        longest poll interval with its jitter, the longest backoff or 429 pause).

        A stored time later than this from now was written by a clock since set back.
        (A poll held back by a per-day quota may wait longer; pulled in, it is asked once
        more and waits again.)
        """
        longest_poll_s = max(self.poll_interval_s, self.poll_max_interval_s)
        first_s = self.first_poll_s
        if self.max_notice_delay_s is not None and self.learn_first_poll:
            first_s = max(first_s, self.poll_max_first_s)
        return max(first_s, longest_poll_s * (1 + self.poll_jitter), self.backoff_max_s)
