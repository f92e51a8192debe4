"""What a manifest row may hold, and how a reader hands its rows to the loader.

The readers (``yamlfile``, ``csvfile``) know their format's syntax and locations; the loader
knows what a job is. Between them are the names below: the keys a job, the defaults and
the top of a YAML file may have (in the API's camelCase; CSV headers may also be snake_case),
the ``Defaults`` every row of a file starts from, and the ``Sink`` a reader reports to.

Unknown columns and YAML keys are errors (typo protection), with a suggestion.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchveo import models
from batchveo.manifest.show import MAX_SHOWN_CHARS, show
from batchveo.routes import Route
from batchveo.verdicts import ReviewSettings

PARAM_KEYS = (
    "aspectRatio",
    "resolution",
    "durationSeconds",
    "personGeneration",
    "enhancePrompt",
    "negativePrompt",
    "seed",
    "sampleCount",
    "generateAudio",
)
ROUTE_KEYS = ("provider", "project", "location", "storageUri")
"""Where the file's jobs go (``defaults:`` only), over the loading command's flags."""
TOP_KEYS = ("defaults", "jobs")
DEFAULT_KEYS = (*PARAM_KEYS, "model", "output", "budget", "review", *ROUTE_KEYS)
JOB_KEYS = (
    "prompt",
    "id",
    "image",
    "lastFrame",
    "referenceImages",
    "video",
    "model",
    "output",
    "repeat",
    "extends",
    "chain",
    *PARAM_KEYS,
)
SNAKE_CASE = {
    "aspect_ratio": "aspectRatio",
    "duration_seconds": "durationSeconds",
    "person_generation": "personGeneration",
    "enhance_prompt": "enhancePrompt",
    "negative_prompt": "negativePrompt",
    "sample_count": "sampleCount",
    "generate_audio": "generateAudio",
    "storage_uri": "storageUri",
    "last_frame": "lastFrame",
    "reference_images": "referenceImages",
}
CSV_COLUMNS = {k.lower(): k for k in JOB_KEYS if k != "chain"} | SNAKE_CASE
"""A CSV header cell, lower-cased, -> the key it names (``chain:`` is a YAML list: a CSV
row extends another with ``extends``)."""
JOB_KEY_SET = frozenset(JOB_KEYS)


def unknown_key(key: object, known: Iterable[str], what: str) -> str:
    """Typo protection: name the key and suggest the closest known one (errors only)."""
    known = list(known)
    k = str(key)
    by_lower = {x.lower(): x for x in known}
    guess = SNAKE_CASE.get(k) or by_lower.get(k.lower().replace("_", ""))
    if (guess is None or guess not in known) and len(k) <= MAX_SHOWN_CHARS:
        close = difflib.get_close_matches(k, known, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f" (did you mean {guess!r}?)" if guess else f" (known: {', '.join(known)})"
    return f"unknown {what} {show(k)}{hint}"


@dataclass
class Defaults:
    """What every job of a file starts from: the model table's defaults, then the file's
    ``defaults:`` (YAML only)."""

    model: str | None = None
    """None: the default model of the job's provider."""
    params: dict[str, Any] = field(default_factory=lambda: dict(models.DEFAULT_PARAMS))
    output: str | None = None
    budget_usd: float | None = None
    review: ReviewSettings | None = None
    """``review:``: the batch's videos are reviewed with these (``manifest.review``)."""
    route: Route = field(default_factory=Route)
    """The file's own route parts (``provider``, ``project``, ...); None parts come from
    the loading command."""
    route_where: dict[str, str] = field(default_factory=dict)
    """Where each route key was written (``FILE:LINE``), for the problems of the route."""


class Sink(Protocol):
    """Where a reader reports what it finds, in the order it finds it (so problems are
    listed in file order)."""

    def problem(self, where: str, job: str | None, message: str) -> None:
        """One problem of the file, located (``FILE:LINE``, ``FILE row N``, ``FILE header``)."""

    def job(self, raw: Mapping[str, Any], where: str, defaults: Defaults, bad: list[str]) -> None:
        """One job as written (keys already the canonical ones), with the problems the
        reader found in it (keys written twice, unknown keys, stray cells)."""
