"""The simulator's aiohttp app: the service's routes, its faults, and what it counts.

One server speaks both wire formats on one port: the Gemini format below, and Vertex AI
(``vertex``: ``/v1/projects/...``, ``POST /token``, and the simulator's own Cloud Storage
at ``/storage/v1/b/...``, ``gcs``).

Gemini-format endpoints (all but ``/__sim/`` and signed storage URLs need header
``x-goog-api-key``):

- ``POST /v1beta/models/{model}:predictLongRunning``: validate, maybe fail, create an operation.
- ``GET|POST /v1beta/models/{model}/operations/{id}`` and ``/v1beta/operations/{id}``: poll.
  Only the methods allowed by ``poll_methods`` are served; the other answers 405.
  ``fail_first_polls`` N: the first N polls the server receives answer
  ``fail_first_polls_status`` (503 by default; 429, 500, 502, 504 too) whatever their method,
  as a front door under load answers before the route is known.
- ``GET /v1beta/files/{id}:download?alt=media`` and ``/upload/v1beta/files/...``: the video
  (the URI a poll returns uses the second, reseller, form when ``name_style`` is ``"short"``).
- ``GET /__storage/{id}?sig=...``: the signed storage URL a redirecting download points to;
  no key needed, and a key arriving there is counted as a leak.
- ``GET /__storage/gcs/{bucket}/{object}?sig=...``: where a Cloud Storage media read is
  redirected with ``redirect_downloads`` (on ``files_host`` if set); no token wanted there.
- ``GET /__sim/stats``, ``GET /__sim/operations`` (when each was created and finished),
  ``POST /__sim/finish_all``, ``GET|POST /__sim/config``,
  ``POST /__sim/expire_tokens`` (every bearer token handed out stops working).

A submit is checked in this order: key (401), ``precondition_failure`` (400), balance (403),
model (404), body (400, ``rules``), counted then random faults (reset, 5xx, 429), quota (429
with QuotaFailure, ``quota``), content policy (400).

``precondition_failure``: every submit answers ``400 FAILED_PRECONDITION`` with this message, as
Google answers every request of a project it will not serve ("User location is not supported
for the API use.", or a project without billing). ``early_404_s``: for that long after its
creation, polling an operation answers 404, as Google warns can happen right after a submit.

Downloads (``storage``): a key arriving on ``files_host`` or ``/__storage/`` counts in
``key_leaks``, as does one sent to a Vertex, Cloud Storage or token endpoint (the Gemini
key goes to the Gemini hosts only); ``?key=`` in a URL is refused (Google accepts it, but it
leaks into logs) and counts in ``key_in_url``. A bearer token (any ``Authorization``
header) arriving at a Gemini-format endpoint, at a signed storage URL or on ``files_host``
counts in ``bearer_leaks``: it belongs to the Vertex and Cloud Storage endpoints only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from batchveo.models import MODELS
from batchveo.sim import wire
from batchveo.sim.config import SimConfig
from batchveo.sim.faults import Dropped, Faults
from batchveo.sim.gcs import ObjectStore, StoredObject
from batchveo.sim.generation import draw_generation_s
from batchveo.sim.markers import Marks, parse_markers
from batchveo.sim.ops import Op, Operations, Outcome
from batchveo.sim.quota import Quotas
from batchveo.sim.rules import validate
from batchveo.sim.stats import GEMINI_ENDPOINTS, VERTEX_ENDPOINTS, Stats
from batchveo.sim.storage import VideoStore, on_files_host
from batchveo.sim.tokens import TokenIssuer, make_service_account_key
from batchveo.sim.vertex import VertexService
from batchveo.sim.wire import KEY_HEADER

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
"""Largest request body served: three reference images and two frames, base64, fit well."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """The fake service: an ``aiohttp`` app plus the state it serves (see module docstring)."""

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.url = ""
        self._rng = random.Random(self.config.seed)
        self._ids = random.Random(None if self.config.seed is None else self.config.seed + 1)
        self._videos = VideoStore()
        self._runner: web.AppRunner | None = None
        self._ops = Operations()
        self._quotas = Quotas(self.config.clock())
        self._faults = Faults(self._rng)
        self._stats = Stats()
        self._counters = self._stats.counters
        self.issuer = TokenIssuer(self.config.token_lifetime_s, clock=lambda: self.config.clock())
        """The token endpoint's issuer: who is trusted, which tokens are live."""
        self.objects = ObjectStore(self.issuer)
        """The simulator's own Cloud Storage (tests may put ``gs://`` images in it)."""
        self.objects.redirect = self._gcs_redirect
        self._vertex = VertexService(
            lambda: self.config,
            rng=self._rng,
            ids=self._ids,
            faults=self._faults,
            stats=self._stats,
            issuer=self.issuer,
            objects=self.objects,
            sample=self._videos.sample,
        )
        self._trust_key_files(self.config.vertex_keys)
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self._add_routes()

    def _add_routes(self) -> None:
        add = self.app.router.add_route
        submit = self._counted("submit", self._submit)
        poll = self._counted("poll", self._poll)
        download = self._counted("download", self._download)
        add("POST", "/v1beta/models/{model}:predictLongRunning", submit)
        for path in ("/v1beta/models/{model}/operations/{op}", "/v1beta/operations/{op}"):
            add("GET", path, poll)
            add("POST", path, poll)
        add("GET", "/v1beta/files/{file}:download", download)
        add("GET", "/upload/v1beta/files/{file}:download", download)
        add("GET", "/__storage/{file}", self._counted("storage", self._storage))
        signed_gcs = self._counted("storage", self._gcs_signed)
        add("GET", "/__storage/gcs/{bucket}/{object:.+}", signed_gcs)
        self._add_vertex_routes()
        add("GET", "/__sim/stats", self._stats_handler)
        add("GET", "/__sim/operations", self._operations_handler)
        add("POST", "/__sim/finish_all", self._finish_all_handler)
        add("GET", "/__sim/config", self._config_handler)
        add("POST", "/__sim/config", self._config_handler)
        add("POST", "/__sim/expire_tokens", self._expire_tokens_handler)

    def _add_vertex_routes(self) -> None:
        add = self.app.router.add_route
        vertex = self._vertex
        model = "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}"
        add("POST", f"{model}:predictLongRunning", self._counted("vertex_submit", vertex.submit))
        add("POST", f"{model}:fetchPredictOperation", self._counted("vertex_poll", vertex.fetch))
        operation = self._counted("vertex_operation", vertex.operation)
        for path in (
            f"{model}/operations/{{op}}",
            "/v1/projects/{project}/locations/{location}/operations/{op}",
        ):
            add("GET", path, operation)
            add("POST", path, operation)
        add("POST", "/token", self._counted("token", vertex.token))
        add("GET", "/storage/v1/b/{bucket}/o/{object:.+}", self._counted("gcs", self._gcs))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._vertex.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def configure(self, **changes: Any) -> SimConfig:
        """Change knobs at runtime (same as ``POST /__sim/config``); returns the new config."""
        new = self.config.with_changes(changes)
        self._trust_key_files(k for k in new.vertex_keys if k not in self.config.vertex_keys)
        self.config = new
        if "seed" in changes:
            self._rng.seed(self.config.seed)
        self.issuer.lifetime_s = self.config.token_lifetime_s
        return self.config

    # -- Vertex credentials --------------------------------------------------------------------

    def trust_key(self, info: dict[str, Any]) -> None:
        """Hand out tokens for this service-account key file (for its project only)."""
        self._vertex.trust(info)

    def make_key(self, path: Path, project: str = "batchveo-sim") -> Path:
        """Write a throwaway service-account key whose ``token_uri`` is this simulator's
        ``/token``, and trust it: ``GOOGLE_APPLICATION_CREDENTIALS=path`` then gets tokens
        through google-auth's own flow. The simulator must be started (its URL is in it)."""
        if not self.url:
            raise RuntimeError("start the simulator before making a key (its URL is in it)")
        key = make_service_account_key(f"{self.url}/token", project=project)
        self.trust_key(key.info)
        return key.write(path)

    def _trust_key_files(self, paths: Any) -> None:
        for path in paths:
            try:
                info = json.loads(Path(path).read_text(encoding="utf-8"))
                self.trust_key(info)
            except (OSError, ValueError, KeyError, TypeError) as e:
                message = f"vertex_keys: {path}: not a usable service-account key ({e})"
                raise ValueError(message) from None

    # -- test helpers --------------------------------------------------------------------------

    def finish_all(self) -> None:
        """Every operation still generating (either format) finishes now."""
        now = self.config.clock()
        self._ops.finish_all(now)
        self._vertex.finish_all(now)

    def operations(self) -> dict[str, Any]:
        """Every operation still kept (both formats): its name, when it was created and when
        it finished or will (``done_at``), its polls and outcome, all on the simulator's
        clock, whose time now is ``now``; ``GET /__sim/operations``. How late each one was
        noticed is then the client's done time against this ``done_at``."""
        return {
            "now": self.config.clock(),
            "operations": self._ops.timeline() + self._vertex.timeline(),
        }

    def stats(self) -> dict[str, Any]:
        """What the service saw; ``operations`` and ``running_ops`` count both formats."""
        now = self.config.clock()
        running = self._ops.running(now) + self._vertex.running(now)  # counts the finished
        counts = dict(self._ops.counts)
        for scope_counts in self._vertex.operation_counts():
            for key, n in scope_counts.items():
                counts[key] += n
        return self._stats.snapshot(counts, running, self._vertex.snapshot())

    # -- bookkeeping ---------------------------------------------------------------------------

    def _counted(self, kind: str, impl: Handler) -> Handler:
        """Wrap a handler: injected latency, key-leak accounting, per-status counts."""

        async def handler(request: web.Request) -> web.StreamResponse:
            cfg = self.config
            if cfg.latency_s[1] > 0:
                await asyncio.sleep(self._rng.uniform(*cfg.latency_s))
            elsewhere = kind == "storage" or self._files_host(request)
            if KEY_HEADER in request.headers and (elsewhere or kind in VERTEX_ENDPOINTS):
                self._counters["key_leaks"] += 1
            if "Authorization" in request.headers and (elsewhere or kind in GEMINI_ENDPOINTS):
                self._counters["bearer_leaks"] += 1
            if "key" in request.query:
                self._counters["key_in_url"] += 1
            resp = await impl(request)
            self._stats.answered(kind, "reset" if isinstance(resp, Dropped) else str(resp.status))
            return resp

        return handler

    def _files_host(self, request: web.Request) -> bool:
        return on_files_host(self.config, request)

    def _key_ok(self, request: web.Request) -> bool:
        """Only the header counts: ``?key=`` works on Google but leaks, so it is refused here."""
        return hmac.compare_digest(
            request.headers.get(KEY_HEADER, "").encode(), self.config.api_key.encode()
        )

    def _quota_check(self, now: float, model: str, is_submit: bool) -> web.Response | None:
        """A 429 for the quota this request would break, counted; None within quota."""
        ops = self._ops if is_submit else None
        violation = self._quotas.check(self.config, now, model, ops)
        if violation is None:
            return None
        if violation.per_day:
            self._counters["per_day_quota_429s"] += 1
        self._counters["quota_violations"] += 1
        return wire.quota_exceeded(
            violation.quota, violation.delay_s, self.config.retry_after_style
        )

    # -- submit --------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        body, prompt = self._read_submit(await request.read())
        model = request.match_info["model"]
        if (refusal := self._refuse_submit(request, model, body)) is not None:
            return refusal
        assert isinstance(prompt, str)  # validate() checked it
        marks = parse_markers(prompt)
        if "bad_request" in marks:
            return wire.bad_request("Request contains an invalid argument.")
        cfg = self.config
        if (fault := self._faults.counted(cfg, request, prompt, marks)) is not None:
            return fault
        if (fault := self._faults.submit_fault(cfg, request)) is not None:
            return fault
        now = cfg.clock()
        if (quota := self._quota_check(now, model, is_submit=True)) is not None:
            return quota
        if "content_policy" in marks or self._faults.injected(cfg.rate_content_policy):
            return wire.bad_request(wire.CONTENT_POLICY_MESSAGE)
        op = self._create(now, model, prompt, marks)
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
        cfg = self.config
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
        if err := validate(body, info, self._ops.files):
            return wire.bad_request(err)
        return None

    def _create(self, now: float, model: str, prompt: str, marks: Marks) -> Op:
        cfg = self.config
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
        )
        if outcome == "ok":
            op.file_id = f"{self._ids.getrandbits(48):012x}"
        self._ops.add(op, now, cfg.retention_s)
        in_window = self._quotas.count_submit(cfg, now)
        self._stats.accept(prompt, now)
        self._stats.high_water("max_submits_in_window", in_window)
        self._stats.high_water("max_concurrent_ops", self._ops.running(now))
        return op

    # -- poll ----------------------------------------------------------------------------------

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
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
        if op.outcome == "error":
            return wire.failed_body(op.name)
        uri = None
        if op.outcome == "ok" and op.file_id is not None:
            uri = self._videos.uri(self.config, request, op.file_id)
        return wire.done_body(op.name, uri, nested=self.config.response_style == "nested")

    def _expired(self, op: Op, now: float) -> bool:
        return op.expired(now, self.config.retention_s)

    # -- download ------------------------------------------------------------------------------

    def _live_file(self, file_id: str) -> Op | None:
        op = self._ops.files.get(file_id)
        now = self.config.clock()
        if op is None or now < op.done_at or self._expired(op, now):
            return None
        return op

    async def _download(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        on_files_host = self._files_host(request)
        if not on_files_host and not self._key_ok(request):
            return wire.reseller_error(401, "Invalid signature")
        if request.query.get("alt") != "media":
            return wire.bad_request("Only alt=media downloads are supported on this path.")
        op = self._live_file(request.match_info["file"])
        if op is None or op.file_id is None:
            return wire.not_found("File not found or expired.")
        if op.file403:
            return wire.file_forbidden(op.file_id)
        if cfg.redirect_downloads and not on_files_host:
            return self._videos.redirect(cfg, request, op.file_id)
        return await self._send_video(request, op, op.file_id)

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        """A signed storage URL: the signature is the credential, the API key is not wanted."""
        file_id = request.match_info["file"]
        if not self._videos.signed(file_id, request.query.get("sig", "")):
            return web.Response(status=403, text="AccessDenied: invalid signature")
        op = self._live_file(file_id)
        if op is None:
            return web.Response(status=404, text="NoSuchKey")
        return await self._send_video(request, op, file_id)

    async def _send_video(self, request: web.Request, op: Op, file_id: str) -> web.StreamResponse:
        if self._faults.injected(self.config.rate_reset):
            return self._faults.drop(request)
        truncate = op.trunc > 0 or self._faults.injected(self.config.rate_truncated_download)
        if truncate:
            op.trunc = max(op.trunc - 1, 0)
            self._counters["truncated_downloads"] += 1
        return await self._videos.send(request, file_id, truncate)

    # -- Cloud Storage ----------------------------------------------------------------------

    async def _gcs(self, request: web.Request) -> web.StreamResponse:
        """The simulator's own Cloud Storage (``gcs.ObjectStore``); not on ``files_host``."""
        if self._files_host(request):
            return wire.not_found()
        if request.query.get("alt") == "media":
            if self._faults.injected(self.config.rate_reset):
                return self._faults.drop(request)
            obj = self.objects.objects.get(
                (request.match_info["bucket"], request.match_info["object"])
            )
            if obj is not None and self._faults.injected(self.config.rate_truncated_download):
                obj.truncate += 1  # this read is cut short
        return await self.objects.handle(request)

    def _gcs_redirect(self, request: web.Request, obj: StoredObject) -> str | None:
        """With ``redirect_downloads``, a media read answers 302 to a signed URL (on
        ``files_host`` if set) where the bearer token must not follow."""
        cfg = self.config
        if not cfg.redirect_downloads:
            return None
        host = f"{cfg.files_host}:{request.url.port}" if cfg.files_host else request.host
        sig = self._videos.sign(f"gcs/{obj.bucket}/{obj.name}")
        path = f"/__storage/gcs/{quote(obj.bucket, safe='')}/{quote(obj.name, safe='')}"
        return f"{request.scheme}://{host}{path}?sig={sig}"

    async def _gcs_signed(self, request: web.Request) -> web.StreamResponse:
        """A signed URL of a Cloud Storage object: the signature is the only credential."""
        bucket, name = request.match_info["bucket"], request.match_info["object"]
        if not self._videos.signed(f"gcs/{bucket}/{name}", request.query.get("sig", "")):
            return web.Response(status=403, text="AccessDenied: invalid signature")
        obj = self.objects.objects.get((bucket, name))
        if obj is None:
            return web.Response(status=404, text="NoSuchKey")
        return await self.objects.send_media(request, obj)

    # -- /__sim/ -------------------------------------------------------------------------------

    async def _expire_tokens_handler(self, request: web.Request) -> web.Response:
        self.issuer.expire_all()
        return web.json_response({"ok": True})

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _operations_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.operations())

    async def _finish_all_handler(self, request: web.Request) -> web.Response:
        self.finish_all()
        return web.json_response({"ok": True})

    async def _config_handler(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict) or "clock" in changes:
                    raise ValueError("expected a JSON object of SimConfig fields (not clock)")
                self.configure(**changes)
            except ValueError as exc:
                return wire.bad_request(str(exc))
        return web.json_response(self.config.to_json())


async def serve_forever(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    write_vertex_key: Path | None = None,
    vertex_key_project: str = "batchveo-sim",
) -> None:
    """Run a simulator until cancelled (``batchveo simulate``).

    ``write_vertex_key``: once listening, write a service-account key trusted by this
    simulator there (for ``GOOGLE_APPLICATION_CREDENTIALS``); ValueError if it cannot."""
    sim = Simulator(config)
    url = await sim.start(host, port)
    try:
        log.info(
            "Veo simulator listening on %s (key header %s: %s)", url, KEY_HEADER, sim.config.api_key
        )
        log.info("Vertex AI: %s/v1/projects/PROJECT/locations/LOCATION/publishers/google/...", url)
        if write_vertex_key is not None:
            try:
                sim.make_key(write_vertex_key, project=vertex_key_project)
            except OSError as e:
                raise ValueError(f"{write_vertex_key}: cannot write the key: {e}") from None
            log.info(
                "wrote a service-account key of project %s trusted here to %s "
                "(GOOGLE_APPLICATION_CREDENTIALS=%s)",
                vertex_key_project,
                write_vertex_key,
                write_vertex_key,
            )
        await asyncio.Event().wait()
    finally:
        await sim.stop()
