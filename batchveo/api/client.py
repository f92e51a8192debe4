"""The client for Veo in the Gemini v1beta format: the Gemini API, GPTProto, the simulator.

One ``VeoClient`` does four things, each one request and nothing more: ``submit`` a job
(``predictLongRunning``), ``poll`` an operation, ``download`` a finished video, and
``review`` one (``generateContent``, ``review_wire``; a ``review.ReviewClient``). It never
retries and never sleeps: it turns every outcome into either a value or one exception from
``batchveo.errors`` that tells the runner what to do (wait, back off, fail the job, stop the
run, or hold a possibly-paid submit for a human). The wire contract is ``docs/veo-api.md``.
One exception: a take over the inline budget, on a route with the Files API
(``models.has_files_api``), is uploaded, waited for on the injected ``clock`` and
``sleep`` until the service has processed it, reviewed by its URI and deleted (``files``);
on a route without one it is ``TooLargeToReview`` and nothing is sent.

It is the Gemini format's routes and rules over the shared parts: ``wire`` builds and reads
the bodies, ``transport`` makes each request (probe, bounded reading, error mapping),
``download`` streams videos to disk.

* **A submit found unsent** on a pooled keep-alive connection the server had closed is
  sent once more at once, on a fresh connection: nothing left, nothing was billed. A 2xx
  without an operation name may have created one: ``SubmitOutcomeUnknown``.
* **A server that echoes the key.** Nothing the client returns or builds a URL from may
  hold it, since what it returns is stored, exported and (operation names) sent back in
  poll URLs. An operation name holding the key (or too long, or unusable in a URL path) is
  ``SubmitOutcomeUnknown`` with the key redacted: the operation may exist and be paid, but
  it cannot be polled safely, so a human decides. A video URI carrying the key in a query
  parameter loses that parameter (``urls.strip_key``); one holding it anywhere else is
  ``MalformedAnswer`` on a poll, ``UnusableVideo`` on a download. Error messages and
  ``OperationStatus`` texts are scrubbed of the key and of control characters, and clipped.
* **405 on poll.** The reseller's pages disagree on GET or POST; the client tries GET, and
  on a 405 switches to POST. The method is settled only by an answer that proves it (a
  2xx, or a 404 for the operation): a 429 or 5xx may come from a front door that never
  looked at the method. A 405 after settling negotiates again. Until the method is
  settled, polls go one at a time, so at most one 405 is spent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from yarl import URL

from batchveo.api.bounded import MAX_JSON_BYTES
from batchveo.api.download import MAX_VIDEO_BYTES, VideoDownloads
from batchveo.api.files import DEFAULT_READY, Files, ReadyPolicy, RemoteFile
from batchveo.api.providers import ApiKey, Provider
from batchveo.api.results import DownloadResult, OperationStatus
from batchveo.api.review import read_verdict, review_payload
from batchveo.api.review_wire import file_review_body, review_path
from batchveo.api.texts import clip, show_url
from batchveo.api.transport import Reply, Transport
from batchveo.api.urls import host_key, is_segment, is_web_url, parse_url, strip_key
from batchveo.api.wire import (
    build_request_body,
    encode_body,
    operation_name,
    parse_operation,
    poll_path,
    split_operation_name,
    submit_path,
)
from batchveo.errors import (
    ApiError,
    FileRefused,
    MalformedAnswer,
    NotSent,
    StopRun,
    SubmitOutcomeUnknown,
    TooLargeToReview,
    Transient,
    UnusableVideo,
)
from batchveo.models import has_files_api
from batchveo.spec import JobSpec
from batchveo.verdicts import INLINE_LIMIT_BYTES, ReviewAsk, Verdict

log = logging.getLogger(__name__)

MAX_OPERATION_NAME_CHARS = 1024
"""Longest operation name kept (real ones are under 200): it is stored and polled."""


class VeoClient:
    """One aiohttp session talking to one provider with one key. Use ``async with``."""

    def __init__(
        self,
        provider: Provider,
        api_key: str,
        *,
        connect_timeout_s: float = 10,
        request_timeout_s: float = 120,
        download_timeout_s: float = 600,
        max_connections: int = 32,
        user_agent: str = "batchveo/0.1",
        max_json_bytes: int = MAX_JSON_BYTES,
        max_video_bytes: int = MAX_VIDEO_BYTES,
        review_inline_limit_bytes: int = INLINE_LIMIT_BYTES,
        files_ready: ReadyPolicy = DEFAULT_READY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.provider = provider
        self._key = ApiKey(provider, api_key)
        self._http = Transport(
            self._key,
            connect_timeout_s=connect_timeout_s,
            request_timeout_s=request_timeout_s,
            max_connections=max_connections,
            user_agent=user_agent,
            max_json_bytes=max_json_bytes,
        )
        self._videos = VideoDownloads(
            self._http, timeout_s=download_timeout_s, max_video_bytes=max_video_bytes
        )
        self._review_inline_limit_bytes = review_inline_limit_bytes
        self._files = (
            Files(
                self._http,
                provider.submit_base,
                clock=clock,
                sleep=sleep,
                ready=files_ready,
                upload_timeout_s=download_timeout_s,
            )
            if has_files_api(provider.name)
            else None
        )
        self._poll_method: str = "GET"
        self._poll_method_settled = False
        self._poll_lock = asyncio.Lock()

    def __repr__(self) -> str:
        p = self.provider
        return f"VeoClient(provider={p.name!r}, submit={p.submit_base!r}, query={p.query_base!r})"

    async def __aenter__(self) -> VeoClient:
        self._http.session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._videos.close()
        await self._http.close()

    # ----------------------------------------------------------------------- submit

    async def submit(self, spec: JobSpec) -> str:
        """Start one generation; returns the operation name exactly as the server gave it."""
        url = URL(self.provider.submit_base + submit_path(spec.model))
        has_images = spec.image or spec.last_frame or spec.reference_images
        # Reading and encoding images is slow I/O: off the loop. A text job is not.
        body = (
            await asyncio.to_thread(build_request_body, spec)
            if has_images
            else build_request_body(spec)
        )
        payload = encode_body(body)
        del body
        try:
            reply = await self._http.call("POST", url, "submit", payload)
        except NotSent as e:
            if e.unreachable:
                raise
            # A keep-alive connection the server had closed: nothing left, so it is
            # safe to send once more, at once, on a fresh connection.
            reply = await self._http.call("POST", url, "submit", payload)
        if not reply.ok:
            raise self._http.http_error(reply, "submit")
        name = operation_name(reply.body)
        if name is None:
            raise SubmitOutcomeUnknown(
                f"HTTP {reply.status} from submit without an operation name: "
                f"{clip(self._http.text(reply.body))}"
            )
        if why := self._unpollable(name, spec.model):
            raise SubmitOutcomeUnknown(
                f"submit answered HTTP {reply.status} with an operation name that {why} "
                f"({clip(self._key.scrub(name))}): it is neither stored nor polled; the "
                "operation may exist and be paid, so it is not resent automatically"
            )
        log.debug("submitted job %s as %s", spec.id, name)
        return name

    def _unpollable(self, name: str, model: str) -> str | None:
        """Why an operation name cannot be kept and polled safely, or None."""
        if self._key.found_in(name):
            return "holds the API key"  # stored, exported, and sent back in the poll URL
        if len(name) > MAX_OPERATION_NAME_CHARS:
            return f"is longer than {MAX_OPERATION_NAME_CHARS} characters"
        model, op_id = split_operation_name(name, model)
        if not (is_segment(model) and is_segment(op_id)):
            return "cannot be part of a poll URL"
        return None

    # ----------------------------------------------------------------------- poll

    async def poll(self, operation_name: str, model: str) -> OperationStatus:
        """The operation's state; a 405 switches this client to the other method."""
        url = URL(self.provider.query_base + poll_path(operation_name, model))
        reply, refused = None, None
        if self._poll_method_settled:
            method = self._poll_method
            reply = await self._poll_once(url, method)
            if reply.status == 405:
                log.info("poll answered 405 to %s, the settled method; negotiating again", method)
                reply, refused = None, method
        if reply is None:
            reply = await self._negotiate_poll(url, refused)
        if not reply.ok:
            raise self._http.http_error(reply, "poll")
        try:
            data = json.loads(reply.body)
        except ValueError:
            text = clip(self._http.text(reply.body))
            raise Transient(f"poll answered non-JSON: {text}") from None
        return self._keyless_uris(parse_operation(data, scrub=self._key.scrub))

    def _keyless_uris(self, status: OperationStatus) -> OperationStatus:
        """``status`` with the key out of its video URIs (its texts are scrubbed already).

        A video URI carrying the key in its query loses that parameter (the key goes in
        the header); one carrying it anywhere else cannot be stored or fetched without
        it, so the answer is malformed.
        """
        uris = []
        for uri in status.video_uris:
            clean = strip_key(uri, self._key)
            if clean is None:
                raise MalformedAnswer(
                    "poll answered with a video URI that holds the API key outside its query "
                    f"({show_url(self._key.scrub(uri))}): not stored"
                )
            uris.append(clean)
        return replace(status, video_uris=tuple(uris))

    async def _negotiate_poll(self, url: URL, refused: str | None) -> Reply:
        """Poll with the method in use, and with the other one after a 405.

        Only an answer that proves the method settles it: a 2xx, or a 404 for the
        operation. A 429 or 5xx may come from a front door that never looked at the
        method, so the next poll negotiates again. Until the method is settled, polls go
        one at a time, so at most one 405 is spent per negotiation. ``refused`` is a
        settled method that has just answered 405: start with the other one.
        """
        async with self._poll_lock:
            tried: set[str] = set()
            if refused is not None and self._poll_method == refused:  # nobody flipped it yet
                self._poll_method_settled = False
                self._poll_method = _other_method(refused)
                tried.add(refused)
            while True:
                method = self._poll_method
                reply = await self._poll_once(url, method)
                if reply.status != 405:
                    break
                tried.add(method)
                if len(tried) == 2:
                    raise StopRun("poll answered 405 to both GET and POST: check the base URL")
                self._poll_method_settled = False
                self._poll_method = _other_method(method)
                log.info("poll answered 405 to %s; trying %s", method, self._poll_method)
            if reply.ok or reply.status == 404:
                self._poll_method_settled = True
            return reply

    async def _poll_once(self, url: URL, method: str) -> Reply:
        body = b"" if method == "POST" else None
        return await self._http.call(method, url, "poll", body)

    # ----------------------------------------------------------------------- download

    async def download(self, uri: str, dest: Path) -> DownloadResult:
        """Stream ``uri`` to ``dest`` atomically; the key goes to trusted hosts only."""
        clean = strip_key(uri, self._key)
        if clean is None:
            raise UnusableVideo(
                f"the video URI holds the API key: {show_url(self._key.scrub(uri))}"
            )
        url = parse_url(clean)
        if url is None or not is_web_url(url):
            raise UnusableVideo(f"the video URI is not an http(s) URL: {show_url(clean)}")
        return await self._videos.fetch(url, dest, self._download_refused)

    async def save(self, data: bytes, dest: Path) -> DownloadResult:
        """A video that came inline, made durable at ``dest`` (no Gemini-format route sends
        one today; the runner asks every client the same way)."""
        return await self._videos.save(data, dest)

    # ----------------------------------------------------------------------- review

    async def review(self, ask: ReviewAsk) -> Verdict:
        """One take watched by ``ask.model`` (``review.ReviewClient.review``): inline, or
        through the Files API when it is over the inline budget and the route has one."""
        url = URL(self.provider.submit_base + review_path(ask.model))
        files = self._files
        try:
            payload = await review_payload(ask, self._review_inline_limit_bytes)
        except TooLargeToReview:
            if files is None:
                raise
            payload = None  # through the Files API, outside this handler (nothing chained)
        if payload is None and files is not None:
            return await self._review_uploaded(ask, url, files)
        reply = await self._http.call("POST", url, "review", payload, streamed=True)
        del payload
        if not reply.ok:
            raise self._http.http_error(reply, "review")
        return read_verdict(reply.body, self._key.scrub)

    async def _review_uploaded(self, ask: ReviewAsk, url: URL, files: Files) -> Verdict:
        """Upload the take, wait until it is active, review it by its URI, delete it."""
        uploaded = await files.upload(ask.video_path)
        try:
            verdict = await self._review_file(ask, url, await files.wait_active(uploaded))
        except asyncio.CancelledError:
            raise  # no request on the way out: the file expires on its own within 48 h
        except BaseException:
            await files.delete(uploaded)
            raise
        await files.delete(uploaded)
        return verdict

    async def _review_file(self, ask: ReviewAsk, url: URL, file: RemoteFile) -> Verdict:
        payload = encode_body(file_review_body(ask, file.uri))
        reply = await self._http.call("POST", url, "review", payload)
        if reply.status == 403:
            # Just uploaded with this key: a 403 now is the Files API's word for a file
            # missing or expired, that file's trouble, not the account's.
            message = str(self._http.http_error(reply, "review"))
            raise FileRefused(f"{message} (the uploaded {file.name})", status=403)
        if not reply.ok:
            raise self._http.http_error(reply, "review")
        return read_verdict(reply.body, self._key.scrub)

    def _download_refused(self, reply: Reply, url: URL) -> ApiError:
        """What a download's non-200 answer means, by who said it."""
        if reply.status in (401, 403) and not self.provider.trusts(url):
            # A signed storage URL refused (expired signature, say): the next
            # attempt starts from the API's URI and gets a fresh one.
            return Transient(f"storage host {host_key(url)} refused: {reply.status}")
        if reply.status in (401, 403):
            # The Files API says 403 of a missing or expired file: that file's
            # trouble, not the account's (submits and polls say so).
            message = str(self._http.http_error(reply, "download"))
            return FileRefused(message, status=reply.status)
        return self._http.http_error(reply, "download")


def _other_method(method: str) -> str:
    return "POST" if method == "GET" else "GET"
