"""Reading a manifest file: only a regular file, and only so much of it.

A FIFO would hang ``load``, a link to ``/dev/zero`` would eat memory, and files in ``/proc``
say they are empty and are not; so a manifest is opened without blocking, must be a regular
file (links followed), and is read up to ``MAX_MANIFEST_BYTES``, counted on what is read, not
on what ``stat`` says. Images are opened the same way (``images.py``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_MANIFEST_BYTES = 2**30
"""1 GiB: a million-row CSV is a few hundred MB. Beyond it a "manifest" is a mistake (a link to
a device, a log), and reading on would only eat memory."""

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
"""Non-blocking: ``open()`` of a FIFO would otherwise wait for a writer forever."""
READ_CHUNK_BYTES = 1 << 20


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for messages ("is a named pipe")."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


_TOO_BIG = "is over {:,} bytes, the most a manifest may be (split it into several files)"


def read_manifest(path: Path) -> bytes | str:
    """The bytes of a manifest, or why it cannot be one (completing "FILE: ...")."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a folder, not a manifest file"
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"is {file_kind(st.st_mode)}, not a manifest file"
        if st.st_size > MAX_MANIFEST_BYTES:
            return _TOO_BIG.format(MAX_MANIFEST_BYTES)
        return _read_bounded(fd, st.st_size)
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    finally:
        os.close(fd)


def _read_bounded(fd: int, size: int) -> bytes | str:
    """At most ``MAX_MANIFEST_BYTES`` of ``fd``; one read for the whole file (``size``, as
    stat says), one to see its end."""
    chunks, total = [], 0
    want = size + 1
    while total <= MAX_MANIFEST_BYTES:
        chunk = os.read(fd, max(want - total, READ_CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > MAX_MANIFEST_BYTES:
        return _TOO_BIG.format(MAX_MANIFEST_BYTES)
    return b"".join(chunks)  # one chunk: the same bytes object, no copy


def decode(data: bytes) -> str | tuple[int, str]:
    """The text of a manifest (UTF-8, with or without BOM), or the line where it is not UTF-8
    and why."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return data.count(b"\n", 0, e.start) + 1, "not UTF-8 text; save it as UTF-8"
