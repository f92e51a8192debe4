"""Unattended use, through the real CLI: the run lock, --max-runtime, money, logs, notifications."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from batchveo.sim import Simulator
from tests.helpers import db_states as states
from tests.helpers import wait_until
from tests.pipeline_helpers import KEY, fast_sim

FAST = ["--rpm", "0", "--first-poll", "0.02s", "--poll-interval", "0.02s"]


def manifest(path: Path, n: int, *, budget: float | None = None) -> Path:
    lines = ["defaults:", "  model: veo-3.1-fast-generate-preview"]  # $0.15/s: $1.20 a job
    if budget is not None:
        lines.append(f"  budget: {budget}")
    lines.append("jobs:")
    lines += [f"  - id: j{i:02d}\n    prompt: unattended prompt {i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


async def cli(tmp: Path, sim: Simulator | None, *args: str, wait: bool = True) -> Any:
    env = dict(os.environ, BATCHVEO_API_KEY=KEY, BATCHVEO_DB=str(tmp / "jobs.db"))
    if sim is not None:
        env["BATCHVEO_BASE_URL"] = sim.url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batchveo", *args, cwd=tmp, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    if not wait:
        return proc
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local server that records every JSON body posted to it."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


async def status(tmp: Path) -> dict[str, Any]:
    code, out, err = await cli(tmp, None, "status", "--json")
    assert code == 0, err
    return json.loads(out)


async def test_a_second_run_on_the_same_database_exits_3(tmp_path: Path) -> None:
    manifest(tmp_path / "m.yaml", 6)
    # Long generations: the first run cannot finish (and free the lock) before it is asked.
    async with fast_sim(generation_s="60,60") as sim:
        first = await cli(tmp_path, sim, "run", "m.yaml", *FAST, wait=False)
        await wait_until(
            lambda: _holder_pid(tmp_path) == first.pid and len(states(tmp_path / "jobs.db")) == 6
        )
        code, _, err = await cli(tmp_path, sim, "run", *FAST)
        assert code == 3
        assert re.search(rf"another run \(pid {first.pid}, started .+\) holds .*jobs\.db", err)
        assert "Traceback" not in err
        # Read-only commands still work while the run holds the lock, and say it is there.
        data = await status(tmp_path)
        assert data["total"] == 6 and data["active_run"]["pid"] == first.pid
        sim.finish_all()
        _, err = await first.communicate()
        assert first.returncode == 0, err.decode()
    assert (await status(tmp_path))["active_run"] is None


async def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    manifest(tmp_path / "m.yaml", 4)
    db = tmp_path / "jobs.db"
    # Long generations: run 1 cannot finish and release the lock before it is killed.
    async with fast_sim(generation_s="60,60") as sim:
        first = await cli(tmp_path, sim, "run", "m.yaml", *FAST, wait=False)
        # Kill at a moment that cannot race, found by looking only (no flock of our own):
        # the lock names run 1, and every job is running, none pending or mid-submit, so
        # no claim can start between this look and the kill.
        await wait_until(
            lambda: (
                _holder_pid(tmp_path) == first.pid and list(states(db).values()) == ["running"] * 4
            )
        )
        first.kill()
        await first.wait()
        sim.finish_all()
        code, _, err = await cli(tmp_path, sim, "run", "m.yaml", *FAST)
        assert code == 0, err
        assert f"took over the lock left by a dead run (pid {first.pid})" in err
        assert (await status(tmp_path))["states"]["done"] == 4
        # Run 1's operations were adopted by run 2 and polled, never sent again.
        assert sim.stats()["requests"]["submit"] == {"200": 4}
        assert max(sim.stats()["submits_by_prompt"].values()) == 1


async def test_max_runtime_stops_with_75_and_the_next_run_finishes(tmp_path: Path) -> None:
    manifest(tmp_path / "m.yaml", 5)
    async with fast_sim(generation_s="3,3") as sim:
        code, _, err = await cli(tmp_path, sim, "run", "m.yaml", *FAST, "--max-runtime", "1s")
        assert code == 75, err
        assert "max runtime reached with work left, run again to continue" in err
        assert (await status(tmp_path))["states"]["running"] == 5
        sim.finish_all()
        code, _, err = await cli(tmp_path, sim, "run", *FAST)
        assert code == 0, err
        assert sim.stats()["requests"]["submit"] == {"200": 5}


async def test_dry_run_sends_nothing_writes_nothing_and_prices_right(tmp_path: Path) -> None:
    manifest(tmp_path / "m.yaml", 3)
    async with fast_sim() as sim:
        code, out, err = await cli(tmp_path, sim, "run", "m.yaml", "--dry-run")
        stats = sim.stats()
    assert code == 0, err
    # 3 jobs x 8 s x $0.15/s (veo-3.1-fast in the price table)
    assert "would be submitted:  3" in out and "estimated cost:      $3.60" in out
    assert "seconds of video:    24" in out
    assert all(not by_status for by_status in stats["requests"].values())
    assert not (tmp_path / "jobs.db").exists()
    (tmp_path / "prices.yaml").write_text("veo-3.1-fast-generate-preview: 0.5\n")
    code, out, _ = await cli(tmp_path, None, "plan", "m.yaml", "--prices", "prices.yaml", "--json")
    assert json.loads(out)["estimated_cost_usd"] == 12.0


async def test_budget_stops_at_the_right_job_also_across_restarts(tmp_path: Path) -> None:
    manifest(tmp_path / "m.yaml", 5)
    async with fast_sim() as sim:
        code, _, err = await cli(tmp_path, sim, "run", "m.yaml", *FAST, "--budget", "3")
        assert code == 75, err
        assert "3 job(s) left pending: their estimated cost would exceed the budget" in err
        assert (await status(tmp_path))["states"]["done"] == 2  # 2 x $1.20 <= $3 < 3 x $1.20
        code, _, err = await cli(tmp_path, sim, "run", *FAST, "--budget", "3")
        assert code == 75 and (await status(tmp_path))["states"]["done"] == 2
        code, _, err = await cli(tmp_path, sim, "run", *FAST, "--budget", "4")
        assert (await status(tmp_path))["states"]["done"] == 3
        assert sim.stats()["requests"]["submit"] == {"200": 3}


async def test_plan_and_a_real_run_agree_on_what_the_budgets_let_through(tmp_path: Path) -> None:
    (tmp_path / "night.yaml").write_text(
        "defaults: {model: veo-3.1-fast-generate-preview, budget: 3}\njobs:\n"  # $1.20 a job
        + "".join(f"  - {{id: n{i}, prompt: night {i}}}\n" for i in range(4))
    )
    (tmp_path / "other.yaml").write_text(
        "defaults: {model: veo-3.1-fast-generate-preview}\njobs:\n  - {id: o0, prompt: other}\n"
    )
    (tmp_path / "late.yaml").write_text(
        "defaults: {model: veo-3.1-generate-preview}\njobs:\n"  # $3.20 a job
        "  - {id: l0, prompt: late 0}\n  - {id: l1, prompt: late 1}\n"
    )
    async with fast_sim() as sim:
        # Last night: n0 made ($1.20 of the night's $3 committed), the rest left pending.
        code, _, err = await cli(tmp_path, sim, "run", "night.yaml", *FAST, "--max-jobs", "1")
        assert code == 75, err
        code, _, err = await cli(tmp_path, None, "load", "other.yaml")  # o0 waits in the db
        assert code == 0, err
        tonight = ["night.yaml", "late.yaml", "--budget", "6"]
        code, out, err = await cli(tmp_path, None, "plan", *tonight, "--json")
        assert code == 0, err
        plan = json.loads(out)
        before = sim.stats()["requests"]["submit"]["200"]
        code, _, err = await cli(tmp_path, sim, "run", *tonight, *FAST)
        sent = sim.stats()["requests"]["submit"]["200"] - before
    # n1 fits the night's budget, n2 and n3 do not; o0 fits --budget; l0 and l1 ($3.20) not.
    assert plan["to_submit"] == sent == 2
    assert plan["over_budget_by"] == {"budget": 2, "batch_budgets": {"night": 2}}
    assert code == 75 and "4 job(s) left pending" in err, err
    final = states(tmp_path / "jobs.db")
    assert sorted(j for j, s in final.items() if s == "pending") == ["l0", "l1", "n2", "n3"]


async def test_filtered_jobs_do_not_count_against_the_budget(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "defaults: {model: veo-3.1-fast-generate-preview, budget: 2.5}\njobs:\n"
        "  - {id: a, prompt: 'blocked [sim:filtered]'}\n"
        "  - {id: b, prompt: fine one}\n  - {id: c, prompt: fine two}\n"
    )
    async with fast_sim() as sim:
        code, _, err = await cli(tmp_path, sim, "run", "m.yaml", *FAST, "--submitters", "1")
    data = await status(tmp_path)
    assert code == 1 and data["states"]["done"] == 2 and data["states"]["failed"] == 1, err
    assert data["batches"]["m"]["cost_usd"]["budget"] == 2.5


async def test_notification_reaches_a_local_server_with_the_right_counts(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "jobs:\n  - {id: ok, prompt: a fine video}\n"
        "  - {id: bad, prompt: 'no [sim:content_policy]'}\n"
    )
    async with webhook() as (url, received), fast_sim() as sim:
        code, _, err = await cli(
            tmp_path, sim, "run", "m.yaml", *FAST, "--notify", url,
            "--on-complete", "env > env.txt; cat > summary.json",
        )  # fmt: skip
    assert code == 1, err
    [summary] = received
    assert summary["event"] == "finished" and summary["exit_code"] == 1
    assert summary["states"]["done"] == 1 and summary["states"]["failed"] == 1
    assert summary["failures"][0]["id"] == "bad"
    assert summary["failures"][0]["error_kind"] == "content_policy"
    assert summary["output_folder"] == "videos"
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert "PATH=" in (tmp_path / "env.txt").read_text()
    assert KEY not in (tmp_path / "env.txt").read_text()  # the command never sees the key


async def test_log_file_parses_and_the_key_is_nowhere(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "jobs:\n  - {id: a, prompt: one}\n  - {id: b, prompt: 'two [sim:500x1]'}\n"
    )
    async with fast_sim() as sim:
        code, out, err = await cli(tmp_path, sim, "run", "m.yaml", *FAST, "--log-file", "run.log")
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "run.log").read_text().splitlines()]
    moves = [(e["job"], e["from"], e["to"]) for e in lines if e["event"] == "transition"]
    assert [m for m in moves if m[0] == "a"] == [
        ("a", "pending", "submitting"), ("a", "submitting", "running"),
        ("a", "running", "generated"), ("a", "generated", "done"),
    ]  # fmt: skip
    assert ("b", "submitting", "pending") in moves  # the 500, retried
    _, export, _ = await cli(tmp_path, None, "export")
    _, show, _ = await cli(tmp_path, None, "show", "b")
    everything = [
        out, err, export, show, (tmp_path / "run.log").read_text(),
        *(p.read_bytes().decode("latin-1") for p in tmp_path.glob("jobs.db*")),
    ]  # fmt: skip
    assert not any(KEY in text for text in everything)


async def test_output_to_a_non_terminal_has_no_control_codes(tmp_path: Path) -> None:
    manifest(tmp_path / "m.yaml", 3)
    async with fast_sim() as sim:
        code, out, err = await cli(tmp_path, sim, "run", "m.yaml", *FAST, "-v")
    assert code == 0
    assert "submitted 0/3" in err and "downloaded 3/3" in err
    assert "\x1b" not in out + err and "\r" not in out + err


def _holder_pid(tmp: Path) -> object:
    """The pid the lock file names, read as a monitor would: without taking any lock, so
    the look can never make the run it looks at fail to take its own."""
    from batchveo import lock

    return (lock.holder(tmp / "jobs.db") or {}).get("pid")


async def test_watch_loads_new_manifests_from_a_drop_folder(tmp_path: Path) -> None:
    import signal

    drop = tmp_path / "drop"
    drop.mkdir()
    db = tmp_path / "jobs.db"
    async with fast_sim() as sim:
        proc = await cli(
            tmp_path, sim, "run", "--watch", "drop", *FAST, "--log-file", "w.log", wait=False
        )
        manifest(drop / "first.yaml", 2)
        await wait_until(lambda: list(states(db).values()).count("done") == 2)
        (drop / "broken.yaml").write_text("jobs:\n  - prompt: ''\n")
        (drop / "notes.txt").write_text("not a manifest")
        (drop / "second.csv").write_text("id,prompt\nc1,from a csv\n")
        await wait_until(lambda: states(db).get("c1") == "done")
        (drop / "third.yaml").write_text(  # a route this run was not started with
            "defaults: {provider: gemini}\njobs:\n  - {id: g1, prompt: for another route}\n"
        )
        await wait_until(lambda: states(db).get("g1") == "pending")
        await wait_until(lambda: "third.yaml" in (tmp_path / "w.log").read_text())
        proc.send_signal(signal.SIGTERM)
        _, err_b = await asyncio.wait_for(proc.communicate(), 20)
    err = err_b.decode()
    assert proc.returncode == 75, err  # stopped; g1 waits for a run with its route
    assert "broken.yaml:2: prompt is empty" in err  # reported, not fatal
    assert "loaded drop/second.csv: 1 new" in err
    assert "loaded drop/third.yaml: 1 new, 0 already loaded (batch third); the jobs for" in err
    assert "wait for the next run (this run was started without that route)" in err
    assert sim.stats()["requests"]["submit"] == {"200": 3}


async def test_max_jobs_caps_new_submits_for_a_first_small_try(tmp_path: Path) -> None:
    manifest(tmp_path / "m.yaml", 6)
    async with fast_sim() as sim:
        code, _, err = await cli(tmp_path, sim, "run", "m.yaml", *FAST, "--max-jobs", "2")
        assert code == 75, err
        data = await status(tmp_path)
        assert data["states"]["done"] == 2 and data["states"]["pending"] == 4
        code, _, err = await cli(tmp_path, sim, "run", *FAST)
        assert code == 0 and sim.stats()["requests"]["submit"] == {"200": 6}


async def test_a_manifest_with_thousands_of_problems_prints_a_screenful(tmp_path: Path) -> None:
    lines = ["defaults: {resolution: 1080p, durationSeconds: 4}", "jobs:"]
    lines += [f"  - prompt: clash {i}" for i in range(500)]
    (tmp_path / "m.yaml").write_text("\n".join(lines) + "\n")
    code, _, err = await cli(tmp_path, None, "load", "m.yaml")
    assert code == 2 and not (tmp_path / "jobs.db").exists()
    assert err.count("durationSeconds must be 8") == 50
    assert "... and 450 more problem(s)" in err


async def test_a_video_near_expiry_triggers_a_warning_notification(tmp_path: Path) -> None:
    import time

    from batchveo.states import JobState
    from batchveo.store import Store
    from tests.helpers import make_spec

    # A job generated by an earlier run, two seconds before the service deletes it
    # (here: a file the service no longer has).
    async with webhook() as (url, received), fast_sim() as sim:
        async with await Store.open(tmp_path / "jobs.db") as store:
            await store.add_jobs([make_spec("old-video")])
            await store.claim_pending(1)
            await store.transition("old-video", JobState.SUBMITTING, JobState.RUNNING,
                                   operation="operations/x", submitted_at=time.time())  # fmt: skip
            await store.transition(
                "old-video", JobState.RUNNING, JobState.GENERATED,
                video_uris=[f"{sim.url}/v1beta/files/gone:download?alt=media"],
                generated_at=time.time() - 2 * 24 * 3600 + 2,
            )  # fmt: skip
        code, _, err = await cli(tmp_path, sim, "run", *FAST, "--notify", url)
    assert [s["event"] for s in received] == ["expiry_warning", "finished"], err
    [at_risk] = received[0]["at_risk"]
    assert at_risk["id"] == "old-video" and at_risk["hours_left"] < 6
    assert received[1]["states"]["expired"] == 1 and code == 1


async def test_an_output_folder_that_is_a_file_is_one_clear_line_and_exit_2(
    tmp_path: Path,
) -> None:
    manifest(tmp_path / "night.yaml", 2)
    (tmp_path / "videos").write_text("not a folder")
    async with fast_sim() as sim:
        code, _, err = await cli(tmp_path, sim, "run", "night.yaml", "--out", "videos", *FAST)
        stats = sim.stats()
    # Checked before anything is loaded, sent or displayed.
    assert code == 2 and err == "batchveo: --out videos: a file is there, not a folder\n"
    assert stats["requests"]["submit"] == {} and not (tmp_path / "jobs.db").exists()
