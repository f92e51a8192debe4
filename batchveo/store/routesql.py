"""Which jobs go by a route, as SQL: the filter of a route's claims and counts.

A job's stored route has NULL parts where its load left them to the run (every part, for
a job loaded before routes); ``routes.resolve_route`` makes a route whole with the run's
default, and this is that same test on the stored columns, so a claim by route is one
guarded UPDATE still found through the state index, the route a residual filter.
"""

from __future__ import annotations

from typing import Any

from batchveo.routes import DEFAULT_LOCATION, DEFAULT_PROVIDER, Route, Wire, resolve_route


def route_filter(route: Route | None, default_route: Route | None) -> tuple[str, list[Any]]:
    """SQL keeping the rows whose stored route, made whole by ``default_route``, is
    ``route`` made whole (``resolve_route``): the same test, as a residual filter.

    A Gemini-format route is its provider alone; a Vertex one is provider, project,
    region and bucket, each stored part or else the run's (the region at last
    ``DEFAULT_LOCATION``). None: no filter.
    """
    if route is None:
        return "", []
    default = default_route or Route()
    want = resolve_route(route, default)
    sql = " AND COALESCE(provider, ?) = ?"
    args: list[Any] = [default.provider or DEFAULT_PROVIDER, want.provider]
    if want.wire is Wire.VERTEX:
        sql += (
            " AND COALESCE(project, ?) IS ? AND COALESCE(location, ?) = ?"
            " AND COALESCE(storage_uri, ?) IS ?"
        )
        args += [
            default.project,
            want.project,
            default.location or DEFAULT_LOCATION,
            want.location,
            default.storage_uri,
            want.storage_uri,
        ]
    return sql, args
