"""The simulator's Files API: the Gemini API's resumable uploads of the videos a review is
too large to carry inline, their processing, and their deletion.

Endpoints (header ``x-goog-api-key`` on each, refused with a 401 without it, as every
Gemini-format call; the server counts them as ``upload`` and ``file``):

- ``POST /upload/v1beta/files`` with ``X-Goog-Upload-Command: start``: checked like the
  service (``X-Goog-Upload-Protocol: resumable``, ``X-Goog-Upload-Header-Content-Length``
  a size from 1 to ``upload_max_bytes``, ``X-Goog-Upload-Header-Content-Type:
  video/mp4``); answers 200 with ``X-Goog-Upload-URL``, this server's
  ``/upload/v1beta/files?upload_id=...`` (on ``upload_host`` instead when set: a server
  handing out a foreign upload URL, which a client must refuse).
- ``POST`` (or ``PUT``) to that URL with ``X-Goog-Upload-Offset: 0``,
  ``X-Goog-Upload-Command: upload, finalize`` and a ``Content-Length`` equal to the
  declared size: the bytes, read in chunks (never more than declared), kept in memory.
  Answers ``{"file": File}``, ``state`` ``PROCESSING``; counted in ``files_uploaded``.
  An unknown ``upload_id`` is a 404, a wrong offset, command or length a 400.
- ``GET /v1beta/files/ID``: the File. Deterministic: the first ``file_processing_polls``
  GETs say ``PROCESSING``, then ``ACTIVE``, or ``FAILED`` (with an ``error``) when the
  bytes are no MP4, as the service fails a video it cannot decode.
- ``DELETE /v1beta/files/ID``: gone (``files_deleted``). A missing, deleted or expired
  file (48 hours, on the simulator's clock) is a 403 ``PERMISSION_DENIED``, the Files
  API's own word for it.

``generateContent`` may name an ``ACTIVE`` file by its ``uri`` (``video``): a URI not of
this server's Files API is a 400, an unknown file a 403, one not yet ``ACTIVE`` a 400
``FAILED_PRECONDITION`` (the service's message).
"""

from __future__ import annotations

import hashlib
import json
import random
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from batchveo.mp4 import NotAnMp4, duration_s
from batchveo.sim import wire
from batchveo.sim.config import SimConfig
from batchveo.sim.gemini import key_ok
from batchveo.sim.stats import Stats
from batchveo.sim.storage import on_files_host

FILES_RETENTION_S = 48 * 3600.0
"""Uploaded files are deleted by the service two days after they are made."""
CHUNK_BYTES = 1 << 16
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Pending:
    """An upload started and not yet sent."""

    size: int
    display_name: str


@dataclass
class Stored:
    """One uploaded file."""

    file_id: str
    display_name: str
    data: bytes
    created_s: float
    base: str
    """``scheme://host`` it was uploaded to: its URI's."""
    gets: int = 0

    @property
    def name(self) -> str:
        return f"files/{self.file_id}"

    @property
    def uri(self) -> str:
        return f"{self.base}/v1beta/{self.name}"

    def state(self, cfg: SimConfig) -> str:
        if self.gets <= cfg.file_processing_polls:
            return "PROCESSING"
        return "FAILED" if self.seconds() is None else "ACTIVE"

    def seconds(self) -> float | None:
        try:
            return duration_s(self.data)
        except NotAnMp4:
            return None

    def resource(self, cfg: SimConfig) -> dict[str, Any]:
        state = self.state(cfg)
        body: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "mimeType": "video/mp4",
            "sizeBytes": str(len(self.data)),
            "sha256Hash": b64encode(hashlib.sha256(self.data).digest()).decode(),
            "uri": self.uri,
            "state": state,
            "source": "UPLOADED",
        }
        if state == "ACTIVE":
            body["videoMetadata"] = {"videoDuration": f"{self.seconds():g}s"}
        elif state == "FAILED":
            body["error"] = {"code": 3, "message": "Unable to process the video: not an MP4."}
        return body


class FileService:
    """The Files API's handlers and the files they keep (module docstring)."""

    def __init__(self, config: Callable[[], SimConfig], *, stats: Stats, seed: int | None):
        self._config = config
        self._stats = stats
        self._ids = random.Random(None if seed is None else seed + 2)
        self._pending: dict[str, Pending] = {}
        self._files: dict[str, Stored] = {}

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """``POST|PUT /upload/v1beta/files``: a start, or (``upload_id``) the bytes."""
        cfg = self._config()
        if on_files_host(cfg, request):
            return wire.not_found()
        if not key_ok(cfg, request):
            return wire.reseller_error(401, "Invalid signature")
        if "upload_id" in request.query:
            return await self._receive(request, cfg, request.query["upload_id"])
        return await self._start(request, cfg)

    async def _start(self, request: web.Request, cfg: SimConfig) -> web.Response:
        headers = request.headers
        if request.method != "POST" or headers.get("X-Goog-Upload-Protocol") != "resumable":
            return wire.bad_request("Uploads must use X-Goog-Upload-Protocol: resumable.")
        if headers.get("X-Goog-Upload-Command", "").strip() != "start":
            return wire.bad_request("X-Goog-Upload-Command must be start for a new upload.")
        size = _size(headers.get("X-Goog-Upload-Header-Content-Length", ""))
        if size is None or size < 1:
            return wire.bad_request("X-Goog-Upload-Header-Content-Length must be the size.")
        if size > cfg.upload_max_bytes:
            return wire.bad_request(
                f"The file is {size} bytes, over the {cfg.upload_max_bytes} bytes allowed."
            )
        if headers.get("X-Goog-Upload-Header-Content-Type") != "video/mp4":
            return wire.bad_request("X-Goog-Upload-Header-Content-Type must be video/mp4.")
        try:
            meta = json.loads(await request.read() or b"{}")
            display_name = str(meta.get("file", {}).get("display_name", ""))
        except (ValueError, AttributeError):
            return wire.bad_request("Invalid JSON payload received.")
        upload_id = self._new_id(32)
        self._pending[upload_id] = Pending(size, display_name)
        host = cfg.upload_host or request.host
        url = URL.build(
            scheme=request.scheme,
            authority=host,
            path="/upload/v1beta/files",
            query={"upload_id": upload_id, "upload_protocol": "resumable"},
        )
        return web.Response(
            headers={
                "X-Goog-Upload-URL": str(url),
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": str(8 << 20),
            }
        )

    async def _receive(
        self, request: web.Request, cfg: SimConfig, upload_id: str
    ) -> web.StreamResponse:
        pending = self._pending.get(upload_id)
        if pending is None:
            return wire.not_found("No upload session with this upload_id.")
        headers = request.headers
        command = [c.strip() for c in headers.get("X-Goog-Upload-Command", "").split(",")]
        if command != ["upload", "finalize"]:
            return wire.bad_request("X-Goog-Upload-Command must be 'upload, finalize'.")
        if headers.get("X-Goog-Upload-Offset") != "0":
            return wire.bad_request("X-Goog-Upload-Offset must be 0: nothing was received yet.")
        if _size(headers.get("Content-Length", "")) != pending.size:
            return wire.bad_request(
                f"Content-Length must be the {pending.size} bytes declared at the start."
            )
        received = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            received += chunk
            if len(received) > pending.size:
                return wire.bad_request("More bytes than declared.")
        if len(received) != pending.size:
            return wire.bad_request(f"Received {len(received)} of {pending.size} bytes.")
        del self._pending[upload_id]
        stored = Stored(
            file_id=self._new_id(12),
            display_name=pending.display_name,
            data=bytes(received),
            created_s=cfg.clock(),
            base=f"{request.scheme}://{request.host}",
        )
        self._files[stored.file_id] = stored
        self._stats.counters["files_uploaded"] += 1
        return web.json_response(
            {"file": stored.resource(cfg)}, headers={"X-Goog-Upload-Status": "final"}
        )

    async def get(self, request: web.Request) -> web.Response:
        """``GET /v1beta/files/ID``: its state, moving on by the GETs it has had."""
        cfg = self._config()
        found = self._find(cfg, request)
        if isinstance(found, web.Response):
            return found
        found.gets += 1
        return web.json_response(found.resource(cfg))

    async def delete(self, request: web.Request) -> web.Response:
        cfg = self._config()
        found = self._find(cfg, request)
        if isinstance(found, web.Response):
            return found
        del self._files[found.file_id]
        self._stats.counters["files_deleted"] += 1
        return web.json_response({})

    def _find(self, cfg: SimConfig, request: web.Request) -> Stored | web.Response:
        if on_files_host(cfg, request):
            return wire.not_found()
        if not key_ok(cfg, request):
            return wire.reseller_error(401, "Invalid signature")
        file_id = request.match_info["file"]
        stored = self._live(cfg, file_id)
        return stored if stored is not None else wire.file_forbidden(file_id)

    def _live(self, cfg: SimConfig, file_id: str) -> Stored | None:
        stored = self._files.get(file_id)
        if stored is not None and cfg.clock() >= stored.created_s + FILES_RETENTION_S:
            del self._files[file_id]
            return None
        return stored

    def video(self, cfg: SimConfig, request: web.Request, uri: str) -> bytes | web.Response:
        """The bytes of the ``ACTIVE`` file ``uri`` names, or the service's refusal."""
        base = f"{request.scheme}://{request.host}/v1beta/files/"
        if not uri.startswith(base) or "/" in uri.removeprefix(base):
            return wire.bad_request(f"Invalid or unsupported file uri: {uri}")
        file_id = uri.removeprefix(base)
        stored = self._live(cfg, file_id)
        if stored is None:
            return wire.file_forbidden(file_id)
        if stored.state(cfg) != "ACTIVE":
            return wire.google_error(
                400,
                f"The File {file_id} is not in an ACTIVE state and usage is not allowed.",
                "FAILED_PRECONDITION",
            )
        return stored.data

    def _new_id(self, length: int) -> str:
        return "".join(self._ids.choices(_ID_CHARS, k=length))


def _size(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None
