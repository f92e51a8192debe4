"""Vertex's wire format, literal examples from docs/veo-api.md, without a socket."""

from __future__ import annotations

import pytest

from batchveo.api.vertex_wire import (
    OperationName,
    VertexVideo,
    parse_vertex_operation,
    vertex_base,
    vertex_parameters,
)
from batchveo.errors import BadRequest

NAME = (
    "projects/123456/locations/us-central1/publishers/google/models/veo-3.1-generate-001"
    "/operations/a1b07c8e-7b5a"
)


def test_hosts_per_region_and_global() -> None:
    assert vertex_base("us-central1") == "https://us-central1-aiplatform.googleapis.com"
    assert vertex_base("global") == "https://aiplatform.googleapis.com"
    with pytest.raises(BadRequest):
        vertex_base("us-central1.evil.com/x")


def test_a_poll_needs_only_the_operation_name_sent_back_as_received() -> None:
    parts = OperationName.parse(NAME)
    assert (parts.project, parts.location, parts.model) == (
        "123456",
        "us-central1",
        "veo-3.1-generate-001",
    )
    assert parts.fetch_path() == (
        "/v1/projects/123456/locations/us-central1/publishers/google/models/"
        "veo-3.1-generate-001:fetchPredictOperation"
    )
    for bad in ("models/veo/operations/x", NAME.replace("us-central1", "../x"), ""):
        with pytest.raises(BadRequest):
            OperationName.parse(bad)


def test_parameters_are_sent_as_vertex_takes_them() -> None:
    params = {"durationSeconds": 8, "aspectRatio": "16:9", "seed": None, "sampleCount": 3}
    assert vertex_parameters(params, "gs://b/p/") == {
        "durationSeconds": 8,
        "aspectRatio": "16:9",
        "sampleCount": 3,
        "generateAudio": True,
        "storageUri": "gs://b/p/",
    }
    silent = vertex_parameters({"durationSeconds": 6, "generateAudio": False}, None)
    assert silent == {"durationSeconds": 6, "generateAudio": False, "sampleCount": 1}


def test_results_in_a_bucket_inline_partly_and_all_filtered() -> None:
    t = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
    uris = ["gs://B/P/123/sample_0.mp4", "gs://B/P/123/sample_1.mp4"]
    videos = [{"gcsUri": u, "mimeType": "video/mp4"} for u in uris]
    bucket = {"name": NAME, "done": True, "response": {"@type": t, "videos": videos}}
    out = parse_vertex_operation(bucket)
    assert out.state == "done" and out.filtered_count == 0
    assert [v.gcs_uri for v in out.videos] == [
        "gs://B/P/123/sample_0.mp4",
        "gs://B/P/123/sample_1.mp4",
    ]
    inline = {
        "done": True,
        "response": {"videos": [{"bytesBase64Encoded": "AAAA", "mimeType": "video/mp4"}]},
    }
    assert parse_vertex_operation(inline).videos == (VertexVideo("video/mp4", inline_b64="AAAA"),)
    response = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["58061214"]}
    response["videos"] = [{"gcsUri": "gs://B/x.mp4", "mimeType": "video/mp4"}]
    partly = {"done": True, "response": response}
    out = parse_vertex_operation(partly)
    assert (out.state, out.filtered_count, out.filtered_reasons) == ("done", 1, ("58061214",))
    reason = "Veo could not generate 1 videos based on the prompt provided. Support codes: 42237218"
    filtered = {
        "done": True,
        "response": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [reason]},
    }
    out = parse_vertex_operation(filtered)
    assert (out.state, out.filtered_reasons) == ("filtered", (reason,))


def test_running_failed_and_the_empty_answer() -> None:
    assert parse_vertex_operation({"name": NAME}).state == "running"
    failed = parse_vertex_operation(
        {"done": True, "error": {"code": 13, "message": "boom sk-key"}},
        scrub=lambda s: s.replace("sk-key", "[redacted]"),
    )
    assert (failed.state, failed.error_code, failed.error_message) == (
        "failed",
        13,
        "boom [redacted]",
    )
    empty = parse_vertex_operation({"done": True, "response": {"videos": []}})
    assert empty.state == "failed" and "intermittent" in (empty.error_message or "")
