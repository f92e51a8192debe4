"""Google credentials: found as every Google tool finds them, tokens cached, refreshed off
the loop, once per expiry or 401 however many requests wait, and never shown."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from batchveo.api.gauth import TokenSource, find_identity
from batchveo.errors import AccountError, ConfigError, NotSent
from batchveo.sim.tokens import TokenIssuer, make_service_account_key
from tests.helpers import FakeClock


@pytest.fixture(autouse=True)
def _no_metadata_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real credentials of the machine, no wait on a metadata server."""
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no user ADC file
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)


class TokenServer:
    """A real token endpoint on a socket (the simulator's issuer behind aiohttp)."""

    def __init__(self) -> None:
        self.issuer = TokenIssuer()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode()))
        status, body = self.issuer.issue(form, str(request.url))
        return web.json_response(body, status=status)

    async def __aenter__(self) -> TokenServer:
        app = web.Application()
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/token"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    async with TokenServer() as server:
        yield server


def key_file(
    server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool = True
) -> Path:
    key = make_service_account_key(server.url, project="proj-1")
    if trusted:
        server.issuer.trust(key.key_id, key.email, key.public_pem)
    path = key.write(tmp_path / "sa.json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


async def test_a_service_account_key_gets_a_token_through_google_auth(
    token_server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file(token_server, tmp_path, monkeypatch)
    identity = await asyncio.to_thread(find_identity)
    assert identity.project == "proj-1" and not identity.user_credentials
    assert identity.headers() == {}
    source = TokenSource(identity.credentials)
    first, second = await asyncio.gather(source.token(), source.token())
    assert first is second and source.refreshes == 1  # two waiters, one refresh
    assert token_server.issuer.check(f"Bearer {first.reveal()}") is None
    assert first.reveal() not in repr(first) and first.reveal() not in str(source.secrets())


async def test_a_401_burst_refreshes_once(
    token_server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file(token_server, tmp_path, monkeypatch)
    source = TokenSource((await asyncio.to_thread(find_identity)).credentials)
    stale = await source.token()
    token_server.issuer.expire_all()
    assert token_server.issuer.check(f"Bearer {stale.reveal()}") is not None
    fresh = await asyncio.gather(*(source.refreshed(stale) for _ in range(5)))
    assert source.refreshes == 2 and all(t is fresh[0] for t in fresh)
    assert token_server.issuer.check(f"Bearer {fresh[0].reveal()}") is None


async def test_credentials_the_token_endpoint_refuses_are_an_account_error(
    token_server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file(token_server, tmp_path, monkeypatch, trusted=False)
    source = TokenSource((await asyncio.to_thread(find_identity)).credentials)
    with pytest.raises(AccountError, match=r"Google refused the credentials: .*invalid_grant"):
        await source.token()


async def test_an_unreachable_token_endpoint_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with TokenServer() as server:
        key_file(server, tmp_path, monkeypatch)
    # The server is gone: nothing listens at its token_uri any more.
    source = TokenSource((await asyncio.to_thread(find_identity)).credentials)
    with pytest.raises(NotSent, match="could not reach Google's token endpoint") as caught:
        await source.token()
    assert caught.value.unreachable


class FakeCredentials:
    """Credentials whose refresh hands out numbered tokens living ``lifetime_s``."""

    def __init__(self, clock: FakeClock, lifetime_s: float) -> None:
        self.clock, self.lifetime_s = clock, lifetime_s
        self.token: str | None = None
        self.expiry: dt.datetime | None = None
        self.threads: list[threading.Thread] = []

    def refresh(self, _: Any) -> None:
        self.threads.append(threading.current_thread())
        self.token = f"token-{len(self.threads)}"
        ends = self.clock() + self.lifetime_s
        self.expiry = dt.datetime.fromtimestamp(ends, dt.UTC).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("lifetime_s", "reused_until_s"),
    [(3600.0, 3540.0), (100.0, 90.0), (10.0, 9.0)],
)
async def test_a_token_is_reused_until_a_tenth_of_its_life_or_a_minute_remains(
    lifetime_s: float, reused_until_s: float
) -> None:
    clock = FakeClock()
    creds = FakeCredentials(clock, lifetime_s)
    source = TokenSource(creds, clock=clock, refresh=lambda c: c.refresh(None))
    first = await source.token()
    clock.advance(reused_until_s - 0.01)
    assert await source.token() is first and source.refreshes == 1
    clock.advance(0.02)
    assert (await source.token()).reveal() == "token-2"
    assert all(t is not threading.main_thread() for t in creds.threads)  # off the loop


def test_no_credentials_at_all_is_one_line_saying_how_to_fix_it() -> None:
    with pytest.raises(ConfigError) as caught:
        find_identity()
    message = str(caught.value)
    assert "\n" not in message and "gcloud auth application-default login" in message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message


def test_a_missing_key_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match=r"GOOGLE_APPLICATION_CREDENTIALS=.*nope\.json"):
        find_identity()


def test_user_credentials_name_the_project_to_bill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adc = tmp_path / "adc.json"
    user = {"type": "authorized_user", "client_id": "c", "client_secret": "s"}
    adc.write_text(json.dumps({**user, "refresh_token": "r"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    with pytest.raises(ConfigError, match="no Google Cloud project: pass --project"):
        find_identity()
    identity = find_identity(project="billed-here")
    assert identity.user_credentials and identity.headers() == {
        "x-goog-user-project": "billed-here"
    }
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert find_identity().project == "from-env"
