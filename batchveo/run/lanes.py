"""A run's routes: one lane per ``Route.key``, each with its own client, pacer and slots.

Quotas are per project and region on Vertex AI (and per key on the Gemini-format
routes), so what paces and caps requests is the route's, not the run's: a lane is one
``Route.key``'s share of a run, with

* its client (``ClientsByRoute``: every route of one key shares one);
* its pacer (``--rpm`` per route; a 429 on one route pauses that route only);
* its in-flight slots (``--max-inflight`` per route); ``--max-jobs`` stays one cap on
  the run's sends (``slots.SendPlaces``, shared);
* its submitters, which claim only the jobs of its routes;
* whether it still submits: an account refused or a daily quota spent on one route
  stops that route's submits, and the others go on (the run stops submitting when
  every lane has stopped).

The poller and the downloader are the run's; each asks the lane of the job at hand
for its client. A run given one client (``Runner(store, client, config)``) has one lane
that serves every job, whatever its route: today's single-route run.

The slots count themselves from the store's transitions, which do not say the route:
a claim tells ``Lanes.claimed`` which lane took the job, and the job's transitions go to
that lane's slots until it leaves the in-flight states.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchveo.clock import Alarms
from batchveo.routes import Route
from batchveo.run.config import RunConfig
from batchveo.run.pacing import Pacer
from batchveo.run.routed import RouteKey, job_route, resolve
from batchveo.run.slots import InflightSlots, SendPlaces
from batchveo.states import IN_FLIGHT, JobState
from batchveo.store import Job, TransitionEvent

if TYPE_CHECKING:
    from batchveo.run.context import Client

S = JobState


class ClientsByRoute:
    """The run's clients, one per ``Route.key``, and the run's default route (its flags).

    ``single(client)`` is a run with one client for every job (today's construction);
    otherwise each route the run serves is ``add``-ed with its key's client.
    """

    def __init__(self, default: Route | None = None, routes: Iterable[tuple[Route, Client]] = ()):
        self.default = default or Route()
        self.serves_all = False
        """One client for every job, whatever its route (claims are not filtered)."""
        self._by_key: dict[RouteKey, tuple[list[Route], Client]] = {}
        for route, client in routes:
            self.add(route, client)

    @classmethod
    def single(cls, client: Client, default: Route | None = None) -> ClientsByRoute:
        clients = cls(default)
        clients._by_key[resolve(None, clients.default).key] = ([], client)
        clients.serves_all = True
        return clients

    def add(self, route: Route, client: Client) -> None:
        """Serve ``route`` (resolved against the default) with ``client``: one client
        per key, so a second route of a key must come with the same client."""
        route = resolve(route, self.default)
        routes, known = self._by_key.setdefault(route.key, ([], client))
        if known is not client:
            raise ValueError(f"{route.describe()}: one client per project and region")
        if route not in routes:
            routes.append(route)

    def entries(self) -> list[tuple[RouteKey, tuple[Route, ...], Client]]:
        """(key, the routes claimed for, client); no routes: every job."""
        return [(key, tuple(routes), client) for key, (routes, client) in self._by_key.items()]


@dataclass(eq=False)
class Lane:
    """One route key's share of a run."""

    key: RouteKey
    routes: tuple[Route, ...]
    """The routes this lane claims jobs for; empty: every job (a run with one client)."""
    client: Client
    pacer: Pacer
    slots: InflightSlots
    name: str
    """The route as messages name it (``vertex (my-proj, us-central1)``)."""
    stopped: str | None = None
    """Why this route sends no more submits in this run (None: it still does)."""
    unreachable_since: float | None = None
    unreachable_streak: int = 0
    _next_route: int = field(default=0, repr=False)

    def claim_routes(self) -> list[Route | None]:
        """The routes to claim for, in turn (None: any job); each claim starts with the
        next one, so no route of a shared key starves the others."""
        if not self.routes:
            return [None]
        start = self._next_route % len(self.routes)
        self._next_route += 1
        return list(self.routes[start:] + self.routes[:start])


class Lanes:
    """Every lane of a run, and which lane a job belongs to."""

    def __init__(self, lanes: list[Lane], default: Route, places: SendPlaces):
        self.all = lanes
        self.default = default
        self.places = places
        self._by_key = {lane.key: lane for lane in lanes}
        self._serves_all = len(lanes) == 1 and not lanes[0].routes
        self._lane_of: dict[str, Lane] = {}
        """Jobs in flight, and the lane whose slots they hold."""
        self._claimed: dict[str, TransitionEvent] = {}
        """Claims heard from the store before the claiming lane said it was its own."""

    @classmethod
    def build(
        cls,
        clients: ClientsByRoute,
        config: RunConfig,
        clock: Alarms,
        *,
        initial_delay_s: float = 0.0,
        in_flight: Iterable[Job] = (),
        rng: random.Random | None = None,
    ) -> Lanes:
        """One lane per key of ``clients``; ``in_flight`` jobs (running at the start) hold
        a slot of their own lane."""
        rng = rng or random.Random()
        places = SendPlaces(config.max_jobs)
        entries = clients.entries()
        held: dict[RouteKey, list[Job]] = {key: [] for key, _, _ in entries}
        for job in in_flight:
            route = resolve(job_route(job), clients.default)
            key = entries[0][0] if clients.serves_all else route.key
            if key not in held:
                raise LookupError(_unserved(job, route))
            held[key].append(job)
        lanes = []
        for key, routes, client in entries:
            pacer = Pacer(
                config.rpm, clock=clock, initial_delay_s=initial_delay_s,
                backoff_base_s=config.backoff_base_s, backoff_max_s=config.backoff_max_s, rng=rng,
            )  # fmt: skip
            slots = InflightSlots(config.max_inflight, places, in_flight=len(held[key]))
            name = (routes[0] if routes else resolve(None, clients.default)).describe()
            lanes.append(Lane(key, routes, client, pacer, slots, name))
        out = cls(lanes, clients.default, places)
        if not out._serves_all:
            for lane in lanes:
                out._lane_of.update((job.id, lane) for job in held[lane.key])
        return out

    @property
    def several(self) -> bool:
        return len(self.all) > 1

    def for_job(self, job: Job) -> Lane:
        """The lane that serves ``job``; LookupError if the run serves no lane of its route
        (the run is built with a client for every route with work: a bug)."""
        if self._serves_all:
            return self.all[0]
        route = resolve(job_route(job), self.default)
        lane = self._by_key.get(route.key)
        if lane is None:
            raise LookupError(_unserved(job, route))
        return lane

    def serves(self, route: Route | None) -> bool:
        """Whether a job of ``route`` (stored, None: legacy) has a lane in this run."""
        return self._serves_all or resolve(route, self.default).key in self._by_key

    def open(self) -> list[Lane]:
        """The lanes that still submit."""
        return [lane for lane in self.all if lane.stopped is None]

    def sends_spent(self) -> bool:
        return self.places.spent()

    def wake_all(self) -> None:
        for lane in self.all:
            lane.slots.wake_all()
            lane.pacer.wake_all()

    # -- the slots' share of the store's transitions ------------------------------------

    def observe(self, event: TransitionEvent) -> None:
        """A committed transition (a store observer): to the slots of the job's lane."""
        if self._serves_all:
            self.all[0].slots.observe(event)
            return
        job_id = event.job_id
        lane = self._lane_of.get(job_id)
        if event.from_state == S.PENDING and event.to_state == S.SUBMITTING and lane is None:
            self._claimed[job_id] = event  # the claiming lane says it is its own (claimed)
            return
        self._claimed.pop(job_id, None)  # a claim nobody took up (handed back), if any
        if lane is None:
            return
        lane.slots.observe(event)
        if event.to_state not in IN_FLIGHT:
            del self._lane_of[job_id]

    def claimed(self, lane: Lane, jobs: Iterable[Job]) -> None:
        """``lane`` claimed ``jobs``: their slots are its own, from their claim on."""
        if self._serves_all:
            return
        for job in jobs:
            self._lane_of[job.id] = lane
            event = self._claimed.pop(job.id, None)
            if event is not None:
                lane.slots.observe(event)


def _unserved(job: Job, route: Route) -> str:
    return f"job {job.id}: this run has no client for {route.describe()}"
