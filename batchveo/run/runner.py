"""A run: load manifests, then drive every job of the database to a terminal state.

The runner composes the three stages (see ``submitter``, ``poller``,
``downloader``) over one store and the clients of the routes it serves (``lanes``: a
client, a pacer, in-flight slots and submitters per ``Route.key``; one client for every
job when it is given just one), and owns how a run ends:

* all work finished: every stage returns by itself (``--until-idle``);
* a stop request (first SIGINT/SIGTERM): no new claims, in-flight submits get
  ``shutdown_grace_s`` to return and be recorded, then everything else stops;
  nothing is lost, the next run continues;
* ``--max-runtime``: claims stop one grace before the limit (at most halfway),
  and at the limit the run ends, whatever is in flight: a limit that waited on
  top would let a cron run overlap the next. A submit cut off there stays
  ``submitting`` and becomes ``uncertain`` next time, as after a second signal;
* a second stop request: every task is cancelled at once. Still safe: a job
  cut off mid-submit stays ``submitting`` and becomes ``uncertain`` next time;
* an account error (401/403/balance) or an unusable model on a submit: no more
  submits on that route (the run's other routes go on: another account, project or
  region); operations already paid for are still polled and downloaded, then exit 4
  (on a poll or download: everything stops);
* a spent daily quota: as an account error, but exit 75 (``--watch``: wait for the reset).

Whether a run is over is decided in one place, ``_drained`` (arq's "burst" check): no
job is submitting, running or generated, no review is due (``reviewer``: it never changes
the exit code), and nothing more will be sent (submits
stopped on every route, ``--max-jobs`` spent, or no pending job that a route still
submitting could ever claim). The
stages never decide it for themselves: they wait for work until the stop level tells
them to return. The runner looks whenever that may have become true: the work in
flight reached nothing, a stage ended, a submitter found nothing it could ever send,
the stop level rose.
"""

from __future__ import annotations

import asyncio
import random

from batchveo.api.review import ReviewClient
from batchveo.clock import Alarm, Clock, RunClock, alarms_for
from batchveo.files import output_folder
from batchveo.run.context import (
    Client,
    ClientsByRoute,
    Observer,
    RunConfig,
    RunContext,
    StopLevel,
)
from batchveo.run.downloader import DownloadQueue, downloader
from batchveo.run.dropfolder import watch_folder
from batchveo.run.lanes import Lanes
from batchveo.run.loading import LoadResult, add_specs, load_into_store
from batchveo.run.poller import Poller
from batchveo.run.pollplan import HISTORY_ROWS, PollPlan
from batchveo.run.result import RunResult
from batchveo.run.reviewer import Reviewer, run_reviewer
from batchveo.run.submitter import lane_next_attempt_at, submitter
from batchveo.states import IN_PROGRESS, JobState
from batchveo.store import Store, TransitionEvent

__all__ = [
    "ClientsByRoute",
    "LoadResult",
    "RunResult",
    "Runner",
    "add_specs",
    "load_into_store",
]

S = JobState
MIN_CLAIMING_SHARE = 0.5
"""At least this share of ``--max-runtime`` is open to new submits: claims stop one
``shutdown_grace_s`` before the limit (so a submit sent just before has the whole
grace to come back), but never earlier than this, however long the grace."""
STOP_OTHERS_S = 5.0
"""How long a stop waits for polls and downloads in progress before cancelling them."""


class OpenWork:
    """Jobs in ``IN_PROGRESS`` states, counted from the store's transitions (a store
    observer): what the drain check reads without asking the database."""

    def __init__(self, ctx: RunContext, jobs: int) -> None:
        self._ctx = ctx
        self.jobs = jobs
        self.moves = 0
        """Transitions seen: a drain check that awaited the database looks whether any came."""

    def observe(self, event: TransitionEvent) -> None:
        self.moves += 1
        was, now = event.from_state in IN_PROGRESS, event.to_state in IN_PROGRESS
        if now and not was:
            self.jobs += 1
        elif was and not now:
            self.jobs -= 1
            if not self.jobs:
                self._ctx.may_be_drained.fire()


class Runner:
    def __init__(
        self,
        store: Store,
        clients: Client | ClientsByRoute,
        config: RunConfig,
        *,
        observer: Observer | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        review_client: ReviewClient | None = None,
    ):
        """``clients``: one client for every job (a single route, as the tests build it),
        or the run's clients by route (``run.app`` builds one per route with work);
        ``review_client``: every review's (by default each route's client)."""
        self.store = store
        if not isinstance(clients, ClientsByRoute):
            clients = ClientsByRoute.single(clients)
        self.clients = clients
        self.config = config
        self.observer = observer
        self.rng = rng or random.Random()
        self.clock = clock
        """The run's clock (the store's for the run); by default a ``RunClock`` on the
        store's wall clock. Tests pass their own to make time pass (with ``call_at``, see
        ``batchveo.clock.Alarms``, to own every due time of the run)."""
        self.ctx: RunContext | None = None
        self.review_client = review_client
        self.reviewer: Reviewer | None = None
        """The review stage, when a batch's videos are reviewed (``run.reviewer``)."""
        self._stop_requests = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._early_stop: str | None = None
        self._deadline: float | None = None
        """When ``--max-runtime`` ends the run, on the run clock."""

    def request_stop(self, reason: str = "interrupted") -> None:
        """First call: stop gracefully. Second call: stop at once (still safe)."""
        self._stop_requests += 1
        if self.ctx is None:
            self._early_stop = reason
            return
        if self._stop_requests == 1:
            self.ctx.stop.raise_to(StopLevel.WIND_DOWN, reason)
        else:
            self.ctx.stop.raise_to(StopLevel.END, reason)
            for t in self._tasks:
                t.cancel()

    async def run(self) -> RunResult:
        # Everything the run writes and compares reads one clock, immune to wall-clock
        # jumps (see batchveo.clock); the store is handed back its own clock afterwards.
        wall = self.store.clock
        self.store.clock = self.clock or RunClock(wall)
        try:
            return await self._run()
        finally:
            self.store.clock = wall

    async def _run(self) -> RunResult:
        store, config = self.store, self.config
        recovered = await store.recover_interrupted()
        await store.settle_chains()  # hops whose parent ended before a crash: moved on now
        now = store.clock()
        await store.pull_in_schedules(now + config.schedule_horizon_s, now)
        if config.resubmit_uncertain:
            await store.requeue([S.UNCERTAIN])
        with output_folder(config.out_dir) as out_folder:
            cleaned = out_folder.cleaned
            ctx, downloads = await self._context()
            self.ctx = ctx
            open_work = OpenWork(ctx, await store.count_states(IN_PROGRESS))
            self.reviewer = await run_reviewer(ctx, self.review_client)
            watchers = [ctx.lanes.observe, ctx.observe, open_work.observe]
            if self.reviewer is not None:
                watchers.append(self.reviewer.observe)
            store.observers.extend(watchers)
            try:
                if self._early_stop:
                    ctx.stop.raise_to(StopLevel.WIND_DOWN, self._early_stop)
                ctx.emit(
                    "run_started", recovered_uncertain=len(recovered), cleaned_partials=cleaned or 0
                )
                await self._drive(ctx, open_work, downloads)
            finally:
                for watcher in watchers:
                    store.observers.remove(watcher)
            states = {s.value: n for s, n in (await self._state_counts()).items()}
            _, over_budget = await store.claimable_pending(budget_usd=config.budget_usd)
            result = RunResult(
                over_budget=over_budget,
                states=states,
                stats=ctx.stats,
                stop_reason=ctx.stop.reason,
                account_error=ctx.stop.fatal_error,
                recovered_uncertain=recovered,
                cleaned_partials=cleaned or 0,
            )
            if self.reviewer is not None:
                recorded = self.reviewer.recorded.items()
                result.reviews = {status.value: n for status, n in recorded if n}
                if self.reviewer.retakes:
                    result.reviews["retaken"] = self.reviewer.retakes
                result.reviews_stopped = self.reviewer.stopped
                result.reviews_over_budget = self.reviewer.over_budget
            ctx.emit("run_finished", states=states, exit_code=result.exit_code)
        return result

    async def _context(self) -> tuple[RunContext, DownloadQueue]:
        """The run's shared state, from what the database holds at its start."""
        store, config = self.store, self.config
        clock = alarms_for(store.clock)
        lanes = Lanes.build(
            self.clients, config, clock, initial_delay_s=await self._restart_gap_s(),
            in_flight=await store.jobs([S.SUBMITTING, S.RUNNING]), rng=self.rng,
        )  # fmt: skip
        downloads = DownloadQueue(clock)
        for job in await store.jobs([S.GENERATED], order="generated_at"):
            lanes.for_job(job)  # a video nobody could fetch is a bug: found before any send
            downloads.add(job)
        learning = config.max_notice_delay_s is not None
        history = await store.generation_times(HISTORY_ROWS) if learning else []
        ctx = RunContext(
            store, self.clients, config, downloads, clock=clock, lanes=lanes,
            observer=self.observer, rng=self.rng, polls=PollPlan(config, self.rng, history),
        )  # fmt: skip
        return ctx, downloads

    async def _restart_gap_s(self) -> float:
        """Wait out the pacing gap since the last submit, even one from a previous run
        (of any route: every route waits it out, at most one period)."""
        if not self.config.rpm:
            return 0.0
        last = await self.store.last_submit_at()
        if last is None:
            return 0.0
        period_s = 60.0 / self.config.rpm
        # Never more than one period: a last submit "in the future" is a clock set back.
        return min(period_s, max(0.0, last + period_s - self.store.clock()))

    async def _state_counts(self) -> dict[JobState, int]:
        totals: dict[JobState, int] = {s: 0 for s in JobState}
        for counts in (await self.store.counts()).values():
            for state, n in counts.items():
                totals[JobState(state)] += n
        return totals

    async def _drive(self, ctx: RunContext, open_work: OpenWork, downloads: DownloadQueue) -> None:
        config = ctx.config
        subs = [
            asyncio.create_task(submitter(ctx, lane))
            for lane in ctx.lanes.all
            for _ in range(config.submitters)
        ]
        others = [asyncio.create_task(Poller(ctx).run())]
        others += [
            asyncio.create_task(downloader(ctx, downloads)) for _ in range(config.downloaders)
        ]
        if config.watch_dir is not None:
            others.append(asyncio.create_task(watch_folder(ctx, config.watch_dir)))
        if self.reviewer is not None:
            others += [
                asyncio.create_task(self.reviewer.worker()) for _ in range(config.review.in_flight)
            ]
        self._tasks = subs + others
        for t in self._tasks:  # arq's done-callback: an ended stage is looked at at once
            t.add_done_callback(lambda _: ctx.may_be_drained.fire())
        timers = self._max_runtime_timers(ctx)
        try:
            await self._until_over(ctx, open_work, subs, others)
        finally:
            for timer in timers:
                timer.cancel()
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                try:
                    await t
                except asyncio.CancelledError:
                    pass
                except Exception:
                    pass  # already raised by _until_over, or irrelevant once stopping

    def _max_runtime_timers(self, ctx: RunContext) -> list[Alarm]:
        """Near the end no new submits (their answers must have time to come back); until
        the very end, running operations are still polled and downloaded. At the limit
        everything stops, whatever is in flight: a submit cut off stays ``submitting``
        (uncertain next run), the rest goes on next run."""
        self._deadline = None
        limit_s = ctx.config.max_runtime_s
        if limit_s is None:
            return []
        start = ctx.now()
        self._deadline = start + limit_s
        margin_s = min(ctx.config.shutdown_grace_s, limit_s * (1 - MIN_CLAIMING_SHARE))
        reason = "max runtime reached"
        return [
            ctx.clock.call_at(
                start + limit_s - margin_s, lambda: ctx.stop.raise_to(StopLevel.NO_SUBMITS, reason)
            ),
            ctx.clock.call_at(self._deadline, lambda: ctx.stop.raise_to(StopLevel.END, reason)),
        ]

    async def _until_over(
        self,
        ctx: RunContext,
        open_work: OpenWork,
        subs: list[asyncio.Task[None]],
        others: list[asyncio.Task[None]],
    ) -> None:
        """The one loop that watches the run: a stage's error, a stop, or drained."""
        drained = False
        while True:
            looked = ctx.may_be_drained.mark()
            exc = next((e for t in self._tasks if (e := _error(t)) is not None), None)
            if exc is not None:
                # A bug in one stage: let the submits in flight be recorded first.
                ctx.stop.raise_to(StopLevel.WIND_DOWN, f"stopped by an internal error: {exc!r}")
                await self._wind_down(ctx, subs, others)
                raise exc
            if all(t.done() for t in self._tasks):
                return
            if ctx.stop.interrupted() and not drained:
                await self._wind_down(ctx, subs, others)
                return
            if not drained and await self._drained(ctx, open_work):
                drained = True
                ctx.stop.raise_to(StopLevel.END)  # every stage returns: nothing is left
                continue
            await ctx.may_be_drained.wait(looked)

    async def _drained(self, ctx: RunContext, open_work: OpenWork) -> bool:
        """arq's burst check: nothing in flight or to download, and nothing more to send."""
        while True:
            if open_work.jobs or (self.reviewer is not None and self.reviewer.busy()):
                return False
            if ctx.stop.submits_stopped() or ctx.lanes.sends_spent():
                return True
            if ctx.config.watch_dir is not None:
                return False  # a watching run waits for new work
            moves = open_work.moves
            times = [await lane_next_attempt_at(ctx, lane) for lane in ctx.lanes.open()]
            next_at = min((t for t in times if t is not None), default=None)
            if open_work.moves != moves:
                continue  # a job moved meanwhile: look again
            if next_at is not None:
                # Work to send (perhaps added by another process): submitters look for it.
                ctx.new_work.fire()
            return next_at is None

    async def _wind_down(
        self, ctx: RunContext, subs: list[asyncio.Task[None]], others: list[asyncio.Task[None]]
    ) -> None:
        """Let in-flight submits return and be recorded, then stop everything.

        Always, even after an account error: a submit cut off becomes "uncertain". Only
        a second signal, or ``--max-runtime`` (the waits end at its limit), cuts it off.
        """
        await self._wait_within(ctx, subs, ctx.config.shutdown_grace_s)
        ctx.stop.raise_to(StopLevel.END, "stopped")
        await self._wait_within(ctx, others, STOP_OTHERS_S)

    async def _wait_within(
        self, ctx: RunContext, tasks: list[asyncio.Task[None]], timeout_s: float
    ) -> None:
        """Wait for ``tasks`` up to ``timeout_s``, and never past the run's deadline (on
        the run clock; a stage task that ends fires ``may_be_drained``)."""
        end_s = ctx.now() + timeout_s
        if self._deadline is not None:
            end_s = min(end_s, self._deadline)
        while ctx.now() < end_s:
            looked = ctx.may_be_drained.mark()
            if all(t.done() for t in tasks):
                return
            await ctx.may_be_drained.wait(looked, until_s=end_s)


def _error(task: asyncio.Task[None]) -> BaseException | None:
    """What ``task`` raised, once it is done (arq reaps with ``t.result()`` for this)."""
    if not task.done() or task.cancelled():
        return None
    return task.exception()
