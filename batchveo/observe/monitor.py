"""What watches a run besides the runner: progress, the JSON log, notifications.

The command line builds one ``RunWatch`` per ``batchveo run``: it hangs the progress
display and the ``--log-file`` writer on the store's transition hook, sends
``--notify``/``--on-complete`` at the end (and for videos close to expiry), and
hands its few messages for the user to ``say``: only ``cli.py`` prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module; keep its start-up light
    from batchveo.run.context import RunConfig
    from batchveo.store import Store


class RunWatch:
    """Everything that watches a run: progress, the JSON log, notifications, expiry warnings."""

    def __init__(
        self,
        store: Store,
        config: RunConfig,
        key: str,
        *,
        log_file: Path | None,
        notify_url: str | None,
        on_complete: str | None,
        quiet: bool,
        verbose: bool,
        say: Callable[[str], None],
        max_problems: int = 50,
    ):
        from rich.console import Console

        from batchveo.observe import JsonLog, make_progress
        from batchveo.observe.notify import ExpiryWatch
        from batchveo.redact import Secret

        self.store, self.config = store, config
        self.say, self.max_problems = say, max_problems
        self.log = JsonLog(log_file, scrub=Secret(key).scrub) if log_file else None
        self.display = make_progress(
            sys.stderr.isatty(),
            quiet,
            sys.stderr,
            Console(stderr=True),
            interval_s=10.0 if verbose else 60.0,
        )
        self.notify_url, self.on_complete = notify_url, on_complete
        self.expiry = ExpiryWatch()
        self._tasks: list[asyncio.Task[None]] = []

    def on_run_event(self, name: str, details: dict[str, Any]) -> None:
        if name == "manifest_rejected":
            for problem in details["problems"][: self.max_problems]:
                self.say(str(problem))
        elif name == "manifest_loaded" and details["new"]:
            self.say(f"loaded {details['path']}: {details['summary']}")
        for target in (self.log, self.display):
            if target is not None:
                target.on_run_event(name, details)

    async def start(self) -> None:
        from batchveo.observe import flatten_counts, keep_ticking

        for target in (self.log, self.display):
            if target is not None:
                self.store.observers.append(target.on_transition)
        if self.display is not None:
            self.display.start(flatten_counts(await self.store.counts()))
            self._tasks.append(asyncio.create_task(keep_ticking(self.display)))
        if self.notify_url or self.on_complete:
            self._tasks.append(asyncio.create_task(self._watch_expiry()))

    async def _watch_expiry(self, every_s: float = 600.0) -> None:
        from batchveo.observe.summary import run_summary

        while True:
            summary = await run_summary(
                self.store, event="expiry_warning", output_folder=str(self.config.out_dir),
                retention_s=self.config.retention_s,
            )  # fmt: skip
            due = self.expiry.due(summary["at_risk"])
            if due:
                summary["at_risk"] = due
                await self._notify(summary)
            await asyncio.sleep(every_s)

    async def _notify(self, summary: dict[str, Any]) -> None:
        from batchveo.observe.notify import notify

        if not (self.notify_url or self.on_complete):
            return
        for problem in await notify(summary, url=self.notify_url, command=self.on_complete):
            self.say(f"notification failed: {problem}")
            if self.log is not None:
                self.log.on_run_event("notification_failed", {"error": problem})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.display is not None:
            self.display.close()

    async def finished(self, result: Any) -> None:
        from batchveo.observe.summary import run_summary

        event = "account_error" if result.account_error else "finished"
        summary = await run_summary(
            self.store, event=event, output_folder=str(self.config.out_dir),
            exit_code=result.exit_code, stop_reason=result.stop_reason,
            retention_s=self.config.retention_s,
        )  # fmt: skip
        await self._notify(summary)
        if self.log is not None:
            self.log.close()
            if self.log.error:
                self.say(f"the log file could not be written: {self.log.error}")
