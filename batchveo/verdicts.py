"""What a review asks and what it answers: the types the review stage shares.

A review is a Gemini model watching one finished take and answering with a score, whether
it matches the prompt, its defects at ``MM:SS`` and a summary. The manifest reads the
settings (``ReviewSettings``), the run builds a ``ReviewAsk`` per take, the route's client
sends it and returns a ``Verdict``, the store keeps it per take, the report shows it. They
live here, beside ``spec.py``, because each of those layers uses them and none owns them
(the client must not import the store, nor the store the client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

INLINE_LIMIT_BYTES = 20 * 1024 * 1024
"""A ``generateContent`` request with inline data may carry about 20 MB in all (the API's
budget): a video whose base64 and the question would pass it is not sent inline."""

_MM_SS = re.compile(r"^(\d{2,}):([0-5]\d)$")


class MediaResolution(StrEnum):
    """How finely the model looks at each frame: fewer tokens per second when lower."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def wire(self) -> str:
        """As ``generationConfig.mediaResolution`` says it: ``MEDIA_RESOLUTION_LOW``."""
        return f"MEDIA_RESOLUTION_{self.name}"


MAX_RETAKES = 10
"""A job's retakes at most (``review: retakes:``, ``--review-retakes``)."""


@dataclass(frozen=True)
class ReviewSettings:
    """A batch's ``review:`` (manifest ``defaults:``, or ``run --review`` and its flags)."""

    model: str = "gemini-3.5-flash"
    rubric: str = "No extra limbs, no text artefacts, the subject matches the prompt."
    threshold: float = 7.0
    """A take scoring below this is flagged."""
    retakes: int = 0
    """At most this many extra takes per job (0: flag only)."""
    fps: float = 1.0
    """Frames the model samples per second of video (``videoMetadata.fps``)."""
    media_resolution: MediaResolution = MediaResolution.MEDIUM


@dataclass(frozen=True)
class ReviewAsk:
    """One review to send: the take's verified file, and the words it is judged against."""

    video_path: Path
    prompt: str
    """The job's prompt, quoted verbatim in the question."""
    rubric: str
    model: str
    fps: float
    media_resolution: MediaResolution
    video_uri: str | None = None
    """The take's ``gs://`` object, when Vertex wrote it to a bucket: Vertex then reads it
    itself (``fileData``), so its size is no limit. Other routes send the file inline."""


@dataclass(frozen=True)
class Defect:
    """One flaw the model saw, and when."""

    at: str
    """``MM:SS`` from the start of the video."""
    issue: str

    @property
    def at_s(self) -> int:
        """``at`` in seconds (what the report's links seek to)."""
        return seconds_of(self.at)


@dataclass(frozen=True)
class Verdict:
    """The model's answer, checked against the schema, and what it cost in tokens."""

    score: float
    """0-10."""
    matches_prompt: bool
    defects: tuple[Defect, ...]
    summary: str
    tokens_in: int
    """``usageMetadata.promptTokenCount``: the video's frames and the question."""
    tokens_out: int
    """``usageMetadata.candidatesTokenCount``."""

    def passes(self, threshold: float) -> bool:
        return self.score >= threshold


def seconds_of(mm_ss: str) -> int:
    """``"01:05"`` -> 65; ValueError for anything that is not ``MM:SS``."""
    match = _MM_SS.match(mm_ss.strip())
    if match is None:
        raise ValueError(f"not a MM:SS timestamp: {mm_ss!r}")
    return int(match.group(1)) * 60 + int(match.group(2))
