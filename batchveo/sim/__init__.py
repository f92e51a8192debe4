"""A faithful fake of the Veo long-running video API, served by a real aiohttp server.

Users rehearse a batch on it (``batchveo simulate``, ``make demo``), the test suite and the
benchmarks run against it. It speaks the wire contract of ``veo-api.md`` and nothing more: a
client that works here must work against the real service, so the simulator never offers a
convenience the service lacks (it is, if anything, stricter). Everything test-only lives under
``/__sim/``.

Endpoints (all but ``/__sim/`` and signed storage URLs need header ``x-goog-api-key``):

- ``POST /v1beta/models/{model}:predictLongRunning``: validate, maybe fail, create an operation.
- ``GET|POST /v1beta/models/{model}/operations/{id}`` and ``/v1beta/operations/{id}``: poll.
  Only the methods allowed by ``poll_methods`` are served; the other answers 405.
  ``fail_first_polls`` N: the first N polls the server receives answer
  ``fail_first_polls_status`` (503 by default; 429, 500, 502, 504 too) whatever their method,
  as a front door under load answers before the route is known.
- ``GET /v1beta/files/{id}:download?alt=media`` and ``/upload/v1beta/files/...``: the video
  (the URI a poll returns uses the second, reseller, form when ``name_style`` is ``"short"``).
- ``GET /__storage/{id}?sig=...``: the signed storage URL a redirecting download points to;
  no key needed, and a key arriving there is counted as a leak.
- ``GET /__sim/stats``, ``POST /__sim/finish_all``, ``GET|POST /__sim/config``.

A submit is checked in this order: key (401), ``precondition_failure`` (400), balance (403),
model (404), body (400), counted
then random faults (reset, 5xx, 429), quota (429 with QuotaFailure), content policy (400).
Only accepted submits count toward ``rpm_limit``, ``rpd_limit`` and ``balance_submits``. A
429's delay is in a ``Retry-After`` header (whole seconds, rounded up, as RFC 9110 says), a
RetryInfo detail, the message, or nowhere, per ``retry_after_style``; quota 429s give the real
time to a free slot.

Downloads: with ``files_host`` the URI names that host, where no key is needed. With
``redirect_downloads`` the URI stays on the API host (key needed) and answers 302 to
``/__storage/`` on ``files_host`` (or the API host): the key belongs on the first hop only. A
key arriving on ``files_host`` or ``/__storage/`` counts in ``key_leaks``; ``?key=`` in a URL is
refused (Google accepts it, but it leaks into logs) and counts in ``key_in_url``.

``precondition_failure``: every submit answers ``400 FAILED_PRECONDITION`` with this message, as
Google answers every request of a project it will not serve ("User location is not supported
for the API use.", or a project without billing).

``rpd_limit`` is a per-day quota: past it, submits get a 429 whose QuotaFailure names PerDay,
until the next quota day (``day_s`` long, counted from the simulator's start; Google resets at
midnight Pacific). ``early_404_s``: for that long after its creation, polling an operation answers
404, as Google warns can happen right after a submit.

Generation is lazy: an operation is finished when ``clock() >= created + generation time``,
computed on demand, so thousands of operations cost a few small objects and no tasks.

Prompt markers force an outcome, so a test can build a batch holding every kind of failure.
This is the service deciding on content: the client never needs to know about them.

- ``[sim:content_policy]``: the submit is rejected 400 (usage guidelines).
- ``[sim:bad_request]``: the submit is rejected 400 INVALID_ARGUMENT.
- ``[sim:op_error]``: the operation ends ``done`` with ``error`` {code 13, INTERNAL}.
- ``[sim:filtered]``: the operation ends ``done`` with raiMediaFilteredCount and no samples.
- ``[sim:slow]``: generation takes the maximum of ``generation_s``.
- ``[sim:file403]``: the operation ends ``done``, but every download of its video answers
  ``403 PERMISSION_DENIED`` "You do not have permission to access the File ... or it may not
  exist", as the Files API says of a missing or expired file.
- ``[sim:resetxN]``: the first N submits of this prompt are read, then the connection is
  dropped with no response and no operation created.
- ``[sim:500xN]`` / ``[sim:503xN]`` / ``[sim:429xN]``: the next N submits get that status.
- ``[sim:502xN]`` / ``[sim:504xN]``: the next N submits get a gateway's HTML page with that
  status (a proxy such as the reseller's; nothing is created here, but a real gateway may time
  out after its upstream created the operation, so the client cannot know).
  Counted faults apply in order reset, 5xx, 429 (``[sim:resetx1][sim:500x2]``: reset, 500, 500,
  then accepted). ``xN`` may be omitted for N = 1.
- ``[sim:lostxN]``: the first N *accepted* submits of this prompt create a (paid) operation
  but the connection is dropped before the reply: the "outcome unknown" case.
- ``[sim:truncatedxN]``: the first N downloads of this prompt's video send a full
  Content-Length, part of the bytes, then close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import heapq
import hmac
import importlib.resources
import json
import logging
import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from batchveo.models import (
    ASPECT_RATIOS,
    DURATIONS_S,
    IMAGE_MIME_TYPES,
    MAX_REFERENCE_IMAGES,
    MODELS,
    PERSON_GENERATION,
    RETENTION_S,
    ModelInfo,
)

log = logging.getLogger(__name__)

KEY_HEADER = "x-goog-api-key"
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
CONTENT_POLICY_MESSAGE = (
    "The prompt could not be submitted. This prompt contains words that violate usage "
    "guidelines (content policy). Try rephrasing the prompt."
)
FILTERED_REASON = (
    "Unfortunately, we can't generate videos with this prompt because it may violate our "
    "safety policies (usage guidelines). You will not be charged for blocked videos."
)
MAX_BODY_BYTES = 32 * 1024 * 1024
_MARKER = re.compile(r"\[sim:([a-z0-9_]+?)(?:x(\d+))?\]")
_OUTCOME_MARKERS = ("content_policy", "bad_request", "op_error", "filtered", "slow", "file403")
_COUNTED_MARKERS = ("reset", "500", "502", "503", "504", "429", "lost", "truncated")
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
_STYLES = {
    "retry_after_style": ("header", "retryinfo", "message", "none"),
    "poll_methods": ("get", "post", "both"),
    "name_style": ("google", "short"),
    "response_style": ("nested", "flat"),
}
_RANGES = ("generation_s", "latency_s")
_COUNTERS: tuple[str, ...] = ("polls_after_done", "key_leaks", "key_in_url", "quota_violations")
_COUNTERS += ("max_concurrent_ops", "max_submits_in_window", "truncated_downloads")
_COUNTERS += ("early_404s", "per_day_quota_429s")
_PARAMS = {"aspectRatio", "resolution", "durationSeconds", "personGeneration", "enhancePrompt"}
_PARAMS |= {"negativePrompt", "sampleCount", "seed"}
_FLOATS = ("retry_after_s", "rate_window_s", "retention_s", "day_s", "early_404_s")
_OPT_INTS = ("rpm_limit", "rpd_limit", "max_concurrent_ops", "balance_submits", "seed")
_BOOLS = ("count_polls_in_rpm", "redirect_downloads")
_INTS = ("fail_first_polls", "fail_first_polls_status")
_FAULT_STATUSES = (429, 500, 502, 503, 504)


def _video_bytes() -> bytes:
    return importlib.resources.files("batchveo").joinpath("data/sample.mp4").read_bytes()


def _free_box(payload: bytes) -> bytes:
    """An MP4 ``free`` box: appended to the sample, it makes every video's bytes its own
    (as real videos are) and the file still plays."""
    return (8 + len(payload)).to_bytes(4, "big") + b"free" + payload


@dataclass
class SimConfig:
    """Every knob of the simulator; see the module docstring for what each one fakes."""

    api_key: str = "sim-key"
    generation_s: tuple[float, float] = (11.0, 60.0)
    latency_s: tuple[float, float] = (0.0, 0.0)
    rate_429: float = 0.0
    retry_after_style: str = "header"
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    rate_reset: float = 0.0
    rate_content_policy: float = 0.0
    rate_operation_error: float = 0.0
    rate_filtered: float = 0.0
    rate_truncated_download: float = 0.0
    rpm_limit: int | None = None
    rate_window_s: float = 60.0
    rpd_limit: int | None = None
    day_s: float = 86_400.0
    early_404_s: float = 0.0
    count_polls_in_rpm: bool = False
    max_concurrent_ops: int | None = None
    balance_submits: int | None = None
    poll_methods: str = "both"
    fail_first_polls: int = 0
    fail_first_polls_status: int = 503
    retention_s: float = float(RETENTION_S)
    files_host: str | None = None
    redirect_downloads: bool = False
    name_style: str = "google"
    response_style: str = "nested"
    retired_models: tuple[str, ...] = ()
    precondition_failure: str | None = None
    seed: int | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        for name, allowed in _STYLES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        for name in _RANGES:
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be MIN,MAX with 0 <= MIN <= MAX")
        for name in _PROBS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if self.rate_window_s <= 0 or self.retry_after_s < 0 or self.retention_s < 0:
            raise ValueError("rate_window_s must be > 0, retry_after_s and retention_s >= 0")
        if self.day_s <= 0 or self.early_404_s < 0:
            raise ValueError("day_s must be > 0 and early_404_s >= 0")
        if self.fail_first_polls < 0 or self.fail_first_polls_status not in _FAULT_STATUSES:
            raise ValueError(
                "fail_first_polls must be >= 0 and fail_first_polls_status one of "
                + ", ".join(map(str, _FAULT_STATUSES))
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SimConfig:
        """Build from CLI flags or JSON: ``--generation-s 1,5`` style strings or real types.

        Keys may use dashes; ``None`` values mean "flag not given" and keep the default.
        """
        return cls().with_changes({k: v for k, v in values.items() if v is not None})

    def with_changes(self, values: Mapping[str, Any]) -> SimConfig:
        """A copy with some fields changed; ``None`` here really sets None (e.g. no rpm limit)."""
        changes = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            changes[name] = _coerce(name, value)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "clock"}
        data: dict[str, Any] = json.loads(json.dumps(out))
        return data


_PROBS = tuple(f.name for f in dataclasses.fields(SimConfig) if f.name.startswith("rate_"))
_PROBS = tuple(n for n in _PROBS if n != "rate_window_s")  # probabilities, unlike the window


def _coerce(name: str, value: Any) -> Any:
    """Turn one flag/JSON value into the field's type, or raise ValueError naming the field."""
    try:
        if name in _RANGES:
            parts = value.split(",") if isinstance(value, str) else value
            if isinstance(parts, int | float):
                parts = [parts]
            if len(parts) not in (1, 2):
                raise ValueError
            return (float(parts[0]), float(parts[-1]))
        if name in _PROBS or name in _FLOATS:
            return float(value)
        if name in _OPT_INTS:
            if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
                return None
            if isinstance(value, bool) or int(value) < 0:
                raise ValueError
            return int(value)
        if name in _INTS:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if name in _BOOLS:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if name == "retired_models":
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(m).strip() for m in items if str(m).strip())
        if name in ("files_host", "precondition_failure"):
            return (str(value) or None) if value is not None else None
        if name in _STYLES or name == "api_key":
            return str(value)
        if name == "clock" and callable(value):
            return value
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"invalid value for {name}: {value!r}") from None
    raise ValueError(f"unknown simulator setting: {name}")


@dataclass(slots=True)
class _Op:
    """One operation; slots keep 2,000+ of them to a few hundred KB."""

    id: str
    name: str
    model: str
    done_at: float
    outcome: str  # "ok", "error" or "filtered"
    trunc: int  # downloads still to truncate ([sim:truncatedxN])
    file_id: str | None = None
    polls: int = 0
    reported: bool = False  # a poll has already been told done
    created_at: float = 0.0
    file403: bool = False  # downloads answer 403 PERMISSION_DENIED ([sim:file403])


def _google_error(status: int, message: str, grpc: str, **extra: Any) -> web.Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": grpc}
    headers = extra.pop("headers", None)
    err.update(extra)
    return web.json_response({"error": err}, status=status, headers=headers)


def _reseller_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": str(status)}}, status=status)


def _bad_request(message: str) -> web.Response:
    return _google_error(400, message, "INVALID_ARGUMENT")


def _not_found(message: str = "Requested entity was not found.") -> web.Response:
    return _google_error(404, message, "NOT_FOUND")


_GATEWAY_REASONS = {502: "Bad Gateway", 504: "Gateway Time-out"}


def _server_error(status: int) -> web.Response:
    if status == 503:
        return _google_error(503, "The model is overloaded. Please try again later.", "UNAVAILABLE")
    if status in _GATEWAY_REASONS:  # a proxy in front of the service: its page, not JSON
        title = f"{status} {_GATEWAY_REASONS[status]}"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    return _google_error(500, "An internal error has occurred. Please retry.", "INTERNAL")


def _seconds(delay: float) -> str:
    """``12.3`` -> ``"12.3s"``: the protobuf Duration form Google uses in retryDelay."""
    text = f"{delay:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _parse_markers(prompt: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, count in _MARKER.findall(prompt):
        if name not in _OUTCOME_MARKERS and name not in _COUNTED_MARKERS:
            log.warning("simulator: unknown prompt marker [sim:%s] ignored", name)
        out[name] = int(count) if count else 1
    return out


def _has_key(obj: Any, key: str) -> bool:
    if isinstance(obj, dict):
        return key in obj or any(_has_key(v, key) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_key(v, key) for v in obj)
    return False


def _unknown(where: str, obj: dict[str, Any], allowed: Container[str]) -> str | None:
    for key in obj:
        if key not in allowed:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}'."
    return None


def _check_image(img: Any, where: str) -> str | None:
    """The image must be inline base64 whose bytes really are the declared type."""
    if not isinstance(img, dict):
        return f"{where} must be an object with mimeType and bytesBase64Encoded."
    if err := _unknown(where, img, ("mimeType", "bytesBase64Encoded")):
        return err
    mime, data = img.get("mimeType"), img.get("bytesBase64Encoded")
    if mime not in IMAGE_MIME_TYPES:
        return f"{where}.mimeType {mime!r} is not supported; use one of {list(IMAGE_MIME_TYPES)}."
    if not isinstance(data, str) or not data:
        return f"{where}.bytesBase64Encoded is required."
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return (
            f"Invalid value at '{where}.bytes_base64_encoded' (TYPE_BYTES), Base64 decoding failed."
        )
    found = next((m for magic, m in _IMAGE_MAGIC if raw.startswith(magic)), None)
    if found is None and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        found = "image/webp"
    if found != mime:
        return f"{where}: the image data is not a valid {mime} image ({found or 'unknown'} found)."
    return None


def _duration(value: Any) -> int | None:
    """4/6/8 as an int or a numeric string (the reseller types it as a string); nothing else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and value in DURATIONS_S else None


def _validate(body: Any, info: ModelInfo, files: Mapping[str, _Op]) -> str | None:
    """The message of the first rule of veo-api.md this body breaks, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received. Expected an object."
    if _has_key(body, "inlineData"):
        return "inlineData isn't supported by this model."
    if err := _unknown("request", body, ("instances", "parameters")):
        return err
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return "instances must hold exactly one instance."
    inst = instances[0]
    allowed_inst = ("prompt", "image", "lastFrame", "referenceImages", "video")
    if err := _unknown("instances[0]", inst, allowed_inst):
        return err
    prompt = inst.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "instances[0].prompt is required and must be a non-empty string."
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        return "parameters must be an object."
    if err := _unknown("parameters", params, _PARAMS):
        return err
    if params.get("aspectRatio", "16:9") not in ASPECT_RATIOS:
        return f"aspectRatio must be one of {list(ASPECT_RATIOS)}."
    resolution = params.get("resolution", "720p")
    if resolution not in info.resolutions:
        return f"resolution {resolution!r} is not supported by {info.name}."
    duration = _duration(params.get("durationSeconds", 8))
    if duration is None:
        return f"durationSeconds must be one of {list(DURATIONS_S)}."
    if resolution != "720p" and duration != 8:
        return f"resolution {resolution} requires durationSeconds 8."
    image, last, refs, video = (inst.get(k) for k in allowed_inst[1:])
    if image is not None and (err := _check_image(image, "instances[0].image")):
        return err
    if last is not None:
        if image is None:
            return "lastFrame requires image (the first frame)."
        if not info.supports_last_frame:
            return f"lastFrame is not supported by {info.name}."
        if err := _check_image(last, "instances[0].lastFrame"):
            return err
    if refs is not None:
        if not isinstance(refs, list) or len(refs) > MAX_REFERENCE_IMAGES:
            return f"referenceImages must be a list of at most {MAX_REFERENCE_IMAGES} images."
        if refs and not info.supports_reference_images:
            return f"referenceImages are not supported by {info.name}."
        if refs and duration != 8:
            return "referenceImages require durationSeconds 8."
        for n, ref in enumerate(refs):
            where = f"instances[0].referenceImages[{n}]"
            if not isinstance(ref, dict) or ref.get("referenceType") != "asset":
                return f'{where} must be {{"image": {{...}}, "referenceType": "asset"}}.'
            if err := _unknown(where, ref, ("image", "referenceType")) or _check_image(
                ref.get("image"), f"{where}.image"
            ):
                return err
    if video is not None:
        uri = video.get("uri") if isinstance(video, dict) else None
        match = re.search(r"/files/([^/:?]+)", uri) if isinstance(uri, str) else None
        if match is None or match.group(1) not in files:
            return "video.uri must be a video generated by Veo that has not expired."
        if not info.supports_extension:
            return f"video extension is not supported by {info.name}."
        if resolution != "720p" or duration != 8:
            return "video extension supports only 720p and durationSeconds 8."
    person = params.get("personGeneration")
    if person is not None:
        if person not in PERSON_GENERATION:
            return f"personGeneration must be one of {list(PERSON_GENERATION)}."
        wanted = "allow_adult" if (image or last or refs) else "allow_all"
        if person != wanted:
            return f"personGeneration {person} is not allowed for this mode; use {wanted}."
    if not isinstance(params.get("enhancePrompt", True), bool):
        return "enhancePrompt must be a boolean."
    if not isinstance(params.get("negativePrompt", ""), str):
        return "negativePrompt must be a string."
    count = params.get("sampleCount", 1)
    if isinstance(count, bool) or count != 1:
        return "sampleCount must be 1: one video per request."
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        return "seed must be an unsigned 32-bit integer."
    return None


class _Dropped(web.Response):
    """What a handler returns after closing the connection: counted as "reset"."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """The fake service: an ``aiohttp`` app plus the state it serves (see module docstring)."""

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.url = ""
        self._rng = random.Random(self.config.seed)
        self._ids = random.Random(None if self.config.seed is None else self.config.seed + 1)
        self._secret = secrets.token_bytes(16)
        self._video = _video_bytes()
        self._runner: web.AppRunner | None = None
        self._ops: dict[str, _Op] = {}
        self._files: dict[str, _Op] = {}
        self._order: deque[_Op] = deque()  # creation order, to forget expired operations
        self._running: list[tuple[float, int, _Op]] = []  # heap of unfinished operations
        self._seq = 0
        self._accepted = 0
        self._window: deque[float] = deque()  # accepted submits, for max_submits_in_window
        self._rpm: deque[float] = deque()  # what rpm_limit counts (submits, maybe polls)
        self._day_start = self.config.clock()
        self._day = (0, 0)  # (quota day since start, accepted submits in it) for rpd_limit
        self._fault_seen: dict[str, int] = {}
        self._polls_seen = 0  # polls counted against fail_first_polls
        self._requests: dict[str, dict[str, int]] = {
            k: {} for k in ("submit", "poll", "download", "storage")
        }
        self._received: dict[str, int] = {}
        self._submits: dict[str, int] = {}
        self._ops_count = {"created": 0, "done": 0, "failed": 0, "filtered": 0}
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._times: deque[float] = deque(maxlen=10_000)
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        add = self.app.router.add_route
        submit = self._counted("submit", self._submit)
        poll = self._counted("poll", self._poll)
        download = self._counted("download", self._download)
        add("POST", "/v1beta/models/{model}:predictLongRunning", submit)
        for path in ("/v1beta/models/{model}/operations/{op}", "/v1beta/operations/{op}"):
            add("GET", path, poll)
            add("POST", path, poll)
        add("GET", "/v1beta/files/{file}:download", download)
        add("GET", "/upload/v1beta/files/{file}:download", download)
        add("GET", "/__storage/{file}", self._counted("storage", self._storage))
        add("GET", "/__sim/stats", self._stats_handler)
        add("POST", "/__sim/finish_all", self._finish_all_handler)
        add("GET", "/__sim/config", self._config_handler)
        add("POST", "/__sim/config", self._config_handler)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def configure(self, **changes: Any) -> SimConfig:
        """Change knobs at runtime (same as ``POST /__sim/config``); returns the new config."""
        self.config = self.config.with_changes(changes)
        if "seed" in changes:
            self._rng.seed(self.config.seed)
        return self.config

    # -- test helpers --------------------------------------------------------------------------

    def finish_all(self) -> None:
        """Every operation still generating finishes now."""
        now = self.config.clock()
        for _, _, op in self._running:
            op.done_at = min(op.done_at, now)
            self._finished(op)
        self._running.clear()

    def stats(self) -> dict[str, Any]:
        self._advance(self.config.clock())
        return {
            "requests": {kind: dict(counts) for kind, counts in self._requests.items()},
            "submits_by_prompt": dict(self._submits),
            "received_by_prompt": dict(self._received),
            "operations": dict(self._ops_count),
            **self._counters,
            "running_ops": len(self._running),
            "accepted_submit_times": list(self._times),
        }

    # -- bookkeeping ---------------------------------------------------------------------------

    def _counted(self, kind: str, impl: Handler) -> Handler:
        """Wrap a handler: injected latency, key-leak accounting, per-status counts."""
        counts = self._requests[kind]

        async def handler(request: web.Request) -> web.StreamResponse:
            cfg = self.config
            if cfg.latency_s[1] > 0:
                await asyncio.sleep(self._rng.uniform(*cfg.latency_s))
            if KEY_HEADER in request.headers and (kind == "storage" or self._files_host(request)):
                self._counters["key_leaks"] += 1
            if "key" in request.query:
                self._counters["key_in_url"] += 1
            resp = await impl(request)
            outcome = "reset" if isinstance(resp, _Dropped) else str(resp.status)
            counts[outcome] = counts.get(outcome, 0) + 1
            return resp

        return handler

    def _files_host(self, request: web.Request) -> bool:
        host = self.config.files_host
        return host is not None and request.host.rsplit(":", 1)[0] == host

    def _key_ok(self, request: web.Request) -> bool:
        """Only the header counts: ``?key=`` works on Google but leaks, so it is refused here."""
        return hmac.compare_digest(
            request.headers.get(KEY_HEADER, "").encode(), self.config.api_key.encode()
        )

    def _drop(self, request: web.Request) -> web.Response:
        """Close the connection without answering: the client sees a disconnect, no status."""
        if request.transport is not None:
            request.transport.close()
        return _Dropped()

    def _advance(self, now: float) -> None:
        while self._running and self._running[0][0] <= now:
            self._finished(heapq.heappop(self._running)[2])

    def _finished(self, op: _Op) -> None:
        key = {"ok": "done", "error": "failed", "filtered": "filtered"}[op.outcome]
        self._ops_count[key] += 1

    def _expired(self, op: _Op, now: float) -> bool:
        return now >= op.done_at + self.config.retention_s

    def _too_many(self, message: str, delay: float, quota: dict[str, Any] | None) -> web.Response:
        """A 429 carrying the delay the way ``retry_after_style`` says the server does."""
        style = self.config.retry_after_style
        details: list[dict[str, Any]] = []
        headers = {}
        if quota is not None:
            details.append({"@type": QUOTA_FAILURE, "violations": [quota]})
        if style == "header":
            headers["Retry-After"] = str(math.ceil(delay))  # RFC 9110: whole seconds
        elif style == "retryinfo":
            details.append({"@type": RETRY_INFO, "retryDelay": _seconds(delay)})
        elif style == "message":
            message += f" Please retry in {_seconds(delay)}."
        extra: dict[str, Any] = {"details": details} if details else {}
        return _google_error(429, message, "RESOURCE_EXHAUSTED", headers=headers, **extra)

    def _quota_check(self, now: float, model: str, is_submit: bool) -> web.Response | None:
        """rpm_limit over a sliding window, and (submits only) max_concurrent_ops."""
        cfg = self.config
        rpm = self._rpm
        while rpm and rpm[0] <= now - cfg.rate_window_s:
            rpm.popleft()
        dims = {"location": "global", "model": model}
        day, today = self._today(now)
        if is_submit and cfg.rpd_limit is not None and today >= cfg.rpd_limit:
            # Not a wait-a-minute 429: the day's quota is spent (Google names it PerDay).
            self._counters["per_day_quota_429s"] += 1
            delay = self._day_start + (day + 1) * cfg.day_s - now
            quota = {
                "quotaMetric": "generativelanguage.googleapis.com/predict_long_running_requests",
                "quotaId": "PredictLongRunningRequestsPerDayPerProjectPerModel",
                "quotaDimensions": dims,
                "quotaValue": str(cfg.rpd_limit),
            }
        elif cfg.rpm_limit is not None and len(rpm) >= cfg.rpm_limit:
            delay = rpm[0] + cfg.rate_window_s - now if rpm else cfg.rate_window_s
            quota = {
                "quotaMetric": "generativelanguage.googleapis.com/predict_long_running_requests",
                "quotaId": "PredictLongRunningRequestsPerMinutePerProjectPerModel",
                "quotaDimensions": dims,
                "quotaValue": str(cfg.rpm_limit),
            }
        elif is_submit and cfg.max_concurrent_ops is not None:
            self._advance(now)
            if len(self._running) < cfg.max_concurrent_ops:
                return None
            delay = self._running[0][0] - now if self._running else cfg.retry_after_s
            quota = {
                "quotaMetric": "generativelanguage.googleapis.com/concurrent_operations",
                "quotaId": "ConcurrentPredictLongRunningOperationsPerProject",
                "quotaDimensions": dims,
                "quotaValue": str(cfg.max_concurrent_ops),
            }
        else:
            return None
        self._counters["quota_violations"] += 1
        message = (
            "You exceeded your current quota, please check your plan and billing details. "
            f"Quota exceeded for metric: {quota['quotaMetric']}, limit: {quota['quotaValue']}."
        )
        return self._too_many(message, max(delay, 0.001), quota)

    def _today(self, now: float) -> tuple[int, int]:
        """(which quota day ``now`` falls in, accepted submits already counted in it)."""
        day = int((now - self._day_start) // self.config.day_s)
        return day, (self._day[1] if self._day[0] == day else 0)

    def _count_day(self, now: float) -> None:
        day, today = self._today(now)
        self._day = (day, today + 1)

    def _injected(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    # -- submit --------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        inst = body.get("instances") if isinstance(body, dict) else None
        first = inst[0] if isinstance(inst, list) and inst else None
        prompt = first.get("prompt") if isinstance(first, dict) else None
        if isinstance(prompt, str):
            self._received[prompt] = self._received.get(prompt, 0) + 1
        if self._files_host(request):
            return _not_found()
        if not self._key_ok(request):
            return _reseller_error(401, "Invalid signature")
        if cfg.precondition_failure:
            return _google_error(400, cfg.precondition_failure, "FAILED_PRECONDITION")
        if cfg.balance_submits is not None and self._accepted >= cfg.balance_submits:
            return _reseller_error(403, "insufficient balance, please top up your account")
        model = request.match_info["model"]
        if model in cfg.retired_models:
            return _not_found(f"models/{model} is no longer available. Use a newer model.")
        info = MODELS.get(model)
        if info is None:
            return _not_found(
                f"models/{model} is not found for API version v1beta, or is not supported "
                "for predictLongRunning."
            )
        if body is None:
            return _bad_request("Invalid JSON payload received.")
        if err := _validate(body, info, self._files):
            return _bad_request(err)
        assert isinstance(prompt, str)
        marks = _parse_markers(prompt) if "[sim:" in prompt else {}
        if "bad_request" in marks:
            return _bad_request("Request contains an invalid argument.")
        if fault := self._counted_fault(request, prompt, marks):
            return fault
        if self._injected(cfg.rate_reset):
            return self._drop(request)
        if self._injected(cfg.rate_5xx):
            return _server_error(503 if self._rng.random() < 0.5 else 500)
        if self._injected(cfg.rate_429):
            return self._too_many("Resource has been exhausted.", cfg.retry_after_s, None)
        now = cfg.clock()
        if quota := self._quota_check(now, model, is_submit=True):
            return quota
        if "content_policy" in marks or self._injected(cfg.rate_content_policy):
            return _bad_request(CONTENT_POLICY_MESSAGE)
        op = self._create(now, model, prompt, marks)
        if self._submits[prompt] <= marks.get("lost", 0):
            return self._drop(request)
        return web.json_response({"name": op.name})

    def _fault(self, status: int) -> web.Response:
        """A 429 (with the configured delay) or a 5xx, as the injected faults answer."""
        if status == 429:
            return self._too_many("Resource has been exhausted.", self.config.retry_after_s, None)
        return _server_error(status)

    def _counted_fault(
        self, request: web.Request, prompt: str, marks: dict[str, int]
    ) -> web.Response | None:
        """The ``xN`` markers, applied in order: resets, then 5xx, then 429s."""
        if not marks:
            return None
        seen = self._fault_seen[prompt] = self._fault_seen.get(prompt, 0) + 1
        for kind in ("reset", "500", "502", "503", "504", "429"):
            seen -= marks.get(kind, 0)
            if seen <= 0:
                return self._drop(request) if kind == "reset" else self._fault(int(kind))
        return None

    def _create(self, now: float, model: str, prompt: str, marks: dict[str, int]) -> _Op:
        cfg = self.config
        lo, hi = cfg.generation_s
        gen = hi if "slow" in marks else self._rng.uniform(lo, hi)
        if "op_error" in marks or self._injected(cfg.rate_operation_error):
            outcome = "error"
        elif "filtered" in marks or self._injected(cfg.rate_filtered):
            outcome = "filtered"
        else:
            outcome = "ok"
        op_id = f"{self._ids.getrandbits(64):016x}"
        while op_id in self._ops:
            op_id = f"{self._ids.getrandbits(64):016x}"
        short = cfg.name_style == "short"
        name = f"operations/{op_id}" if short else f"models/{model}/operations/{op_id}"
        op = _Op(
            op_id,
            name,
            model,
            now + gen,
            outcome,
            trunc=marks.get("truncated", 0),
            created_at=now,
            file403="file403" in marks,
        )
        if outcome == "ok":
            op.file_id = f"{self._ids.getrandbits(48):012x}"
            self._files[op.file_id] = op
        self._ops[op_id] = op
        self._order.append(op)
        self._forget_expired(now)
        self._ops_count["created"] += 1
        self._advance(now)  # so max_concurrent_ops counts only operations still generating
        if op.done_at > now:
            self._seq += 1
            heapq.heappush(self._running, (op.done_at, self._seq, op))
        else:
            self._finished(op)
        self._accepted += 1
        self._count_day(now)
        self._submits[prompt] = self._submits.get(prompt, 0) + 1
        self._rpm.append(now)
        window = self._window
        window.append(now)
        while window and window[0] <= now - cfg.rate_window_s:
            window.popleft()
        self._times.append(now)
        c = self._counters
        c["max_submits_in_window"] = max(c["max_submits_in_window"], len(window))
        c["max_concurrent_ops"] = max(c["max_concurrent_ops"], len(self._running))
        return op

    def _forget_expired(self, now: float) -> None:
        """Keep memory flat on a long-running server: drop operations past retention."""
        while self._order and self._expired(self._order[0], now):
            op = self._order.popleft()
            self._ops.pop(op.id, None)
            if op.file_id:
                self._files.pop(op.file_id, None)

    # -- poll ----------------------------------------------------------------------------------

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        if self._polls_seen < cfg.fail_first_polls:
            self._polls_seen += 1
            return self._fault(cfg.fail_first_polls_status)
        if cfg.poll_methods != "both" and request.method.lower() != cfg.poll_methods:
            allow = cfg.poll_methods.upper()
            return web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": allow}
            )
        if self._files_host(request):
            return _not_found()
        if not self._key_ok(request):
            return _reseller_error(401, "Invalid signature")
        if self._injected(cfg.rate_reset):
            return self._drop(request)
        if self._injected(cfg.rate_5xx):
            return _server_error(503 if self._rng.random() < 0.5 else 500)
        now = cfg.clock()
        op = self._ops.get(request.match_info["op"])
        model = request.match_info.get("model")
        if op is None or (model is not None and model != op.model) or self._expired(op, now):
            return _not_found(f"Operation not found: {request.match_info['op']}")
        if now < op.created_at + cfg.early_404_s:
            # Google: right after the submit, the new operation may not be found yet.
            self._counters["early_404s"] += 1
            return _not_found(f"Operation not found: {request.match_info['op']}")
        if cfg.count_polls_in_rpm:
            if quota := self._quota_check(now, op.model, is_submit=False):
                return quota
            self._rpm.append(now)
        op.polls += 1
        if now < op.done_at:
            # Both forms mean "still running"; alternate so clients handle each.
            running = {"name": op.name, "done": False} if op.polls % 2 else {"name": op.name}
            return web.json_response(running)
        if op.reported:
            self._counters["polls_after_done"] += 1
        op.reported = True
        return web.json_response(self._done_body(request, op))

    def _done_body(self, request: web.Request, op: _Op) -> dict[str, Any]:
        if op.outcome == "error":
            error = {"code": 13, "message": "Video generation failed.", "status": "INTERNAL"}
            return {"name": op.name, "done": True, "error": error}
        result: dict[str, Any]
        if op.outcome == "filtered":
            result = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTERED_REASON]}
        else:
            video = {"uri": self._file_uri(request, op), "encoding": "video/mp4"}
            result = {"generatedSamples": [{"video": video}]}
        if self.config.response_style == "nested":
            result = {"generateVideoResponse": result}
        return {"name": op.name, "done": True, "response": {"@type": RESPONSE_TYPE, **result}}

    def _file_uri(self, request: web.Request, op: _Op) -> str:
        """Where the video lives: the API host as the client reached it, or ``files_host``.

        With ``redirect_downloads`` the URI stays on the API host (needs the key) and the
        redirect points at ``files_host``: the key must survive the first hop, not the second.
        """
        cfg = self.config
        prefix = "/upload" if cfg.name_style == "short" else ""
        path = f"{prefix}/v1beta/files/{op.file_id}:download?alt=media"
        if cfg.files_host and not cfg.redirect_downloads:
            return f"{request.scheme}://{cfg.files_host}:{request.url.port}{path}"
        return f"{request.scheme}://{request.host}{path}"

    # -- download ------------------------------------------------------------------------------

    def _live_file(self, file_id: str) -> _Op | None:
        op = self._files.get(file_id)
        now = self.config.clock()
        if op is None or now < op.done_at or self._expired(op, now):
            return None
        return op

    async def _download(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        on_files_host = self._files_host(request)
        if not on_files_host and not self._key_ok(request):
            return _reseller_error(401, "Invalid signature")
        if request.query.get("alt") != "media":
            return _bad_request("Only alt=media downloads are supported on this path.")
        op = self._live_file(request.match_info["file"])
        if op is None or op.file_id is None:
            return _not_found("File not found or expired.")
        if op.file403:
            message = (
                f"You do not have permission to access the File {op.file_id} or it may not exist."
            )
            return _google_error(403, message, "PERMISSION_DENIED")
        if cfg.redirect_downloads and not on_files_host:
            sig = self._sign(op.file_id)
            host = f"{cfg.files_host}:{request.url.port}" if cfg.files_host else request.host
            location = f"{request.scheme}://{host}/__storage/{op.file_id}?sig={sig}"
            return web.Response(status=302, headers={"Location": location})
        return await self._send_video(request, op)

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        """A signed storage URL: the signature is the credential, the API key is not wanted."""
        file_id = request.match_info["file"]
        if not hmac.compare_digest(request.query.get("sig", ""), self._sign(file_id)):
            return web.Response(status=403, text="AccessDenied: invalid signature")
        op = self._live_file(file_id)
        if op is None:
            return web.Response(status=404, text="NoSuchKey")
        return await self._send_video(request, op)

    def _sign(self, file_id: str) -> str:
        return hmac.new(self._secret, file_id.encode(), hashlib.sha256).hexdigest()[:32]

    async def _send_video(self, request: web.Request, op: _Op) -> web.StreamResponse:
        if self._injected(self.config.rate_reset):
            return self._drop(request)
        truncate = op.trunc > 0 or self._injected(self.config.rate_truncated_download)
        video = self._video + _free_box(f"batchveo-sim {op.file_id}".encode())
        if not truncate:
            return web.Response(body=video, content_type="video/mp4")
        op.trunc = max(op.trunc - 1, 0)
        self._counters["truncated_downloads"] += 1
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.content_length = len(video)
        await resp.prepare(request)
        await resp.write(video[: len(video) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp

    # -- /__sim/ -------------------------------------------------------------------------------

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _finish_all_handler(self, request: web.Request) -> web.Response:
        self.finish_all()
        return web.json_response({"ok": True})

    async def _config_handler(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict) or "clock" in changes:
                    raise ValueError("expected a JSON object of SimConfig fields (not clock)")
                self.configure(**changes)
            except ValueError as exc:
                return _bad_request(str(exc))
        return web.json_response(self.config.to_json())


async def serve_forever(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 8080
) -> None:
    """Run a simulator until cancelled (``batchveo simulate``)."""
    sim = Simulator(config)
    url = await sim.start(host, port)
    log.info(
        "Veo simulator listening on %s (key header %s: %s)", url, KEY_HEADER, sim.config.api_key
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
