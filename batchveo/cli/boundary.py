"""The click group every command runs in, and the boundary where errors become exits.

Two rules, one place each:

* ``run_async`` runs one command's coroutine and turns the user's mistakes (a bad
  manifest, a locked or unusable database, a stopped account) into one clear line and
  its ``ExitCode``.
* Anything else is a bug: the group's ``invoke`` reports it as one line and exit 70
  (``crash.crash_message``), never as a traceback on the terminal.

Only the command line prints or exits, and only through ``ExitCode``; every line it
shows a person goes through ``echo`` (``say`` and ``fail`` too), which escapes control
characters visibly: a batch name, a path or a server's text can never act on the terminal.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from batchveo.cli.crash import crash_message
from batchveo.errors import (
    BatchveoError,
    ManifestError,
    StaleTransition,
    StoreError,
    UserError,
)
from batchveo.exitcodes import ExitCode

T = TypeVar("T")

MAX_PROBLEMS_SHOWN = 50
"""One bad default can make every row of a 100k manifest wrong: show a screenful."""


def fail(message: str, code: ExitCode = ExitCode.USAGE, *, unlisted: int = 0) -> NoReturn:
    """Print ``message`` (one problem a line, a screenful at most) to stderr and exit;
    ``unlisted``: more problems found that the message does not list."""
    lines = message.rstrip("\n").split("\n")  # a \r or \f in a server's text is shown
    if len(lines) > MAX_PROBLEMS_SHOWN or unlisted:
        more = max(0, len(lines) - MAX_PROBLEMS_SHOWN) + unlisted
        lines = [*lines[:MAX_PROBLEMS_SHOWN], f"... and {more:,} more problem(s)"]
    for line in lines:
        echo(f"batchveo: {line}" if not line.startswith("batchveo:") else line, err=True)
    sys.exit(code)


def say(message: str) -> None:
    """One message for the user, on stderr (stdout may be data)."""
    echo(f"batchveo: {message}", err=True)


def echo(text: str, *, err: bool = False) -> None:
    """Show ``text`` to a person (stdout, or stderr with ``err``), its control characters
    escaped visibly (``observe.text.visible_lines``); data (JSON, an export) is not text
    for a person and goes out as it is."""
    from batchveo.observe.text import visible_lines

    click.echo(visible_lines(text), err=err)


_SQLITE_BUGS = (
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.InternalError,
    sqlite3.NotSupportedError,
)
"""SQLite errors that mean batchveo misused it (not the file's or the disk's fault)."""


def run_async(
    coro_fn: Callable[[], Awaitable[T]], db_path: Path | None = None, *, races: bool = False
) -> T:
    """Run one command's coroutine, turning the user's mistakes into one clear line and exit 2.

    Anything else (a ``StoreError`` other than ``DatabaseUnusable``, any other exception) is
    a bug and goes on to the boundary of ``main``: exit 70. ``races``: the command writes
    rows a run may move at the same moment, so a stale transition is that race (exit 3),
    not a bug; the store wrote nothing of it.
    """
    import asyncio  # here, not at the top: --version must not pay for it

    from batchveo.lock import Locked

    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except Locked as e:
        fail(str(e), ExitCode.LOCKED)
    except ManifestError as e:
        fail(str(e), ExitCode.USAGE, unlisted=e.more)
    except UserError as e:  # DatabaseUnusable too: the user's file, not our bug
        fail(str(e), ExitCode.USAGE)
    except StaleTransition as e:
        if not races:
            raise
        fail(
            f"another process changed the database meanwhile ({e}); nothing was changed:"
            " run the command again",
            ExitCode.LOCKED,
        )
    except StoreError:
        raise  # a bug: main's boundary reports it
    except sqlite3.DatabaseError as e:
        if isinstance(e, _SQLITE_BUGS):
            raise
        where = f"{db_path}: " if db_path is not None else ""
        fail(f"{where}cannot use the database: {e}", ExitCode.USAGE)
    except BatchveoError as e:
        fail(str(e), ExitCode.FAILURES)


class _Boundary(click.Group):
    """Every command runs inside this: an exception no command turned into a message is a
    bug, reported as one line and exit 70, never as a traceback on the terminal."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own: usage errors (exit 2), --help, Ctrl-C
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # `batchveo export | head`: click's main handles a closed pipe
            fail(crash_message(e), ExitCode.SOFTWARE)
        except Exception as e:  # MemoryError included
            fail(crash_message(e), ExitCode.SOFTWARE)


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchveo")
def main() -> None:
    """Turn manifests of prompts and images into Veo 3.1 videos, unattended."""
