"""The client's pure rules, tested directly: no socket, no server.

``error_for_status`` and ``network_error`` read as tables (``docs/veo-api.md``, "Errors");
the provider table is data that other parts rely on; the inflater is the bound on a bomb.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from batchveo import models, redact
from batchveo.api import PROVIDERS, error_for_status
from batchveo.api.bounded import Inflater, Undecodable
from batchveo.api.download import save_video
from batchveo.api.errormap import Kind, network_error
from batchveo.api.probe import Probe
from batchveo.errors import (
    AccountError,
    ApiError,
    BadRequest,
    ContentRejected,
    ModelUnavailable,
    NotFound,
    NotSent,
    QuotaExhausted,
    RateLimited,
    StopRun,
    SubmitOutcomeUnknown,
    Transient,
    UnusableVideo,
)
from batchveo.files import FileCommitter
from tests.pipeline_helpers import SAMPLE_MP4


def google(code: int, message: str, status: str, details: list[Any] | None = None) -> bytes:
    error = {"code": code, "message": message, "status": status, "details": details or []}
    return json.dumps({"error": error}).encode()


PER_DAY = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaId": "PredictLongRunningRequestsPerDayPerProjectPerModel"}],
}
BAD_KEY = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}


@pytest.mark.parametrize(
    ("status", "kind", "body", "expected"),
    [
        (
            429,
            "submit",
            google(429, "Quota exceeded.", "RESOURCE_EXHAUSTED", [PER_DAY]),
            QuotaExhausted,
        ),
        (
            429,
            "poll",
            google(429, "Resource has been exhausted.", "RESOURCE_EXHAUSTED"),
            RateLimited,
        ),
        (
            400,
            "poll",
            google(400, "API key not valid.", "INVALID_ARGUMENT", [BAD_KEY]),
            AccountError,
        ),
        (400, "submit", google(400, "Enable billing.", "FAILED_PRECONDITION"), AccountError),
        (400, "poll", google(400, "Enable billing.", "FAILED_PRECONDITION"), BadRequest),
        (
            400,
            "submit",
            google(400, "violates usage guidelines", "INVALID_ARGUMENT"),
            ContentRejected,
        ),
        (400, "submit", google(400, "durationSeconds must be 8.", "INVALID_ARGUMENT"), BadRequest),
        (401, "poll", b'{"error": {"message": "Invalid signature", "type": "401"}}', AccountError),
        (403, "submit", b'{"error": {"message": "insufficient balance"}}', AccountError),
        (
            404,
            "submit",
            google(404, "models/x is no longer available.", "NOT_FOUND"),
            ModelUnavailable,
        ),
        (404, "poll", google(404, "Operation not found.", "NOT_FOUND"), NotFound),
        (502, "submit", b"<html>Bad Gateway</html>", SubmitOutcomeUnknown),
        (504, "submit", b"<html>Gateway Time-out</html>", SubmitOutcomeUnknown),
        (502, "poll", b"<html>Bad Gateway</html>", Transient),
        (503, "submit", google(503, "The model is overloaded.", "UNAVAILABLE"), Transient),
        (408, "download", b"", Transient),
        (302, "submit", b"", StopRun),
        (418, "submit", b"teapot", BadRequest),
    ],
)
def test_error_for_status_is_a_table(
    status: int, kind: Kind, body: bytes, expected: type[ApiError]
) -> None:
    exc = error_for_status(status, {}, body, kind)
    assert type(exc) is expected
    assert str(exc).startswith(f"HTTP {status}") and "\n" not in str(exc)


def test_retry_after_prefers_the_header_then_retryinfo_then_the_message() -> None:
    info = {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": {"seconds": 2, "nanos": 5e8},
    }
    body = google(429, "Please retry in 900ms.", "RESOURCE_EXHAUSTED", [info])
    assert _delay({"Retry-After": "7"}, body) == 7.0
    assert _delay({}, body) == 2.5
    assert _delay({}, google(429, "Please retry in 900ms.", "RESOURCE_EXHAUSTED")) == 0.9
    assert _delay({"Retry-After": "soon"}, google(429, "busy", "RESOURCE_EXHAUSTED")) is None


def _delay(headers: dict[str, str], body: bytes) -> float | None:
    exc = error_for_status(429, headers, body, "submit")
    assert isinstance(exc, RateLimited)
    return exc.retry_after_s


def test_network_error_says_whether_a_submit_left() -> None:
    disconnected = aiohttp.ServerDisconnectedError()
    written = Probe(started=True, chunks=1)
    blocked = Probe(started=True, chunks=1, first_write_blocked=True)
    assert type(network_error(disconnected, written, "submit")) is SubmitOutcomeUnknown
    resend = network_error(aiohttp.ClientConnectionResetError("closing"), blocked, "submit")
    assert isinstance(resend, NotSent) and not resend.unreachable
    unsent = network_error(TimeoutError(), Probe(), "submit")  # no pool slot in time
    assert isinstance(unsent, NotSent) and not unsent.unreachable
    assert type(network_error(disconnected, written, "poll")) is Transient  # free to repeat
    assert type(network_error(disconnected, None, "download")) is Transient
    key = "sk-secret-value-123"
    text = str(
        network_error(OSError(f"refused {key}"), None, "poll", lambda t: t.replace(key, "x"))
    )
    assert key not in text


def test_a_gzip_bomb_inflates_no_further_than_the_room_left() -> None:
    bomb = zlib.compress(b" " * (64 << 20), 9)
    packed = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gzip_bomb = packed.compress(b"{" * (64 << 20)) + packed.flush()
    assert len(Inflater("deflate").feed(bomb, 1000)) == 1000
    assert len(Inflater("gzip").feed(gzip_bomb, 1000)) == 1000
    assert Inflater("identity").feed(b"plain", 3) == b"plain"  # identity is read as it comes
    with pytest.raises(Undecodable, match="Content-Encoding br"):
        Inflater("br")
    with pytest.raises(Undecodable, match="corrupt"):
        Inflater("gzip").feed(b"\x1f\x8b not gzip at all", 1000)


def test_each_provider_is_data_the_rest_can_rely_on() -> None:
    for provider in PROVIDERS.values():
        assert set(provider.model_ids) <= set(models.MODELS), provider.name
        # A crash file must not carry the key: its variable is one redact scrubs.
        assert provider.key_variable in redact.KEY_VARIABLES, provider.name
        assert provider.submit_base.startswith("https://")


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_save_video_checks_bytes_from_any_source(tmp_path: Path) -> None:
    """The seam for a video that arrives without a response to stream (inline, say)."""
    committer = FileCommitter()
    try:
        result = await save_video(chunks_of(SAMPLE_MP4), tmp_path / "a.mp4", committer, 1 << 20)
        assert result.path.read_bytes() == SAMPLE_MP4 and result.size == len(SAMPLE_MP4)
        assert result.sha256 == hashlib.sha256(SAMPLE_MP4).hexdigest()
        with pytest.raises(UnusableVideo, match="the cap"):
            await save_video(chunks_of(SAMPLE_MP4), tmp_path / "b.mp4", committer, 100)
        with pytest.raises(Transient, match="not an MP4"):
            await save_video(chunks_of(b"<html>" * 50), tmp_path / "c.mp4", committer, 1 << 20)
        with pytest.raises(Transient, match="truncated"):
            await save_video(
                chunks_of(SAMPLE_MP4), tmp_path / "d.mp4", committer, 1 << 20, len(SAMPLE_MP4) + 1
            )
    finally:
        await committer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]  # no .part left behind
