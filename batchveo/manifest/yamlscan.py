"""A YAML manifest scanned as bytes, a block at a time, before it is parsed from its file:
whether its jobs can be handed on one at a time as they are composed (``yamljobs``), with
nothing of the file held.

What the parser would find later is found here first, as reading the text whole finds it:
a file over ``MAX_MANIFEST_BYTES``, bytes that are not UTF-8 (at their line), a file with
nothing but white space. Then two things decide whether the jobs may be handed on before
the end of the document is read:

- ``plain``: no ``&``, ``*`` or ``!`` anywhere, so no anchor, alias or tag: nothing is
  shared between nodes (an alias bomb is refused only by reading the whole way);
- ``jobs_last``: a line starts with the key ``jobs:``, and no line after it starts with
  anything but a space, a comment, or a ``-`` item of a list. In a top-level mapping
  written at the start of lines (the usual one), every key starts a line; so no key comes
  after ``jobs:``: not ``defaults:`` (which every job needs, and a job handed on before it
  would lack), not ``jobs:`` again (the last one is the one kept), not an unknown key
  (whose problem is listed before the jobs'). A line that only looks like one (a quoted
  text's second line, ``---``) only makes the file read the whole way.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from batchveo.manifest import opening
from batchveo.manifest.opening import too_big

_JOBS_KEY = re.compile(rb"(?:jobs|\"jobs\"|'jobs')[ \t]*:")
_KEY_LIKE = re.compile(rb"[^\s#\-]|-[^\s]")
"""What may start a top-level key: anything but a space, a comment or an item of a list."""
_ODD_BREAK = re.compile(rb"\r(?!\n)|\xc2\x85|\xe2\x80[\xa8\xa9]")
"""A line break other than ``\\n`` (a lone CR, NEL, LS, PS), which YAML reads as one too."""


def _odd_break(data: bytes) -> bool:
    """Whether ``data`` has a line break other than ``\\n`` (quick for ASCII without CR)."""
    if data.isascii() and b"\r" not in data:
        return False
    return _ODD_BREAK.search(data) is not None


def _after_break(pattern: re.Pattern[bytes]) -> re.Pattern[bytes]:
    """``pattern`` at the start of a line but the block's first (a literal first byte:
    the regex engine's fast search)."""
    return re.compile(b"\n(?:" + pattern.pattern + b")")


_JOBS_LINE, _KEY_LINE = _after_break(_JOBS_KEY), _after_break(_KEY_LIKE)


def _line_starting(start: re.Pattern[bytes], line: re.Pattern[bytes], data: bytes, at: int) -> int:
    """Where the first line of ``data`` from ``at`` (a line's start) that starts with
    ``start`` ends its match; -1 for none."""
    if (found := start.match(data, at)) is not None:
        return found.end()
    found = line.search(data, at)
    return -1 if found is None else found.end()


@dataclass
class Scan:
    """What a YAML manifest's bytes tell before it is parsed."""

    size: int = 0
    """How many bytes were read (the parser reads as many)."""
    blank: bool = True
    """Nothing but white space (or nothing)."""
    plain: bool = True
    """No ``&``, ``*`` or ``!``: no anchor, alias or tag."""
    jobs_seen: bool = False
    keys_after_jobs: bool = False

    @property
    def jobs_last(self) -> bool:
        """A line starts with ``jobs:``, and none after it with another key."""
        return self.jobs_seen and not self.keys_after_jobs

    def block(self, data: bytes) -> None:
        """Note one block of whole lines."""
        if self.plain and (b"&" in data or b"*" in data or b"!" in data):
            self.plain = False
        if self.keys_after_jobs:
            return
        if _odd_break(data):  # lines this scan does not split: read the whole way
            self.keys_after_jobs = True
            return
        start = 0
        if not self.jobs_seen:
            start = _line_starting(_JOBS_KEY, _JOBS_LINE, data, 0)
            if start < 0:
                return
            self.jobs_seen = True
            start = data.find(b"\n", start)  # the rest of the jobs: line is its own
            if start < 0:
                return
        if _line_starting(_KEY_LIKE, _KEY_LINE, data, start) >= 0:
            self.keys_after_jobs = True


def scan_yaml(fd: int) -> Scan | str | tuple[int, str]:
    """The scan of an open manifest from where it is, or why it is not one: too big
    (completing "FILE: ..."), or the line where it is not UTF-8 and why (as reading it
    whole says: ``opening.read_bounded``, ``opening.decode``)."""
    scan, lines_before = Scan(), 0
    bad_line: int | None = None
    start = os.lseek(fd, 0, os.SEEK_CUR)  # a regular file (opening.open_manifest)
    try:
        for block in opening.line_blocks(fd):
            if bad_line is None:
                bad_line = _checked(block, scan, lines_before)
            lines_before += block.count(b"\n")
    except opening.Unreadable:
        return too_big()
    scan.size = os.lseek(fd, 0, os.SEEK_CUR) - start
    if bad_line is not None:
        return bad_line, "not UTF-8 text; save it as UTF-8"
    return scan


def _checked(block: bytes, scan: Scan, lines_before: int) -> int | None:
    """Note a block of whole lines; the line where it is not UTF-8 (None: it is)."""
    if scan.blank or not block.isascii():  # ASCII is UTF-8
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as e:
            return lines_before + block.count(b"\n", 0, e.start) + 1
        if scan.blank and text and not text.isspace():
            scan.blank = False
    scan.block(block)
    return None
