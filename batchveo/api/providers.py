"""Who the client talks to, and where the API key may go.

A provider is data: its hosts, the environment variable its key comes from, and the model
ids its documentation lists (``docs/veo-api.md``, "Providers"). Adding one that speaks the
Gemini v1beta format is one entry in ``PROVIDERS``.

**The key** lives in a redacting wrapper (``ApiKey``), travels only in the
``x-goog-api-key`` header (never ``?key=``), and only to the provider's own hosts:
downloads follow redirects by hand and drop the key for any other host (signed storage
URLs). A base URL with a query or user info is refused, and the message shows neither.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from yarl import URL

from batchveo.api.texts import show_url
from batchveo.api.urls import host_key, plain_base_url
from batchveo.errors import ConfigError
from batchveo.redact import REDACTED, Secret

KEY_HEADER = "x-goog-api-key"
"""The one place the API key travels (docs/veo-api.md, "Providers")."""
KEY_VARIABLE = "BATCHVEO_API_KEY"
"""Read before the provider's own variable, so one name works for every provider."""
CUSTOM = "custom"
"""The provider name for a server given by URL only (``--base-url``: the simulator, a proxy)."""
CUSTOM_KEY_VARIABLE = "GPTPROTO_API_KEY"
"""Where a custom server's key comes from (after ``BATCHVEO_API_KEY``): most often it stands
in for the reseller."""


@dataclass(frozen=True)
class Provider:
    """One service: where submits and polls go, and who may see the key."""

    name: str
    submit_base: str
    query_base: str
    key_variable: str = CUSTOM_KEY_VARIABLE
    """The provider's own environment variable for its key (after ``BATCHVEO_API_KEY``)."""
    model_ids: tuple[str, ...] = ()
    """The model ids the provider's documentation lists (informational: every id in
    ``models.MODELS`` is sent as asked, and a retired one stops the run with the service's
    own 404). Empty for a custom server, which may serve anything."""

    def trusted_hosts(self) -> frozenset[str]:
        """host[:port] of the provider's own servers: the only ones given the key."""
        return frozenset(host_key(URL(b)) for b in (self.submit_base, self.query_base))

    def trusts(self, url: URL) -> bool:
        """Whether the key may go to ``url``: a provider host, never downgraded to http."""
        if host_key(url) not in self.trusted_hosts():
            return False
        schemes = {URL(b).scheme for b in (self.submit_base, self.query_base)}
        return url.scheme == "https" or url.scheme in schemes


_GEMINI = "https://generativelanguage.googleapis.com"
_PREVIEW_IDS = ("veo-3.1-generate-preview", "veo-3.1-fast-generate-preview")

PROVIDERS: Mapping[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "gptproto",
            "https://gptproto.com",
            "https://api.gptproto.com",
            key_variable="GPTPROTO_API_KEY",
            model_ids=_PREVIEW_IDS,
        ),
        Provider(
            "gemini",
            _GEMINI,
            _GEMINI,
            key_variable="GEMINI_API_KEY",
            model_ids=(*_PREVIEW_IDS, "veo-3.1-lite-generate-preview"),
        ),
    )
}
"""The providers known by name; ``gptproto`` is the default."""


def resolve_provider(name: str = "gptproto", base_url: str | None = None) -> Provider:
    """The endpoints for ``name``; ``base_url`` points submit, poll and files at one server."""
    if name not in (*PROVIDERS, CUSTOM):
        known = ", ".join([*PROVIDERS, CUSTOM])
        raise ConfigError(f"unknown provider {name!r} (known: {known})")
    if base_url:
        base = _check_base_url(base_url)
        known_provider = PROVIDERS.get(name)
        if known_provider is None:
            return Provider(name, base, base)
        return replace(known_provider, submit_base=base, query_base=base)
    if name == CUSTOM:
        raise ConfigError("provider 'custom' needs a base URL (--base-url or BATCHVEO_BASE_URL)")
    return PROVIDERS[name]


def _check_base_url(base_url: str) -> str:
    """The base URL, refused when it holds anything but scheme, host, port and path.

    A query (``?key=``) or user info is where a secret travels: never accepted, and never
    shown in the message (it goes to stderr, so to cron.log).
    """
    checked = plain_base_url(base_url)
    if checked is None:
        raise ConfigError(
            f"base URL must look like https://host[:port], got {show_url(base_url.strip())!r} "
            "(query and user info not shown; the key goes in BATCHVEO_API_KEY, never in a URL)"
        )
    return checked


def resolve_api_key(provider_name: str, env: Mapping[str, str] = os.environ) -> str:
    """BATCHVEO_API_KEY, else the provider's own variable; ConfigError naming both."""
    known = PROVIDERS.get(provider_name)
    names = [KEY_VARIABLE, known.key_variable if known is not None else CUSTOM_KEY_VARIABLE]
    for var in names:
        key = env.get(var, "").strip()
        if key:
            if any(c.isspace() or not c.isprintable() for c in key):
                raise ConfigError(f"{var} contains whitespace or control characters")
            return key
    raise ConfigError(f"no API key: set {' or '.join(names)} in the environment")


class ApiKey:
    """The key of one provider: a header for its own hosts, scrubbed from every text.

    This is the Gemini format's credential (``transport.Credential``); the transport asks
    it which headers a URL gets and scrubs every text a server sends through it.
    """

    __slots__ = ("_provider", "_secret")

    def __init__(self, provider: Provider, key: str):
        self._provider = provider
        self._secret = Secret(key)

    def headers_for(self, url: URL) -> dict[str, str]:
        return {KEY_HEADER: self._secret.reveal()} if self.trusts(url) else {}

    def trusts(self, url: URL) -> bool:
        return self._provider.trusts(url)

    def scrub(self, text: str) -> str:
        return self._secret.scrub(text)

    def found_in(self, text: str) -> bool:
        return self._secret.found_in(text)

    def __repr__(self) -> str:
        return f"ApiKey({self._provider.name}, {REDACTED})"
