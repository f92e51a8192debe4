"""``batchveo load`` streams: what crosses chunks is still found, and nothing is written.

The load hands the store its jobs a chunk at a time (``STREAM_CHUNK_ITEMS``) and reads a
CSV a block at a time (``READ_CHUNK_BYTES``); here both are made tiny, so that a few rows
cross many chunks, and every check across rows (a duplicate id, an output used twice, a
reload naming a job twice) is seen to work across them, with nothing written when it
fails: no database created, no row of an existing one changed, no file left beside it.
"""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from batchveo.cli import main
from batchveo.manifest import loader, opening
from batchveo.store import loading

ROWS = "".join(f"take {i} of a lighthouse\n" for i in range(10))


@pytest.fixture(autouse=True)
def _tiny_chunks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHVEO_DB", raising=False)
    monkeypatch.setattr(loader, "STREAM_CHUNK_ITEMS", 3)
    monkeypatch.setattr(opening, "READ_CHUNK_BYTES", 7)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def rows(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, prompt, source FROM jobs ORDER BY rowid").fetchall()


def leftovers(folder: Path) -> list[str]:
    """Files a load may have left beside the database (its temporary one)."""
    return sorted(p.name for p in folder.iterdir() if ".loading-" in p.name)


def test_text_lines_splits_as_the_whole_text_would_with_tiny_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = '\ufeffprompt,id\r\n"two\nlines",a\rb,é€\r\n\r\n\nlast,🌊 no end'
    (tmp_path / "m.csv").write_bytes(text.encode())
    for size in (1, 2, 3, 5, 64):
        monkeypatch.setattr(opening, "READ_CHUNK_BYTES", size)
        fd = os.open(tmp_path / "m.csv", os.O_RDONLY)
        try:
            got = list(opening.text_lines(fd))
        finally:
            os.close(fd)
        assert got == list(io.StringIO(text[1:], newline="")), size


def test_a_byte_that_is_not_utf8_deep_in_a_csv_is_located_by_its_line(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(b"prompt\n" + ROWS.encode() + b"caf\xe9\nmore\n")
    result = invoke("load", "m.csv", "--db", "jobs.db")
    assert result.exit_code == 2
    assert result.output.strip() == "batchveo: m.csv:12: not UTF-8 text; save it as UTF-8"
    assert not (tmp_path / "jobs.db").exists() and leftovers(tmp_path) == []


def test_a_csv_loads_across_chunks_and_its_reload_adds_nothing(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("prompt\n" + ROWS)
    first = invoke("load", "m.csv", "--db", "jobs.db")
    assert first.exit_code == 0, first.output
    assert first.output.strip() == "10 new, 0 already loaded (batch m)"
    assert [r[1] for r in rows(tmp_path / "jobs.db")] == ROWS.splitlines()
    again = invoke("load", "m.csv", "--db", "jobs.db")
    assert again.output.strip() == "0 new, 10 already loaded (batch m)"
    assert leftovers(tmp_path) == []


def test_a_duplicate_chunks_apart_is_named_and_no_database_is_created(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "prompt,id\n" + "".join(f"p{i},j{i}\n" for i in range(8)) + "p0,j0\nother,j1\n"
    )
    result = invoke("load", "m.csv", "--db", "jobs.db")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "batchveo: m.csv row 9, job j0: duplicate of m.csv row 1 (use repeat: N for variants)",
        "batchveo: m.csv row 10, job j1: id j1 is also used by a different job at m.csv row 2",
    ]
    assert not (tmp_path / "jobs.db").exists() and leftovers(tmp_path) == []


def test_a_reload_that_names_a_stored_job_twice_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "m.csv").write_text("prompt,id\n" + "".join(f"p{i},j{i}\n" for i in range(5)))
    assert invoke("load", "m.csv", "--db", "jobs.db").exit_code == 0
    before = rows(tmp_path / "jobs.db")
    (tmp_path / "n.csv").write_text("prompt,id\np1,j1\nnew,k1\nnew2,k2\nnew3,k3\np1,j1\n")
    result = invoke("load", "n.csv", "--db", "jobs.db", "--batch", "m")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "batchveo: n.csv row 5, job j1: duplicate of n.csv row 1 (use repeat: N for variants)"
    ]
    assert rows(tmp_path / "jobs.db") == before


def test_an_output_used_twice_chunks_apart_is_refused(tmp_path: Path) -> None:
    jobs = "".join(f"  - {{id: j{i}, prompt: p{i}}}\n" for i in range(6))
    (tmp_path / "m.yaml").write_text(
        "jobs:\n  - {id: a, prompt: x, output: intro}\n"
        f"{jobs}  - {{id: b, prompt: y, output: intro}}\n"
    )
    result = invoke("load", "m.yaml", "--db", "jobs.db")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "batchveo: m.yaml:9, job b: output 'intro' is also used by m.yaml:2:"
        " one video would replace the other"
    )
    assert not (tmp_path / "jobs.db").exists()


def test_a_video_where_a_stored_job_needs_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("jobs:\n  - {id: a, prompt: x, output: 'x.mp4/{id}'}\n")
    assert invoke("load", "a.yaml", "--db", "jobs.db").exit_code == 0
    (tmp_path / "b.yaml").write_text("jobs:\n  - {id: b, prompt: y, output: x}\n")
    result = invoke("load", "b.yaml", "--db", "jobs.db")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "batchveo: b.yaml:2, job b: its video x.mp4 would stand where"
        " job a (already loaded from a.yaml:2) needs a folder"
    )
    assert [r[0] for r in rows(tmp_path / "jobs.db")] == ["a"]


def test_past_the_problems_kept_the_rest_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "MAX_PROBLEMS_KEPT", 4)
    (tmp_path / "m.csv").write_text("prompt,durationSeconds\n" + "p,5\n" * 30)
    result = invoke("load", "m.csv", "--db", "jobs.db")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 5 and lines[0].startswith("batchveo: m.csv row 1: ")
    assert lines[-1] == "batchveo: ... and 26 more problem(s)"
    assert not (tmp_path / "jobs.db").exists()
