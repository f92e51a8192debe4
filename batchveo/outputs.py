"""Where a job's videos go under ``--out``: one rule, used by the loader and the downloader.

The loader checks at load time that the file system can take these names (lengths,
a file where a folder must be); the downloader writes exactly these paths. Both must
agree, so the rule lives here, with no dependency on either.

An id is always one file name; only a manifest's ``output`` template (checked at load
to be relative) may name sub-folders. Every segment is sanitised, so nothing climbs out
of ``--out`` or hides; ``files.PartFile`` then holds the resolved path (no link below
``--out`` is followed).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_SEGMENT_CHARS = 150
"""A sanitised name is cut here (then a hash is added): well under any file system's 255."""


_TAKE_SUFFIX = re.compile(r"~[0-9]+$")
"""A retake's mark (``ID~2``: ``store.takes``), kept as it is after the cleaned name."""


def safe_segment(name: str) -> str:
    """One path segment that cannot climb out of the output folder or hide.

    When cleaning changed the name, a short hash of the original is added, so
    "shot 1", "shot?1" and "shot_1" do not all become ``shot_1.mp4``. A retake's ``~N``
    stays at the end (``ID~2.mp4`` beside ``ID.mp4``); no manifest's id ends so.
    """
    take = _TAKE_SUFFIX.search(name)
    if take is not None and take.start() > 0:
        return safe_segment(name[: take.start()]) + take.group()
    cleaned = _SAFE.sub("_", name).strip("._")[:MAX_SEGMENT_CHARS] or "job"
    if cleaned != name:
        cleaned += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return cleaned


def video_paths(out_dir: Path, job_id: str, output_name: str | None, n_videos: int) -> list[Path]:
    """``OUT/<id>.mp4``, or ``OUT/<id>_<n>.mp4`` (n from 1) when there are several videos;
    ``output_name`` (a rendered template) replaces ``<id>`` and may hold folders.

    ValueError if a path would leave ``out_dir`` (defence in depth: segments are
    sanitised; no system call per job).
    """
    if output_name:
        parts = [safe_segment(p) for p in output_name.split("/") if p not in ("", ".", "..")]
    else:
        parts = [safe_segment(job_id)]
    folder = out_dir.joinpath(*parts[:-1])
    stem = parts[-1] if parts else safe_segment(job_id)
    paths = [folder / name for name in video_names(stem, n_videos)]
    root = os.path.abspath(out_dir)
    for p in paths:
        if os.path.commonpath([root, os.path.abspath(p)]) != root:
            raise ValueError(f"job {job_id}: output path escapes {out_dir}")
    return paths


def fallback_video_paths(out_dir: Path, job_id: str, n_videos: int) -> list[Path]:
    """Where a video goes when its own path cannot be written: ``OUT/<id>.mp4`` (or
    ``OUT/<id>_<n>.mp4``), right in ``--out`` where nothing but the name can be in the way."""
    return [out_dir / name for name in video_names(safe_segment(job_id), n_videos)]


def video_names(stem: str, n: int) -> list[str]:
    """The file names of ``n`` videos of one job."""
    return [f"{stem}.mp4"] if n == 1 else [f"{stem}_{i}.mp4" for i in range(1, n + 1)]
