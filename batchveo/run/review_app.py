"""``batchveo review``: the review stage alone, over videos finished earlier.

It takes the database's lock (a run reviewing the same takes at the same time would ask
twice), finds what the routes of the done jobs need (as a run does: ``RouteAccess``),
makes the chosen reviews due again with ``--force``, then runs the run's own reviewer
(``run.reviewer``: its pacer, workers and reaction table) until nothing is due. Every
batch asked for is reviewed, with its manifest's settings or the defaults, the flags over
them. Nothing here changes a job.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from batchveo.errors import UserError
from batchveo.routes import Route
from batchveo.run.config import ReviewFlags, RunConfig
from batchveo.states import JobState
from batchveo.store import ReviewStatus, Store
from batchveo.verdicts import ReviewSettings


@dataclass(frozen=True)
class ReviewRequest:
    """What ``batchveo review`` was asked: which takes, how, over which route."""

    db_path: Path
    flags: ReviewFlags
    job_ids: tuple[str, ...] = ()
    batch: str | None = None
    force: bool = False
    provider: str | None = None
    project: str | None = None
    location: str | None = None
    storage_uri: str | None = None
    base_url: str | None = None
    storage_base_url: str | None = None


@dataclass
class ReviewTally:
    """What ``batchveo review`` did: the outcomes recorded, and why it stopped early."""

    recorded: dict[ReviewStatus, int] = field(default_factory=dict)
    stopped: str | None = None
    asked: int = 0
    retakes: int = 0
    """Retakes the flagged verdicts made: pending jobs, sent by the next run."""

    def summary(self) -> str:
        if not self.asked:
            return "nothing to review"
        parts = [f"{n} {status.value}" for status, n in self.recorded.items() if n]
        text = f"reviewed {sum(self.recorded.values())} of {self.asked}: " + (
            ", ".join(parts) or "none recorded"
        )
        if self.retakes:
            text += f"; {self.retakes} retake(s) made, sent by the next run"
        return f"{text}; {self.stopped}" if self.stopped else text


async def review_finished(request: ReviewRequest) -> ReviewTally:
    """Review the done takes ``request`` names (see the module docstring)."""
    from batchveo import lock
    from batchveo.run.access import RouteAccess, open_clients
    from batchveo.run.app import RunOptions

    if not request.db_path.exists():
        raise UserError(f"{request.db_path}: no such database (load a manifest first)")
    options = RunOptions(
        db_path=request.db_path, config=RunConfig(review=request.flags),
        provider=request.provider, project=request.project, location=request.location,
        storage_uri=request.storage_uri, base_url=request.base_url,
        storage_base_url=request.storage_base_url,
    )  # fmt: skip
    with lock.acquire(request.db_path):
        async with await Store.open(request.db_path) as store:
            access = RouteAccess(options)  # before --force clears a verdict
            routes = await access.prepare(await _routes_of_done(store))
            ids = await _chosen(store, request)
            async with contextlib.AsyncExitStack() as stack:
                clients = await open_clients(stack, access, routes)
                return await _review(store, request, ids, clients)


async def _chosen(store: Store, request: ReviewRequest) -> list[str] | None:
    """The job ids asked for (None: every done job of the batch, or of every batch);
    ``UserError`` for one that is not a done job. With ``--force``, made due again."""
    ids: list[str] | None = None
    if request.job_ids:
        ids = list(dict.fromkeys(request.job_ids))
        for job_id in ids:
            job = await store.get(job_id)
            if job is None:
                raise UserError(f"{store.path}: no job {job_id!r}")
            if job.state is not JobState.DONE:
                raise UserError(f"job {job_id}: not done (it is {job.state.value}): no video")
            if request.batch is not None and job.batch != request.batch:
                raise UserError(f"job {job_id}: not in batch {request.batch!r}")
    if request.force:
        chosen = ids
        if chosen is None:
            rows = await store.reviews_of(request.batch)
            chosen = [r.job_id for r in rows]
        await store.reopen_reviews(chosen)
    return ids


async def _routes_of_done(store: Store) -> list[Route | None]:
    """The stored routes of the done jobs (None: the run's own)."""
    found = [r for r, counts in await store.route_counts() if counts.get(JobState.DONE.value)]
    return found or [None]


async def _review(
    store: Store,
    request: ReviewRequest,
    ids: list[str] | None,
    clients: object,
) -> ReviewTally:
    from batchveo.clock import RunClock, alarms_for
    from batchveo.run import reviewer as stage
    from batchveo.run.lanes import ClientsByRoute, Lanes

    assert isinstance(clients, ClientsByRoute)
    config = RunConfig(review=request.flags)
    clock = alarms_for(RunClock(store.clock))
    lanes = Lanes.build(clients, config, clock)
    for lane in lanes.all:
        stage.review_client_of(lane.client)  # a route that cannot review: said before any ask
    stored = await store.review_settings()
    if request.batch is not None:  # --batch: only that batch's takes are due here
        stored = {request.batch: stored.get(request.batch) or ReviewSettings()}
        flags = replace(request.flags, review_all=False)
    else:
        flags = replace(request.flags, review_all=True)
    reviewer = stage.Reviewer(
        store, clock, flags, stored,
        lambda job: stage.review_client_of(lanes.for_job(job).client), ended=lambda: False,
    )  # fmt: skip
    asked = await reviewer.load_due(ids)
    await stage.review_until_idle(reviewer)
    return ReviewTally(dict(reviewer.recorded), reviewer.stopped, asked, reviewer.retakes)
