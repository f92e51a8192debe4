"""What the simulator's Vertex service answers, shaped as Vertex shapes it
(``docs/veo-api.md``, "Vertex AI"): the simulator's side of the wire that
``batchveo.api.vertex_wire`` parses on the client's.

Errors use Google's envelope (``wire.google_error``) with the details Vertex gives: an
``ErrorInfo`` for 401 and 403, ``QuotaFailure`` and ``RetryInfo`` for a quota 429. The
operation bodies carry ``response.videos[]`` (``gcsUri`` or ``bytesBase64Encoded``) and
``raiMediaFilteredCount``/``raiMediaFilteredReasons``. Pure functions: the service decides
*what* to answer, this module how it looks.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from batchveo.sim import wire
from batchveo.sim.quota import Violation
from batchveo.sim.tokens import Refusal

SERVICE = "aiplatform.googleapis.com"
RESPONSE_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
PREDICT_PERMISSION = "aiplatform.endpoints.predict"
API_KEY_MESSAGE = (
    "API keys are not supported by this API. Expected OAuth2 access token or other "
    "authentication credentials that assert a principal. See "
    "https://cloud.google.com/docs/authentication"
)
CONTENT_POLICY_MESSAGE = (
    "The prompt could not be submitted. This prompt contains sensitive words that violate "
    "Google's Responsible AI practices. Try rephrasing the prompt. If you think this was an "
    "error, send feedback. Support codes: 17301594"
)
RATE_LIMITED_MESSAGE = (
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
)
PARTIAL_SUPPORT_CODE = "58061214"
"""Partly filtered results give bare support codes as their reasons (seen on Vertex)."""


def _error_info(reason: str, method: str, **metadata: str) -> dict[str, Any]:
    meta = {"service": SERVICE, "method": f"google.cloud.aiplatform.v1.{method}", **metadata}
    return {"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com", "metadata": meta}


def unauthenticated(refusal: Refusal, method: str) -> web.Response:
    """401 UNAUTHENTICATED: no bearer token, an unknown one, or an expired one."""
    challenge = 'Bearer realm="https://accounts.google.com/"'
    if refusal.reason != "CREDENTIALS_MISSING":
        challenge += ', error="invalid_token"'
    return wire.google_error(
        401,
        refusal.message,
        "UNAUTHENTICATED",
        details=[_error_info(refusal.reason, method)],
        headers={"WWW-Authenticate": challenge},
    )


def api_key_refused(method: str) -> web.Response:
    """Vertex's Veo takes no API key: a key instead of a token is refused with 401."""
    return wire.google_error(
        401,
        API_KEY_MESSAGE,
        "UNAUTHENTICATED",
        details=[_error_info("CREDENTIALS_MISSING", method)],
    )


def permission_denied(resource: str, method: str) -> web.Response:
    """403: the caller may not predict on this project's model (or it is the wrong URL)."""
    full = f"//{SERVICE}/{resource}"
    message = (
        f"Permission '{PREDICT_PERMISSION}' denied on resource '{full}' (or it may not exist)."
    )
    info = _error_info(
        "IAM_PERMISSION_DENIED", method, permission=PREDICT_PERMISSION, resource=resource
    )
    return wire.google_error(403, message, "PERMISSION_DENIED", details=[info])


def publisher_model_not_found(project: str, location: str, model: str) -> web.Response:
    """404 for a retired or unknown model id, worded as the documentation quotes it."""
    message = (
        f"Publisher Model projects/{project}/locations/{location}/publishers/google/models/"
        f"{model} was not found or your project does not have access to it. Please ensure "
        "you are using a valid model version. For more information, see: "
        "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions"
    )
    return wire.not_found(message)


def operation_not_found(name: str) -> web.Response:
    return wire.not_found(f"Operation {name[:300]} not found.")


def rate_limited(delay_s: float, style: str) -> web.Response:
    """A 429 not tied to a quota (shared capacity), its delay told as ``style`` says."""
    return wire.too_many(RATE_LIMITED_MESSAGE, delay_s, None, style)


def quota_exceeded(violation: Violation, model: str, style: str) -> web.Response:
    """The 429 of a spent quota: the message names the metric and the base model."""
    metric = violation.quota["quotaMetric"]
    message = (
        f"Quota exceeded for {metric} with base model: {model}. Please submit a quota "
        "increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai."
    )
    return wire.too_many(message, max(violation.delay_s, 0.001), violation.quota, style)


def bad_request(message: str) -> web.Response:
    return wire.bad_request(message)


# --------------------------------------------------------------------------- operations


def failed_body(
    name: str, code: int = 13, message: str = "Video generation failed."
) -> dict[str, Any]:
    """An operation that ended in an error (a ``google.rpc.Status``: code and message)."""
    return {"name": name, "done": True, "error": {"code": code, "message": message}}


def empty_body(name: str) -> dict[str, Any]:
    """Done with no video, no error and nothing filtered: the known intermittent bug."""
    return {"name": name, "done": True, "response": {"@type": RESPONSE_TYPE}}


def filtered_reason(count: int) -> str:
    return (
        f"Veo could not generate {count} videos based on the prompt provided. You will not be "
        "charged for this request. Please try rephrasing your prompt. Support codes: 42237218"
    )


def done_body(name: str, videos: list[dict[str, str]], filtered: int) -> dict[str, Any]:
    """A finished operation: its videos, and how many the filter blocked (with reasons).

    All blocked: the count and one reason in words. Some blocked: the count and a bare
    support code per blocked sample, beside the videos that came back."""
    response: dict[str, Any] = {"@type": RESPONSE_TYPE, "raiMediaFilteredCount": filtered}
    if filtered:
        reasons = [PARTIAL_SUPPORT_CODE] * filtered if videos else [filtered_reason(filtered)]
        response["raiMediaFilteredReasons"] = reasons
    if videos:
        response["videos"] = videos
    return {"name": name, "done": True, "response": response}


def gcs_video(uri: str) -> dict[str, str]:
    return {"gcsUri": uri, "mimeType": "video/mp4"}


def inline_video(data: bytes) -> dict[str, str]:
    return {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": "video/mp4"}
