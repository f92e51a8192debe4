"""The review stage as a user meets it: manifests, ``review``, ``status``, ``show``,
``export``, ``plan`` (in-process, as tests/test_cli.py; the reviews answered by an
in-process client standing in for the route's, patched where the run gets it)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from batchveo import models
from batchveo.cli import main
from batchveo.errors import AccountError
from batchveo.run import reviewer
from batchveo.store import ReviewStatus, Store
from batchveo.verdicts import MediaResolution, ReviewSettings
from tests.pipeline_helpers import KEY, fast_sim
from tests.review_helpers import FakeReviews, done_jobs

MANIFEST = """\
defaults:
  durationSeconds: 8
  review:
    rubric: "No extra limbs."
    threshold: 7
    retakes: 1
    fps: 4
    mediaResolution: low
jobs:
  - id: a
    prompt: a calm sea
  - id: b
    prompt: a hand
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHVEO_API_KEY", KEY)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("BATCHVEO_DB", "BATCHVEO_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeReviews:
    """Every route's client reviews through this one (r16api's ``review`` at merge)."""
    reviews = FakeReviews({"denied": lambda: AccountError("403 Gemini is not enabled")})
    monkeypatch.setattr(reviewer, "review_client_of", lambda client: reviews)
    return reviews


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def done_db(prompts: dict[str, str], settings: ReviewSettings | None = None) -> Path:
    async def go() -> None:
        async with await Store.open(Path("jobs.db")) as store:
            await done_jobs(store, Path.cwd(), prompts)
            if settings is not None:
                await store.set_review_settings({"b1": settings})

    asyncio.run(go())
    return Path("jobs.db")


def statuses() -> dict[str, ReviewStatus | None]:
    async def go() -> dict[str, ReviewStatus | None]:
        async with await Store.open(Path("jobs.db")) as store:
            return {r.job_id: r.status for r in await store.reviews_of()}

    return asyncio.run(go())


def test_a_manifests_review_settings_are_loaded_with_its_jobs() -> None:
    Path("night.yaml").write_text(MANIFEST)
    result = invoke("load", "night.yaml", "--db", "jobs.db")
    assert result.exit_code == 0, result.output

    async def read() -> dict[str, ReviewSettings]:
        async with await Store.open(Path("jobs.db")) as store:
            return await store.review_settings()

    low = MediaResolution.LOW
    assert asyncio.run(read()) == {
        "night": ReviewSettings("gemini-3.5-flash", "No extra limbs.", 7, 1, 4, low)
    }


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("threshold: 7", "threshold: 11", "defaults: review: threshold must be between 0 and 10"),
        ("fps: 4", "fps: 0", "defaults: review: fps must be more than 0 and at most 24, not 0"),
        ("retakes: 1", "retakes: -1", "defaults: review: retakes must be between 0 and 10, not -1"),
        (
            "mediaResolution: low", "mediaResolution: ultra",
            "defaults: review: mediaResolution must be one of low, medium, high, not 'ultra'",
        ),
        ("fps: 4", "colour: red", "defaults: review: unknown key 'colour' (known: model,"),
    ],
)  # fmt: skip
def test_a_bad_review_setting_is_one_line_at_its_file_and_line_and_loads_nothing(
    old: str, new: str, message: str
) -> None:
    Path("night.yaml").write_text(MANIFEST.replace(old, new))
    result = invoke("load", "night.yaml", "--db", "jobs.db")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"batchveo: night.yaml:3: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path("jobs.db").exists()


def test_plan_shows_the_reviews_cost_and_the_retakes_worst_case_apart() -> None:
    Path("night.yaml").write_text(MANIFEST)
    result = invoke("plan", "night.yaml", "--db", "jobs.db")
    assert result.exit_code == 0, result.output
    # 8 s sampled at 4 fps, low resolution, the question and the answer: models' rule.
    one = models.estimate_review_cost_usd("gemini-3.5-flash", 8, 4, "low")
    assert f"reviews:             2 video(s), estimated ${2 * one:.4f}" in result.stdout
    assert "retakes, worst case: $" in result.stdout
    data = json.loads(invoke("plan", "night.yaml", "--db", "jobs.db", "--json").stdout)
    assert data["reviews"] == 2 and data["estimated_review_cost_usd"] == round(2 * one, 4)
    per_take = data["estimated_cost_usd"] / 2 + one
    assert data["retakes_worst_case_usd"] == round(2 * per_take, 2)
    assert not Path("jobs.db").exists()


def test_review_reviews_the_done_videos_then_nothing_until_forced(fake: FakeReviews) -> None:
    done_db({"good": "a calm sea [review=9]", "bad": "a hand [review=3]"}, ReviewSettings())
    result = invoke("review", "--db", "jobs.db", "--review-rpm", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout == "reviewed 2 of 2: 1 passed, 1 flagged\n"
    assert statuses() == {"good": ReviewStatus.PASSED, "bad": ReviewStatus.FLAGGED}
    again = invoke("review", "--db", "jobs.db", "--review-rpm", "0")
    assert again.exit_code == 0 and again.stdout == "nothing to review\n"
    assert len(fake.asks) == 2
    forced = invoke(
        "review", "bad", "--force", "--db", "jobs.db", "--review-rpm", "0",
        "--review-threshold", "2",
    )  # fmt: skip
    assert forced.exit_code == 0 and forced.stdout == "reviewed 1 of 1: 1 passed\n"
    assert len(fake.asks) == 3 and statuses()["bad"] is ReviewStatus.PASSED


def test_review_makes_the_retakes_its_flags_ask_for_and_leaves_them_to_the_next_run(
    fake: FakeReviews,
) -> None:
    done_db({"bad": "a hand [review=3]"}, ReviewSettings(retakes=1))
    result = invoke("review", "--db", "jobs.db", "--review-rpm", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("reviewed 1 of 1: 1 flagged; 1 retake(s) made, sent by the next run\n")
    shown = invoke("show", "bad~2", "--db", "jobs.db")
    assert shown.exit_code == 0 and "  bad~2 (take 2): pending\n" in shown.stdout


def test_review_retakes_flag_gives_a_flagged_job_its_retake_over_the_batchs_settings(
    fake: FakeReviews,
) -> None:
    done_db({"bad": "a hand [review=3]", "worse": "a face [review=2]"}, ReviewSettings())
    result = invoke("review", "bad", "--db", "jobs.db", "--review-rpm", "0")
    assert result.stdout == "reviewed 1 of 1: 1 flagged\n"  # the batch's: flag only
    result = invoke(
        "review", "worse", "--db", "jobs.db", "--review-rpm", "0", "--review-retakes", "1"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "reviewed 1 of 1: 1 flagged; 1 retake(s) made, sent by the next run\n"
    assert "  worse~2 (take 2): pending\n" in invoke("show", "worse~2", "--db", "jobs.db").stdout
    assert invoke("show", "bad~2", "--db", "jobs.db").exit_code == 2  # none for bad
    too_many = invoke("review", "--db", "jobs.db", "--review-retakes", "11")
    assert too_many.exit_code == 2 and "--review-retakes" in too_many.stderr


def test_review_of_a_job_that_is_not_done_is_one_line_exit_2(fake: FakeReviews) -> None:
    done_db({"a": "x"})
    result = invoke("review", "nope", "--db", "jobs.db")
    assert result.exit_code == 2 and "no job 'nope'" in result.stderr
    assert fake.asks == []


def test_an_account_error_on_review_is_said_and_is_not_a_failure(fake: FakeReviews) -> None:
    done_db({"a": "x [review=denied]", "b": "y [review=denied]"})
    result = invoke("review", "--db", "jobs.db", "--review-inflight", "1", "--review-rpm", "0")
    assert result.exit_code == 0, result.output
    assert "reviews stopped: 403 Gemini is not enabled" in result.stdout
    assert statuses() == {"a": None, "b": None}  # both still due


def test_status_show_and_export_tell_the_verdicts(fake: FakeReviews) -> None:
    done_db({"good": "a calm sea [review=9]", "bad": "a hand [review=3]"}, ReviewSettings())
    assert invoke("review", "--db", "jobs.db", "--review-rpm", "0").exit_code == 0

    data = json.loads(invoke("status", "--json", "--db", "jobs.db").stdout)
    reviews = data["reviews"]
    assert (reviews["passed"], reviews["flagged"], reviews["error"]) == (1, 1, 0)
    assert reviews["flagged_takes"] == [{"id": "bad", "batch": "b1", "score": 3.0, "retake": None}]
    text = invoke("status", "--db", "jobs.db").stdout
    assert "reviews" in text and "bad (b1): score 3" in text

    shown = invoke("show", "bad", "--db", "jobs.db")
    assert shown.exit_code == 0
    assert "review: flagged, score 3/10" in shown.stdout
    assert "  00:05  an extra finger\n" in shown.stdout
    assert "  summary: scored 3\n" in shown.stdout

    rows = [json.loads(line) for line in invoke("export", "--db", "jobs.db").stdout.splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert by_id["bad"]["review_status"] == "flagged" and by_id["bad"]["review_score"] == 3.0
    assert by_id["bad"]["review_defects"] == [{"at": "00:05", "issue": "an extra finger"}]
    assert by_id["good"]["review_matches_prompt"] is True
    out = invoke("export", "--format", "csv", "--db", "jobs.db").stdout
    table = {r["id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert table["bad"]["review_status"] == "flagged"
    assert json.loads(table["bad"]["review_defects"]) == [
        {"at": "00:05", "issue": "an extra finger"}
    ]


def test_review_without_a_key_is_exit_2_and_force_clears_no_verdict(
    fake: FakeReviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    done_db({"a": "x [review=8]"}, ReviewSettings())
    assert invoke("review", "--db", "jobs.db", "--review-rpm", "0").exit_code == 0
    for var in ("BATCHVEO_API_KEY", "GPTPROTO_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    result = invoke("review", "a", "--force", "--db", "jobs.db")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert statuses() == {"a": ReviewStatus.PASSED}  # the verdict is kept


def test_plan_and_dry_run_with_review_count_every_batchs_reviews() -> None:
    Path("night.yaml").write_text("jobs:\n  - id: a\n    prompt: x\n  - id: b\n    prompt: y\n")
    without = json.loads(invoke("plan", "night.yaml", "--db", "jobs.db", "--json").stdout)
    assert without["reviews"] == 0 and without["estimated_review_cost_usd"] == 0
    data = json.loads(invoke("plan", "night.yaml", "--review", "--db", "jobs.db", "--json").stdout)
    # The defaults: 1 fps at medium resolution; no retakes.
    one = models.estimate_review_cost_usd("gemini-3.5-flash", 8, 1, "medium")
    assert data["reviews"] == 2 and data["estimated_review_cost_usd"] == round(2 * one, 4)
    assert data["retakes_worst_case_usd"] == 0
    dry = invoke("run", "night.yaml", "--review", "--dry-run", "--db", "jobs.db")
    assert dry.exit_code == 0
    assert f"reviews:             2 video(s), estimated ${2 * one:.4f}" in dry.stdout
    assert not Path("jobs.db").exists()


@contextmanager
def sim_in_a_thread() -> Iterator[str]:
    """The simulator on its own loop in a thread (``run`` needs the main thread for its
    signal handlers); its URL."""
    ready = threading.Event()
    held: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        done = asyncio.Event()
        async with fast_sim() as sim:
            held.append((sim.url, asyncio.get_running_loop(), done))
            ready.set()
            await done.wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()))
    thread.start()
    try:
        assert ready.wait(30)
        yield held[0][0]
    finally:
        if held:
            _, loop, done = held[0]
            loop.call_soon_threadsafe(done.set)
        thread.join(30)


def test_run_review_reviews_the_nights_videos_and_keeps_exit_0(fake: FakeReviews) -> None:
    Path("night.yaml").write_text(MANIFEST.replace("a hand", "a hand [review=3]"))
    fast = ["--rpm", "0", "--first-poll", "0.01", "--poll-interval", "0.02", "--review-rpm", "0"]
    with sim_in_a_thread() as url:
        result = CliRunner().invoke(
            main,
            ["run", "night.yaml", "--db", "jobs.db", "--base-url", url, "-q", *fast,
             "--review-threshold", "2", "--review-fps", "2"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().endswith("2 done; reviews: 2 passed"), result.stderr
    assert statuses() == {"a": ReviewStatus.PASSED, "b": ReviewStatus.PASSED}  # 3 >= 2
    assert sorted(a.fps for a in fake.asks) == [2.0, 2.0]  # the flag over the manifest's 4
    assert {a.rubric for a in fake.asks} == {"No extra limbs."}


def test_review_while_a_run_holds_the_database_is_exit_3_and_asks_nothing(
    fake: FakeReviews,
) -> None:
    from batchveo import lock

    done_db({"a": "x [review=8]"}, ReviewSettings())
    with lock.acquire(Path("jobs.db")):  # a run reviewing the same takes would ask twice
        result = invoke("review", "--db", "jobs.db")
    assert result.exit_code == 3 and len(result.stderr.strip().splitlines()) == 1
    assert fake.asks == [] and statuses() == {"a": None}
