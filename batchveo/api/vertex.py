"""The client for Veo on Vertex AI: Google Cloud's route, a bearer token, videos in a
bucket or inline.

``VertexClient`` is to Vertex what ``client.VeoClient`` is to the Gemini format: the run's
``Client`` (submit, poll, download, save), each one request and nothing more, every outcome
a value or one exception of ``batchveo.errors``. It shares everything below its wire format
(``transport``, ``download``, ``errormap``, ``probe``, ``bounded``, ``results``); the wire
itself is ``vertex_wire`` (pure), and the facts are ``docs/veo-api.md``, "Vertex AI".

* **Where a job goes** is its route (``JobSpec.route``): project, region and bucket, each
  part left ``None`` taken from the client (``identity.project``, ``location_default``,
  ``storage_uri_default``). The host is the region's (``--base-url`` replaces it, path
  kept). Polls need nothing but the stored operation name: its segments give the project
  (perhaps as a number), region and model, and it is sent back exactly as received.
* **The token** (``bearer``) is asked for before every request (reused until near its
  expiry, refreshed off the loop), goes only to this client's Vertex hosts and its Cloud
  Storage host, and a 401 refreshes it once and repeats that request once, a submit too:
  a 401 means the server did not act. It is scrubbed from every text, and an operation
  name or video URI that holds it is never stored.
* **Submits** are classified as the Gemini client's are (``probe``): provably unsent on a
  closed keep-alive connection, sent again at once; possibly sent, ``SubmitOutcomeUnknown``
  (a 502 or 504 too); a 2xx without a pollable operation name, ``SubmitOutcomeUnknown``.
* **Polls** may carry the videos themselves (no ``storageUri``): that answer is read under
  ``MAX_POLL_ANSWER_BYTES`` (every other answer keeps ``MAX_JSON_BYTES``), parsed and
  decoded off the loop when large, and handed to the run in ``inline_videos``; the client
  makes exactly one request per poll (two after a 401), never asking a done operation
  again by itself.
* **Downloads** are of ``gs://`` objects only (``gcs``): metadata, then the bytes, which
  count only with the metadata's size and checksum.
* **Reviews** (``review``, a ``review.ReviewClient``) are a ``generateContent`` on the
  Gemini model's publisher path in the identity's project, in ``review_location`` (the
  client's region unless told otherwise); a take in a bucket is named by its URI.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from yarl import URL

from batchveo.api.bearer import BearerToken, Unauthorized
from batchveo.api.bounded import MAX_JSON_BYTES
from batchveo.api.client import MAX_OPERATION_NAME_CHARS
from batchveo.api.download import MAX_VIDEO_BYTES, VideoDownloads
from batchveo.api.errormap import Kind, vertex_error_for_status
from batchveo.api.gauth import GoogleIdentity, TokenSource
from batchveo.api.gcs import STORAGE_BASE, CloudStorage
from batchveo.api.results import DownloadResult, OperationStatus
from batchveo.api.review import file_payload, read_verdict, review_payload
from batchveo.api.texts import clip, show_url
from batchveo.api.transport import Reply, Transport
from batchveo.api.urls import plain_base_url
from batchveo.api.vertex_body import body_reads_files, build_vertex_body
from batchveo.api.vertex_wire import (
    OperationName,
    VertexOutcome,
    model_path,
    parse_vertex_operation,
    vertex_base,
)
from batchveo.api.wire import encode_body, operation_name
from batchveo.errors import (
    ApiError,
    BadRequest,
    ConfigError,
    MalformedAnswer,
    NotSent,
    SubmitOutcomeUnknown,
    Transient,
)
from batchveo.models import MODELS, PROVIDER_MODELS
from batchveo.routes import DEFAULT_LOCATION
from batchveo.spec import JobSpec
from batchveo.verdicts import ReviewAsk, Verdict

log = logging.getLogger(__name__)

MAX_INLINE_VIDEOS = 4
"""Videos one Vertex operation returns at most (``sampleCount`` 1-4)."""
MAX_INLINE_VIDEO_BYTES = 64 << 20
"""The largest video an inline poll answer is sized for: a 4k 8 s clip is about 60 MB.
Larger outputs belong in a bucket (``--storage-uri``)."""
MAX_POLL_ANSWER_BYTES = MAX_INLINE_VIDEOS * (MAX_INLINE_VIDEO_BYTES * 4 // 3) + (1 << 20)
"""Cap on a Vertex poll's answer: four inline videos of ``MAX_INLINE_VIDEO_BYTES`` in base64
(4/3 of their size) and 1 MiB for the rest, about 342 MiB. Only this answer gets it; an
answer over it is refused without being read further (a done operation then fails with
the reason: send such videos to a bucket)."""
OFF_LOOP_BYTES = 1 << 20
"""A poll answer larger than this is parsed and decoded on a worker thread (an inline
video's answer is megabytes: parsing it on the loop would stall every other request)."""
VERTEX_MODEL_IDS: tuple[str, ...] = tuple(m for m in MODELS if not m.endswith("-preview"))
"""The ids Vertex serves (its preview ids were retired on 2026-04-02), named when a submit
answers 404 for a model."""


def _check_base_url(text: str, what: str) -> str:
    """A base URL of scheme, host, port and path only (``--base-url``, ``--storage-base-url``)."""
    checked = plain_base_url(text)
    if checked is None:
        raise ConfigError(
            f"{what} must look like https://host[:port], got {show_url(text)!r} "
            "(query and user info not shown; credentials never go in a URL)"
        )
    return checked


class VertexClient:
    """One aiohttp session for one Google identity on Vertex AI. Use ``async with``.

    ``location_default`` and ``storage_uri_default`` fill a job's route where it says
    nothing (the project comes from ``identity``); ``base_url`` replaces
    ``https://{location}-aiplatform.googleapis.com`` (the path stays as on the service),
    ``storage_base_url`` replaces ``https://storage.googleapis.com``.
    """

    def __init__(
        self,
        identity: GoogleIdentity,
        tokens: TokenSource,
        *,
        location_default: str = DEFAULT_LOCATION,
        storage_uri_default: str | None = None,
        base_url: str | None = None,
        storage_base_url: str | None = None,
        connect_timeout_s: float = 10,
        request_timeout_s: float = 120,
        download_timeout_s: float = 600,
        max_connections: int = 32,
        user_agent: str = "batchveo/0.1",
        max_json_bytes: int = MAX_JSON_BYTES,
        max_poll_bytes: int = MAX_POLL_ANSWER_BYTES,
        max_video_bytes: int = MAX_VIDEO_BYTES,
        served_models: Sequence[str] = VERTEX_MODEL_IDS,
        review_location: str | None = None,
    ):
        self.identity = identity
        self.location_default = location_default
        self.review_location = review_location or location_default
        self.storage_uri_default = storage_uri_default
        self.base_url = _check_base_url(base_url, "--base-url") if base_url else None
        storage = _check_base_url(storage_base_url or STORAGE_BASE, "--storage-base-url")
        self._served = tuple(served_models)
        self._max_poll_bytes = max_poll_bytes
        self._max_video_bytes = max_video_bytes
        self._credential = BearerToken(tokens, identity.headers())
        if self.base_url:
            self._credential.trust(self.base_url)
        self._http = Transport(
            self._credential,
            connect_timeout_s=connect_timeout_s,
            request_timeout_s=request_timeout_s,
            max_connections=max_connections,
            user_agent=user_agent,
            max_json_bytes=max_json_bytes,
        )
        self._videos = VideoDownloads(
            self._http, timeout_s=download_timeout_s, max_video_bytes=max_video_bytes
        )
        self._storage = CloudStorage(
            self._http,
            self._videos,
            self._credential,
            base=storage,
            max_video_bytes=max_video_bytes,
        )

    def __repr__(self) -> str:
        base = self.base_url or "https://{location}-aiplatform.googleapis.com"
        return (
            f"VertexClient(project={self.identity.project!r}, "
            f"location={self.location_default!r}, base={base!r}, "
            f"storage={self._storage.base!r})"
        )

    async def __aenter__(self) -> VertexClient:
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
        route = spec.route
        project = (route and route.project) or self.identity.project
        location = (route and route.location) or self.location_default
        storage_uri = (route and route.storage_uri) or self.storage_uri_default
        url = URL(
            self._vertex_base(location)
            + model_path(project, location, spec.model)
            + ":predictLongRunning"
        )
        if body_reads_files(spec):
            body = await asyncio.to_thread(build_vertex_body, spec, storage_uri)
        else:
            body = build_vertex_body(spec, storage_uri)
        payload = encode_body(body)
        del body
        reply = await self._authorized(lambda: self._send_submit(url, payload), "submit", spec)
        if not reply.ok:
            raise self._error(reply, "submit", spec.model)
        name = operation_name(reply.body)
        if name is None:
            raise SubmitOutcomeUnknown(
                f"HTTP {reply.status} from submit without an operation name: "
                f"{clip(self._http.text(reply.body))}"
            )
        if why := self._unpollable(name):
            raise SubmitOutcomeUnknown(
                f"submit answered HTTP {reply.status} with an operation name that {why} "
                f"({clip(self._credential.scrub(name))}): it is neither stored nor polled; "
                "the operation may exist and be paid, so it is not resent automatically"
            )
        log.debug("submitted job %s as %s", spec.id, name)
        return name

    async def _send_submit(self, url: URL, payload: bytes) -> Reply:
        try:
            reply = await self._http.call("POST", url, "submit", payload)
        except NotSent as e:
            if e.unreachable:
                raise
            # A keep-alive connection the server had closed: nothing left, so it is
            # safe to send once more, at once, on a fresh connection.
            reply = await self._http.call("POST", url, "submit", payload)
        if reply.status == 401:
            raise Unauthorized(reply)  # the server did not act: refresh and send again
        return reply

    def _unpollable(self, name: str) -> str | None:
        """Why an operation name cannot be kept and polled safely, or None."""
        if self._credential.found_in(name):
            return "holds the access token"  # stored, exported, sent back in every poll
        if len(name) > MAX_OPERATION_NAME_CHARS:
            return f"is longer than {MAX_OPERATION_NAME_CHARS} characters"
        try:
            OperationName.parse(name)
        except BadRequest:
            return "is not a Vertex operation name"
        return None

    # ----------------------------------------------------------------------- poll

    async def poll(self, operation_name: str, model: str) -> OperationStatus:
        """The operation's state; a done inline one carries its videos (``inline_videos``).

        ``model`` is not needed: the name says which model's endpoint to ask.
        """
        parts = OperationName.parse(operation_name)
        url = URL(self._vertex_base(parts.location) + parts.fetch_path())
        payload = encode_body({"operationName": operation_name})

        async def attempt() -> Reply:
            reply = await self._http.call("POST", url, "poll", payload, cap=self._max_poll_bytes)
            if reply.status == 401:
                raise Unauthorized(reply)
            return reply

        reply = await self._authorized(attempt, "poll")
        if not reply.ok:
            raise self._error(reply, "poll")
        if len(reply.body) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(self._read_poll, reply.body)
        return self._read_poll(reply.body)

    def _read_poll(self, body: bytes) -> OperationStatus:
        """A poll's answer as the run's ``OperationStatus`` (videos decoded, texts scrubbed)."""
        try:
            data = json.loads(body)
        except ValueError:
            raise Transient(
                f"poll answered non-JSON: {clip(self._http.text(body[:4096]))}"
            ) from None
        return self._status(parse_vertex_operation(data, scrub=self._credential.scrub))

    def _status(self, outcome: VertexOutcome) -> OperationStatus:
        reasons = tuple(clip(r) for r in outcome.filtered_reasons)
        if outcome.state == "running":
            return OperationStatus("running")
        if outcome.state == "failed":
            return OperationStatus(
                "failed",
                error_code=outcome.error_code,
                error_message=clip(outcome.error_message or "the operation failed"),
            )
        if outcome.state == "filtered":
            return OperationStatus(
                "filtered", filtered_reasons=reasons, samples_filtered=outcome.filtered_count
            )
        uris, inline = [], []
        for video in outcome.videos:
            if video.gcs_uri is not None:
                if self._credential.found_in(video.gcs_uri):
                    raise MalformedAnswer(
                        "poll answered with a video URI that holds the access token: not stored"
                    )
                uris.append(video.gcs_uri)
            elif video.inline_b64 is not None:
                inline.append(self._decode(video.inline_b64))
        return OperationStatus(
            "done",
            video_uris=tuple(uris),
            inline_videos=tuple(inline),
            filtered_reasons=reasons,
            samples_filtered=outcome.filtered_count,
            counts_samples=True,
        )

    def _decode(self, b64: str) -> bytes:
        """One inline video's bytes, refused before decoding if they would be over the cap."""
        if len(b64) // 4 * 3 > self._max_video_bytes:
            raise MalformedAnswer(
                f"poll answered with an inline video of about {len(b64) // 4 * 3} bytes, over "
                f"the cap of {self._max_video_bytes}: not decoded"
            )
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedAnswer("poll answered with an inline video that is not base64") from None

    # ----------------------------------------------------------------------- download

    async def download(self, uri: str, dest: Path) -> DownloadResult:
        """The ``gs://`` object ``uri`` to ``dest``, counted only if its size and checksum
        are the metadata's (a mismatch: ``WrongBytes``, the ``.part`` gone)."""
        return await self._storage.download(uri, dest)

    async def save(self, data: bytes, dest: Path) -> DownloadResult:
        """A video that came inline in a poll's answer, made durable at ``dest`` as a
        download is (checked, fsynced, never over another video)."""
        return await self._videos.save(data, dest)

    # ----------------------------------------------------------------------- review

    async def review(self, ask: ReviewAsk) -> Verdict:
        """One take watched by ``ask.model`` (``review.ReviewClient.review``)."""
        location = self.review_location
        path = model_path(self.identity.project, location, ask.model) + ":generateContent"
        url = URL(self._vertex_base(location) + path)
        payload = file_payload(ask) or await review_payload(ask)

        async def attempt() -> Reply:
            reply = await self._http.call("POST", url, "review", payload, streamed=True)
            if reply.status == 401:
                raise Unauthorized(reply)
            return reply

        reply = await self._authorized(attempt, "review")
        if not reply.ok:
            raise self._error(
                reply, "review", ask.model, PROVIDER_MODELS["vertex"].review_model_ids
            )
        return read_verdict(reply.body, self._credential.scrub)

    # ----------------------------------------------------------------------- shared

    def _vertex_base(self, location: str) -> str:
        """The host for ``location`` (or ``--base-url``), trusted with the token from now."""
        if self.base_url:
            return self.base_url
        base = vertex_base(location)
        self._credential.trust(base)
        return base

    async def _authorized(
        self, attempt: Callable[[], Awaitable[Reply]], kind: Kind, spec: JobSpec | None = None
    ) -> Reply:
        """``attempt`` with a token, refreshed once after a 401; a second 401 is mapped."""
        try:
            return await self._credential.with_token(attempt)
        except Unauthorized as e:
            raise self._error(e.reply, kind, spec.model if spec else None) from None

    def _error(
        self, reply: Reply, kind: Kind, model: str | None = None, served: Sequence[str] = ()
    ) -> ApiError:
        return vertex_error_for_status(
            reply.status,
            reply.headers,
            reply.body,
            kind,
            reply.reason,
            scrub=self._credential.scrub,
            model=model,
            served_models=served or self._served,
        )
