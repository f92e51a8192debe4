"""The Veo models batchveo knows, which provider serves which, their limits and their
(estimated) prices.

These tables are data on purpose: Google retires preview ids and adds new ones, and each
route to Veo serves its own ids (the Gemini-format providers the preview ids, Vertex AI
the GA ids since it retired its preview ones on 2026-04-02), so supporting a new model is
one entry here, and nothing else changes. What a scene chain may be on each route (its
extension limits, ``ExtensionLimits``) is data here too. Prices are public estimates per second of
generated video, billed only on success and per video returned; Vertex prices a video
without audio (``generateAudio: false``) lower. Users override them with their own figures
(``--prices``).

The review models (the Gemini models that watch a finished take, ``REVIEW_MODELS``) are
priced per million tokens in and out; a review's tokens follow the video's length, the
frames sampled per second and the media resolution (``review_tokens_in``).
"""

from __future__ import annotations

import math
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
class ExtensionLimits:
    """What one route takes of a scene chain (``chains``): each hop is an extension
    request whose answer is the parent's video ``added_s`` longer (the API contract's
    "Extension" table). The limits are on the video sent (``input``) and the one made
    (``output``); extensions are counted after the root."""

    added_s: int = 7
    """What one extension adds to the video."""
    request_duration_s: int = 8
    """The ``durationSeconds`` an extension request carries (the Gemini format takes 8)."""
    min_input_s: int = 1
    max_input_s: int = 141
    max_output_s: int = 148
    max_extensions: int | None = 20
    resolutions: tuple[str, ...] = ("720p",)
    """The resolutions an extension may have (the root's: a hop inherits it)."""
    needs_storage: bool = False
    """The parent's video must be in the user's bucket (Vertex's ``gcsUri``)."""


GEMINI_EXTENSION = ExtensionLimits()
"""Gemini format: 720p only, input at most 141 s, at most 20 extensions, 148 s in all."""
VERTEX_EXTENSION = ExtensionLimits(
    min_input_s=1,
    max_input_s=30,
    max_output_s=37,
    max_extensions=None,
    resolutions=RESOLUTIONS,
    needs_storage=True,
)
"""Vertex AI: input 1-30 s, output at most 37 s; the input a ``gs://`` object."""


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
    review_model_ids: tuple[str, ...] = ("gemini-3.5-flash",)
    """The Gemini models it serves for reviews (``generateContent``)."""
    files_api: bool = False
    """Whether it has the Gemini API's Files API (``/upload/v1beta/files``): a take over
    the inline budget is then uploaded and reviewed by its ``fileUri``; without it, such a
    take is not reviewed (``TooLargeToReview``). GPTProto's pages document none; Vertex
    names a take in a bucket by its ``gs://`` URI instead."""
    extension: ExtensionLimits = GEMINI_EXTENSION
    """What a scene chain may be on this provider."""


_GEMINI_FORMAT_IDS = (
    "veo-3.1-generate-preview",
    "veo-3.1-fast-generate-preview",
    "veo-3.1-lite-generate-preview",
)

PROVIDER_MODELS: dict[str, ProviderModels] = {
    p.name: p
    for p in (
        ProviderModels(
            "gptproto",
            "GPTProto",
            _GEMINI_FORMAT_IDS,
            DEFAULT_MODEL,
            review_model_ids=("gemini-3.5-flash", "gemini-3-flash-preview"),
        ),
        ProviderModels(
            "gemini", "the Gemini API", _GEMINI_FORMAT_IDS, DEFAULT_MODEL, files_api=True
        ),
        ProviderModels(
            "custom",
            "a custom server",
            _GEMINI_FORMAT_IDS,
            DEFAULT_MODEL,
            review_model_ids=("gemini-3.5-flash", "gemini-3-flash-preview"),
            files_api=True,
        ),
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
            extension=VERTEX_EXTENSION,
        ),
    )
}
"""Every provider's ids and limits (``routes.PROVIDER_WIRE`` says which wire each speaks)."""


def has_files_api(provider: str) -> bool:
    """Whether ``provider`` has the Files API (``ProviderModels.files_api``; an unknown
    name has not)."""
    entry = PROVIDER_MODELS.get(provider)
    return entry is not None and entry.files_api


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


def billed_params(params: Mapping[str, object], output_s: int | None) -> Mapping[str, object]:
    """What a job is billed as: its parameters, with a scene chain's hop (``output_s``: its
    video's whole length, the parent's and the extension's) priced as a generation that
    long. A hop's request says ``durationSeconds: 8``; its answer is the longer video."""
    return params if output_s is None else {**params, "durationSeconds": output_s}


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
                unit = "per million tokens" if model in REVIEW_MODELS else "per second"
                raise ValueError(f"{source}: price of {model} {res} must be USD {unit}")
            prices[str(res)] = float(usd)
        out[str(model)] = prices
    return out


# --- review models: Gemini watching a take, priced per token --------------------------

DEFAULT_REVIEW_MODEL = "gemini-3.5-flash"


@dataclass(frozen=True)
class ReviewModel:
    """A Gemini model that reviews videos, and its price per million tokens.

    Output tokens include the model's thinking (Google bills ``thoughtsTokenCount`` at the
    output price), which is why a review's answer costs more than its few words."""

    name: str
    label: str
    usd_per_m_input: float
    usd_per_m_output: float


REVIEW_MODELS: dict[str, ReviewModel] = {
    m.name: m
    for m in (
        # Public list prices (estimates, unverified): 3.5 Flash went GA in 2026-05 at three
        # times the preview's price; the preview id is still sold by the reseller.
        ReviewModel("gemini-3.5-flash", "Gemini 3.5 Flash", 1.50, 9.00),
        ReviewModel("gemini-3-flash-preview", "Gemini 3 Flash (preview)", 0.50, 3.00),
    )
}
"""Every review model; which provider serves which is ``ProviderModels.review_model_ids``.
A ``--prices`` file overrides them as ``{model: {input: USD, output: USD}}`` per million."""

AUDIO_TOKENS_PER_S = 32
"""The audio track, tokenized at a fixed rate whatever the media resolution (Google)."""
FRAME_TOKENS: Mapping[str, int] = {"low": 68, "medium": 268, "high": 568}
"""Tokens per sampled frame, by media resolution (``verdicts.MediaResolution`` values).

Low and medium are the seed page's figures at the default 1 frame per second (about 100
and about 300 tokens per second of video) less the audio's 32. High has no published
figure for video: it is taken as twice medium's per second (568 + 32 = 600), so that a
plan's estimate errs high rather than under a budget; the real count is the answer's
``usageMetadata``, which is what a review is charged."""
QUESTION_CHARS_PER_TOKEN = 4
"""A rough tokenizer for the question's text (English averages about 4 characters)."""
REVIEW_QUESTION_TOKENS = 200
"""The question's tokens when its text is not known yet (``plan``): the rubric, the
instructions and a prompt of a few hundred characters."""
REVIEW_OUTPUT_TOKENS = 1_000
"""A review's answer as estimated before it is given: the JSON verdict (a hundred or two
tokens) and the model's thinking, billed as output."""


def review_frames(seconds: float, fps: float) -> int:
    """The frames the model samples from ``seconds`` of video at ``fps`` (at least one)."""
    return max(1, math.ceil(round(seconds * fps, 6)))


def review_tokens_in(
    seconds: float, fps: float, media_resolution: str, question_chars: int | None = None
) -> int:
    """A review's input tokens: the sampled frames at ``media_resolution``, the audio, and
    the question (``question_chars`` long, or ``REVIEW_QUESTION_TOKENS`` if unknown).

    The simulator counts ``promptTokenCount`` with this same rule."""
    frames = review_frames(seconds, fps) * FRAME_TOKENS.get(str(media_resolution), 268)
    audio = math.ceil(round(seconds, 6)) * AUDIO_TOKENS_PER_S
    if question_chars is None:
        question = REVIEW_QUESTION_TOKENS
    else:
        question = math.ceil(question_chars / QUESTION_CHARS_PER_TOKEN)
    return frames + audio + question


def review_price_per_m(model: str, prices: Prices | None = None) -> tuple[float, float]:
    """USD per million (input, output) tokens: the user's ``input``/``output`` figures,
    else the table's; an unknown model prices as zero."""
    own = (prices or {}).get(model) or {}
    info = REVIEW_MODELS.get(model)
    table = (info.usd_per_m_input, info.usd_per_m_output) if info else (0.0, 0.0)
    return float(own.get("input", table[0])), float(own.get("output", table[1]))


def review_cost_usd(
    model: str, tokens_in: int, tokens_out: int, prices: Prices | None = None
) -> float:
    """What a review's tokens cost (the answer's ``usageMetadata``, or an estimate)."""
    usd_in, usd_out = review_price_per_m(model, prices)
    return round((tokens_in * usd_in + tokens_out * usd_out) / 1_000_000, 6)


def estimate_review_cost_usd(
    model: str,
    seconds: float,
    fps: float,
    media_resolution: str,
    prices: Prices | None = None,
) -> float:
    """What one review of a ``seconds`` long take is expected to cost (``plan``)."""
    tokens_in = review_tokens_in(seconds, fps, media_resolution)
    return review_cost_usd(model, tokens_in, REVIEW_OUTPUT_TOKENS, prices)
