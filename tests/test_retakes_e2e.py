"""Retakes end to end, over real sockets: the simulator makes the videos and reviews them
(``generateContent``, its ``[sim:review=...]`` markers), the route's own client asks, the
run's own reviewer, budgets and submitters make and send the retakes. The last test kills
a real ``batchveo run`` process mid-reviews and mid-retakes, then runs it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import sys
from pathlib import Path

from batchveo import mp4
from batchveo.cli.export import export_database
from batchveo.exitcodes import ExitCode
from batchveo.manifest import read_manifests
from batchveo.report.build import build_report
from batchveo.run.config import ReviewFlags
from batchveo.run.runner import RunResult
from batchveo.sim import Simulator
from batchveo.store import OVER_BUDGET, ReviewStatus, Store
from batchveo.verdicts import ReviewSettings
from tests.helpers import make_spec, wait_until
from tests.pipeline_helpers import KEY, fast_config, fast_sim, is_sim_video, run_batch

FLAGGED_THEN_GOOD = "a hand waving [sim:review=3/8]"
ALWAYS_FLAGGED = "a hand with too many fingers [sim:review=3]"
GOOD = "a calm sea at dawn"


async def reviewed_run(
    store: Store, sim: Simulator, tmp_path: Path, prompts: dict[str, str], retakes: int,
    **config: object,
) -> RunResult:  # fmt: skip
    await store.set_review_settings({"b1": ReviewSettings(threshold=7, retakes=retakes, fps=2)})
    specs = [make_spec(job_id, prompt) for job_id, prompt in prompts.items()]
    cfg = fast_config(tmp_path / "out", review=ReviewFlags(rpm=0), **config)
    return await run_batch(store, sim, cfg, specs)


def db_rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=5) as conn:
        return list(conn.execute(sql))


def exported(store: Store, tmp_path: Path) -> dict[str, dict[str, object]]:
    out = tmp_path / "export.jsonl"
    with out.open("w") as f:
        export_database(store.path, f, "jsonl", None, None)
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}


async def test_a_flagged_job_is_retaken_once_and_the_passing_retake_is_chosen(
    store: Store, tmp_path: Path
) -> None:
    async with fast_sim() as sim:
        result = await reviewed_run(
            store, sim, tmp_path, {"a": FLAGGED_THEN_GOOD, "b": GOOD}, retakes=1
        )
        stats = sim.stats()
    assert result.exit_code == ExitCode.OK
    assert result.summary() == "3 done; reviews: 2 passed, 1 flagged, 1 retaken"
    # The retake was sent once, as any job; the passing original never again.
    assert stats["submits_by_prompt"] == {FLAGGED_THEN_GOOD: 2, GOOD: 1}
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a.mp4", "a~2.mp4", "b.mp4"]
    assert all(is_sim_video(p) for p in out.glob("*.mp4"))
    assert (out / "a.mp4").read_bytes() != (out / "a~2.mp4").read_bytes()  # both kept
    rows = exported(store, tmp_path)
    assert {i: (r["review_status"], r["review_score"], r["chosen"]) for i, r in rows.items()} == {
        "a": ("flagged", 3, False), "a~2": ("passed", 8, True), "b": ("passed", 8, True),
    }  # fmt: skip
    assert (rows["a~2"]["take_of"], rows["a~2"]["take"]) == ("a", 2)
    assert rows["a"]["review_retake"] == "retaken as a~2"
    assert await store.chosen_take("a") == "a~2"


async def test_a_job_with_retakes_0_is_only_flagged(store: Store, tmp_path: Path) -> None:
    async with fast_sim() as sim:
        result = await reviewed_run(store, sim, tmp_path, {"a": FLAGGED_THEN_GOOD}, retakes=0)
        stats = sim.stats()
    assert result.summary() == "1 done; reviews: 1 flagged"
    assert stats["submits_by_prompt"] == {FLAGGED_THEN_GOOD: 1}
    assert [t.job_id for t in await store.takes_of("a")] == ["a"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["a.mp4"]


async def test_retakes_2_flagged_every_time_makes_exactly_2_retakes(
    store: Store, tmp_path: Path
) -> None:
    async with fast_sim() as sim:
        result = await reviewed_run(store, sim, tmp_path, {"a": ALWAYS_FLAGGED}, retakes=2)
        stats = sim.stats()
    assert result.exit_code == ExitCode.OK
    assert result.summary() == "3 done; reviews: 3 flagged, 2 retaken"
    assert stats["submits_by_prompt"] == {ALWAYS_FLAGGED: 3}  # never a third retake
    takes = await store.takes_of("a")
    assert [(t.job_id, t.status, t.chosen) for t in takes] == [
        ("a", "flagged", True),
        ("a~2", "flagged", False),
        ("a~3", "flagged", False),
    ]  # fmt: skip  (a tie of 3s: the earliest)
    last = await store.review_of("a~3")
    assert last is not None and last.retake == "retake not made: all 2 retake(s) made"


async def test_a_budget_without_room_for_a_retake_flags_without_retaking(
    store: Store, tmp_path: Path
) -> None:
    video_usd = make_spec("x").cost_usd
    # Both originals and their reviews fit; a third video does not.
    async with fast_sim() as sim:
        result = await reviewed_run(
            store, sim, tmp_path, {"a": FLAGGED_THEN_GOOD, "b": GOOD}, retakes=1,
            budget_usd=2.5 * video_usd,
        )  # fmt: skip
        stats = sim.stats()
    assert result.exit_code == ExitCode.OK
    assert result.summary() == "2 done; reviews: 1 passed, 1 flagged"
    assert sum(stats["submits_by_prompt"].values()) == 2  # nothing more was sent
    review = await store.review_of("a")
    assert review is not None and review.status is ReviewStatus.FLAGGED
    assert review.retake == OVER_BUDGET
    assert f"a: flagged; {OVER_BUDGET}" in result.stats.recent_errors
    assert [t.job_id for t in await store.takes_of("a")] == ["a"]


# --- kill -9 during reviews and retakes, then run again -------------------------------------

N_JOBS = 8
RUN_FLAGS = [
    "--rpm", "0", "--first-poll", "0.02s", "--poll-interval", "0.02s", "--submitters", "2",
    "--downloaders", "2", "--max-inflight", "4", "--review-inflight", "2",
]  # fmt: skip


def crash_manifest(path: Path) -> dict[str, str]:
    """Jobs flagged once, flagged always, and good, retakes: 2; ``id -> prompt``."""
    kinds = ["[sim:review=3/8]", "[sim:review=2]", ""]
    prompts = {f"job{i}": f"retake crash prompt {i} {kinds[i % 3]}".strip() for i in range(N_JOBS)}
    lines = ["defaults:", "  review:", "    threshold: 7", "    retakes: 2", "    fps: 2", "jobs:"]
    lines += [f'  - id: {j}\n    prompt: "{p}"' for j, p in prompts.items()]
    path.write_text("\n".join(lines) + "\n")
    return prompts


async def start_run(tmp: Path, sim: Simulator, review_rpm: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, BATCHVEO_API_KEY=KEY, BATCHVEO_BASE_URL=sim.url)
    args = ["run", str(tmp / "jobs.yaml"), "--db", str(tmp / "jobs.db"), "--out", str(tmp / "out")]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batchveo", *args, *RUN_FLAGS, "--review-rpm", review_rpm,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _mid_retakes(db: Path) -> bool:
    """A retake exists and reviews are still due or on their way."""
    try:
        takes = db_rows(db, "SELECT COUNT(*) FROM jobs WHERE take_of IS NOT NULL")[0][0]
        due = db_rows(db, "SELECT COUNT(*) FROM reviews WHERE status IS NULL")[0][0]
    except sqlite3.OperationalError:
        return False
    return bool(takes) and bool(due)


async def test_kill_9_during_reviews_and_retakes_then_rerun_sends_no_take_twice(
    tmp_path: Path,
) -> None:
    prompts = crash_manifest(tmp_path / "jobs.yaml")
    db = tmp_path / "jobs.db"
    async with fast_sim(latency_s="0.01,0.03") as sim:
        # Reviews paced (one per 0.2 s): the kill comes with retakes made and reviews due.
        proc = await start_run(tmp_path, sim, review_rpm="300")
        await wait_until(lambda: _mid_retakes(db), 60, what="a retake with reviews due")
        proc.kill()
        await proc.wait()
        killed_with = db_rows(db, "SELECT id FROM jobs WHERE take_of IS NOT NULL")
        sim.configure(latency_s=(0.0, 0.0))
        proc = await start_run(tmp_path, sim, review_rpm="0")
        _, err = await proc.communicate()
        stats = sim.stats()
    uncertain = {i for (i,) in db_rows(db, "SELECT id FROM jobs WHERE state = 'uncertain'")}
    assert proc.returncode == (1 if uncertain else 0), err.decode()
    assert killed_with, "the kill came after the retakes"
    rows = db_rows(
        db,
        "SELECT j.id, j.prompt, j.state, j.take_of, j.take, r.status, r.retake"
        " FROM jobs j LEFT JOIN reviews r ON r.job_id = j.id ORDER BY j.rowid",
    )
    # No take was sent twice: each prompt accepted at most once per take row of it.
    per_prompt: dict[str, int] = {}
    for _, prompt, *_ in rows:
        per_prompt[str(prompt)] = per_prompt.get(str(prompt), 0) + 1
    for prompt, accepted in stats["submits_by_prompt"].items():
        assert accepted <= per_prompt[prompt], (prompt, accepted, per_prompt[prompt])
    # No review lost: every done take has its verdict; none due.
    assert all(status is not None for _, _, state, _, _, status, _ in rows if state == "done")
    # Never beyond retakes, and every job ended: passed, or flagged with no retake left.
    for job_id, prompt in prompts.items():
        takes = [r for r in rows if r[0] == job_id or r[3] == job_id]
        assert 1 <= len(takes) <= 3
        assert [r[4] for r in takes] == list(range(1, len(takes) + 1))
        last = takes[-1]
        if last[2] != "done":
            assert last[0] in uncertain
            continue
        if "review=2" in prompt:
            assert len(takes) == 3 and last[5] == "flagged"
        elif "3/8" in prompt:
            assert last[5] == "passed" and len(takes) >= 2
        else:
            assert len(takes) == 1 and last[5] == "passed"
    # Every done take's video is on disk under its own name.
    out = tmp_path / "out"
    done = sorted(str(r[0]) for r in rows if r[2] == "done")
    assert sorted(p.stem for p in out.glob("*.mp4")) == done
    assert not list(out.rglob("*.part"))
    # Reloading the manifest after retakes adds nothing, drops nothing, resets nothing.
    before = db_rows(db, "SELECT id, state, take FROM jobs ORDER BY rowid")
    env = dict(os.environ, BATCHVEO_API_KEY=KEY)
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batchveo", "load", str(tmp_path / "jobs.yaml"), "--db", str(db),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, load_err = await load.communicate()
    assert load.returncode == 0, load_err.decode()
    assert db_rows(db, "SELECT id, state, take FROM jobs ORDER BY rowid") == before


async def test_a_flagged_hop_of_a_chain_is_retaken_from_the_same_parent(
    store: Store, tmp_path: Path
) -> None:
    """A hop's retake is the same extension again: its request sends the same parent's
    video, and its cut lasts as long as the hop's (the parent's plus 7 s)."""
    manifest = tmp_path / "chain.yaml"
    manifest.write_text(
        f"jobs:\n  - id: a\n    prompt: a lantern on a beach\n    chain: ['{FLAGGED_THEN_GOOD}']\n"
    )
    specs = read_manifests([manifest]).specs
    await store.add_jobs(specs)
    batch = specs[0].batch
    await store.set_review_settings({batch: ReviewSettings(threshold=7, retakes=1, fps=2)})
    async with fast_sim() as sim:
        result = await run_batch(
            store, sim, fast_config(tmp_path / "out", review=ReviewFlags(rpm=0))
        )
        stats = sim.stats()
    assert result.exit_code == ExitCode.OK
    jobs = {j.id: j for j in await store.jobs()}
    assert sorted(jobs) == ["a", "a-2", "a-2~2"]
    assert jobs["a-2~2"].extends == "a" and jobs["a-2~2"].output_s == 15  # still a hop of a
    parent_uri = jobs["a"].video_uris[0]
    for take in ("a-2", "a-2~2"):
        assert jobs[take].spec().video_uri == parent_uri  # the same parent's video
        assert mp4.duration_s(Path(jobs[take].files[0]["path"]).read_bytes()) == 15
    assert stats["submits_by_prompt"][FLAGGED_THEN_GOOD] == 2
    assert stats["chains"] and max(stats["chains"].values()) == 2  # two extensions of a


async def test_the_report_shows_a_jobs_takes_side_by_side_the_chosen_one_marked(
    store: Store, tmp_path: Path
) -> None:
    """Takes are made after every original, so their rows come last; the report still shows
    each beside its original (on the original's page, once), the chosen one marked."""
    prompts = {"a": FLAGGED_THEN_GOOD, **{f"g{i}": f"{GOOD} {i}" for i in range(3)}}
    async with fast_sim() as sim:
        result = await reviewed_run(store, sim, tmp_path, prompts, retakes=1)
    assert result.exit_code == ExitCode.OK
    report = tmp_path / "out" / "report.html"
    summary = await build_report(store, report, cards_per_page=2)  # a~2's row: page 3
    assert summary.pages == 3
    assert summary.pages_folder is not None
    later = sorted(summary.pages_folder.glob("*.html"))
    pages = [report.read_text(), *(p.read_text() for p in later)]
    card_ids = [re.findall(r'<article class="card[^"]*" id="job-([^"]+)"', p) for p in pages]
    every = sorted(i for ids in card_ids for i in ids)
    assert every == ["a", "a~2", "g0", "g1", "g2"]  # each card once
    first = pages[0]
    row = first[first.index('<section class="chain takes') :]
    row = row[: row.index("</section>")]
    assert "takes of a: 2, chosen a~2" in row
    take2 = row.index('id="job-a~2"')
    assert row.index('id="job-a"') < take2  # side by side, in take order
    assert 'class="chosen"' in row[take2:] and 'class="chosen"' not in row[:take2]
