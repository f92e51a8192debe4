"""The faults the simulator injects, and what it keeps to apply them in order.

- Random faults (``rate_reset``, ``rate_5xx``, ``rate_429`` and the outcome rates) draw from
  the simulator's one random generator, so a seeded simulator repeats its faults.
- Counted faults come from a prompt's ``[sim:...xN]`` markers (``markers``): the submits of
  that prompt meet them in order, counted here per prompt.
- ``fail_first_polls``: the first N polls the server receives fail, whatever they ask.
- A dropped connection is the transport closed with no answer: the handler returns a
  ``Dropped`` response, which nobody receives and the statistics count as ``reset``.
"""

from __future__ import annotations

import random

from aiohttp import web

from batchveo.sim import vertex_wire, wire
from batchveo.sim.config import SimConfig
from batchveo.sim.markers import Marks, counted_fault


class Dropped(web.Response):
    """What a handler returns after closing the connection: counted as "reset"."""


class Faults:
    """Injects faults with ``rng``; counts what counted faults need."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seen_by_prompt: dict[str, int] = {}
        self._polls_seen = 0  # polls counted against fail_first_polls

    def injected(self, rate: float) -> bool:
        """Whether a fault of probability ``rate`` happens to this request."""
        return rate > 0 and self._rng.random() < rate

    def drop(self, request: web.Request) -> Dropped:
        """Close the connection without answering: the client sees a disconnect, no status."""
        if request.transport is not None:
            request.transport.close()
        return Dropped()

    def status(self, cfg: SimConfig, status: int, vertex: bool = False) -> web.Response:
        """A 429 (with the configured delay) or a 5xx, as the injected faults answer."""
        if status == 429:
            return self.rate_limited(cfg, vertex)
        return wire.server_error(status)

    def rate_limited(self, cfg: SimConfig, vertex: bool = False) -> web.Response:
        """A 429 not tied to a quota, worded and timed as the format's service does."""
        if vertex:
            return vertex_wire.rate_limited(cfg.retry_after_s, cfg.vertex_retry_after_style)
        return wire.too_many(
            wire.RATE_LIMITED_MESSAGE, cfg.retry_after_s, None, cfg.retry_after_style
        )

    def random_fault(self, cfg: SimConfig, request: web.Request) -> web.StreamResponse | None:
        """``rate_reset`` and ``rate_5xx``, as any request may meet them."""
        if self.injected(cfg.rate_reset):
            return self.drop(request)
        if self.injected(cfg.rate_5xx):
            return wire.server_error(503 if self._rng.random() < 0.5 else 500)
        return None

    def submit_fault(
        self, cfg: SimConfig, request: web.Request, vertex: bool = False
    ) -> web.StreamResponse | None:
        """The random faults of a submit: reset, 5xx, then 429."""
        if (fault := self.random_fault(cfg, request)) is not None:
            return fault
        return self.rate_limited(cfg, vertex) if self.injected(cfg.rate_429) else None

    def counted(
        self, cfg: SimConfig, request: web.Request, prompt: str, marks: Marks, vertex: bool = False
    ) -> web.StreamResponse | None:
        """The ``xN`` markers, applied in order: resets, then 5xx, then 429s."""
        if not marks:
            return None
        seen = self._seen_by_prompt[prompt] = self._seen_by_prompt.get(prompt, 0) + 1
        kind = counted_fault(marks, seen)
        if kind is None:
            return None
        return self.drop(request) if kind == "reset" else self.status(cfg, int(kind), vertex)

    def first_polls(self, cfg: SimConfig, vertex: bool = False) -> web.Response | None:
        """The fault of one of the first ``fail_first_polls`` polls (either format), else None."""
        if self._polls_seen >= cfg.fail_first_polls:
            return None
        self._polls_seen += 1
        return self.status(cfg, cfg.fail_first_polls_status, vertex)
