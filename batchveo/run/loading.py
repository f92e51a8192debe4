"""Manifests into the store: all of a load's jobs, or none of them.

Used by ``batchveo load``, by ``batchveo run MANIFEST...``, by ``plan`` and by the drop
folder of a watching run (``dropfolder``). Each reads its manifests through
``read_routed``: the loading command's route (its ``--provider``, ``--project``,
``--location``, ``--storage-uri``) is what a manifest's ``defaults:`` are resolved over,
and what the manifest's rules (which model ids, which parameters) are checked against.

``batchveo load`` (``load_into_store``) streams: a thread reads the manifests
(``stream_manifests``) and hands their jobs on in chunks, which the store inserts as they
come, in one transaction (``Store.loading``): a million rows are never in memory at once,
and reading and inserting overlap. A problem anywhere, the reader's or the store's, rolls
the whole transaction back, so nothing of the load is written (one pass, not a checking
pass and then a writing one: reading is half the work, and what crosses rows, duplicate
ids and outputs, is found by the database the rows are going into anyway). A database
that does not exist yet is built under a temporary name beside it and given its name only
once the load is committed: a bad manifest never creates it. The others (``run``, the
drop folder, ``plan``) read every job first (``read_routed``): they need the jobs' routes
before the database is opened, and their loads are a night's, not a million.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchveo.chains import Link
from batchveo.manifest import Manifests, check_route, gc_paused, read_manifests, stream_manifests
from batchveo.manifest.chaining import audio_of
from batchveo.manifest.loader import Item, Parents
from batchveo.routes import DEFAULT_PROVIDER, Route
from batchveo.spec import JobSpec
from batchveo.store import Snapshot, Store
from batchveo.store.loading import LoadSession
from batchveo.store.reviews import write_review_settings
from batchveo.verdicts import ReviewSettings

_QUEUED_CHUNKS = 2
"""Chunks read ahead of the store (each ``STREAM_CHUNK_ITEMS``): enough to keep both busy."""


@dataclass(frozen=True)
class LoadResult:
    new: int
    existing: int
    replaced: int
    batches: tuple[str, ...]
    routes: tuple[Route | None, ...] = ()
    """The routes of the loaded jobs (None: the loading command's)."""

    def summary(self) -> str:
        text = f"{self.new} new, {self.existing} already loaded"
        if self.replaced:
            text += f", {self.replaced} replaced"
        if self.batches:
            text += f" (batch {', '.join(self.batches)})"
        return text


def read_routed(
    paths: Sequence[Path | str],
    *,
    batch: str | None = None,
    route: Route | None = None,
    db: Path | None = None,
) -> Manifests:
    """``read_manifests`` with the loading command's route (blocking: it reads files); a
    hop may extend a job of ``db``."""
    parents = None if db is None else stored_parents(db)
    return read_manifests(paths, batch=batch, route=route or Route(), parents=parents)


def manifest_routes(
    paths: Sequence[Path | str],
    *,
    batch: str | None = None,
    route: Route | None = None,
    db: Path | None = None,
) -> list[Route | None]:
    """The routes the manifests' jobs go by (None: the loading command's), every job read
    and checked on its own and none kept: ``run MANIFEST``'s first pass, so that what the
    routes need is found before anything is written, in the memory of one chunk (blocking:
    it reads files). Its jobs are then streamed into the store as ``load`` does
    (``load_into_store``), which finds what needs every job at once (an id twice).

    A problem found here is reported as ``read_routed`` reports it: every problem of the
    manifests, at once (``ManifestError``); only a bad manifest is held whole."""
    found: dict[Route | None, None] = {}
    bad = False

    def take(items: list[Item]) -> None:
        nonlocal bad
        for item in items:
            if isinstance(item, JobSpec):
                found.setdefault(item.route)
            else:
                bad = True

    parents = None if db is None else stored_parents(db)
    stream_manifests(paths, take, batch=batch, route=route or Route(), parents=parents)
    if bad:
        read_routed(paths, batch=batch, route=route, db=db)  # raises, with every problem
    return list(found)


BeforeCommit = Callable[[], Awaitable[object]]
"""What a load does once every job is in and found good, before it commits: what it
raises rolls the load back (``load_into_store``)."""


def stored_parents(db: Path) -> Parents:
    """The jobs of ``db`` a scene chain's hop may extend, looked up one at a time (a
    read-only connection of its own: a load in progress on the store's is not seen)."""

    def lookup(job_id: str) -> Link | None:
        with Snapshot.open(db) as snap:
            job = None if snap is None else snap.job(job_id)
        if job is None:
            return None
        return Link(
            job.id,
            job.provider or DEFAULT_PROVIDER,
            job.model,
            str(job.params.get("aspectRatio", "16:9")),
            str(job.params.get("resolution", "720p")),
            job.output_s or int(job.params.get("durationSeconds", 8)),
            job.hop or 1,
            job.chain_root or job.id,
            audio_of(job.params),
        )

    return lookup


async def add_specs(
    store: Store,
    specs: Sequence[JobSpec],
    manifests: Sequence[Path],
    *,
    replace: bool = False,
    budgets: Mapping[str, float] | None = None,
    reviews: Mapping[str, ReviewSettings] | None = None,
) -> LoadResult:
    """Add validated specs in one transaction: all of them or none (then the batches'
    review settings, ``reviews``: a load asked again writes them again)."""
    result = await store.add_jobs(
        specs, replace=replace, manifest=_named(manifests), budgets=budgets
    )
    await store.set_review_settings(reviews or {})
    batches = tuple(dict.fromkeys(s.batch for s in specs))
    routes = tuple(dict.fromkeys(s.route for s in specs))
    return LoadResult(result.new, result.existing, result.replaced, batches, routes)


def _named(manifests: Sequence[Path]) -> str:
    return ", ".join(str(m) for m in manifests)


async def load_into_store(
    db_path: Path,
    manifests: Sequence[Path],
    *,
    batch: str | None = None,
    replace: bool = False,
    route: Route | None = None,
    before_commit: BeforeCommit | None = None,
) -> LoadResult:
    """Stream the manifests into the database: all of their jobs, or none (``ManifestError``
    with every problem, and a database that did not exist is not created).

    ``before_commit`` is called once every job is in and found good, before the load
    commits: what it raises rolls the load back (``run MANIFEST``: an ``--out`` it cannot
    write to, and nothing is written)."""
    route = check_route(route or Route())  # a bad flag: before anything is opened
    with gc_paused():  # a one-shot load: nothing else runs meanwhile
        if db_path.exists() or not db_path.parent.is_dir():
            return await _load(db_path, manifests, batch, replace, route, before_commit)
        building = db_path.with_name(f".{db_path.name}.loading-{secrets.token_hex(4)}")
        try:
            result = await _load(building, manifests, batch, replace, route, before_commit)
            if _give_name(building, db_path):
                return result
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{building}{suffix}").unlink(missing_ok=True)
        # Another process made the database meanwhile: load into it.
        return await _load(db_path, manifests, batch, replace, route, before_commit)


def _give_name(building: Path, db_path: Path) -> bool:
    """Give the committed (and closed) database its name, unless one took it meanwhile."""
    try:
        os.link(building, db_path)  # never over another's database
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        if db_path.exists():
            return False
        os.replace(building, db_path)
    fd = os.open(db_path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


async def _load(
    db_path: Path,
    manifests: Sequence[Path],
    batch: str | None,
    replace: bool,
    route: Route,
    before_commit: BeforeCommit | None,
) -> LoadResult:
    async with await Store.open(db_path) as store:
        return await stream_load(
            store, manifests, batch=batch, replace=replace, route=route,
            before_commit=before_commit,
        )  # fmt: skip


async def stream_load(
    store: Store,
    manifests: Sequence[Path],
    *,
    batch: str | None = None,
    replace: bool = False,
    route: Route,
    before_commit: BeforeCommit | None = None,
) -> LoadResult:
    """The manifests streamed into ``store`` in one transaction of its own (``load``'s, a
    run's, a manifest dropped in ``--watch``): a chunk of jobs in memory at a time."""
    async with store.loading(replace=replace, manifest=_named(manifests)) as session:
        reviews: dict[str, ReviewSettings] = {}
        budgets = await _stream_into(
            session, manifests, batch, route, reviews, stored_parents(store.path)
        )
        await write_review_settings(session.db, reviews)  # in the load's transaction
        result = await session.finish(budgets)
        if before_commit is not None:
            await before_commit()
    return LoadResult(
        result.new, result.existing, result.replaced, tuple(session.batches),
        tuple(session.routes),
    )  # fmt: skip


class _Stopped(Exception):
    """The store stopped taking chunks (it failed): the reader stops too."""


async def _stream_into(
    session: LoadSession,
    manifests: Sequence[Path],
    batch: str | None,
    route: Route,
    reviews: dict[str, ReviewSettings],
    parents: Parents,
) -> dict[str, float]:
    """Read the manifests on a thread into ``session``, chunk by chunk; their budgets (and
    their review settings into ``reviews``)."""
    chunks: queue.Queue[list[Item] | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
    stop = threading.Event()

    def take(items: list[Item]) -> None:
        if stop.is_set():
            raise _Stopped
        chunks.put(items)

    def read() -> dict[str, float]:
        try:
            return stream_manifests(
                list(manifests),
                take,
                batch=batch,
                route=route,
                reviews=reviews,
                parents=parents,
            )
        finally:
            chunks.put(None)

    reader = asyncio.ensure_future(asyncio.to_thread(read))
    try:
        while (items := await asyncio.to_thread(chunks.get)) is not None:
            await session.add(items)
    except BaseException:
        stop.set()
        while await asyncio.to_thread(chunks.get) is not None:
            pass  # so that the reader, never blocked on a full queue, sees ``stop``
        with contextlib.suppress(Exception):  # _Stopped, or what the reader met meanwhile
            await reader
        raise
    return await reader
