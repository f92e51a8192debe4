"""The simulator's Vertex AI service: the same ``Simulator`` and port as the Gemini format.

Endpoints (``docs/veo-api.md``, "Vertex AI"; the server counts each by status):

- ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:predictLongRunning``
  (``vertex_submit``): checked in this order: API key (refused: Vertex's Veo takes none),
  bearer token (401), location (400), permission (403), model (404 "Publisher Model ... was
  not found"), body (400, ``vertex_rules``), the ``gs://`` media it names (400 if they
  cannot be read or are not what they say), counted then random faults (reset, 5xx, 429),
  quota (429 naming ``online_prediction_requests_per_base_model``, with RetryInfo), content
  policy (400); then the operation is created.
- ``POST .../models/{m}:fetchPredictOperation`` (``vertex_poll``) with
  ``{"operationName": NAME}``: the name must be exactly the one handed out and match the
  path's project, region and model, else 404. The answer of a finished operation carries
  its videos: ``gcsUri`` in the bucket of ``storageUri``, or inline ``bytesBase64Encoded``.
- ``GET`` (or ``POST``) on an operation name (``vertex_operation``): 404, as on Vertex.
- ``POST /token``: the OAuth token endpoint (``tokens.TokenIssuer``) for google-auth's
  service-account assertions (``VertexService.accounts``, ``vertex_auth``).

Who may do what (``vertex_auth``): a live bearer token, for a project its key file may
use (by id, or by its number); ``vertex_permission_denied`` refuses everything (403).

Quotas count per project and region (one ``quota.Quotas`` and one ``ops.Operations`` per
scope): ``rpm_limit``, ``rpd_limit``, ``max_concurrent_ops``, ``count_polls_in_rpm``.
The 429's delay is told as ``vertex_retry_after_style`` says (RetryInfo by default).

Operations are named ``projects/{p}/locations/{l}/publishers/google/models/{m}/operations/
{uuid}``, with the project's number instead of its id under ``project_number_names`` (a
deterministic 12-digit number per project): a client must send the name back as received.

Outputs: with ``storageUri`` each returned sample is written, when a poll first finds the
operation done, as ``gs://BUCKET/PREFIX/<operation id>/sample_<n>.mp4`` (``vertex_storage``:
into the simulator's own Cloud Storage, or with ``storage_upload_base`` into another); a
write that fails makes the operation fail. Without ``storageUri`` the videos come back
inline. Every video is the sample, made to last the operation's length, plus a ``free``
box naming it (``<operation id>/sample_<n>``).

Extension (``instances[0].video``, ``vertex_rules.extension_input``): the input object is
read like any ``gs://`` input (400 if it cannot be), or sent inline; an MP4 of 1-30 s by
its own header. The answer lasts the input plus 7 s; a video the simulator made (its
``free`` box names it) continues that video's chain (``chains.Chains``), any other MP4
starts one. The operation's line in ``GET /__sim/operations`` names its input
(``extends``: the ``gcsUri``, or ``inline``) and, when the simulator still keeps it, the
operation that made it (``parent``).

Outcomes: the markers and rates of the Gemini format (``op_error``, ``filtered``,
``content_policy``, ``bad_request``, ``slow``, ``lost``, the counted faults; ``rate_5xx``,
``rate_reset``, ``rate_429``, ``latency_s``, ``fail_first_polls``, ``early_404_s``,
``retention_s``, ``retired_models``), plus ``[sim:filteredxN]`` (N of ``sampleCount``
filtered: a partial result), ``[sim:empty]`` and ``rate_empty`` (done with nothing), and
for the simulator's own storage ``[sim:truncatedxN]`` and ``rate_truncated_download``,
``[sim:corruptxN]``, ``[sim:file403]`` on the objects' reads, ``redirect_downloads`` (a
302 to a signed URL, on ``files_host`` if set). The Gemini format's own knobs
(``balance_submits``, ``precondition_failure``, ``poll_methods``, ``name_style``,
``response_style``) do not apply here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from batchveo.sim import vertex_wire as vw
from batchveo.sim import wire
from batchveo.sim.config import SimConfig
from batchveo.sim.faults import Faults
from batchveo.sim.gcs import ObjectStore
from batchveo.sim.generation import draw_generation_s
from batchveo.sim.markers import Marks, filtered_samples, parse_markers
from batchveo.sim.ops import Operations, Outcome, VertexOp
from batchveo.sim.quota import VERTEX_NAMES, Quotas
from batchveo.sim.stats import Stats
from batchveo.sim.storage import on_files_host, sample_lasting, video_tail
from batchveo.sim.tokens import TokenIssuer
from batchveo.sim.vertex_auth import VertexAccounts
from batchveo.sim.vertex_auth import project_number as project_number  # re-exported
from batchveo.sim.vertex_rules import (
    EXTENSION_S,
    VERTEX_MODELS,
    VertexRequest,
    fetch_operation_name,
    parse_operation_name,
    validate,
)
from batchveo.sim.vertex_storage import InputVideo, VertexStorage, input_video

_SUBMIT = "PredictionService.PredictLongRunning"
_FETCH = "PredictionService.FetchPredictOperation"
_GET = "Operations.GetOperation"


@dataclass
class Scope:
    """What one project in one region has: its operations and its quotas."""

    ops: Operations
    quotas: Quotas
    submits: int = 0


@dataclass
class _Counts:
    samples_requested: int = 0
    samples_returned: int = 0
    samples_filtered: int = 0
    partial: int = 0
    empty: int = 0


class VertexService:
    """The Vertex endpoints' handlers and the state they serve (see module docstring)."""

    def __init__(
        self,
        config: Callable[[], SimConfig],
        *,
        rng: random.Random,
        ids: random.Random,
        faults: Faults,
        stats: Stats,
        issuer: TokenIssuer,
        objects: ObjectStore,
    ) -> None:
        self._config = config
        self._rng, self._ids = rng, ids
        self._faults, self._stats = faults, stats
        self.issuer, self.objects = issuer, objects
        self._scopes: dict[tuple[str, str], Scope] = {}
        self.accounts = VertexAccounts(config, issuer)
        """Who may act on which project (``vertex_auth``); its ``token`` is ``POST /token``."""
        self._storage = VertexStorage(objects)
        self._counts = _Counts()

    # -- submit --------------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.StreamResponse:
        cfg = self._config()
        if on_files_host(cfg, request):
            return wire.not_found()
        project, location, model = _path(request)
        body, prompt = self._read_submit(await request.read())
        canonical = self.accounts.authorize(request, project, location, model, _SUBMIT)
        if isinstance(canonical, web.Response):
            return canonical
        info = VERTEX_MODELS.get(model)
        if info is None or model in cfg.retired_models:
            return vw.publisher_model_not_found(project, location, model)
        if body is None:
            return vw.bad_request("Invalid JSON payload received.")
        asked = validate(body, info)
        if isinstance(asked, str):
            return vw.bad_request(asked)
        read = await self._storage.read_refs(cfg, asked.gcs_refs)
        if isinstance(read, str):
            return vw.bad_request(read)
        source = input_video(asked, read)
        if isinstance(source, str):
            return vw.bad_request(source)
        assert prompt is not None  # validate() checked it
        marks = parse_markers(prompt)
        if "bad_request" in marks:
            return vw.bad_request("Request contains an invalid argument.")
        if (fault := self._faults.counted(cfg, request, prompt, marks, vertex=True)) is not None:
            return fault
        if (fault := self._faults.submit_fault(cfg, request, vertex=True)) is not None:
            return fault
        now = cfg.clock()
        scope = self._scope(canonical, location)
        if (quota := self._quota(scope, cfg, now, model, submit=True)) is not None:
            return quota
        if "content_policy" in marks or self._faults.injected(cfg.rate_content_policy):
            return vw.bad_request(vw.CONTENT_POLICY_MESSAGE)
        op = self._create(cfg, now, scope, (project, location, model), asked, marks, source)
        if self._stats.accepted[prompt] <= marks.get("lost", 0):
            return self._faults.drop(request)
        return web.json_response({"name": op.name})

    def _read_submit(self, raw: bytes) -> tuple[Any, str | None]:
        """The body (None if not JSON) and its prompt, counted as received when it has one."""
        try:
            body = json.loads(raw)
        except ValueError:
            return None, None
        inst = body.get("instances") if isinstance(body, dict) else None
        first = inst[0] if isinstance(inst, list) and inst else None
        prompt = first.get("prompt") if isinstance(first, dict) else None
        if not isinstance(prompt, str):
            return body, None
        self._stats.receive(prompt)
        return body, prompt

    def _name_of(self, op_id: str | None) -> str | None:
        """The name of a kept operation, whichever scope it is in."""
        if op_id is None:
            return None
        ops = (scope.ops.by_id.get(op_id) for scope in self._scopes.values())
        return next((op.name for op in ops if op is not None), None)

    def _create(
        self,
        cfg: SimConfig,
        now: float,
        scope: Scope,
        path: tuple[str, str, str],
        asked: VertexRequest,
        marks: Marks,
        source: InputVideo | None,
    ) -> VertexOp:
        project, location, model = path
        gen = draw_generation_s(cfg.generation_s, self._rng, slow="slow" in marks)
        outcome: Outcome = "ok"
        filtered = 0
        if "op_error" in marks or self._faults.injected(cfg.rate_operation_error):
            outcome = "error"
        elif "empty" in marks or self._faults.injected(cfg.rate_empty):
            outcome = "empty"
        else:
            filtered = filtered_samples(asked.prompt, asked.samples)
            if not filtered and self._faults.injected(cfg.rate_filtered):
                filtered = asked.samples
            if filtered >= asked.samples:
                outcome = "filtered"
        canonical = self.accounts.canonical(project)
        shown = self.accounts.number(canonical) if cfg.project_number_names else project
        op_id = scope.ops.fresh_uuid(self._ids)
        op = VertexOp(
            op_id,
            f"projects/{shown}/locations/{location}/publishers/google/models/{model}"
            f"/operations/{op_id}",
            model,
            now + gen,
            outcome,
            trunc=marks.get("truncated", 0),
            created_at=now,
            file403="file403" in marks,
            project=canonical,
            location=location,
            samples=asked.samples,
            filtered=filtered,
            storage=asked.storage,
            corrupt=marks.get("corrupt", 0),
            length_s=asked.duration_s if source is None else source.length_s + EXTENSION_S,
            extends=None if source is None else source.named,
            parent=None if source is None else self._name_of(source.op_id),
        )
        if source is not None:
            self._stats.chains.extended(source.key, [op.tag(n) for n in range(op.returned)])
        scope.ops.add(op, now, cfg.retention_s)
        in_window = scope.quotas.count_submit(cfg, now)
        scope.submits += 1
        self._stats.accept(asked.prompt, now)
        self._stats.high_water("max_submits_in_window", in_window)
        self._stats.high_water("max_concurrent_ops", scope.ops.running(now))
        counts = self._counts
        counts.samples_requested += op.samples
        counts.samples_returned += op.returned
        counts.samples_filtered += filtered
        if outcome == "ok" and filtered:
            counts.partial += 1
        elif outcome == "empty":
            counts.empty += 1
        return op

    # -- poll ----------------------------------------------------------------------------------

    async def fetch(self, request: web.Request) -> web.StreamResponse:
        cfg = self._config()
        if (first := self._faults.first_polls(cfg, vertex=True)) is not None:
            return first
        if on_files_host(cfg, request):
            return wire.not_found()
        project, location, model = _path(request)
        canonical = self.accounts.authorize(request, project, location, model, _FETCH)
        if isinstance(canonical, web.Response):
            return canonical
        try:
            body = json.loads(await request.read())
        except ValueError:
            return vw.bad_request("Invalid JSON payload received.")
        try:
            name = fetch_operation_name(body)
        except ValueError as e:
            return vw.bad_request(str(e))
        ref = parse_operation_name(name)
        assert ref is not None  # fetch_operation_name checked it
        if (ref.project, ref.location, ref.model) != (project, location, model):
            return vw.operation_not_found(name)
        if (fault := self._faults.random_fault(cfg, request)) is not None:
            return fault
        now = cfg.clock()
        scope = self._scopes.get((canonical, location))
        op = scope.ops.by_id.get(ref.operation_id) if scope is not None else None
        if not isinstance(op, VertexOp) or op.name != name or op.expired(now, cfg.retention_s):
            return vw.operation_not_found(name)
        assert scope is not None
        if now < op.created_at + cfg.early_404_s:
            self._stats.counters["early_404s"] += 1
            return vw.operation_not_found(name)
        if cfg.count_polls_in_rpm:
            if (quota := self._quota(scope, cfg, now, op.model, submit=False)) is not None:
                return quota
            scope.quotas.count_poll(now)
        op.polls += 1
        if now < op.done_at:
            return web.json_response(wire.running_body(op.name, op.polls))
        if op.outcome == "ok" and op.storage is not None and not op.written:
            await self._storage.write(cfg, scope.ops, op, now)
        if op.reported:
            self._stats.counters["polls_after_done"] += 1
        op.reported = True
        return web.json_response(self._done_body(op))

    def _done_body(self, op: VertexOp) -> dict[str, Any]:
        if op.outcome == "error":
            if op.error_message:
                return vw.failed_body(op.name, 13, op.error_message)
            return vw.failed_body(op.name)
        if op.outcome == "empty":
            return vw.empty_body(op.name)
        videos: list[dict[str, str]] = []
        for n in range(op.returned):
            if op.storage is not None:
                videos.append(vw.gcs_video(f"gs://{op.storage[0]}/{op.object_name(n)}"))
            else:
                video = sample_lasting(op.length_s) + video_tail(op.tag(n))
                videos.append(vw.inline_video(video))
        return vw.done_body(op.name, videos, op.filtered)

    # -- other ---------------------------------------------------------------------------------

    async def operation(self, request: web.Request) -> web.StreamResponse:
        """A GET (or POST) on an operation name: Vertex answers 404 (poll with fetch)."""
        cfg = self._config()
        if on_files_host(cfg, request):
            return wire.not_found()
        project, location = request.match_info["project"], request.match_info["location"]
        model = request.match_info.get("model", "")
        refused = self.accounts.authorize(request, project, location, model, _GET)
        if isinstance(refused, web.Response):
            return refused
        return wire.not_found()

    def _scope(self, project: str, location: str) -> Scope:
        scope = self._scopes.get((project, location))
        if scope is None:
            quotas = Quotas(self._config().clock(), VERTEX_NAMES, location)
            scope = self._scopes[(project, location)] = Scope(Operations(), quotas)
        return scope

    def _quota(
        self, scope: Scope, cfg: SimConfig, now: float, model: str, submit: bool
    ) -> web.Response | None:
        """A 429 for the quota of this project and region the request would break, or None."""
        violation = scope.quotas.check(cfg, now, model, scope.ops if submit else None)
        if violation is None:
            return None
        if violation.per_day:
            self._stats.counters["per_day_quota_429s"] += 1
        self._stats.counters["quota_violations"] += 1
        return vw.quota_exceeded(violation, model, cfg.vertex_retry_after_style)

    async def read_object(self, cfg: SimConfig, uri: str) -> bytes | None:
        """A ``gs://`` object as Vertex reads it (a review's ``fileData``), or None."""
        return await self._storage.read(cfg, uri)

    async def close(self) -> None:
        await self._storage.close()

    # -- what the simulator shows ----------------------------------------------------------------

    def finish_all(self, now: float) -> None:
        for scope in self._scopes.values():
            scope.ops.finish_all(now)

    def timeline(self) -> list[dict[str, object]]:
        return [entry for scope in self._scopes.values() for entry in scope.ops.timeline()]

    def operation_counts(self) -> list[dict[str, int]]:
        return [scope.ops.counts for scope in self._scopes.values()]

    def running(self, now: float) -> int:
        return sum(scope.ops.running(now) for scope in self._scopes.values())

    def snapshot(self) -> dict[str, Any]:
        counts = self._counts
        return {
            "submits_by_location": {
                f"{project}/{location}": scope.submits
                for (project, location), scope in self._scopes.items()
            },
            "samples": {
                "requested": counts.samples_requested,
                "returned": counts.samples_returned,
                "filtered": counts.samples_filtered,
            },
            "partial": counts.partial,
            "empty": counts.empty,
            "objects_written": self._storage.objects_written,
            "write_failures": self._storage.write_failures,
            "tokens": {"issued": self.issuer.issued, "refused": self.issuer.refused},
            "storage_reads": dict(self.objects.reads),
        }


def _path(request: web.Request) -> tuple[str, str, str]:
    info = request.match_info
    return info["project"], info["location"], info["model"]
