"""The Veo models batchveo knows, their limits and their (estimated) prices.

This table is data on purpose: Google retires preview ids and adds new ones,
so supporting a new model is one entry here, and nothing else changes. Prices
are public estimates per second of generated video, billed only on success;
users override them with their own figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16")
RESOLUTIONS: tuple[str, ...] = ("720p", "1080p", "4k")
DURATIONS_S: tuple[int, ...] = (4, 6, 8)
PERSON_GENERATION: tuple[str, ...] = ("allow_all", "allow_adult")
MAX_REFERENCE_IMAGES = 3
IMAGE_MIME_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp")
RETENTION_S = 2 * 24 * 3600
"""The service deletes generated videos two days after they are made."""

DEFAULT_MODEL = "veo-3.1-generate-preview"
DEFAULT_PARAMS: Mapping[str, object] = {
    "aspectRatio": "16:9",
    "resolution": "720p",
    "durationSeconds": 8,
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    label: str
    price_usd_per_s: Mapping[str, float]
    """Estimated price per second of video, by resolution."""
    resolutions: tuple[str, ...] = RESOLUTIONS
    supports_reference_images: bool = True
    supports_last_frame: bool = True
    supports_extension: bool = True
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def price_per_s(self, resolution: str) -> float:
        return self.price_usd_per_s.get(resolution, self.price_usd_per_s["720p"])


_STANDARD = {"720p": 0.40, "1080p": 0.40, "4k": 0.60}
_FAST = {"720p": 0.15, "1080p": 0.15, "4k": 0.35}
_LITE = {"720p": 0.05, "1080p": 0.08}

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("veo-3.1-generate-preview", "Veo 3.1 standard (preview)", _STANDARD),
        ModelInfo("veo-3.1-fast-generate-preview", "Veo 3.1 fast (preview)", _FAST),
        ModelInfo(
            "veo-3.1-lite-generate-preview",
            "Veo 3.1 lite (preview)",
            _LITE,
            resolutions=("720p", "1080p"),
            supports_reference_images=False,
            supports_extension=False,
        ),
        ModelInfo("veo-3.1-generate-001", "Veo 3.1 standard", _STANDARD),
        ModelInfo("veo-3.1-fast-generate-001", "Veo 3.1 fast", _FAST),
    )
}


def get_model(name: str) -> ModelInfo | None:
    return MODELS.get(name)


def estimate_cost_usd(model: str, resolution: str, duration_s: int, samples: int = 1) -> float:
    """What a successful job is expected to cost; unknown models estimate as zero."""
    info = MODELS.get(model)
    if info is None:
        return 0.0
    return round(info.price_per_s(resolution) * duration_s * samples, 6)
