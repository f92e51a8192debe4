"""The Veo models batchveo knows, which provider serves which, their limits and their
(estimated) prices.

These tables are data on purpose: Google retires preview ids and adds new ones, and each
route to Veo serves its own ids (the Gemini-format providers the preview ids, Vertex AI
the GA ids since it retired its preview ones on 2026-04-02), so supporting a new model is
one entry here, and nothing else changes. Prices are public estimates per second of
generated video, billed only on success and per video returned; Vertex prices a video
without audio (``generateAudio: false``) lower. Users override them with their own figures
(``--prices``).
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
    """Estimated price per second of video, by resolution (with audio, where that is a choice)."""
    resolutions: tuple[str, ...] = RESOLUTIONS
    supports_reference_images: bool = True
    supports_last_frame: bool = True
    supports_extension: bool = True
    aliases: tuple[str, ...] = field(default_factory=tuple)
    silent_price_usd_per_s: Mapping[str, float] | None = None
    """Estimated price per second of a video without audio (Vertex's ``generateAudio:
    false``), by resolution; None where no lower figure is known (priced as with audio)."""

    def price_per_s(self, resolution: str, *, audio: bool = True) -> float:
        table = self.price_usd_per_s
        if not audio and self.silent_price_usd_per_s is not None:
            table = self.silent_price_usd_per_s
        return table.get(resolution, table["720p"])


_STANDARD = {"720p": 0.40, "1080p": 0.40, "4k": 0.60}
_FAST = {"720p": 0.15, "1080p": 0.15, "4k": 0.35}
_LITE = {"720p": 0.05, "1080p": 0.08}
_STANDARD_SILENT = {"720p": 0.20, "1080p": 0.20, "4k": 0.40}
_FAST_SILENT = {"720p": 0.10, "1080p": 0.10, "4k": 0.30}
"""Vertex AI's video-only prices (estimates from Google's public price list, unverified;
resellers quote audio as doubling the price). Lite has no published video-only figure:
it is priced as with audio, so an estimate errs high, never under a budget."""

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
        ModelInfo(
            "veo-3.1-generate-001",
            "Veo 3.1 standard",
            _STANDARD,
            silent_price_usd_per_s=_STANDARD_SILENT,
        ),
        ModelInfo(
            "veo-3.1-fast-generate-001",
            "Veo 3.1 fast",
            _FAST,
            silent_price_usd_per_s=_FAST_SILENT,
        ),
        ModelInfo(
            "veo-3.1-lite-generate-001",
            "Veo 3.1 lite (preview)",
            _LITE,
            resolutions=("720p", "1080p"),
            supports_reference_images=False,
            supports_extension=False,
        ),
    )
}


def get_model(name: str) -> ModelInfo | None:
    return MODELS.get(name)


# --- providers: which ids each route serves, and what it takes --------------------------

VERTEX_RETIRED_ON = "2026-04-02"
"""The day Vertex AI retired its Veo 3.1 preview ids."""


@dataclass(frozen=True)
class ProviderModels:
    """What one provider serves and takes: its model ids and its limits, as data.

    The manifest checks a job against its route's entry, so a request the provider would
    refuse (an id it does not serve, a parameter it does not take) is one line at ``load``.
    """

    name: str
    label: str
    model_ids: tuple[str, ...]
    default_model: str
    """The model of a job that names none."""
    max_sample_count: int = 1
    """Videos one request may ask for (``sampleCount``)."""
    audio_choice: bool = False
    """Whether it takes ``generateAudio`` (Vertex; the Gemini API refuses the field)."""
    cloud_storage_inputs: bool = False
    """Whether images (and a video to extend) may be ``gs://`` URIs, read by the service."""
    retired: Mapping[str, str] = field(default_factory=dict)
    """Ids it no longer serves -> the id that replaces each."""
    retired_on: str | None = None


_GEMINI_FORMAT_IDS = (
    "veo-3.1-generate-preview",
    "veo-3.1-fast-generate-preview",
    "veo-3.1-lite-generate-preview",
)

PROVIDER_MODELS: dict[str, ProviderModels] = {
    p.name: p
    for p in (
        ProviderModels("gptproto", "GPTProto", _GEMINI_FORMAT_IDS, DEFAULT_MODEL),
        ProviderModels("gemini", "the Gemini API", _GEMINI_FORMAT_IDS, DEFAULT_MODEL),
        ProviderModels("custom", "a custom server", _GEMINI_FORMAT_IDS, DEFAULT_MODEL),
        ProviderModels(
            "vertex",
            "Vertex AI",
            ("veo-3.1-generate-001", "veo-3.1-fast-generate-001", "veo-3.1-lite-generate-001"),
            "veo-3.1-generate-001",
            max_sample_count=4,
            audio_choice=True,
            cloud_storage_inputs=True,
            retired={
                "veo-3.1-generate-preview": "veo-3.1-generate-001",
                "veo-3.1-fast-generate-preview": "veo-3.1-fast-generate-001",
                "veo-3.1-lite-generate-preview": "veo-3.1-lite-generate-001",
            },
            retired_on=VERTEX_RETIRED_ON,
        ),
    )
}
"""Every provider's ids and limits (``routes.PROVIDER_WIRE`` says which wire each speaks)."""


Prices = Mapping[str, Mapping[str, float]]
"""Model -> resolution -> USD per second: the user's own figures, over the table's. A key
``<resolution>-no-audio`` (or ``*-no-audio``) prices a video without audio; without one,
such a video costs what the user's figure with audio says."""
SILENT_SUFFIX = "-no-audio"


def price_per_s(
    model: str, resolution: str, prices: Prices | None = None, *, audio: bool = True
) -> float:
    own = (prices or {}).get(model)
    if own:
        if not audio:
            for key in (resolution + SILENT_SUFFIX, "*" + SILENT_SUFFIX):
                if key in own:
                    return float(own[key])
        return float(own.get(resolution, own.get("*", own.get("720p", 0.0))))
    info = MODELS.get(model)
    return info.price_per_s(resolution, audio=audio) if info else 0.0


def estimate_cost_usd(
    model: str,
    resolution: str,
    duration_s: int,
    samples: int = 1,
    prices: Prices | None = None,
    *,
    audio: bool = True,
) -> float:
    """What a successful job is expected to cost, ``samples`` videos returned (the service
    bills each video it returns); unknown models estimate as zero."""
    return round(price_per_s(model, resolution, prices, audio=audio) * duration_s * samples, 6)


def price_inputs(params: Mapping[str, object]) -> tuple[str, int, int, bool]:
    """What a request's estimate depends on besides its model: ``(resolution, duration_s,
    samples, audio)``, absent parameters at the API's defaults (audio unless
    ``generateAudio`` is false). The store reprices by these (``store/pricing.py``)."""
    return (
        str(params.get("resolution", "720p")),
        int(params.get("durationSeconds", 8)),  # type: ignore[call-overload]
        int(params.get("sampleCount", 1)),  # type: ignore[call-overload]
        params.get("generateAudio", True) is not False,
    )


def estimate_params_cost_usd(
    model: str, params: Mapping[str, object], prices: Prices | None = None
) -> float:
    """``estimate_cost_usd`` of a job's API parameters (absent ones at the API's defaults):
    every video ``sampleCount`` asks for, with audio unless ``generateAudio`` is false."""
    resolution, duration_s, samples, audio = price_inputs(params)
    if prices is None:  # the table's prices: a load asks 100k times for a handful of answers
        return _table_cost_usd(model, resolution, duration_s, samples, audio)
    return estimate_cost_usd(model, resolution, duration_s, samples, prices, audio=audio)


@lru_cache(maxsize=4096)
def _table_cost_usd(
    model: str, resolution: str, duration_s: int, samples: int, audio: bool
) -> float:
    return estimate_cost_usd(model, resolution, duration_s, samples, audio=audio)


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
