"""Keeping secrets out of everything batchveo writes: the one owner of redaction.

A secret (the API key today, Google access tokens next) may travel only in a request
header to its own service. Everything else (log lines, error messages, the database,
exports, the report, crash files) goes through this module:

* ``Secret`` holds one value so that no ``repr``, ``str`` or f-string can show it, and
  ``scrub``s its known forms (as sent, percent-encoded) out of any text: the client
  uses it on every text a server sends back, the JSON log on every line.
* ``redact`` is the last line of defence for whole documents (the report, a crash
  file): it removes the values of key-like environment variables and anything shaped
  like a Google API key or a ``?key=`` parameter, whoever produced the text, and the
  secrets only the running process knows (``add_secret_source``: the Google access
  tokens a run was handed).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from html import escape

REDACTED = "[redacted]"
"""What a secret is replaced with, everywhere."""

KEY_VARIABLES: tuple[str, ...] = ("BATCHVEO_API_KEY", "GPTPROTO_API_KEY", "GEMINI_API_KEY")
"""Environment variables that hold API keys: read by the client, never passed on to a
command batchveo runs, scrubbed from crash files."""

MIN_SECRET_CHARS = 6
"""A shorter value (only possible on the simulator) is not replaced in texts: it would
mangle ordinary words; it still never goes anywhere but its header."""

_KEY_ENV = re.compile(r"(?i)(api[_-]?key|_key$|token|secret|passw|credential)")
_TOKEN_LIKE = re.compile(r"^[A-Za-z0-9_\-.+/=~]{12,}$")
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{35}")
_KEY_PARAM = re.compile(r"(?i)([?&](?:key|api_key|apikey|access_token)=)[^&\s\"'<>]+")


class Secret:
    """Holds a secret so that no repr, str or f-string can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The value, for the one header it belongs in."""
        return self._value

    def _forms(self) -> tuple[str, ...]:
        """The secret as sent and percent-encoded; none for one too short to spot safely."""
        if len(self._value) < MIN_SECRET_CHARS:
            return ()
        quoted = urllib.parse.quote(self._value, safe="")
        return (self._value,) if quoted == self._value else (self._value, quoted)

    def found_in(self, text: str) -> bool:
        return any(form in text for form in self._forms())

    def scrub(self, text: str) -> str:
        for form in self._forms():
            text = text.replace(form, REDACTED)
        return text

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__


_SOURCES: list[Callable[[], Iterable[Secret]]] = []
"""Secrets of this process that no environment variable holds (``add_secret_source``)."""


def add_secret_source(source: Callable[[], Iterable[Secret]]) -> None:
    """``redact`` also removes every secret ``source()`` gives (asked each time): a token
    minted during a run is in no variable, and a crash file is written after the run."""
    _SOURCES.append(source)


def redact(text: str, env: Mapping[str, str]) -> str:
    """``text`` without API-key-shaped strings, the values of key-like variables in
    ``env``, or the process's own secrets (``add_secret_source``)."""
    for source in _SOURCES:
        for secret in source():
            text = secret.scrub(text)
    for name, value in env.items():
        value = value.strip()
        if len(value) < MIN_SECRET_CHARS or value.startswith("/"):
            continue  # too short to spot safely, or a path (GOOGLE_APPLICATION_CREDENTIALS)
        if name in KEY_VARIABLES or (_KEY_ENV.search(name) and _TOKEN_LIKE.match(value)):
            for form in {value, escape(value), urllib.parse.quote(value, safe="")}:
                text = text.replace(form, REDACTED)
    text = _GOOGLE_KEY.sub(REDACTED, text)
    return _KEY_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
