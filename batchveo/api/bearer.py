"""The Vertex route's credential: a Google access token, for Google's own hosts only.

This is what ``transport.Credential`` is for Vertex AI, as ``providers.ApiKey`` is for
the Gemini format. What differs from a key:

* **The token changes** (it expires, a 401 asks for a new one), and requests run at the
  same time, so the credential does not hold "the" token: each request says which token
  it carries (``sending``, a context variable, as ``probe`` does), and the transport,
  which asks ``headers_for`` inside that request, sends exactly that one. So a 401 names
  the token it refused, and ``TokenSource.refreshed`` mints a new one only if nobody did.
* **Where it goes**: ``Authorization: Bearer`` (and ``x-goog-user-project`` for gcloud
  user credentials) only to the hosts the client was built for (``trust``: its Vertex
  host or hosts and its Cloud Storage host), over https or the scheme the client was
  given for that host (a local simulator). A redirect to any other host gets nothing.
* **A 401 refreshes once** (``with_token``): the request is made again, once, with a
  fresh token. A 401 means the server did not act, so this holds for a submit too. A
  second 401 is the caller's to map (the credentials are refused).
* **Scrubbing**: every token handed out so far (up to ``MAX_REMEMBERED_TOKENS``), not
  just the current one, is replaced in every text a server sends back: an old token
  echoed in an error is as secret as the new one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from yarl import URL

from batchveo.api.gauth import TokenSource
from batchveo.api.transport import Reply
from batchveo.api.urls import host_key, parse_url
from batchveo.errors import ApiError
from batchveo.redact import REDACTED, Secret

T = TypeVar("T")

MAX_REMEMBERED_TOKENS = 1024
"""Tokens kept for scrubbing: Google's live an hour, so this covers six weeks of a run."""

_IN_FLIGHT: ContextVar[tuple[object, Secret] | None] = ContextVar(
    "batchveo_bearer_token", default=None
)


class Unauthorized(ApiError):
    """A trusted host answered 401 to a request that carried a token: refresh and retry.

    Raised inside the client only (``with_token`` catches the first; the client maps the
    second to the exception the run sees), never out of it.
    """

    def __init__(self, reply: Reply):
        self.reply = reply
        super().__init__("HTTP 401 to a request with an access token", status=401)


class BearerToken:
    """Google access tokens of one ``TokenSource``, as a ``transport.Credential``."""

    def __init__(self, tokens: TokenSource, extra_headers: Mapping[str, str] | None = None):
        self._tokens = tokens
        self._extra = dict(extra_headers or {})
        self._schemes: dict[str, set[str]] = {}
        """host[:port] -> the schemes it may be reached over with the token."""
        self._handed: OrderedDict[str, Secret] = OrderedDict()
        self._scrubbed: tuple[Secret, ...] = ()
        """A snapshot of ``_handed``, replaced whole when a token is added: a large poll
        answer is scrubbed on a worker thread while the loop may hand out a new token."""

    def trust(self, base: str) -> None:
        """Let the token go to ``base``'s host (over https, or over ``base``'s own scheme)."""
        url = parse_url(base)
        if url is None or not url.raw_host:
            raise ValueError(f"not a base URL: {base[:80]!r}")
        self._schemes.setdefault(host_key(url), {"https"}).add(url.scheme)

    @contextmanager
    def sending(self, token: Secret) -> Iterator[None]:
        """The requests made inside this block (in this task) carry ``token``."""
        self._remember(token)
        mark = _IN_FLIGHT.set((self, token))
        try:
            yield
        finally:
            _IN_FLIGHT.reset(mark)

    async def with_token(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` carrying a good token; once more with a fresh one if it raises
        ``Unauthorized`` (a second ``Unauthorized`` propagates).

        The token is asked for before each attempt, so a token near its expiry is
        replaced before it is sent (``TokenSource``'s margin), off the loop.
        """
        token = await self._tokens.token()
        try:
            with self.sending(token):
                return await attempt()
        except Unauthorized:
            pass
        fresh = await self._tokens.refreshed(token)
        with self.sending(fresh):
            return await attempt()

    # ------------------------------------------------------------- transport.Credential

    def headers_for(self, url: URL) -> dict[str, str]:
        current = _IN_FLIGHT.get()
        if current is None or current[0] is not self or not self.trusts(url):
            return {}
        return {**self._extra, "Authorization": f"Bearer {current[1].reveal()}"}

    def trusts(self, url: URL) -> bool:
        schemes = self._schemes.get(host_key(url)) if url.raw_host else None
        return schemes is not None and url.scheme in schemes

    def scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = secret.scrub(text)
        return text

    def found_in(self, text: str) -> bool:
        return any(secret.found_in(text) for secret in self._secrets())

    # -------------------------------------------------------------------------------

    def _remember(self, token: Secret) -> None:
        value = token.reveal()
        if value in self._handed:
            self._handed.move_to_end(value)
            return
        self._handed[value] = token
        while len(self._handed) > MAX_REMEMBERED_TOKENS:
            self._handed.popitem(last=False)
        self._scrubbed = tuple(self._handed.values())

    def _secrets(self) -> tuple[Secret, ...]:
        return self._scrubbed + tuple(self._tokens.secrets())

    def __repr__(self) -> str:
        hosts = ", ".join(sorted(self._schemes))
        return f"BearerToken({REDACTED}, hosts=[{hosts}])"
