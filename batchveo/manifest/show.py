"""How a message shows a value the user wrote: recognisable, short, and cheap to make.

Printing a whole value could print a whole document, or, for a YAML alias bomb, billions of
strings; so every message that quotes a value goes through ``show``.
"""

from __future__ import annotations

import reprlib

MAX_SHOWN_CHARS = 80
"""The most a message shows of a value: enough to recognise it. Printing a whole value could
print a whole document, or, for a YAML alias bomb, billions of strings."""
_REPR = reprlib.Repr()
_REPR.fillvalue = "…"
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring = 3, 6, 4, 40


def cut(text: str) -> str:
    """``text`` shortened to ``MAX_SHOWN_CHARS``, with an ellipsis when cut."""
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def show(v: object) -> str:
    """A value as a message shows it: quoted if text, at most ``MAX_SHOWN_CHARS``, in work
    bounded whatever its size (lists and mappings go through ``reprlib``)."""
    if isinstance(v, str):
        return cut(repr(v[: MAX_SHOWN_CHARS + 1]))
    if isinstance(v, list | dict | tuple | set):
        return cut(_REPR.repr(v))
    return cut(str(v))
