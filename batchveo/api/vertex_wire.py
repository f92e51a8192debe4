"""Vertex AI's wire format for Veo: pure functions, testable without a socket.

The contract is ``docs/veo-api.md``, section "Vertex AI". What differs from the Gemini
format, and why each function here exists:

* **Paths** name the project and the region: ``/v1/projects/P/locations/L/publishers/
  google/models/M:predictLongRunning``; the host is ``L-aiplatform.googleapis.com``
  (``aiplatform.googleapis.com`` for ``global``).
* **Polls** are a POST of ``{"operationName": NAME}`` to the model's
  ``:fetchPredictOperation`` (a GET on the name answers 404). The stored name is sent
  back exactly as received; its segments give project (perhaps a number), location and
  model, so a poll needs nothing but the name.
* **Parameters**: ``durationSeconds`` is an integer, ``generateAudio`` is sent
  explicitly (true unless the manifest says false), ``sampleCount`` may be 1-4, and
  ``storageUri`` asks for the videos in the user's bucket.
* **Results**: ``response.videos[]``, each a ``gcsUri`` or inline ``bytesBase64Encoded``,
  with ``raiMediaFilteredCount``/``raiMediaFilteredReasons`` beside them: fewer videos
  than asked is a *partial* result, none with a filtered count is *filtered* (not
  charged), none at all with nothing said is an operation error (a known intermittent
  service bug).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from batchveo.errors import BadRequest

GLOBAL_HOST = "https://aiplatform.googleapis.com"
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_OPERATION = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/google/"
    r"models/(?P<model>[^/]+)/operations/(?P<op>[^/]+)$"
)


def vertex_base(location: str) -> str:
    """The API host of a region (``global`` has none of its own)."""
    segment(location, "location")
    return GLOBAL_HOST if location == "global" else f"https://{location}-aiplatform.googleapis.com"


def segment(value: str, what: str) -> str:
    """``value`` if it is safe as one URL path segment; BadRequest naming ``what`` if not."""
    if not _SEGMENT.match(value) or value in (".", ".."):
        raise BadRequest(f"malformed {what} {value[:80]!r} for a URL path")
    return value


def model_path(project: str, location: str, model: str) -> str:
    return (
        f"/v1/projects/{segment(project, 'project')}/locations/{segment(location, 'location')}"
        f"/publishers/google/models/{segment(model, 'model')}"
    )


@dataclass(frozen=True)
class OperationName:
    """The parts of a Vertex operation name, as the poll URL needs them."""

    project: str
    location: str
    model: str
    operation_id: str

    @classmethod
    def parse(cls, name: str) -> OperationName:
        match = _OPERATION.match(name.strip("/"))
        if match is None:
            raise BadRequest(f"not a Vertex operation name: {name[:120]!r}")
        parts = cls(match["project"], match["location"], match["model"], match["op"])
        for value, what in zip(
            (parts.project, parts.location, parts.model, parts.operation_id),
            ("project", "location", "model", "operation"),
            strict=True,
        ):
            segment(value, what)
        return parts

    def fetch_path(self) -> str:
        return model_path(self.project, self.location, self.model) + ":fetchPredictOperation"


def vertex_parameters(params: Mapping[str, Any], storage_uri: str | None) -> dict[str, Any]:
    """A job's parameters as Vertex takes them (None dropped: seed only when set)."""
    out = {k: v for k, v in params.items() if v is not None}
    out["durationSeconds"] = int(out.get("durationSeconds", 8))
    out["generateAudio"] = bool(out.get("generateAudio", True))
    out.setdefault("sampleCount", 1)
    if storage_uri:
        out["storageUri"] = storage_uri
    return out


@dataclass(frozen=True)
class VertexVideo:
    """One returned video: in the user's bucket, or inline (base64, transiently held)."""

    mime_type: str
    gcs_uri: str | None = None
    inline_b64: str | None = None


@dataclass(frozen=True)
class VertexOutcome:
    state: Literal["running", "done", "failed", "filtered"]
    videos: tuple[VertexVideo, ...] = ()
    filtered_count: int = 0
    filtered_reasons: tuple[str, ...] = ()
    error_code: int | None = None
    error_message: str | None = None


def parse_vertex_operation(data: Any, scrub: Callable[[str], str] = str) -> VertexOutcome:
    """A Vertex operation JSON object as an outcome; texts from the server pass ``scrub``."""
    if not isinstance(data, dict):
        return VertexOutcome("failed", error_message="operation is not a JSON object")
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = scrub(str(error.get("message") or error.get("status") or "no message"))
        return VertexOutcome(
            "failed", error_code=code if isinstance(code, int) else None, error_message=message
        )
    if not data.get("done"):
        return VertexOutcome("running")
    response = data.get("response")
    response = response if isinstance(response, dict) else {}
    videos = tuple(v for v in map(_video, _list(response.get("videos"))) if v is not None)
    reasons = tuple(scrub(str(r)) for r in _list(response.get("raiMediaFilteredReasons")))
    count = response.get("raiMediaFilteredCount")
    filtered = count if isinstance(count, int) and count > 0 else (len(reasons) or 0)
    if videos:
        return VertexOutcome("done", videos, filtered, reasons)
    if filtered:
        return VertexOutcome("filtered", (), filtered, reasons)
    return VertexOutcome(
        "failed",
        error_message="the operation finished with no video, no error and nothing filtered"
        " (a known intermittent Vertex fault; retry the job)",
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _video(item: Any) -> VertexVideo | None:
    if not isinstance(item, dict):
        return None
    mime = str(item.get("mimeType") or "video/mp4")
    gcs, inline = item.get("gcsUri"), item.get("bytesBase64Encoded")
    if isinstance(gcs, str) and gcs.startswith("gs://"):
        return VertexVideo(mime, gcs_uri=gcs)
    if isinstance(inline, str) and inline:
        return VertexVideo(mime, inline_b64=inline)
    return None
