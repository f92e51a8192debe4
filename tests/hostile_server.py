"""A server that misbehaves on demand, over real sockets: what the client must survive.

The simulator is a well-behaved service. This is the other kind: a proxy, a broken reseller or
an attacker that sends bodies without end, gzip bombs, ``file://`` URIs, redirect loops, echoes
the API key back, or never answers at all. Tests point a real ``VeoClient`` (or a whole run) at
it and check that every bound holds::

    async with HostileServer(submit="never_answers") as srv:
        client = VeoClient(resolve_provider("custom", srv.url), KEY, request_timeout_s=0.2)
        ...
        assert srv.requests["submit"] == 1

It serves the client's three routes (``POST /v1beta/models/{model}:predictLongRunning``,
``GET|POST /v1beta/models/{model}/operations/{op}`` or ``/v1beta/operations/{op}``) and
``GET /video/{mode}`` for downloads. What the first two do is ``submit`` and ``poll`` (set them
in the constructor or at any time); each download mode is its own URL (``video_url(mode)``).

Sizes are small by default (a few MiB) so tests stay fast: give the client smaller caps than
these. Big bodies are written from one preallocated block, and the gzip bombs are built once
per size by compressing one block over and over, so the server itself never holds what a
bomb inflates to. ``bytes_sent`` shows how far the server got before the client stopped
reading; ``urls_with_key`` lists every request whose URL held the key.
"""

from __future__ import annotations

import asyncio
import functools
import json
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

KEY_HEADER = "x-goog-api-key"
MODEL = "veo-3.1-generate-preview"
SAMPLE_MP4 = (Path(__file__).parent.parent / "batchveo" / "data" / "sample.mp4").read_bytes()
MiB = 1 << 20
_BLOCK = b" " * (64 * 1024)  # every big body is this block, written again and again

SUBMIT_MODES = (
    "ok",  # {"name": "models/M/operations/op-1"}
    "never_answers",  # reads the request, then says nothing until the server stops
    "huge_json",  # a 200 JSON body of ``huge_bytes``, chunked (no Content-Length)
    "huge_json_length",  # the same, announced by its Content-Length
    "gzip_json",  # a small valid answer, gzip-compressed (allowed)
    "gzip_bomb",  # Content-Encoding gzip: a few KiB inflating to ``bomb_bytes`` of JSON
    "key_in_name",  # the operation name holds the key the request carried
    "502",  # a gateway's HTML page
    "504",
    "precondition",  # 400 FAILED_PRECONDITION "User location is not supported ..."
)
POLL_MODES = (
    "done",  # done, one video at video_url("ok")
    "running",
    "huge_json",
    "gzip_bomb",
    "key_in_uri",  # done, the video URI carries ?key=<the key>
    "key_in_uri_path",  # done, the key is a path segment of the video URI
    "key_in_texts",  # done with an error message and filtered reasons that hold the key
    "key_in_filtered",  # filtered, its reasons hold the key
    "file_uri",  # done, the video is file:///etc/passwd
)
VIDEO_MODES = (
    "ok",  # the sample MP4
    "huge_length",  # Content-Length ``huge_bytes`` and a body to match
    "huge_chunked",  # an MP4 header, then ``huge_bytes`` more, no Content-Length
    "gzip_bomb",  # Content-Encoding gzip: an MP4 header and zeros inflating to ``bomb_bytes``
    "brotli",  # Content-Encoding br (never asked for)
    "redirect_file",  # 302 to file:///etc/passwd
    "redirect_loop",  # 302 to itself
    "redirect_with_key",  # 302 to video_url("ok") with ?key=<the key> added
    "forbidden",  # 403 PERMISSION_DENIED, as the Files API says of an expired file
)


@functools.cache
def gzip_bomb(inflated_bytes: int, head: bytes = b"") -> bytes:
    """``head`` then zeros, ``inflated_bytes`` in all, gzip-compressed (about 1/1000 of it).

    Built from one 1 MiB block compressed again and again: never holds the inflated data.
    """
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [z.compress(head)]
    block = bytes(MiB)
    left = inflated_bytes - len(head)
    while left > 0:
        parts.append(z.compress(block[: min(left, MiB)]))
        left -= MiB
    parts.append(z.flush())
    return b"".join(parts)


class HostileServer:
    """An aiohttp app on 127.0.0.1 that misbehaves in the way it is told (module docstring)."""

    def __init__(
        self,
        *,
        submit: str = "ok",
        poll: str = "done",
        key: str = "",
        huge_bytes: int = 64 * MiB,
        bomb_bytes: int = 64 * MiB,
    ):
        self.submit, self.poll = submit, poll
        self.key = key  # echoed when a request carries none in its header
        self.huge_bytes, self.bomb_bytes = huge_bytes, bomb_bytes
        self.url = ""
        self.requests: Counter[str] = Counter()  # "submit", "poll", "video:<mode>"
        self.bytes_sent: Counter[str] = Counter()  # body bytes written, same keys
        self.urls_with_key: list[str] = []
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        add = self.app.router.add_route
        add("POST", "/v1beta/models/{model}:predictLongRunning", self._submit)
        for path in ("/v1beta/models/{model}/operations/{op}", "/v1beta/operations/{op}"):
            add("*", path, self._poll)
        add("GET", "/video/{mode}", self._video)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        self._release.set()  # a handler that "never answers" gives up now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HostileServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def video_url(self, mode: str = "ok") -> str:
        assert mode in VIDEO_MODES, mode
        return f"{self.url}/video/{mode}"

    # -- helpers -----------------------------------------------------------------------------

    def _key_of(self, request: web.Request) -> str:
        key = request.headers.get(KEY_HEADER) or self.key
        if key and key in request.raw_path:
            self.urls_with_key.append(request.raw_path)
        return key

    async def _stream(
        self,
        request: web.Request,
        what: str,
        head: bytes,
        total: int,
        headers: dict[str, str],
        length: int | None = None,
    ) -> web.StreamResponse:
        """``head`` then blocks up to ``total`` bytes, until the client stops reading."""
        resp = web.StreamResponse(headers=headers)
        if length is not None:
            resp.content_length = length
        await resp.prepare(request)
        try:
            await resp.write(head)
            self.bytes_sent[what] += len(head)
            while self.bytes_sent[what] < total:
                await resp.write(_BLOCK)
                self.bytes_sent[what] += len(_BLOCK)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what it was meant to do
        return resp

    async def _send(
        self, request: web.Request, what: str, body: bytes, headers: dict[str, str]
    ) -> web.Response:
        self.bytes_sent[what] += len(body)
        return web.Response(body=body, headers=headers)

    async def _huge_or_bomb(
        self, request: web.Request, what: str, mode: str, head: bytes
    ) -> web.StreamResponse:
        json_type = {"Content-Type": "application/json"}
        if mode == "huge_json":
            return await self._stream(request, what, head, self.huge_bytes, json_type)
        if mode == "huge_json_length":
            return await self._stream(
                request, what, head, self.huge_bytes, json_type, length=self.huge_bytes
            )
        bomb = gzip_bomb(self.bomb_bytes, head)
        return await self._send(request, what, bomb, {**json_type, "Content-Encoding": "gzip"})

    # -- routes ------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        self.requests["submit"] += 1
        key = self._key_of(request)
        await request.read()
        model = request.match_info["model"]
        mode = self.submit
        if mode == "never_answers":
            await self._release.wait()
            return web.Response(status=503)
        if mode in ("huge_json", "huge_json_length", "gzip_bomb"):
            head = f'{{"name": "models/{model}/operations/op-1", "pad": "'.encode()
            return await self._huge_or_bomb(request, "submit", mode, head)
        if mode == "gzip_json":
            body = json.dumps({"name": f"models/{model}/operations/op-1"}).encode()
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            return await self._send(request, "submit", z.compress(body) + z.flush(), headers)
        if mode in ("502", "504"):
            title = "502 Bad Gateway" if mode == "502" else "504 Gateway Time-out"
            page = f"<html><head><title>{title}</title></head><body>{title}</body></html>"
            return web.Response(status=int(mode), text=page, content_type="text/html")
        if mode == "precondition":
            err = {
                "code": 400,
                "message": "User location is not supported for the API use.",
                "status": "FAILED_PRECONDITION",
            }
            return web.json_response({"error": err}, status=400)
        name = f"models/{model}/operations/op-{key}" if mode == "key_in_name" else None
        assert mode in ("ok", "key_in_name"), f"unknown submit mode {mode!r}"
        return web.json_response({"name": name or f"models/{model}/operations/op-1"})

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        self.requests["poll"] += 1
        key = self._key_of(request)
        await request.read()
        name = f"operations/{request.match_info['op']}"
        mode = self.poll
        if mode in ("huge_json", "gzip_bomb"):
            head = f'{{"name": "{name}", "done": false, "pad": "'.encode()
            return await self._huge_or_bomb(request, "poll", mode, head)
        if mode == "running":
            return web.json_response({"name": name})
        reasons = [f"blocked; support key {key}", "58061214"]
        if mode == "key_in_filtered":
            response = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": reasons}
            return web.json_response({"name": name, "done": True, "response": response})
        if mode == "key_in_texts":
            error = {"code": 13, "message": f"failed for key {key}", "status": "INTERNAL"}
            return web.json_response({"name": name, "done": True, "error": error})
        uri = {
            "done": self.video_url("ok"),
            "key_in_uri": f"{self.video_url('ok')}?alt=media&key={key}",
            "key_in_uri_path": f"{self.url}/files/{key}:download?alt=media",
            "file_uri": "file:///etc/passwd",
        }[mode]
        samples = [{"video": {"uri": uri, "encoding": "video/mp4"}}]
        response = {"generateVideoResponse": {"generatedSamples": samples}}
        return web.json_response({"name": name, "done": True, "response": response})

    async def _video(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        what = f"video:{mode}"
        self.requests[what] += 1
        key = self._key_of(request)
        mp4 = {"Content-Type": "video/mp4"}
        if mode == "ok":
            return await self._send(request, what, SAMPLE_MP4, mp4)
        if mode == "huge_length":
            return await self._stream(
                request, what, SAMPLE_MP4, self.huge_bytes, mp4, length=self.huge_bytes
            )
        if mode == "huge_chunked":
            return await self._stream(request, what, SAMPLE_MP4, self.huge_bytes, mp4)
        if mode == "gzip_bomb":
            bomb = gzip_bomb(self.bomb_bytes, SAMPLE_MP4[:64])
            return await self._send(request, what, bomb, {**mp4, "Content-Encoding": "gzip"})
        if mode == "brotli":
            return await self._send(
                request, what, b"\x1b\x00" * 64, {**mp4, "Content-Encoding": "br"}
            )
        redirects = {
            "redirect_file": "file:///etc/passwd",
            "redirect_loop": "/video/redirect_loop",
            "redirect_with_key": f"/video/ok?alt=media&key={key}",
        }
        if mode in redirects:
            return web.Response(status=302, headers={"Location": redirects[mode]})
        if mode == "forbidden":
            err: dict[str, Any] = {
                "code": 403,
                "message": "You do not have permission to access the File x or it may not exist.",
                "status": "PERMISSION_DENIED",
            }
            return web.json_response({"error": err}, status=403)
        return web.Response(status=404, text=f"unknown video mode {mode!r}")
