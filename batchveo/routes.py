"""Which service a job goes to: its route (provider, and for Vertex its project, region
and bucket), the one owner of that notion.

A route is resolved when a job is loaded, from the manifest's ``defaults:``
(``provider``, ``project``, ``location``, ``storageUri``) over the flags and environment
of the command that loads it; a part left ``None`` is the run's to fill (``--provider``,
``--project``, ...). Rows of databases older than routes have no route at all: theirs is
whatever the run says, as before.

Quotas are per project and per region on Vertex (and per key on the Gemini-format
routes), so a run paces, caps and submits per route (``Route.key``). ``--base-url`` is
not part of a route: it is a run's rehearsal or test hook (send everything to this
server), never stored with the jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Wire(StrEnum):
    """The wire format a provider speaks."""

    GEMINI = "gemini"
    """Gemini API v1beta: ``x-goog-api-key``, ``predictLongRunning``, Files API downloads."""
    VERTEX = "vertex"
    """Vertex AI: OAuth bearer token, ``fetchPredictOperation``, Cloud Storage or inline."""


PROVIDER_WIRE: dict[str, Wire] = {
    "gptproto": Wire.GEMINI,
    "gemini": Wire.GEMINI,
    "custom": Wire.GEMINI,
    "vertex": Wire.VERTEX,
}
"""Every provider batchveo knows, and its wire format."""

DEFAULT_PROVIDER = "gptproto"
DEFAULT_LOCATION = "us-central1"


@dataclass(frozen=True)
class Route:
    """Where a job is sent. ``None`` parts are filled by the run (``with_defaults``)."""

    provider: str | None = None
    project: str | None = None
    """Vertex only: the Google Cloud project (its id or number)."""
    location: str | None = None
    """Vertex only: the region (``us-central1``) or ``global``."""
    storage_uri: str | None = None
    """Vertex only: ``gs://BUCKET/PREFIX/`` for videos in the user's bucket (else inline)."""

    @property
    def wire(self) -> Wire:
        return PROVIDER_WIRE[self.provider or DEFAULT_PROVIDER]

    def with_defaults(self, defaults: Route) -> Route:
        """This route with its unset parts taken from ``defaults`` (the run's flags)."""
        return replace(
            self,
            provider=self.provider or defaults.provider,
            project=self.project or defaults.project,
            location=self.location or defaults.location,
            storage_uri=self.storage_uri or defaults.storage_uri,
        )

    @property
    def key(self) -> tuple[str, str, str]:
        """What quotas are counted per: provider, and for Vertex project and region."""
        provider = self.provider or DEFAULT_PROVIDER
        if self.wire is Wire.VERTEX:
            return (provider, self.project or "", self.location or DEFAULT_LOCATION)
        return (provider, "", "")

    def describe(self) -> str:
        """``vertex (my-proj, us-central1)`` or ``gptproto``: for messages and status."""
        provider = self.provider or DEFAULT_PROVIDER
        if self.wire is not Wire.VERTEX:
            return provider
        return f"{provider} ({self.project or '?'}, {self.location or DEFAULT_LOCATION})"


def resolve_route(route: Route | None, default: Route) -> Route:
    """The whole route a job goes by: its stored parts, the run's ``default`` for the
    rest, and the global defaults last (``DEFAULT_PROVIDER``; ``DEFAULT_LOCATION`` on
    Vertex). A Gemini-format route has no project, region or bucket: those parts are
    dropped, so two routes that send to the same place compare equal.
    """
    full = (route or Route()).with_defaults(default)
    provider = full.provider or DEFAULT_PROVIDER
    if PROVIDER_WIRE.get(provider) is not Wire.VERTEX:
        return Route(provider)
    return Route(provider, full.project, full.location or DEFAULT_LOCATION, full.storage_uri)
