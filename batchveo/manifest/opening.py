"""Reading a manifest file: only a regular file, and only so much of it.

A FIFO would hang ``load``, a link to ``/dev/zero`` would eat memory, and files in ``/proc``
say they are empty and are not; so a manifest is opened without blocking, must be a regular
file (links followed), and is read up to ``MAX_MANIFEST_BYTES``, counted on what is read, not
on what ``stat`` says. Images are opened the same way (``images.py``).

A CSV file is read line by line (``open_manifest``, ``text_lines``), a block of whole lines
at a time, and a YAML file parsed from the file (``yamljobs``, after a scan of its bytes,
``yamlscan``), so a million-job manifest is never in memory at once; a YAML file that
must be read the whole way is read whole (``read_bounded``, ``decode``).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
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


def too_big() -> str:
    """Why a manifest over ``MAX_MANIFEST_BYTES`` is refused (completing "FILE: ...")."""
    return _TOO_BIG.format(MAX_MANIFEST_BYTES)


def open_manifest(path: Path) -> tuple[int, int] | str:
    """A manifest opened for reading, ``(fd, size as stat says)``, or why it cannot be one
    (completing "FILE: ..."); the caller closes ``fd``."""
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
            why = f"is {file_kind(st.st_mode)}, not a manifest file"
        elif st.st_size > MAX_MANIFEST_BYTES:
            why = _TOO_BIG.format(MAX_MANIFEST_BYTES)
        else:
            return fd, st.st_size
    except OSError as e:
        why = f"cannot read it: {e.strerror}"
    os.close(fd)
    return why


def read_manifest(path: Path) -> bytes | str:
    """The bytes of a manifest, or why it cannot be one (completing "FILE: ...")."""
    opened = open_manifest(path)
    if isinstance(opened, str):
        return opened
    fd, size = opened
    try:
        return read_bounded(fd, size)
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    finally:
        os.close(fd)


class Unreadable(Exception):
    """A manifest read line by line that turned out not to be one, at ``line`` (None: the
    whole file) for the reason ``why``."""

    def __init__(self, line: int | None, why: str):
        super().__init__(why)
        self.line, self.why = line, why


_BOM = b"\xef\xbb\xbf"


def text_lines(fd: int) -> Iterator[str]:
    """The lines of an open manifest, ends kept, split as ``io.StringIO(text, newline="")``
    splits the whole text (the csv module's way), UTF-8 with or without BOM; raises
    ``Unreadable`` where it is not UTF-8 or grows over ``MAX_MANIFEST_BYTES``.

    Read a block at a time and cut after its last ``\\n``, so that no line (nor a ``\\r\\n``,
    nor a character) is cut in two; each block is decoded whole.
    """
    lines_before = 0
    for block in line_blocks(fd):
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as e:
            line = lines_before + block.count(b"\n", 0, e.start) + 1
            raise Unreadable(line, "not UTF-8 text; save it as UTF-8") from None
        lines_before += block.count(b"\n")
        yield from io.StringIO(text, newline="")


def line_blocks(fd: int) -> Iterator[bytes]:
    """An open manifest's bytes from where it is, a block of whole lines at a time (each cut
    after its last ``\\n``, so that no line, ``\\r\\n`` or character is cut in two; the last
    as it ends), the BOM off the first; ``Unreadable`` once it grows over
    ``MAX_MANIFEST_BYTES``."""
    rest, total, first = b"", 0, True
    while True:
        chunk = os.read(fd, READ_CHUNK_BYTES)
        total += len(chunk)
        if total > MAX_MANIFEST_BYTES:
            raise Unreadable(None, _TOO_BIG.format(MAX_MANIFEST_BYTES))
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1 if chunk else len(data)
        if cut == 0 and chunk:
            rest = data
            continue
        block, rest = data[:cut], data[cut:]
        if first:
            first = False
            block = block.removeprefix(_BOM)
        yield block
        if not chunk:
            return


def read_bounded(fd: int, size: int) -> bytes | str:
    """The bytes of an open manifest, or why it cannot be one: at most
    ``MAX_MANIFEST_BYTES`` of ``fd``; one read for the whole file (``size``, as stat says),
    one to see its end."""
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
