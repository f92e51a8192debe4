"""Notifications: what arrives at a webhook or a command, and what a failure looks like."""

from __future__ import annotations

import asyncio
import json
import shlex
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batchveo.observe.notify import USER_AGENT, ExpiryWatch, notify, redact_url

SUMMARY: dict[str, Any] = {
    "event": "finished",
    "batches": ["b1"],
    "states": {"done": 3, "failed": 1},
    "total": 4,
    "cost_usd": {"spent": 4.8, "committed": 6.4},
    "failures": [
        {"id": "j4", "batch": "b1", "state": "failed", "error_kind": "content_policy", "error": "é"}
    ],
    "output_folder": "videos",
    "exit_code": 1,
    "stop_reason": None,
    "at_risk": [],
}


@dataclass
class Hook:
    """A local webhook receiver: records requests, answers ``status``, or hangs."""

    status: int = 204
    hang: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status, text="" if self.status < 300 else "nope\n")


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()
    app = web.Application()
    app.router.add_post("/{tail:.*}", h.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    h.url = f"http://127.0.0.1:{port}/hooks/T000/SECRET-TOKEN"
    try:
        yield h
    finally:
        h.release.set()
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- webhook ---------------------------------------------------------------------------------


async def test_webhook_receives_the_summary_as_json(hook: Hook) -> None:
    assert await notify(SUMMARY, url=hook.url) == []
    [req] = hook.received
    assert json.loads(req["body"]) == SUMMARY
    assert req["path"] == "/hooks/T000/SECRET-TOKEN"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["User-Agent"] == USER_AGENT and USER_AGENT.startswith("batchveo/")


async def test_webhook_error_answer_is_reported_without_the_secret_path(hook: Hook) -> None:
    hook.status = 500
    [message] = await notify(SUMMARY, url=hook.url)
    assert "HTTP 500" in message and "nope" in message
    assert "SECRET-TOKEN" not in message and "127.0.0.1" in message


async def test_refused_connection_is_a_message_not_an_exception() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?token=SECRET-TOKEN"
    [message] = await notify(SUMMARY, url=url, timeout_s=5)
    assert message.startswith("webhook http://127.0.0.1:")
    assert "SECRET-TOKEN" not in message


async def test_webhook_timeout_is_quick_and_reported(hook: Hook) -> None:
    hook.hang = True
    started = time.monotonic()
    [message] = await notify(SUMMARY, url=hook.url, timeout_s=0.2)
    assert time.monotonic() - started < 2
    assert "no answer within 0.2s" in message


async def test_a_bad_url_is_a_message() -> None:
    [message] = await notify(SUMMARY, url="not a url")
    assert message == "webhook (unparseable URL): not an http(s) URL"
    [message] = await notify(SUMMARY, url="ftp://example.com/SECRET-TOKEN")
    assert message == "webhook ftp://example.com/...: not an http(s) URL"


def test_redact_url() -> None:
    assert redact_url("https://hooks.slack.com/services/T/B/X") == "https://hooks.slack.com/..."
    assert redact_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert redact_url("garbage") == "(unparseable URL)"


# -- command ------------------------------------------------------------------------------


async def test_command_receives_the_summary_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    assert await notify(SUMMARY, command=f"cat > {shlex.quote(str(out))}") == []
    assert json.loads(out.read_text(encoding="utf-8")) == SUMMARY


async def test_failing_command_is_reported_with_its_output() -> None:
    [message] = await notify(SUMMARY, command="echo 'mail: no such user' >&2; exit 3")
    assert message == "notify command exited with status 3: mail: no such user"


async def test_command_that_hangs_is_killed_quickly(tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    started = time.monotonic()
    [message] = await notify(
        SUMMARY, command=f"sleep 30; touch {shlex.quote(str(marker))}", timeout_s=0.2
    )
    assert time.monotonic() - started < 3
    assert message == "notify command did not finish within 0.2s (killed)"
    assert not marker.exists()


async def test_url_and_command_both_go_and_both_failures_come_back(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    messages = await notify(SUMMARY, url=url, command="exit 1", timeout_s=5)
    assert len(messages) == 2
    assert messages[0].startswith("webhook ") and messages[1].startswith("notify command")


async def test_nothing_configured_sends_nothing() -> None:
    assert await notify(SUMMARY) == []


async def test_unserialisable_summary_is_a_message() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    [message] = await notify(loop, command="exit 0")
    assert message.startswith("notification not sent")


# -- expiry warnings ----------------------------------------------------------------------------


def test_expiry_watch_tells_each_job_once() -> None:
    watch = ExpiryWatch(threshold_s=6 * 3600)
    at_risk = [
        {"id": "a", "batch": "b1", "hours_left": 5.5},
        {"id": "b", "batch": "b1", "hours_left": 10.0},
    ]
    assert [j["id"] for j in watch.due(at_risk)] == ["a"]
    assert watch.due(at_risk) == []
    at_risk[1]["hours_left"] = 5.9
    at_risk.append({"id": "c", "batch": "b2", "hours_left": 0.2})
    assert [j["id"] for j in watch.due(at_risk)] == ["b", "c"]
    assert watch.due(at_risk) == []
