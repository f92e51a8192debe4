"""Where a job's files are, and how the page links them.

The report lives beside the videos and links them with relative URLs
(``os.path.relpath`` from the report's folder, forward slashes, every segment
URL-quoted), so moving or zipping the folder keeps every video playing.
"""

from __future__ import annotations

import os
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
    try:
        rel = os.path.relpath(target, os.path.abspath(base))
    except ValueError:  # another drive (Windows): no relative path exists
        return Path(target).as_uri()
    return "/".join(quote(seg, safe="") for seg in rel.split(os.sep))
