"""The JSON-lines log and the progress displays, as a user reads them.

The log and the progress take every job state change from the store's transitions;
the runner's events add only what is run-level (a 429 pause, a manifest dropped in).
"""

from __future__ import annotations

import io
import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

from rich.console import Console

from batchveo.observe import (
    JsonLog,
    LiveProgress,
    PlainProgress,
    RunMonitor,
    make_progress,
    one_line,
)
from batchveo.store import Store, TransitionEvent
from tests.helpers import FakeClock, make_spec
from tests.pipeline_helpers import KEY, fast_config, fast_sim, run_batch

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ submitted (\d+)/(\d+) generating (\d+)"
    r" downloaded (\d+)/(\d+) failed (\d+) expired (\d+) uncertain (\d+)"
    r" \| 429 pauses (\d+) \((\d+)s\)( \| last error: .+)?$"
)
NOON = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def ev(
    job: str, src: str, dst: str, *, error: str | None = None, kind: str | None = None
) -> TransitionEvent:
    return TransitionEvent(job, "b1", src, dst, NOON, 1, error, None, kind, error)


def parse(line: str) -> dict[str, Any]:
    m = LINE.match(line)
    assert m, f"unexpected progress line: {line!r}"
    g = [int(x) if x and x.isdigit() else x for x in m.groups()]
    keys = "submitted total generating downloaded total2 failed expired uncertain pauses pause_s"
    out = dict(zip(keys.split(), g, strict=False))
    out["error"] = (m.group(11) or "").removeprefix(" | last error: ") or None
    return out


def assert_no_control_codes(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text
    assert not any(ord(c) < 32 and c != "\n" for c in text)


# -- the JSON log, on a real run -----------------------------------------------------------


async def test_json_log_records_every_transition_of_a_real_run(
    store: Store, tmp_path: Path
) -> None:
    """What ``run --log-file`` writes: each state change once, plus the run-level events."""
    log_path = tmp_path / "logs" / "run.jsonl"
    specs = [
        make_spec("ok1", "a calm sea"),
        make_spec("ok2", "a busy street"),
        make_spec("flaky", "flaky server [sim:500x1]"),
        make_spec("throttled", "busy [sim:429x1]"),
        make_spec("policy", "rejected [sim:content_policy]"),
    ]
    await store.add_jobs(specs)
    config = fast_config(tmp_path / "videos")
    said: list[str] = []
    progress_out = io.StringIO()
    monitor = RunMonitor(
        store, config, KEY, log_file=log_path, notify_url=None, on_complete=None,
        quiet=False, verbose=False, say=said.append, stream=progress_out,
    )  # fmt: skip
    await monitor.start()
    async with fast_sim(retry_after_style="retryinfo", retry_after_s=0.01) as sim:
        result = await run_batch(store, sim, config, observer=monitor.on_run_event)
    await monitor.stop()
    await monitor.finished(result)
    assert result.exit_code == 1 and said == []

    text = log_path.read_text(encoding="utf-8")
    assert KEY not in text
    records = [json.loads(line) for line in text.split("\n") if line]
    assert all(r["at"].endswith("Z") and isinstance(r["ts"], float) for r in records)
    assert records[0]["event"] == "run_started" and records[-1]["event"] == "run_finished"
    assert records[-1]["states"]["done"] == 4 and records[-1]["exit_code"] == 1
    events = {r["event"] for r in records}
    assert events == {"run_started", "transition", "rate_limited", "run_finished"}

    def path_of(job: str) -> list[str]:
        moves = [r for r in records if r["event"] == "transition" and r["job"] == job]
        assert all(a["to"] == b["from"] for a, b in pairwise(moves))
        return [moves[0]["from"]] + [m["to"] for m in moves]

    happy = ["pending", "submitting", "running", "generated", "done"]
    assert path_of("ok1") == path_of("ok2") == happy
    retried = ["pending", "submitting", "pending", "submitting", "running", "generated", "done"]
    assert path_of("flaky") == path_of("throttled") == retried
    assert path_of("policy") == ["pending", "submitting", "failed"]
    [failed] = [r for r in records if r.get("job") == "policy" and r.get("to") == "failed"]
    assert failed["error_kind"] == "content_policy" and failed["error"]
    [running] = [r for r in records if r.get("job") == "ok1" and r.get("to") == "running"]
    assert running["operation"] and running["batch"] == "b1" and running["attempt"] == 1
    [pause] = [r for r in records if r["event"] == "rate_limited"]
    assert pause["job"] == "throttled" and pause["pause_s"] >= 0

    # The progress line at the end says what happened, and the 429 is not an "error".
    final = parse(progress_out.getvalue().splitlines()[-1])
    assert (final["submitted"], final["total"], final["downloaded"]) == (5, 5, 4)
    assert (final["failed"], final["uncertain"], final["pauses"]) == (1, 0, 1)
    assert final["error"] and final["error"].startswith("policy: ")


def test_json_log_appends_flushes_at_once_and_scrubs(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"event": "earlier run"}\n', encoding="utf-8")
    log = JsonLog(path, scrub=lambda s: s.replace("sk-secret", "***"), clock=lambda: NOON)
    log.on_transition(ev("j1", "submitting", "failed", error="bad key sk-secret é", kind="x"))
    # Readable before close: tail -f sees it, a crash would not lose it.
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"event": "earlier run"}
    rec = json.loads(lines[1])
    assert rec["error"] == "bad key *** é" and "sk-secret" not in lines[1]
    assert rec["at"] == "2027-01-15T08:00:00.000Z" and rec["ts"] == NOON
    assert (rec["event"], rec["from"], rec["to"], rec["error_kind"]) == (
        "transition",
        "submitting",
        "failed",
        "x",
    )
    log.on_run_event("rate_limited", {"job": "j1", "pause_s": 12.5})
    log.on_run_event("run_finished", {"states": {"done": 1}, "exit_code": 0, "at": "x"})
    log.close()
    log.on_run_event("run_finished", {})  # after close: ignored, no exception
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["event"] for x in lines[2:]] == ["rate_limited", "run_finished"]
    assert json.loads(lines[3])["detail_at"] == "x"


def test_json_log_survives_a_broken_file(tmp_path: Path) -> None:
    log = JsonLog(tmp_path / "run.jsonl")
    log._file.close()  # type: ignore[union-attr]  # e.g. the disk went away
    log.on_transition(ev("j1", "pending", "submitting"))
    assert log.error and "run.jsonl" in log.error


# -- plain progress ----------------------------------------------------------------------------


def test_plain_progress_counts_throttles_and_never_writes_control_codes() -> None:
    out, clock = io.StringIO(), FakeClock()
    p = PlainProgress(out, interval_s=60, clock=clock, wall_clock=lambda: NOON)
    p.start({"pending": 3, "done": 7, "failed": 1})
    first = out.getvalue().splitlines()
    assert len(first) == 1 and first[0].startswith("2027-01-15T08:00:00Z ")
    assert parse(first[0])["total"] == 3 and parse(first[0])["downloaded"] == 0

    for job in ("a", "b", "c"):
        p.on_transition(ev(job, "pending", "submitting"))
    p.on_transition(ev("a", "submitting", "running"))
    p.on_run_event("rate_limited", {"job": "b", "pause_s": 30.0})
    p.on_transition(ev("b", "submitting", "pending", error="429 slow down"))
    p.on_transition(ev("c", "submitting", "pending", error="HTTP 500\x1b[31m boom\r\nagain"))
    assert len(out.getvalue().splitlines()) == 1  # within the interval: nothing more

    clock.advance(59.9)
    p.tick()
    assert len(out.getvalue().splitlines()) == 1
    clock.advance(0.1)
    p.tick()
    second = parse(out.getvalue().splitlines()[-1])
    assert second["submitted"] == 1 and second["generating"] == 1 and second["total"] == 3
    assert (second["pauses"], second["pause_s"]) == (1, 30)
    assert second["error"] == "c: HTTP 500 [31m boom again"  # the 429 is not an error

    p.on_transition(ev("a", "running", "generated"))
    p.on_transition(ev("a", "generated", "done"))
    p.on_transition(ev("c", "pending", "submitting"))
    p.on_transition(ev("c", "submitting", "failed", error="policy\ttext", kind="content_policy"))
    p.on_transition(ev("j0", "failed", "pending"))  # a retry from elsewhere adds work
    assert len(out.getvalue().splitlines()) == 2
    clock.advance(60)
    p.on_transition(ev("b", "pending", "submitting"))  # an event past the interval prints
    assert len(out.getvalue().splitlines()) == 3
    p.close()
    p.close()
    p.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    final = parse(lines[-1])
    assert (final["submitted"], final["total"], final["downloaded"], final["total2"]) == (
        2,
        4,
        1,
        4,
    )
    assert (final["failed"], final["generating"]) == (1, 0)
    assert final["error"] == "c: policy text"
    assert_no_control_codes(out.getvalue())


def test_plain_progress_keeps_going_when_its_stream_is_gone() -> None:
    out = io.StringIO()
    p = PlainProgress(out, interval_s=0)
    p.start({"pending": 1})
    out.close()
    p.on_transition(ev("a", "pending", "submitting"))
    p.close()  # no exception


def test_plain_progress_on_an_ascii_only_stream() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    p = PlainProgress(stream, interval_s=0)
    p.start({"pending": 1})
    p.on_transition(ev("a", "pending", "submitting"))
    p.on_transition(ev("a", "submitting", "failed", error="refusé ❌"))
    stream.flush()
    assert "a: refus? ?" in raw.getvalue().decode("ascii").splitlines()[-1]


def test_one_line_strips_everything_a_terminal_would_act_on() -> None:
    assert one_line("a\x1b[2J\rb\n\tc\u2028d\u202ee\x00f") == "a [2J b c d e f"
    assert one_line("x" * 50, 10) == "xxxxxxx..."


# -- live progress ----------------------------------------------------------------------------


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_live_progress_renders_counts() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    live = LiveProgress(console, refresh_per_second=4)
    live.start({"pending": 10, "done": 2})
    for i in range(10):
        live.on_transition(ev(f"j{i}", "pending", "submitting"))
    for i in range(8):
        live.on_transition(ev(f"j{i}", "submitting", "running"))
    for i in range(3):
        live.on_transition(ev(f"j{i}", "running", "generated"))
        live.on_transition(ev(f"j{i}", "generated", "done"))
    live.on_transition(ev("j8", "submitting", "failed", error="HTTP 400 bad", kind="bad_request"))
    live.on_run_event("rate_limited", {"job": "j9", "pause_s": 15})
    live.stop()
    live.stop()
    text = strip_ansi(buf.getvalue())
    for expected in ("submitted", "9/10", "generating", "5/10", "downloaded", "3/10"):
        assert expected in text
    assert "failed 1" in text and "429 pauses 1 (15s)" in text and "j8: HTTP 400 bad" in text

    # The same view printed on its own (no live thread) says the same.
    plain = Console(file=io.StringIO(), width=120, color_system=None)
    plain.print(live.renderable())
    assert "3/10" in plain.file.getvalue()  # type: ignore[attr-defined]


def test_make_progress_picks_the_display() -> None:
    console = Console(file=io.StringIO())
    stream = io.StringIO()
    assert make_progress(True, True, stream, console) is None
    assert make_progress(False, True, stream, console) is None
    assert isinstance(make_progress(True, False, stream, console), LiveProgress)
    plain = make_progress(False, False, stream, console, interval_s=5)
    assert isinstance(plain, PlainProgress) and plain.interval_s == 5
