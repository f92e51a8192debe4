"""Who may call the simulator's Vertex AI service, and on which project.

Split from the service (``vertex``) because it is the one place that decides a caller's
rights; the service asks it first, on every endpoint, and acts on the project id it answers.

Every request needs a live bearer token (``token_lifetime_s``; tokens expire on the
simulator's clock, and ``POST /__sim/expire_tokens`` ends them all), handed out by
``POST /token`` (``tokens.TokenIssuer``) for google-auth's service-account assertions. A key
file trusted by the simulator (``SimConfig.vertex_keys``, ``Simulator.trust_key``,
``Simulator.make_key``) names its project: its tokens may use that project only (by id,
or by its number), anything else is 403, as is everything with
``vertex_permission_denied``. An API key is refused: Vertex's Veo takes none.

A project's number is made up (``project_number``: a deterministic 12 digits); operation
names carry it instead of the id under ``project_number_names``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from batchveo.sim import vertex_wire as vw
from batchveo.sim.config import SimConfig
from batchveo.sim.tokens import Refusal, TokenIssuer
from batchveo.sim.vertex_rules import valid_location
from batchveo.sim.wire import KEY_HEADER


def project_number(project_id: str) -> str:
    """The project's number as the simulator makes one up: 12 digits, the same each time."""
    digest = int(hashlib.sha256(project_id.encode()).hexdigest(), 16)
    return str(10**11 + digest % (9 * 10**11))


class VertexAccounts:
    """The trusted service accounts, their projects, and the projects' numbers."""

    def __init__(self, config: Callable[[], SimConfig], issuer: TokenIssuer) -> None:
        self._config = config
        self.issuer = issuer
        self._accounts: dict[str, str | None] = {}  # service account -> its project
        self._numbers: dict[str, str] = {}  # project number -> project id

    def trust(self, info: dict[str, Any]) -> None:
        """Accept tokens for this service-account key file, for its project only."""
        self.issuer.trust_key_file(info)
        project = str(info.get("project_id") or "") or None
        self._accounts[str(info["client_email"])] = project
        if project:
            self._numbers[project_number(project)] = project

    def canonical(self, project: str) -> str:
        """A project's id, whether the path names it by id or by number."""
        return self._numbers.get(project, project)

    def number(self, project_id: str) -> str:
        """The project's number, known from now on as naming this project."""
        shown = project_number(project_id)
        self._numbers[shown] = project_id
        return shown

    def authorize(
        self, request: web.Request, project: str, location: str, model: str, method: str
    ) -> str | web.Response:
        """The project's id if this caller may act on it, else the refusal."""
        if KEY_HEADER in request.headers or "key" in request.query:
            return vw.api_key_refused(method)
        verdict = self.issuer.verify(request.headers.get("Authorization"))
        if isinstance(verdict, Refusal):
            return vw.unauthenticated(verdict, method)
        if not valid_location(location):
            return vw.bad_request(f"Unsupported location: {location[:80]!r}.")
        canonical = self.canonical(project)
        allowed = self._accounts.get(verdict)
        if self._config().vertex_permission_denied or (allowed and canonical != allowed):
            resource = f"projects/{project}/locations/{location}"
            if model:
                resource += f"/publishers/google/models/{model}"
            return vw.permission_denied(resource, method)
        return canonical

    async def token(self, request: web.Request) -> web.Response:
        """The OAuth token endpoint a trusted key file's ``token_uri`` names."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        status, body = self.issuer.issue(form, str(request.url))
        return web.json_response(body, status=status)
