"""A night of generation, put together: the application's composition root.

``batchveo run`` parses its flags into ``RunOptions`` and calls ``run_night``, which
builds everything a run needs, in an order that writes nothing until the input is
known good:

1. read the price file and the manifests, with the run's route, every job checked on its
   own and none kept (``manifest_routes``: the routes they go by; a bad one stops here,
   no database created);
2. check the database (and ``--out`` when no manifest is given);
3. find what the manifests' routes need (``RouteAccess``: a provider and its key, or
   Google credentials and a token source): missing, nothing is written;
4. take the database's lock (telling whether a dead run's lock was taken over);
5. stream the manifests into the database as ``batchveo load`` does (``load_into_store``:
   one transaction, a database made only if everything goes in, the memory of a chunk
   whatever the manifest's size), ``--out`` checked before it commits (a read-only
   ``--out`` writes nothing); open the store and reprice with the price file;
6. find what every other route with work needs (jobs loaded earlier): missing, nothing
   is sent (one line, exit 2);
7. open a client per route, start the monitor (progress, log, notifications, scrubbed
   of every key and token), construct the ``Runner``, install the signal handlers, run,
   and tell the monitor the end.

Nothing here prints: what the user is told is data (a ``Notice`` as the night begins,
the ``Night`` at its end) or goes to the ``say`` and ``stream`` the command line hands
in. ``plan_night`` is the same first step for ``plan`` and ``run --dry-run``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeAlias

from batchveo.errors import UserError
from batchveo.routes import Route

if TYPE_CHECKING:  # the command line imports this module; keep its start-up light
    from batchveo.models import Prices
    from batchveo.run.access import RouteAccess
    from batchveo.run.context import Client, RunConfig
    from batchveo.run.plan import Plan
    from batchveo.run.runner import LoadResult, Runner, RunResult
    from batchveo.store import Store

Say = Callable[[str], None]
RouteClient: TypeAlias = contextlib.AbstractAsyncContextManager["Client"]
"""A route's client, opened and closed with the run (``async with``)."""


@dataclass(frozen=True)
class RunOptions:
    """What ``batchveo run`` was asked to do, as the command line parsed it."""

    db_path: Path
    config: RunConfig
    manifests: tuple[Path, ...] = ()
    batch: str | None = None
    """Batch name for the manifests (default: each file's name)."""
    replace: bool = False
    """Overwrite jobs whose spec changed and that were not submitted yet."""
    prices_path: Path | None = None
    provider: str | None = None
    """``--provider``: the run's route, with the three below (``route``)."""
    project: str | None = None
    """``--project`` (Vertex AI): else ``GOOGLE_CLOUD_PROJECT``, else the credentials'."""
    location: str | None = None
    """``--location`` (Vertex AI): the region, ``us-central1`` when not given."""
    storage_uri: str | None = None
    """``--storage-uri`` (Vertex AI): ``gs://BUCKET/PREFIX/`` for videos in a bucket."""
    base_url: str | None = None
    """``--base-url``: every request of every route to this server (a rehearsal, a test)."""
    storage_base_url: str | None = None
    """``--storage-base-url``: Cloud Storage requests to this server instead."""
    log_file: Path | None = None
    notify_url: str | None = None
    on_complete: str | None = None
    quiet: bool = False
    verbose: bool = False
    max_problems: int = 50
    """How many problems of a manifest dropped in ``--watch`` are told (a screenful)."""

    @property
    def route(self) -> Route:
        """The run's own route: what a job's stored route leaves unset is taken from it."""
        return Route(self.provider, self.project, self.location, self.storage_uri)


@dataclass(frozen=True)
class LockTakenOver:
    """The database's lock was left by a run that died; this run took it over."""

    pid: int


@dataclass(frozen=True)
class ManifestsLoaded:
    """What the manifests given on the command line added to the database."""

    result: LoadResult


Notice = LockTakenOver | ManifestsLoaded
"""What the user is told as the night begins, at the moment it happens."""


@dataclass(frozen=True)
class Night:
    """A night that ran to its end: how it began and how it ended."""

    result: RunResult
    took_over: LockTakenOver | None = None
    loaded: ManifestsLoaded | None = None


def read_prices(path: Path | None) -> dict[str, dict[str, float]] | None:
    """A price file (YAML or JSON): ``{model: usd_per_s}`` or ``{model: {res: usd_per_s}}``."""
    if path is None:
        return None
    import yaml

    from batchveo.models import parse_prices

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return parse_prices(data, str(path))
    except OSError as e:
        raise UserError(f"{path}: cannot read the price file: {e.strerror}") from None
    except (yaml.YAMLError, ValueError) as e:
        raise UserError(str(e) if isinstance(e, ValueError) else f"{path}: not YAML/JSON") from None


async def plan_night(
    manifests: tuple[Path, ...],
    db_path: Path,
    *,
    batch: str | None = None,
    budget_usd: float | None = None,
    prices_path: Path | None = None,
    resubmit_uncertain: bool = False,
    route: Route | None = None,
    review_all: bool = False,
) -> Plan:
    """What ``run`` would submit and cost with these manifests and flags; sends nothing."""
    from batchveo.manifest import gc_paused
    from batchveo.run.loading import read_routed
    from batchveo.run.plan import make_plan

    prices = read_prices(prices_path)
    with gc_paused():  # a one-shot read: nothing else runs meanwhile
        loaded = read_routed(manifests, batch=batch, route=route, db=db_path)
    return make_plan(
        loaded.specs, db_path, budgets=loaded.budgets, prices=prices,
        budget_usd=budget_usd, resubmit_uncertain=resubmit_uncertain, reviews=loaded.reviews,
        review_all=review_all,
    )  # fmt: skip


async def run_night(
    options: RunOptions,
    *,
    say: Say,
    stream: TextIO,
    tell: Callable[[Notice], None] | None = None,
) -> Night:
    """Run one night as ``options`` say, to its end (see the module docstring for the steps).

    ``say`` takes the messages of the run (a manifest dropped in ``--watch`` loaded or
    rejected, a notification that failed), ``stream`` the progress display. ``tell``
    hears each ``Notice`` as it happens (the returned ``Night`` has them too): a
    ``--watch`` night may last for days, and the user must not learn only at its end
    that a dead run's lock was taken over.
    """
    from batchveo import lock
    from batchveo.files import check_output_folder
    from batchveo.manifest import check_route, gc_paused
    from batchveo.run.access import RouteAccess
    from batchveo.run.loading import load_into_store, manifest_routes
    from batchveo.store import Store

    o, config = options, options.config
    prices = read_prices(o.prices_path)
    check_route(o.route)  # a bad flag, manifests or not
    loading: list[Route | None] = []
    if o.manifests:
        with gc_paused():  # before any task of the run starts
            loading = await asyncio.to_thread(
                manifest_routes, o.manifests, batch=o.batch, route=o.route, db=o.db_path
            )
    if not o.manifests and not config.watch_dir and not o.db_path.exists():
        raise UserError(f"{o.db_path}: no such database; give a manifest to run")
    if config.out_dir.exists() and not config.out_dir.is_dir():
        raise UserError(f"--out {config.out_dir}: a file is there, not a folder")
    if not o.manifests:
        check_output_folder(config.out_dir)  # a read-only --out: nothing is written
    access = RouteAccess(o)
    await access.prepare(loading)  # before anything is written
    with lock.acquire(o.db_path) as held:
        took_over = _taken_over(held.previous)
        if took_over is not None and tell is not None:
            tell(took_over)
        loaded = None
        if o.manifests:  # streamed as `load` does: a database is made only if all goes in,
            added = await load_into_store(  # and --out is checked before it commits
                o.db_path, o.manifests, batch=o.batch, replace=o.replace, route=o.route,
                before_commit=lambda: asyncio.to_thread(check_output_folder, config.out_dir),
            )  # fmt: skip
            loaded = ManifestsLoaded(added)
            if tell is not None:
                tell(loaded)
        async with await Store.open(o.db_path) as store:
            if prices:
                await _reprice(store, prices)
            routes = await _routes_to_serve(store, access, watching=config.watch_dir is not None)
            result = await _drive(store, o, access, routes, say=say, stream=stream)
            return Night(result, took_over, loaded)


async def _routes_to_serve(store: Store, access: RouteAccess, *, watching: bool) -> list[Route]:
    """The routes with work in the database, their needs found (before anything is sent);
    the run's own route too when nothing has work or a drop folder may bring some."""
    from batchveo.run.routed import routes_with_work

    stored = await routes_with_work(store)
    if watching or not stored:
        stored.append(None)
    return await access.prepare(stored)


def _taken_over(previous: dict[str, object] | None) -> LockTakenOver | None:
    """What the lock file said when this run took the lock: the lock dies with its
    process, so a holder still recorded there was a run that is gone."""
    pid = (previous or {}).get("pid")
    if isinstance(pid, str) and pid.isdigit():
        pid = int(pid)
    return LockTakenOver(pid) if isinstance(pid, int) and pid else None


async def _reprice(store: Store, prices: Prices) -> None:
    """Every job's cost estimate from the user's price file (budgets compare these)."""
    import json

    from batchveo.models import estimate_params_cost_usd

    key = json.dumps(prices, sort_keys=True)  # the same prices as last run: only new jobs
    await store.reprice(lambda m, p: estimate_params_cost_usd(m, p, prices), prices_key=key)


async def _drive(
    store: Store,
    o: RunOptions,
    access: RouteAccess,
    routes: list[Route],
    *,
    say: Say,
    stream: TextIO,
) -> RunResult:
    """Clients, monitor, runner, signals: the run itself, watched."""
    from batchveo import redact
    from batchveo.observe.monitor import RunMonitor
    from batchveo.run.access import RunSecrets, open_clients
    from batchveo.run.runner import Runner

    secrets = RunSecrets(access.secrets)
    redact.add_secret_source(secrets.all)  # crash files too, after the run
    async with contextlib.AsyncExitStack() as stack:
        clients = await open_clients(stack, access, routes)
        monitor = RunMonitor(
            store, o.config, "", log_file=o.log_file, notify_url=o.notify_url,
            on_complete=o.on_complete, quiet=o.quiet, verbose=o.verbose, say=say,
            stream=stream, max_problems=o.max_problems, scrub=secrets.scrub,
        )  # fmt: skip
        await monitor.start()
        runner = Runner(store, clients, o.config, observer=monitor.on_run_event)
        install_signal_handlers(runner)
        try:
            result = await runner.run()
        finally:
            await monitor.stop()
        await monitor.finished(result)
        return result


def install_signal_handlers(runner: Runner) -> None:
    """First SIGINT/SIGTERM: stop gracefully. Second: stop at once (still safe)."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.request_stop, f"stopped by {sig.name}")
