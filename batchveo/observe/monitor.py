"""What watches a night besides the runner: progress, the JSON log, notifications.

``run/app.py`` builds one ``RunMonitor`` per ``batchveo run``: it hangs the progress
display and the ``--log-file`` writer on the store's transition hook (the only source
of job state changes), passes them the runner's run-level events, sends
``--notify``/``--on-complete`` at the end (and for videos close to expiry), and hands
its few messages for the user to ``say``: only the command line prints.

(Not to be confused with ``--watch``, the drop folder the runner loads manifests from.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from batchveo.states import JobState

if TYPE_CHECKING:  # the command line imports this module; keep its start-up light
    from batchveo.observe.jsonlog import JsonLog
    from batchveo.observe.progress import ProgressDisplay
    from batchveo.run.context import RunConfig
    from batchveo.run.runner import RunResult
    from batchveo.store import Store

Say = Callable[[str], None]

RESTATED_TRANSITIONS = frozenset(
    {
        "submitted",  # submitting -> running
        "retry",  # submitting -> pending
        *(s.value for s in (JobState.GENERATED, JobState.DONE)),
        *(s.value for s in (JobState.FAILED, JobState.EXPIRED, JobState.UNCERTAIN)),
    }
)
"""Run events the stages still emit that only repeat a state change (named after the
state reached, or as above): the log and the progress take every state change from the
store's transitions, so these are dropped here, once, rather than written twice. (When
the stages stop emitting them, this goes.)"""

EXPIRY_CHECK_S = 600.0
"""How often a notifying run checks for videos close to expiry (each is told once)."""


class RunMonitor:
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
        say: Say,
        stream: TextIO,
        max_problems: int = 50,
        scrub: Callable[[str], str] | None = None,
    ):
        """``stream`` is where the progress goes (stderr: stdout may be data); bars when
        it is a terminal, a line every minute (``verbose``: every 10 s) otherwise.
        ``scrub`` takes every secret out of a log line (by default: ``key``)."""
        from batchveo.observe.jsonlog import JsonLog
        from batchveo.observe.notify import ExpiryWatch
        from batchveo.observe.progress import make_progress
        from batchveo.observe.text import terminal_console
        from batchveo.redact import Secret

        self.store, self.config = store, config
        self.say, self.max_problems = say, max_problems
        scrub = scrub or Secret(key).scrub
        self.log: JsonLog | None = JsonLog(log_file, scrub=scrub) if log_file else None
        self.display: ProgressDisplay | None = make_progress(
            stream.isatty(),
            quiet,
            stream,
            terminal_console(file=stream),
            interval_s=10.0 if verbose else 60.0,
        )
        self.notify_url, self.on_complete = notify_url, on_complete
        self.expiry = ExpiryWatch()
        self._tasks: list[asyncio.Task[None]] = []

    def on_run_event(self, name: str, details: dict[str, Any]) -> None:
        """The runner's observer: run-level events only reach the log and the display."""
        if name in RESTATED_TRANSITIONS:
            return
        if name == "manifest_rejected":
            for problem in details["problems"][: self.max_problems]:
                self.say(str(problem))
        elif name == "manifest_loaded" and details["new"]:
            self.say(f"loaded {details['path']}: {details['summary']}")
        for target in (self.log, self.display):
            if target is not None:
                target.on_run_event(name, details)

    async def start(self) -> None:
        from batchveo.observe.progress import keep_ticking
        from batchveo.observe.tally import flatten_counts

        for target in (self.log, self.display):
            if target is not None:
                self.store.observers.append(target.on_transition)
        if self.display is not None:
            self.display.start(flatten_counts(await self.store.counts()))
            self._tasks.append(asyncio.create_task(keep_ticking(self.display)))
        if self.notify_url or self.on_complete:
            self._tasks.append(asyncio.create_task(self._watch_expiry()))

    async def _watch_expiry(self, every_s: float = EXPIRY_CHECK_S) -> None:
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
        """Stop the ticking and the expiry checks; the display draws its last state."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.display is not None:
            self.display.close()

    async def finished(self, result: RunResult) -> None:
        """The end of the night: the final notification, then the log is closed."""
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
