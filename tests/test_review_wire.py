"""The review's wire rules, pure: the ``generateContent`` body a review sends, the verdict
its answer gives (or why it gives none), the review models' data and prices, and how a
review's failures map. The same rules over real sockets are ``test_review_client``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from batchveo.api.errormap import error_for_status, vertex_error_for_status
from batchveo.api.review_wire import (
    RESPONSE_SCHEMA,
    check_fps,
    encode_review_body,
    file_review_body,
    inline_request_bytes,
    parse_review_answer,
    review_body,
    review_path,
)
from batchveo.api.wire import encode_body
from batchveo.errors import BadRequest, ModelUnavailable, NotFound, VerdictUnusable
from batchveo.models import (
    PROVIDER_MODELS,
    REVIEW_MODELS,
    estimate_review_cost_usd,
    parse_prices,
    review_cost_usd,
    review_tokens_in,
)
from batchveo.redact import REDACTED, Secret
from batchveo.sim.review import answer_body, answer_text, check_review, review_markers
from batchveo.verdicts import MediaResolution, ReviewAsk
from tests.pipeline_helpers import SAMPLE_MP4

PROMPT = 'A "red" fox leaps — over ünïcode snow [sim:review=3]'
RUBRIC = "No extra limbs, no text artefacts."


def ask(**kw: Any) -> ReviewAsk:
    values: dict[str, Any] = {
        "video_path": Path("take.mp4"),
        "prompt": PROMPT,
        "rubric": RUBRIC,
        "model": "gemini-3.5-flash",
        "fps": 4.0,
        "media_resolution": MediaResolution.LOW,
        **kw,
    }
    return ReviewAsk(**values)


def answer(text: str | None, finish: str = "STOP", **usage: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"finishReason": finish}
    if text is not None:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    tokens = {"promptTokenCount": 2650, "candidatesTokenCount": 120, **usage}
    return {"candidates": [candidate], "usageMetadata": tokens}


VERDICT = {
    "score": 3,
    "matches_prompt": True,
    "defects": [{"at": "00:05", "issue": "a sixth finger"}],
    "summary": "An artefact.",
}

# --------------------------------------------------------------------------- the body


def test_the_video_goes_first_then_the_question_quoting_the_prompt_verbatim() -> None:
    body = json.loads(encode_review_body(ask(), SAMPLE_MP4))
    (turn,) = body["contents"]
    video, question = turn["parts"]
    assert video["inlineData"]["mimeType"] == "video/mp4"
    assert base64.b64decode(video["inlineData"]["data"]) == SAMPLE_MP4
    assert video["videoMetadata"] == {"fps": 4.0}
    text = question["text"]
    assert json.dumps(PROMPT, ensure_ascii=False) in text  # quoted, every character kept
    assert RUBRIC in text and "MM:SS" in text
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert config["responseSchema"] == RESPONSE_SCHEMA
    assert set(RESPONSE_SCHEMA["required"]) == {"score", "matches_prompt", "defects", "summary"}


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 1000, len(SAMPLE_MP4)])
def test_the_request_size_is_known_before_the_video_is_read(size: int) -> None:
    video = (SAMPLE_MP4 * 2)[:size]
    encoded = encode_review_body(ask(), video)
    assert inline_request_bytes(ask(), size) == len(encoded)
    assert json.loads(encoded) == review_body(ask(), base64.b64encode(video).decode())


def test_the_simulator_takes_the_body_as_sent_and_counts_its_tokens() -> None:
    asked = check_review(encode_review_body(ask(), SAMPLE_MP4))
    assert not isinstance(asked, str), asked
    assert (asked.seconds, asked.fps, asked.media_resolution) == (2.0, 4.0, "low")
    assert review_markers(asked.question) == {"3": 1}
    body = answer_body(asked, answer_text(review_markers(asked.question)))
    verdict = parse_review_answer(body)
    usage = body["usageMetadata"]
    # 2 s at 4 frames a second, 68 tokens a frame at low, 32 a second of audio, the question.
    question_tokens = -(-len(asked.question) // 4)
    assert verdict.tokens_in == usage["promptTokenCount"] == 8 * 68 + 2 * 32 + question_tokens
    assert verdict.tokens_out == usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]


@pytest.mark.parametrize(
    ("mutate", "said"),
    [
        (lambda b: b["contents"][0]["parts"].reverse(), "video first"),
        (lambda b: b["contents"][0]["parts"][0]["inlineData"].update(data="@@"), "base64 MP4"),
        (
            lambda b: b["contents"][0]["parts"][0]["inlineData"].update(data="AAAA"),
            "base64 MP4",
        ),
        (lambda b: b["contents"][0]["parts"][0].update(videoMetadata={"fps": 25}), "fps"),
        (lambda b: b["contents"][0]["parts"][0].update(videoMetadata={"fps": 0}), "fps"),
        (lambda b: b["generationConfig"].pop("responseSchema"), "responseSchema"),
        (lambda b: b["generationConfig"].pop("responseMimeType"), "responseMimeType"),
        (lambda b: b["generationConfig"].update(mediaResolution="ULTRA"), "media_resolution"),
    ],
)
def test_the_simulator_refuses_what_the_service_refuses(mutate: Any, said: str) -> None:
    body = json.loads(encode_review_body(ask(), SAMPLE_MP4))
    mutate(body)
    problem = check_review(json.dumps(body).encode())
    assert isinstance(problem, str) and said in problem


def test_only_vertex_takes_a_video_named_by_its_gs_uri() -> None:
    named = ask(video_uri="gs://takes/j1.mp4")
    body = encode_body(file_review_body(named, "gs://takes/j1.mp4"))
    part = json.loads(body)["contents"][0]["parts"][0]
    assert part == {
        "fileData": {"mimeType": "video/mp4", "fileUri": "gs://takes/j1.mp4"},
        "videoMetadata": {"fps": 4.0},
    }
    asked = check_review(body, files=True)
    assert not isinstance(asked, str) and asked.file_uri == "gs://takes/j1.mp4"
    assert "inlineData" in str(check_review(body, files=False))


def test_frames_per_second_are_checked_before_anything_is_read() -> None:
    check_fps(24)
    for bad in (0, -1, 24.5, float("nan")):
        with pytest.raises(ValueError, match="at most 24"):
            check_fps(bad)


def test_a_model_that_cannot_be_a_path_segment_is_a_bad_request() -> None:
    assert review_path("gemini-3.5-flash") == "/v1beta/models/gemini-3.5-flash:generateContent"
    with pytest.raises(BadRequest):
        review_path("../admin")


# --------------------------------------------------------------------------- the answer


def test_a_flagged_answer_gives_its_defects_at_their_moment_and_its_tokens() -> None:
    verdict = parse_review_answer(answer(json.dumps(VERDICT), thoughtsTokenCount=300))
    assert verdict.score == 3.0 and verdict.matches_prompt and not verdict.passes(7)
    assert [(d.at, d.at_s, d.issue) for d in verdict.defects] == [(("00:05"), 5, "a sixth finger")]
    assert (verdict.tokens_in, verdict.tokens_out) == (2650, 420)  # thinking is billed as out


def test_thought_parts_are_not_the_answer() -> None:
    data = answer(json.dumps({**VERDICT, "score": 9, "defects": []}))
    data["candidates"][0]["content"]["parts"].insert(0, {"text": "hmm, {", "thought": True})
    assert parse_review_answer(data).score == 9


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"score": "great"}, "score must be a number"),
        ({"score": True}, "score must be a number"),
        ({"score": 11}, "from 0 to 10"),
        ({"score": -1}, "from 0 to 10"),
        ({"matches_prompt": "yes"}, "matches_prompt"),
        ({"defects": [{"at": "5s", "issue": "x"}]}, "not MM:SS"),
        ({"defects": [{"at": "00:75", "issue": "x"}]}, "not MM:SS"),
        ({"defects": [{"at": "00:05"}]}, "says no issue"),
        ({"defects": "none"}, "defects must be a list"),
        ({"summary": None}, "summary"),
    ],
)
def test_an_answer_off_the_schema_is_unusable_and_keeps_the_models_text(
    change: dict[str, Any], said: str
) -> None:
    text = json.dumps({**VERDICT, **change})
    with pytest.raises(VerdictUnusable, match=said) as info:
        parse_review_answer(answer(text))
    assert info.value.text == text


def test_prose_instead_of_json_is_unusable_with_the_prose() -> None:
    with pytest.raises(VerdictUnusable, match="not JSON") as info:
        parse_review_answer(answer("It looks fine.\nReally."))
    assert info.value.text == "It looks fine.\nReally."


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (answer(None, "SAFETY"), r"stopped \(SAFETY\) and no text"),
        (answer('{"score": 8', "MAX_TOKENS"), r"stopped \(MAX_TOKENS\)"),
        (answer("   "), "no text"),
        ({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}, "PROHIBITED_CONTENT"),
        ({"candidates": []}, "no answer"),
        ([], "not a JSON object"),
    ],
)
def test_a_refusal_is_unusable(data: Any, said: str) -> None:
    with pytest.raises(VerdictUnusable, match=said):
        parse_review_answer(data)


def test_the_models_text_is_scrubbed_of_the_secret() -> None:
    secret = Secret("sk-review-SECRET-123456")
    with pytest.raises(VerdictUnusable) as info:
        parse_review_answer(answer("your key sk-review-SECRET-123456 is nice"), secret.scrub)
    assert "SECRET" not in str(info.value) + info.value.text
    assert REDACTED in info.value.text


def test_missing_usage_counts_zero_tokens_not_a_lost_verdict() -> None:
    data = answer(json.dumps(VERDICT))
    del data["usageMetadata"]
    verdict = parse_review_answer(data)
    assert (verdict.score, verdict.tokens_in, verdict.tokens_out) == (3.0, 0, 0)


# --------------------------------------------------------------------------- data and errors


def test_tokens_follow_the_seed_pages_figures_per_second() -> None:
    # About 300 a second at default (medium) resolution, about 100 at low, at 1 frame/s.
    assert review_tokens_in(8, 1, "medium", question_chars=0) == 8 * 300
    assert review_tokens_in(8, 1, "low", question_chars=0) == 8 * 100
    assert review_tokens_in(8, 1, "high", question_chars=0) == 8 * 600
    # More frames sampled cost more; the audio does not.
    assert review_tokens_in(8, 4, "low", question_chars=0) == 32 * 68 + 8 * 32


def test_a_reviews_cost_is_its_tokens_at_the_models_price_or_the_users() -> None:
    assert review_cost_usd("gemini-3.5-flash", 1_000_000, 1_000_000) == 1.50 + 9.00
    assert review_cost_usd("gemini-3-flash-preview", 2_000_000, 0) == 1.00
    own = parse_prices({"gemini-3.5-flash": {"input": 0.1, "output": 0.2}}, "prices.yaml")
    assert review_cost_usd("gemini-3.5-flash", 1_000_000, 1_000_000, own) == pytest.approx(0.3)
    # 8 s at 4 frames/s, low: 32 frames of 68, 8 s of audio and the question's 200 make
    # 2,632 tokens in; 1,000 out.
    estimate = estimate_review_cost_usd("gemini-3.5-flash", 8, 4, "low")
    assert estimate == pytest.approx((2632 * 1.50 + 1000 * 9.00) / 1e6)
    with pytest.raises(ValueError, match="USD per million tokens"):
        parse_prices({"gemini-3.5-flash": {"input": "cheap"}}, "prices.yaml")


def test_every_provider_reviews_with_35_flash_and_the_reseller_with_the_preview_too() -> None:
    for name, provider in PROVIDER_MODELS.items():
        assert "gemini-3.5-flash" in provider.review_model_ids, name
        assert set(provider.review_model_ids) <= set(REVIEW_MODELS)
    assert "gemini-3-flash-preview" in PROVIDER_MODELS["gptproto"].review_model_ids
    assert "gemini-3-flash-preview" not in PROVIDER_MODELS["vertex"].review_model_ids


def test_a_404_on_a_review_is_the_model_not_a_lost_operation() -> None:
    body = json.dumps({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
    assert type(error_for_status(404, {}, body.encode(), "review")) is ModelUnavailable
    assert type(error_for_status(404, {}, body.encode(), "poll")) is NotFound
    err = vertex_error_for_status(
        404, {}, body.encode(), "review", model="gemini-9", served_models=("gemini-3.5-flash",)
    )
    assert type(err) is ModelUnavailable and "gemini-9" in str(err) and "3.5" in str(err)
