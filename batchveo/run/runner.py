"""A run: load manifests, then drive every job of the database to a terminal state.

The runner composes the three stages (see ``submitter``, ``poller``,
``downloader``) over one store and one client, and owns how a run ends:

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
  submits; operations already paid for are still polled and downloaded, then exit 4
  (on a poll or download: everything stops);
* a spent daily quota: as an account error, but exit 75 (``--watch``: wait for the reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from batchveo.clock import Clock, RunClock
from batchveo.errors import ManifestError
from batchveo.exitcodes import ExitCode
from batchveo.files import output_folder
from batchveo.manifest import gc_paused, read_manifests
from batchveo.run.context import Client, Observer, RunConfig, RunContext, RunStats
from batchveo.run.downloader import downloader
from batchveo.run.pacing import Pacer
from batchveo.run.poller import poller
from batchveo.run.submitter import submitter
from batchveo.spec import JobSpec
from batchveo.states import JobState
from batchveo.store import Store

S = JobState
WORK_LEFT = frozenset({S.PENDING, S.SUBMITTING, S.RUNNING, S.GENERATED})
MIN_CLAIMING_SHARE = 0.5
"""At least this share of ``--max-runtime`` is open to new submits: claims stop one
``shutdown_grace_s`` before the limit (so a submit sent just before has the whole
grace to come back), but never earlier than this, however long the grace."""
STOP_OTHERS_S = 5.0
"""How long a stop waits for polls and downloads in progress before cancelling them."""


@dataclass(frozen=True)
class LoadResult:
    new: int
    existing: int
    replaced: int
    batches: tuple[str, ...]

    def summary(self) -> str:
        text = f"{self.new} new, {self.existing} already loaded"
        if self.replaced:
            text += f", {self.replaced} replaced"
        if self.batches:
            text += f" (batch {', '.join(self.batches)})"
        return text


async def add_specs(
    store: Store,
    specs: Sequence[JobSpec],
    manifests: Sequence[Path],
    *,
    replace: bool = False,
    budgets: Mapping[str, float] | None = None,
) -> LoadResult:
    """Add validated specs in one transaction: all of them or none."""
    result = await store.add_jobs(
        specs, replace=replace, manifest=", ".join(str(m) for m in manifests), budgets=budgets
    )
    batches = tuple(dict.fromkeys(s.batch for s in specs))
    return LoadResult(result.new, result.existing, result.replaced, batches)


async def load_into_store(
    db_path: Path, manifests: Sequence[Path], *, batch: str | None = None, replace: bool = False
) -> LoadResult:
    # Validate before opening the database: a bad manifest must not even create it.
    with gc_paused():  # a one-shot load: nothing else runs meanwhile
        loaded = await asyncio.to_thread(read_manifests, list(manifests), batch=batch)
    async with await Store.open(db_path) as store:
        return await add_specs(
            store, loaded.specs, manifests, replace=replace, budgets=loaded.budgets
        )


@dataclass
class RunResult:
    states: dict[str, int]
    stats: RunStats
    stop_reason: str | None = None
    account_error: str | None = None
    recovered_uncertain: list[str] = field(default_factory=list)
    cleaned_partials: int = 0
    over_budget: int = 0
    """Pending jobs left alone because their estimated cost would exceed a budget."""

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


MANIFEST_SUFFIXES = (".yaml", ".yml", ".csv")


async def watch_folder(ctx: RunContext, folder: Path) -> None:
    """The drop-folder workflow: load each new or changed manifest that appears in ``folder``.

    A manifest with problems is reported once (per version of the file) and
    skipped, never fatal: a long-running watcher must survive a bad drop, and a
    file still being copied is simply read again once it changes.
    """
    seen: dict[Path, tuple[float, int]] = {}
    while not ctx.stop_claiming.is_set():
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.suffix.lower() not in MANIFEST_SUFFIXES or not path.is_file():
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # gone again (moved or deleted) since the listing
            version = (st.st_mtime, st.st_size)
            if seen.get(path) == version:
                continue
            seen[path] = version
            try:
                loaded = await asyncio.to_thread(read_manifests, [path])
                result = await add_specs(ctx.store, loaded.specs, [path], budgets=loaded.budgets)
            except ManifestError as e:
                ctx.stats.note_error(f"{path.name}: {len(e.problems)} problem(s)")
                ctx.emit("manifest_rejected", path=str(path), problems=[str(p) for p in e.problems])
                continue
            ctx.emit("manifest_loaded", path=str(path), summary=result.summary(), new=result.new)
            if result.new or result.replaced:
                ctx.wake_submitters.set()
        # Not wait_event(): that clears the event it waited for, and a stop must stay set.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.stop_claiming.wait(), ctx.config.watch_interval_s)


class Runner:
    def __init__(
        self,
        store: Store,
        client: Client,
        config: RunConfig,
        *,
        observer: Observer | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ):
        self.store = store
        self.client = client
        self.config = config
        self.observer = observer
        self.rng = rng or random.Random()
        self.clock = clock
        """The run's clock (the store's for the run); by default a ``RunClock`` on the
        store's wall clock. Tests pass their own to make time pass."""
        self.ctx: RunContext | None = None
        self._stop_requests = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._early_stop: str | None = None
        self._deadline: float | None = None
        """When ``--max-runtime`` ends the run, on the loop's (monotonic) clock."""

    def request_stop(self, reason: str = "interrupted") -> None:
        """First call: stop gracefully. Second call: stop at once (still safe)."""
        self._stop_requests += 1
        if self.ctx is None:
            self._early_stop = reason
            return
        if self._stop_requests == 1:
            self.ctx.request_stop(reason)
        else:
            self.ctx.request_stop(reason, everything=True)
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
        now = store.clock()
        await store.pull_in_schedules(now + config.schedule_horizon_s, now)
        if config.resubmit_uncertain:
            await store.requeue([S.UNCERTAIN])
        with output_folder(config.out_dir) as cleaned:
            pacer = Pacer(
                config.rpm,
                initial_delay_s=await self._restart_gap_s(),
                backoff_base_s=config.backoff_base_s,
                backoff_max_s=config.backoff_max_s,
                rng=self.rng,
            )
            ctx = self.ctx = RunContext(
                store, self.client, config, pacer, observer=self.observer, rng=self.rng
            )
            ctx.inflight = await store.count_states([S.RUNNING])
            for job in await store.jobs([S.GENERATED], order="generated_at"):
                ctx.downloads.add(job)
            if self._early_stop:
                ctx.request_stop(self._early_stop)
            ctx.emit(
                "run_started", recovered_uncertain=len(recovered), cleaned_partials=cleaned or 0
            )
            await self._drive(ctx)
            states = {s.value: n for s, n in (await self._state_counts()).items()}
            _, over_budget = await store.claimable_pending(budget_usd=config.budget_usd)
            result = RunResult(
                over_budget=over_budget,
                states=states,
                stats=ctx.stats,
                stop_reason=ctx.stop_reason,
                account_error=ctx.account_error,
                recovered_uncertain=recovered,
                cleaned_partials=cleaned or 0,
            )
            ctx.emit("run_finished", states=states, exit_code=result.exit_code)
        return result

    async def _restart_gap_s(self) -> float:
        """Wait out the pacing gap since the last submit, even one from a previous run."""
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

    async def _drive(self, ctx: RunContext) -> None:
        config = ctx.config
        ctx.active_submitters = config.submitters
        subs = [asyncio.create_task(self._submitter(ctx)) for _ in range(config.submitters)]
        others = [asyncio.create_task(poller(ctx))]
        others += [asyncio.create_task(downloader(ctx)) for _ in range(config.downloaders)]
        if config.watch_dir is not None:
            others.append(asyncio.create_task(watch_folder(ctx, config.watch_dir)))
        self._tasks = subs + others
        timers: list[asyncio.TimerHandle] = []
        loop = asyncio.get_running_loop()
        self._deadline = None
        if config.max_runtime_s is not None:
            # Near the end no new submits (their answers must have time to come
            # back); until the very end, running operations are still polled and
            # downloaded. At the limit everything stops, whatever is in flight: a
            # submit cut off stays `submitting` (uncertain next run), the rest goes on.
            limit_s = config.max_runtime_s
            self._deadline = loop.time() + limit_s
            margin_s = min(config.shutdown_grace_s, limit_s * (1 - MIN_CLAIMING_SHARE))
            reason = "max runtime reached"
            timers.append(loop.call_later(limit_s - margin_s, ctx.stop_submitting, reason))
            timers.append(
                loop.call_later(limit_s, partial(ctx.request_stop, reason, everything=True))
            )
        stop_wait: asyncio.Task[Any] = asyncio.create_task(ctx.interrupted.wait())
        try:
            pending: set[asyncio.Task[Any]] = set(self._tasks)
            while pending:
                done, pending = await asyncio.wait(
                    pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stop_wait)
                for t in done:
                    if t is not stop_wait and not t.cancelled() and t.exception():
                        exc = t.exception()
                        # A bug in one stage: let the submits in flight be recorded first.
                        ctx.request_stop(f"stopped by an internal error: {exc!r}")
                        await self._wind_down(ctx, subs, others)
                        raise exc  # type: ignore[misc]
                if stop_wait in done and pending:
                    await self._wind_down(ctx, subs, others)
                    break
        finally:
            for timer in timers:
                timer.cancel()
            stop_wait.cancel()
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                try:
                    await t
                except asyncio.CancelledError:
                    pass
                except Exception:
                    pass  # already raised above, or irrelevant once stopping

    async def _wind_down(
        self, ctx: RunContext, subs: list[asyncio.Task[None]], others: list[asyncio.Task[None]]
    ) -> None:
        """Let in-flight submits return and be recorded, then stop everything.

        Always, even after an account error: a submit cut off becomes "uncertain". Only
        a second signal, or ``--max-runtime`` (the waits end at its limit), cuts it off.
        """
        await self._wait_within(subs, ctx.config.shutdown_grace_s)
        ctx.request_stop(ctx.stop_reason or "stopped", everything=True)
        await self._wait_within(others, STOP_OTHERS_S)

    async def _wait_within(self, tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
        """Wait for ``tasks`` up to ``timeout_s``, and never past the run's deadline."""
        if self._deadline is not None:
            timeout_s = min(timeout_s, self._deadline - asyncio.get_running_loop().time())
        live = [t for t in tasks if not t.done()]
        if live and timeout_s > 0:
            await asyncio.wait(live, timeout=timeout_s)

    async def _submitter(self, ctx: RunContext) -> None:
        try:
            await submitter(ctx)
        finally:
            ctx.active_submitters -= 1
            ctx.wake_poller.set()
            ctx.wake_downloader.wake_all()
