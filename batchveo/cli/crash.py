"""A bug, reported: one line on the terminal, the traceback (without secrets) in a file.

A cron job's log or mail must stay one readable line even when batchveo itself is
wrong, and the traceback must still exist for the bug report. It goes to a new file
only the user can read, scrubbed of the API key and anything key-like.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CRASH_DIR_NAME = "batchveo"
"""Tracebacks go to ``$XDG_STATE_HOME/batchveo/`` (default ``~/.local/state/batchveo/``),
one file per crash, readable by the user only: a cron job's log stays one line."""
MAX_CRASH_SUMMARY_CHARS = 300
"""The one line about an internal error is cut here; the whole message is in the file."""


def crash_dir(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / CRASH_DIR_NAME


def _scrub(text: str) -> str:
    """``text`` without the API key (nor anything key-like from the environment)."""
    from batchveo.redact import redact

    return redact(text, os.environ)


def write_crash(text: str) -> Path:
    """The traceback, scrubbed, to a new file only the user can read; its path."""
    import tempfile
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"crash-{stamp}-{os.getpid()}.txt"
    last: OSError | None = None
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / name
            tmp = folder / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, text.encode("utf-8", "replace"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            return path
        except OSError as e:
            last = e
    raise last or OSError("no folder for the traceback")


def crash_message(exc: BaseException) -> str:
    """The one line about ``exc``, once its traceback (scrubbed) is in a file."""
    try:
        import traceback

        from batchveo import __version__
        from batchveo.observe.text import visible

        text = _scrub(
            f"batchveo {__version__}: {' '.join(sys.argv)}\n"
            + "".join(traceback.format_exception(exc))
        )
        try:
            where = f"details in {write_crash(text)}"
        except OSError as e:
            where = f"the details could not be written ({e.strerror or e})"
        summary = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        summary = visible(" ".join(_scrub(summary).split()))
        if len(summary) > MAX_CRASH_SUMMARY_CHARS:
            summary = summary[: MAX_CRASH_SUMMARY_CHARS - 3] + "..."
    except Exception:  # out of memory again, say: still one line and exit 70
        summary, where = type(exc).__name__, "the details could not be written"
    return f"internal error (a bug in batchveo, not in your input): {summary}; {where}"
