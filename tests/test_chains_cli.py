"""Scene chains as the user sees them: ``status``, ``show``, ``export``, ``retry``, the
report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result

from batchveo.cli import main
from batchveo.states import JobState
from batchveo.store import Store
from tests.test_chains_store import finish

S = JobState


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def loaded(tmp: Path) -> Path:
    path = tmp / "c.yaml"
    path.write_text(
        "jobs:\n  - id: a\n    prompt: a root\n    chain: [hop two, hop three]\n"
        "  - {id: b, prompt: b root}\n  - {id: b-next, extends: b, prompt: b goes on}\n"
    )
    db = tmp / "jobs.db"
    assert invoke("load", str(path), "--db", str(db)).exit_code == 0
    return db


def test_status_and_show_tell_the_chains(tmp_path: Path) -> None:
    db = loaded(tmp_path)

    async def setup() -> None:
        async with await Store.open(db) as store:
            await finish(store, "a", store.clock())

    asyncio.run(setup())
    status = invoke("status", "--db", str(db))
    assert status.exit_code == 0
    assert "Scene chains (hops done/total): a 1/3, b 0/2" in status.output
    data = json.loads(invoke("status", "--json", "--db", str(db)).output)
    assert data["chains"] == [
        {"root": "a", "done": 1, "total": 3},
        {"root": "b", "done": 0, "total": 2},
    ]
    assert data["states"]["waiting"] == 2  # a-3 and b-next
    shown = invoke("show", "a-2", "--db", str(db)).output.splitlines()
    at = shown.index("chain a (1/3 done):")
    assert [line.split()[:3] for line in shown[at + 1 :]] == [
        ["1.", "a", "done"],
        ["*", "2.", "a-2"],
        ["3.", "a-3", "waiting"],
    ]
    assert "extends a-2" in shown[-1]
    history = shown[shown.index("history:") + 1 : at]
    assert "- -> waiting" in history[0] and "waiting -> pending" in history[1]
    rows = [json.loads(line) for line in invoke("export", "--db", str(db)).output.splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert (by_id["a-3"]["extends"], by_id["a-3"]["chain_root"]) == ("a-2", "a")
    assert (by_id["b-next"]["extends"], by_id["b-next"]["chain_root"]) == ("b", "b")
    assert (by_id["b"]["extends"], by_id["b"]["chain_root"]) == (None, None)
    csv_head = invoke("export", "--format", "csv", "--db", str(db)).output.splitlines()[0]
    assert ",extends,chain_root," in csv_head + ","


def test_retry_of_a_parent_reopens_its_hops_and_says_how_many(tmp_path: Path) -> None:
    db = loaded(tmp_path)

    async def fail_root() -> None:
        async with await Store.open(db) as store:
            [job] = [j for j in await store.claim_pending(1)]
            await store.transition(job.id, S.SUBMITTING, S.FAILED, error_kind="bad_request")

    asyncio.run(fail_root())
    assert json.loads(invoke("status", "--json", "--db", str(db)).output)["states"]["failed"] == 3
    result = invoke("retry", "a", "--db", str(db))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "1 job(s) back to pending",
        "2 hop(s) of their chains reopened: they wait for their parent's video",
    ]


def test_the_report_shows_a_chain_as_one_row_longest_cut_first(tmp_path: Path) -> None:
    db = loaded(tmp_path)

    async def setup() -> None:
        async with await Store.open(db) as store:
            await finish(store, "a", store.clock())
            await finish(store, "a-2", store.clock())

    asyncio.run(setup())
    out = tmp_path / "report.html"
    assert invoke("report", "--db", str(db), "--out", str(out)).exit_code == 0
    html = out.read_text()
    assert html.count('<section class="chain') == 2
    row = html[html.index("chain a: 2/3 hops done, longest cut a-2") :]
    row = row[: row.index("</section>")]
    ids = [part.split('"')[0] for part in row.split('id="job-')[1:]]
    assert ids == ["a-2", "a", "a-3"]


def test_retry_of_a_named_job_in_another_state_says_how_to_reopen_it(tmp_path: Path) -> None:
    """`retry ID` takes failed jobs unless told: a cancelled root (or a name that is no
    job) is not silently left alone."""
    db = loaded(tmp_path)
    assert invoke("cancel", "a", "--db", str(db)).exit_code == 0
    result = invoke("retry", "a", "nosuch", "--db", str(db))
    assert result.exit_code == 0 and result.stdout == "0 job(s) back to pending\n"
    assert result.stderr.splitlines() == [
        "a is cancelled, not failed: left as it is (`batchveo retry --state cancelled a`"
        " reopens it)",
        "nosuch: no such job",
    ]
    again = invoke("retry", "--state", "cancelled", "a", "--db", str(db))
    assert again.stdout.startswith("1 job(s) back to pending") and again.stderr == ""
