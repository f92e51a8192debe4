"""The client against a hostile server (``tests.hostile_server``), over real sockets.

Each test gives the client small caps and the server bodies a few times larger, and checks
that the bound holds the way a user would notice: the exception the runner gets, no file left
on disk, the server stopped short of what it meant to send, and the test process never held
what a bomb inflates to (``tracemalloc`` peak).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from batchveo.api import VeoClient, resolve_provider
from batchveo.errors import (
    ApiError,
    MalformedAnswer,
    SubmitOutcomeUnknown,
    UnusableVideo,
)
from batchveo.redact import REDACTED
from tests.helpers import make_spec
from tests.hostile_server import MODEL, SAMPLE_MP4, HostileServer, MiB, gzip_bomb

KEY = "sk-hostile-5b7e0c2d9a4f-SECRET"
JSON_CAP = 256 * 1024
VIDEO_CAP = 2 * MiB
BIG = 64 * MiB  # what the server offers: many times the caps
MEMORY_BOUND = 12 * MiB  # far below BIG: the client did not hold what it was offered
T = TypeVar("T")


@asynccontextmanager
async def hostile(**server: Any) -> AsyncIterator[tuple[HostileServer, VeoClient]]:
    server.setdefault("huge_bytes", BIG)
    server.setdefault("bomb_bytes", BIG)
    async with HostileServer(key=KEY, **server) as srv:
        client = VeoClient(
            resolve_provider("custom", srv.url),
            KEY,
            max_json_bytes=JSON_CAP,
            max_video_bytes=VIDEO_CAP,
            request_timeout_s=30,
        )
        async with client:
            yield srv, client


async def peak_bytes(aw: Awaitable[T]) -> tuple[T | ApiError, int]:
    """The result (or ApiError) of ``aw`` and the most memory Python held meanwhile."""
    tracemalloc.start()
    try:
        try:
            result: T | ApiError = await aw
        except ApiError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def check(result: object, cls: type[ApiError], *words: str) -> ApiError:
    assert type(result) is cls, f"expected {cls.__name__}, got {result!r}"
    assert isinstance(result, ApiError)
    text = str(result)
    assert KEY not in text and KEY not in repr(result) and "\n" not in text
    for word in words:
        assert word in text, text
    return result


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


@pytest.fixture(autouse=True, scope="module")
def _bombs_built_before_measuring() -> None:
    """The server's bombs are built once, outside any measurement."""
    gzip_bomb(BIG, f'{{"name": "models/{MODEL}/operations/op-1", "pad": "'.encode())
    gzip_bomb(BIG, b'{"name": "operations/op-1", "done": false, "pad": "')
    gzip_bomb(BIG, SAMPLE_MP4[:64])


# ------------------------------------------------------------------------------ JSON answers


@pytest.mark.parametrize("mode", ["huge_json", "huge_json_length", "gzip_bomb"])
async def test_an_oversized_submit_answer_is_not_read_and_its_outcome_is_unknown(
    mode: str,
) -> None:
    async with hostile(submit=mode) as (srv, client):
        result, peak = await peak_bytes(client.submit(make_spec("j")))
        check(result, SubmitOutcomeUnknown, "more than 262144 bytes", "not resent")
        assert srv.requests["submit"] == 1
        assert srv.bytes_sent["submit"] < BIG // 2
    assert peak < MEMORY_BOUND


@pytest.mark.parametrize("mode", ["huge_json", "gzip_bomb"])
async def test_an_oversized_poll_answer_is_malformed(mode: str) -> None:
    async with hostile(poll=mode) as (srv, client):
        result, peak = await peak_bytes(client.poll("operations/op-1", MODEL))
        check(result, MalformedAnswer, "more than 262144 bytes")
        assert srv.bytes_sent["poll"] < BIG // 2
    assert peak < MEMORY_BOUND


async def test_a_compressed_answer_within_the_cap_is_fine() -> None:
    async with hostile(submit="gzip_json") as (_, client):
        assert await client.submit(make_spec("j")) == f"models/{MODEL}/operations/op-1"


# ------------------------------------------------------------------------------ videos


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("huge_length", ("Content-Length",)),
        ("huge_chunked", ("more than",)),
        ("gzip_bomb", ("Content-Encoding gzip",)),
        ("brotli", ("Content-Encoding br",)),
    ],
)
async def test_a_video_over_the_cap_or_encoded_is_unusable(
    tmp_path: Path, mode: str, words: tuple[str, ...]
) -> None:
    async with hostile() as (srv, client):
        dest = tmp_path / "out" / "v.mp4"
        result, peak = await peak_bytes(client.download(srv.video_url(mode), dest))
        check(result, UnusableVideo, *words)
        assert srv.bytes_sent[f"video:{mode}"] < BIG // 2
    assert files_in(tmp_path) == []
    assert peak < MEMORY_BOUND


async def test_a_video_exactly_at_the_cap_is_kept(tmp_path: Path) -> None:
    async with HostileServer(key=KEY) as srv:
        provider = resolve_provider("custom", srv.url)
        async with VeoClient(provider, KEY, max_video_bytes=len(SAMPLE_MP4)) as client:
            result = await client.download(srv.video_url("ok"), tmp_path / "v.mp4")
    assert result.size == len(SAMPLE_MP4) and files_in(tmp_path) == ["v.mp4"]


# ------------------------------------------------------------------------------ video URIs


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("file:///etc/passwd", ("not an http(s) URL", "file")),
        ("ftp://files.example/v.mp4", ("not an http(s) URL", "ftp")),
        ("https:///no-host", ("not an http(s) URL",)),
        ("http://[::1/v.mp4", ("not an http(s) URL",)),
        ("http://host:99999/v.mp4", ("not an http(s) URL",)),
    ],
)
async def test_a_video_uri_that_is_not_http_is_unusable(
    tmp_path: Path, uri: str, words: tuple[str, ...]
) -> None:
    async with hostile() as (_, client):
        result, _ = await peak_bytes(client.download(uri, tmp_path / "v.mp4"))
        check(result, UnusableVideo, *words)
    assert files_in(tmp_path) == []


async def test_a_polled_file_uri_is_never_opened(tmp_path: Path) -> None:
    async with hostile(poll="file_uri") as (_, client):
        status = await client.poll("operations/op-1", MODEL)
        (uri,) = status.video_uris
        result, _ = await peak_bytes(client.download(uri, tmp_path / "v.mp4"))
        check(result, UnusableVideo, "not an http(s) URL")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("redirect_file", ("redirect to a non-http(s) URL", "file")),
        ("redirect_loop", ("redirects",)),
    ],
)
async def test_redirects_that_never_end_in_a_video_are_unusable(
    tmp_path: Path, mode: str, words: tuple[str, ...]
) -> None:
    async with hostile() as (srv, client):
        result, _ = await peak_bytes(client.download(srv.video_url(mode), tmp_path / "v.mp4"))
        check(result, UnusableVideo, *words)
        assert srv.requests[f"video:{mode}"] == (6 if mode == "redirect_loop" else 1)
    assert files_in(tmp_path) == []


# ------------------------------------------------------------------------------ the key


async def test_an_operation_name_holding_the_key_is_never_returned() -> None:
    """It cannot be stored or polled without putting the key in the database and a URL:
    the operation may exist, so the outcome is unknown (the user decides)."""
    async with hostile(submit="key_in_name") as (srv, client):
        result, _ = await peak_bytes(client.submit(make_spec("j")))
        check(result, SubmitOutcomeUnknown, "holds the API key", REDACTED, "not resent")
        assert srv.requests["submit"] == 1 and srv.requests["poll"] == 0


async def test_a_key_in_a_video_uri_query_is_stripped_before_it_is_returned(
    tmp_path: Path,
) -> None:
    async with hostile(poll="key_in_uri") as (srv, client):
        status = await client.poll("operations/op-1", MODEL)
        assert status.video_uris == (f"{srv.video_url('ok')}?alt=media",)
        result = await client.download(status.video_uris[0], tmp_path / "v.mp4")
        assert result.size == len(SAMPLE_MP4)
        # Even a URI stored by an older version is cleaned before it is requested.
        await client.download(f"{srv.video_url('ok')}?key={KEY}", tmp_path / "w.mp4")
        assert srv.urls_with_key == []


async def test_a_key_elsewhere_in_a_video_uri_makes_the_answer_malformed() -> None:
    async with hostile(poll="key_in_uri_path") as (_, client):
        result, _ = await peak_bytes(client.poll("operations/op-1", MODEL))
        check(result, MalformedAnswer, "holds the API key", REDACTED)


async def test_a_redirect_carrying_the_key_is_followed_without_it(tmp_path: Path) -> None:
    async with hostile() as (srv, client):
        result = await client.download(srv.video_url("redirect_with_key"), tmp_path / "v.mp4")
        assert result.size == len(SAMPLE_MP4)
        assert srv.requests["video:ok"] == 1 and srv.urls_with_key == []


@pytest.mark.parametrize("mode", ["key_in_texts", "key_in_filtered"])
async def test_server_texts_in_an_operation_status_are_scrubbed(mode: str) -> None:
    async with hostile(poll=mode) as (_, client):
        status = await client.poll("operations/op-1", MODEL)
    texts = [status.error_message or "", *status.filtered_reasons, *status.video_uris]
    assert status.state == ("failed" if mode == "key_in_texts" else "filtered")
    assert all(KEY not in t for t in texts) and any(REDACTED in t for t in texts)
    if mode == "key_in_filtered":
        assert status.filtered_reasons[1] == "58061214"


@pytest.mark.parametrize(("submit", "poll"), [("key_in_name", "done"), ("ok", "key_in_uri")])
async def test_a_key_echoing_server_gets_the_key_into_no_row_and_no_url(
    tmp_path: Path, submit: str, poll: str
) -> None:
    """End to end: whatever the server echoes, the key reaches neither the database (and
    so no export or report) nor any URL the run requests."""
    from batchveo.run.runner import Runner
    from batchveo.store import Store
    from tests.pipeline_helpers import KEY as RUN_KEY
    from tests.pipeline_helpers import fast_config

    store = await Store.open(tmp_path / "jobs.db")
    try:
        await store.add_jobs([make_spec("echo")])
        async with HostileServer(submit=submit, poll=poll) as srv:
            provider = resolve_provider("custom", srv.url)
            async with VeoClient(provider, RUN_KEY) as client:
                await Runner(store, client, fast_config(tmp_path / "v")).run()
            assert srv.urls_with_key == []
        job = await store.get("echo")
        assert job is not None
        expected = "uncertain" if submit == "key_in_name" else "done"
        assert job.state.value == expected
    finally:
        await store.close()
    for path in tmp_path.glob("jobs.db*"):
        assert RUN_KEY.encode() not in path.read_bytes(), path.name


# ------------------------------------------------------------------------------ silence, gateways


async def test_a_submit_that_never_answers_is_outcome_unknown() -> None:
    async with HostileServer(submit="never_answers") as srv:
        provider = resolve_provider("custom", srv.url)
        async with VeoClient(provider, KEY, request_timeout_s=0.2) as client:
            result, _ = await peak_bytes(client.submit(make_spec("j")))
        check(result, SubmitOutcomeUnknown, "may have reached the server")
        assert srv.requests["submit"] == 1  # sent once, never again


@pytest.mark.parametrize("mode", ["502", "504"])
async def test_a_gateway_page_on_submit_is_outcome_unknown(mode: str) -> None:
    async with hostile(submit=mode) as (srv, client):
        result, _ = await peak_bytes(client.submit(make_spec("j")))
        check(result, SubmitOutcomeUnknown, f"HTTP {mode}", "not resent")
        assert srv.requests["submit"] == 1


async def test_a_refused_project_and_a_refused_file(tmp_path: Path) -> None:
    from batchveo.errors import AccountError, FileRefused

    async with hostile(submit="precondition") as (srv, client):
        result, _ = await peak_bytes(client.submit(make_spec("j")))
        check(result, AccountError, "FAILED_PRECONDITION", "location")
        result, _ = await peak_bytes(
            client.download(srv.video_url("forbidden"), tmp_path / "v.mp4")
        )
        check(result, FileRefused, "HTTP 403 PERMISSION_DENIED")
