"""Retakes in the store: a flagged verdict makes the job's next take in its own transaction,
never beyond ``retakes`` nor past a budget, and the chosen take is the best-scoring one.

The end-to-end runs over real sockets are tests/test_retakes_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from batchveo.cli.export import export_database
from batchveo.errors import ManifestError
from batchveo.manifest import fields
from batchveo.manifest.fields import Bad
from batchveo.outputs import safe_segment, video_paths
from batchveo.run.plan import make_plan
from batchveo.sim.review import answer_text, score_sequence
from batchveo.spec import take_hash
from batchveo.states import JobState
from batchveo.store import OVER_BUDGET, Retake, RetakeAsk, Review, ReviewStatus, Store
from batchveo.verdicts import ReviewSettings
from tests.helpers import make_spec
from tests.review_helpers import done_jobs

S = JobState
ONE_RETAKE = RetakeAsk(retakes=1, review_usd=0.01, budget_usd=None)


def verdict(job_id: str, score: float, status: ReviewStatus = ReviewStatus.FLAGGED) -> Review:
    return Review(job_id=job_id, batch="b1", status=status, score=score, model="m", cost_usd=0.01)


async def finish(store: Store, tmp_path: Path, job_id: str) -> None:
    """The pending take ``job_id`` claimed, sent and done with a file of its own."""
    [job] = await store.claim_pending(1)
    assert job.id == job_id
    video = tmp_path / f"{job_id}.mp4"
    video.write_bytes(b"\0\0\0\x08free")
    await store.transition(job_id, S.SUBMITTING, S.RUNNING, operation=f"op-{job_id}")
    files = [{"path": str(video), "size": 8, "sha256": "x"}]
    await store.transition(job_id, S.RUNNING, S.DONE, files=files)


def rows(store: Store) -> dict[str, tuple[object, ...]]:
    with sqlite3.connect(store.path) as conn:
        return {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, state, take_of, take, spec_hash, prompt, params, inputs, output_name"
                " FROM jobs ORDER BY rowid"
            )
        }


async def test_a_flagged_job_with_a_retake_left_gets_a_new_take_of_the_same_spec(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand", "b": "a calm sea"})
    recorded = await store.record_verdict(verdict("a", 3), ONE_RETAKE)
    assert recorded.recorded and recorded.retake.job_id == "a~2"
    got = rows(store)
    a, take = got["a"], got["a~2"]
    assert take[:3] == ("pending", "a", 2)
    assert take[4:] == a[4:]  # the same prompt, parameters, inputs and output (none: the id)
    assert take[3] == take_hash(str(a[3]), 2) != a[3]  # its own identity, the original's kept
    assert (await store.review_of("a")).retake == "retaken as a~2"  # type: ignore[union-attr]
    # In the running totals as any pending job: status and the budgets count it.
    assert (await store.counts())["b1"] == {"done": 2, "pending": 1}
    # Recorded again (another process was first): no second take.
    assert not (await store.record_verdict(verdict("a", 3), ONE_RETAKE)).recorded
    assert len(rows(store)) == 3


async def test_a_passed_take_and_retakes_0_make_no_take(store: Store, tmp_path: Path) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand", "b": "a calm sea"})
    none = RetakeAsk(retakes=0, review_usd=0.01, budget_usd=None)
    assert (await store.record_verdict(verdict("a", 3), none)).retake.job_id is None
    passed = verdict("b", 9, ReviewStatus.PASSED)
    assert (await store.record_verdict(passed, ONE_RETAKE)).retake.job_id is None
    assert sorted(rows(store)) == ["a", "b"]
    assert (await store.review_of("a")).retake is None  # type: ignore[union-attr]


async def test_retakes_2_flagged_every_time_makes_exactly_2_takes(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand"})
    two = RetakeAsk(retakes=2, review_usd=0.0, budget_usd=None)
    assert (await store.record_verdict(verdict("a", 2), two)).retake.job_id == "a~2"
    await finish(store, tmp_path, "a~2")
    assert (await store.record_verdict(verdict("a~2", 3), two)).retake.job_id == "a~3"
    await finish(store, tmp_path, "a~3")
    third = await store.record_verdict(verdict("a~3", 4), two)
    assert third.retake.job_id is None
    assert third.retake.note == "retake not made: all 2 retake(s) made"
    assert [(i, r[1], r[2]) for i, r in rows(store).items()] == [
        ("a", None, 1), ("a~2", "a", 2), ("a~3", "a", 3),
    ]  # fmt: skip
    # The original reviewed again (--force) and flagged: a later take answers for the job.
    await store.reopen_reviews(["a"])
    assert (await store.record_verdict(verdict("a", 1), two)).retake.job_id is None
    assert len(rows(store)) == 3
    # The best score is the chosen result, whichever take is asked about.
    assert await store.chosen_take("a~2") == "a~3"
    assert [(t.job_id, t.score, t.chosen) for t in await store.takes_of("a")] == [
        ("a", 1.0, False), ("a~2", 3.0, False), ("a~3", 4.0, True),
    ]  # fmt: skip
    assert await store.retake_counts() == {"b1": {"retakes": 2, "chosen": 1}}


@pytest.mark.parametrize("which", ["run", "batch"])
async def test_a_budget_without_room_for_a_retake_flags_without_retaking(
    store: Store, tmp_path: Path, which: str
) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand", "b": "a hat"})
    a = await store.get("a")
    assert a is not None
    # Committed: two videos and the first verdict's review ($0.01). The retake needs its
    # video and its review's estimate ($0.02): a cent short, then exactly enough.
    short = 3 * a.cost_usd + 0.01 + 0.01

    async def ask(budget_usd: float) -> RetakeAsk:
        if which == "batch":
            await store.add_jobs([make_spec("a", "a hand")], budgets={"b1": budget_usd})
            return RetakeAsk(retakes=1, review_usd=0.02, budget_usd=None)
        return RetakeAsk(retakes=1, review_usd=0.02, budget_usd=budget_usd)

    recorded = await store.record_verdict(verdict("a", 3), await ask(short))
    assert (recorded.retake.job_id, recorded.retake.note) == (None, OVER_BUDGET)
    assert sorted(rows(store)) == ["a", "b"]
    assert (await store.review_of("a")).retake == OVER_BUDGET  # type: ignore[union-attr]
    enough = short + 0.02  # b's verdict costs a cent too
    recorded = await store.record_verdict(verdict("b", 3), await ask(enough))
    assert recorded.retake.job_id == "b~2"


async def test_the_chosen_take_best_score_earliest_on_a_tie_original_without_verdicts(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand", "b": "a hat", "c": "a sea"})
    two = RetakeAsk(retakes=2, review_usd=0.0, budget_usd=None)
    for job_id in ("a", "b", "c"):
        await store.record_verdict(verdict(job_id, 3), two)
    assert await store.chosen_take("c") == "c"  # c~2 not reviewed: the original
    for job_id in ("a~2", "b~2"):
        await finish(store, tmp_path, job_id)
    assert await store.chosen_take("a") == "a"  # a~2 done, not reviewed yet: still a
    await store.record_verdict(verdict("a~2", 8, ReviewStatus.PASSED), two)
    await store.record_verdict(verdict("b~2", 3), RetakeAsk(0, 0.0, None))  # a tie
    assert await store.chosen_take("a") == "a~2"
    assert await store.chosen_take("b~2") == "b"
    # Every take's verdict is a row of the export, with which is chosen.
    out = tmp_path / "export.jsonl"
    with out.open("w") as f:
        export_database(store.path, f, "jsonl", None, None)
    exported = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert {i: (r["take_of"], r["take"], r["chosen"]) for i, r in exported.items()} == {
        "a": (None, 1, False), "b": (None, 1, True), "c": (None, 1, True),
        "a~2": ("a", 2, True), "b~2": ("b", 2, False), "c~2": ("c", 2, False),
    }  # fmt: skip
    assert exported["a"]["review_score"] == 3 and exported["a~2"]["review_score"] == 8
    assert exported["a"]["review_retake"] == "retaken as a~2"
    csv_out = tmp_path / "export.csv"
    with csv_out.open("w") as f:
        assert export_database(store.path, f, "csv", None, None) == 6


async def test_reloading_the_manifest_after_retakes_adds_drops_and_resets_nothing(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand"})
    await store.record_verdict(verdict("a", 3), ONE_RETAKE)
    before = rows(store)
    result = await store.add_jobs([make_spec("a", "a hand")])
    assert (result.new, result.existing, result.replaced) == (0, 1, 0)
    assert rows(store) == before
    with pytest.raises(ManifestError):  # the original was sent: never replaced
        await store.add_jobs([make_spec("a", "another hand")], replace=True)
    assert rows(store) == before


def test_a_manifest_id_that_names_a_retake_is_refused() -> None:
    with pytest.raises(Bad, match=r"id 'shot~2' must not end in '~' and a number"):
        fields.job_id("shot~2")
    assert (
        fields.job_id("shot~b") == "shot~b" and fields.job_id("~2") == "~2"
    )  # only ID~N is a take's


def test_a_takes_file_is_its_id_beside_the_originals() -> None:
    assert safe_segment("a~2") == "a~2"
    assert safe_segment("shot 1~3") == safe_segment("shot 1") + "~3"
    out = Path("/out")
    assert video_paths(out, "a~2", None, 1) == [out / "a~2.mp4"]
    assert video_paths(out, "a~2", "night/a~2", 1) == [out / "night" / "a~2.mp4"]


def test_the_simulators_score_sequence_marker() -> None:
    assert score_sequence("a hand [sim:review=3/8]") == [3, 8]
    assert score_sequence("a hand [sim:review=3]") == []
    assert json.loads(answer_text({}, 3) or "")["score"] == 3


async def test_plan_counts_a_pending_retakes_worst_case_with_the_takes_it_has_left(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand"})
    two = RetakeAsk(retakes=2, review_usd=0.0, budget_usd=None)
    await store.record_verdict(verdict("a", 3), two)
    settings = {"b1": ReviewSettings(retakes=2)}
    await store.set_review_settings(settings)
    plan = make_plan([], store.path, reviews=settings)
    assert plan.to_submit == 1  # a~2
    take = (await store.get("a~2")).cost_usd  # type: ignore[union-attr]
    per_take = take + plan.review_cost_usd
    assert plan.retakes_worst_usd == pytest.approx(per_take)  # one more (a~3), not two


async def test_the_retake_is_made_in_the_verdicts_own_transaction(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while making the retake takes the verdict back with it: the review stays
    due and is asked again, so a verdict is never kept without the retake it asked for."""
    from batchveo.store import takes

    await done_jobs(store, tmp_path, {"a": "a hand"})
    monkeypatch.setattr(takes, "_COUNT_SQL", "INSERT INTO no_such_table VALUES (?)")
    with pytest.raises(sqlite3.OperationalError):
        await store.record_verdict(verdict("a", 3), ONE_RETAKE)
    assert await store.due_reviews() == ["a"]
    assert sorted(rows(store)) == ["a"]
    monkeypatch.undo()
    assert (await store.record_verdict(verdict("a", 3), ONE_RETAKE)).retake.job_id == "a~2"


async def test_a_take_id_held_by_a_job_loaded_before_the_rule_makes_no_retake(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "a hand"})
    await store.add_jobs([make_spec("a~2", "someone else's job")])  # an old manifest's id
    recorded = await store.record_verdict(verdict("a", 3), ONE_RETAKE)
    assert recorded.retake == Retake(None, "retake not made: the id a~2 is taken")
    assert rows(store)["a~2"][1] is None  # left as it was: not a take


def test_show_and_status_tell_the_takes_and_the_chosen_one(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from batchveo.cli import main

    db = tmp_path / "jobs.db"

    async def make() -> None:
        async with await Store.open(db) as store:
            await done_jobs(store, tmp_path, {"a": "a hand", "b": "a hat"})
            await store.record_verdict(verdict("a", 3), ONE_RETAKE)
            await finish(store, tmp_path, "a~2")
            await store.record_verdict(verdict("a~2", 8, ReviewStatus.PASSED), ONE_RETAKE)
            await store.record_verdict(verdict("b", 2), RetakeAsk(1, 0.0, budget_usd=0.0))

    asyncio.run(make())

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(main, [*args, "--db", str(db)])
        assert result.exit_code == 0, result.output
        return result.stdout

    for job_id in ("a", "a~2"):  # either take shows the job's takes
        shown = invoke("show", job_id)
        assert (
            "takes:\n  a (take 1): flagged, score 3\n  a~2 (take 2): passed, score 8  <- chosen\n"
            in shown
        )
    assert "  retaken as a~2\n" in invoke("show", "a")
    shown = invoke("show", "b")
    assert f"  {OVER_BUDGET}\n" in shown and "takes:" not in shown
    reviews = json.loads(invoke("status", "--json"))["reviews"]
    assert (reviews["retakes"], reviews["chosen_retakes"]) == (1, 1)
    assert reviews["batches"]["b1"]["retakes"] == 1
    assert {t["id"]: t["retake"] for t in reviews["flagged_takes"]} == {
        "a": "retaken as a~2", "b": OVER_BUDGET,
    }  # fmt: skip
    text = invoke("status")
    assert "retakes" in text and "chosen" in text
    assert "  a (b1): score 3; retaken as a~2\n" in text
    assert f"  b (b1): score 2; {OVER_BUDGET}\n" in text
