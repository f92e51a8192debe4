"""Setting up a run's routes: the flags and their environment variables, Google credentials
found before anything is sent, a Vertex route's client built in one place, and the
tokens kept out of what the run writes.

Here ``run.access.make_vertex_client`` is replaced
by a fake, and the credentials and tokens are google-auth's own, from a throwaway
service-account key whose token endpoint is a local server (``tests/test_gauth.py``).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result

from batchveo import redact
from batchveo.api import DownloadResult, OperationStatus
from batchveo.api.gauth import GoogleIdentity, TokenSource
from batchveo.cli import main
from batchveo.errors import ConfigError
from batchveo.routes import Route, resolve_route
from batchveo.run import access as run_access
from batchveo.run import app as run_app
from batchveo.run import loading, routed
from batchveo.run.access import RunSecrets
from batchveo.run.app import Night, RunOptions, run_night
from batchveo.run.config import ReviewFlags
from batchveo.run.context import RunStats
from batchveo.run.runner import RunResult
from batchveo.sim.tokens import make_service_account_key
from batchveo.spec import JobSpec
from tests.helpers import db_states
from tests.pipeline_helpers import KEY, fast_config, fast_sim
from tests.test_gauth import TokenServer

GOOGLE_VARS = (
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
    "BATCHVEO_PROVIDER", "BATCHVEO_STORAGE_URI", "BATCHVEO_STORAGE_BASE_URL",
    "BATCHVEO_BASE_URL", "BATCHVEO_DB",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials of the machine, no metadata server, an API key for Gemini routes."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no user ADC file
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("BATCHVEO_API_KEY", KEY)
    for var in GOOGLE_VARS:
        monkeypatch.delenv(var, raising=False)


def manifest(path: Path, *ids: str) -> Path:
    path.write_text("jobs:\n" + "".join(f"  - {{id: {i}, prompt: a sea {i}}}\n" for i in ids))
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


# -- credentials before anything is sent -------------------------------------------------


async def test_missing_vertex_credentials_exit_2_in_one_line_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    manifest(tmp_path / "m.yaml", "a", "b")
    env = dict(os.environ, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "no-such-key.json"))
    async with fast_sim() as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "batchveo", "run", "m.yaml", "--provider", "vertex",
            "--project", "my-proj", "--base-url", sim.url, "--rpm", "0", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        stats = sim.stats()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2 and out == b""
    assert len(lines) == 1, lines
    assert lines[0].startswith("batchveo: no usable Google credentials")
    assert "no-such-key.json" in lines[0] and "gcloud auth application-default login" in lines[0]
    assert all(not counts for counts in stats["requests"].values())  # nothing sent
    assert not (tmp_path / "batchveo.db").exists()  # nothing written either


async def test_a_vertex_route_with_work_in_the_database_is_checked_before_any_route_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database also holds Vertex jobs (loaded earlier): their credentials are
    # missing, so not even the Gemini-format route's jobs are sent.
    async def two_routes(store: Any) -> list[Route | None]:
        return [None, Route("vertex", "my-proj")]

    monkeypatch.setattr(routed, "routes_with_work", two_routes)
    db = tmp_path / "jobs.db"
    async with fast_sim() as sim:
        options = RunOptions(
            db_path=db, config=fast_config(tmp_path / "v"),
            manifests=(manifest(tmp_path / "m.yaml", "a"),), base_url=sim.url,
        )  # fmt: skip
        with pytest.raises(ConfigError, match="no usable Google credentials"):
            await run_night(options, say=print, stream=io.StringIO())
        stats = sim.stats()
    assert all(not counts for counts in stats["requests"].values())
    assert db_states(db) == {"a": "pending"}


# -- a Vertex route's client: built in one place, the tokens kept secret ------------------


class FakeVertex:
    """Stands in for ``api.vertex.VertexClient``: takes a real token for each submit,
    and a poll answers an operation error that echoes it (as a careless server might)."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, identity: GoogleIdentity, tokens: TokenSource, **kw: Any):
        self.identity, self.tokens = identity, tokens
        FakeVertex.made.append({"project": identity.project, **kw})

    async def __aenter__(self) -> FakeVertex:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def submit(self, spec: JobSpec) -> str:
        await self.tokens.token()
        model = f"projects/{self.identity.project}/locations/l/publishers/google/models/m"
        return f"{model}/operations/{spec.id}"

    async def poll(self, operation_name: str, model: str) -> OperationStatus:
        token = (await self.tokens.token()).reveal()
        return OperationStatus("failed", error_code=13, error_message=f"bearer {token} refused")

    async def download(self, uri: str, dest: Path) -> DownloadResult:
        raise AssertionError("nothing to download")

    async def save(self, data: bytes, dest: Path) -> DownloadResult:
        raise AssertionError("nothing to save")


@pytest.mark.parametrize("review_location", [None, "global"])
async def test_a_vertex_run_builds_its_client_with_the_routes_credentials_and_scrubs_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, review_location: str | None
) -> None:
    FakeVertex.made = []
    monkeypatch.setattr(run_access, "make_vertex_client", FakeVertex)
    log = tmp_path / "run.jsonl"
    async with TokenServer() as server:
        key = make_service_account_key(server.url, project="proj-1")
        server.issuer.trust(key.key_id, key.email, key.public_pem)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key.write(tmp_path / "sa.json")))
        config = replace(fast_config(tmp_path / "v"), review=ReviewFlags(location=review_location))
        options = RunOptions(
            db_path=tmp_path / "jobs.db",
            config=config,
            manifests=(manifest(tmp_path / "m.yaml", "a", "b"),), provider="vertex",
            location="europe-west4", base_url="http://127.0.0.1:9",
            storage_base_url="http://127.0.0.1:10", log_file=log,
        )  # fmt: skip
        night = await run_night(options, say=print, stream=io.StringIO())
        tokens = [t for t in server.issuer._tokens]  # every token the run was handed
    assert night.result.states["failed"] == 2
    # One client for the one route: its project the credentials', its region the flag's.
    assert FakeVertex.made == [
        {
            "project": "proj-1", "location_default": "europe-west4",
            "base_url": "http://127.0.0.1:9", "storage_base_url": "http://127.0.0.1:10",
            "review_location": review_location,
        }
    ]  # fmt: skip
    assert tokens
    text = log.read_text()
    assert "bearer [redacted] refused" in text
    assert not any(token in text for token in tokens)
    # A crash file is scrubbed after the run, of the tokens only the process knew.
    assert not any(token in redact.redact(f"oops {token}", {}) for token in tokens)


def test_run_secrets_remember_every_token_handed_out() -> None:
    handed = [redact.Secret("first-token-123")]
    secrets = RunSecrets(lambda: handed)
    assert secrets.scrub("x first-token-123") == "x [redacted]"
    handed[:] = [redact.Secret("second-token-456")]  # refreshed
    assert secrets.scrub("first-token-123 second-token-456") == "[redacted] [redacted]"


# -- the flags and their environment variables ----------------------------------------


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch) -> list[RunOptions]:
    """What ``batchveo run`` hands ``run_night`` (which then runs nothing)."""
    seen: list[RunOptions] = []

    async def fake_run_night(options: RunOptions, **kw: Any) -> Night:
        seen.append(options)
        return Night(RunResult(states={}, stats=RunStats()))

    monkeypatch.setattr(run_app, "run_night", fake_run_night)
    return seen


def test_the_route_flags_make_the_runs_route(options: list[RunOptions]) -> None:
    result = invoke(
        "run", "--provider", "vertex", "--project", "p-1", "--location", "global",
        "--storage-uri", "gs://bucket/night/", "--storage-base-url", "http://127.0.0.1:4443",
        "--base-url", "http://127.0.0.1:8080",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [o] = options
    assert o.route == Route("vertex", "p-1", "global", "gs://bucket/night/")
    assert (o.base_url, o.storage_base_url) == ("http://127.0.0.1:8080", "http://127.0.0.1:4443")


def test_the_route_comes_from_the_environment_too(options: list[RunOptions]) -> None:
    env = {
        "BATCHVEO_PROVIDER": "vertex", "GOOGLE_CLOUD_PROJECT": "env-proj",
        "GOOGLE_CLOUD_LOCATION": "asia-northeast1", "BATCHVEO_STORAGE_URI": "gs://b/p/",
        "BATCHVEO_STORAGE_BASE_URL": "http://127.0.0.1:4443",
    }  # fmt: skip
    assert invoke("run", env=env).exit_code == 0
    assert invoke("run").exit_code == 0
    with_env, without = options
    assert with_env.route == Route("vertex", "env-proj", "asia-northeast1", "gs://b/p/")
    assert with_env.storage_base_url == "http://127.0.0.1:4443"
    assert without.route == Route()  # nothing given: each job's own, else the defaults
    assert resolve_route(without.route, without.route) == Route("gptproto")


def test_a_storage_uri_that_is_not_a_bucket_is_refused() -> None:
    result = invoke("run", "--provider", "vertex", "--storage-uri", "s3://bucket/x")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "batchveo: --storage-uri: storageUri must be a Cloud Storage folder like"
        " gs://BUCKET/PREFIX/ (a valid bucket name), not 's3://bucket/x'"
    )


@pytest.mark.parametrize("command", ["load", "plan", "run --dry-run"])
def test_load_and_plan_read_the_manifests_with_the_route(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes: list[Route] = []
    real, real_stream = loading.read_manifests, loading.stream_manifests

    def read_manifests(paths: Any, *, batch: str | None = None, route: Route, **kw: Any) -> Any:
        routes.append(route)  # kw: the database's jobs a scene chain's hop may extend
        return real(paths, batch=batch, route=route, **kw)

    def stream_manifests(
        paths: Any, take: Any, *, batch: str | None = None, route: Route, **kw: Any
    ) -> Any:
        routes.append(route)  # load streams the manifests (and hands on their reviews)
        return real_stream(paths, take, batch=batch, route=route, **kw)

    monkeypatch.setattr(loading, "read_manifests", read_manifests)
    monkeypatch.setattr(loading, "stream_manifests", stream_manifests)
    manifest(tmp_path / "m.yaml", "a")
    flags = ["--provider", "vertex", "--project", "proj-1", "--storage-uri", "gs://bkt/x/"]
    result = invoke(*command.split(), "m.yaml", *flags)
    assert result.exit_code == 0, result.output
    assert routes == [Route("vertex", "proj-1", None, "gs://bkt/x/")]  # the region: the run's
    if command == "load":
        assert json.dumps(db_states(tmp_path / "batchveo.db")) == '{"a": "pending"}'
        with sqlite3.connect(tmp_path / "batchveo.db") as db:
            stored = db.execute("SELECT provider, project, location, storage_uri FROM jobs")
            assert stored.fetchall() == [("vertex", "proj-1", None, "gs://bkt/x/")]
