"""The Gemini v1beta wire format, as pure functions: what a submit sends, what a poll means.

Google's Gemini API and the reseller GPTProto speak it, and so does the simulator
(``docs/veo-api.md``, sections 1 and 2). Vertex AI speaks its own (its section there):
its bodies and operations will have their own module; the error envelopes are shared
(``errormap``).

Nothing here touches a socket, so each rule is tested directly: a ``JobSpec`` becomes a
``predictLongRunning`` body (images read from disk and checked against the sha256 taken at
load), and an operation JSON object becomes an ``OperationStatus``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from batchveo.api.results import OperationStatus
from batchveo.api.texts import clip
from batchveo.api.urls import segment
from batchveo.errors import BadRequest
from batchveo.spec import ImageRef, JobSpec

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


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A request body as sent: compact JSON (images make it megabytes; no spaces wasted)."""
    return json.dumps(body, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- paths


def submit_path(model: str) -> str:
    """The submit route for ``model`` (BadRequest if the id cannot be a path segment)."""
    return f"/v1beta/models/{segment(model, 'model')}:predictLongRunning"


def poll_path(operation_name: str, model: str) -> str:
    """The poll route of an operation, whichever name form the server gave."""
    model, op_id = split_operation_name(operation_name, model)
    return f"/v1beta/models/{segment(model, 'model')}/operations/{segment(op_id, 'op')}"


def split_operation_name(name: str, model: str) -> tuple[str, str]:
    """(model, operation id) from ``models/{m}/operations/{id}`` or ``operations/{id}``."""
    parts = name.strip("/").split("/")
    if len(parts) >= 4 and parts[0] == "models" and parts[-2] == "operations":
        model = parts[1]
    return model, parts[-1]


# --------------------------------------------------------------------------- answers


def operation_name(body: bytes) -> str | None:
    """The ``name`` of a submit's answer, or None when it has none (or is not JSON)."""
    name = json_object(body).get("name")
    return name if isinstance(name, str) and name else None


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object; empty when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


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
            error_message=clip(scrub(str(error.get("message") or error.get("status") or error))),
        )
    if not data.get("done"):
        return OperationStatus("running")
    response = data.get("response")
    response = response if isinstance(response, dict) else {}
    inner = response.get("generateVideoResponse")
    layers = [d for d in (inner, response) if isinstance(d, dict)]
    uris = tuple(uri for layer in layers for uri in _sample_uris(layer))
    reasons = tuple(clip(scrub(r)) for layer in layers for r in _filter_reasons(layer))
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
