"""``defaults: review:``: a batch's review settings, checked as a manifest is read.

Each value is checked as any field is (``fields``): a problem is one line at the
``review:`` key's ``FILE:LINE``, and the manifest loads nothing. The settings are the
batch's (``store.reviews``): the batch's videos are reviewed with them, the latest load's
word winning as for ``budget:``. ``retakes`` is how many more takes a flagged job may get
(``store.takes``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from batchveo.manifest.fields import Bad, HugeInt, to_int
from batchveo.manifest.rows import unknown_key
from batchveo.manifest.show import show
from batchveo.verdicts import MAX_RETAKES, MediaResolution, ReviewSettings

REVIEW_KEYS = ("model", "rubric", "threshold", "retakes", "fps", "mediaResolution")
MAX_RUBRIC_CHARS = 2000
MAX_FPS = 24.0
"""The most frames per second ``videoMetadata.fps`` takes."""


def _number(key: str, v: object, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(v, bool | HugeInt) or not isinstance(v, int | float):
        raise Bad(f"review: {key} must be a number, not {show(v)}")
    if v > high or v < low or (low_open and v == low):
        span = f"more than {low:g} and at most" if low_open else f"between {low:g} and"
        raise Bad(f"review: {key} must be {span} {high:g}, not {show(v)}")
    return float(v)


def _text(key: str, v: object, limit: int) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Bad(f"review: {key} must be a non-empty text, not {show(v)}")
    if len(v) > limit:
        raise Bad(f"review: {key} is {len(v)} characters, more than {limit}")
    return v.strip()


def review_settings(v: object) -> ReviewSettings:
    """``defaults: review:`` as settings (``ReviewSettings``' defaults for what it omits)."""
    if not isinstance(v, dict):
        raise Bad(f"review must be a mapping ({', '.join(REVIEW_KEYS)}), not {show(v)}")
    given: dict[str, Any] = {}
    for key, value in v.items():
        if key not in REVIEW_KEYS:
            raise Bad("review: " + unknown_key(key, REVIEW_KEYS, "key"))
        if value is None:
            continue
        if key == "model":
            given["model"] = _text(key, value, 100)
        elif key == "rubric":
            given["rubric"] = _text(key, value, MAX_RUBRIC_CHARS)
        elif key == "threshold":
            given["threshold"] = _number(key, value, 0, 10)
        elif key == "fps":
            given["fps"] = _number(key, value, 0, MAX_FPS, low_open=True)
        elif key == "retakes":
            n = to_int("review: retakes", value)
            if not 0 <= n <= MAX_RETAKES:
                raise Bad(f"review: retakes must be between 0 and {MAX_RETAKES}, not {n}")
            given["retakes"] = n
        else:
            allowed = [m.value for m in MediaResolution]
            text = value.strip().lower() if isinstance(value, str) else ""
            if text not in allowed:
                one_of = ", ".join(allowed)
                raise Bad(f"review: mediaResolution must be one of {one_of}, not {show(value)}")
            given["media_resolution"] = MediaResolution(text)
    return replace(ReviewSettings(), **given)
