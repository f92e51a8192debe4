"""``gc_paused()``: the cyclic garbage collector off for a one-shot load of many rows.

Building 100k specs makes the collector rescan an ever larger heap, which doubles the load
time (and more for YAML node trees); none of these objects form cycles. But the collector is
the whole process's, so pausing it is the caller's decision, not ``read_manifests``'s: the
one-shot commands (``load``, ``plan``, ``run``'s first load, before any task runs) pause it;
the ``--watch`` drop folder, which loads on a worker thread while the run goes on, does not.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside, and as it was after (so nesting is harmless)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
