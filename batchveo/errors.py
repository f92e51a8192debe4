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
        │   │   └── NotSent ........ provably never left: not an attempt, nothing billed
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
        └── SubmitOutcomeUnknown ... the submit may have reached the server: never resend silently
    OutputUnusable ................. one job's output file cannot be written (name too long,
                                     a file where a folder must be): that job only, not the disk

Messages never contain the API key: the client builds them from the server's
``error.message`` and our own words only.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class ManifestError(UserError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
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


class SubmitOutcomeUnknown(ApiError):
    """The request may have reached the server and created a paid operation."""


class OutputUnusable(BatchveoError):
    """One job's output file cannot be written where it must go (a name too long for the
    file system, a file standing where a folder must be, a path that would leave ``--out``).

    It concerns that job only: the job fails (or takes another name) and the run goes on.
    Errors that say the disk itself is unusable (no space, read-only, I/O) stop the run
    (``StopRun``) instead.
    """
