"""Downloads end to end: where a video may land, and when a download is given up.

Real sockets against the simulator; where a file host must misbehave in ways the
simulator does not (a ``file://`` URI, a server that always answers 500, one that
cannot be reached), the real client is wrapped so that its downloads go there.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batchveo.api import VeoClient, resolve_provider
from batchveo.errors import ConfigError, FileRefused, UnusableVideo
from batchveo.run.context import RunConfig
from batchveo.run.downloader import DOWNLOAD_SAME_ANSWER_TRIES, DOWNLOAD_UNUSABLE_TRIES
from batchveo.run.runner import Runner, RunResult
from batchveo.sim import Simulator
from batchveo.spec import JobSpec
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import make_spec, without_posters
from tests.pipeline_helpers import (
    KEY,
    SAMPLE_MP4,
    fast_config,
    fast_sim,
    is_sim_video,
    run_batch,
)

S = JobState
DAY_S = 24 * 3600.0


class Redirected:
    """The real client, but each download goes where ``target(uri, dest)`` says (or raises
    what it raises): a file host that misbehaves. Counts the downloads tried."""

    def __init__(self, client: VeoClient, target: Callable[[str, Path], str]):
        self.client = client
        self.target = target
        self.downloads = 0
        self.on_download: Callable[[int], None] = lambda n: None

    async def submit(self, spec: JobSpec) -> str:
        return await self.client.submit(spec)

    async def poll(self, operation_name: str, model: str) -> Any:
        return await self.client.poll(operation_name, model)

    async def download(self, uri: str, dest: Path) -> Any:
        self.downloads += 1
        self.on_download(self.downloads)
        return await self.client.download(self.target(uri, dest), dest)


async def run_redirected(
    store: Store,
    sim: Simulator,
    config: RunConfig,
    target: Callable[[str, Path], str],
    *,
    stop_after_downloads: int | None = None,
) -> tuple[RunResult, int]:
    """One run whose downloads go to ``target(uri, dest)``; its result and the downloads tried.

    Bounded by a generous wall-clock limit only so that a regression fails instead of
    hanging (a download retried until the two-day retention never returns).
    """
    async with VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
        wrapped = Redirected(client, target)
        runner = Runner(store, wrapped, config, rng=random.Random(1))
        if stop_after_downloads is not None:
            limit = stop_after_downloads

            def stop(n: int) -> None:
                if n >= limit:
                    runner.request_stop("test over")

            wrapped.on_download = stop
        result = await asyncio.wait_for(runner.run(), 60)
    return result, wrapped.downloads


@asynccontextmanager
async def always_500() -> AsyncIterator[str]:
    """A file host that answers every download with the same 500; yields its base URL."""

    async def broken(request: web.Request) -> web.Response:
        body = '{"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}'
        return web.Response(status=500, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# -- where a video may land -------------------------------------------------------------


async def test_a_symlinked_folder_inside_out_cannot_take_a_video_outside_it(
    store: Store, tmp_path: Path
) -> None:
    out, elsewhere = tmp_path / "videos", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "shots").symlink_to("../elsewhere")
    specs = [make_spec("a", output_name="shots/a"), make_spec("b")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), specs)
    assert list(elsewhere.iterdir()) == []
    jobs = {j.id: j for j in await store.jobs()}
    assert {k: j.state for k, j in jobs.items()} == {"a": S.DONE, "b": S.DONE}
    # The paid video is saved all the same, under its id, and the record says where.
    assert jobs["a"].files[0]["path"] == str(out / "a.mp4") and is_sim_video(out / "a.mp4")
    assert result.exit_code == 0


async def test_a_file_where_a_job_needs_a_folder_concerns_that_job_only(
    store: Store, tmp_path: Path
) -> None:
    # Another night's database (or a person) left videos/scene.mp4; tonight's job wants a
    # folder of that name. Load cannot see it: the run must cope, for that job only.
    out = tmp_path / "videos"
    out.mkdir()
    (out / "scene.mp4").write_bytes(SAMPLE_MP4)
    tuesday = [make_spec("take", output_name="scene.mp4/take1"), make_spec("calm")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), tuesday)
    jobs = {j.id: j for j in await store.jobs()}
    assert result.exit_code == 0 and result.account_error is None
    assert {j.state for j in jobs.values()} == {S.DONE} and len(jobs) == 2
    assert jobs["take"].files[0]["path"] == str(out / "take.mp4")
    assert without_posters(p.name for p in out.iterdir()) == ["calm.mp4", "scene.mp4", "take.mp4"]
    assert (out / "scene.mp4").read_bytes() == SAMPLE_MP4  # left alone
    assert is_sim_video(out / "take.mp4") and is_sim_video(out / "calm.mp4")


async def test_an_output_path_longer_than_the_system_allows_concerns_that_job_only(
    store: Store, tmp_path: Path
) -> None:
    # Loaded before names were checked at load time: 30 folders of 150 characters.
    out = tmp_path / "videos"
    deep = "/".join(["d" * 150] * 30) + "/v"
    specs = [make_spec("deep", output_name=deep), make_spec("calm")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), specs)
    jobs = {j.id: j for j in await store.jobs()}
    assert result.exit_code == 0
    assert {k: j.state for k, j in jobs.items()} == {"deep": S.DONE, "calm": S.DONE}
    assert jobs["deep"].files[0]["path"] == str(out / "deep.mp4")
    assert without_posters(p.name for p in out.iterdir()) == ["calm.mp4", "deep.mp4"]


async def test_a_job_whose_fallback_name_fails_too_is_failed_with_the_reason(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchveo.files

    out = tmp_path / "videos"
    real_open = os.open

    def long_names_refused(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        # A file system with short names (eCryptfs allows 143 bytes): ours do not fit.
        if str(path).startswith("tiny"):
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(batchveo.files.os, "open", long_names_refused)
    specs = [make_spec("tiny", output_name="shots/tiny"), make_spec("calm")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), specs)
    tiny, calm = await store.get("tiny"), await store.get("calm")
    assert calm is not None and calm.state is S.DONE
    assert tiny is not None and tiny.state is S.FAILED and tiny.error_kind == "download"
    assert tiny.error == (
        f"cannot write {out}/shots/tiny.mp4: name too long for this file system;"
        f" its fallback name failed too: cannot write {out}/tiny.mp4: name too long for"
        " this file system"
    )
    assert result.exit_code == 1 and result.account_error is None


# -- when a download is given up --------------------------------------------------------


async def test_a_video_uri_that_can_never_be_fetched_fails_and_the_run_ends(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "videos"
    await store.add_jobs([make_spec("local")])
    async with fast_sim() as sim:
        result, tries = await run_redirected(
            store, sim, fast_config(out), lambda uri, dest: "file:///etc/passwd"
        )
        stats = sim.stats()
    job = await store.get("local")
    assert job is not None and job.state is S.FAILED and job.error_kind == "download"
    assert "file" in (job.error or "") and tries == DOWNLOAD_UNUSABLE_TRIES
    assert stats["requests"]["download"] == {} and result.exit_code == 1
    assert not out.exists() or list(out.iterdir()) == []


async def test_an_unusable_video_fails_after_a_few_tries(store: Store, tmp_path: Path) -> None:
    def redirect_loop(uri: str, dest: Path) -> str:
        raise UnusableVideo("download gave more than 5 redirects")

    await store.add_jobs([make_spec("loop")])
    async with fast_sim() as sim:
        result, tries = await run_redirected(store, sim, fast_config(tmp_path / "v"), redirect_loop)
    job = await store.get("loop")
    assert job is not None and job.state is S.FAILED and job.error_kind == "download"
    assert "redirects" in (job.error or "") and tries == DOWNLOAD_UNUSABLE_TRIES
    assert result.exit_code == 1


async def test_the_same_answer_again_and_again_fails_the_download_then_retry_fetches_it(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "videos"
    await store.add_jobs([make_spec("broken"), make_spec("fine")])
    async with fast_sim() as sim, always_500() as broken_host:
        result, tries = await run_redirected(
            store, sim, fast_config(out),
            lambda uri, dest: broken_host + "/file" if dest.stem == "broken" else uri,
        )  # fmt: skip
        broken, fine = await store.get("broken"), await store.get("fine")
        assert fine is not None and fine.state is S.DONE
        assert broken is not None and broken.state is S.FAILED and broken.error_kind == "download"
        assert "HTTP 500" in (broken.error or "") and result.exit_code == 1
        assert tries == DOWNLOAD_SAME_ANSWER_TRIES + 1

        # `batchveo retry`: the video is paid for and still on the server: it is
        # downloaded again, not generated (and billed) again.
        assert await store.requeue([S.FAILED]) == ["broken"]
        broken = await store.get("broken")
        assert broken is not None and broken.state is S.GENERATED and broken.error is None
        result, _ = await run_redirected(store, sim, fast_config(out), lambda uri, dest: uri)
        stats = sim.stats()
    assert result.exit_code == 0 and stats["requests"]["submit"] == {"200": 2}
    assert without_posters(p.name for p in out.iterdir()) == ["broken.mp4", "fine.mp4"]


async def test_a_stray_value_error_in_a_download_is_a_bug_not_a_failed_video(
    store: Store, tmp_path: Path
) -> None:
    # A ValueError from deep inside the client (yarl, aiohttp) says nothing about the
    # video: it must not fail a paid video for good as "download". It is a bug: the run
    # stops and says so, and the video stays generated for the next run to fetch.
    def broken(uri: str, dest: Path) -> str:
        raise ValueError("Invalid URL: port can't be converted to integer")

    await store.add_jobs([make_spec("paid")])
    async with fast_sim() as sim:
        with pytest.raises(ValueError, match="Invalid URL"):
            await run_redirected(store, sim, fast_config(tmp_path / "v"), broken)
    job = await store.get("paid")
    assert job is not None and job.state is S.GENERATED and job.error_kind is None


async def test_an_unreachable_file_host_is_an_outage_not_the_videos_fault(
    store: Store, tmp_path: Path
) -> None:
    await store.add_jobs([make_spec("waiting")])
    async with fast_sim() as sim:
        # A port nobody listens on: every download is refused, with the same words.
        result, tries = await run_redirected(
            store, sim, fast_config(tmp_path / "v"),
            lambda uri, dest: "http://127.0.0.1:9/file",
            stop_after_downloads=2 * DOWNLOAD_SAME_ANSWER_TRIES,
        )  # fmt: skip
    job = await store.get("waiting")
    assert tries >= 2 * DOWNLOAD_SAME_ANSWER_TRIES
    assert job is not None and job.state is S.GENERATED and result.exit_code == 75


async def test_retry_of_a_failed_download_past_the_retention_generates_it_again(
    tmp_path: Path,
) -> None:
    now = [1_000_000.0]
    store = await Store.open(tmp_path / "jobs.db", clock=lambda: now[0])
    try:
        await store.add_jobs([make_spec("late"), make_spec("policy")])
        for job_id in ("late", "policy"):
            await store.transition(job_id, S.PENDING, S.SUBMITTING)
        await store.transition("policy", S.SUBMITTING, S.FAILED, error_kind="content_policy")
        await store.transition("late", S.SUBMITTING, S.RUNNING, operation="op")
        await store.transition(
            "late", S.RUNNING, S.GENERATED, video_uris=["http://x/v"], generated_at=now[0]
        )
        await store.transition("late", S.GENERATED, S.FAILED, error_kind="download")
        now[0] += 2 * DAY_S + 1  # the video is gone from the server by now
        assert sorted(await store.requeue([S.FAILED])) == ["late", "policy"]
        assert {j.id: j.state for j in await store.jobs()} == {
            "late": S.PENDING, "policy": S.PENDING,
        }  # fmt: skip
    finally:
        await store.close()


# -- expiry: the server's word and the recorded times -----------------------------------


async def test_a_clock_jump_does_not_expire_a_video_the_server_still_has(tmp_path: Path) -> None:
    # The runner's clock jumps three days ahead right after the video is made; the
    # service still has it. The first download is cut short: a transient failure.
    skew = [0.0]
    clock = lambda: time.time() + skew[0]  # noqa: E731 - the run's clock, made to jump
    store = await Store.open(tmp_path / "jobs.db", clock=clock)
    out = tmp_path / "v"

    def observer(event: str, details: dict[str, object]) -> None:
        if event == "generated":
            skew[0] += 3 * DAY_S

    try:
        async with fast_sim(retention_s=2 * DAY_S) as sim:
            await store.add_jobs([make_spec("jumped", "cut once [sim:truncatedx1]")])
            config = fast_config(out, retention_s=2 * DAY_S)
            result = await run_batch(store, sim, config, observer=observer, clock=clock)
            stats = sim.stats()
        job = await store.get("jumped")
        assert job is not None and job.state is S.DONE, job
        assert stats["truncated_downloads"] == 1 and stats["requests"]["download"] == {"200": 2}
        assert result.exit_code == 0 and is_sim_video(out / "jumped.mp4")
    finally:
        await store.close()


async def test_past_the_retention_a_file_refused_ends_expired(tmp_path: Path) -> None:
    skew = [0.0]
    clock = lambda: time.time() + skew[0]  # noqa: E731 - the run's clock, made to jump
    store = await Store.open(tmp_path / "jobs.db", clock=clock)

    def observer(event: str, details: dict[str, object]) -> None:
        if event == "generated":
            skew[0] += 3 * DAY_S

    def refused(uri: str, dest: Path) -> str:
        raise FileRefused("HTTP 403 PERMISSION_DENIED: file expired", status=403)

    try:
        await store.add_jobs([make_spec("gone")])
        async with fast_sim() as sim, VeoClient(resolve_provider("gptproto", sim.url), KEY) as c:
            wrapped = Redirected(c, refused)
            runner = Runner(
                store, wrapped, fast_config(tmp_path / "v"), rng=random.Random(1),
                observer=observer, clock=clock,
            )  # fmt: skip
            result = await asyncio.wait_for(runner.run(), 60)
        job = await store.get("gone")
        assert job is not None and job.state is S.EXPIRED and job.error_kind == "expired"
        assert wrapped.downloads == 1 and result.exit_code == 1
    finally:
        await store.close()


async def test_past_the_retention_a_download_that_keeps_failing_is_not_retried_forever(
    tmp_path: Path,
) -> None:
    skew = [0.0]
    clock = lambda: time.time() + skew[0]  # noqa: E731 - the run's clock, made to jump
    store = await Store.open(tmp_path / "jobs.db", clock=clock)

    def observer(event: str, details: dict[str, object]) -> None:
        if event == "generated":
            skew[0] += 3 * DAY_S

    try:
        async with fast_sim() as sim:
            await store.add_jobs([make_spec("cut", "always cut [sim:truncatedx999]")])
            config = fast_config(tmp_path / "v")
            run = run_batch(store, sim, config, observer=observer, clock=clock)
            result = await asyncio.wait_for(run, 60)
            stats = sim.stats()
        job = await store.get("cut")
        # The server never said the file is gone: not expired, but not retried forever.
        assert job is not None and job.state is S.FAILED and job.error_kind == "download"
        assert "truncated" in (job.error or "") and "retention" in (job.error or "")
        assert stats["truncated_downloads"] == DOWNLOAD_SAME_ANSWER_TRIES
        assert result.exit_code == 1
    finally:
        await store.close()


# -- an output folder that cannot be written --------------------------------------------


async def test_a_read_only_output_disk_is_found_before_anything_is_sent(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only mount: os.access may still say writable (and root may write anywhere
    # else), so only creating a file tells. Every file creation in batchveo.files fails
    # as a read-only file system fails it.
    import batchveo.files

    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(batchveo.files.os, "open", read_only)
    out = tmp_path / "videos"
    out.mkdir()
    async with fast_sim() as sim:
        with pytest.raises(ConfigError) as caught:
            await run_batch(store, sim, fast_config(out), [make_spec("a"), make_spec("b")])
        stats = sim.stats()
    assert str(caught.value) == f"--out {out}: cannot write there (Read-only file system)"
    assert stats["requests"]["submit"] == {}
    assert {j.state for j in await store.jobs()} == {S.PENDING}


async def test_an_output_folder_nobody_may_write_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # Through the real CLI, on a folder the kernel refuses files in even to root.
    from tests.test_files import immutable
    from tests.test_unattended import FAST, cli, manifest

    manifest(tmp_path / "night.yaml", 2)
    (tmp_path / "videos").mkdir()
    async with fast_sim() as sim:
        with immutable(tmp_path / "videos"):
            code, _, err = await cli(tmp_path, sim, "run", "night.yaml", "--out", "videos", *FAST)
        stats = sim.stats()
    assert code == 2, err
    assert (
        err.splitlines()[-1]
        == "batchveo: --out videos: cannot write there (Operation not permitted)"
    )
    assert "Traceback" not in err and stats["requests"]["submit"] == {}
    assert list((tmp_path / "videos").iterdir()) == []
