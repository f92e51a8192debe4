"""Crash safety: a real ``batchveo run`` process, killed or signalled mid-run, then rerun.

The simulator runs in the test's own event loop; the runner is a subprocess
talking to it over a real socket, so SIGKILL hits it wherever it happens to be.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batchveo.sim import Simulator
from tests.helpers import db_states as states
from tests.helpers import wait_until
from tests.pipeline_helpers import KEY, fast_sim, is_sim_video, sha256_file

N_JOBS = 24
RUN_FLAGS = [
    "--rpm", "0", "--first-poll", "0.02s", "--poll-interval", "0.02s", "--submitters", "4",
    "--downloaders", "2", "--max-inflight", "8",
]  # fmt: skip


def write_manifest(path: Path, n: int = N_JOBS) -> Path:
    lines = ["jobs:"]
    lines += [f"  - id: job{i:02d}\n    prompt: crash test prompt number {i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


async def start_run(tmp: Path, sim: Simulator, *extra: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, BATCHVEO_API_KEY=KEY, BATCHVEO_BASE_URL=sim.url)
    args = ["run", str(tmp / "jobs.yaml"), "--db", str(tmp / "jobs.db"), "--out", str(tmp / "out")]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batchveo", *args, *RUN_FLAGS, *extra,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_for(db: Path, cond: Callable[[dict[str, str]], bool], timeout_s: float = 20) -> None:
    async def met() -> bool:
        return cond(await asyncio.to_thread(states, db))

    await wait_until(met, timeout_s, what=f"states: {states(db)}")


def some(state: str) -> Callable[[dict[str, str]], bool]:
    return lambda s: state in s.values()


def check_final(tmp: Path, sim: Simulator, uncertain_expected: set[str]) -> None:
    final = states(tmp / "jobs.db")
    assert len(final) == N_JOBS
    uncertain = {j for j, s in final.items() if s == "uncertain"}
    assert uncertain == uncertain_expected
    assert all(s == "done" for j, s in final.items() if j not in uncertain)
    stats = sim.stats()
    # No prompt was ever accepted twice: nothing was paid for twice.
    assert max(stats["submits_by_prompt"].values()) == 1
    out = tmp / "out"
    assert not list(out.rglob("*.part"))
    done = sorted(j for j, s in final.items() if s == "done")
    assert sorted(p.stem for p in out.glob("*.mp4")) == done
    with sqlite3.connect(tmp / "jobs.db") as conn:
        recorded = {i: json.loads(f or "[]") for i, f in conn.execute("SELECT id, files FROM jobs")}
    for j in done:
        [f] = recorded[j]
        path = out / f"{j}.mp4"
        assert f["path"] == str(path) and f["sha256"] == sha256_file(path)
        assert is_sim_video(path)
    assert len({recorded[j][0]["sha256"] for j in done}) == len(done)  # each its own video


@pytest.mark.parametrize(
    "kill_when",
    [
        pytest.param(some("submitting"), id="mid-submit"),
        pytest.param(some("running"), id="while-running"),
        pytest.param(some("generated"), id="before-download"),
        pytest.param(lambda s: list(s.values()).count("done") >= 3, id="mid-downloads"),
    ],
)
async def test_kill_9_then_rerun_loses_nothing_and_pays_nothing_twice(
    tmp_path: Path, kill_when: Callable[[dict[str, str]], bool]
) -> None:
    write_manifest(tmp_path / "jobs.yaml")
    db = tmp_path / "jobs.db"
    async with fast_sim(latency_s="0.01,0.04") as sim:
        proc = await start_run(tmp_path, sim)
        await wait_for(db, kill_when)
        proc.kill()
        await proc.wait()
        at_kill = states(db)
        in_flight = {j for j, s in at_kill.items() if s == "submitting"}

        sim.configure(latency_s=(0.0, 0.0))
        proc = await start_run(tmp_path, sim)
        _, err = await proc.communicate()
        assert proc.returncode == (1 if in_flight else 0), err.decode()
        check_final(tmp_path, sim, in_flight)
        if in_flight:
            assert b"are now uncertain" in err


async def test_sigterm_stops_gracefully_with_75_and_the_rerun_finishes(tmp_path: Path) -> None:
    write_manifest(tmp_path / "jobs.yaml")
    db = tmp_path / "jobs.db"
    async with fast_sim(latency_s="0.02,0.05", generation_s="0.3,0.5") as sim:
        proc = await start_run(tmp_path, sim)
        await wait_for(db, some("running"))
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 75, err.decode()
        assert b"stopped by SIGTERM with work left, run again to continue" in err
        assert b"Traceback" not in err
        # In-flight submits were allowed to finish and were recorded.
        assert "submitting" not in states(db).values()

        proc = await start_run(tmp_path, sim)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        check_final(tmp_path, sim, set())


async def test_second_signal_exits_at_once_and_stays_safe(tmp_path: Path) -> None:
    write_manifest(tmp_path / "jobs.yaml")
    db = tmp_path / "jobs.db"
    # Slow answers: after the first signal, in-flight submits would take a while.
    async with fast_sim(latency_s="0.5,0.5") as sim:
        proc = await start_run(tmp_path, sim)
        await wait_for(db, some("submitting"))
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 5)
        assert proc.returncode == 75, err.decode()
        assert b"Traceback" not in err
        at_stop = states(db)
        in_flight = {j for j, s in at_stop.items() if s == "submitting"}

        sim.configure(latency_s=(0.0, 0.0))
        proc = await start_run(tmp_path, sim)
        _, err = await proc.communicate()
        check_final(tmp_path, sim, in_flight)


async def test_uncertain_jobs_are_resent_only_on_the_users_word(tmp_path: Path) -> None:
    write_manifest(tmp_path / "jobs.yaml", n=N_JOBS)
    db = tmp_path / "jobs.db"
    async with fast_sim(latency_s="0.01,0.04") as sim:
        proc = await start_run(tmp_path, sim)
        await wait_for(db, some("submitting"))
        proc.kill()
        await proc.wait()
        sim.configure(latency_s=(0.0, 0.0))
        proc = await start_run(tmp_path, sim)
        await proc.communicate()
        uncertain = {j for j, s in states(db).items() if s == "uncertain"}
        assert uncertain
        # A plain rerun leaves them alone...
        proc = await start_run(tmp_path, sim)
        await proc.communicate()
        assert {j for j, s in states(db).items() if s == "uncertain"} == uncertain
        # ...and --resubmit-uncertain sends them again.
        proc = await start_run(tmp_path, sim, "--resubmit-uncertain")
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert set(states(db).values()) == {"done"}
