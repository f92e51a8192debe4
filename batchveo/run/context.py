"""What the three stages of a run share: the store, the routes' lanes, the stop policy.

The stages (``submitter``, ``poller``, ``downloader``) never talk to each other directly:
they move jobs between states in the store, and the store tells observers about every
committed transition. What a transition means for the others is decided here, once
(``observe``): a job back in ``pending`` or ``failed`` may be work for a submitter (or
budget freed), a job entering ``running`` is an operation for the poller. The in-flight
slots count themselves from the same transitions (``slots``). So any stage can be
restarted from the database alone, and no stage wakes another by hand.

How a run stops is one policy with named levels (``StopLevel``); it only ever rises,
and every rise wakes every waiter so that each looks at the level that concerns it.
One route may stop submitting before the run does (``stop_route``: its account refused,
its daily quota spent); the run stops submitting when every route has.

Each route a run serves is a lane (``lanes``: its client, pacer and in-flight slots);
``lane_for(job)`` is the lane of the job at hand.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

from batchveo.clock import Alarms
from batchveo.routes import Route
from batchveo.run.config import RunConfig
from batchveo.run.lanes import ClientsByRoute, Lane, Lanes
from batchveo.run.pollplan import PollPlan, schedule_details
from batchveo.run.wakeups import Signal
from batchveo.spec import JobSpec
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job, Store, TransitionEvent

__all__ = [
    "Client",
    "ClientsByRoute",
    "Lane",
    "Observer",
    "RunConfig",
    "RunContext",
    "RunStats",
    "StopLevel",
]

S = JobState


class Client(Protocol):
    """The part of ``api.VeoClient`` a run uses; tests may pass their own."""

    async def submit(self, spec: JobSpec) -> str: ...

    async def poll(self, operation_name: str, model: str) -> Any: ...

    async def download(self, uri: str, dest: Path) -> Any: ...

    async def save(self, data: bytes, dest: Path) -> Any:
        """A video that came inline (``OperationStatus.inline_videos``), made durable at
        ``dest`` as a download would be (checked, fsynced, never over another video)."""
        ...


class VideoQueue(Protocol):
    """Where the poller hands a job whose video is made (``downloader.DownloadQueue``)."""

    def add(self, job: Job, due_at: float = 0.0) -> None: ...

    def wake_all(self) -> None: ...


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


Observer = Callable[[str, dict[str, Any]], None]
"""Called with (event name, details) on every state change; must not block."""


class StopLevel(IntEnum):
    """How far a run is on its way out; it only rises, and each level does what the
    lower ones do."""

    RUNNING = 0
    NO_SUBMITS = 1
    """No new claims; what is in flight is still polled and downloaded, and the run ends
    when that is done (``--max-runtime``'s margin, a spent daily quota, an account error
    on a submit)."""
    WIND_DOWN = 2
    """Interrupted (a signal, the service unreachable too long, an internal error): the
    submits in flight get ``shutdown_grace_s`` to come back and be recorded, then END."""
    END = 3
    """Every stage returns now: a second signal, the ``--max-runtime`` limit, an account
    or disk error on a poll or download, a wind-down's grace over, or nothing left to do."""


class StopPolicy:
    """The run's stop level, the first reason given, and the error that is fatal to it."""

    def __init__(self, clock: Alarms) -> None:
        self.level = StopLevel.RUNNING
        self.reason: str | None = None
        """Why the run stopped early (the first reason given wins)."""
        self.fatal_error: str | None = None
        """What nothing else will work around (an account refused, a retired model, a disk
        that refuses to write): the run exits 4."""
        self.changed = Signal(clock)
        self._listeners: list[Callable[[], None]] = []

    def raise_to(self, level: StopLevel, reason: str | None = None) -> None:
        if reason is not None and self.reason is None:
            self.reason = reason
        if level > self.level:
            self.level = level
            for wake in self._listeners:
                wake()
            self.changed.fire()

    def fatal(self, error: str, level: StopLevel, reason: str) -> None:
        self.fatal_error = error
        self.raise_to(level, reason)

    def on_change(self, wake: Callable[[], None]) -> None:
        """``wake`` is called at every rise: waiters that a stop must reach."""
        self._listeners.append(wake)

    def submits_stopped(self) -> bool:
        return self.level >= StopLevel.NO_SUBMITS

    def interrupted(self) -> bool:
        return self.level >= StopLevel.WIND_DOWN

    def ended(self) -> bool:
        return self.level >= StopLevel.END


class RunContext:
    """Shared state of one run: created inside the running loop."""

    def __init__(
        self,
        store: Store,
        clients: Client | ClientsByRoute,
        config: RunConfig,
        downloads: VideoQueue,
        *,
        clock: Alarms,
        lanes: Lanes | None = None,
        observer: Observer | None = None,
        rng: random.Random | None = None,
        polls: PollPlan | None = None,
    ):
        """``clients``: one client for every job (a single route), or the run's clients by
        route; ``lanes`` as the runner built them (by default, from ``clients`` alone);
        ``polls`` as the runner built it (by default, one that has seen no finished job)."""
        self.store = store
        self.config = config
        self.clock = clock
        """The run clock (the store's), with alarms: every due time of the run is on it."""
        self.rng = rng or random.Random()
        if not isinstance(clients, ClientsByRoute):
            clients = ClientsByRoute.single(clients)
        self.lanes = lanes or Lanes.build(clients, config, clock, rng=self.rng)
        self.polls = polls or PollPlan(config, self.rng)
        """When each operation is polled (the first poll, the next after a running answer)."""
        self.polls.on_learned = lambda key, learned, samples: self.emit(
            "poll_schedule", **schedule_details(key, learned, samples)
        )
        self.default_route: Route = self.lanes.default
        """The run's own route (its flags): fills what a job's stored route leaves unset."""
        self.downloads = downloads
        self.observer = observer
        self.stats = RunStats()
        self.stop = StopPolicy(clock)
        self.new_work = Signal(clock)
        """A job went back to pending or failed (budget freed), or manifests were loaded:
        submitters that found nothing to claim look again."""
        self.new_operation = Signal(clock)
        """A job entered running: the poller looks at its schedule again."""
        self.may_be_drained = Signal(clock)
        """Work in flight reached nothing, a stage ended, a submitter found nothing it could
        ever send: the runner checks whether the run is over."""
        for wake in (
            self.new_work.fire,
            self.new_operation.fire,
            self.may_be_drained.fire,
            self.lanes.wake_all,
            self.downloads.wake_all,
        ):
            self.stop.on_change(wake)

    def lane_for(self, job: Job) -> Lane:
        """The lane (client, pacer, slots) of ``job``'s route."""
        return self.lanes.for_job(job)

    def submits_stopped(self, lane: Lane) -> bool:
        """No more submits on ``lane``: the run's, or that route's alone."""
        return lane.stopped is not None or self.stop.submits_stopped()

    def stop_route(self, lane: Lane, why: str, *, fatal: str | None = None) -> None:
        """No more submits on ``lane``'s route; the other routes go on, and once none is
        left the run stops submitting (what is paid for is still polled and downloaded).

        ``fatal``: what nothing will work around on this route (its account refused, its
        model retired): the run exits 4 once the rest is done. With several routes the
        messages name the route.
        """
        if self.lanes.several:
            why = f"{lane.name}: {why}"
            fatal = None if fatal is None else f"{lane.name}: {fatal}"
        if fatal is not None and self.stop.fatal_error is None:
            self.stop.fatal_error = fatal
        lane.stopped = why
        if not self.lanes.open():
            self.stop.raise_to(StopLevel.NO_SUBMITS, why)
            return
        lane.slots.wake_all()
        lane.pacer.wake_all()
        self.new_work.fire()
        self.may_be_drained.fire()
        self.stats.note_error(why)
        self.emit("route_stopped", route=lane.name, reason=why)

    def now(self) -> float:
        return self.clock()

    def emit(self, event: str, **details: Any) -> None:
        if self.observer is not None:
            self.observer(event, details)

    def observe(self, event: TransitionEvent) -> None:
        """A committed transition (a store observer): who must look again because of it."""
        if event.to_state in (S.PENDING, S.FAILED):
            self.new_work.fire()
        elif event.to_state == S.RUNNING:
            self.new_operation.fire()

    def backoff_s(self, attempt: int) -> float:
        """Exponential backoff with full jitter, for retrying one job."""
        c = self.config
        # The exponent is capped: retries until the retention can count thousands of tries.
        cap = min(c.backoff_max_s, c.backoff_base_s * 2.0 ** min(max(0, attempt - 1), 64))
        return cap * (0.5 + self.rng.random() / 2)

    def note_unreachable(self, lane: Lane) -> float:
        """``lane``'s service could not be reached: pause its submits; stop the run if it
        lasts too long (the same outage would keep its polls failing too)."""
        now = self.now()
        if lane.unreachable_since is None:
            lane.unreachable_since = now
        lane.unreachable_streak += 1
        if now - lane.unreachable_since >= self.config.unreachable_limit_s:
            minutes = self.config.unreachable_limit_s / 60
            what = f"{lane.name} unreachable" if self.lanes.several else "service unreachable"
            self.stop.raise_to(StopLevel.WIND_DOWN, f"{what} for {minutes:g} min")
        pause_s = self.backoff_s(lane.unreachable_streak)
        lane.pacer.pause(pause_s)
        return pause_s

    def note_reachable(self, lane: Lane) -> None:
        lane.unreachable_since = None
        lane.unreachable_streak = 0

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
        return ended
