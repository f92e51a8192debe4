"""The drop-folder workflow (``--watch DIR``): load each new or changed manifest in DIR.

A manifest with problems is reported once (per version of the file) and skipped, never
fatal: a long-running watcher must survive a bad drop, and a file still being copied is
simply read again once it changes. The folder is read every ``watch_interval_s`` until
the run stops submitting.

Each reading also tells the submitters to look at the database again, loaded or not:
another process (``batchveo load``, ``batchveo retry``) may have added work to it, and
the store tells a run only about its own writes.

A dropped manifest is read with the run's own route (its flags), as ``batchveo load``
with the same flags would. Its jobs are served by the route's lane; a job whose route
the run was not started with (no client was made for it) waits for the next run.
"""

from __future__ import annotations

from pathlib import Path

from batchveo.errors import ManifestError
from batchveo.run.context import RunContext
from batchveo.run.loading import stream_load
from batchveo.run.routed import resolve

MANIFEST_SUFFIXES = (".yaml", ".yml", ".csv")


async def watch_folder(ctx: RunContext, folder: Path) -> None:
    seen: dict[Path, tuple[float, int]] = {}
    while not ctx.stop.submits_stopped():
        looked = ctx.stop.changed.mark()
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            await _load_if_new(ctx, path, seen)
        ctx.new_work.fire()
        await ctx.stop.changed.wait(looked, until_s=ctx.now() + ctx.config.watch_interval_s)


async def _load_if_new(ctx: RunContext, path: Path, seen: dict[Path, tuple[float, int]]) -> None:
    """Load ``path`` if it is a manifest not seen in this version (mtime and size)."""
    if path.suffix.lower() not in MANIFEST_SUFFIXES or not path.is_file():
        return
    try:
        st = path.stat()
    except OSError:
        return  # gone again (moved or deleted) since the listing
    version = (st.st_mtime, st.st_size)
    if seen.get(path) == version:
        return
    seen[path] = version
    try:  # streamed, as `batchveo load` does: a chunk of jobs in memory at a time
        result = await stream_load(ctx.store, [path], route=ctx.default_route)
    except ManifestError as e:
        ctx.stats.note_error(f"{path.name}: {len(e.problems)} problem(s)")
        ctx.emit("manifest_rejected", path=str(path), problems=[str(p) for p in e.problems])
        return
    summary = result.summary()
    unserved = {
        resolve(r, ctx.default_route).describe() for r in result.routes if not ctx.lanes.serves(r)
    }
    if unserved:
        summary += (
            f"; the jobs for {', '.join(sorted(unserved))} wait for the next run"
            " (this run was started without that route)"
        )
    ctx.emit("manifest_loaded", path=str(path), summary=summary, new=result.new)
