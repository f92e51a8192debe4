"""A night of generation, put together: the application's composition root.

``batchveo run`` parses its flags into ``RunOptions`` and calls ``run_night``, which
builds everything a run needs, in an order that writes nothing until the input is
known good:

1. read the price file and the manifests, with the run's route (a bad one stops here:
   no database created);
2. check the database and ``--out`` (a read-only ``--out`` writes nothing);
3. find what the manifests' routes need (``RouteAccess``: a provider and its key, or
   Google credentials and a token source): missing, nothing is written;
4. take the database's lock (telling whether a dead run's lock was taken over);
5. open the store, add the manifests' jobs, reprice with the price file;
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
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeAlias

from batchveo.errors import UserError
from batchveo.routes import Route, Wire

if TYPE_CHECKING:  # the command line imports this module; keep its start-up light
    from batchveo.api import Provider
    from batchveo.api.gauth import GoogleIdentity, TokenSource
    from batchveo.models import Prices
    from batchveo.redact import Secret
    from batchveo.run.context import Client, RunConfig
    from batchveo.run.lanes import ClientsByRoute
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
) -> Plan:
    """What ``run`` would submit and cost with these manifests and flags; sends nothing."""
    from batchveo.manifest import gc_paused
    from batchveo.run.loading import read_routed
    from batchveo.run.plan import make_plan

    prices = read_prices(prices_path)
    with gc_paused():  # a one-shot read: nothing else runs meanwhile
        loaded = read_routed(manifests, batch=batch, route=route)
    return make_plan(
        loaded.specs, db_path, budgets=loaded.budgets, prices=prices,
        budget_usd=budget_usd, resubmit_uncertain=resubmit_uncertain,
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
    from batchveo.manifest import gc_paused
    from batchveo.run.loading import read_routed
    from batchveo.run.routed import spec_route
    from batchveo.store import Store

    o, config = options, options.config
    prices = read_prices(o.prices_path)
    with gc_paused():  # before any task of the run starts
        manifests = await asyncio.to_thread(read_routed, o.manifests, batch=o.batch, route=o.route)
    if not o.manifests and not config.watch_dir and not o.db_path.exists():
        raise UserError(f"{o.db_path}: no such database; give a manifest to run")
    if config.out_dir.exists() and not config.out_dir.is_dir():
        raise UserError(f"--out {config.out_dir}: a file is there, not a folder")
    check_output_folder(config.out_dir)  # before loading: a read-only --out writes nothing
    access = RouteAccess(o)
    await access.prepare([spec_route(s) for s in manifests.specs])  # before anything is written
    with lock.acquire(o.db_path) as held:
        took_over = _taken_over(held.previous)
        if took_over is not None and tell is not None:
            tell(took_over)
        async with await Store.open(o.db_path) as store:
            loaded = None
            if o.manifests:
                from batchveo.run.runner import add_specs

                added = await add_specs(
                    store, manifests.specs, o.manifests, replace=o.replace,
                    budgets=manifests.budgets,
                )  # fmt: skip
                loaded = ManifestsLoaded(added)
                if tell is not None:
                    tell(loaded)
            if prices:
                await _reprice(store, prices)
            routes = await _routes_to_serve(store, access, watching=config.watch_dir is not None)
            result = await _drive(store, o, access, routes, say=say, stream=stream)
            return Night(result, took_over, loaded)


class RouteAccess:
    """What each route of a run needs to be reached, found before anything is sent.

    A Gemini-format route needs its provider's hosts and API key (``resolve_provider``,
    ``resolve_api_key``); a Vertex AI route needs Google credentials and a token source
    (``find_identity``, in a thread: it may ask the metadata server). Each is found once
    per provider, and the credentials once per run (one token serves every project);
    what is missing or unusable is a ``ConfigError``: one line, exit 2.

    A Vertex route with no project of its own takes the run's (``--project``,
    ``GOOGLE_CLOUD_PROJECT``), else the credentials': the run's default route is given
    that project, so that the jobs' stored routes resolve to the route served.
    """

    def __init__(self, options: RunOptions, env: Mapping[str, str] = os.environ):
        self.options = options
        self.env = env
        self.default = options.route
        self.keys: dict[str, tuple[Provider, str]] = {}
        """Gemini format: provider name -> (its hosts, its API key)."""
        self.identities: dict[str, GoogleIdentity] = {}
        """Vertex AI: project -> the identity requests for it are made as."""
        self.tokens: TokenSource | None = None
        """The one token source of the run's Google credentials (None: no Vertex route)."""

    async def prepare(self, stored: Iterable[Route | None]) -> list[Route]:
        """Find what ``stored`` routes need (resolved against the run's route); the
        distinct routes, resolved."""
        from batchveo.run.routed import resolve

        stored = list(dict.fromkeys(stored))  # one per route, however many jobs
        routes = [resolve(r, self.default) for r in stored]
        if any(r.wire is Wire.VERTEX and not r.project for r in routes):
            identity = await self._identity(None)
            self.default = dataclasses.replace(self.default, project=identity.project)
            routes = [resolve(r, self.default) for r in stored]
        for route in routes:
            if route.wire is Wire.VERTEX:
                await self._identity(route.project)
            else:
                self._key(route.provider or "gptproto")
        return list(dict.fromkeys(routes))

    def _key(self, provider_name: str) -> tuple[Provider, str]:
        from batchveo.api import resolve_api_key, resolve_provider

        found = self.keys.get(provider_name)
        if found is None:
            provider = resolve_provider(provider_name, self.options.base_url)
            found = self.keys[provider_name] = (provider, resolve_api_key(provider.name))
        return found

    async def _identity(self, project: str | None) -> GoogleIdentity:
        from batchveo.api.gauth import TokenSource, find_identity

        if project is not None and project in self.identities:
            return self.identities[project]
        if self.identities:  # the same credentials, for another project
            some = next(iter(self.identities.values()))
            identity = dataclasses.replace(some, project=project) if project else some
        else:
            identity = await asyncio.to_thread(find_identity, project, self.env)
            self.tokens = TokenSource(identity.credentials)
        self.identities[identity.project] = identity
        return identity

    def client(self, route: Route) -> RouteClient:
        """The client of ``route`` (found by ``prepare``), to be opened with the run."""
        if route.wire is Wire.VERTEX:
            assert route.project is not None and self.tokens is not None
            return make_vertex_client(
                self.identities[route.project], self.tokens,
                location_default=route.location or self.default.location,
                base_url=self.options.base_url, storage_base_url=self.options.storage_base_url,
            )  # fmt: skip
        from batchveo.api import VeoClient

        provider, key = self._key(route.provider or "gptproto")
        return VeoClient(provider, key)

    def secrets(self) -> list[Secret]:
        """Every secret of the run's routes as of now: the API keys, the tokens handed out."""
        from batchveo.redact import Secret

        found = [Secret(key) for _, key in self.keys.values()]
        return found + (self.tokens.secrets() if self.tokens is not None else [])


def make_vertex_client(
    identity: GoogleIdentity,
    tokens: TokenSource,
    *,
    location_default: str | None,
    base_url: str | None,
    storage_base_url: str | None,
) -> RouteClient:
    """The Vertex AI client of one route (project and region), the one place it is built."""
    from batchveo.api.vertex import VertexClient
    from batchveo.routes import DEFAULT_LOCATION

    client: RouteClient = VertexClient(
        identity, tokens, location_default=location_default or DEFAULT_LOCATION,
        base_url=base_url, storage_base_url=storage_base_url,
    )  # fmt: skip
    return client


async def _routes_to_serve(store: Store, access: RouteAccess, *, watching: bool) -> list[Route]:
    """The routes with work in the database, their needs found (before anything is sent);
    the run's own route too when nothing has work or a drop folder may bring some."""
    from batchveo.run.routed import routes_with_work

    stored = await routes_with_work(store)
    if watching or not stored:
        stored.append(None)
    return await access.prepare(stored)


class RunSecrets:
    """Every secret a run's texts must be scrubbed of: the API keys, and each Google
    access token the run has handed out (the current one is asked each time; the ones
    before it are remembered, should an old text still hold one)."""

    def __init__(self, source: Callable[[], Iterable[Secret]]):
        self._source = source
        self._seen: dict[str, Secret] = {}

    def all(self) -> list[Secret]:
        for secret in self._source():
            self._seen.setdefault(secret.reveal(), secret)
        return list(self._seen.values())

    def scrub(self, text: str) -> str:
        for secret in self.all():
            text = secret.scrub(text)
        return text


def _taken_over(previous: dict[str, object] | None) -> LockTakenOver | None:
    """What the lock file said when this run took the lock: the lock dies with its
    process, so a holder still recorded there was a run that is gone."""
    pid = (previous or {}).get("pid")
    if isinstance(pid, str) and pid.isdigit():
        pid = int(pid)
    return LockTakenOver(pid) if isinstance(pid, int) and pid else None


async def _reprice(store: Store, prices: Prices) -> None:
    """Every job's cost estimate from the user's price file (budgets compare these)."""
    from batchveo.models import estimate_params_cost_usd

    await store.reprice(lambda j: estimate_params_cost_usd(j.model, j.params, prices))


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
    from batchveo.run.runner import Runner

    secrets = RunSecrets(access.secrets)
    redact.add_secret_source(secrets.all)  # crash files too, after the run
    async with contextlib.AsyncExitStack() as stack:
        clients = await _open_clients(stack, access, routes)
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


async def _open_clients(
    stack: contextlib.AsyncExitStack, access: RouteAccess, routes: list[Route]
) -> ClientsByRoute:
    """One client per ``Route.key`` (quotas count per key), closed with ``stack``."""
    from batchveo.run.lanes import ClientsByRoute

    clients = ClientsByRoute(access.default)
    opened: dict[tuple[str, str, str], Client] = {}
    for route in routes:
        if route.key not in opened:
            opened[route.key] = await stack.enter_async_context(access.client(route))
        clients.add(route, opened[route.key])
    return clients


def install_signal_handlers(runner: Runner) -> None:
    """First SIGINT/SIGTERM: stop gracefully. Second: stop at once (still safe)."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.request_stop, f"stopped by {sig.name}")
