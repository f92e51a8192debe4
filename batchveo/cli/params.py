"""Option types and options shared by several commands.

Kept free of batchveo's heavy modules: every command's options are built when the
command line starts, ``--version`` and ``--help`` included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from batchveo.routes import DEFAULT_LOCATION, DEFAULT_PROVIDER, PROVIDER_WIRE, Route

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


def _text_or_none(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An empty value (``GOOGLE_CLOUD_PROJECT=``) is no value."""
    return value.strip() if value and value.strip() else None


def route_options(f: F) -> F:
    """``--provider``, ``--project``, ``--location``, ``--storage-uri``: the route of the
    jobs a command loads or runs (a manifest's ``defaults:`` may set each for its jobs)."""
    f = click.option(
        "--storage-uri",
        envvar="BATCHVEO_STORAGE_URI",
        callback=_text_or_none,  # checked with the manifests' rule (manifest.routing)
        help="Vertex AI: write the videos to this bucket (gs://BUCKET/PREFIX/) instead of"
        " sending them inline. Env BATCHVEO_STORAGE_URI.",
    )(f)
    f = click.option(
        "--location",
        envvar="GOOGLE_CLOUD_LOCATION",
        callback=_text_or_none,
        help=f"Vertex AI: the region (or global; default {DEFAULT_LOCATION}). "
        "Env GOOGLE_CLOUD_LOCATION.",
    )(f)
    f = click.option(
        "--project",
        envvar="GOOGLE_CLOUD_PROJECT",
        callback=_text_or_none,
        help="Vertex AI: the Google Cloud project (default: the credentials'). "
        "Env GOOGLE_CLOUD_PROJECT.",
    )(f)
    f = click.option(
        "--provider",
        type=click.Choice([p for p in PROVIDER_WIRE if p != "custom"]),
        envvar="BATCHVEO_PROVIDER",
        help=f"Where the jobs go (default {DEFAULT_PROVIDER}; a job loaded without it goes"
        " by the provider of the run that sends it). Env BATCHVEO_PROVIDER.",
    )(f)
    return f


def route_of(
    provider: str | None, project: str | None, location: str | None, storage_uri: str | None
) -> Route:
    """The route the route options name (None parts: not given, the run's to fill)."""
    return Route(provider, project, location, storage_uri)


def provider_options(f: F) -> F:
    """The route options, ``--base-url`` and ``--storage-base-url``: which service a run
    talks to, and where (a simulator, a rehearsal)."""
    f = click.option(
        "--storage-base-url",
        envvar="BATCHVEO_STORAGE_BASE_URL",
        help="Vertex AI: send Cloud Storage requests to this server (an emulator). "
        "Env BATCHVEO_STORAGE_BASE_URL.",
    )(f)
    f = click.option(
        "--base-url",
        envvar="BATCHVEO_BASE_URL",
        help="Send every request to this server (e.g. a simulator; on Vertex AI the path"
        " /v1/projects/... stays). Env BATCHVEO_BASE_URL.",
    )(f)
    return route_options(f)
