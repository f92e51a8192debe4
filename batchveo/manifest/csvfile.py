"""CSV manifests: a header row, then one job per row.

Column names are matched case-insensitively, in the API's camelCase or in snake_case
(``aspect_ratio``); ``referenceImages`` is a ``;``-separated list; an empty cell means "not
set"; UTF-8 with or without BOM, CRLF or LF, quoted cells may span lines, but a quote left
open or text after a closing quote is an error (read leniently, either would silently
swallow or rewrite rows).

Where a problem is: ``FILE row N``, N being the 1-based data row. The header is not counted
and blank lines are, so without multi-line cells row N is line N+1 of the file (and row N+1
of a spreadsheet). Header problems are located at ``FILE header``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

from batchveo.manifest.rows import CSV_COLUMNS, JOB_KEYS, Defaults, Sink, unknown_key
from batchveo.manifest.show import show


def read_csv(name: str, lines: Iterable[str], sink: Sink) -> Defaults:
    """Hand every job of a CSV manifest (its ``lines``, ends kept, as a file opened with
    ``newline=""`` gives them) to ``sink``, with every problem; return the file's defaults
    (a CSV has none of its own)."""
    defaults = Defaults()
    # strict: a quote left open would otherwise take in every later row as one cell
    # (they would never be jobs, and one prompt would be paid with all their text).
    reader = csv.reader(lines, strict=True)
    cols, unnamed = _columns(name, next(reader, []), sink)
    if "prompt" not in cols:
        sink.problem(f"{name} header", None, "no 'prompt' column")
        return defaults
    n, end_line, seen_rows, ncols = 0, reader.line_num, False, len(cols)
    try:
        for n, row in enumerate(reader, 1):
            end_line = reader.line_num  # where this row ends, so where the next one starts
            if raw := _cells(cols, row):
                seen_rows = True
                odd = unnamed or len(row) > ncols  # else no cell can lack a column
                bad = _shape_problems(row, ncols, unnamed) if odd else []
                sink.job(raw, f"{name} row {n}", defaults, bad)
    except csv.Error as e:
        why = _csv_error(str(e), end_line + 1, reader.line_num)
        sink.problem(f"{name} row {n + 1}", None, f"not valid CSV: {why}")
        return defaults
    if not seen_rows:
        sink.problem(name, None, "empty manifest: no jobs")
    return defaults


def _columns(name: str, header: list[str], sink: Sink) -> tuple[list[str | None], list[int]]:
    """The key each column names (None for a column that names none), and the columns whose
    header is empty (spreadsheets export trailing empty columns: fine while they stay empty)."""
    cols: list[str | None] = []
    unnamed = []
    for i, cell in enumerate(header):
        key = CSV_COLUMNS.get(cell.strip().lower())
        if not cell.strip():
            unnamed.append(i)
        elif key is None:
            sink.problem(f"{name} header", None, unknown_key(cell.strip(), JOB_KEYS, "column"))
        elif key in cols:
            sink.problem(f"{name} header", None, f"column {show(key)} appears twice")
            key = None
        cols.append(key)
    return cols, unnamed


def _cells(cols: list[str | None], row: list[str]) -> dict[str, Any]:
    """The row's set cells by key (an empty cell is not set)."""
    raw: dict[str, Any] = {}
    for key, cell in zip(cols, row, strict=False):
        if key and (value := cell.strip()):
            raw[key] = value
    if refs := raw.get("referenceImages"):
        raw["referenceImages"] = [s.strip() for s in refs.split(";") if s.strip()]
    return raw


def _shape_problems(row: list[str], ncols: int, unnamed: list[int]) -> list[str]:
    """Values the header gives no name to."""
    bad = []
    if len(row) > ncols and any(c.strip() for c in row[ncols:]):
        bad.append(f"{len(row)} cells but the header names {ncols} columns")
    if unnamed and any(row[i].strip() for i in unnamed if i < len(row)):
        bad.append("a value in a column whose header is empty")
    return bad


def _csv_error(error: str, first_line: int, line: int) -> str:
    """What a csv module error means for a row starting on ``first_line``, read up to ``line``.

    Every one of them is a quote in the wrong place: a cell whose quote never closes (at the
    end of the file, or at the module's cell size limit), or text after a closing quote.
    """
    if error.startswith("unexpected end of data"):
        return (
            f"a quote in this row (line {first_line}) is never closed, "
            "so it would swallow every later row"
        )
    if error.startswith("field larger than field limit"):
        return (
            f"a cell of this row (from line {first_line}) is over {csv.field_size_limit():,} "
            "characters: is a quote left unclosed?"
        )
    if "expected after" in error:
        if first_line == line:
            return (
                f"text follows the closing quote of a cell on line {line} "
                '(a quote inside a quoted cell is written twice: "")'
            )
        return (
            f"a quoted cell from line {first_line} ends on line {line} with text right after "
            "its closing quote (is a quote left unclosed?)"
        )
    return error
