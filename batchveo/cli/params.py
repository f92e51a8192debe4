"""Option types and options shared by several commands.

Kept free of batchveo's heavy modules: every command's options are built when the
command line starts, ``--version`` and ``--help`` included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType[float]):
    """``90s``, ``14m``, ``1h``, ``2d`` or plain seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        try:
            if text and text[-1] in _UNITS_S:
                seconds = float(text[:-1]) * _UNITS_S[text[-1]]
            else:
                seconds = float(text)
        except ValueError:
            self.fail(f"{value!r} is not a duration like 90s, 14m, 1h or 2d", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


DURATION = Duration()

db_option = click.option(
    "--db",
    "db_path",
    envvar="BATCHVEO_DB",
    default="batchveo.db",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The job database (env BATCHVEO_DB).",
)

prices_option = click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your own prices (YAML/JSON: model -> USD per second, or per resolution).",
)


def provider_options(f: F) -> F:
    """``--provider`` and ``--base-url``: which service a command talks to."""
    f = click.option(
        "--base-url",
        envvar="BATCHVEO_BASE_URL",
        help="Send every request to this server (e.g. a simulator). Env BATCHVEO_BASE_URL.",
    )(f)
    f = click.option(
        "--provider",
        type=click.Choice(["gptproto", "gemini"]),
        default="gptproto",
        show_default=True,
        envvar="BATCHVEO_PROVIDER",
    )(f)
    return f
