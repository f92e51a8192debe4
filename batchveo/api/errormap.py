"""From what went wrong to the one exception that tells the runner what to do.

Two pure functions, readable as tables and tested without a socket: ``error_for_status``
maps a non-success answer (status, headers, body) to an exception of ``batchveo.errors``,
and ``network_error`` maps a failed request (the exception, and what the ``probe`` saw of
the request) to one. Every provider shares them: Google's error envelope is the same on
the Gemini API and on Vertex AI, and the reseller's is parsed too.

* **Errors.** Both error envelopes are parsed (Google's ``{error: {code, message,
  status, details}}`` and the reseller's ``{error: {message, type}}``); non-JSON
  bodies are tolerated. Messages read ``HTTP 429 RESOURCE_EXHAUSTED: <server
  message>``, are scrubbed of the key in case a server echoes it, then truncated
  to one printable line. A 429 yields its delay from ``Retry-After`` (seconds or
  HTTP date), else ``google.rpc.RetryInfo.retryDelay``, else "retry in 43.7s" in the
  message.
* **A submit whose outcome is unknown.** There is no idempotency key, so a submit that
  may have reached the server is ``SubmitOutcomeUnknown`` (a paid operation may exist),
  never resent silently: a network failure after writing began, a 2xx that was not read,
  and a 502 or 504, since a gateway (the reseller is one) may have passed it on before
  giving up. Polls and downloads are free to repeat, so their network failures and 5xx
  are just ``Transient``.
* **Vertex AI** (``vertex_error_for_status``) has rows of its own over these: a 401 comes
  after the client already refreshed its token once (the credentials are refused), a 403
  names the role to grant (Vertex's or the bucket's), a 404 on a submit names the model
  and the ids Vertex serves, and a ``FAILED_PRECONDITION`` names the project, not a key.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from batchveo.api.probe import Probe, never_connected, provably_unsent
from batchveo.api.texts import clip
from batchveo.errors import (
    AccountError,
    ApiError,
    BadRequest,
    ContentRejected,
    MalformedAnswer,
    ModelUnavailable,
    NotFound,
    NotSent,
    QuotaExhausted,
    RateLimited,
    StopRun,
    SubmitOutcomeUnknown,
    Transient,
)

Kind = Literal["submit", "poll", "download", "review", "file"]
"""Which request failed: the same status means different things to each (a review is a
``generateContent``: free of the submit's doubts, since sending it twice pays twice for
tokens but creates nothing, and its 404 is the model's, as a submit's is; ``file`` is a
Files API call of a review, an upload or a file's state, whose 404 is the file's)."""
_NAMES_MODEL: tuple[Kind, ...] = ("submit", "review")
"""The requests whose path names the model: a 404 there means the model is not served."""

GATEWAY_STATUSES = frozenset({502, 504})
"""A proxy's "bad gateway" and "gateway timeout": it may have passed a submit on before it
gave up, so the operation may exist (500 and 503 are the service's own word that it did not)."""
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


# --------------------------------------------------------------------------- HTTP errors


@dataclass
class Envelope:
    """An error answer's message, gRPC status and details, whichever envelope it came in."""

    message: str
    status: str | None = None
    details: list[Any] = field(default_factory=list)


def parse_envelope(body: bytes, reason: str | None) -> Envelope:
    """Google's or the reseller's error object; plain text when the body is not JSON."""
    try:
        data = json.loads(body)
    except ValueError:
        text = " ".join(body.decode("utf-8", "replace").split())
        return Envelope(text or reason or "no error message")
    error = data.get("error", data) if isinstance(data, dict) else data
    if not isinstance(error, dict):
        return Envelope(str(error) or reason or "no error message")
    status = error.get("status")
    details = error.get("details")
    return Envelope(
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
    message = _message(status, env, reason, scrub)
    if status == 429:
        if _is_per_day_quota(env.details):
            return QuotaExhausted(message, status=status, retry_after_s=retry_after_s(headers, env))
        return RateLimited(message, retry_after_s=retry_after_s(headers, env))
    if status == 400:
        if _is_bad_key(env):  # Google answers a wrong key with 400 INVALID_ARGUMENT
            return AccountError(message, status=status)
        if kind in _NAMES_MODEL and env.status == "FAILED_PRECONDITION":
            # Said of the project, not the job (a location the API does not serve, no
            # billing): every submit would get it, so stop at the first one.
            return AccountError(f"{message} ({_precondition_hint(env.message)})", status=status)
        text = f"{env.message} {env.status or ''}"
        cls = ContentRejected if _CONTENT_POLICY.search(text) else BadRequest
        return cls(message, status=status)
    if status in (401, 403):
        return AccountError(message, status=status)
    if status == 404:
        cls404 = ModelUnavailable if kind in _NAMES_MODEL else NotFound
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


def _message(status: int, env: Envelope, reason: str | None, scrub: Callable[[str], str]) -> str:
    """``HTTP 429 RESOURCE_EXHAUSTED: <server message>``, scrubbed whole, then clipped."""
    label = f"HTTP {status} {env.status or reason or ''}".rstrip()
    return clip(scrub(f"{label}: {env.message}"))


VERTEX_ROLE = "roles/aiplatform.user"
"""The role that lets credentials call Vertex's Veo models (Vertex AI User)."""
STORAGE_ROLE = "roles/storage.objectViewer"
"""The role that lets credentials read the videos Vertex wrote into a bucket."""


def vertex_error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    kind: Kind,
    reason: str | None = None,
    scrub: Callable[[str], str] = str,
    *,
    model: str | None = None,
    served_models: Sequence[str] = (),
    storage: bool = False,
) -> ApiError:
    """The exception for a non-success answer from Vertex AI (or, ``storage``, from Cloud
    Storage) to a ``kind`` request; ``error_for_status`` for every row not its own.

    A 401 here is the second one: the client refreshed its token after the first.
    """
    env = parse_envelope(body, reason)
    message = _message(status, env, reason, scrub)
    if status == 401:
        return AccountError(
            f"{message} (Google refused a freshly minted access token too: the credentials "
            "are not accepted; check GOOGLE_APPLICATION_CREDENTIALS or run "
            "`gcloud auth application-default login`)",
            status=status,
        )
    if status == 403 and storage:
        return AccountError(
            f"{message} (the credentials may not read the bucket: grant them {STORAGE_ROLE} on it)",
            status=status,
        )
    if status == 403:
        return AccountError(
            f"{message} (grant the credentials {VERTEX_ROLE} on the project, and check the "
            "project and region)",
            status=status,
        )
    if status == 404 and kind in _NAMES_MODEL and not storage:
        served = ", ".join(served_models) or "see the Vertex AI model garden"
        named = f"model {model}" if model else "the model"
        return ModelUnavailable(
            f"{message} ({named} is not served to this project in this region, or is "
            f"retired; Vertex serves: {served})",
            status=status,
        )
    if status == 400 and kind in _NAMES_MODEL and env.status == "FAILED_PRECONDITION":
        return AccountError(
            f"{message} (enable billing and the Vertex AI API on the Google Cloud project)",
            status=status,
        )
    return error_for_status(status, headers, body, kind, reason, scrub)


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


def _is_bad_key(env: Envelope) -> bool:
    reasons = [d.get("reason") for d in env.details if isinstance(d, dict)]
    return "API_KEY_INVALID" in reasons or bool(_BAD_KEY.search(env.message))


def retry_after_s(headers: Mapping[str, str], env: Envelope) -> float | None:
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


# --------------------------------------------------------------------------- other failures


def network_error(
    exc: BaseException, probe: Probe | None, kind: Kind, scrub: Callable[[str], str] = str
) -> ApiError:
    """The exception for a request that got no answer: ``NotSent`` only when the probe
    proves no byte of a submit left (``unreachable`` when there was no connection)."""
    what = clip(scrub(f"{type(exc).__name__}: {exc}".rstrip(": ")))
    if kind != "submit" or probe is None:
        return Transient(f"{kind} failed: {what}")
    if provably_unsent(exc, probe):
        return NotSent(f"submit was not sent: {what}", unreachable=never_connected(exc))
    return SubmitOutcomeUnknown(
        f"submit may have reached the server ({what}); it may have created a paid "
        "operation, so it is not resent automatically"
    )


def unreadable(kind: Kind, status: int, what: str) -> ApiError:
    """A 2xx answer that was not read (too big, an encoding we did not ask for)."""
    text = f"{kind} answered HTTP {status} with {what}, not read"
    if kind == "submit":
        return SubmitOutcomeUnknown(
            f"{text}: it may have created a paid operation, so it is not resent automatically"
        )
    return MalformedAnswer(text)
