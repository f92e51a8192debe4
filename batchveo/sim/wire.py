"""What the simulator answers, shaped as the service shapes it (``docs/veo-api.md``).

Pure functions from what happened to an ``aiohttp.web`` response: Google's error envelope
(``{error: {code, message, status, details}}``), the reseller's (``{error: {message,
type}}``), a gateway's HTML page, the 429 in each of the ways a server tells its delay, and
the operation bodies a poll returns. The server decides *what* to answer; this module
decides only how it looks on the wire.

A 429's delay is in a ``Retry-After`` header (whole seconds, rounded up, as RFC 9110
says), a RetryInfo detail, the message, or nowhere, per ``retry_after_style``.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

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
RATE_LIMITED_MESSAGE = "Resource has been exhausted."
_GATEWAY_REASONS = {502: "Bad Gateway", 504: "Gateway Time-out"}


# --------------------------------------------------------------------------- errors


def google_error(status: int, message: str, grpc: str, **extra: Any) -> web.Response:
    """Google's envelope; ``headers=`` goes on the response, anything else in the error."""
    err: dict[str, Any] = {"code": status, "message": message, "status": grpc}
    headers = extra.pop("headers", None)
    err.update(extra)
    return web.json_response({"error": err}, status=status, headers=headers)


def reseller_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": str(status)}}, status=status)


def bad_request(message: str) -> web.Response:
    return google_error(400, message, "INVALID_ARGUMENT")


def not_found(message: str = "Requested entity was not found.") -> web.Response:
    return google_error(404, message, "NOT_FOUND")


def server_error(status: int) -> web.Response:
    """A 500 or 503 from the service, or a 502/504 from a proxy in front of it (HTML)."""
    if status == 503:
        return google_error(503, "The model is overloaded. Please try again later.", "UNAVAILABLE")
    if status in _GATEWAY_REASONS:  # a proxy in front of the service: its page, not JSON
        title = f"{status} {_GATEWAY_REASONS[status]}"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    return google_error(500, "An internal error has occurred. Please retry.", "INTERNAL")


def method_not_allowed(allow: str) -> web.Response:
    return web.Response(status=405, text="405: Method Not Allowed", headers={"Allow": allow})


def seconds(delay: float) -> str:
    """``12.3`` -> ``"12.3s"``: the protobuf Duration form Google uses in retryDelay."""
    text = f"{delay:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def too_many(message: str, delay: float, quota: dict[str, Any] | None, style: str) -> web.Response:
    """A 429 carrying the delay the way ``style`` (``retry_after_style``) says."""
    details: list[dict[str, Any]] = []
    headers = {}
    if quota is not None:
        details.append({"@type": QUOTA_FAILURE, "violations": [quota]})
    if style == "header":
        headers["Retry-After"] = str(math.ceil(delay))  # RFC 9110: whole seconds
    elif style == "retryinfo":
        details.append({"@type": RETRY_INFO, "retryDelay": seconds(delay)})
    elif style == "message":
        message += f" Please retry in {seconds(delay)}."
    extra: dict[str, Any] = {"details": details} if details else {}
    return google_error(429, message, "RESOURCE_EXHAUSTED", headers=headers, **extra)


def quota_exceeded(quota: dict[str, Any], delay: float, style: str) -> web.Response:
    """The 429 of a spent quota, naming it as Google does (``QuotaFailure``)."""
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"Quota exceeded for metric: {quota['quotaMetric']}, limit: {quota['quotaValue']}."
    )
    return too_many(message, max(delay, 0.001), quota, style)


def file_forbidden(file_id: str) -> web.Response:
    """What the Files API says of a missing or expired file (``[sim:file403]``)."""
    message = f"You do not have permission to access the File {file_id} or it may not exist."
    return google_error(403, message, "PERMISSION_DENIED")


# --------------------------------------------------------------------------- operations


def running_body(name: str, polls: int) -> dict[str, Any]:
    """Still running: both forms the service uses; alternate so clients handle each."""
    return {"name": name, "done": False} if polls % 2 else {"name": name}


def failed_body(name: str) -> dict[str, Any]:
    error = {"code": 13, "message": "Video generation failed.", "status": "INTERNAL"}
    return {"name": name, "done": True, "error": error}


def done_body(name: str, video_uri: str | None, nested: bool) -> dict[str, Any]:
    """A finished operation: its video, or (``video_uri`` None) blocked by the filter.

    ``nested`` puts the result under ``generateVideoResponse``, as Google does; the flat
    form has been seen from the reseller.
    """
    result: dict[str, Any]
    if video_uri is None:
        result = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTERED_REASON]}
    else:
        video = {"uri": video_uri, "encoding": "video/mp4"}
        result = {"generatedSamples": [{"video": video}]}
    if nested:
        result = {"generateVideoResponse": result}
    return {"name": name, "done": True, "response": {"@type": RESPONSE_TYPE, **result}}
