"""The Veo models batchveo knows, their limits and their (estimated) prices.

This table is data on purpose: Google retires preview ids and adds new ones,
so supporting a new model is one entry here, and nothing else changes. Prices
are public estimates per second of generated video, billed only on success;
users override them with their own figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

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


Prices = Mapping[str, Mapping[str, float]]
"""Model -> resolution -> USD per second: the user's own figures, over the table's."""


def price_per_s(model: str, resolution: str, prices: Prices | None = None) -> float:
    own = (prices or {}).get(model)
    if own:
        return float(own.get(resolution, own.get("*", own.get("720p", 0.0))))
    info = MODELS.get(model)
    return info.price_per_s(resolution) if info else 0.0


def estimate_cost_usd(
    model: str, resolution: str, duration_s: int, samples: int = 1, prices: Prices | None = None
) -> float:
    """What a successful job is expected to cost; unknown models estimate as zero."""
    return round(price_per_s(model, resolution, prices) * duration_s * samples, 6)


def estimate_params_cost_usd(
    model: str, params: Mapping[str, object], prices: Prices | None = None
) -> float:
    """``estimate_cost_usd`` of a job's API parameters (absent ones at the API's defaults)."""
    resolution = str(params.get("resolution", "720p"))
    duration_s = int(params.get("durationSeconds", 8))  # type: ignore[call-overload]
    samples = int(params.get("sampleCount", 1))  # type: ignore[call-overload]
    if prices is None:  # the table's prices: a load asks 100k times for a handful of answers
        return _table_cost_usd(model, resolution, duration_s, samples)
    return estimate_cost_usd(model, resolution, duration_s, samples, prices)


@lru_cache(maxsize=4096)
def _table_cost_usd(model: str, resolution: str, duration_s: int, samples: int) -> float:
    return estimate_cost_usd(model, resolution, duration_s, samples)


def parse_prices(data: object, source: str) -> dict[str, dict[str, float]]:
    """``{model: usd_per_s}`` or ``{model: {resolution: usd_per_s}}``; ValueError if not."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of model to price per second")
    out: dict[str, dict[str, float]] = {}
    for model, value in data.items():
        table = value if isinstance(value, Mapping) else {"*": value}
        prices: dict[str, float] = {}
        for res, usd in table.items():
            if isinstance(usd, bool) or not isinstance(usd, int | float) or usd < 0:
                raise ValueError(f"{source}: price of {model} {res} must be USD per second")
            prices[str(res)] = float(usd)
        out[str(model)] = prices
    return out
