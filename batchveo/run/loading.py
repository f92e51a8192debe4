"""Manifests into the store: all of a load's jobs, or none of them.

Used by ``batchveo load``, by ``batchveo run MANIFEST...``, by ``plan`` and by the drop
folder of a watching run (``dropfolder``); the manifests are read and checked before the
database is even opened, so a bad manifest never creates or touches it.

Each reads its manifests through ``read_routed``: the loading command's route (its
``--provider``, ``--project``, ``--location``, ``--storage-uri``) is what a manifest's
``defaults:`` are resolved over, and what the manifest's rules (which model ids, which
parameters) are checked against.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchveo.manifest import Manifests, gc_paused, read_manifests
from batchveo.routes import Route
from batchveo.spec import JobSpec
from batchveo.store import Store


@dataclass(frozen=True)
class LoadResult:
    new: int
    existing: int
    replaced: int
    batches: tuple[str, ...]

    def summary(self) -> str:
        text = f"{self.new} new, {self.existing} already loaded"
        if self.replaced:
            text += f", {self.replaced} replaced"
        if self.batches:
            text += f" (batch {', '.join(self.batches)})"
        return text


def read_routed(
    paths: Sequence[Path | str], *, batch: str | None = None, route: Route | None = None
) -> Manifests:
    """``read_manifests`` with the loading command's route (blocking: it reads files)."""
    return read_manifests(paths, batch=batch, route=route or Route())


async def add_specs(
    store: Store,
    specs: Sequence[JobSpec],
    manifests: Sequence[Path],
    *,
    replace: bool = False,
    budgets: Mapping[str, float] | None = None,
) -> LoadResult:
    """Add validated specs in one transaction: all of them or none."""
    result = await store.add_jobs(
        specs, replace=replace, manifest=", ".join(str(m) for m in manifests), budgets=budgets
    )
    batches = tuple(dict.fromkeys(s.batch for s in specs))
    return LoadResult(result.new, result.existing, result.replaced, batches)


async def load_into_store(
    db_path: Path,
    manifests: Sequence[Path],
    *,
    batch: str | None = None,
    replace: bool = False,
    route: Route | None = None,
) -> LoadResult:
    # Validate before opening the database: a bad manifest must not even create it.
    with gc_paused():  # a one-shot load: nothing else runs meanwhile
        loaded = await asyncio.to_thread(read_routed, list(manifests), batch=batch, route=route)
    async with await Store.open(db_path) as store:
        return await add_specs(
            store, loaded.specs, manifests, replace=replace, budgets=loaded.budgets
        )
