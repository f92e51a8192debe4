"""The simulator's Gemini-format service: submit and poll of the v1beta API.

Split from the server as the Vertex AI service is (``vertex``): the server owns the app,
its routes and what every request counts; this module owns what a Gemini-format submit
and poll answer. Both need header ``x-goog-api-key`` (``key_ok``: only the header counts).

- ``POST /v1beta/models/{model}:predictLongRunning``: validate, maybe fail, create an operation.
- ``GET|POST /v1beta/models/{model}/operations/{id}`` and ``/v1beta/operations/{id}``: poll.
  Only the methods allowed by ``poll_methods`` are served; the other answers 405.
  ``fail_first_polls`` N: the first N polls the server receives answer
  ``fail_first_polls_status`` (503 by default; 429, 500, 502, 504 too) whatever their method,
  as a front door under load answers before the route is known.

A submit is checked in this order: key (401), ``precondition_failure`` (400), balance (403),
model (404), body (400, ``rules``), counted then random faults (reset, 5xx, 429), quota (429
with QuotaFailure, ``quota``), content policy (400).

``precondition_failure``: every submit answers ``400 FAILED_PRECONDITION`` with this message, as
Google answers every request of a project it will not serve ("User location is not supported
for the API use.", or a project without billing). ``early_404_s``: for that long after its
creation, polling an operation answers 404, as Google warns can happen right after a submit.

An extension (``instances[0].video.uri``) must name a video this service made and still
keeps, on one of the hosts its URIs name (``rules``: 400 otherwise); its answer lasts the
input's length plus 7 s, and counts as one more hop of the input's chain
(``chains.Chains``). A root lasts its ``durationSeconds``. Extending a video does not
reset its retention (reported by Google, not documented).

The videos a finished operation names are served by ``downloads``.
"""

from __future__ import annotations

import hmac
import json
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

from batchveo.models import MODELS
from batchveo.sim import wire
from batchveo.sim.config import SimConfig
from batchveo.sim.faults import Faults
from batchveo.sim.generation import draw_generation_s
from batchveo.sim.markers import Marks, parse_markers
from batchveo.sim.ops import Op, Operations, Outcome
from batchveo.sim.quota import Quotas
from batchveo.sim.rules import (
    EXTENSION_S,
    KeptVideos,
    Source,
    input_video,
    requested_length_s,
    validate,
)
from batchveo.sim.stats import Stats
from batchveo.sim.storage import VideoStore, on_files_host
from batchveo.sim.wire import KEY_HEADER


def key_ok(cfg: SimConfig, request: web.Request) -> bool:
    """Only the header counts: ``?key=`` works on Google but leaks, so it is refused here."""
    return hmac.compare_digest(request.headers.get(KEY_HEADER, "").encode(), cfg.api_key.encode())


def _extends(body: Any) -> bool:
    """Whether a body names a video to extend (only then are the kept videos looked at)."""
    inst = body.get("instances") if isinstance(body, dict) else None
    return (
        isinstance(inst, list) and bool(inst) and isinstance(inst[0], dict) and "video" in inst[0]
    )


class GeminiService:
    """The Gemini-format submit and poll handlers and the quotas they keep (module docstring)."""

    def __init__(
        self,
        config: Callable[[], SimConfig],
        *,
        rng: random.Random,
        ids: random.Random,
        faults: Faults,
        stats: Stats,
        ops: Operations,
        videos: VideoStore,
    ) -> None:
        self._config = config
        self._rng, self._ids = rng, ids
        self._faults, self._stats = faults, stats
        self._counters = stats.counters
        self._ops, self._videos = ops, videos
        self._quotas = Quotas(config().clock())

    def _files_host(self, request: web.Request) -> bool:
        return on_files_host(self._config(), request)

    def _key_ok(self, request: web.Request) -> bool:
        return key_ok(self._config(), request)

    def _quota_check(self, now: float, model: str, is_submit: bool) -> web.Response | None:
        """A 429 for the quota this request would break, counted; None within quota."""
        cfg = self._config()
        ops = self._ops if is_submit else None
        violation = self._quotas.check(cfg, now, model, ops)
        if violation is None:
            return None
        if violation.per_day:
            self._counters["per_day_quota_429s"] += 1
        self._counters["quota_violations"] += 1
        return wire.quota_exceeded(violation.quota, violation.delay_s, cfg.retry_after_style)

    # -- submit --------------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.StreamResponse:
        body, prompt = self._read_submit(await request.read())
        model = request.match_info["model"]
        if (refusal := self._refuse_submit(request, model, body)) is not None:
            return refusal
        assert isinstance(prompt, str) and isinstance(body, dict)  # validate() checked it
        marks = parse_markers(prompt)
        if "bad_request" in marks:
            return wire.bad_request("Request contains an invalid argument.")
        cfg = self._config()
        if (fault := self._faults.counted(cfg, request, prompt, marks)) is not None:
            return fault
        if (fault := self._faults.submit_fault(cfg, request)) is not None:
            return fault
        now = cfg.clock()
        if (quota := self._quota_check(now, model, is_submit=True)) is not None:
            return quota
        if "content_policy" in marks or self._faults.injected(cfg.rate_content_policy):
            return wire.bad_request(wire.CONTENT_POLICY_MESSAGE)
        video = body["instances"][0].get("video")
        source = None if video is None else input_video(video, self._kept(request))
        assert not isinstance(source, str)  # validate() checked it
        op = self._create(now, model, prompt, marks, requested_length_s(body), source)
        if self._stats.accepted[prompt] <= marks.get("lost", 0):
            return self._faults.drop(request)
        return web.json_response({"name": op.name})

    def _read_submit(self, raw: bytes) -> tuple[Any, str | None]:
        """The body (None if not JSON) and its prompt, counted as received when it has one."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        inst = body.get("instances") if isinstance(body, dict) else None
        first = inst[0] if isinstance(inst, list) and inst else None
        prompt = first.get("prompt") if isinstance(first, dict) else None
        if not isinstance(prompt, str):
            return body, None
        self._stats.receive(prompt)
        return body, prompt

    def _refuse_submit(self, request: web.Request, model: str, body: Any) -> web.Response | None:
        """The answer to a submit refused before its content counts: host, key,
        project, balance, model, then the body's rules."""
        cfg = self._config()
        if self._files_host(request):
            return wire.not_found()
        if not self._key_ok(request):
            return wire.reseller_error(401, "Invalid signature")
        if cfg.precondition_failure:
            return wire.google_error(400, cfg.precondition_failure, "FAILED_PRECONDITION")
        if cfg.balance_submits is not None and self._quotas.accepted >= cfg.balance_submits:
            return wire.reseller_error(403, "insufficient balance, please top up your account")
        if model in cfg.retired_models:
            return wire.not_found(f"models/{model} is no longer available. Use a newer model.")
        info = MODELS.get(model)
        if info is None:
            return wire.not_found(
                f"models/{model} is not found for API version v1beta, or is not supported "
                "for predictLongRunning."
            )
        if body is None:
            return wire.bad_request("Invalid JSON payload received.")
        if err := validate(body, info, self._kept(request) if _extends(body) else None):
            return wire.bad_request(err)
        return None

    def _kept(self, request: web.Request) -> KeptVideos:
        """The videos an extension sent in ``request`` may name (``rules.KeptVideos``);
        built only for a body that extends (cheap, but not free on every submit)."""
        cfg = self._config()
        now, chains = cfg.clock(), self._stats.chains

        def find(file_id: str) -> Source | None:
            op = self._ops.live_file(file_id, now, cfg.retention_s)
            if op is None:
                return None
            return Source(file_id, op.length_s, chains.link(file_id).hop, op.name)

        return KeptVideos(self._videos.hosts(cfg, request), find)

    def _create(
        self,
        now: float,
        model: str,
        prompt: str,
        marks: Marks,
        length_s: float,
        source: Source | None,
    ) -> Op:
        """A new operation; an extension of ``source`` lasts its length plus 7 s."""
        cfg = self._config()
        gen = draw_generation_s(cfg.generation_s, self._rng, slow="slow" in marks)
        outcome: Outcome
        if "op_error" in marks or self._faults.injected(cfg.rate_operation_error):
            outcome = "error"
        elif "filtered" in marks or self._faults.injected(cfg.rate_filtered):
            outcome = "filtered"
        else:
            outcome = "ok"
        op_id = self._ops.fresh_id(self._ids)
        short = cfg.name_style == "short"
        name = f"operations/{op_id}" if short else f"models/{model}/operations/{op_id}"
        op = Op(
            op_id,
            name,
            model,
            now + gen,
            outcome,
            trunc=marks.get("truncated", 0),
            created_at=now,
            file403="file403" in marks,
            length_s=length_s if source is None else source.length_s + EXTENSION_S,
            extends=None if source is None else source.uri,
            parent=None if source is None else source.op_name,
        )
        if outcome == "ok":
            op.file_id = f"{self._ids.getrandbits(48):012x}"
        if source is not None:
            outputs = () if op.file_id is None else (op.file_id,)
            self._stats.chains.extended(source.file_id, outputs)
        self._ops.add(op, now, cfg.retention_s)
        in_window = self._quotas.count_submit(cfg, now)
        self._stats.accept(prompt, now)
        self._stats.high_water("max_submits_in_window", in_window)
        self._stats.high_water("max_concurrent_ops", self._ops.running(now))
        return op

    # -- poll ----------------------------------------------------------------------------------

    async def poll(self, request: web.Request) -> web.StreamResponse:
        cfg = self._config()
        if (first := self._faults.first_polls(cfg)) is not None:
            return first
        if cfg.poll_methods != "both" and request.method.lower() != cfg.poll_methods:
            return wire.method_not_allowed(cfg.poll_methods.upper())
        if self._files_host(request):
            return wire.not_found()
        if not self._key_ok(request):
            return wire.reseller_error(401, "Invalid signature")
        if (fault := self._faults.random_fault(cfg, request)) is not None:
            return fault
        now = cfg.clock()
        op = self._ops.by_id.get(request.match_info["op"])
        model = request.match_info.get("model")
        if op is None or (model is not None and model != op.model) or self._expired(op, now):
            return wire.not_found(f"Operation not found: {request.match_info['op']}")
        if now < op.created_at + cfg.early_404_s:
            # Google: right after the submit, the new operation may not be found yet.
            self._counters["early_404s"] += 1
            return wire.not_found(f"Operation not found: {request.match_info['op']}")
        if cfg.count_polls_in_rpm:
            if (quota := self._quota_check(now, op.model, is_submit=False)) is not None:
                return quota
            self._quotas.count_poll(now)
        op.polls += 1
        if now < op.done_at:
            return web.json_response(wire.running_body(op.name, op.polls))
        if op.reported:
            self._counters["polls_after_done"] += 1
        op.reported = True
        return web.json_response(self._done_body(request, op))

    def _done_body(self, request: web.Request, op: Op) -> dict[str, Any]:
        cfg = self._config()
        if op.outcome == "error":
            return wire.failed_body(op.name)
        uri = None
        if op.outcome == "ok" and op.file_id is not None:
            uri = self._videos.uri(cfg, request, op.file_id)
        return wire.done_body(op.name, uri, nested=cfg.response_style == "nested")

    def _expired(self, op: Op, now: float) -> bool:
        return op.expired(now, self._config().retention_s)
