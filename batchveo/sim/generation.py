"""How long the simulator's operations take: ``MIN,MAX`` seconds (uniform) or a log-normal.

``--generation-s 11,60`` (the old form, still the default) draws each operation's time
uniformly between the two. ``--generation-s lognormal:median=60,sigma=0.5`` draws it from a
log-normal, the shape real latencies have (right-skewed: most near the median, a few far
slower); ``scale=0.1`` multiplies every draw, so a test or benchmark replays minute-long
generations in seconds (``lognormal:median=60,sigma=0.5,scale=0.1``: a median of 6 s).
``[sim:slow]`` takes the longest: MAX, or the log-normal's 99.9th percentile.

A uniform time stays a plain ``(MIN, MAX)`` tuple, as ``SimConfig`` always held it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

SLOW_QUANTILE_Z = 3.09
"""``[sim:slow]`` on a log-normal: its 99.9th percentile (that many sigmas above the median)."""


@dataclass(frozen=True)
class LogNormalTime:
    """Generation times whose logarithm is normal, times ``scale``."""

    median_s: float
    sigma: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (self.median_s > 0 and self.sigma >= 0 and self.scale > 0):
            raise ValueError("lognormal needs median > 0, sigma >= 0 and scale > 0")

    def __str__(self) -> str:
        text = f"lognormal:median={self.median_s:g},sigma={self.sigma:g}"
        return text + (f",scale={self.scale:g}" if self.scale != 1 else "")

    def draw(self, rng: random.Random) -> float:
        return self.scale * math.exp(rng.gauss(math.log(self.median_s), self.sigma))

    @property
    def longest_s(self) -> float:
        return self.scale * self.median_s * math.exp(SLOW_QUANTILE_Z * self.sigma)


GenerationTime = tuple[float, float] | LogNormalTime
"""``(MIN, MAX)`` seconds, uniform; or a log-normal."""

_LOGNORMAL_KEYS = {"median": "median_s", "sigma": "sigma", "scale": "scale"}


def parse_generation(value: Any) -> GenerationTime:
    """``"1,5"``, ``[1, 5]``, one number (MIN = MAX), ``"lognormal:median=60,sigma=0.5"``
    (optionally ``,scale=S``) or a ``LogNormalTime``; ValueError for anything else."""
    if isinstance(value, LogNormalTime):
        return value
    if isinstance(value, str) and ":" in value:
        kind, _, args = value.partition(":")
        if kind.strip().lower() != "lognormal":
            raise ValueError(f"unknown distribution {kind!r} (lognormal, or MIN,MAX)")
        fields: dict[str, float] = {}
        for part in args.split(","):
            key, eq, number = part.partition("=")
            name = _LOGNORMAL_KEYS.get(key.strip().lower())
            if not eq or name is None or name in fields:
                raise ValueError(f"lognormal takes median=, sigma= and scale=, not {part!r}")
            fields[name] = float(number)
        if "median_s" not in fields or "sigma" not in fields:
            raise ValueError("lognormal needs median= and sigma=")
        return LogNormalTime(**fields)
    parts = value.split(",") if isinstance(value, str) else value
    if isinstance(parts, int | float):
        parts = [parts]
    if len(parts) not in (1, 2):
        raise ValueError("MIN,MAX")
    lo, hi = float(parts[0]), float(parts[-1])
    if not 0 <= lo <= hi:
        raise ValueError("MIN,MAX with 0 <= MIN <= MAX")
    return (lo, hi)


def draw_generation_s(time: GenerationTime, rng: random.Random, slow: bool = False) -> float:
    """One operation's generation time; ``slow``: the longest (``[sim:slow]``)."""
    if isinstance(time, LogNormalTime):
        return time.longest_s if slow else time.draw(rng)
    lo, hi = time
    return hi if slow else rng.uniform(lo, hi)


def to_json(time: GenerationTime) -> Any:
    """``[MIN, MAX]`` or the log-normal's text: what ``parse_generation`` reads back."""
    return str(time) if isinstance(time, LogNormalTime) else list(time)
