"""The ``batchveo`` command line: the only package that prints or exits.

* ``boundary``: the click group ``main``, and where errors become one line and an
  ``ExitCode`` (a bug: exit 70, its traceback in a file, see ``crash``).
* ``commands``: load, status, show, export, retry, cancel, plan, simulate.
* ``run``: the run command (flags in, ``run.app.run_night``, the last line out).
* ``review``: the review command, and the review flags ``run`` shares.
* ``report``: the report command (the night's HTML pages, ``--sheet`` its contact sheet).
* ``params``: ``Duration`` and the options several commands share.
* ``display`` and ``export``: what ``status``, ``show``, ``plan`` and ``export`` print.
* ``demo``: ``make demo``, a real batch on the simulator.
"""

from batchveo.cli import commands, report, review, run  # noqa: F401  (importing them adds the commands)
from batchveo.cli.boundary import main

__all__ = ["main"]
