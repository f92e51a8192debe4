"""What each route of a run needs to be reached, found before anything is sent.

A Gemini-format route needs its provider's hosts and API key; a Vertex AI route needs
Google credentials and a token source. ``RouteAccess`` finds them (once per provider,
the credentials once per run) and builds each route's client; ``RunSecrets`` is every
secret the run's texts must be scrubbed of (the keys, and every token handed out).
``run/app.py`` calls these in its order: access found before the lock is taken and
anything written, clients opened once the jobs are loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from batchveo.routes import Route, Wire

if TYPE_CHECKING:
    from batchveo.api import Provider
    from batchveo.api.gauth import GoogleIdentity, TokenSource
    from batchveo.redact import Secret
    from batchveo.run.app import RouteClient, RunOptions
    from batchveo.run.context import Client
    from batchveo.run.lanes import ClientsByRoute


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
                review_location=self.options.config.review.location,
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
    review_location: str | None = None,
) -> RouteClient:
    """The Vertex AI client of one route (project and region), the one place it is built;
    its reviews in ``review_location`` (None: the route's region)."""
    from batchveo.api.vertex import VertexClient
    from batchveo.routes import DEFAULT_LOCATION

    client: RouteClient = VertexClient(
        identity, tokens, location_default=location_default or DEFAULT_LOCATION,
        base_url=base_url, storage_base_url=storage_base_url, review_location=review_location,
    )  # fmt: skip
    return client


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


async def open_clients(
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
