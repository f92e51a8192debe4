"""The API's cross-field rules (see the API contract), checked before paying.

Each field may be valid alone and the request still refused: a model without
``lastFrame``, ``1080p`` at 6 seconds, ``personGeneration`` the mode does not allow. A
refusal would come after a night's wait, or a bill; here it is one line at ``load``.

The provider's rules come first (``provider_problems``): each route serves its own model
ids and takes its own parameters (``models.PROVIDER_MODELS``), so a Vertex-only parameter
on a Gemini-format provider, or the reverse, is refused naming the provider, and a Vertex
job with a retired preview id is told the GA id that replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchveo import models
from batchveo.manifest.show import show


@dataclass(frozen=True, slots=True)
class Uses:
    """Which inputs a job gives (as written: a path that failed to hash still counts)."""

    image: bool = False
    last_frame: bool = False
    reference_images: bool = False
    video: bool = False

    @property
    def any_image(self) -> bool:
        return self.image or self.last_frame or self.reference_images

    @property
    def any_input(self) -> bool:
        return self.image or self.last_frame or self.reference_images or self.video


TEXT_ONLY = Uses()
"""A text-to-video job's (one object, shared by every such row)."""


def combination_problems(model: str, params: Mapping[str, Any], uses: Uses) -> list[str]:
    """Everything the API would refuse about how this job's fields combine."""
    res = params["resolution"]
    info = models.MODELS.get(model)
    plain = not uses.any_input and "personGeneration" not in params
    if plain and res == "720p" and (info is None or res in info.resolutions):
        return []  # the common text-to-video job: nothing can clash
    bad = []
    if uses.image and uses.video:
        bad.append("image and video cannot be combined: a video extension takes no image")
    if uses.last_frame and not uses.image:
        bad.append("lastFrame needs image (the first frame)")
    if info is not None:
        bad += _model_problems(info, res, uses)
    bad += _duration_problems(params, uses)
    if uses.video and res != "720p":
        bad.append(f"a video extension needs resolution 720p, not {res}")
    if (problem := _person_generation_problem(params.get("personGeneration"), uses)) is not None:
        bad.append(problem)
    return bad


def _model_problems(info: models.ModelInfo, res: str, uses: Uses) -> list[str]:
    """What this model cannot do of what the job asks."""
    bad = [
        f"model {info.name} does not support {what}"
        for used, ok, what in (
            (uses.last_frame, info.supports_last_frame, "lastFrame"),
            (uses.reference_images, info.supports_reference_images, "referenceImages"),
            (uses.video, info.supports_extension, "video extension"),
        )
        if used and not ok
    ]
    if res not in info.resolutions:
        bad.append(f"model {info.name} does not support {res} (only {', '.join(info.resolutions)})")
    return bad


def _duration_problems(params: Mapping[str, Any], uses: Uses) -> list[str]:
    """High resolutions, reference images and extensions are 8-second videos only."""
    res, dur = params["resolution"], params["durationSeconds"]
    needs_8 = [f"resolution {res}"] if res in ("1080p", "4k") else []
    needs_8 += ["referenceImages"] * uses.reference_images + ["a video extension"] * uses.video
    if needs_8 and dur != 8:
        return [f"durationSeconds must be 8 for {' and '.join(needs_8)}, not {dur}"]
    return []


def _person_generation_problem(person_generation: str | None, uses: Uses) -> str | None:
    """Each mode allows one ``personGeneration``: extensions and text ``allow_all``, images
    ``allow_adult``."""
    if person_generation is None:
        return None
    if uses.video:
        mode, allowed = "a video extension", "allow_all"
    elif uses.any_image:
        mode, allowed = "image-to-video", "allow_adult"
    else:
        mode, allowed = "text-to-video", "allow_all"
    if person_generation != allowed:
        return f"personGeneration {person_generation} is not allowed for {mode}: use {allowed}"
    return None


def model_problem(provider: models.ProviderModels, model: str) -> str | None:
    """Why ``provider`` would not serve ``model`` (a known id), if it would not."""
    if (replacement := provider.retired.get(model)) is not None:
        return (
            f"model {model} was retired on {provider.label} on {provider.retired_on}: "
            f"use {replacement} (provider {provider.name})"
        )
    if model not in provider.model_ids:
        return (
            f"model {model} is not served by provider {provider.name} "
            f"(it serves {', '.join(provider.model_ids)})"
        )
    return None


def provider_problems(
    provider: models.ProviderModels,
    params: Mapping[str, Any],
    cloud_inputs: Sequence[str],
    video_uri: str | None,
) -> list[str]:
    """What ``provider`` does not take of the job's parameters and inputs.

    ``cloud_inputs`` names the job's Cloud Storage images as the messages show them
    (``image 'gs://b/a.png'``).
    """
    bad = []
    named = f"provider {provider.name}"
    if "generateAudio" in params and not provider.audio_choice:
        bad.append(
            f"generateAudio is a Vertex AI parameter: {named} does not take it "
            "(its videos always have audio)"
        )
    samples, most = params.get("sampleCount", 1), provider.max_sample_count
    if samples > most and most == 1:
        bad.append(
            f"sampleCount must be 1 on {named}, not {samples}: the Gemini API makes one video "
            "per request (use repeat: N for several variants, or provider vertex for up to 4)"
        )
    elif samples > most:
        bad.append(f"sampleCount must be at most {most} on {named}, not {samples}")
    if not provider.cloud_storage_inputs:
        bad += [
            f"{what} is in Cloud Storage: only provider vertex reads gs:// images ({named} "
            "takes local files)"
            for what in cloud_inputs
        ]
    if video_uri is not None:
        cloud = video_uri.startswith("gs://")
        if cloud and not provider.cloud_storage_inputs:
            bad.append(
                f"video {show(video_uri)} is in Cloud Storage: {named} extends only the "
                "http(s) URI of a video it made (gs:// is for provider vertex)"
            )
        elif not cloud and provider.cloud_storage_inputs:
            bad.append(
                f"video must be the gs:// URI of a previous Veo video on {named}, "
                f"not {show(video_uri)}"
            )
    return bad
