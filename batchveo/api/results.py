"""What a client hands the runner: the same two values whatever the provider's wire format.

A poll's answer becomes an ``OperationStatus`` and a download a ``DownloadResult``; the
runner (``run.context.Client``) needs nothing else of a provider, so a new provider is a new
client returning these, and nothing in the run changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class OperationStatus:
    """One poll's verdict. Texts (error message, filter reasons) are scrubbed and clipped."""

    state: Literal["running", "done", "failed", "filtered"]
    video_uris: tuple[str, ...] = ()
    error_code: int | None = None
    error_message: str | None = None
    filtered_reasons: tuple[str, ...] = ()
    inline_videos: tuple[bytes, ...] = ()
    """Videos that came in the poll's answer itself (Vertex AI without ``storageUri``):
    the answer *is* the download, so the runner saves them (``Client.save``) before it
    marks the job, and never polls the operation again."""
    samples_requested: int | None = None
    """How many videos the job asked for (``sampleCount``), when the route says."""
    samples_filtered: int = 0
    """How many of them the safety filter withheld (not charged): fewer videos than asked
    is a partial result, not a failure."""
    counts_samples: bool = False
    """The route answers per sample (Vertex AI: ``raiMediaFilteredCount`` beside the
    videos), so the job records how many came back even when none was withheld."""


@dataclass(frozen=True)
class DownloadResult:
    """A video made durable under its final name (``path``: ``dest`` or a sibling)."""

    path: Path
    size: int
    sha256: str
