"""A chain survives ``kill -9``: a real ``batchveo run`` killed in the middle of a chain,
then run again, makes every hop once (nothing paid twice, nothing lost)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import db_states as states
from tests.pipeline_helpers import fast_sim, sha256_file
from tests.test_chains_e2e import is_mp4
from tests.test_crash import start_run, wait_for

CHAINS = ("a", "b")
HOPS = 4


def write_chains(path: Path) -> list[str]:
    lines = ["jobs:"]
    for c in CHAINS:
        hops = ", ".join(f"crash chain {c} hop {i}" for i in range(2, HOPS + 1))
        lines += [f"  - id: {c}\n    prompt: crash chain {c} hop 1\n    chain: [{hops}]"]
    path.write_text("\n".join(lines) + "\n")
    return [c if i == 1 else f"{c}-{i}" for c in CHAINS for i in range(1, HOPS + 1)]


def descendants(job: str) -> set[str]:
    chain, _, n = job.partition("-")
    first = int(n or 1)
    return {f"{chain}-{i}" for i in range(first + 1, HOPS + 1)}


@pytest.mark.parametrize(
    "kill_when",
    [
        pytest.param(lambda s: s.get("a-2") in ("submitting", "running"), id="hop-in-flight"),
        pytest.param(lambda s: s.get("a-2") == "done", id="hop-just-released"),
        pytest.param(lambda s: s.get("b-2") == "generated", id="hop-before-download"),
    ],
)
async def test_kill_9_in_the_middle_of_a_chain_then_rerun(
    tmp_path: Path, kill_when: Callable[[dict[str, str]], bool]
) -> None:
    ids = write_chains(tmp_path / "jobs.yaml")
    db = tmp_path / "jobs.db"
    async with fast_sim(latency_s="0.01,0.04") as sim:
        proc = await start_run(tmp_path, sim)
        await wait_for(db, kill_when)
        proc.kill()
        await proc.wait()
        in_flight = {j for j, s in states(db).items() if s == "submitting"}

        sim.configure(latency_s=(0.0, 0.0))
        proc = await start_run(tmp_path, sim)
        _, err = await proc.communicate()
        assert proc.returncode == (1 if in_flight else 0), err.decode()
        stats = sim.stats()
    final = states(db)
    held = set().union(*(descendants(j) for j in in_flight)) if in_flight else set()
    assert sorted(final) == sorted(ids)
    for job, state in final.items():
        expected = "uncertain" if job in in_flight else "waiting" if job in held else "done"
        assert state == expected, (job, final)
    assert max(stats["submits_by_prompt"].values()) == 1  # no hop paid twice
    with sqlite3.connect(db) as conn:
        files = {i: json.loads(f or "[]") for i, f in conn.execute("SELECT id, files FROM jobs")}
    done = [j for j, s in final.items() if s == "done"]
    for job in done:
        [f] = files[job]
        path = tmp_path / "out" / f"{job}.mp4"
        assert f["path"] == str(path) and f["sha256"] == sha256_file(path) and is_mp4(path)
    assert len({files[j][0]["sha256"] for j in done}) == len(done)
