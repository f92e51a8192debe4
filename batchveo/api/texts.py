"""Texts a server sends, made fit for a message: one short printable line.

Whatever a server says (an error message, a filter reason, a header, a URL) ends up in a
log line, the database, a report or cron's mail. It may hold newlines, terminal escapes, a
secret in a query string or a whole HTML page: every such text passes through here, after
the key has been scrubbed out of it (``Secret.scrub``), so a scrubbed key is never cut in
half by the clipping.
"""

from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 300
"""Longest text a message quotes from a server: enough for Google's longest error message,
short enough for one line of a terminal or a log."""


def clip(text: str) -> str:
    """One short printable line: a server's text may hold newlines or terminal escapes."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def show_url(text: str) -> str:
    """A URL fit for a message: no query, fragment or user info (where secrets travel)."""
    text = re.split(r"[?#]", text, maxsplit=1)[0]
    return clip(re.sub(r"//[^/@]*@", "//", text))


def token(text: str) -> str:
    """A header token fit for a message (``gzip``), or a placeholder for anything else."""
    return text if re.fullmatch(r"[a-z0-9._-]{1,24}", text) else "(unrecognised)"
