"""What a run asks the store about routes, in one place.

A job's route is stored with it when it is loaded (``routes``); a part left ``None`` is
the run's to fill, and a row older than routes has none at all (the run's route, as
before). The run resolves a job's route against its own default (``resolve``) to find
the lane that serves it, asks the store for the routes that have work, and claims and
waits per route.

The store's side is the store's (VERTEX.md, "Store"): ``Job.route``,
``Store.routes_with_work()``, ``claim_pending(..., route=, default_route=)``, the same
filter on ``next_attempt_at``, the sample counts a transition to ``done`` or
``generated`` may set, and ``JobSpec.route``. **Stand-ins until that lands** (marked
``STAND-IN`` below, all in this module): a store without ``routes_with_work`` is taken
to hold only legacy rows (every job the run's route), so a run claims and waits without
a route filter, as before; a job or spec without ``route`` is legacy. At the merge each
stand-in becomes the plain call it wraps.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol, cast

from batchveo.routes import Route
from batchveo.states import WORK_LEFT

if TYPE_CHECKING:
    from batchveo.api.results import OperationStatus
    from batchveo.spec import JobSpec
    from batchveo.store import Job, Store

RouteKey = tuple[str, str, str]
"""``Route.key``: what quotas are counted per (provider, and for Vertex project, region)."""


def resolve(route: Route | None, default: Route) -> Route:
    """A stored route (None: a legacy row) with its unset parts filled by the run's."""
    return (route or Route()).with_defaults(default)


def job_route(job: Job) -> Route | None:
    """The route stored with ``job``; None for a legacy row (the run's route).

    STAND-IN: ``job.route`` (the store's ``Job.route``)."""
    return cast("Route | None", getattr(job, "route", None))


def spec_route(spec: JobSpec) -> Route | None:
    """The route a manifest gave ``spec`` (None: the loading command's).

    STAND-IN: ``spec.route`` (``JobSpec.route``)."""
    return cast("Route | None", getattr(spec, "route", None))


def routed_spec(job: Job, route: Route) -> JobSpec:
    """``job``'s spec with its route resolved (the run's ``--storage-uri``, project,
    region filled in): what the client sends. STAND-IN: a spec without ``route``
    (before ``JobSpec.route`` lands) goes as it is."""
    spec = job.spec()
    if not any(f.name == "route" for f in dataclasses.fields(spec)):
        return spec
    return cast("JobSpec", cast(Any, dataclasses.replace)(spec, route=route))


class RouteQueries(Protocol):
    """The store's questions filtered by route (VERTEX.md, "Store")."""

    async def routes_with_work(self) -> list[Route | None]: ...

    async def claim_pending(
        self,
        limit: int,
        *,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> list[Job]: ...

    async def next_attempt_at(
        self,
        *,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> float | None: ...


def _routed(store: Store) -> RouteQueries | None:
    """The store's route filters; STAND-IN: None for a store without route columns
    (every row is legacy there, so nothing needs filtering)."""
    return cast(RouteQueries, store) if hasattr(store, "routes_with_work") else None


async def routes_with_work(store: Store) -> list[Route | None]:
    """The distinct stored routes of jobs with work left (None: legacy rows)."""
    routed = _routed(store)
    if routed is None:
        return [None] if await store.count_states(WORK_LEFT) else []
    return await routed.routes_with_work()


async def claim_one(
    store: Store, route: Route | None, default: Route, *, budget_usd: float | None
) -> list[Job]:
    """At most one due pending job of ``route`` (None: of any route) into ``submitting``."""
    routed = _routed(store)
    if route is None or routed is None:
        return await store.claim_pending(1, budget_usd=budget_usd)
    return await routed.claim_pending(1, budget_usd=budget_usd, route=route, default_route=default)


async def next_attempt_at(
    store: Store, route: Route | None, default: Route, *, budget_usd: float | None
) -> float | None:
    """When ``route``'s earliest pending job becomes due (None: none could ever be sent)."""
    routed = _routed(store)
    if route is None or routed is None:
        return await store.next_attempt_at(budget_usd=budget_usd)
    return await routed.next_attempt_at(budget_usd=budget_usd, route=route, default_route=default)


def sample_fields(status: OperationStatus, returned: int) -> dict[str, Any]:
    """The sample counts a transition records (the store's columns), when the route
    reports them (Vertex AI: ``sampleCount``, partial filtering); none for the
    Gemini-format routes, which make one video and say nothing of samples."""
    said = status.samples_requested is not None or status.samples_filtered
    if not said and not status.inline_videos:
        return {}
    return {
        "samples_returned": returned,
        "samples_filtered": status.samples_filtered,
        "filtered_reasons": list(status.filtered_reasons),
    }
