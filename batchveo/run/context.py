"""What the three stages of a run share: settings, the store, the client, the pacer.

The stages (``submitter``, ``poller``, ``downloader``) never talk to each
other directly: they move jobs between states in the store and nudge each
other through the events here, so any of them can be restarted from the
database alone.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from batchveo.models import RETENTION_S
from batchveo.run.pacing import Pacer
from batchveo.spec import JobSpec
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job, Store


@dataclass(frozen=True)
class RunConfig:
    out_dir: Path = Path("videos")
    rpm: float = 10.0
    """Submits per minute; 0 means unpaced (a local simulator, a benchmark)."""
    max_inflight: int = 10
    """Cap on submitting + running jobs: operations that may exist on the server."""
    max_attempts: int = 5
    first_poll_s: float = 10.0
    poll_interval_s: float = 10.0
    poll_max_interval_s: float = 60.0
    """Long generations are polled less and less often, up to this interval."""
    poll_jitter: float = 0.1
    polls_count_against_rpm: bool = False
    operation_grace_s: float = 60.0
    """A 404 on a poll this soon after submit is the service catching up, not a loss."""
    retention_s: float = RETENTION_S
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    submitters: int = 4
    poll_concurrency: int = 8
    downloaders: int = 4
    max_runtime_s: float | None = None
    shutdown_grace_s: float = 60.0
    """How long a stop waits for submits in flight to come back and be recorded."""
    resubmit_uncertain: bool = False
    unreachable_limit_s: float = 900.0
    """Stop the run (work kept, exit 75) when the service stays unreachable this long."""
    max_jobs: int | None = None
    """Cap on new submits in this run (a first small try of a big batch)."""
    watch_dir: Path | None = None
    """Keep running and load every new manifest that appears here (a drop folder)."""
    watch_interval_s: float = 10.0
    budget_usd: float | None = None
    """Cap on the estimated cost of every job ever submitted from this database."""

    @property
    def schedule_horizon_s(self) -> float:
        """The furthest ahead a run schedules a poll or a retry (the first poll, the
        longest poll interval with its jitter, the longest backoff or 429 pause).

        A stored time later than this from now was written by a clock since set back.
        (A poll held back by a per-day quota may wait longer; pulled in, it is asked once
        more and waits again.)
        """
        longest_poll_s = max(self.poll_interval_s, self.poll_max_interval_s)
        return max(self.first_poll_s, longest_poll_s * (1 + self.poll_jitter), self.backoff_max_s)


class Client(Protocol):
    """The part of ``api.VeoClient`` a run uses; tests may pass their own."""

    async def submit(self, spec: JobSpec) -> str: ...

    async def poll(self, operation_name: str, model: str) -> Any: ...

    async def download(self, uri: str, dest: Path) -> Any: ...


@dataclass
class RunStats:
    submitted: int = 0
    submit_errors: int = 0
    polls: int = 0
    generated: int = 0
    downloaded: int = 0
    failed: int = 0
    uncertain: int = 0
    expired: int = 0
    recent_errors: list[str] = field(default_factory=list)

    def note_error(self, message: str, keep: int = 5) -> None:
        self.recent_errors.append(message)
        del self.recent_errors[:-keep]


@dataclass(order=True)
class DueJob:
    due_at: float
    generated_at: float
    job: Job = field(compare=False)
    tries: int = field(default=0, compare=False)


class DownloadQueue:
    """Generated jobs, closest to expiry first, each with its own retry time.

    Filled from the database when a run starts and by the poller as videos are
    made, so downloaders never sweep the table.
    """

    def __init__(self) -> None:
        self._heap: list[DueJob] = []
        self._known: set[str] = set()

    def add(self, job: Job, due_at: float = 0.0) -> None:
        if job.id not in self._known:
            self._known.add(job.id)
            heapq.heappush(self._heap, DueJob(due_at, job.generated_at or 0.0, job))

    def pop_due(self, now: float) -> DueJob | None:
        if self._heap and self._heap[0].due_at <= now:
            return heapq.heappop(self._heap)
        return None

    def next_due(self) -> float | None:
        return self._heap[0].due_at if self._heap else None

    def retry(self, item: DueJob, due_at: float) -> None:
        heapq.heappush(self._heap, DueJob(due_at, item.generated_at, item.job, item.tries + 1))

    def forget(self, job_id: str) -> None:
        self._known.discard(job_id)

    def __len__(self) -> int:
        return len(self._heap)


Observer = Callable[[str, dict[str, Any]], None]
"""Called with (event name, details) on every state change; must not block."""


class RunContext:
    """Shared state of one run: created inside the running loop."""

    def __init__(
        self,
        store: Store,
        client: Client,
        config: RunConfig,
        pacer: Pacer,
        *,
        observer: Observer | None = None,
        rng: random.Random | None = None,
    ):
        self.store = store
        self.client = client
        self.config = config
        self.pacer = pacer
        self.observer = observer
        self.rng = rng or random.Random()
        self.stats = RunStats()
        self.stop_claiming = asyncio.Event()
        """Set on a signal, --max-runtime or a stop error: no new submits."""
        self.interrupted = asyncio.Event()
        """Set by a signal or a stop error: wind down now, not when the work is done."""
        self.stop_all = asyncio.Event()
        """Set when the run must wind down entirely (account error, second signal)."""
        self.stop_reason: str | None = None
        self.account_error: str | None = None
        self.wake_submitters = asyncio.Event()
        """Work may have appeared: a manifest loaded, budget freed, a stop to notice."""
        self.slot_freed = Waiters()
        """Submitters waiting for an in-flight slot; each release wakes one."""
        self.wake_poller = asyncio.Event()
        self.wake_downloader = Waiters()
        """Idle downloaders; each new video wakes one."""
        self.downloads = DownloadQueue()
        self.inflight = 0
        self.new_submits = 0
        self.active_submitters = 0
        self.poll_errors: dict[str, int] = {}
        """Consecutive failed polls per job (in memory: a restart gives them a fresh start)."""
        self.unreachable_since: float | None = None
        self._unreachable_streak = 0

    def now(self) -> float:
        return self.store.clock()

    def emit(self, event: str, **details: Any) -> None:
        if self.observer is not None:
            self.observer(event, details)

    def backoff_s(self, attempt: int) -> float:
        """Exponential backoff with full jitter, for retrying one job."""
        c = self.config
        # The exponent is capped: retries until the retention can count thousands of tries.
        cap = min(c.backoff_max_s, c.backoff_base_s * 2.0 ** min(max(0, attempt - 1), 64))
        return cap * (0.5 + self.rng.random() / 2)

    def stop_submitting(self, reason: str) -> None:
        """No new submits; operations already running are still polled and downloaded."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_claiming.set()
        self.wake_submitters.set()
        self.slot_freed.wake_all()
        self.wake_poller.set()
        self.wake_downloader.wake_all()

    def request_stop(self, reason: str, *, everything: bool = False) -> None:
        """Wind the run down now: in-flight submits are recorded, the rest stops."""
        self.stop_submitting(reason)
        self.interrupted.set()
        if everything:
            self.stop_all.set()
            self.wake_poller.set()
            self.wake_downloader.wake_all()

    def note_poll_error(self, job_id: str) -> int:
        n = self.poll_errors[job_id] = self.poll_errors.get(job_id, 0) + 1
        return n

    def note_unreachable(self) -> float:
        """The service could not be reached: pause all submits; stop if it lasts too long."""
        now = self.now()
        if self.unreachable_since is None:
            self.unreachable_since = now
        self._unreachable_streak += 1
        if now - self.unreachable_since >= self.config.unreachable_limit_s:
            minutes = self.config.unreachable_limit_s / 60
            self.request_stop(f"service unreachable for {minutes:g} min")
        pause_s = self.backoff_s(self._unreachable_streak)
        self.pacer.pause(pause_s)
        return pause_s

    def note_reachable(self) -> None:
        self.unreachable_since = None
        self._unreachable_streak = 0

    async def end_job(
        self, job: Job, src: JobState, dst: JobState, kind: ErrorKind, why: str, **fields: Any
    ) -> Job:
        """End ``job`` in ``dst`` (failed, uncertain, expired) with the reason recorded."""
        ended = await self.store.transition(
            job.id, src, dst, error_kind=kind.value, error=why, finished_at=self.now(),
            detail=why, **fields,
        )  # fmt: skip
        if dst is JobState.EXPIRED:
            self.stats.expired += 1
        elif dst is JobState.UNCERTAIN:
            self.stats.uncertain += 1
        else:
            self.stats.failed += 1
        self.stats.note_error(f"{job.id}: {why}")
        self.emit(dst.value, job=job.id, error_kind=kind.value, error=why)
        if dst is JobState.FAILED:
            self.wake_submitters.set()  # an uncharged failure frees budget
        return ended

    def submitters_done(self) -> bool:
        return self.active_submitters == 0

    def still_watching(self) -> bool:
        """A ``--watch`` run waits for new work, until it stops submitting for good."""
        return self.config.watch_dir is not None and not self.stop_claiming.is_set()

    def pipeline_idle(self) -> bool:
        """Nothing can become generated any more: no submitter, no operation in flight."""
        return self.submitters_done() and self.inflight == 0

    def release_slot(self) -> None:
        """A job left submitting/running: another submit may start."""
        self.inflight = max(0, self.inflight - 1)
        self.slot_freed.wake_one()
        if self.inflight == 0:
            # Perhaps the end: idle workers must look now, not at their next timeout.
            self.wake_submitters.set()
            self.wake_downloader.wake_all()


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait for a wake-up ``event`` (then clear it) or the timeout; True if it was set.

    Only for the ``wake_*`` nudges: never for a stop flag, which must stay set.
    """
    try:
        async with asyncio.timeout(None if timeout_s is None else max(0.0, timeout_s)):
            await event.wait()  # (asyncio.timeout, unlike wait_for, starts no task)
    except TimeoutError:
        return False
    event.clear()
    return True


class Waiters:
    """Workers waiting for one thing each: ``wake_one`` hands it to exactly one of them.

    An Event wakes every waiter for what only one can take (a freed slot, a new
    video); at 2,000 jobs and 64 workers that was most of a run's wake-ups.
    """

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def wait(self, timeout_s: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await fut
        except TimeoutError:
            pass
        finally:
            if not fut.done():
                fut.cancel()

    def wake_one(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def wake_all(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
