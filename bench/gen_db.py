"""A job database of a finished night, made in seconds at a million jobs, for the read benchmarks.

Loading a 1M-row manifest through ``batchveo load`` would measure the loader, take minutes
and leave every job pending. Instead the database is set up by the code under test (its
own ``Store.open``: the real schema, every migration applied) and filled by one SQL
statement: a recursive CTE counts ``i`` from 1 to N and ``INSERT ... SELECT`` writes job
``i`` in the real columns, as a night leaves them:

* 90% done, each with one video file (``files``: path, size, sha256); the paths cycle over
  ``VIDEO_FILES`` real small files under the database's folder, so the report finds
  them on disk (it checks every one) without a million files being made; each with its
  poster frame (``posters``, ``vNNN.jpg`` beside it: what the report then finds made);
* 4% failed (filtered, operation error, content policy, retries exhausted, with their
  messages), 1% uncertain, 1% expired, 2% cancelled, 2% pending;
* one batch in ten thousand rows is ``night-2``, the rest ``night-1``; 720p 16:9 8 s
  clips of the fast model, every 20th with an input image; distinct prompts like the
  load benchmark's.

Or a night in progress (``pending_from``, for the restart benchmark): every row from that
percentile of the mix on is still pending (50: half the night done, half to send), and
``events`` writes the history a night leaves in the event log, four or five lines per job
that went (submitting, running, generated, then done or expired), as the transitions'
trigger would have.

The file is cached beside its videos under a name that says N, the mix and the schema's
migrations (``jobs-N-<hash>.db``, ``jobs-N-p50e-<hash>.db``): another branch with another
schema gets its own copy. The read benchmarks only read it; a benchmark that writes (a
restart) copies it first.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
from pathlib import Path

from PIL import Image

from batchveo.store import Store
from batchveo.store.migrations import MIGRATIONS

try:
    from batchveo.store.totals import RECOUNT_SQL
except ImportError:  # a batchveo before running totals (an A/B run against older code)
    RECOUNT_SQL = ""

VIDEO_FILES = 100
"""Real files the done jobs' paths cycle over."""
GENERATOR_VERSION = "2"
"""Bumped when the rows below change: a cached database of another version is remade."""
START = 1_760_000_000.0
"""The night's first load (a fixed time, so reports of the same N are alike)."""

_INSERT = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n),
r AS (SELECT i, IIF(i % 100 >= :pending_from, 98, i % 100) AS k FROM n)
INSERT INTO jobs (
    id, batch, state, spec_hash, prompt, model, params, inputs, output_name, source,
    cost_usd, operation, video_uris, files, error_kind, error, attempts, polls,
    created_at, updated_at, submitted_at, generated_at, finished_at,
    samples_requested, sample_cost_usd
)
SELECT
    printf('job-%07d', i),
    CASE WHEN i % 10000 = 0 THEN 'night-2' ELSE 'night-1' END,
    CASE WHEN k < 90 THEN 'done' WHEN k < 94 THEN 'failed' WHEN k = 94 THEN 'uncertain'
         WHEN k = 95 THEN 'expired' WHEN k < 98 THEN 'cancelled' ELSE 'pending' END,
    printf('%064x', i),
    printf('Cinematic shot of %s %s, take %d, shallow depth of field',
           CASE i % 5 WHEN 0 THEN 'a lighthouse' WHEN 1 THEN 'a red fox'
                WHEN 2 THEN 'a paper boat' WHEN 3 THEN 'a city tram' ELSE 'an old violin' END,
           CASE i / 5 % 5 WHEN 0 THEN 'at dawn' WHEN 1 THEN 'in heavy rain'
                WHEN 2 THEN 'under neon lights' WHEN 3 THEN 'in slow motion' ELSE 'at night' END,
           i),
    'veo-3.1-fast-generate-preview',
    '{"aspectRatio":"16:9","durationSeconds":8,"resolution":"720p"}',
    CASE WHEN i % 20 = 0
         THEN '{"image":{"mimeType":"image/png","path":"' || :images || '/img' || (i / 20 % 10)
              || '.png","sha256":"' || printf('%064x', i / 20 % 10) || '"}}'
         ELSE '{}' END,
    NULL,
    'night.csv row ' || (i + 1),
    1.2,
    CASE WHEN k < 96 THEN 'models/veo-3.1-fast-generate-preview/operations/op' || i END,
    CASE WHEN k < 90 OR k = 95
         THEN '["https://files.example/v1beta/files/f' || i || ':download?alt=media"]' END,
    CASE WHEN k < 90
         THEN '[{"path":"' || :videos || '/v' || printf('%03d', i % :files) || '.mp4",'
              || '"sha256":"' || printf('%064x', i) || '","size":' || (1000000 + i) || '}]' END,
    CASE k WHEN 90 THEN 'filtered' WHEN 91 THEN 'operation_error' WHEN 92 THEN 'content_policy'
           WHEN 93 THEN 'retries_exhausted' WHEN 94 THEN 'submit_outcome_unknown'
           WHEN 95 THEN 'expired' END,
    CASE k WHEN 90 THEN 'blocked by the safety filter (not charged): 58061214'
           WHEN 91 THEN 'generation failed: internal error (13)'
           WHEN 92 THEN 'The prompt could not be submitted: it violates the usage guidelines.'
           WHEN 93 THEN 'HTTP 503 from submit after 5 attempts'
           WHEN 94 THEN 'the submit timed out after it was sent'
           WHEN 95 THEN 'the video was deleted by the server before it was downloaded' END,
    CASE WHEN k < 98 THEN 1 ELSE 0 END,
    CASE WHEN k < 96 THEN 3 ELSE 0 END,
    :start,
    :start + i * 0.01 + 80,
    CASE WHEN k < 97 THEN :start + i * 0.01 END,
    CASE WHEN k < 90 OR k = 95 THEN :start + i * 0.01 + 60 + i % 240 END,
    CASE WHEN k < 90 THEN :start + i * 0.01 + 75 + i % 240
         WHEN k < 96 THEN :start + i * 0.01 + 80 END,
    1,
    1.2
FROM r
"""


_POSTERS = """
UPDATE jobs SET posters = '["' || replace(substr(json_extract(files, '$[0].path'), -8), '.mp4',
    '.jpg') || '"]' WHERE state = 'done'
"""
"""Each done video's poster frame, as a run records it (migration 013; vNNN.jpg beside it)."""


_EVENTS = """
INSERT INTO events (job_id, from_state, to_state, at, attempt)
SELECT id, 'pending', 'submitting', submitted_at, 1 FROM jobs WHERE submitted_at IS NOT NULL
UNION ALL SELECT id, 'submitting', 'running', submitted_at + 1, 1 FROM jobs
    WHERE operation IS NOT NULL
UNION ALL SELECT id, 'running', 'generated', generated_at, 1 FROM jobs
    WHERE generated_at IS NOT NULL
UNION ALL SELECT id, 'generated', state, finished_at, 1 FROM jobs
    WHERE generated_at IS NOT NULL AND state IN ('done', 'expired')
"""
_PRICE_SHAPES = (
    "INSERT INTO price_shapes (model, resolution, duration_s, samples, audio, request_usd)"
    " VALUES ('veo-3.1-fast-generate-preview', '720p', 8, 1, 1, 1.2)"
)
_PRICES_APPLIED = (
    "INSERT INTO prices_applied (one, prices, through_rowid)"
    " VALUES (1, '', (SELECT max(rowid) FROM jobs))"
)
"""Every row's price shape and its price, the table's (migration 014): what ``batchveo
load`` of the night's manifest into a fresh database remembers (``pricing.note_load``)."""
FINISHED = 98
"""``pending_from`` of a finished night: 2% pending."""


def schema_tag() -> str:
    """What the cached file name says of the schema: the migrations this code applies."""
    names = "\n".join(m.name + m.sql for m in MIGRATIONS) + "|" + GENERATOR_VERSION
    return hashlib.sha256(names.encode()).hexdigest()[:8]


def night_db(
    folder: Path, n_jobs: int, *, pending_from: int = FINISHED, events: bool = False
) -> Path:
    """The database of a night of ``n_jobs`` in ``folder`` (made once, then reused):
    finished, or pending from ``pending_from`` on, with its ``events`` or without."""
    folder.mkdir(parents=True, exist_ok=True)
    videos, images = folder / "videos", folder / "images"
    for d in (videos, images):
        d.mkdir(exist_ok=True)
    for i in range(VIDEO_FILES):
        path = videos / f"v{i:03d}.mp4"
        if not path.exists():
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(1000))
        poster = path.with_suffix(".jpg")  # as a run leaves it (read only by newer code)
        if not poster.exists():
            Image.new("RGB", (320, 180), (40, 90, 160)).save(poster, "JPEG")
    for i in range(10):
        path = images / f"img{i}.png"
        if not path.exists():
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    mix = "" if pending_from == FINISHED and not events else f"p{pending_from}{'e' * events}-"
    db = folder / f"jobs-{n_jobs}-{mix}{schema_tag()}.db"
    if db.exists():
        return db
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    asyncio.run(_create(tmp))
    with sqlite3.connect(tmp) as conn:
        conn.execute(
            "INSERT INTO batches (name, created_at, manifest) VALUES"
            " ('night-1', ?, 'night.csv'), ('night-2', ?, 'night.csv')",
            (START, START),
        )
        args = {
            "n": n_jobs,
            "start": START,
            "files": VIDEO_FILES,
            "videos": str(videos.resolve()),
            "images": str(images.resolve()),
            "pending_from": pending_from,
        }
        conn.execute(_INSERT, args)
        if "posters" in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}:
            conn.execute(_POSTERS)
        if events:
            conn.execute(_EVENTS)
        if has_totals(conn):  # rows written straight into the table: counted here
            conn.execute("DELETE FROM totals")
            conn.execute(RECOUNT_SQL)
        if _has_table(conn, "price_shapes"):  # what a load into a fresh database remembers
            conn.execute(_PRICE_SHAPES)
            conn.execute(_PRICES_APPLIED)
    with sqlite3.connect(tmp) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, db)
    return db


def has_totals(conn: sqlite3.Connection) -> bool:
    """Whether the schema under test keeps running totals (migration 007 and later)."""
    return _has_table(conn, "totals")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
    return conn.execute(sql, (name,)).fetchone() is not None


async def _create(path: Path) -> None:
    store = await Store.open(path)
    await store.close()


if __name__ == "__main__":
    import time

    p = argparse.ArgumentParser(description="a night's job database, made by SQL")
    p.add_argument("folder", type=Path)
    p.add_argument("jobs", type=int)
    p.add_argument("--pending-from", type=int, default=FINISHED, help="percentile (0-100)")
    p.add_argument("--events", action="store_true", help="write the night's event log too")
    a = p.parse_args()
    t0 = time.perf_counter()
    made = night_db(a.folder, a.jobs, pending_from=a.pending_from, events=a.events)
    print(f"{made} in {time.perf_counter() - t0:.1f} s")
