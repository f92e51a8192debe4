"""Untrusted text made safe to show, and times written the same way everywhere.

Prompts come from manifests, error messages from servers and commands: an escape
sequence, a carriage return or a bidirectional override in one must not garble a
terminal, a log file or cron mail, nor make a line say something it does not. Two
ways, for two readers:

* ``one_line`` for a line among many (a progress line, a log record, a notification):
  every control character becomes a space, whitespace collapses, the length is bounded.
* ``visible`` for a value shown whole (``batchveo show``, a plan, a crash summary):
  every unsafe character is escaped visibly (``\\x1b``), so nothing is lost and nothing
  acts on the terminal; ``visible_lines`` the same for a message of several lines.

And one rule for rich: ``terminal_console`` is the only console anything prints through.
It reads no markup and no emoji codes, so a batch name such as ``[/]x[red]y`` or
``:thumbs_up:`` shows as written, never colours the rest or crashes the command (each
outside value still goes through ``visible``, before rich measures it).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module; keep its start-up light
    from rich.console import Console

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def one_line(text: str, limit: int = 120) -> str:
    """Text safe for a single log line: no control codes, no line breaks, bounded length."""
    cleaned = "".join(" " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: max(0, limit - 3)].rstrip() + "..."
    return cleaned


_UNSAFE_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
"""C0 and C1 controls, DEL, line separators and the bidirectional overrides: the
characters that can move the cursor, retitle or clear a terminal, or reorder a line."""


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c in "\n\r\t":
        return repr(c)[1:-1]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def visible(text: str) -> str:
    """``text`` with every unsafe character escaped, visibly (``\x1b`` becomes ``\\x1b``):
    a prompt or a server's error text printed to a terminal can never act on it."""
    return _UNSAFE_CHARS.sub(_escape_char, text)


def visible_lines(text: str) -> str:
    """``visible`` for each line of ``text``: its line breaks stay line breaks."""
    return "\n".join(visible(line) for line in text.split("\n"))


def terminal_console(**options: Any) -> Console:
    """A rich console that shows every string as written: no markup (``[red]``, ``[/]``,
    ``[link=...]``) and no emoji codes are read from it. Our own styles are given as
    ``style=``, never as markup, so nothing is lost. ``options`` as for ``Console``."""
    from rich.console import Console

    return Console(markup=False, emoji=False, **options)


def iso_utc(ts: float) -> str:
    """``2026-11-21T03:04:05.123Z``: sortable, unambiguous, the same on every machine."""
    stamp = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def utc_seconds(ts: float | None) -> str:
    """``2026-11-21 03:04:05Z`` for a person reading a job's times; empty for none."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
