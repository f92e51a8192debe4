"""The exit codes of ``batchveo``: the only place they are defined.

They are a contract with cron, scripts and monitors, so they never change meaning. The
README's exit-code table is checked against this enum by a test.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Every job is done."""
    FAILURES = 1
    """Every job is finished, but some failed, expired or are uncertain."""
    USAGE = 2
    """Bad input (manifest, flag, database file): nothing was written."""
    LOCKED = 3
    """Another run holds the database (or moved a job while a command changed it)."""
    ACCOUNT = 4
    """An account error, an unusable model or setup: the run stopped, unsent jobs pending."""
    SOFTWARE = 70
    """EX_SOFTWARE (sysexits.h): a bug in batchveo, never the user's input."""
    STOPPED = 75
    """EX_TEMPFAIL: stopped with work left (signal, --max-runtime, outage, daily quota)."""
