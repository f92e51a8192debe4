"""URLs as the client keeps, builds and sends them: exactly as given, and never with the key.

A server's URLs (a video URI, a redirect's Location, an operation name put into a poll path)
are stored, exported and sent on. So they are parsed as sent, never re-encoded (a signed
storage URL breaks if one byte changes), and checked for the key: a URI carrying it in a
query parameter loses that parameter, the rest kept byte for byte (the key goes in the header
anyway); one holding it anywhere else cannot be kept at all, and the caller says why.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Protocol

from yarl import URL

from batchveo.api.texts import clip
from batchveo.errors import BadRequest

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._~:@!$&'()*+,;=-]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class SecretText(Protocol):
    """What URL checks need of a secret: whether a text holds it (``redact.Secret``)."""

    def found_in(self, text: str) -> bool: ...


def parse_url(text: str) -> URL | None:
    """``text`` as a URL exactly as sent (no re-encoding), or None if it cannot be one."""
    try:
        url = URL(text, encoded=True)
        _ = url.explicit_port  # a bad port only shows when asked for
    except (ValueError, TypeError):
        return None
    return url


def is_web_url(url: URL | None) -> bool:
    """An absolute http(s) URL with a host: the only kind the client fetches."""
    return url is not None and url.scheme in ("http", "https") and bool(url.raw_host)


def plain_base_url(text: str) -> str | None:
    """``text`` as a base URL of scheme, host, port and path only (trailing ``/`` dropped),
    or None if it holds anything else: a query (``?key=``) or user info is where a secret
    travels, so a base URL with one is never accepted (``--base-url``,
    ``--storage-base-url``; the caller says which, without showing the secret)."""
    stripped = text.strip()
    url = parse_url(stripped)
    if (
        not is_web_url(url)
        or url is None
        or url.raw_query_string
        or url.raw_fragment
        or url.raw_user is not None
        or url.raw_password is not None
        or re.search(r"[?#@]", stripped)
    ):
        return None
    return str(url).rstrip("/")


def host_key(url: URL) -> str:
    """``host`` or ``host:port`` (port only when not the scheme's default), lowercased."""
    host = (url.raw_host or "").lower()
    port = url.explicit_port
    if port is None or port == _DEFAULT_PORTS.get(url.scheme):
        return host
    return f"{host}:{port}"


def strip_key(uri: str, key: SecretText) -> str | None:
    """``uri`` without any query parameter that carries the key; None if it holds the key
    anywhere else. The rest of the URI is kept byte for byte (it may be signed)."""
    if not key.found_in(uri):
        return uri
    rest, hash_mark, fragment = uri.partition("#")
    base, question, query = rest.partition("?")
    kept = []
    for param in query.split("&") if question else ():
        name, _, value = param.partition("=")
        plain = urllib.parse.unquote_plus(value)
        if (
            urllib.parse.unquote_plus(name).lower() == "key"
            or key.found_in(plain)
            or key.found_in(value)
        ):
            continue
        kept.append(param)
    clean = base + ("?" + "&".join(kept) if kept else "") + hash_mark + fragment
    return None if key.found_in(clean) else clean


def is_segment(value: str) -> bool:
    """Whether ``value`` can be one path segment as it is (no ``/``, no dot segment)."""
    return bool(_SAFE_SEGMENT.match(value)) and value not in (".", "..")


def segment(value: str, what: str) -> str:
    """``value``, checked to be one path segment; BadRequest naming ``what`` if not."""
    if not is_segment(value):
        raise BadRequest(f"malformed {what} {clip(value[:80])!r} for a URL path")
    return value
