"""A video from a URL to a file on disk: whole, checked and durable, or not at all.

* **Redirects** are followed by hand, at most ``MAX_REDIRECTS``: each hop gets the
  credential only if it is one of the provider's own hosts (a signed storage URL gets
  none), a Location carrying the key in a query parameter loses that parameter, and one
  holding it anywhere else, or not http(s), is ``UnusableVideo``.
* **Bounds.** Videos are asked for as identity: any other Content-Encoding (a gzip bomb)
  is ``UnusableVideo``, never inflated, and so is a video over ``max_video_bytes``
  (``MAX_VIDEO_BYTES``): refused from its Content-Length, or cut off as soon as it grows
  past the cap.
* **To disk.** The body streams to ``<dest>.part`` while hashing, is checked against its
  Content-Length and for the MP4 ``ftyp`` box; then ``files`` makes the file durable
  (fsync, rename into place, fsync the folder), so ``dest`` exists only when it is
  complete. A body that is not an MP4 raises ``WrongBytes`` (a ``Transient``): a proxy's
  error page may be replaced by the real file later, and failing the job would throw away
  a paid video.
  ``save_video`` does all of this for bytes from any source (Vertex AI may send a video
  inline in a poll's answer), ``stream_to_file`` for a response. A caller that knows
  more of the bytes beforehand (Cloud Storage's size and checksum) passes a ``BodyCheck``:
  it sees every chunk and may refuse the whole before the file counts.

What a refusal (a status other than 200) means depends on the provider's storage, so the
caller says it (``Refusal``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import aiohttp
from yarl import URL

from batchveo.api.bounded import read_error_body
from batchveo.api.errormap import network_error
from batchveo.api.results import DownloadResult
from batchveo.api.texts import show_url, token
from batchveo.api.transport import NETWORK_ERRORS, Reply, Transport
from batchveo.api.urls import is_web_url, parse_url, strip_key
from batchveo.errors import ApiError, Transient, UnusableVideo, WrongBytes
from batchveo.files import FileCommitter, PartFile

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
"""Redirects followed for one download: a signed storage URL needs one; more is a loop."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 1 << 20
"""One read of a video body, written to the ``.part`` as it comes."""
MAX_VIDEO_BYTES = 512 << 20
"""Default cap on one downloaded video: a 4k 8 s clip is about 60 MB and a 148 s extended
720p chain about 150 MB, so 512 MiB is well above any real one, and far below a full disk."""

Refusal = Callable[[Reply, URL], ApiError]
"""What a non-200, non-redirect answer from ``url`` means, as the exception to raise."""


class BodyCheck(Protocol):
    """What the caller knows of a video's bytes beforehand (a checksum, a size)."""

    def update(self, chunk: bytes) -> None:
        """Every chunk, in order, as it is written to the ``.part``."""
        ...

    def verify(self, size: int) -> None:
        """After the last chunk, before the file counts: raise if these are not the bytes
        expected (``WrongBytes``: the next try may get the right ones)."""
        ...


class VideoDownloads:
    """Downloads over a client's transport, each made durable by one file committer."""

    def __init__(
        self,
        transport: Transport,
        *,
        timeout_s: float = 600,
        max_video_bytes: int = MAX_VIDEO_BYTES,
    ):
        self._http = transport
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=transport.connect_timeout_s
        )
        self._max_video_bytes = max_video_bytes
        self._files = FileCommitter()

    async def close(self) -> None:
        """Wait for the files being made durable."""
        await self._files.close()

    async def save(self, data: bytes, dest: Path) -> DownloadResult:
        """A video already in memory (sent inline), checked and made durable like a download."""
        return await save_video(
            _one_chunk(data), dest, self._files, self._max_video_bytes, len(data)
        )

    async def fetch(
        self, url: URL, dest: Path, refused: Refusal, check: BodyCheck | None = None
    ) -> DownloadResult:
        """Stream ``url`` to ``dest`` atomically; the credential goes to trusted hosts only."""
        credential = self._http.credential
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._http.session().get(
                    url,
                    headers={**credential.headers_for(url), "Accept-Encoding": "identity"},
                    allow_redirects=False,
                    timeout=self._timeout,
                ) as resp:
                    log.debug("GET %s -> %s", url.with_query(None), resp.status)
                    if resp.status in REDIRECT_STATUSES:
                        url = self._redirect_target(url, resp)
                        continue
                    if resp.status != 200:
                        body = await read_error_body(resp)
                        raise refused(Reply(resp.status, resp.reason, resp.headers, body), url)
                    return await stream_to_file(
                        resp, dest, self._files, self._max_video_bytes, check
                    )
            except NETWORK_ERRORS as exc:
                raise network_error(exc, None, "download", credential.scrub) from None
        raise UnusableVideo(f"the download gave more than {MAX_REDIRECTS} redirects (a loop?)")

    def _redirect_target(self, url: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise Transient(f"HTTP {resp.status} redirect without a Location header")
        credential = self._http.credential
        relative = parse_url(location)
        joined = None if relative is None else strip_key(str(url.join(relative)), credential)
        if joined is None and relative is not None:
            shown = show_url(credential.scrub(location))
            raise UnusableVideo(f"redirect to a URL that holds the API key: {shown}")
        target = None if joined is None else parse_url(joined)
        if target is None or not is_web_url(target):
            shown = show_url(credential.scrub(location))
            raise UnusableVideo(f"redirect to a non-http(s) URL: {shown}")
        return target


async def stream_to_file(
    resp: aiohttp.ClientResponse,
    dest: Path,
    committer: FileCommitter,
    max_bytes: int,
    check: BodyCheck | None = None,
) -> DownloadResult:
    """A response's body -> ``save_video``, once its headers promise something acceptable.

    The bytes are taken as sent: identity was asked for, and a video in any other encoding
    is refused rather than inflated (a gzip bomb). So is one over ``max_bytes``, before
    reading when its Content-Length says so, else as soon as it grows past it.
    """
    expected = _acceptable_length(resp, max_bytes)
    try:
        return await save_video(
            resp.content.iter_chunked(CHUNK_BYTES), dest, committer, max_bytes, expected, check
        )
    except UnusableVideo:
        resp.close()  # read no further: the rest is never wanted
        raise


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def save_video(
    chunks: AsyncIterable[bytes],
    dest: Path,
    committer: FileCommitter,
    max_bytes: int,
    expected: int | None = None,
    check: BodyCheck | None = None,
) -> DownloadResult:
    """Bytes -> dest.part (hashing) -> checks -> durable rename (see ``files``).

    Whatever the source (a response streamed, a video sent inline in a poll's answer), the
    video is cut off past ``max_bytes``, must have ``expected`` bytes when that is known,
    must pass ``check`` when there is one, and must be an MP4; ``dest.part`` is gone
    unless all of that holds.
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    part = PartFile(dest)
    try:
        try:
            async for chunk in chunks:
                if size + len(chunk) > max_bytes:
                    raise UnusableVideo(
                        f"the video grew to more than {max_bytes} bytes (the cap): "
                        "cut off and discarded"
                    )
                part.write(chunk)
                digest.update(chunk)
                if check is not None:
                    check.update(chunk)
                size += len(chunk)
                if len(head) < 8:
                    head += chunk[: 8 - len(head)]
        except aiohttp.ClientPayloadError:
            raise WrongBytes(_truncated(size, expected)) from None
        if expected is not None and size != expected:
            raise WrongBytes(_truncated(size, expected))
        if check is not None:
            check.verify(size)
        if head[4:8] != b"ftyp":
            raise WrongBytes(f"downloaded {size} bytes that are not an MP4 (no ftyp box)")
    except BaseException:
        part.discard()
        raise
    sha256 = digest.hexdigest()
    final = await part.commit(committer, sha256)
    return DownloadResult(path=final, size=size, sha256=sha256)


def _acceptable_length(resp: aiohttp.ClientResponse, max_bytes: int) -> int | None:
    """The announced Content-Length, after refusing an encoded body or one over the cap."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        resp.close()
        raise UnusableVideo(
            f"the video came with Content-Encoding {token(encoding)} although identity was "
            "asked for: not decoded"
        )
    expected = resp.content_length
    if expected is not None and expected > max_bytes:
        resp.close()
        raise UnusableVideo(
            f"the video's Content-Length is {expected} bytes, over the cap of {max_bytes}: "
            "not downloaded"
        )
    return expected


def _truncated(size: int, expected: int | None) -> str:
    of = f" of {expected}" if expected is not None else ""
    return f"truncated download: got {size}{of} bytes"
