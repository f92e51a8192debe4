"""A job's ``predictLongRunning`` body on Vertex AI: its instance and parameters, its local
images read from disk and verified against the sha256 taken at load.

Apart from ``vertex_wire`` (pure) because it reads files: the client builds a body on a
worker thread when ``body_reads_files`` says it will (slow I/O, off the loop).
"""

from __future__ import annotations

import re
from typing import Any

from batchveo.api.texts import show_url
from batchveo.api.vertex_wire import vertex_parameters
from batchveo.api.wire import load_image
from batchveo.errors import BadRequest
from batchveo.spec import ImageRef, JobSpec

__all__ = ["body_reads_files", "build_vertex_body"]

_GS_VIDEO = re.compile(r"^gs://[^/\s]+/\S+$")


def build_vertex_body(spec: JobSpec, storage_uri: str | None) -> dict[str, Any]:
    """The ``predictLongRunning`` body; reads and verifies the job's local images.

    Images on disk go as ``bytesBase64Encoded`` (checked against the sha256 taken at load),
    Cloud Storage images as ``gcsUri``; a video to extend must be in Cloud Storage.
    """
    instance: dict[str, Any] = {"prompt": spec.prompt}
    if spec.image:
        instance["image"] = _image(spec.image)
    if spec.last_frame:
        instance["lastFrame"] = _image(spec.last_frame)
    if spec.reference_images:
        instance["referenceImages"] = [
            {"image": _image(ref), "referenceType": "asset"} for ref in spec.reference_images
        ]
    if spec.video_uri:
        if not _GS_VIDEO.match(spec.video_uri):
            raise BadRequest(
                f"Vertex extends videos in Cloud Storage only (gs://...), not "
                f"{show_url(spec.video_uri)}"
            )
        instance["video"] = {"gcsUri": spec.video_uri, "mimeType": "video/mp4"}
    return {"instances": [instance], "parameters": vertex_parameters(spec.params, storage_uri)}


def _image(ref: ImageRef) -> dict[str, str]:
    if ref.gcs_uri:
        return {"gcsUri": ref.gcs_uri, "mimeType": ref.mime_type}
    return load_image(ref)


def body_reads_files(spec: JobSpec) -> bool:
    """Whether building the body reads files (slow I/O: off the loop)."""
    refs = [r for r in (spec.image, spec.last_frame, *spec.reference_images) if r]
    return any(not r.gcs_uri for r in refs)
