"""A small fake of Vertex AI for the client's tests: real sockets, real google-auth tokens.

It serves what ``VertexClient`` asks of Google: the token endpoint of a service account
(``TokenIssuer``: the JWT assertion google-auth signs is verified), the two Veo endpoints
of Vertex (``predictLongRunning``, ``fetchPredictOperation``) and the two Cloud Storage
JSON API reads (metadata, ``alt=media``), each checking the bearer token and answering
401 as Google does when it is missing, unknown or expired. Everything it was asked is
recorded (``seen``), so a test can say which host got which header.

Knobs, all plain attributes a test sets: ``answers`` (canned answers by endpoint, used
before the normal one), ``results`` (the done operation a poll returns, by name),
``objects`` (storage objects: the bytes served and metadata overrides, which is how a
test makes storage lie), ``redirect_media`` (send ``alt=media`` elsewhere). The
simulator proper (``batchveo.sim``) is the full fake; this one is the client's own.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from batchveo.sim.gcs import crc32c_b64, md5_b64
from batchveo.sim.tokens import TokenIssuer, make_service_account_key


@dataclass
class Seen:
    """One request as the fake received it."""

    endpoint: str
    method: str
    url: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeObject:
    data: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    """Overrides of the metadata (a wrong md5Hash, a size that is not the bytes')."""


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


def vertex_error(status: int, grpc: str, message: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": message, "status": grpc, **extra}}, status=status
    )


class FakeVertex:
    """The fake on one port: token endpoint, Vertex, Cloud Storage. ``async with`` it."""

    def __init__(self) -> None:
        self.issuer = TokenIssuer()
        self.url = ""
        self.seen: list[Seen] = []
        self.answers: dict[str, list[Answer]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.objects: dict[tuple[str, str], FakeObject] = {}
        self.redirect_media: str | None = None
        self.refuse_every_token = False
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    # --------------------------------------------------------------- set-up

    def key_file(self, path: Path, project: str = "proj-1") -> Path:
        """A service-account key whose token_uri is this fake's, trusted by it."""
        key = make_service_account_key(f"{self.url}/token", project=project)
        self.issuer.trust(key.key_id, key.email, key.public_pem)
        return key.write(path)

    def put(self, bucket: str, name: str, data: bytes, **meta: Any) -> str:
        self.objects[(bucket, name)] = FakeObject(data, meta)
        return f"gs://{bucket}/{name}"

    def then(self, endpoint: str, answer: Answer) -> None:
        """The next request to ``endpoint`` gets ``answer`` (after the token check)."""
        self.answers.setdefault(endpoint, []).append(answer)

    def requests(self, endpoint: str) -> list[Seen]:
        return [s for s in self.seen if s.endpoint == endpoint]

    # --------------------------------------------------------------- server

    async def __aenter__(self) -> FakeVertex:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/{tail:.+}", self._vertex)
        app.router.add_get("/storage/v1/b/{bucket}/o/{object:.+}", self._storage)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode()))
        status, body = self.issuer.issue(form, str(request.url))
        return web.json_response(body, status=status)

    async def _record(self, endpoint: str, request: web.Request) -> Seen:
        seen = Seen(
            endpoint,
            request.method,
            str(request.url),
            request.raw_path,
            dict(request.headers),
            await request.read(),
        )
        self.seen.append(seen)
        return seen

    def _refusal(self, request: web.Request) -> web.Response | None:
        why = self.issuer.check(request.headers.get("Authorization"))
        if why is None and not self.refuse_every_token:
            return None
        return vertex_error(401, "UNAUTHENTICATED", why or "Request had invalid credentials.")

    async def _answer(self, endpoint: str, request: web.Request, seen: Seen) -> web.StreamResponse:
        response = self._refusal(request)
        if response is None and self.answers.get(endpoint):
            response = await self.answers[endpoint].pop(0)(request)
        if response is None:
            handler = {
                "submit": self._submit,
                "poll": self._poll,
                "metadata": self._metadata,
                "media": self._media,
            }[endpoint]
            response = await handler(request, seen)
        seen.status = response.status
        return response

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        endpoint = "submit" if tail.endswith(":predictLongRunning") else "poll"
        seen = await self._record(endpoint, request)
        return await self._answer(endpoint, request, seen)

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        endpoint = "media" if request.query.get("alt") == "media" else "metadata"
        seen = await self._record(endpoint, request)
        return await self._answer(endpoint, request, seen)

    # --------------------------------------------------------------- normal answers

    async def _submit(self, request: web.Request, seen: Seen) -> web.Response:
        model_path = request.match_info["tail"].removesuffix(":predictLongRunning")
        name = f"{model_path}/operations/op-{next(self._ids)}"
        return web.json_response({"name": name})

    async def _poll(self, request: web.Request, seen: Seen) -> web.Response:
        name = seen.json().get("operationName")
        if name not in self.results:
            return web.json_response({"name": name, "done": False})
        return web.json_response({"name": name, "done": True, **self.results[name]})

    def _object(self, request: web.Request) -> FakeObject | None:
        # aiohttp has decoded %2F in the path: the object's name is the rest of it.
        return self.objects.get((request.match_info["bucket"], request.match_info["object"]))

    async def _metadata(self, request: web.Request, seen: Seen) -> web.Response:
        obj = self._object(request)
        if obj is None:
            return vertex_error(404, "NOT_FOUND", "No such object: " + request.path)
        meta = {
            "kind": "storage#object",
            "bucket": request.match_info["bucket"],
            "name": request.match_info["object"],
            "generation": "1700000000000001",
            "size": str(len(obj.data)),
            "md5Hash": md5_b64(obj.data),
            "crc32c": crc32c_b64(obj.data),
            "contentType": "video/mp4",
            **obj.meta,
        }
        return web.json_response({k: v for k, v in meta.items() if v is not None})

    async def _media(self, request: web.Request, seen: Seen) -> web.Response:
        obj = self._object(request)
        if obj is None:
            return vertex_error(404, "NOT_FOUND", "No such object: " + request.path)
        if self.redirect_media is not None:
            return web.Response(status=302, headers={"Location": self.redirect_media})
        return web.Response(body=obj.data, content_type="video/mp4")


def inline(*videos: bytes, filtered: int = 0, reasons: tuple[str, ...] = ()) -> dict[str, Any]:
    """A done operation's ``response`` with these videos inline."""
    return {
        "response": {
            "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            "videos": [
                {"bytesBase64Encoded": base64.b64encode(v).decode(), "mimeType": "video/mp4"}
                for v in videos
            ],
            "raiMediaFilteredCount": filtered,
            **({"raiMediaFilteredReasons": list(reasons)} if reasons else {}),
        }
    }


def in_bucket(*uris: str) -> dict[str, Any]:
    """A done operation's ``response`` with these videos in Cloud Storage."""
    return {
        "response": {
            "raiMediaFilteredCount": 0,
            "videos": [{"gcsUri": u, "mimeType": "video/mp4"} for u in uris],
        }
    }
