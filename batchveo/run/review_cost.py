"""What a review costs, for a batch's review settings: ``models``' rule, asked this way.

The numbers (tokens per second of video at each media resolution, the question's and the
answer's tokens, each review model's price per million tokens) are data in ``models.py``,
the one owner, shared with the simulator's token counts. This module only turns a batch's
``ReviewSettings`` into that rule's arguments, for the reviewer (is there room in the
budget for this review?) and for ``plan``.
"""

from __future__ import annotations

from batchveo import models
from batchveo.verdicts import ReviewSettings


def review_cost_usd(model: str, tokens_in: int, tokens_out: int) -> float:
    """A finished review's cost, from the tokens the answer's ``usageMetadata`` counted."""
    return models.review_cost_usd(model, tokens_in, tokens_out)


def estimate_review_usd(settings: ReviewSettings, video_s: float) -> float:
    """The estimated cost of reviewing one video of ``video_s`` seconds."""
    return models.estimate_review_cost_usd(
        settings.model, video_s, settings.fps, settings.media_resolution.value
    )
