"""``python -m bench.counters ARGS...``: run ``batchveo ARGS...`` in this process, counting.

Used by ``python -m bench pipeline --profile`` to explain where a run's CPU goes, with
counts rather than timings (robust on a busy machine): event-loop iterations and callbacks,
tasks created, round trips to the aiosqlite thread, ``asyncio.to_thread`` calls, wake-ups
of each worker kind (and whether they were woken or timed out), and calls of the store's
methods. The counters go to the JSON file named by ``BENCH_COUNTERS_OUT`` at exit.

This patches batchveo's internals from outside; anything it cannot find is skipped, so a
refactor of batchveo makes a counter disappear, never the benchmark fail.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import atexit
import functools
import json
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

COUNTS: Counter[str] = Counter()


def _count_loop() -> None:
    loop_cls: Any = asyncio.base_events.BaseEventLoop
    run_once = loop_cls._run_once
    create_task = loop_cls.create_task

    def counted_run_once(self: Any) -> None:
        COUNTS["event-loop iterations"] += 1
        COUNTS["callbacks run"] += len(self._ready)
        run_once(self)

    def counted_create_task(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["tasks created"] += 1
        return create_task(self, *args, **kwargs)

    loop_cls._run_once = counted_run_once
    loop_cls.create_task = counted_create_task

    to_thread = asyncio.to_thread

    async def counted_to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        COUNTS[f"to_thread {getattr(func, '__name__', repr(func))}"] += 1
        return await to_thread(func, *args, **kwargs)

    asyncio.to_thread = counted_to_thread


def _count_sqlite() -> None:
    try:
        import aiosqlite
    except ImportError:
        return
    conn_cls: Any = aiosqlite.Connection
    execute = getattr(conn_cls, "_execute", None)
    if execute is None:
        return

    async def counted_execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["aiosqlite thread round trips"] += 1
        return await execute(self, fn, *args, **kwargs)

    conn_cls._execute = counted_execute


def _count_batchveo() -> None:
    import batchveo.run.runner  # noqa: F401  (imports every stage module)

    context = sys.modules.get("batchveo.run.context")
    wait_event = getattr(context, "wait_event", None)
    if callable(wait_event):
        _wrap_wait_event(wait_event)
    store = sys.modules.get("batchveo.store")
    store_cls = getattr(store, "Store", None)
    if store_cls is not None:
        # Store is put together from parts (store/*.py): count the methods of each.
        methods = {k: v for part in reversed(store_cls.__mro__) for k, v in vars(part).items()}
        for attr, value in methods.items():
            if not attr.startswith("_") and asyncio.iscoroutinefunction(value):
                setattr(store_cls, attr, _counted_method(value, f"Store.{attr}"))


def _wrap_wait_event(wait_event: Callable[..., Awaitable[bool]]) -> None:
    """Replace ``wait_event`` in every stage module that imported it, labelled by module."""
    for name, module in list(sys.modules.items()):
        if name.startswith("batchveo.") and getattr(module, "wait_event", None) is wait_event:
            who = name.rsplit(".", 1)[-1]
            setattr(module, "wait_event", _counted_wait(wait_event, who))  # noqa: B010


def _counted_wait(
    wait_event: Callable[..., Awaitable[bool]], who: str
) -> Callable[..., Awaitable[bool]]:
    @functools.wraps(wait_event)
    async def counted(*args: Any, **kwargs: Any) -> bool:
        woken = await wait_event(*args, **kwargs)
        COUNTS[f"wake-ups of {who} ({'event' if woken else 'timeout'})"] += 1
        return woken

    return counted


def _counted_method(method: Callable[..., Awaitable[Any]], label: str) -> Callable[..., Any]:
    @functools.wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        COUNTS[label] += 1
        return await method(*args, **kwargs)

    return counted


def _write(path: Path) -> None:
    path.write_text(json.dumps(dict(sorted(COUNTS.items())), indent=1) + "\n")


def main() -> None:
    out = Path(os.environ["BENCH_COUNTERS_OUT"])
    _count_loop()
    _count_sqlite()
    _count_batchveo()
    atexit.register(_write, out)
    from batchveo.cli import main as cli_main

    sys.argv = ["batchveo", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
