"""The simulator's aiohttp app: its routes, its lifecycle, and what every request counts.

One server speaks both wire formats on one port. It owns the app and the state the
services share (the operations of the Gemini format, the videos, the faults, the counts);
each service owns its handlers:

- ``gemini``: the Gemini v1beta format, ``POST /v1beta/models/{model}:predictLongRunning``
  and the polls of ``/v1beta/.../operations/{id}`` (header ``x-goog-api-key``).
- ``downloads``: the videos, ``/v1beta/files/{id}:download``, the signed storage URLs of
  ``/__storage/``, and the simulator's own Cloud Storage at ``/storage/v1/b/...``.
- ``vertex``: Vertex AI, ``/v1/projects/...``, and ``POST /token``.
- ``review``: both formats' ``generateContent`` (a Gemini model reviewing a video).
- ``files``: the Files API a review's large video is uploaded to: ``/upload/v1beta/files``
  (start, then the bytes), ``GET|DELETE /v1beta/files/{id}``.
- here, test-only: ``GET /__sim/stats``, ``GET /__sim/operations`` (when each operation
  was created and finished), ``POST /__sim/finish_all``,
  ``GET|POST /__sim/config``, ``POST /__sim/expire_tokens`` (every bearer token handed out
  stops working). No key needed.

Every route is wrapped (``_counted``): injected latency (``latency_s``), answers counted by
endpoint and status, and credentials sent where they do not belong. A key arriving on
``files_host`` or ``/__storage/`` counts in ``key_leaks``, as does one sent to a Vertex,
Cloud Storage or token endpoint (the Gemini key goes to the Gemini hosts only); ``?key=``
in a URL is refused (Google accepts it, but it leaks into logs) and counts in
``key_in_url``. A bearer token (any ``Authorization`` header) arriving at a Gemini-format
endpoint, at a signed storage URL or on ``files_host`` counts in ``bearer_leaks``: it
belongs to the Vertex and Cloud Storage endpoints only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from batchveo.sim import wire
from batchveo.sim.config import SimConfig
from batchveo.sim.downloads import Downloads
from batchveo.sim.faults import Dropped, Faults
from batchveo.sim.files import FileService
from batchveo.sim.gcs import ObjectStore
from batchveo.sim.gemini import GeminiService
from batchveo.sim.ops import Operations
from batchveo.sim.review import ReviewService
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
        self._faults = Faults(self._rng)
        self._stats = Stats()
        self._counters = self._stats.counters
        self.issuer = TokenIssuer(self.config.token_lifetime_s, clock=lambda: self.config.clock())
        """The token endpoint's issuer: who is trusted, which tokens are live."""
        self.objects = ObjectStore(self.issuer)
        """The simulator's own Cloud Storage (tests may put ``gs://`` images in it)."""
        self._gemini = GeminiService(
            lambda: self.config,
            rng=self._rng,
            ids=self._ids,
            faults=self._faults,
            stats=self._stats,
            ops=self._ops,
            videos=self._videos,
        )
        self._downloads = Downloads(
            lambda: self.config,
            faults=self._faults,
            stats=self._stats,
            ops=self._ops,
            videos=self._videos,
            objects=self.objects,
        )
        self.objects.redirect = self._downloads.gcs_redirect
        self._vertex = VertexService(
            lambda: self.config,
            rng=self._rng,
            ids=self._ids,
            faults=self._faults,
            stats=self._stats,
            issuer=self.issuer,
            objects=self.objects,
        )
        self._files = FileService(lambda: self.config, stats=self._stats, seed=self.config.seed)
        self._review = ReviewService(
            lambda: self.config,
            faults=self._faults,
            stats=self._stats,
            accounts=self._vertex.accounts,
            read_object=self._vertex.read_object,
            files=self._files,
        )
        self._trust_key_files(self.config.vertex_keys)
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self._add_routes()

    def _add_routes(self) -> None:
        add = self.app.router.add_route
        submit = self._counted("submit", self._gemini.submit)
        poll = self._counted("poll", self._gemini.poll)
        downloads = self._downloads
        download = self._counted("download", downloads.download)
        add("POST", "/v1beta/models/{model}:predictLongRunning", submit)
        add(
            "POST",
            "/v1beta/models/{model}:generateContent",
            self._counted("review", self._review.gemini),
        )
        for path in ("/v1beta/models/{model}/operations/{op}", "/v1beta/operations/{op}"):
            add("GET", path, poll)
            add("POST", path, poll)
        add("GET", "/v1beta/files/{file}:download", download)
        add("GET", "/upload/v1beta/files/{file}:download", download)
        upload = self._counted("upload", self._files.upload)
        add("POST", "/upload/v1beta/files", upload)
        add("PUT", "/upload/v1beta/files", upload)
        add("GET", "/v1beta/files/{file}", self._counted("file", self._files.get))
        add("DELETE", "/v1beta/files/{file}", self._counted("file", self._files.delete))
        add("GET", "/__storage/{file}", self._counted("storage", downloads.storage))
        signed_gcs = self._counted("storage", downloads.gcs_signed)
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
        review = self._counted("vertex_review", self._review.vertex)
        add("POST", f"{model}:generateContent", review)
        operation = self._counted("vertex_operation", vertex.operation)
        for path in (
            f"{model}/operations/{{op}}",
            "/v1/projects/{project}/locations/{location}/operations/{op}",
        ):
            add("GET", path, operation)
            add("POST", path, operation)
        add("POST", "/token", self._counted("token", vertex.accounts.token))
        gcs = self._counted("gcs", self._downloads.gcs)
        add("GET", "/storage/v1/b/{bucket}/o/{object:.+}", gcs)

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
        self._vertex.accounts.trust(info)

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
