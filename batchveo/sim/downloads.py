"""The simulator's download handlers: a finished operation's video, and Cloud Storage reads.

Split from the server because serving bytes is its own concern, with its own faults (reset,
cut short, 403 on a file) and its own credentials (the API key, a bearer token, or a URL's
signature), whichever format made the video:

- ``GET /v1beta/files/{id}:download?alt=media`` and ``/upload/v1beta/files/...``: the video
  (the URI a poll returns uses the second, reseller, form when ``name_style`` is ``"short"``).
  The key is needed on the API host, not on ``files_host``; with ``redirect_downloads`` the
  API host answers 302 to a signed storage URL (``storage.VideoStore``).
- ``GET /__storage/{id}?sig=...``: the signed storage URL a redirecting download points to;
  no key needed, and a key arriving there is counted as a leak (by the server).
- ``GET /storage/v1/b/{bucket}/o/{object}``: the simulator's own Cloud Storage
  (``gcs.ObjectStore``), where Vertex outputs land; not served on ``files_host``.
- ``GET /__storage/gcs/{bucket}/{object}?sig=...``: where a Cloud Storage media read is
  redirected with ``redirect_downloads`` (on ``files_host`` if set); no token wanted there.

A video is gone once its operation has passed ``retention_s`` (404).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from batchveo.sim import wire
from batchveo.sim.config import SimConfig
from batchveo.sim.faults import Faults
from batchveo.sim.gcs import ObjectStore, StoredObject
from batchveo.sim.gemini import key_ok
from batchveo.sim.ops import Op, Operations
from batchveo.sim.stats import Stats
from batchveo.sim.storage import VideoStore, on_files_host


class Downloads:
    """The download and storage handlers, over the videos and objects they serve."""

    def __init__(
        self,
        config: Callable[[], SimConfig],
        *,
        faults: Faults,
        stats: Stats,
        ops: Operations,
        videos: VideoStore,
        objects: ObjectStore,
    ) -> None:
        self._config = config
        self._faults = faults
        self._counters = stats.counters
        self._ops, self._videos, self._objects = ops, videos, objects

    def _files_host(self, request: web.Request) -> bool:
        return on_files_host(self._config(), request)

    # -- Gemini-format videos ----------------------------------------------------------------

    def _live_file(self, file_id: str) -> Op | None:
        cfg = self._config()
        return self._ops.live_file(file_id, cfg.clock(), cfg.retention_s)

    async def download(self, request: web.Request) -> web.StreamResponse:
        cfg = self._config()
        to_files_host = self._files_host(request)
        if not to_files_host and not key_ok(cfg, request):
            return wire.reseller_error(401, "Invalid signature")
        if request.query.get("alt") != "media":
            return wire.bad_request("Only alt=media downloads are supported on this path.")
        op = self._live_file(request.match_info["file"])
        if op is None or op.file_id is None:
            return wire.not_found("File not found or expired.")
        if op.file403:
            return wire.file_forbidden(op.file_id)
        if cfg.redirect_downloads and not to_files_host:
            return self._videos.redirect(cfg, request, op.file_id)
        return await self._send_video(request, op, op.file_id)

    async def storage(self, request: web.Request) -> web.StreamResponse:
        """A signed storage URL: the signature is the credential, the API key is not wanted."""
        file_id = request.match_info["file"]
        if not self._videos.signed(file_id, request.query.get("sig", "")):
            return web.Response(status=403, text="AccessDenied: invalid signature")
        op = self._live_file(file_id)
        if op is None:
            return web.Response(status=404, text="NoSuchKey")
        return await self._send_video(request, op, file_id)

    async def _send_video(self, request: web.Request, op: Op, file_id: str) -> web.StreamResponse:
        cfg = self._config()
        if self._faults.injected(cfg.rate_reset):
            return self._faults.drop(request)
        truncate = op.trunc > 0 or self._faults.injected(cfg.rate_truncated_download)
        if truncate:
            op.trunc = max(op.trunc - 1, 0)
            self._counters["truncated_downloads"] += 1
        return await self._videos.send(request, file_id, op.length_s, truncate)

    # -- Cloud Storage ----------------------------------------------------------------------

    async def gcs(self, request: web.Request) -> web.StreamResponse:
        """The simulator's own Cloud Storage (``gcs.ObjectStore``); not on ``files_host``."""
        if self._files_host(request):
            return wire.not_found()
        if request.query.get("alt") == "media":
            cfg = self._config()
            if self._faults.injected(cfg.rate_reset):
                return self._faults.drop(request)
            obj = self._objects.objects.get(
                (request.match_info["bucket"], request.match_info["object"])
            )
            if obj is not None and self._faults.injected(cfg.rate_truncated_download):
                obj.truncate += 1  # this read is cut short
        return await self._objects.handle(request)

    def gcs_redirect(self, request: web.Request, obj: StoredObject) -> str | None:
        """With ``redirect_downloads``, a media read answers 302 to a signed URL (on
        ``files_host`` if set) where the bearer token must not follow."""
        cfg = self._config()
        if not cfg.redirect_downloads:
            return None
        host = f"{cfg.files_host}:{request.url.port}" if cfg.files_host else request.host
        sig = self._videos.sign(f"gcs/{obj.bucket}/{obj.name}")
        path = f"/__storage/gcs/{quote(obj.bucket, safe='')}/{quote(obj.name, safe='')}"
        return f"{request.scheme}://{host}{path}?sig={sig}"

    async def gcs_signed(self, request: web.Request) -> web.StreamResponse:
        """A signed URL of a Cloud Storage object: the signature is the only credential."""
        bucket, name = request.match_info["bucket"], request.match_info["object"]
        if not self._videos.signed(f"gcs/{bucket}/{name}", request.query.get("sig", "")):
            return web.Response(status=403, text="AccessDenied: invalid signature")
        obj = self._objects.objects.get((bucket, name))
        if obj is None:
            return web.Response(status=404, text="NoSuchKey")
        return await self._objects.send_media(request, obj)
