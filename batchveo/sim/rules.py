"""The rules a submit's body must follow (``docs/veo-api.md``, "1. Submit"), as the service
checks them: ``validate`` answers the message of the first rule broken, or None.

The simulator is, if anything, stricter than the service: a client that passes here must
pass there. The rules come in groups, checked in this order: the body's shape, the output
(aspect, resolution, duration), the frames (image, lastFrame), reference images, video
extension, personGeneration, and the remaining options. A rule that depends on the model
reads it from ``models.MODELS`` (``ModelInfo``), the same table the manifest checks with.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Container
from typing import Any

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
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def validate(body: Any, info: ModelInfo, files: Container[str]) -> str | None:
    """The message of the first rule of docs/veo-api.md this body breaks, or None.

    ``files`` holds the ids of videos this service made and still keeps (extension).
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
        or _extension(inst.get("video"), info, files, resolution, duration)
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
    video: Any, info: ModelInfo, files: Container[str], resolution: Any, duration: int | None
) -> str | None:
    """Extending a video this service made and still keeps, at 720p and 8 s."""
    if video is None:
        return None
    uri = video.get("uri") if isinstance(video, dict) else None
    match = re.search(r"/files/([^/:?]+)", uri) if isinstance(uri, str) else None
    if match is None or match.group(1) not in files:
        return "video.uri must be a video generated by Veo that has not expired."
    if not info.supports_extension:
        return f"video extension is not supported by {info.name}."
    if resolution != "720p" or duration != 8:
        return "video extension supports only 720p and durationSeconds 8."
    return None


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
