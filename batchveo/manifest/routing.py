"""A job's route at load: the file's ``defaults:`` over the loading command's flags.

``routes.Route`` is the notion (provider, project, region, bucket); this module decides
what a manifest's jobs store of it. The file's own parts win over the command's (the
command's flags are the defaults of every manifest that does not say); a part neither
gives stays None, the run's to fill. A Gemini-format route has no project, region or
bucket: a manifest that sets one for such a provider is told so, and what the command
gives (``GOOGLE_CLOUD_PROJECT`` in the environment, say) is dropped, so that every job
of a provider compares equal whatever the environment of its load was.

The command's own route is checked by the same coercers as the manifest's
(``check_route``): its parts go into URLs and host names, so only what a Google Cloud
name may be is let through.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchveo import models
from batchveo.errors import ConfigError
from batchveo.manifest import fields
from batchveo.manifest.fields import Bad
from batchveo.routes import DEFAULT_PROVIDER, PROVIDER_WIRE, Route, Wire

_VERTEX_PARTS = (("project", "project"), ("location", "location"), ("storage_uri", "storageUri"))
"""A ``Route`` field a Gemini-format provider has no use for, and its manifest key."""


def _any_provider(v: object) -> str:
    """A provider a command may name: any batchveo knows (``custom`` included)."""
    if isinstance(v, str) and (name := v.strip().lower()) in PROVIDER_WIRE:
        return name
    raise Bad(f"unknown provider {v!r} (known: {', '.join(PROVIDER_WIRE)})")


_FLAGS = {
    "provider": ("--provider", _any_provider),
    "project": ("--project", fields.project),
    "location": ("--location", fields.location),
    "storage_uri": ("--storage-uri", fields.storage_uri),
}


@dataclass(frozen=True)
class FileRoute:
    """What the jobs of one file are sent by, and what that provider serves and takes."""

    route: Route | None
    """Stored with each job; None when neither the file nor the command said anything."""
    provider: models.ProviderModels
    problems: tuple[tuple[str, str], ...] = ()
    """``(where, message)`` of the file's route keys that do not fit its provider."""


def provider_of(route: Route | None) -> models.ProviderModels:
    """The ids and limits of a route's provider (the default provider when it names none)."""
    name = (route.provider if route else None) or DEFAULT_PROVIDER
    return models.PROVIDER_MODELS.get(name) or models.PROVIDER_MODELS[DEFAULT_PROVIDER]


def file_route(own: Route, where: dict[str, str], command: Route) -> FileRoute:
    """The route of a file whose ``defaults:`` say ``own`` (each key written at
    ``where[key]``), loaded by a command that says ``command``."""
    full = own.with_defaults(command)
    provider = full.provider or DEFAULT_PROVIDER
    if PROVIDER_WIRE.get(provider) is Wire.VERTEX:
        return FileRoute(None if full == Route() else full, provider_of(full))
    problems = tuple(
        (
            where.get(key, ""),
            f"defaults: {key} is a Vertex AI setting: provider {provider} does not take it"
            " (set provider: vertex)",
        )
        for part, key in _VERTEX_PARTS
        if getattr(own, part) is not None
    )
    route = Route(full.provider) if full.provider is not None else None
    return FileRoute(route, provider_of(route), problems)


def check_route(route: Route) -> Route:
    """The loading command's route with its parts made canonical, or ``ConfigError`` naming
    the flag whose value is not what it must be."""
    canonical = {}
    for part, (flag, coerce) in _FLAGS.items():
        value = getattr(route, part)
        if value is None:
            continue
        try:
            canonical[part] = coerce(value)
        except Bad as e:
            raise ConfigError(f"{flag}: {e}") from None
    return Route(**canonical)
