"""The simulator's review service: ``generateContent`` on both formats, a Gemini model
watching a video, answered deterministically from markers in the question.

Endpoints (the server counts each by status): ``POST /v1beta/models/{m}:generateContent``
(``review``, header ``x-goog-api-key``) and ``POST /v1/projects/{p}/locations/{l}/
publishers/google/models/{m}:generateContent`` (``vertex_review``, a bearer token, checked
by ``vertex_auth`` as every Vertex call). A review is checked in this order: host, key or
token (401, 403), model (404: the review models of ``batchveo.models``, less
``retired_models``), the request (400, ``check_review``: under the inline budget, JSON,
the video first as base64 ``video/mp4`` inline data that is an MP4, or on Vertex a
``fileData.fileUri`` ``gs://`` object it can read (``vertex_storage``) that is one,
``videoMetadata.fps`` more than 0 and at most 24, a text part after it,
``responseMimeType`` JSON and a ``responseSchema``, a known ``mediaResolution``), counted
faults from the question's markers, then the random faults (``rate_reset``, ``rate_5xx``,
``rate_429``), then ``review_rpm_limit`` (reviews answered in the last ``rate_window_s``,
per format: a 429 whose QuotaFailure names the ``generateContent`` quota, its delay the
time to a free slot).

Markers in the question (which quotes the job's prompt):

- none: score 8, matches the prompt, no defects.
- ``[sim:review=N]`` (N 0-10): score N; below 8, one defect at ``00:05``.
- ``[sim:review=3/8]`` (scores 0-10, as many as wanted): the first review answered of
  this question scores 3, the next 8, and so on, the last for every review after (the
  answered reviews counted per question, so per prompt and rubric: a job's retakes).
- ``[sim:review=bad-json]``: JSON that breaks the schema (the score a word, no defects);
  ``[sim:review=not-json]``: prose instead of JSON.
- ``[sim:review=refuse]``: a candidate stopped for ``SAFETY``, with no text.
- Vertex may name the video by ``fileData.fileUri``: a ``gs://`` object it reads from
  the simulator's own Cloud Storage (or ``storage_upload_base``'s), counted the same way.
  The Gemini format may name an ``ACTIVE`` file of this simulator's Files API by its
  ``uri`` (``files.FileService.video``: a foreign URI 400, an unknown file 403, one still
  processing 400 ``FAILED_PRECONDITION``), counted the same way.
- ``[sim:review=429]``, ``[sim:review=503]`` (and 500, 502, 504; ``x2`` for the first
  two): the first reviews of that question get the status, as a quota or an overloaded
  model answers; then the marker's other outcomes apply.

``usageMetadata``: ``promptTokenCount`` by ``models.review_tokens_in`` (the video's length
from its MP4 boxes, the frames sampled at ``fps``, their tokens by ``mediaResolution``,
the audio, the question's characters), ``candidatesTokenCount`` the answer's characters
over four, ``thoughtsTokenCount`` a fixed ``THOUGHTS_TOKENS``. Every review answered is
counted by the video's digest (``reviews_by_video``: no take is reviewed twice).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from batchveo.models import REVIEW_MODELS, review_tokens_in
from batchveo.mp4 import NotAnMp4, duration_s
from batchveo.sim import vertex_wire as vw
from batchveo.sim import wire
from batchveo.sim.config import SimConfig
from batchveo.sim.faults import Faults
from batchveo.sim.files import FileService
from batchveo.sim.gemini import key_ok
from batchveo.sim.quota import Violation
from batchveo.sim.stats import Stats
from batchveo.sim.storage import on_files_host
from batchveo.sim.vertex_auth import VertexAccounts

INLINE_LIMIT_BYTES = 20 * 1024 * 1024
"""The service's budget for a request with inline data (its own figure here, not the
client's: a client that misjudges it must meet the service's 400)."""
THOUGHTS_TOKENS = 120
"""The thinking tokens every simulated review reports (billed as output)."""
PASSING_SCORE = 8
MEDIA_RESOLUTIONS = {
    "MEDIA_RESOLUTION_LOW": "low",
    "MEDIA_RESOLUTION_MEDIUM": "medium",
    "MEDIA_RESOLUTION_HIGH": "high",
    "MEDIA_RESOLUTION_UNSPECIFIED": "medium",
}
_MARKER = re.compile(r"\[sim:review=([a-z0-9-]+?)(?:x(\d+))?\]")
_SCORES = re.compile(r"\[sim:review=([0-9]+(?:/[0-9]+)+)\]")
"""``[sim:review=3/8]``: the score of each review of the question in turn."""
_FAULTS = ("429", "500", "502", "503", "504")
_GENERATE = "PredictionService.GenerateContent"
_QUOTAS = {
    False: (
        "generativelanguage.googleapis.com/generate_content_requests",
        "GenerateContentRequestsPerMinutePerProjectPerModel",
    ),
    True: (
        "aiplatform.googleapis.com/generate_content_requests_per_base_model",
        "GenerateContentRequestsPerMinutePerProjectPerBaseModel",
    ),
}
"""Each format's name of the reviews' per-minute quota (metric, quota id)."""
_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
]


_NOT_MP4 = "Unable to process input video: it is not an MP4."
ReadObject = Callable[[SimConfig, str], Awaitable[bytes | None]]


@dataclass(frozen=True)
class ReviewRequest:
    """What a valid review asked: the video, how to look at it, and the question."""

    video: bytes
    """The video's bytes (empty until read when it is named by ``file_uri``)."""
    seconds: float
    fps: float
    media_resolution: str
    question: str
    file_uri: str | None = None

    def with_video(self, video: bytes) -> ReviewRequest | str:
        """This request with the bytes of its ``file_uri``, or why they are no video."""
        try:
            return replace(self, video=video, seconds=duration_s(video))
        except NotAnMp4:
            return _NOT_MP4


def check_review(raw: bytes, *, files: bool = False, uploads: bool = False) -> ReviewRequest | str:
    """The request, or what is wrong with it (a 400's message, as the service words it).
    ``files``: a ``gs://`` ``fileData`` may name the video (Vertex); ``uploads``: an
    http(s) ``fileData`` may (the Gemini API's Files API); either is read after."""
    if len(raw) > INLINE_LIMIT_BYTES:
        return f"Request payload size exceeds the limit: {INLINE_LIMIT_BYTES} bytes."
    try:
        body = json.loads(raw)
    except ValueError:
        return "Invalid JSON payload received."
    contents = body.get("contents") if isinstance(body, dict) else None
    first = contents[0] if isinstance(contents, list) and len(contents) == 1 else None
    parts = first.get("parts") if isinstance(first, dict) else None
    if not isinstance(parts, list) or len(parts) != 2:
        return "contents must be one user turn of two parts: the video, then the question."
    video_part, text_part = parts
    if not isinstance(video_part, dict):
        return "The first part must be the video."
    named = video_part.get("fileData")
    file_uri = named.get("fileUri") if isinstance(named, dict) else None
    inline = video_part.get("inlineData")
    video, seconds = b"", 0.0
    scheme = str(file_uri).partition("://")[0]
    if isinstance(named, dict) and (
        (files and scheme == "gs") or (uploads and scheme in ("http", "https"))
    ):
        if named.get("mimeType") != "video/mp4":
            return "fileData.mimeType must be video/mp4."
        file_uri = str(file_uri)
    elif not isinstance(inline, dict) or inline.get("mimeType") != "video/mp4":
        return "The first part must be inlineData of mimeType video/mp4 (the video first)."
    else:
        file_uri = None
        try:
            video = base64.b64decode(str(inline.get("data", "")), validate=True)
            seconds = duration_s(video)
        except (binascii.Error, ValueError, NotAnMp4):
            return "Unable to process input video: inlineData is not a base64 MP4."
    meta = video_part.get("videoMetadata", {})
    fps = meta.get("fps", 1) if isinstance(meta, dict) else None
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 24:
        return "videoMetadata.fps must be more than 0 and at most 24."
    question = text_part.get("text") if isinstance(text_part, dict) else None
    if not isinstance(question, str) or not question.strip():
        return "The second part must be the question's text."
    config = body.get("generationConfig")
    if not isinstance(config, dict) or config.get("responseMimeType") != "application/json":
        return "generationConfig.responseMimeType must be application/json."
    if not isinstance(config.get("responseSchema"), dict):
        return "generationConfig.responseSchema must be given."
    resolution = MEDIA_RESOLUTIONS.get(str(config.get("mediaResolution", "")))
    if resolution is None and "mediaResolution" in config:
        return f"Invalid value at 'generation_config.media_resolution': {config['mediaResolution']}"
    return ReviewRequest(video, seconds, float(fps), resolution or "medium", question, file_uri)


def review_markers(text: str) -> dict[str, int]:
    """The ``[sim:review=...]`` markers of ``text``: name -> its N (1 without ``xN``)."""
    return {name: int(n) if n else 1 for name, n in _MARKER.findall(text)}


def score_sequence(text: str) -> list[int]:
    """The scores of a ``[sim:review=3/8]`` marker of ``text`` (empty if none)."""
    found = _SCORES.search(text)
    return [] if found is None else [min(10, int(n)) for n in found.group(1).split("/")]


def answer_text(marks: dict[str, int], score: int | None = None) -> str | None:
    """The model's answer for these markers (None: a refusal, no text); ``score``: the
    score to give (a ``[sim:review=3/8]`` marker's turn), over the markers'."""
    if "refuse" in marks:
        return None
    if "bad-json" in marks:
        return json.dumps({"score": "great", "summary": "Looks fine to me."})
    if "not-json" in marks:
        return "I watched the video and it looks good overall."
    if score is None:
        score = next((int(m) for m in marks if m.isdigit() and int(m) <= 10), PASSING_SCORE)
    defects = []
    if score < PASSING_SCORE:
        defects = [{"at": "00:05", "issue": "a hand grows a sixth finger"}]
    verdict = {
        "score": score,
        "matches_prompt": score >= 5,
        "defects": defects,
        "summary": "A clean take." if not defects else "A visible artefact spoils the take.",
    }
    return json.dumps(verdict)


def answer_body(asked: ReviewRequest, text: str | None) -> dict[str, Any]:
    """The ``generateContent`` answer: the candidate and ``usageMetadata``."""
    tokens_in = review_tokens_in(
        asked.seconds, asked.fps, asked.media_resolution, len(asked.question)
    )
    usage: dict[str, int] = {"promptTokenCount": tokens_in, "thoughtsTokenCount": THOUGHTS_TOKENS}
    if text is None:
        candidate: dict[str, Any] = {"finishReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS}
        usage["candidatesTokenCount"] = 0
    else:
        candidate = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
        }
        usage["candidatesTokenCount"] = math.ceil(len(text) / 4)
    usage["totalTokenCount"] = sum(usage.values())
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "sim"}


class ReviewService:
    """The review handlers of both formats, and what they count (module docstring)."""

    def __init__(
        self,
        config: Callable[[], SimConfig],
        *,
        faults: Faults,
        stats: Stats,
        accounts: VertexAccounts,
        read_object: ReadObject,
        files: FileService,
    ) -> None:
        self._config = config
        self._faults, self._stats = faults, stats
        self._accounts = accounts
        self._read_object = read_object
        self._files = files
        self._seen: dict[str, int] = {}  # question -> reviews of it received
        self._answered_of: dict[str, int] = {}  # question -> reviews of it answered
        self._answered: dict[bool, deque[float]] = {False: deque(), True: deque()}
        """Per format (Vertex or not): when each review in the rate window was answered."""

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        cfg = self._config()
        if on_files_host(cfg, request):
            return wire.not_found()
        if not key_ok(cfg, request):
            return wire.reseller_error(401, "Invalid signature")
        model = request.match_info["model"]
        if model not in REVIEW_MODELS or model in cfg.retired_models:
            return wire.not_found(
                f"models/{model} is not found for API version v1beta, or is not supported "
                "for generateContent."
            )
        return await self._review(request, cfg, vertex=False)

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        cfg = self._config()
        if on_files_host(cfg, request):
            return wire.not_found()
        info = request.match_info
        project, location, model = info["project"], info["location"], info["model"]
        allowed = self._accounts.authorize(request, project, location, model, _GENERATE)
        if isinstance(allowed, web.Response):
            return allowed
        if model not in REVIEW_MODELS or model in cfg.retired_models:
            return vw.publisher_model_not_found(project, location, model)
        return await self._review(request, cfg, vertex=True)

    async def _review(
        self, request: web.Request, cfg: SimConfig, *, vertex: bool
    ) -> web.StreamResponse:
        asked = check_review(await request.read(), files=vertex, uploads=not vertex)
        if not isinstance(asked, str) and asked.file_uri is not None and not vertex:
            uploaded = self._files.video(cfg, request, asked.file_uri)
            if isinstance(uploaded, web.Response):
                return uploaded
            asked = asked.with_video(uploaded)
        elif not isinstance(asked, str) and asked.file_uri is not None:
            data = await self._read_object(cfg, asked.file_uri)
            asked = (
                asked.with_video(data)
                if data is not None
                else f"fileData.fileUri: cannot read {asked.file_uri}: no such object, or "
                "the Vertex AI service agent may not read it."
            )
        if isinstance(asked, str):
            return vw.bad_request(asked) if vertex else wire.bad_request(asked)
        marks = review_markers(asked.question)
        if (counted := self._counted_fault(cfg, asked.question, marks, vertex)) is not None:
            return counted
        if (fault := self._faults.submit_fault(cfg, request, vertex=vertex)) is not None:
            return fault
        if (quota := self._quota(cfg, request.match_info["model"], vertex)) is not None:
            return quota
        digest = hashlib.sha256(asked.video).hexdigest()[:16]
        self._stats.reviewed(digest)
        return web.json_response(answer_body(asked, answer_text(marks, self._turn(asked))))

    def _turn(self, asked: ReviewRequest) -> int | None:
        """The score of this answered review of its question, by its ``[sim:review=3/8]``
        marker (None without one); counted per question."""
        scores = score_sequence(asked.question)
        if not scores:
            return None
        n = self._answered_of.get(asked.question, 0)
        self._answered_of[asked.question] = n + 1
        return scores[min(n, len(scores) - 1)]

    def _quota(self, cfg: SimConfig, model: str, vertex: bool) -> web.Response | None:
        """A 429 if ``review_rpm_limit`` reviews were answered within the window, else
        None and this one counted."""
        now, window = cfg.clock(), self._answered[vertex]
        while window and window[0] <= now - cfg.rate_window_s:
            window.popleft()
        limit = cfg.review_rpm_limit
        if limit is None or len(window) < limit:
            window.append(now)
            return None
        self._stats.counters["quota_violations"] += 1
        metric, quota_id = _QUOTAS[vertex]
        dims = {"base_model" if vertex else "model": model}
        quota = {"quotaMetric": metric, "quotaId": quota_id, "quotaDimensions": dims,
                 "quotaValue": str(limit)}  # fmt: skip
        delay_s = window[0] + cfg.rate_window_s - now
        if vertex:
            return vw.quota_exceeded(Violation(quota, delay_s), model, cfg.vertex_retry_after_style)
        return wire.quota_exceeded(quota, delay_s, cfg.retry_after_style)

    def _counted_fault(
        self, cfg: SimConfig, question: str, marks: dict[str, int], vertex: bool
    ) -> web.Response | None:
        """The status the ``seen``-th review of ``question`` meets, in marker order."""
        faults = [(m, n) for m, n in marks.items() if m in _FAULTS]
        if not faults:
            return None
        seen = self._seen[question] = self._seen.get(question, 0) + 1
        for status, count in faults:
            seen -= count
            if seen <= 0:
                return self._faults.status(cfg, int(status), vertex)
        return None
