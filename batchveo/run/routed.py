"""What a run asks the store about routes, in one place.

A job's route is stored with it when it is loaded (``Job.route``); a part left ``None``
is the run's to fill, and a row older than routes has none at all (the run's route, as
before). The run resolves a job's route against its own default (``resolve``) to find
the lane that serves it, asks the store for the routes that have work, and claims and
waits per route.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from batchveo.routes import Route, resolve_route
from batchveo.states import WORK_LEFT

if TYPE_CHECKING:
    from batchveo.api.results import OperationStatus
    from batchveo.spec import JobSpec
    from batchveo.store import Job, Store

RouteKey = tuple[str, str, str]
"""``Route.key``: what quotas are counted per (provider, and for Vertex project, region)."""


def resolve(route: Route | None, default: Route) -> Route:
    """A stored route (None: a legacy row) made whole by the run's (``resolve_route``)."""
    return resolve_route(route, default)


def job_route(job: Job) -> Route | None:
    """The route stored with ``job``; None for a legacy row (the run's route)."""
    return job.route


def spec_route(spec: JobSpec) -> Route | None:
    """The route a manifest gave ``spec`` (None: the loading command's)."""
    return spec.route


def routed_spec(job: Job, route: Route) -> JobSpec:
    """``job``'s spec with its route resolved (the run's ``--storage-uri``, project,
    region filled in): what the client sends."""
    return dataclasses.replace(job.spec(), route=route)


async def routes_with_work(store: Store) -> list[Route | None]:
    """The distinct stored routes of jobs with work left (None: legacy rows)."""
    return await store.routes_with_work(WORK_LEFT)


async def claim_one(
    store: Store, route: Route | None, default: Route, *, budget_usd: float | None
) -> list[Job]:
    """At most one due pending job of ``route`` (None: of any route) into ``submitting``."""
    if route is None:
        return await store.claim_pending(1, budget_usd=budget_usd)
    return await store.claim_pending(1, budget_usd=budget_usd, route=route, default_route=default)


async def next_attempt_at(
    store: Store, route: Route | None, default: Route, *, budget_usd: float | None
) -> float | None:
    """When ``route``'s earliest pending job becomes due (None: none could ever be sent)."""
    if route is None:
        return await store.next_attempt_at(budget_usd=budget_usd)
    return await store.next_attempt_at(budget_usd=budget_usd, route=route, default_route=default)


def sample_fields(status: OperationStatus, returned: int) -> dict[str, Any]:
    """The sample counts a transition records (the store's columns), when the route
    reports them (Vertex AI: ``sampleCount``, partial filtering); none for the
    Gemini-format routes, which make one video and say nothing of samples."""
    said = status.counts_samples or status.samples_requested is not None
    if not said and not status.samples_filtered and not status.inline_videos:
        return {}
    return {
        "samples_returned": returned,
        "samples_filtered": status.samples_filtered,
        "filtered_reasons": list(status.filtered_reasons),
    }
