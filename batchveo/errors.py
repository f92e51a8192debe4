"""Every error batchveo raises, and what each one tells the runner to do.

    BatchveoError
    ├── UserError .................. bad input from the user: one line, exit 2
    │   ├── ManifestError .......... every problem of a manifest at once
    │   └── ConfigError ............ missing key, bad flag value
    ├── StoreError ................. the store misused: a bug in batchveo, exit 70, except
    │   ├── DatabaseUnusable ....... the user's (also a UserError, exit 2): not a database,
    │   │                            one written by a newer batchveo, an SQLite too old
    │   ├── IllegalTransition ...... the state table forbids it (a bug)
    │   └── StaleTransition ........ the row was not in the expected state (another process
    │                                moved it first: a race a CLI command reports as exit 3)
    └── ApiError ................... the service said no, or could not be reached
        ├── RetryLater ............. try the same request again later
        │   ├── RateLimited ........ 429: pause every submitter for retry_after_s
        │   ├── Transient .......... 5xx, reset, timeout
        │   │   ├── NotSent ........ provably never left: not an attempt, nothing billed
        │   │   └── WrongBytes ..... a download's bytes are not the video (cut short,
        │   │                        not the storage's size or checksum, no MP4)
        │   ├── NotFound ........... 404 on an operation or a file (caller decides)
        │   └── FileRefused ........ 401/403 on a download: concerns that file only
        ├── JobRejected ............ this job can never succeed as it is: fail it
        │   ├── ContentRejected .... 400 content policy
        │   ├── BadRequest ......... any other 400
        │   └── UnusableVideo ...... a video URI that can never be fetched as it is
        ├── StopRun ................ nothing else will work either: stop the run
        │   ├── AccountError ....... 401, 403, insufficient balance
        │   ├── ModelUnavailable ... unknown or retired model
        │   └── QuotaExhausted ..... a per-day quota: nothing until tomorrow
        ├── MalformedAnswer ........ the server's answer is not what the API sends (too big, ...)
        │   └── VerdictUnusable .... a review's answer is no verdict (breaks the schema, a
        │                            refusal): kept as a review error, the video stays done
        ├── TooLargeToReview ....... a video the route cannot be shown inline (over the budget)
        └── SubmitOutcomeUnknown ... the submit may have reached the server: never resend silently
    OutputUnusable ................. one job's output file cannot be written (name too long,
                                     a file where a folder must be): that job only, not the disk

Messages never contain the API key: the client builds them from the server's
``error.message`` and our own words only.

How each stage of a run reacts to each error: the row of the error's class, or of the
nearest class above it that has one (``reaction(stage, error)``; a stage catches
``BatchveoError`` once and asks, so the order of ``except`` clauses means nothing;
tests/test_errors.py walks every class and stage against this table, and the table
against ``REACTIONS``):

    error                 submit        poll          download      review
    BatchveoError         raise         raise         raise         raise
    ApiError              raise         count         raise         record
    RetryLater            retry         retry         try-again     retry
    RateLimited           rate-limited  rate-limited  try-again     rate-limited
    NotSent               not-sent      retry         try-again     retry
    NotFound              retry         not-found     try-again     retry
    JobRejected           fail          count         try-again     record
    StopRun               stop          halt          halt          stop-reviews
    QuotaExhausted        quota         quota         quota         stop-reviews
    MalformedAnswer       raise         count         try-again     record
    SubmitOutcomeUnknown  uncertain     count         raise         record
    OutputUnusable        raise         raise         fail          raise
    VerdictUnusable       raise         raise         raise         record
    TooLargeToReview      raise         raise         raise         skip

    raise         not expected from this stage's calls: a bug. The stage's exception ends
                  the run (the runner lets the submits in flight be recorded first); the
                  job stays where it was, and the next run takes it up.
    uncertain     (submit) the job ends uncertain: it may be billed, so it is never
                  resent without the user's word (``--resubmit-uncertain``, ``retry``).
    not-sent      (submit) back to pending, no attempt spent; the whole service out of
                  reach pauses every submit, and stops the run after a while (exit 75).
    rate-limited  every request pauses (the pacer; 429s in a row slow the rate). A submit
                  goes back to pending, no attempt spent; a poll is asked again after it.
    retry         (submit) back to pending after a backoff, an attempt spent; failed
                  (retries_exhausted) after ``max_attempts``. (poll) asked again after a
                  backoff, with no limit: the operation is paid for.
    fail          the job ends failed, with the error's kind (on a download: ``download``).
    quota         a per-day quota is spent. (submit) back to pending, no attempt spent; no
                  more submits (exit 75), but a ``--watch`` run holds them back until the
                  reset instead. (poll, download) asked again after the reset (or a
                  backoff): a paid operation waits, it is not dropped. (A ``StopRun``
                  only for submits: Google counts only those.)
    stop          (submit) back to pending, no attempt spent; no more submits, but what is
                  paid for is still polled and downloaded; exit 4.
    halt          (poll, download) every stage stops now; exit 4; the job stays as it is
                  and the next run takes it up.
    not-found     (poll) expired once older than the retention; else asked again, and
                  failed (operation_lost) after a few 404s past the grace.
    count         (poll) an answer the API does not give: asked again after a backoff;
                  failed (operation_error) after a few in a row.
    try-again     (download) a failed try: again after a backoff, until the downloader's
                  rules give up (failed) or the video is gone past the retention (expired).

    The review column (``run.reviewer``): a review never changes its job's state, nor the
    run's exit code (a video on disk and verified is done). ``retry`` there: asked again
    after a backoff, recorded as a review error after a few tries; ``rate-limited``: every
    review pauses (the reviews' own pacer), asked again after it, no try spent.
    record        the review is kept as an error, with the model's text if it said any.
    skip          the review is kept as skipped (``review skipped: too large``).
    stop-reviews  no more reviews this run (the account or model refused them); submits,
                  polls and downloads go on; the reviews left are asked next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BatchveoError(Exception):
    """Base of everything batchveo raises on purpose."""


class UserError(BatchveoError):
    """The user's input is wrong; the CLI prints the message and exits 2."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located precisely enough to fix it."""

    where: str  # "jobs.yaml:12" or "jobs.csv row 4"
    job: str | None
    message: str

    def __str__(self) -> str:
        job = f", job {self.job}" if self.job else ""
        return f"{self.where}{job}: {self.message}"


MAX_PROBLEMS_KEPT = 1000
"""The problems a load keeps, in file order; the rest are counted (``ManifestError.more``):
one bad default can make every row of a million-row manifest wrong."""


class ManifestError(UserError):
    def __init__(self, problems: list[Problem], *, more: int = 0):
        self.problems = problems
        self.more = more
        """Problems found past the ``problems`` kept (``MAX_PROBLEMS_KEPT``), not listed."""
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(UserError):
    pass


class StoreError(BatchveoError):
    """The store was asked something it must never be asked (an unknown column, a forbidden
    transition): a bug in batchveo, not in the user's input. The CLI says so (exit 70).

    The store's errors that *are* the user's are ``DatabaseUnusable``."""


class DatabaseUnusable(StoreError, UserError):
    """The database file cannot be used as it is: not an SQLite file, written by a newer
    batchveo, or this Python's SQLite is too old. The user's to fix: one line, exit 2."""


class IllegalTransition(StoreError):
    pass


class StaleTransition(StoreError):
    """A guarded update matched no row: someone else moved the job first."""


class ApiError(BatchveoError):
    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)


class RetryLater(ApiError):
    pass


class RateLimited(RetryLater):
    def __init__(self, message: str, *, retry_after_s: float | None = None, status: int = 429):
        self.retry_after_s = retry_after_s
        super().__init__(message, status=status)


class Transient(RetryLater):
    pass


class WrongBytes(Transient):
    """A download was answered, but its bytes are not the video: cut short, not the size
    or checksum its storage's metadata gives, or not an MP4. The ``.part`` is discarded;
    the next try may get the right bytes (the downloader decides how many tries)."""


class NotSent(Transient):
    """The request provably never left, so the server cannot have counted or billed it.

    ``unreachable`` means the connection itself failed (refused, DNS, connect
    timeout): the whole service is out of reach, not just this request.
    """

    def __init__(self, message: str, *, unreachable: bool):
        self.unreachable = unreachable
        super().__init__(message)


class NotFound(RetryLater):
    pass


class FileRefused(RetryLater):
    """A 401/403 on a download (the Files API says so about missing or expired files).

    It concerns that one file: the run goes on polling and downloading the rest,
    and retries this one with backoff (submits and polls still say whether the
    account itself is refused).
    """


class JobRejected(ApiError):
    kind = "bad_request"


class ContentRejected(JobRejected):
    kind = "content_policy"


class BadRequest(JobRejected):
    kind = "bad_request"


class UnusableVideo(JobRejected):
    """The video URI cannot be fetched as it is (not http(s), a redirect loop or to a
    non-HTTP URL, a body over the size cap or in an encoding nobody asked for)."""

    kind = "download"


class StopRun(ApiError):
    pass


class AccountError(StopRun):
    pass


class ModelUnavailable(StopRun):
    pass


class QuotaExhausted(StopRun):
    """A per-day quota is spent: no submit will pass until it resets (``retry_after_s``
    when the server said when)."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ):
        self.retry_after_s = retry_after_s
        super().__init__(message, status=status)


class MalformedAnswer(ApiError):
    """The server answered something the API never sends (a body over the size cap, say)."""


class VerdictUnusable(MalformedAnswer):
    """A review's answer that is no verdict: text that breaks the schema, or a refusal.

    ``text`` is what the model said (redacted like any message): the review is recorded as
    an error with it, and the video it was about stays done.
    """

    def __init__(self, message: str, *, text: str = ""):
        self.text = text
        super().__init__(message)


class TooLargeToReview(ApiError):
    """A video too large to send inline, on a route with no other way to show it to the
    model: the review is skipped (recorded), the video stays done."""


class SubmitOutcomeUnknown(ApiError):
    """The request may have reached the server and created a paid operation."""


class OutputUnusable(BatchveoError):
    """One job's output file cannot be written where it must go (a name too long for the
    file system, a file standing where a folder must be, a path that would leave ``--out``).

    It concerns that job only: the job fails (or takes another name) and the run goes on.
    Errors that say the disk itself is unusable (no space, read-only, I/O) stop the run
    (``StopRun``) instead.
    """


class Stage(StrEnum):
    """The stages of a run, the columns of the reaction table."""

    SUBMIT = "submit"
    POLL = "poll"
    DOWNLOAD = "download"
    REVIEW = "review"


class Reaction(StrEnum):
    """What a stage does about an error (see the table in this module's docstring)."""

    RAISE = "raise"
    UNCERTAIN = "uncertain"
    NOT_SENT = "not-sent"
    RATE_LIMITED = "rate-limited"
    RETRY = "retry"
    FAIL = "fail"
    QUOTA = "quota"
    STOP = "stop"
    HALT = "halt"
    NOT_FOUND = "not-found"
    COUNT = "count"
    TRY_AGAIN = "try-again"
    RECORD = "record"
    SKIP = "skip"
    STOP_REVIEWS = "stop-reviews"


_R = Reaction
REACTIONS: dict[type[BatchveoError], tuple[Reaction, Reaction, Reaction, Reaction]] = {
    # error class:          (submit,          poll,            download,     review)
    BatchveoError:          (_R.RAISE,        _R.RAISE,        _R.RAISE,     _R.RAISE),
    ApiError:               (_R.RAISE,        _R.COUNT,        _R.RAISE,     _R.RECORD),
    RetryLater:             (_R.RETRY,        _R.RETRY,        _R.TRY_AGAIN, _R.RETRY),
    RateLimited:            (_R.RATE_LIMITED, _R.RATE_LIMITED, _R.TRY_AGAIN, _R.RATE_LIMITED),
    NotSent:                (_R.NOT_SENT,     _R.RETRY,        _R.TRY_AGAIN, _R.RETRY),
    NotFound:               (_R.RETRY,        _R.NOT_FOUND,    _R.TRY_AGAIN, _R.RETRY),
    JobRejected:            (_R.FAIL,         _R.COUNT,        _R.TRY_AGAIN, _R.RECORD),
    StopRun:                (_R.STOP,         _R.HALT,         _R.HALT,      _R.STOP_REVIEWS),
    QuotaExhausted:         (_R.QUOTA,        _R.QUOTA,        _R.QUOTA,     _R.STOP_REVIEWS),
    MalformedAnswer:        (_R.RAISE,        _R.COUNT,        _R.TRY_AGAIN, _R.RECORD),
    SubmitOutcomeUnknown:   (_R.UNCERTAIN,    _R.COUNT,        _R.RAISE,     _R.RECORD),
    OutputUnusable:         (_R.RAISE,        _R.RAISE,        _R.FAIL,      _R.RAISE),
    VerdictUnusable:        (_R.RAISE,        _R.RAISE,        _R.RAISE,     _R.RECORD),
    TooLargeToReview:       (_R.RAISE,        _R.RAISE,        _R.RAISE,     _R.SKIP),
}  # fmt: skip
"""The table of this module's docstring: one row per class that decides for itself."""

_COLUMN = {stage: i for i, stage in enumerate(Stage)}


def reaction(stage: Stage, error: BatchveoError) -> Reaction:
    """What ``stage`` does about ``error``: the row of its class or the nearest above it."""
    for cls in type(error).__mro__:
        row = REACTIONS.get(cls)
        if row is not None:
            return row[_COLUMN[stage]]
    raise TypeError(f"not a batchveo error: {error!r}")  # unreachable: BatchveoError has a row
