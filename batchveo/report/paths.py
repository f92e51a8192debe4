"""Where a job's files are, and how the page links them.

The report lives beside the videos and links them with relative URLs
(``os.path.relpath`` from the report's folder, forward slashes, every segment
URL-quoted), so moving or zipping the folder keeps every video playing.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote


def locate(path: str, base: Path | None) -> str:
    """A stored file path as found: relative paths are relative to the folder the run was
    started in, which is not known; try the current folder, then ``base`` (the database's)."""
    if os.path.isabs(path) or os.path.exists(path) or base is None:
        return path
    other = os.path.join(base, path)
    return other if os.path.exists(other) else path


def rel_url(path: str | Path, base: Path) -> str:
    """A URL for ``path`` relative to the folder ``base``, with quoted segments."""
    target = os.path.abspath(path)
    folder, name = os.path.split(target)
    prefix = _folder_url(folder, os.path.abspath(base))
    if prefix is None:  # another drive (Windows): no relative path exists
        return Path(target).as_uri()
    return prefix + quote(name, safe="")


@lru_cache(maxsize=4096)
def _folder_url(folder: str, base: str) -> str | None:
    """The relative URL of ``folder`` from ``base`` (ending in ``/``, empty for ``base``
    itself), None if there is none; the videos of a night share a few folders, and a
    page of a big report links thousands of files."""
    try:
        rel = os.path.relpath(folder, base)
    except ValueError:
        return None
    if rel == ".":
        return ""
    return "".join(quote(seg, safe="") + "/" for seg in rel.split(os.sep))
