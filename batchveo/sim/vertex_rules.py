"""The rules a Vertex AI request must follow (``docs/veo-api.md``, "Vertex AI"), as the
simulator's Vertex service checks them: pure functions, testable without a socket.

Vertex differs from the Gemini format (``rules``) where the documentation says it does:
``durationSeconds`` is an integer (not a string), ``generateAudio`` is a boolean and is
expected (the simulator requires it: a client must say whether it pays for audio),
``sampleCount`` may be 1-4, ``storageUri`` is a ``gs://BUCKET/PREFIX`` URI, images are
``bytesBase64Encoded`` + ``mimeType`` or ``gcsUri`` + ``mimeType``, and an extension's
input video is a ``gcsUri`` (or inline bytes) of an MP4. As in ``rules``, the simulator is
if anything stricter than the service: unknown fields are refused, not ignored.

The model ids are the service's own catalogue (``VERTEX_MODELS``), not the client's table:
the simulator plays the service, and the service decides which ids exist. Vertex retired
its preview ids on 2026-04-02; any id not in the catalogue (a retired preview id included)
answers the 404 "Publisher Model ... was not found".

A valid submit comes back as a ``VertexRequest``: what the service then acts on (the
prompt, how many samples, where the videos go, the ``gs://`` media it must read, the video
to extend).

Extension (``docs/veo-api.md``, "Extension"; Google's "Extend Veo videos" page): the input
is an MP4 (``video/mp4``, bytes starting with ``ftyp``) of 1 to 30 s, named by ``gcsUri``
(an object the service can read: in the simulator, one in its Cloud Storage, else 400 as
for any unreadable input) or sent inline; its length is read from the MP4's own header
(``mp4.duration_s``), and the answer lasts 7 s longer, at most 37 s (``extension_input``).
Unlike the Gemini format, any MP4 of the right length may be extended, not only one Veo
made.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from batchveo.models import (
    ASPECT_RATIOS,
    DURATIONS_S,
    IMAGE_MIME_TYPES,
    MAX_REFERENCE_IMAGES,
    PERSON_GENERATION,
    RESOLUTIONS,
)
from batchveo.mp4 import NotAnMp4, duration_s
from batchveo.sim.gcs import split_gcs_uri
from batchveo.sim.rules import image_type_mismatch, request_shape, unknown_key


@dataclass(frozen=True)
class VertexModel:
    """What one Vertex model id accepts."""

    name: str
    resolutions: tuple[str, ...] = RESOLUTIONS
    supports_reference_images: bool = True
    supports_last_frame: bool = True
    supports_extension: bool = True


VERTEX_MODELS: dict[str, VertexModel] = {
    m.name: m
    for m in (
        VertexModel("veo-3.1-generate-001"),
        VertexModel("veo-3.1-fast-generate-001"),
        VertexModel(
            "veo-3.1-lite-generate-001",  # labelled preview, but served under this id
            resolutions=("720p", "1080p"),
            supports_reference_images=False,
            supports_extension=False,
        ),
    )
}
"""The Veo ids Vertex serves (GA since its preview ids were retired on 2026-04-02)."""

EXTENSION_S = 7.0
"""How much longer an extension's answer is than its input."""
MIN_INPUT_S = 1.0
MAX_INPUT_S = 30.0
MAX_OUTPUT_S = 37.0
MAX_SAMPLES = 4
"""Vertex: "maximum videos returned per request: 4"."""
VIDEO_MIME_TYPE = "video/mp4"
VIDEO_WHERE = "instances[0].video"

_INSTANCE_KEYS = ("prompt", "image", "lastFrame", "referenceImages", "video")
_PARAMS = frozenset(
    {
        "aspectRatio",
        "resolution",
        "durationSeconds",
        "generateAudio",
        "personGeneration",
        "enhancePrompt",
        "negativePrompt",
        "sampleCount",
        "seed",
        "storageUri",
    }
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_LOCATION = re.compile(r"^[a-z]+(?:-[a-z]+)+[0-9]+$")
_OPERATION = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/google/"
    r"models/(?P<model>[^/]+)/operations/(?P<op>[^/]+)$"
)


@dataclass(frozen=True)
class GcsRef:
    """A ``gs://`` object the request names: the service must read it, and it must be
    what ``mime`` says."""

    where: str
    uri: str
    mime: str


@dataclass(frozen=True)
class VertexRequest:
    """A submit that passed the rules: what the service acts on."""

    prompt: str
    samples: int
    storage: tuple[str, str] | None
    """(bucket, prefix ending in ``/`` or empty) of ``storageUri``; None: inline videos."""
    gcs_refs: tuple[GcsRef, ...]
    video: GcsRef | bytes | None = None
    """The video to extend: its ``gs://`` object (one of ``gcs_refs``) or its inline bytes."""
    duration_s: int = 8
    """``durationSeconds``: how long a video that extends none lasts."""


@dataclass(frozen=True)
class OperationRef:
    """The segments of a Vertex operation name."""

    project: str
    location: str
    model: str
    operation_id: str


def valid_location(location: str) -> bool:
    """A region (``us-central1``, ``europe-west4``) or ``global``."""
    return location == "global" or bool(_LOCATION.match(location))


def parse_operation_name(name: str) -> OperationRef | None:
    match = _OPERATION.match(name)
    if match is None:
        return None
    return OperationRef(match["project"], match["location"], match["model"], match["op"])


def fetch_operation_name(body: Any) -> str:
    """The ``operationName`` of a ``fetchPredictOperation`` body; ValueError (the 400's
    message) if the body is anything else."""
    if not isinstance(body, dict):
        raise ValueError("Invalid JSON payload received. Expected an object.")
    if err := unknown_key("request", body, ("operationName",)):
        raise ValueError(err)
    name = body.get("operationName")
    if not isinstance(name, str) or not name:
        raise ValueError("operationName is required.")
    if parse_operation_name(name) is None:
        raise ValueError(f"Invalid operation name: {name[:200]!r}.")
    return name


def validate(body: Any, model: VertexModel) -> str | VertexRequest:
    """The message of the first rule this submit body breaks, or what it asks for."""
    if err := request_shape(body, _INSTANCE_KEYS, _PARAMS):
        return err
    inst: dict[str, Any] = body["instances"][0]
    params: dict[str, Any] = body.get("parameters", {})
    if err := _output(params, model):
        return err
    duration = params.get("durationSeconds", 8)
    refs: list[GcsRef] = []
    err = (
        _frames(inst, model, refs)
        or _references(inst.get("referenceImages"), model, duration, refs)
        or _extension(inst.get("video"), model, refs)
        or _options(params)
    )
    if err:
        return err
    storage = storage_target(params.get("storageUri"))
    if isinstance(storage, str):
        return storage
    return VertexRequest(
        inst["prompt"],
        params.get("sampleCount", 1),
        storage,
        tuple(refs),
        _video_to_extend(inst.get("video"), refs),
        duration,
    )


def _video_to_extend(video: Any, refs: list[GcsRef]) -> GcsRef | bytes | None:
    """The input of a valid extension: its ``gs://`` ref, or its decoded inline bytes."""
    if not isinstance(video, dict):
        return None
    ref = next((r for r in refs if r.where == VIDEO_WHERE), None)
    return ref or base64.b64decode(video["bytesBase64Encoded"])


def extension_input(raw: bytes, where: str = VIDEO_WHERE) -> str | float:
    """The length in seconds of the video to extend, or the 400's message: an MP4 whose
    header gives its length, of ``MIN_INPUT_S`` to ``MAX_INPUT_S``, so that the answer
    lasts at most ``MAX_OUTPUT_S``."""
    if err := check_media(raw, VIDEO_MIME_TYPE, where):
        return err
    try:
        length_s = duration_s(raw)
    except NotAnMp4:
        return f"{where}: the data is not a valid MP4 video (its length cannot be read)."
    if not MIN_INPUT_S <= length_s <= MAX_INPUT_S or length_s + EXTENSION_S > MAX_OUTPUT_S:
        return (
            f"{where}: the video lasts {length_s:g} s; Veo extends videos of {MIN_INPUT_S:g}"
            f" to {MAX_INPUT_S:g} s, to at most {MAX_OUTPUT_S:g} s in all."
        )
    return length_s


def storage_target(uri: Any) -> str | tuple[str, str] | None:
    """``storageUri`` as (bucket, prefix), None when absent, or the 400's message.

    ``gs://b``, ``gs://b/`` and ``gs://b/out``, ``gs://b/out/`` are all accepted (the
    documented format is ``gs://BUCKET_NAME/SUBDIRECTORY``); the videos land under
    ``PREFIX/<operation>/``."""
    if uri is None:
        return None
    where = "parameters.storageUri"
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        return f"{where} must be a Cloud Storage URI: gs://BUCKET/PREFIX/."
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        return f"{where}: {bucket!r} is not a valid bucket name."
    if prefix.startswith("/") or "//" in prefix or any(ord(c) < 32 for c in prefix):
        return f"{where}: {prefix!r} is not a valid object prefix."
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def check_media(raw: bytes, mime: str, where: str) -> str | None:
    """The message if ``raw`` is not what ``mime`` says (an image type, or an MP4)."""
    if mime == VIDEO_MIME_TYPE:
        return None if raw[4:8] == b"ftyp" else f"{where}: the data is not a valid MP4 video."
    return image_type_mismatch(raw, mime, where)


# --------------------------------------------------------------------------- groups


def _output(params: dict[str, Any], model: VertexModel) -> str | None:
    """Aspect ratio, resolution, duration (an integer), audio, and how many samples."""
    if params.get("aspectRatio", "16:9") not in ASPECT_RATIOS:
        return f"aspectRatio must be one of {list(ASPECT_RATIOS)}."
    resolution = params.get("resolution", "720p")
    if resolution not in model.resolutions:
        return f"resolution {resolution!r} is not supported by {model.name}."
    duration = params.get("durationSeconds", 8)
    if not _is_int(duration) or duration not in DURATIONS_S:
        return f"durationSeconds must be an integer, one of {list(DURATIONS_S)}."
    if resolution != "720p" and duration != 8:
        return f"resolution {resolution} requires durationSeconds 8."
    if "generateAudio" not in params:
        return "generateAudio is required for Veo 3 models: set it to true or false."
    if not isinstance(params["generateAudio"], bool):
        return "generateAudio must be a boolean."
    count = params.get("sampleCount", 1)
    if not _is_int(count) or not 1 <= count <= MAX_SAMPLES:
        return f"sampleCount must be an integer from 1 to {MAX_SAMPLES}."
    return None


def _frames(inst: dict[str, Any], model: VertexModel, refs: list[GcsRef]) -> str | None:
    """The first frame (image-to-video) and the last one, which needs the first."""
    image, last = inst.get("image"), inst.get("lastFrame")
    if image is not None and (err := _media(image, "instances[0].image", IMAGE_MIME_TYPES, refs)):
        return err
    if last is None:
        return None
    if image is None:
        return "lastFrame requires image (the first frame)."
    if not model.supports_last_frame:
        return f"lastFrame is not supported by {model.name}."
    return _media(last, "instances[0].lastFrame", IMAGE_MIME_TYPES, refs)


def _references(refs_in: Any, model: VertexModel, duration: Any, refs: list[GcsRef]) -> str | None:
    """Up to ``MAX_REFERENCE_IMAGES`` asset images, on a model that takes them, at 8 s."""
    if refs_in is None:
        return None
    if not isinstance(refs_in, list) or len(refs_in) > MAX_REFERENCE_IMAGES:
        return f"referenceImages must be a list of at most {MAX_REFERENCE_IMAGES} images."
    if refs_in and not model.supports_reference_images:
        return f"referenceImages are not supported by {model.name}."
    if refs_in and duration != 8:
        return "referenceImages require durationSeconds 8."
    for n, ref in enumerate(refs_in):
        where = f"instances[0].referenceImages[{n}]"
        if not isinstance(ref, dict) or ref.get("referenceType") != "asset":
            return f'{where} must be {{"image": {{...}}, "referenceType": "asset"}}.'
        if err := unknown_key(where, ref, ("image", "referenceType")) or _media(
            ref.get("image"), f"{where}.image", IMAGE_MIME_TYPES, refs
        ):
            return err
    return None


def _extension(video: Any, model: VertexModel, refs: list[GcsRef]) -> str | None:
    """Extending an MP4: a ``gcsUri`` (or inline bytes), on a model that extends."""
    if video is None:
        return None
    if not model.supports_extension:
        return f"video extension is not supported by {model.name}."
    return _media(video, VIDEO_WHERE, (VIDEO_MIME_TYPE,), refs)


def _options(params: dict[str, Any]) -> str | None:
    """personGeneration, enhancePrompt, negativePrompt and seed: each of its own type."""
    person = params.get("personGeneration")
    if person is not None and person not in PERSON_GENERATION:
        return f"personGeneration must be one of {list(PERSON_GENERATION)}."
    if not isinstance(params.get("enhancePrompt", True), bool):
        return "enhancePrompt must be a boolean."
    if not isinstance(params.get("negativePrompt", ""), str):
        return "negativePrompt must be a string."
    seed = params.get("seed", 0)
    if not _is_int(seed) or not 0 <= seed < 2**32:
        return "seed must be an unsigned 32-bit integer."
    return None


# --------------------------------------------------------------------------- helpers


def _media(item: Any, where: str, mimes: tuple[str, ...], refs: list[GcsRef]) -> str | None:
    """Inline ``bytesBase64Encoded`` whose bytes are the declared type, or a ``gcsUri``
    (kept in ``refs``: the service reads it before it accepts the request)."""
    if not isinstance(item, dict):
        return f"{where} must be an object with mimeType and bytesBase64Encoded or gcsUri."
    if err := unknown_key(where, item, ("mimeType", "bytesBase64Encoded", "gcsUri")):
        return err
    mime, data, uri = item.get("mimeType"), item.get("bytesBase64Encoded"), item.get("gcsUri")
    if mime not in mimes:
        return f"{where}.mimeType {mime!r} is not supported; use one of {list(mimes)}."
    if (data is None) == (uri is None):
        return f"{where} must have exactly one of bytesBase64Encoded and gcsUri."
    if uri is not None:
        if not _is_object_uri(uri):
            return f"{where}.gcsUri must be gs://BUCKET/OBJECT."
        refs.append(GcsRef(where, uri, str(mime)))
        return None
    if not isinstance(data, str) or not data:
        return f"{where}.bytesBase64Encoded is required."
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return (
            f"Invalid value at '{where}.bytes_base64_encoded' (TYPE_BYTES), Base64 decoding failed."
        )
    return check_media(raw, str(mime), where)


def _is_object_uri(uri: Any) -> bool:
    """``gs://BUCKET/OBJECT`` with a valid bucket and a non-empty object name."""
    if not isinstance(uri, str):
        return False
    try:
        bucket, name = split_gcs_uri(uri)
    except ValueError:
        return False
    return bool(_BUCKET.match(bucket)) and bool(name) and not name.endswith("/")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
