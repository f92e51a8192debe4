"""``--log-file``: one JSON object per line, for tools that follow a run.

Every record is either a ``transition`` (the store's ``TransitionEvent``: the one
in-memory form of a state change) or a run-level event named by the runner
(``run_started``, ``rate_limited``, ``manifest_loaded``...). Like every observer of a
run, it is called on the run's event loop, possibly thousands of times a second, so it
appends one line and returns, and it never raises: a full disk must not turn into a
crashed overnight batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from batchveo.observe.text import iso_utc
from batchveo.store import TransitionEvent

Scrub = Callable[[str], str]
Clock = Callable[[], float]


def _identity(text: str) -> str:
    return text


class JsonLog:
    """Appends one JSON object per line for every transition and run-level event.

    The file is opened in append mode and flushed after each line: several runs
    share one log, ``tail -f`` follows it live, and a killed process loses
    nothing it wrote before. No fsync: surviving a power cut is the database's
    job, not the log's, and a sync per line would slow a big run down.

    ``scrub`` is applied to every line before it is written (the run passes one
    that masks the API key): this class never sees the key, but error texts
    come from elsewhere and a leak in a log file would be permanent.

    A write that fails (disk full, file removed) is remembered in ``error``
    and the run goes on.
    """

    def __init__(self, path: Path, *, scrub: Scrub = _identity, clock: Clock = time.time):
        self.path = Path(path)
        self.scrub = scrub
        self.clock = clock
        self.error: str | None = None
        """The first write error, if any (for the CLI to mention at the end)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open(
            "a", encoding="utf-8", errors="backslashreplace", buffering=1
        )

    def on_transition(self, e: TransitionEvent) -> None:
        record = e.as_dict()
        ts = record.pop("at")
        self._write({"at": iso_utc(ts), "ts": ts, "event": "transition", **record})

    def on_run_event(self, name: str, details: dict[str, Any]) -> None:
        ts = self.clock()
        record: dict[str, Any] = {"at": iso_utc(ts), "ts": ts, "event": name}
        for key, value in details.items():
            record[f"detail_{key}" if key in record else key] = value
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            line = self.scrub(json.dumps(record, ensure_ascii=False, default=str))
            self._file.write(line + "\n")
            self._file.flush()
        except Exception as e:  # never let the log stop the run
            if self.error is None:
                self.error = f"{self.path}: {e}"

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                self.error = self.error or f"{self.path}: {e}"
            self._file = None

    def __enter__(self) -> JsonLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
