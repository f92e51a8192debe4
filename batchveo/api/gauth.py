"""Google credentials for the Vertex route: who we are, and a bearer token to prove it.

Credentials are Application Default Credentials, found by ``google-auth`` exactly as
every Google tool finds them: a service-account key file named by
``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials
(``gcloud auth application-default login``), or the metadata server of a Google Cloud
machine. batchveo adds no flag of its own for tokens: a key file whose ``token_uri``
points at a local server is how the simulator and the tests hand them out.

Why a token source of our own around the credentials:

* **Refresh is blocking I/O** (an HTTPS POST to the token endpoint): it runs on a worker
  thread, never on the event loop, and one refresh at a time however many requests
  wait for it.
* **When to refresh.** google-auth's ``valid`` treats a token as stale several minutes
  before it expires, which for a short-lived token would mean a new token per request.
  Here a token is reused until less than a tenth of its lifetime, and at most 60 s,
  remains.
* **A 401 refreshes once.** ``refreshed(stale)`` mints a new token unless another
  request already did since ``stale`` was handed out, so a burst of 401s costs one
  refresh.
* **The token is a secret** like the API key: it is handed out as a ``redact.Secret``,
  and every message this module builds is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchveo.errors import AccountError, ConfigError, NotSent
from batchveo.redact import Secret

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN_MAX_S = 60.0
"""Refresh when less than this (or a tenth of the token's lifetime, if less) remains."""
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
HOW_TO_FIX = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service-account key file"
)


@dataclass(frozen=True)
class GoogleIdentity:
    """The credentials found, the project requests are made for, and their kind."""

    credentials: Any
    """A ``google.auth.credentials.Credentials`` (typed loosely: google-auth is untyped)."""
    project: str
    user_credentials: bool
    """gcloud user credentials: requests then name the project to bill in
    ``x-goog-user-project`` (service accounts belong to a project already)."""

    def headers(self) -> dict[str, str]:
        """Headers every Vertex and Cloud Storage request carries besides the token."""
        return {"x-goog-user-project": self.project} if self.user_credentials else {}


def find_identity(
    project: str | None = None, env: Mapping[str, str] = os.environ
) -> GoogleIdentity:
    """Application Default Credentials and the project; ConfigError (one line) if there
    are none or they cannot be used. Blocking (it may ask the metadata server)."""
    import google.auth
    import google.auth.exceptions
    from google.oauth2 import credentials as user_credentials

    try:
        credentials, found_project = google.auth.default(scopes=[SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as e:
        where = env.get("GOOGLE_APPLICATION_CREDENTIALS")
        looked = (
            f"GOOGLE_APPLICATION_CREDENTIALS={where}"
            if where
            else "GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default credentials"
            " and the metadata server"
        )
        detail = " ".join(str(e).split())[:200]
        raise ConfigError(
            f"no usable Google credentials (looked at {looked}: {detail}); {HOW_TO_FIX}"
        ) from None
    chosen = project or env.get(PROJECT_ENV, "").strip() or found_project
    if not chosen:
        raise ConfigError(
            f"no Google Cloud project: pass --project or set {PROJECT_ENV} (the credentials"
            " name none)"
        )
    is_user = isinstance(credentials, user_credentials.Credentials)
    return GoogleIdentity(credentials, str(chosen), is_user)


Refresh = Callable[[Any], None]
"""Refreshes credentials in place (blocking); by default with google-auth's requests transport."""


def _refresh_with_requests(credentials: Any) -> None:
    import google.auth.transport.requests

    credentials.refresh(google.auth.transport.requests.Request())


class TokenSource:
    """Hands out a cached access token, refreshing it off the loop when it nears expiry."""

    def __init__(
        self,
        credentials: Any,
        *,
        clock: Callable[[], float] = time.time,
        refresh: Refresh = _refresh_with_requests,
    ):
        self._credentials = credentials
        self._clock = clock
        self._refresh = refresh
        self._lock = asyncio.Lock()
        self._token: Secret | None = None
        self._expires_at = 0.0
        self._margin_s = 0.0
        self.refreshes = 0
        """Tokens minted so far (for the tests and the benchmark)."""

    async def token(self) -> Secret:
        """A token good for a while yet (refreshed first if it is not)."""
        token = self._token
        if token is not None and self._fresh():
            return token
        async with self._lock:
            if self._token is None or not self._fresh():
                await self._mint()
            assert self._token is not None
            return self._token

    async def refreshed(self, stale: Secret) -> Secret:
        """After a 401 on ``stale``: a new token, unless one was minted meanwhile."""
        async with self._lock:
            if self._token is None or self._token is stale:
                await self._mint()
            assert self._token is not None
            return self._token

    def secrets(self) -> list[Secret]:
        """The token handed out now, to scrub out of texts (none before the first)."""
        return [self._token] if self._token is not None else []

    def _fresh(self) -> bool:
        return self._expires_at - self._clock() > self._margin_s

    async def _mint(self) -> None:
        import google.auth.exceptions

        started = self._clock()
        try:
            await asyncio.to_thread(self._refresh, self._credentials)
        except google.auth.exceptions.RefreshError as e:
            message = f"Google refused the credentials: {self._clean(e)}; {HOW_TO_FIX}"
            raise AccountError(message) from None
        except google.auth.exceptions.TransportError as e:
            # Nothing of the request that wanted the token was sent.
            raise NotSent(
                f"could not reach Google's token endpoint: {self._clean(e)}", unreachable=True
            ) from None
        value = getattr(self._credentials, "token", None)
        if not isinstance(value, str) or not value:
            raise AccountError("Google's token endpoint gave no access token")
        self._token = Secret(value)
        self._expires_at = _epoch(getattr(self._credentials, "expiry", None), started)
        lifetime_s = max(0.0, self._expires_at - started)
        self._margin_s = min(REFRESH_MARGIN_MAX_S, lifetime_s / 10)
        self.refreshes += 1

    def _clean(self, e: Exception) -> str:
        text = " ".join(str(e).split())[:300]
        for secret in self.secrets():
            text = secret.scrub(text)
        return text


def _epoch(expiry: dt.datetime | None, now: float) -> float:
    """google-auth's naive-UTC ``expiry`` as a timestamp; an hour from now if it gave none."""
    if expiry is None:
        return now + 3600.0
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.UTC)
    return expiry.timestamp()
