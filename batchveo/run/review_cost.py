"""What a review costs: tokens from the video's length, dollars from the tokens.

A review is billed per token: the video's frames (about 300 tokens per second at the
default media resolution, about 100 at low, per the reseller's page in our seeds; the
frame rate does not change it), the question, and the answer. ``plan`` estimates with
``estimate_review_usd``; a finished review is priced from its ``usageMetadata`` counts
(``review_cost_usd``).

LEAD: ``PRICE_PER_M_TOKENS_USD`` is a stand-in until r16api's review prices in
``models.py`` merge: replace the table and ``price_of`` with those (one place).
"""

from __future__ import annotations

from batchveo.verdicts import MediaResolution, ReviewSettings

TOKENS_PER_S: dict[MediaResolution, int] = {
    MediaResolution.LOW: 100,
    MediaResolution.MEDIUM: 300,
    MediaResolution.HIGH: 300,
}
"""Video tokens per second of video (the seed page gives low and default; high is taken
as default: the page gives no figure, and an estimate errs on the dear side)."""
QUESTION_TOKENS = 300
"""The question: the quoted prompt, the rubric and the instructions (a generous guess)."""
ANSWER_TOKENS = 400
"""The verdict's JSON: a score, a few defects, a summary."""

PRICE_PER_M_TOKENS_USD: dict[str, tuple[float, float]] = {
    # model: (input, output) USD per million tokens. LEAD: replace with models.py's data.
    "gemini-3.5-flash": (0.50, 3.00),
    "gemini-3-flash-preview": (0.50, 3.00),
}
FALLBACK_PRICE_PER_M_TOKENS_USD = (0.50, 3.00)
"""A model the table does not know is priced as the default one (an estimate, not a bill)."""


def price_of(model: str) -> tuple[float, float]:
    """(input, output) USD per million tokens of ``model``."""
    return PRICE_PER_M_TOKENS_USD.get(model, FALLBACK_PRICE_PER_M_TOKENS_USD)


def review_cost_usd(model: str, tokens_in: int, tokens_out: int) -> float:
    """A finished review's cost, from the tokens the answer's ``usageMetadata`` counted."""
    price_in, price_out = price_of(model)
    return (tokens_in * price_in + tokens_out * price_out) / 1_000_000


def estimate_review_usd(settings: ReviewSettings, video_s: float) -> float:
    """The estimated cost of reviewing one video of ``video_s`` seconds."""
    tokens_in = round(video_s * TOKENS_PER_S[settings.media_resolution]) + QUESTION_TOKENS
    return review_cost_usd(settings.model, tokens_in, ANSWER_TOKENS)
