"""Watching a run: the JSON-lines log, the progress displays, notifications, summaries.

* ``text``: untrusted text made safe for a line or a terminal; times in one format.
* ``jsonlog``: ``JsonLog``, the ``--log-file`` writer.
* ``tally``: ``Tally``, the counters the progress displays show.
* ``progress``: ``PlainProgress``, ``LiveProgress`` and ``make_progress``, which picks one.
* ``monitor``: ``RunMonitor``, which hangs all of the above on one run.
* ``notify``: ``--notify`` and ``--on-complete``, and expiry warnings told once.
* ``summary``: what ``status`` and the notifications say about a database.

The log and the displays take every job state change from the store's transition hook
(``TransitionEvent``) and only run-level events from the runner.
"""

from batchveo.observe.jsonlog import JsonLog
from batchveo.observe.monitor import RunMonitor
from batchveo.observe.progress import (
    LiveProgress,
    PlainProgress,
    ProgressDisplay,
    keep_ticking,
    make_progress,
)
from batchveo.observe.tally import ENDED_STATES, ERROR_STATES, TODO_STATES, Tally, flatten_counts
from batchveo.observe.text import iso_utc, one_line, visible

__all__ = [
    "ENDED_STATES",
    "ERROR_STATES",
    "TODO_STATES",
    "JsonLog",
    "LiveProgress",
    "PlainProgress",
    "ProgressDisplay",
    "RunMonitor",
    "Tally",
    "flatten_counts",
    "iso_utc",
    "keep_ticking",
    "make_progress",
    "one_line",
    "visible",
]
