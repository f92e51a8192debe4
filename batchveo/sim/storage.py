"""Where the simulator's videos live: their URIs, signed storage URLs, and their bytes.

With ``files_host`` the URI a poll returns names that host, where no key is needed. With
``redirect_downloads`` the URI stays on the API host (key needed) and answers 302 to
``/__storage/`` on ``files_host`` (or the API host), a URL whose signature is its only
credential: the key belongs on the first hop only. The server counts a key arriving where
it does not belong (``key_leaks``).

Every video is the packaged sample made to last the video's length (``sample_lasting``:
``mp4.with_duration`` scales its headers and sample table, so an 8 s clip says 8 s and a
scene chain's hop says its parent's length plus 7 s), then an MP4 ``free`` box naming its
file, so each operation's bytes are its own (as real videos are) and the file still plays.
The stretched samples are cached per length: a video costs its tail, not a rewrite.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.resources
import secrets

from aiohttp import web

from batchveo.mp4 import with_duration
from batchveo.sim.config import SimConfig

LENGTHS_CACHED = 64
"""Stretched samples kept (``sample_lasting``): every length a Gemini-format chain reaches
(4, 6 or 8 s plus 7 s a hop) fits, and odd Vertex inputs cannot grow the cache unbounded."""
TAG_PREFIX = b"batchveo-sim "


def sample_bytes() -> bytes:
    """The packaged sample video every simulated video starts with."""
    return importlib.resources.files("batchveo").joinpath("data/sample.mp4").read_bytes()


@functools.lru_cache(maxsize=LENGTHS_CACHED)
def sample_lasting(length_s: float) -> bytes:
    """The sample made to last ``length_s`` (headers and sample table say so); cached."""
    return with_duration(_sample(), length_s)


@functools.lru_cache(maxsize=1)
def _sample() -> bytes:
    return sample_bytes()


def free_box(payload: bytes) -> bytes:
    """An MP4 ``free`` box: appended to the sample, it makes every video's bytes its own
    (as real videos are) and the file still plays."""
    return (8 + len(payload)).to_bytes(4, "big") + b"free" + payload


def video_tail(tag: str) -> bytes:
    """What follows the sample in the video named ``tag`` (a file id, an object name)."""
    return free_box(f"batchveo-sim {tag}".encode())


def tag_of(video: bytes) -> str | None:
    """What a video of this simulator's names in its trailing ``free`` box (``video_tail``),
    or None for any other bytes: how a video sent back (a bucket object, inline bytes) is
    known as one of ours."""
    for end in range(len(video) - 8, max(len(video) - 1024, -1), -1):
        if video[end + 4 : end + 8] != b"free" or video[end + 8 : end + 21] != TAG_PREFIX:
            continue
        if int.from_bytes(video[end : end + 4], "big") == len(video) - end:
            return video[end + 8 + len(TAG_PREFIX) :].decode(errors="replace")
    return None


def on_files_host(cfg: SimConfig, request: web.Request) -> bool:
    """Whether the request came to ``files_host``: another host, where no API is served."""
    host = cfg.files_host
    return host is not None and request.host.rsplit(":", 1)[0] == host


class VideoStore:
    """The videos' URLs and bytes; signatures under a secret of this simulator's own."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(16)

    def uri(self, cfg: SimConfig, request: web.Request, file_id: str) -> str:
        """Where the video lives: the API host as the client reached it, or ``files_host``.

        With ``redirect_downloads`` the URI stays on the API host (needs the key) and the
        redirect points at ``files_host``: the key must survive the first hop, not the second.
        """
        prefix = "/upload" if cfg.name_style == "short" else ""
        path = f"{prefix}/v1beta/files/{file_id}:download?alt=media"
        if cfg.files_host and not cfg.redirect_downloads:
            return f"{request.scheme}://{cfg.files_host}:{request.url.port}{path}"
        return f"{request.scheme}://{request.host}{path}"

    def redirect(self, cfg: SimConfig, request: web.Request, file_id: str) -> web.Response:
        """The 302 to the video's signed storage URL."""
        host = f"{cfg.files_host}:{request.url.port}" if cfg.files_host else request.host
        location = f"{request.scheme}://{host}/__storage/{file_id}?sig={self._sign(file_id)}"
        return web.Response(status=302, headers={"Location": location})

    def signed(self, file_id: str, sig: str) -> bool:
        """Whether ``sig`` is this file's signature (the storage URL's only credential)."""
        return hmac.compare_digest(sig, self._sign(file_id))

    def sign(self, what: str) -> str:
        """The signature of a storage URL for ``what`` (its only credential)."""
        return self._sign(what)

    def _sign(self, file_id: str) -> str:
        return hmac.new(self._secret, file_id.encode(), hashlib.sha256).hexdigest()[:32]

    def hosts(self, cfg: SimConfig, request: web.Request) -> frozenset[str]:
        """The ``host:port`` forms this simulator's video URIs name, as ``uri`` builds them
        for a request that came in as ``request`` did."""
        hosts = {request.host}
        if cfg.files_host:
            hosts.add(f"{cfg.files_host}:{request.url.port}")
        return frozenset(hosts)

    async def send(
        self, request: web.Request, file_id: str, length_s: float, truncate: bool
    ) -> web.StreamResponse:
        """The video (``length_s`` long); ``truncate``: a full Content-Length, half the
        bytes, then a close."""
        video = sample_lasting(length_s) + video_tail(file_id)
        if not truncate:
            return web.Response(body=video, content_type="video/mp4")
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.content_length = len(video)
        await resp.prepare(request)
        await resp.write(video[: len(video) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp
