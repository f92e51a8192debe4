"""The HTTP client for Veo's long-running video API (Gemini v1beta wire format).

One ``VeoClient`` does three things, each one request and nothing more: ``submit``
a job (``predictLongRunning``), ``poll`` an operation, ``download`` a finished
video. It never retries and never sleeps: it turns every outcome into either a
value or one exception from ``batchveo.errors`` that tells the runner what to do
(wait, back off, fail the job, stop the run, or hold a possibly-paid submit for
a human). The wire contract is ``/work/shared/veo-api.md``.

Design points:

* **Errors.** Both error envelopes are parsed (Google's ``{error: {code, message,
  status, details}}`` and the reseller's ``{error: {message, type}}``); non-JSON
  bodies are tolerated. Messages read ``HTTP 429 RESOURCE_EXHAUSTED: <server
  message>``, are scrubbed of the key in case a server echoes it, then truncated
  to one printable line. A 429 yields its delay from ``Retry-After`` (seconds or
  HTTP date), else ``google.rpc.RetryInfo.retryDelay``, else "retry in 43.7s" in the
  message.
* **Was the submit sent?** Each request carries a ``_Probe``. An
  ``aiohttp.TraceConfig`` marks it when aiohttp begins writing the request
  (``on_request_headers_sent``) and at each body write
  (``on_request_chunk_sent``, which runs just before the bytes go to the
  transport, with no await in between); a ``ClientRequest`` subclass tells it
  which transport the request goes to. A network failure of a submit is
  ``Transient`` (safe to resend) only when it provably happened before any byte
  left: no connection at all (``ClientConnectorError``: refused, DNS, TLS;
  ``ConnectionTimeoutError``), a failure before writing began, or a pooled
  keep-alive connection already closing at the first write (headers and JSON
  body go out in that one write, which aiohttp refuses on a closing transport).
  Anything else after writing began (disconnect while waiting, read timeout,
  reset) is ``SubmitOutcomeUnknown``: there is no idempotency key, so a paid
  operation may exist. A 2xx without an operation name is unknown too, and so is a
  502 or 504 to a submit: a gateway (the reseller is one) may have passed it on before
  giving up. Polls and downloads are free to repeat, so their network failures and
  5xx are just ``Transient``.
* **The key** lives in a redacting wrapper, travels only in the
  ``x-goog-api-key`` header (never ``?key=``), and only to the provider's own
  hosts: downloads follow redirects by hand and drop the key for any other host
  (signed storage URLs). Logs carry URLs without query strings. A base URL with a
  query or user info is refused, and the message shows neither.
* **A server that echoes the key.** Nothing the client returns or builds a URL from
  may hold it, since what it returns is stored, exported and (operation names) sent
  back in poll URLs. An operation name holding the key (or too long, or unusable in
  a URL path) is ``SubmitOutcomeUnknown`` with the key redacted: the operation may
  exist and be paid, but it cannot be polled safely, so a human decides. A video URI
  (or a redirect) carrying the key in a query parameter loses that parameter, the
  rest kept byte for byte (the key goes in the header anyway); one holding it
  anywhere else is ``MalformedAnswer`` on a poll, ``UnusableVideo`` on a download.
  Error messages and ``OperationStatus`` texts are scrubbed of the key and of
  control characters, and clipped.
* **Bounds on what a server sends.** aiohttp never inflates anything
  (``auto_decompress=False``). Answers to submits and polls are read up to
  ``max_json_bytes`` (``MAX_JSON_BYTES``) after the client's own bounded inflating (gzip
  or deflate, the only encodings asked for): no further, a Content-Length over it is not
  read at all, and an answer over it is ``SubmitOutcomeUnknown`` on a submit (the
  request was sent) or ``MalformedAnswer`` on a poll. Videos are asked for as identity:
  any other Content-Encoding (a gzip bomb) is ``UnusableVideo``, never inflated, and so
  is a video over ``max_video_bytes`` (``MAX_VIDEO_BYTES``): refused from its
  Content-Length, or cut off as soon as it grows past the cap. A URI or redirect that is
  not http(s), or more than ``MAX_REDIRECTS`` redirects, is ``UnusableVideo`` too.
* **Downloads** stream to ``<dest>.part`` while hashing, check Content-Length and
  the MP4 ``ftyp`` box; then ``files`` makes the file durable (fsync, rename
  into place, fsync the folder), so ``dest`` exists only when it is complete.
  A body that is not an MP4 raises ``Transient``: a proxy's error page may be
  replaced by the real file later, and failing the job would throw away a paid
  video.
* **405 on poll.** The reseller's pages disagree on GET or POST; the client tries
  GET, and on a 405 switches to POST. The method is settled only by an answer that
  proves it (a 2xx, or a 404 for the operation): a 429 or 5xx may come from a front
  door that never looked at the method. A 405 after settling negotiates again.
  Until the method is settled, polls go one at a time, so at most one 405 is spent.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import os
import re
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp
from aiohttp.connector import Connection
from multidict import CIMultiDictProxy
from yarl import URL

from batchveo.errors import (
    AccountError,
    ApiError,
    BadRequest,
    ConfigError,
    ContentRejected,
    FileRefused,
    MalformedAnswer,
    ModelUnavailable,
    NotFound,
    NotSent,
    QuotaExhausted,
    RateLimited,
    StopRun,
    SubmitOutcomeUnknown,
    Transient,
    UnusableVideo,
)
from batchveo.files import FileCommitter, PartFile
from batchveo.redact import Secret
from batchveo.spec import ImageRef, JobSpec

log = logging.getLogger(__name__)

Kind = Literal["submit", "poll", "download"]

KEY_HEADER = "x-goog-api-key"
MAX_MESSAGE_CHARS = 300
MAX_REDIRECTS = 5
MAX_OPERATION_NAME_CHARS = 1024
"""Longest operation name kept (real ones are under 200): it is stored and polled."""
CHUNK_BYTES = 1 << 20
READ_BYTES = 64 * 1024
"""One read of a JSON answer: small, so a cap is never overshot by much."""
MAX_JSON_BYTES = 4 << 20
"""Default cap on a submit's or poll's answer, after decompression. A Gemini operation is a
few KB; 4 MiB leaves a thousand times that. (Vertex's inline videos will need a larger cap
on their route: ``VeoClient(max_json_bytes=...)``.)"""
MAX_ERROR_BODY_BYTES = 64 * 1024
"""An error answer is read this far for its message (which is clipped far shorter)."""
MAX_VIDEO_BYTES = 512 << 20
"""Default cap on one downloaded video: a 4k 8 s clip is about 60 MB and a 148 s extended
720p chain about 150 MB, so 512 MiB is well above any real one, and far below a full disk."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
GATEWAY_STATUSES = frozenset({502, 504})
"""A proxy's "bad gateway" and "gateway timeout": it may have passed a submit on before it
gave up, so the operation may exist (500 and 503 are the service's own word that it did not)."""
_GEMINI = "https://generativelanguage.googleapis.com"
_PROVIDERS: dict[str, tuple[str, str]] = {
    "gptproto": ("https://gptproto.com", "https://api.gptproto.com"),
    "gemini": (_GEMINI, _GEMINI),
}
_KEY_ENV = {
    "gptproto": "GPTPROTO_API_KEY",
    "custom": "GPTPROTO_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._~:@!$&'()*+,;=-]+$")
_CONTENT_POLICY = re.compile(
    r"content[\s_-]*polic|usage[\s_-]*guideline|safety|violat|responsible[\s_-]*ai|prohibited",
    re.IGNORECASE,
)
_RETRY_IN = re.compile(r"retry\s+in\s+(\d+(?:\.\d+)?)\s*(ms|s)?", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_BAD_KEY = re.compile(r"api[\s_-]*key[\s_-]*(not[\s_-]*valid|invalid)", re.IGNORECASE)
_PER_DAY = re.compile(r"per[\s_-]*day", re.IGNORECASE)
_LOCATION = re.compile(r"location|country|region|territor", re.IGNORECASE)
_BILLING = re.compile(r"billing", re.IGNORECASE)


# --------------------------------------------------------------------------- providers


@dataclass(frozen=True)
class Provider:
    name: str
    submit_base: str
    query_base: str

    def trusted_hosts(self) -> frozenset[str]:
        """host[:port] of the provider's own servers: the only ones given the key."""
        return frozenset(host_key(URL(b)) for b in (self.submit_base, self.query_base))

    def trusts(self, url: URL) -> bool:
        """Whether the key may go to ``url``: a provider host, never downgraded to http."""
        if host_key(url) not in self.trusted_hosts():
            return False
        schemes = {URL(b).scheme for b in (self.submit_base, self.query_base)}
        return url.scheme == "https" or url.scheme in schemes


def host_key(url: URL) -> str:
    """``host`` or ``host:port`` (port only when not the scheme's default), lowercased."""
    host = (url.raw_host or "").lower()
    port = url.explicit_port
    if port is None or port == {"http": 80, "https": 443}.get(url.scheme):
        return host
    return f"{host}:{port}"


def resolve_provider(name: str = "gptproto", base_url: str | None = None) -> Provider:
    """The endpoints for ``name``; ``base_url`` points submit, poll and files at one server."""
    if name not in (*_PROVIDERS, "custom"):
        known = ", ".join([*_PROVIDERS, "custom"])
        raise ConfigError(f"unknown provider {name!r} (known: {known})")
    if base_url:
        base = _check_base_url(base_url)
        return Provider(name, base, base)
    if name == "custom":
        raise ConfigError("provider 'custom' needs a base URL (--base-url or BATCHVEO_BASE_URL)")
    submit, query = _PROVIDERS[name]
    return Provider(name, submit, query)


def _check_base_url(base_url: str) -> str:
    """The base URL, refused when it holds anything but scheme, host, port and path.

    A query (``?key=``) or user info is where a secret travels: never accepted, and never
    shown in the message (it goes to stderr, so to cron.log).
    """
    text = base_url.strip()
    url = _parse_url(text)
    if (
        url is None
        or url.scheme not in ("http", "https")
        or not url.raw_host
        or url.raw_query_string
        or url.raw_fragment
        or url.raw_user is not None
        or url.raw_password is not None
        or re.search(r"[?#@]", text)
    ):
        raise ConfigError(
            f"base URL must look like https://host[:port], got {_show_url(text)!r} "
            "(query and user info not shown; the key goes in BATCHVEO_API_KEY, never in a URL)"
        )
    return str(url).rstrip("/")


def resolve_api_key(provider_name: str, env: Mapping[str, str] = os.environ) -> str:
    """BATCHVEO_API_KEY, else the provider's own variable; ConfigError naming both."""
    names = ["BATCHVEO_API_KEY", _KEY_ENV.get(provider_name, "GPTPROTO_API_KEY")]
    for var in names:
        key = env.get(var, "").strip()
        if key:
            if any(c.isspace() or not c.isprintable() for c in key):
                raise ConfigError(f"{var} contains whitespace or control characters")
            return key
    raise ConfigError(f"no API key: set {' or '.join(names)} in the environment")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class OperationStatus:
    state: Literal["running", "done", "failed", "filtered"]
    video_uris: tuple[str, ...] = ()
    error_code: int | None = None
    error_message: str | None = None
    filtered_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    sha256: str


# --------------------------------------------------------------------------- request bodies


def build_request_body(spec: JobSpec) -> dict[str, Any]:
    """The ``predictLongRunning`` body; reads and verifies the job's images from disk."""
    instance: dict[str, Any] = {"prompt": spec.prompt}
    if spec.image:
        instance["image"] = load_image(spec.image)
    if spec.last_frame:
        instance["lastFrame"] = load_image(spec.last_frame)
    if spec.reference_images:
        instance["referenceImages"] = [
            {"image": load_image(ref), "referenceType": "asset"} for ref in spec.reference_images
        ]
    if spec.video_uri:
        instance["video"] = {"uri": spec.video_uri}
    return {"instances": [instance], "parameters": build_parameters(spec.params)}


def build_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """spec.params as sent: None dropped (so seed only when set), durationSeconds a string."""
    out = {k: v for k, v in params.items() if v is not None}
    if "durationSeconds" in out:
        out["durationSeconds"] = str(out["durationSeconds"])
    return out


def load_image(ref: ImageRef) -> dict[str, str]:
    """``{mimeType, bytesBase64Encoded}`` for ``ref``, if the file still has its sha256."""
    try:
        data = Path(ref.path).read_bytes()
    except OSError as exc:
        raise BadRequest(
            f"image {ref.path} can no longer be read ({exc.strerror or exc}); "
            "it was there when the manifest was loaded"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        raise BadRequest(
            f"image {ref.path} changed since the manifest was loaded "
            f"(sha256 {digest[:12]}…, expected {ref.sha256[:12]}…); reload the manifest"
        )
    return {"mimeType": ref.mime_type, "bytesBase64Encoded": base64.b64encode(data).decode()}


# --------------------------------------------------------------------------- operations


def split_operation_name(name: str, model: str) -> tuple[str, str]:
    """(model, operation id) from ``models/{m}/operations/{id}`` or ``operations/{id}``."""
    parts = name.strip("/").split("/")
    if len(parts) >= 4 and parts[0] == "models" and parts[-2] == "operations":
        model = parts[1]
    return model, parts[-1]


def parse_operation(data: Any, scrub: Callable[[str], str] = str) -> OperationStatus:
    """An operation JSON object as the runner's ``OperationStatus``; its texts (error
    message, filter reasons) pass through ``scrub`` before they are clipped."""
    if not isinstance(data, dict):
        return OperationStatus("failed", error_message="operation is not a JSON object")
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return OperationStatus(
            "failed",
            error_code=code if isinstance(code, int) else None,
            error_message=_clip(scrub(str(error.get("message") or error.get("status") or error))),
        )
    if not data.get("done"):
        return OperationStatus("running")
    response = data.get("response")
    response = response if isinstance(response, dict) else {}
    inner = response.get("generateVideoResponse")
    layers = [d for d in (inner, response) if isinstance(d, dict)]
    uris = tuple(uri for layer in layers for uri in _sample_uris(layer))
    reasons = tuple(_clip(scrub(r)) for layer in layers for r in _filter_reasons(layer))
    filtered = any(layer.get("raiMediaFilteredCount") for layer in layers) or bool(reasons)
    if uris:
        return OperationStatus("done", video_uris=uris, filtered_reasons=reasons)
    if filtered:
        return OperationStatus("filtered", filtered_reasons=reasons)
    return OperationStatus("failed", error_message="the operation finished but had no video")


def _sample_uris(layer: dict[str, Any]) -> list[str]:
    samples = layer.get("generatedSamples")
    out: list[str] = []
    for sample in samples if isinstance(samples, list) else []:
        video = sample.get("video") if isinstance(sample, dict) else None
        uri = video.get("uri") if isinstance(video, dict) else None
        if isinstance(uri, str) and uri:
            out.append(uri)
    return out


def _filter_reasons(layer: dict[str, Any]) -> list[str]:
    reasons = layer.get("raiMediaFilteredReasons")
    return [str(r) for r in reasons] if isinstance(reasons, list) else []


# --------------------------------------------------------------------------- HTTP errors


@dataclass
class _Envelope:
    message: str
    status: str | None = None
    details: list[Any] = field(default_factory=list)


def parse_envelope(body: bytes, reason: str | None) -> _Envelope:
    """Google's or the reseller's error object; plain text when the body is not JSON."""
    try:
        data = json.loads(body)
    except ValueError:
        text = " ".join(body.decode("utf-8", "replace").split())
        return _Envelope(text or reason or "no error message")
    error = data.get("error", data) if isinstance(data, dict) else data
    if not isinstance(error, dict):
        return _Envelope(str(error) or reason or "no error message")
    status = error.get("status")
    details = error.get("details")
    return _Envelope(
        message=str(error.get("message") or error.get("type") or reason or "no error message"),
        status=status if isinstance(status, str) and status else None,
        details=details if isinstance(details, list) else [],
    )


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    kind: Kind,
    reason: str | None = None,
    scrub: Callable[[str], str] = str,
) -> ApiError:
    """The exception for a non-success answer to a ``kind`` request."""
    env = parse_envelope(body, reason)
    label = f"HTTP {status} {env.status or reason or ''}".rstrip()
    message = _clip(scrub(f"{label}: {env.message}"))  # scrubbed whole, then clipped
    if status == 429:
        if _is_per_day_quota(env.details):
            return QuotaExhausted(message, status=status, retry_after_s=retry_after_s(headers, env))
        return RateLimited(message, retry_after_s=retry_after_s(headers, env))
    if status == 400:
        if _is_bad_key(env):  # Google answers a wrong key with 400 INVALID_ARGUMENT
            return AccountError(message, status=status)
        if kind == "submit" and env.status == "FAILED_PRECONDITION":
            # Said of the project, not the job (a location the API does not serve, no
            # billing): every submit would get it, so stop at the first one.
            return AccountError(f"{message} ({_precondition_hint(env.message)})", status=status)
        text = f"{env.message} {env.status or ''}"
        cls = ContentRejected if _CONTENT_POLICY.search(text) else BadRequest
        return cls(message, status=status)
    if status in (401, 403):
        return AccountError(message, status=status)
    if status == 404:
        cls404 = ModelUnavailable if kind == "submit" else NotFound
        return cls404(message, status=status)
    if kind == "submit" and status in GATEWAY_STATUSES:
        return SubmitOutcomeUnknown(
            f"{message} (a gateway's answer: the submit may have created a paid operation "
            "upstream, so it is not resent automatically)",
            status=status,
        )
    if status >= 500 or status == 408:
        return Transient(message, status=status)
    if 300 <= status < 400:
        return StopRun(f"{message} (unexpected redirect: check the base URL)", status=status)
    return BadRequest(message, status=status)


def _precondition_hint(message: str) -> str:
    """What the user can do about a ``FAILED_PRECONDITION``: its cause is in the message."""
    if _BILLING.search(message):  # "... not available in your country. Enable billing ..."
        return "enable billing on the Google Cloud project of this API key"
    if _LOCATION.search(message):
        return "the API is not available from this location: run from a supported region"
    return (
        "enable billing on the Google Cloud project of this API key, "
        "and check that the API is available from this location"
    )


def _is_bad_key(env: _Envelope) -> bool:
    reasons = [d.get("reason") for d in env.details if isinstance(d, dict)]
    return "API_KEY_INVALID" in reasons or bool(_BAD_KEY.search(env.message))


def retry_after_s(headers: Mapping[str, str], env: _Envelope) -> float | None:
    """Retry-After header, else RetryInfo.retryDelay, else "retry in Ns" in the message."""
    header = headers.get("Retry-After")
    if header:
        delay = _parse_retry_after_header(header)
        if delay is not None:
            return delay
    for detail in env.details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            delay = _parse_duration(detail.get("retryDelay"))
            if delay is not None:
                return delay
    match = _RETRY_IN.search(env.message)
    if match:
        value = float(match.group(1))
        return value / 1000 if (match.group(2) or "").lower() == "ms" else value
    return None


def _parse_retry_after_header(value: str) -> float | None:
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _parse_duration(value: Any) -> float | None:
    if isinstance(value, str):
        match = _DURATION.match(value)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _is_per_day_quota(details: list[Any]) -> bool:
    for detail in details:
        if not (isinstance(detail, dict) and str(detail.get("@type", "")).endswith("QuotaFailure")):
            continue
        for violation in detail.get("violations") or []:
            if isinstance(violation, dict) and any(
                _PER_DAY.search(str(violation.get(k) or ""))
                for k in ("quotaId", "description", "quotaMetric", "subject")
            ):
                return True
    return False


def _clip(text: str) -> str:
    """One short printable line: a server's text may hold newlines or terminal escapes."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


# --------------------------------------------------------------------------- network errors


NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass
class _Probe:
    """What aiohttp did with one request, filled in by the trace hooks below."""

    transport: asyncio.BaseTransport | None = None
    started: bool = False  # the request began to be written (headers serialized)
    chunks: int = 0  # body writes attempted; the first carries the headers too
    first_write_blocked: bool = False  # that first write met a closing transport


_CURRENT_PROBE: ContextVar[_Probe | None] = ContextVar("batchveo_probe", default=None)


class _ProbedRequest(aiohttp.ClientRequest):
    """Tells the current probe which transport the request is about to be written to."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        probe = _CURRENT_PROBE.get()
        if probe is not None and conn.protocol is not None:
            probe.transport = conn.protocol.transport
        return await super().send(conn)


async def _on_headers(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if isinstance(probe := ctx.trace_request_ctx, _Probe):
        probe.started = True


async def _on_chunk(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    # Runs just before aiohttp hands the chunk to the transport, with no await in
    # between: a transport closing now refuses the write and nothing leaves.
    if isinstance(probe := ctx.trace_request_ctx, _Probe):
        probe.chunks += 1
        if probe.chunks == 1:
            t = probe.transport
            probe.first_write_blocked = t is not None and t.is_closing()


def _trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()
    tc.on_request_headers_sent.append(_on_headers)
    tc.on_request_chunk_sent.append(_on_chunk)
    return tc


def provably_unsent(exc: BaseException, probe: _Probe) -> bool:
    """True only when the failure happened before any byte of the request left."""
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return True  # DNS, refused, TLS, connect timeout: there was no connection
    if not probe.started:
        return True  # failed before aiohttp began writing (e.g. no pool slot in time)
    # A pooled keep-alive connection the server had closed: the single write that
    # carries headers and body was refused by the closing transport.
    return probe.chunks == 1 and probe.first_write_blocked


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class _Reply:
    status: int
    reason: str | None
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


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
    ):
        self.provider = provider
        self._key = Secret(api_key)
        self._timeout = aiohttp.ClientTimeout(
            total=request_timeout_s, sock_connect=connect_timeout_s
        )
        self._download_timeout = aiohttp.ClientTimeout(
            total=download_timeout_s, sock_connect=connect_timeout_s
        )
        self._max_connections = max_connections
        self._max_json_bytes = max_json_bytes
        self._max_video_bytes = max_video_bytes
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._poll_method: str = "GET"
        self._poll_method_settled = False
        self._poll_lock = asyncio.Lock()
        self._files = FileCommitter()

    def __repr__(self) -> str:
        p = self.provider
        return f"VeoClient(provider={p.name!r}, submit={p.submit_base!r}, query={p.query_base!r})"

    async def __aenter__(self) -> VeoClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._files.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers={"User-Agent": self._user_agent},
                trace_configs=[_trace_config()],
                request_class=_ProbedRequest,
                # Never inflate behind our back: JSON answers are inflated here under
                # their cap (_read_capped), and videos are never inflated at all.
                auto_decompress=False,
            )
        return self._session

    # ----------------------------------------------------------------------- submit

    async def submit(self, spec: JobSpec) -> str:
        """Start one generation; returns the operation name exactly as the server gave it."""
        model = _segment(spec.model, "model")
        has_images = spec.image or spec.last_frame or spec.reference_images
        # Reading and encoding images is slow I/O: off the loop. A text job is not.
        body = (
            await asyncio.to_thread(build_request_body, spec)
            if has_images
            else build_request_body(spec)
        )
        payload = json.dumps(body, separators=(",", ":")).encode()
        del body
        url = URL(f"{self.provider.submit_base}/v1beta/models/{model}:predictLongRunning")
        try:
            reply = await self._call("POST", url, "submit", payload)
        except NotSent as e:
            if e.unreachable:
                raise
            # A keep-alive connection the server had closed: nothing left, so it is
            # safe to send once more, at once, on a fresh connection.
            reply = await self._call("POST", url, "submit", payload)
        if not reply.ok:
            raise self._http_error(reply, "submit")
        name = _json_object(reply.body).get("name")
        if not isinstance(name, str) or not name:
            raise SubmitOutcomeUnknown(
                f"HTTP {reply.status} from submit without an operation name: "
                f"{_clip(self._text(reply.body))}"
            )
        if why := self._unpollable(name, spec.model):
            raise SubmitOutcomeUnknown(
                f"submit answered HTTP {reply.status} with an operation name that {why} "
                f"({_clip(self._key.scrub(name))}): it is neither stored nor polled; the "
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
        if not (_is_segment(model) and _is_segment(op_id)):
            return "cannot be part of a poll URL"
        return None

    # ----------------------------------------------------------------------- poll

    async def poll(self, operation_name: str, model: str) -> OperationStatus:
        """The operation's state; a 405 switches this client to the other method."""
        model, op_id = split_operation_name(operation_name, model)
        path = f"/v1beta/models/{_segment(model, 'model')}/operations/{_segment(op_id, 'op')}"
        url = URL(self.provider.query_base + path)
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
            raise self._http_error(reply, "poll")
        try:
            data = json.loads(reply.body)
        except ValueError:
            raise Transient(f"poll answered non-JSON: {_clip(self._text(reply.body))}") from None
        return self._keyless_uris(parse_operation(data, scrub=self._key.scrub))

    def _keyless_uris(self, status: OperationStatus) -> OperationStatus:
        """``status`` with the key out of its video URIs (its texts are scrubbed already).

        A video URI carrying the key in its query loses that parameter (the key goes in
        the header); one carrying it anywhere else cannot be stored or fetched without
        it, so the answer is malformed.
        """
        uris = []
        for uri in status.video_uris:
            clean = _strip_key(uri, self._key)
            if clean is None:
                raise MalformedAnswer(
                    "poll answered with a video URI that holds the API key outside its query "
                    f"({_show_url(self._key.scrub(uri))}): not stored"
                )
            uris.append(clean)
        return replace(status, video_uris=tuple(uris))

    async def _negotiate_poll(self, url: URL, refused: str | None) -> _Reply:
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

    async def _poll_once(self, url: URL, method: str) -> _Reply:
        body = b"" if method == "POST" else None
        return await self._call(method, url, "poll", body)

    # ----------------------------------------------------------------------- download

    async def download(self, uri: str, dest: Path) -> DownloadResult:
        """Stream ``uri`` to ``dest`` atomically; the key goes to trusted hosts only."""
        clean = _strip_key(uri, self._key)
        if clean is None:
            raise UnusableVideo(
                f"the video URI holds the API key: {_show_url(self._key.scrub(uri))}"
            )
        url = _parse_url(clean)
        if url is None or url.scheme not in ("http", "https") or not url.raw_host:
            raise UnusableVideo(f"the video URI is not an http(s) URL: {_show_url(clean)}")
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._ensure_session().get(
                    url,
                    headers={**self._headers(url), "Accept-Encoding": "identity"},
                    allow_redirects=False,
                    timeout=self._download_timeout,
                ) as resp:
                    log.debug("GET %s -> %s", url.with_query(None), resp.status)
                    if resp.status in REDIRECT_STATUSES:
                        url = self._redirect_target(url, resp)
                        continue
                    if resp.status != 200:
                        body = await _read_error_body(resp)
                        reply = _Reply(resp.status, resp.reason, resp.headers, body)
                        if resp.status in (401, 403) and not self.provider.trusts(url):
                            # A signed storage URL refused (expired signature, say): the
                            # next attempt starts from the API's URI and gets a fresh one.
                            raise Transient(f"storage host {host_key(url)} refused: {reply.status}")
                        if resp.status in (401, 403):
                            # The Files API says 403 of a missing or expired file: that
                            # file's trouble, not the account's (submits and polls say so).
                            raise FileRefused(
                                str(self._http_error(reply, "download")), status=resp.status
                            )
                        raise self._http_error(reply, "download")
                    return await _stream_to_file(resp, dest, self._files, self._max_video_bytes)
            except NETWORK_ERRORS as exc:
                raise self._network_error(exc, None, "download") from None
        raise UnusableVideo(f"the download gave more than {MAX_REDIRECTS} redirects (a loop?)")

    def _redirect_target(self, url: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise Transient(f"HTTP {resp.status} redirect without a Location header")
        relative = _parse_url(location)
        joined = None if relative is None else _strip_key(str(url.join(relative)), self._key)
        if joined is None and relative is not None:
            shown = _show_url(self._key.scrub(location))
            raise UnusableVideo(f"redirect to a URL that holds the API key: {shown}")
        target = None if joined is None else _parse_url(joined)
        if target is None or target.scheme not in ("http", "https") or not target.raw_host:
            shown = _show_url(self._key.scrub(location))
            raise UnusableVideo(f"redirect to a non-http(s) URL: {shown}")
        return target

    # ----------------------------------------------------------------------- plumbing

    def _headers(self, url: URL) -> dict[str, str]:
        return {KEY_HEADER: self._key.reveal()} if self.provider.trusts(url) else {}

    async def _call(self, method: str, url: URL, kind: Kind, body: bytes | None) -> _Reply:
        """One request with the key: the whole answer, or a mapped network error."""
        headers = {**self._headers(url), "Accept-Encoding": JSON_ENCODINGS}
        if body is not None:
            headers["Content-Type"] = "application/json"
        probe = _Probe()
        token = _CURRENT_PROBE.set(probe)
        try:
            async with self._ensure_session().request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
                trace_request_ctx=probe,
            ) as resp:
                log.debug("%s %s -> %s", method, url.with_query(None), resp.status)
                if not 200 <= resp.status < 300:
                    body = await _read_error_body(resp)
                    return _Reply(resp.status, resp.reason, resp.headers, body)
                cap = self._max_json_bytes
                try:
                    body, whole = await _read_capped(resp, cap)
                except _Undecodable as e:
                    raise self._unreadable(kind, resp.status, str(e)) from None
                if not whole:
                    resp.close()  # read no further: the rest is never wanted
                    raise self._unreadable(kind, resp.status, f"more than {cap} bytes (the cap)")
                return _Reply(resp.status, resp.reason, resp.headers, body)
        except NETWORK_ERRORS as exc:
            raise self._network_error(exc, probe, kind) from None
        finally:
            _CURRENT_PROBE.reset(token)

    def _unreadable(self, kind: Kind, status: int, what: str) -> ApiError:
        """A 2xx answer that was not read (too big, an encoding we did not ask for)."""
        text = f"{kind} answered HTTP {status} with {what}, not read"
        if kind == "submit":
            return SubmitOutcomeUnknown(
                f"{text}: it may have created a paid operation, so it is not resent automatically"
            )
        return MalformedAnswer(text)

    def _http_error(self, reply: _Reply, kind: Kind) -> ApiError:
        return error_for_status(
            reply.status, reply.headers, reply.body, kind, reply.reason, scrub=self._key.scrub
        )

    def _network_error(self, exc: BaseException, probe: _Probe | None, kind: Kind) -> ApiError:
        what = _clip(self._key.scrub(f"{type(exc).__name__}: {exc}".rstrip(": ")))
        if kind != "submit" or probe is None:
            return Transient(f"{kind} failed: {what}")
        if provably_unsent(exc, probe):
            unreachable = isinstance(
                exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
            )
            return NotSent(f"submit was not sent: {what}", unreachable=unreachable)
        return SubmitOutcomeUnknown(
            f"submit may have reached the server ({what}); it may have created a paid "
            "operation, so it is not resent automatically"
        )

    def _text(self, body: bytes) -> str:
        return self._key.scrub(body.decode("utf-8", "replace"))


def _strip_key(uri: str, key: Secret) -> str | None:
    """``uri`` without any query parameter that carries the key; None if it holds the key
    anywhere else. The rest of the URI is kept byte for byte (it may be signed)."""
    if not key.found_in(uri):
        return uri
    rest, hash_mark, fragment = uri.partition("#")
    base, question, query = rest.partition("?")
    kept = []
    for param in query.split("&") if question else ():
        name, _, value = param.partition("=")
        plain = urllib.parse.unquote_plus(value)
        if (
            urllib.parse.unquote_plus(name).lower() == "key"
            or key.found_in(plain)
            or key.found_in(value)
        ):
            continue
        kept.append(param)
    clean = base + ("?" + "&".join(kept) if kept else "") + hash_mark + fragment
    return None if key.found_in(clean) else clean


def _parse_url(text: str) -> URL | None:
    """``text`` as a URL exactly as sent (no re-encoding), or None if it cannot be one."""
    try:
        url = URL(text, encoded=True)
        _ = url.explicit_port  # a bad port only shows when asked for
    except (ValueError, TypeError):
        return None
    return url


def _show_url(text: str) -> str:
    """A URL fit for a message: no query, fragment or user info (where secrets travel)."""
    text = re.split(r"[?#]", text, maxsplit=1)[0]
    return _clip(re.sub(r"//[^/@]*@", "//", text))


def _token(text: str) -> str:
    """A header token fit for a message (``gzip``), or a placeholder for anything else."""
    return text if re.fullmatch(r"[a-z0-9._-]{1,24}", text) else "(unrecognised)"


def _other_method(method: str) -> str:
    return "POST" if method == "GET" else "GET"


def _is_segment(value: str) -> bool:
    return bool(_SAFE_SEGMENT.match(value)) and value not in (".", "..")


def _segment(value: str, what: str) -> str:
    if not _is_segment(value):
        raise BadRequest(f"malformed {what} {_clip(value[:80])!r} for a URL path")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- bounded reads


JSON_ENCODINGS = "gzip, deflate"
"""What JSON answers may be compressed with: only what ``_Inflater`` can bound."""


class _Undecodable(Exception):
    """An answer in a Content-Encoding we did not ask for, or corrupt."""


class _Inflater:
    """Inflates a gzip or deflate body a piece at a time, never past a given length.

    zlib's ``max_length`` stops each call at the room left under the cap, so a bomb costs
    at most the cap, whatever it would inflate to.
    """

    def __init__(self, encoding: str):
        self.encoding = encoding.strip().lower()
        self._z: Any = None
        if self.encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding not in ("", "identity", "deflate"):
            raise _Undecodable(f"Content-Encoding {_token(self.encoding)}")

    def feed(self, data: bytes, room: int) -> bytes:
        """At most ``room`` (>= 1) bytes of output; input beyond that is dropped."""
        if self.encoding == "deflate" and self._z is None and data:
            # RFC 9110 deflate is zlib-wrapped; some servers send it raw.
            self._z = zlib.decompressobj(zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        if self._z is None:
            return data
        try:
            out: bytes = self._z.decompress(data, room)
        except zlib.error:
            raise _Undecodable(f"a corrupt {self.encoding} body") from None
        return out


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """The body, inflated, up to ``cap`` bytes; and whether that was all of it.

    Reads no further than needed: a Content-Length over the cap is not read at all, and
    reading stops at the first byte past the cap (counted both as received and inflated).
    """
    length = resp.content_length
    inflater = _Inflater(resp.headers.get("Content-Encoding", "identity"))
    if length is not None and length > cap:
        return b"", False
    out = bytearray()
    received = 0
    while True:
        data = await resp.content.read(READ_BYTES)
        if not data:
            return bytes(out), True
        received += len(data)
        out += inflater.feed(data, cap + 1 - len(out))
        if len(out) > cap or received > cap:
            return bytes(out[:cap]), False


async def _read_error_body(resp: aiohttp.ClientResponse) -> bytes:
    """Enough of an error answer for its message; nothing if it cannot be decoded."""
    try:
        body, _ = await _read_capped(resp, MAX_ERROR_BODY_BYTES)
    except _Undecodable:
        return b""  # the status still says what it is
    return body


# --------------------------------------------------------------------------- files


async def _stream_to_file(
    resp: aiohttp.ClientResponse, dest: Path, committer: FileCommitter, max_bytes: int
) -> DownloadResult:
    """Body -> dest.part (hashing) -> checks -> durable rename (see ``files``).

    The bytes are taken as sent: identity was asked for, and a video in any other encoding
    is refused rather than inflated (a gzip bomb). So is one over ``max_bytes``, before
    reading when its Content-Length says so, else as soon as it grows past it.
    """
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        resp.close()
        raise UnusableVideo(
            f"the video came with Content-Encoding {_token(encoding)} although identity was "
            "asked for: not decoded"
        )
    expected = resp.content_length
    if expected is not None and expected > max_bytes:
        resp.close()
        raise UnusableVideo(
            f"the video's Content-Length is {expected} bytes, over the cap of {max_bytes}: "
            "not downloaded"
        )
    digest = hashlib.sha256()
    size = 0
    head = b""
    part = PartFile(dest)
    try:
        try:
            async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                if size + len(chunk) > max_bytes:
                    resp.close()
                    raise UnusableVideo(
                        f"the video grew to more than {max_bytes} bytes (the cap): "
                        "cut off and discarded"
                    )
                part.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if len(head) < 8:
                    head += chunk[: 8 - len(head)]
        except aiohttp.ClientPayloadError:
            raise Transient(_truncated(size, expected)) from None
        if expected is not None and size != expected:
            raise Transient(_truncated(size, expected))
        if head[4:8] != b"ftyp":
            raise Transient(f"downloaded {size} bytes that are not an MP4 (no ftyp box)")
    except BaseException:
        part.discard()
        raise
    sha256 = digest.hexdigest()
    final = await part.commit(committer, sha256)
    return DownloadResult(path=final, size=size, sha256=sha256)


def _truncated(size: int, expected: int | None) -> str:
    of = f" of {expected}" if expected is not None else ""
    return f"truncated download: got {size}{of} bytes"
