"""What a review needs of a route's client (``ReviewClient``), and the steps both clients
share around their own request: the request body read from disk, and the verdict read
from the answer.

The stage is typed against ``ReviewClient``: ``VeoClient`` (the Gemini-format routes) and
``VertexClient`` (Vertex AI) satisfy it, each sending ``review_wire``'s body to its own
path with its own credential. Both read the video off the event loop, and check the
request's size before reading it: a video whose base64, with the question, would pass
``INLINE_LIMIT_BYTES`` is ``TooLargeToReview`` and nothing is sent. On Vertex a take in a
bucket (``ReviewAsk.video_uri``) is named, not sent (``file_payload``), whatever its size.
On a Gemini-format route with the Files API (``models.has_files_api``), ``VeoClient``
catches ``TooLargeToReview`` and uploads the take instead (``files``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from batchveo.api.review_wire import (
    check_fps,
    encode_review_body,
    file_review_body,
    inline_request_bytes,
    parse_review_answer,
)
from batchveo.api.texts import clip, show_url
from batchveo.api.wire import encode_body
from batchveo.errors import BadRequest, TooLargeToReview, Transient
from batchveo.verdicts import INLINE_LIMIT_BYTES, ReviewAsk, Verdict

_GS_OBJECT = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,221}/\S+$")


@runtime_checkable
class ReviewClient(Protocol):
    """A route's client as the review stage uses it."""

    async def review(self, ask: ReviewAsk) -> Verdict:
        """One ``generateContent`` request for ``ask``: its verdict, or one exception of
        ``batchveo.errors``: ``TooLargeToReview`` (nothing sent), ``VerdictUnusable``
        (a refusal or an answer off the schema, with the model's text), ``RateLimited``
        (429, its delay), ``Transient`` (5xx, network), ``AccountError`` (401/403),
        ``ModelUnavailable`` (404 for the model), ``BadRequest``/``ContentRejected`` (400).
        Through the Files API (a take over the inline budget, on a route that has it) also
        ``BadRequest`` (the service failed to process the video), ``Transient`` (still
        processing when the wait is up), ``FileRefused`` (the uploaded file gone: 403),
        ``MalformedAnswer`` (an upload URL off the provider's hosts: nothing sent there)."""
        ...


async def review_payload(ask: ReviewAsk, limit_bytes: int = INLINE_LIMIT_BYTES) -> bytes:
    """The encoded request of ``ask``, read and encoded on a worker thread."""
    return await asyncio.to_thread(read_review_payload, ask, limit_bytes)


def read_review_payload(ask: ReviewAsk, limit_bytes: int = INLINE_LIMIT_BYTES) -> bytes:
    """The request body, the video's size checked before it is read."""
    try:
        check_fps(ask.fps)
    except ValueError as e:
        raise BadRequest(f"review of {ask.video_path}: {e}") from None
    path = Path(ask.video_path)
    try:
        size = path.stat().st_size
        request_bytes = inline_request_bytes(ask, size)
        if request_bytes > limit_bytes:
            raise TooLargeToReview(
                f"{path.name} is {size / 1e6:.1f} MB: with the question its request would be "
                f"{request_bytes / 1e6:.1f} MB, over the {limit_bytes / 1e6:.1f} MB an inline "
                "request may carry; not sent"
            )
        video = path.read_bytes()
    except OSError as exc:
        raise BadRequest(
            f"review of {path}: the video can no longer be read ({exc.strerror or exc})"
        ) from None
    # It may have changed between the two looks: the bytes read are what is judged.
    if len(video) != size and inline_request_bytes(ask, len(video)) > limit_bytes:
        raise TooLargeToReview(f"{path.name} grew past the inline budget while read")
    return encode_review_body(ask, video)


def file_payload(ask: ReviewAsk) -> bytes | None:
    """The request naming ``ask.video_uri`` (``gs://``), checked; None without one."""
    if ask.video_uri is None:
        return None
    try:
        check_fps(ask.fps)
    except ValueError as e:
        raise BadRequest(f"review of {ask.video_path}: {e}") from None
    if not _GS_OBJECT.match(ask.video_uri):
        raise BadRequest(
            f"review of {ask.video_path}: not a gs:// object: {show_url(ask.video_uri)}"
        )
    return encode_body(file_review_body(ask, ask.video_uri))


def read_verdict(body: bytes, scrub: Callable[[str], str]) -> Verdict:
    """A 2xx answer's verdict (``review_wire.parse_review_answer``); an answer that is not
    JSON at all is the server's trouble, not the model's: ``Transient``."""
    try:
        data = json.loads(body)
    except ValueError:
        text = clip(scrub(body[:4096].decode("utf-8", "replace")))
        raise Transient(f"review answered non-JSON: {text}") from None
    return parse_review_answer(data, scrub)
