"""The rules a submit's body must follow (``docs/veo-api.md``, "1. Submit"), as the service
checks them: ``validate`` answers the message of the first rule broken, or None.

The simulator is, if anything, stricter than the service: a client that passes here must
pass there. The rules come in groups, checked in this order: the body's shape, the output
(aspect, resolution, duration), the frames (image, lastFrame), reference images, video
extension, personGeneration, and the remaining options. A rule that depends on the model
reads it from ``models.MODELS`` (``ModelInfo``), the same table the manifest checks with.

Extension (``docs/veo-api.md``, "Extension"): the input must be a video this service made
and still keeps (``KeptVideos``: the hosts its video URIs name, and its live files), at
720p and 8 s; the chain may hold at most 20 extensions, the input at most 141 s, the answer
(input plus 7 s) at most 148 s. A URI that is not one of this service's files (another
host, another path) and one of a file it no longer keeps (expired, or never made) both
answer 400 INVALID_ARGUMENT, with different messages: the reference is a bad argument of the
submit, and the submit is what Google validates; a 404 on a submit means an unknown model to
the client (``docs/veo-api.md``, "Errors": it stops the whole run), which a dead input is
not. A video's retention is never reset by extending it (reported by Google, not
documented: a client must not rely on it; ``ops.Op.expired``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from batchveo.models import (
    ASPECT_RATIOS,
    DURATIONS_S,
    IMAGE_MIME_TYPES,
    MAX_REFERENCE_IMAGES,
    PERSON_GENERATION,
    ModelInfo,
)

_INSTANCE_KEYS = ("prompt", "image", "lastFrame", "referenceImages", "video")
_PARAMS = frozenset(
    {
        "aspectRatio",
        "resolution",
        "durationSeconds",
        "personGeneration",
        "enhancePrompt",
        "negativePrompt",
        "sampleCount",
        "seed",
    }
)
EXTENSION_S = 7.0
"""How much longer an extension's answer is than its input."""
MAX_EXTENSIONS = 20
"""Extensions in one chain after its root."""
MAX_INPUT_S = 141.0
MAX_OUTPUT_S = 148.0
_FILE_PATH = re.compile(r"^(?:/upload)?/v1beta/files/(?P<id>[^/:]+):download$")
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


@dataclass(frozen=True)
class Source:
    """A video this service made and still keeps, named as an extension's input."""

    file_id: str
    length_s: float
    hop: int
    """Extensions before it in its chain (0: a root)."""
    op_name: str
    """The operation that made it."""
    uri: str = ""
    """The URI the request named it by."""


def _none(file_id: str) -> Source | None:
    return None


@dataclass(frozen=True)
class KeptVideos:
    """What an extension's input is checked against: the ``host:port`` forms this
    service's video URIs name, and its videos that still exist (by file id)."""

    hosts: Container[str] = frozenset()
    find: Callable[[str], Source | None] = field(default=_none)


def validate(body: Any, info: ModelInfo, kept: KeptVideos | None = None) -> str | None:
    """The message of the first rule of docs/veo-api.md this body breaks, or None.

    ``kept``: the videos an extension may name (none by default).
    """
    if err := request_shape(body, _INSTANCE_KEYS, _PARAMS):
        return err
    inst: dict[str, Any] = body["instances"][0]
    params: dict[str, Any] = body.get("parameters", {})
    if err := _output(params, info):
        return err
    resolution = params.get("resolution", "720p")
    duration = _duration(params.get("durationSeconds", 8))
    return (
        _frames(inst, info)
        or _references(inst.get("referenceImages"), info, duration)
        or _extension(inst.get("video"), info, kept or KeptVideos(), resolution, duration)
        or _person_generation(params, inst)
        or _options(params)
    )


def request_shape(
    body: Any, instance_keys: Container[str], param_keys: Container[str]
) -> str | None:
    """One object of known keys, holding one instance with a prompt, and parameters (the
    same shape on both formats; each names the keys it takes)."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received. Expected an object."
    if has_key(body, "inlineData"):
        return "inlineData isn't supported by this model."
    if err := unknown_key("request", body, ("instances", "parameters")):
        return err
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return "instances must hold exactly one instance."
    inst = instances[0]
    if err := unknown_key("instances[0]", inst, instance_keys):
        return err
    prompt = inst.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "instances[0].prompt is required and must be a non-empty string."
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        return "parameters must be an object."
    return unknown_key("parameters", params, param_keys)


def _output(params: dict[str, Any], info: ModelInfo) -> str | None:
    """Aspect ratio, resolution and duration, and what the resolution asks of the duration."""
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
    return None


def _frames(inst: dict[str, Any], info: ModelInfo) -> str | None:
    """The first frame (image-to-video) and the last one, which needs the first."""
    image, last = inst.get("image"), inst.get("lastFrame")
    if image is not None and (err := _check_image(image, "instances[0].image")):
        return err
    if last is None:
        return None
    if image is None:
        return "lastFrame requires image (the first frame)."
    if not info.supports_last_frame:
        return f"lastFrame is not supported by {info.name}."
    return _check_image(last, "instances[0].lastFrame")


def _references(refs: Any, info: ModelInfo, duration: int | None) -> str | None:
    """Up to ``MAX_REFERENCE_IMAGES`` asset images, on a model that takes them, at 8 s."""
    if refs is None:
        return None
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
        if err := unknown_key(where, ref, ("image", "referenceType")) or _check_image(
            ref.get("image"), f"{where}.image"
        ):
            return err
    return None


def _extension(
    video: Any, info: ModelInfo, kept: KeptVideos, resolution: Any, duration: int | None
) -> str | None:
    """Extending a video this service made and still keeps, at 720p and 8 s, within the
    chain's limits (module docstring)."""
    if video is None:
        return None
    if not info.supports_extension:
        return f"video extension is not supported by {info.name}."
    if resolution != "720p" or duration != 8:
        return "video extension supports only 720p and durationSeconds 8."
    source = input_video(video, kept)
    if isinstance(source, str):
        return source
    return extension_limits(source)


def input_video(video: Any, kept: KeptVideos) -> Source | str:
    """The kept video ``instances[0].video`` names, or the message saying why it is none."""
    if not isinstance(video, dict) or unknown_key("instances[0].video", video, ("uri",)):
        return 'instances[0].video must be {"uri": URI}: a video generated by Veo.'
    uri = video.get("uri")
    file_id = own_file_id(uri, kept.hosts) if isinstance(uri, str) else None
    if not isinstance(uri, str) or file_id is None:
        shown = repr(uri)[:200]
        return f"video.uri {shown} is not a video generated by Veo on this service."
    source = kept.find(file_id)
    if source is None:
        return f"video.uri names file {file_id}, which does not exist or has expired."
    return replace(source, uri=uri)


def own_file_id(uri: str, hosts: Container[str]) -> str | None:
    """The file id of a video URI this service hands out (``http(s)://HOST/[upload/]
    v1beta/files/ID:download``, on one of ``hosts``), or None for any other URI."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    match = _FILE_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or parts.netloc not in hosts or match is None:
        return None
    return match["id"]


def extension_limits(source: Source) -> str | None:
    """The chain's limits: at most ``MAX_EXTENSIONS`` after the root, an input of at most
    ``MAX_INPUT_S``, an answer of at most ``MAX_OUTPUT_S``."""
    if source.hop >= MAX_EXTENSIONS:
        return (
            f"video extension: the input is already extension {source.hop} of its chain; "
            f"a chain may have at most {MAX_EXTENSIONS} extensions."
        )
    if source.length_s > MAX_INPUT_S or source.length_s + EXTENSION_S > MAX_OUTPUT_S:
        return (
            f"video extension: the input video lasts {source.length_s:g} s; Veo extends "
            f"videos of at most {MAX_INPUT_S:g} s, to at most {MAX_OUTPUT_S:g} s in all."
        )
    return None


def requested_length_s(body: dict[str, Any]) -> int:
    """How long a valid (``validate``) non-extension body's video lasts: its
    ``durationSeconds`` (8 by default)."""
    return _duration(body.get("parameters", {}).get("durationSeconds", 8)) or 8


def _person_generation(params: dict[str, Any], inst: dict[str, Any]) -> str | None:
    """Google: allow_all for text and extension, allow_adult when an image is given."""
    person = params.get("personGeneration")
    if person is None:
        return None
    if person not in PERSON_GENERATION:
        return f"personGeneration must be one of {list(PERSON_GENERATION)}."
    with_images = inst.get("image") or inst.get("lastFrame") or inst.get("referenceImages")
    wanted = "allow_adult" if with_images else "allow_all"
    if person != wanted:
        return f"personGeneration {person} is not allowed for this mode; use {wanted}."
    return None


def _options(params: dict[str, Any]) -> str | None:
    """enhancePrompt, negativePrompt, sampleCount and seed: each of its own type."""
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


# --------------------------------------------------------------------------- helpers


def has_key(obj: Any, key: str) -> bool:
    """Whether ``key`` appears anywhere in ``obj`` (``inlineData``, at any depth)."""
    if isinstance(obj, dict):
        return key in obj or any(has_key(v, key) for v in obj.values())
    if isinstance(obj, list):
        return any(has_key(v, key) for v in obj)
    return False


def unknown_key(where: str, obj: dict[str, Any], allowed: Container[str]) -> str | None:
    """The message naming the first key of ``obj`` not in ``allowed``, as Google words it."""
    for key in obj:
        if key not in allowed:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}'."
    return None


def _check_image(img: Any, where: str) -> str | None:
    """The image must be inline base64 whose bytes really are the declared type."""
    if not isinstance(img, dict):
        return f"{where} must be an object with mimeType and bytesBase64Encoded."
    if err := unknown_key(where, img, ("mimeType", "bytesBase64Encoded")):
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
    return image_type_mismatch(raw, mime, where)


def image_type_mismatch(raw: bytes, mime: str, where: str) -> str | None:
    """The message if ``raw`` is not an image of type ``mime`` (by its magic bytes)."""
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
