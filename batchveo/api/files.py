"""The Gemini API's Files API, as a review uses it: a take too large to send inline is
uploaded, waited for until the service has processed it, named in the review by its URI,
and deleted afterwards.

Only routes that have it use it (``models.ProviderModels.files_api``: the Gemini API and
a custom server such as the simulator; GPTProto documents none). The wire is Google's
resumable upload protocol (``docs/veo-api.md``, "Review with a Gemini model"):

1. **Start**: ``POST {base}/upload/v1beta/files`` with ``X-Goog-Upload-Protocol:
   resumable``, ``X-Goog-Upload-Command: start``, ``X-Goog-Upload-Header-Content-Length:
   N``, ``X-Goog-Upload-Header-Content-Type: video/mp4`` and the JSON body ``{"file":
   {"display_name": ...}}``. The answer's ``X-Goog-Upload-URL`` header is where the bytes
   go. It must be on the provider's own hosts (``Credential.trusts``): a URL elsewhere is
   refused before a byte or the key goes there (``MalformedAnswer``).
2. **Upload**: ``POST`` the N bytes to that URL with ``X-Goog-Upload-Offset: 0``,
   ``X-Goog-Upload-Command: upload, finalize`` and ``Content-Length: N``, streamed from
   the file in chunks read on a worker thread (a take of 148 s is about 130 MB: never
   whole in memory). The answer is ``{"file": {"name": "files/ID", "uri":
   ".../v1beta/files/ID", "mimeType": "video/mp4", "sizeBytes": "N", "state":
   "PROCESSING"}}``; a ``sizeBytes`` other than N is an upload cut short (``Transient``).
3. **Wait**: ``GET {base}/v1beta/files/ID`` until ``state`` is ``ACTIVE``, with a short
   backoff on the client's injected clock and sleep, bounded (``ReadyPolicy``): still not
   active by then is ``Transient`` (try the review later); ``FAILED`` is ``BadRequest``
   with the service's reason (the video cannot be watched: a review error).
4. **Review**: ``generateContent`` with ``{"fileData": {"mimeType": "video/mp4",
   "fileUri": URI}}`` where the inline data would be (``review_wire.file_review_body``).
5. **Delete**: ``DELETE {base}/v1beta/files/ID``, best effort: a file left behind (a
   failed delete, a run killed mid-review) expires on its own after 48 hours.

The key travels in the ``x-goog-api-key`` header on every call (``transport``), never in
a URL, and only to the provider's own hosts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from yarl import URL

from batchveo.api.review_wire import VIDEO_MIME_TYPE
from batchveo.api.texts import clip
from batchveo.api.transport import Reply, Transport
from batchveo.api.urls import host_key, is_web_url, parse_url
from batchveo.errors import (
    ApiError,
    BadRequest,
    FileRefused,
    MalformedAnswer,
    TooLargeToReview,
    Transient,
)

log = logging.getLogger(__name__)

UPLOAD_PATH = "/upload/v1beta/files"
FILES_MAX_BYTES = 2 * 1024**3
"""The Files API takes files of up to 2 GB."""
UPLOAD_URL_HEADER = "X-Goog-Upload-URL"
_FILE_NAME = re.compile(r"^files/[a-z0-9][a-z0-9-]{0,39}$")


class FileState(StrEnum):
    """A file's ``state`` as the Files API says it."""

    PROCESSING = "PROCESSING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"


@dataclass(frozen=True)
class RemoteFile:
    """One uploaded file as the service describes it."""

    name: str
    """``files/ID``: what its state and its deletion are asked by."""
    uri: str
    """What ``generateContent`` names it by."""
    state: str
    size_bytes: int | None = None
    error: str = ""
    """Why processing failed (``FAILED``), as the service said it."""

    @property
    def path(self) -> str:
        """``/v1beta/files/ID``."""
        return f"/v1beta/{self.name}"


@dataclass(frozen=True)
class ReadyPolicy:
    """How long to wait for an uploaded file to become ``ACTIVE``, and how often to ask."""

    first_wait_s: float = 1.0
    max_wait_s: float = 8.0
    timeout_s: float = 300.0
    """A long take is processed in well under a minute; five is "not now"."""

    def waits_s(self) -> Iterator[float]:
        """The waits between asks: doubling from ``first_wait_s`` up to ``max_wait_s``."""
        wait = self.first_wait_s
        while True:
            yield wait
            wait = min(wait * 2, self.max_wait_s)


DEFAULT_READY = ReadyPolicy()


def start_headers(size_bytes: int) -> dict[str, str]:
    """The headers that start a resumable upload of ``size_bytes`` of video."""
    return {
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": str(size_bytes),
        "X-Goog-Upload-Header-Content-Type": VIDEO_MIME_TYPE,
    }


def start_body(display_name: str) -> bytes:
    return json.dumps({"file": {"display_name": display_name}}).encode()


def upload_headers(size_bytes: int) -> dict[str, str]:
    """The headers of the one request that sends all the bytes and finalizes."""
    return {
        "X-Goog-Upload-Offset": "0",
        "X-Goog-Upload-Command": "upload, finalize",
        "Content-Length": str(size_bytes),
    }


def parse_file(data: Any, scrub: Callable[[str], str] = str) -> RemoteFile:
    """A File resource (or ``{"file": File}``, the upload's answer); MalformedAnswer if it
    names no usable file."""
    if isinstance(data, dict) and isinstance(data.get("file"), dict):
        data = data["file"]
    if not isinstance(data, dict):
        raise MalformedAnswer("the Files API answered no file")
    name, uri, state = data.get("name"), data.get("uri"), data.get("state")
    if not (isinstance(name, str) and _FILE_NAME.match(name)):
        raise MalformedAnswer(f"the Files API answered a file name {clip(scrub(repr(name)))}")
    if not (isinstance(uri, str) and uri.strip()):
        raise MalformedAnswer(f"the Files API answered {name} without a uri")
    size = data.get("sizeBytes")
    error = data.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return RemoteFile(
        name=name,
        uri=uri,
        state=str(state) if isinstance(state, str) else "",
        size_bytes=int(size) if isinstance(size, str | int) and str(size).isdigit() else None,
        error=clip(scrub(str(message))) if message else "",
    )


class Files:
    """The Files API of one provider, over the client's transport."""

    def __init__(
        self,
        http: Transport,
        base: str,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        ready: ReadyPolicy = DEFAULT_READY,
        upload_timeout_s: float = 600,
    ):
        self._http = http
        self._base = base
        self._clock, self._sleep = clock, sleep
        self._ready = ready
        self._upload_timeout_s = upload_timeout_s

    async def upload(self, path: Path) -> RemoteFile:
        """Upload the video at ``path`` (streamed from disk); the file as first described."""
        handle, size = await asyncio.to_thread(_open, path)
        try:
            if size > FILES_MAX_BYTES:
                raise TooLargeToReview(
                    f"{path.name} is {size / 1e9:.1f} GB, over the Files API's 2 GB; not sent"
                )
            upload_url = await self._start(path.name, size)
            reply = await self._http.call(
                "POST",
                upload_url,
                "file",
                handle,
                headers=upload_headers(size),
                timeout_s=self._upload_timeout_s,
            )
        finally:
            await asyncio.to_thread(handle.close)
        file = parse_file(self._json(reply, "upload"), self._http.credential.scrub)
        if file.size_bytes is not None and file.size_bytes != size:
            raise Transient(
                f"the Files API kept {file.size_bytes} bytes of {path.name}'s {size}: "
                "the upload was cut short"
            )
        log.debug("uploaded %s as %s (%d bytes)", path.name, file.name, size)
        return file

    async def _start(self, display_name: str, size: int) -> URL:
        """Start the upload; the URL its bytes go to, checked to be the provider's."""
        url = URL(self._base + UPLOAD_PATH)
        reply = await self._http.call(
            "POST", url, "file", start_body(display_name), headers=start_headers(size)
        )
        if not reply.ok:
            raise self._http.http_error(reply, "file")
        raw = reply.headers.get(UPLOAD_URL_HEADER, "")
        upload_url = parse_url(raw) if raw else None
        if upload_url is None or not is_web_url(upload_url) or upload_url.raw_user is not None:
            raise MalformedAnswer(f"the Files API's upload start gave no {UPLOAD_URL_HEADER}")
        credential = self._http.credential
        if credential.found_in(raw):
            raise MalformedAnswer("the Files API gave an upload URL holding the API key: not used")
        if not credential.trusts(upload_url):
            raise MalformedAnswer(
                f"the Files API gave an upload URL on another host ({host_key(upload_url)}): "
                "nothing sent there (the key goes to the provider's own hosts only)"
            )
        return upload_url

    async def wait_active(self, file: RemoteFile) -> RemoteFile:
        """``file`` once ``ACTIVE``; BadRequest if it ``FAILED``, Transient if it is still
        processing when the policy's time is up."""
        deadline_s = self._clock() + self._ready.timeout_s
        waits = self._ready.waits_s()
        while True:
            if file.state == FileState.ACTIVE:
                return file
            if file.state == FileState.FAILED:
                why = f": {file.error}" if file.error else ""
                raise BadRequest(f"the Files API could not process the video ({file.name}){why}")
            left_s = deadline_s - self._clock()
            if left_s <= 0:
                raise Transient(
                    f"{file.name} was still {file.state or 'not ready'} after "
                    f"{self._ready.timeout_s:g} s of processing: not reviewed yet"
                )
            await self._sleep(min(next(waits), left_s))
            file = await self._state(file)

    async def _state(self, file: RemoteFile) -> RemoteFile:
        reply = await self._http.call("GET", URL(self._base + file.path), "file", None)
        if reply.status == 403:
            # The Files API's word for a file that is missing or expired (or another's).
            raise FileRefused(str(self._http.http_error(reply, "file")), status=403)
        current = parse_file(self._json(reply, "state"), self._http.credential.scrub)
        if current.name != file.name:
            raise MalformedAnswer(f"asked for {file.name}, the Files API answered {current.name}")
        return current

    async def delete(self, file: RemoteFile) -> None:
        """Delete ``file``, best effort: a file left behind expires after 48 hours."""
        try:
            reply = await self._http.call("DELETE", URL(self._base + file.path), "file", None)
            if not reply.ok:
                raise self._http.http_error(reply, "file")
        except ApiError as e:
            log.info("could not delete %s (it expires within 48 h): %s", file.name, e)

    def _json(self, reply: Reply, what: str) -> Any:
        if not reply.ok:
            raise self._http.http_error(reply, "file")
        try:
            return json.loads(reply.body)
        except ValueError:
            text = clip(self._http.text(reply.body))
            raise Transient(f"the Files API's {what} answered non-JSON: {text}") from None


def _open(path: Path) -> tuple[BinaryIO, int]:
    """The video opened for reading, and its size (BadRequest if it cannot be read)."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BadRequest(
            f"review of {path}: the video can no longer be read ({exc.strerror or exc})"
        ) from None
    return handle, os.fstat(handle.fileno()).st_size
