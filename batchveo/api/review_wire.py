"""The review's wire format (``generateContent``), as pure functions: what a review sends,
and what its answer means.

A review is one ``generateContent`` request (``docs/veo-api.md``, "Review with a Gemini
model"): the same body on the Gemini-format routes and on Vertex AI, only the path and
the credential differ. Nothing here touches a socket or a file, so each rule is tested
directly:

* **The body**: the video first, as ``inlineData`` (``video/mp4``, base64) with
  ``videoMetadata.fps`` beside it, then the question (the seed page's advice: the model
  follows instructions better with the pictures first). The question quotes the job's
  prompt verbatim, then the rubric, and asks for ``MM:SS`` timestamps.
  ``generationConfig`` asks for JSON matching ``RESPONSE_SCHEMA`` at the media
  resolution asked for. The body's size is known before the video is read
  (``inline_request_bytes``), so a video over the inline budget is never encoded. On
  Vertex, a take already in a bucket goes as ``fileData.fileUri`` (``gs://``) instead:
  Vertex reads it, and its size is no limit (``file_review_body``); on the Gemini API a
  take uploaded to its Files API goes the same way, by the file's ``uri`` (``files``).
* **The answer**: ``candidates[0].content.parts`` (thought parts skipped) hold the JSON
  text; it must match the schema (a score 0-10, ``matches_prompt`` a boolean, each
  defect an ``MM:SS`` and an issue, a summary). Anything else, a refusal (a prompt
  blocked, a candidate stopped for ``SAFETY`` or any reason but ``STOP``, no text) or a
  text that breaks the schema, is ``VerdictUnusable`` carrying the model's text,
  scrubbed. Tokens come from ``usageMetadata``: in, ``promptTokenCount``; out,
  ``candidatesTokenCount`` plus ``thoughtsTokenCount`` (thinking is billed as output).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

from batchveo.api.texts import clip
from batchveo.api.urls import segment
from batchveo.errors import VerdictUnusable
from batchveo.verdicts import Defect, MediaResolution, ReviewAsk, Verdict, seconds_of

VIDEO_MIME_TYPE = "video/mp4"
MAX_FPS = 24.0
"""``videoMetadata.fps`` is at most 24 (and more than 0)."""
MAX_VERDICT_TEXT_CHARS = 2000
"""Longest model text an unusable verdict keeps (it is stored as the review's error)."""
SCORE_RANGE = (0.0, 10.0)

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "score": {
            "type": "NUMBER",
            "minimum": SCORE_RANGE[0],
            "maximum": SCORE_RANGE[1],
            "description": "0 (unusable) to 10 (flawless).",
        },
        "matches_prompt": {"type": "BOOLEAN"},
        "defects": {
            "type": "ARRAY",
            "items": {
                "type": "OBJECT",
                "properties": {
                    "at": {"type": "STRING", "description": "MM:SS from the start."},
                    "issue": {"type": "STRING"},
                },
                "required": ["at", "issue"],
                "propertyOrdering": ["at", "issue"],
            },
        },
        "summary": {"type": "STRING"},
    },
    "required": ["score", "matches_prompt", "defects", "summary"],
    "propertyOrdering": ["score", "matches_prompt", "defects", "summary"],
}
"""What the answer must be (the OpenAPI subset ``responseSchema`` takes)."""

_OK_FINISH = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})
_DATA_PLACEHOLDER = "\x00video\x00"


def review_path(model: str) -> str:
    """The Gemini format's review route for ``model`` (BadRequest if not a path segment)."""
    return f"/v1beta/models/{segment(model, 'model')}:generateContent"


def review_question(prompt: str, rubric: str) -> str:
    """The question after the video: the prompt quoted verbatim, the rubric, the form."""
    return (
        f"This video was generated from the prompt: {json.dumps(prompt, ensure_ascii=False)}\n"
        f"Judge the video against the prompt and this rubric: {rubric}\n"
        "Score it from 0 (unusable) to 10 (flawless), say whether it matches the prompt, "
        "list every defect with the moment it is seen as MM:SS from the start of the video "
        "(for example 00:05), and summarise in one or two sentences. Answer as JSON."
    )


def review_body(ask: ReviewAsk, video_b64: str) -> dict[str, Any]:
    """The ``generateContent`` body of ``ask`` with the video's base64 inline."""
    video = {"inlineData": {"mimeType": VIDEO_MIME_TYPE, "data": video_b64}}
    return _body(ask, video)


def file_review_body(ask: ReviewAsk, uri: str) -> dict[str, Any]:
    """The body of ``ask`` naming the video by ``uri``: a ``gs://`` object (Vertex reads
    it) or a file uploaded to the Gemini API's Files API."""
    return _body(ask, {"fileData": {"mimeType": VIDEO_MIME_TYPE, "fileUri": uri}})


def _body(ask: ReviewAsk, video: dict[str, Any]) -> dict[str, Any]:
    video_part = {**video, "videoMetadata": {"fps": ask.fps}}
    return {
        "contents": [
            {
                "role": "user",
                "parts": [video_part, {"text": review_question(ask.prompt, ask.rubric)}],
            }
        ],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": RESPONSE_SCHEMA,
            "mediaResolution": MediaResolution(ask.media_resolution).wire,
        },
    }


def check_fps(fps: float) -> None:
    """ValueError unless ``0 < fps <= MAX_FPS`` (what ``videoMetadata.fps`` takes)."""
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise ValueError(f"frames per second must be more than 0 and at most 24, got {fps!r}")


def _skeleton(ask: ReviewAsk) -> tuple[bytes, bytes]:
    """The encoded body before and after the video's base64."""
    encoded = json.dumps(review_body(ask, _DATA_PLACEHOLDER), separators=(",", ":")).encode()
    marker = json.dumps(_DATA_PLACEHOLDER).encode()[1:-1]
    head, _, tail = encoded.partition(marker)
    return head, tail


def inline_request_bytes(ask: ReviewAsk, video_bytes: int) -> int:
    """How large the request for a video of ``video_bytes`` is: its base64, the question
    and the rest of the body (known before the video is read)."""
    head, tail = _skeleton(ask)
    return len(head) + 4 * math.ceil(video_bytes / 3) + len(tail)


def encode_review_body(ask: ReviewAsk, video: bytes) -> bytes:
    """The request as sent: compact JSON, the video's base64 spliced in (not re-escaped)."""
    head, tail = _skeleton(ask)
    return head + base64.b64encode(video) + tail


# --------------------------------------------------------------------------- the answer


def parse_review_answer(data: Any, scrub: Callable[[str], str] = str) -> Verdict:
    """A ``generateContent`` answer as a ``Verdict``; ``VerdictUnusable`` (with the model's
    text, scrubbed) if it is a refusal or does not match the schema."""
    if not isinstance(data, dict):
        raise VerdictUnusable("the review's answer is not a JSON object")
    candidates = data.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    if not isinstance(first, dict):
        feedback = data.get("promptFeedback")
        block = feedback.get("blockReason") if isinstance(feedback, dict) else None
        why = f" (blocked: {clip(scrub(str(block)))})" if block else ""
        raise VerdictUnusable(f"the model gave no answer{why}")
    text = scrub(_candidate_text(first))
    kept = _kept(text)
    finish = first.get("finishReason")
    if finish is not None and str(finish) not in _OK_FINISH:
        said = f": {clip(text)}" if text else " and no text"
        raise VerdictUnusable(f"the model stopped ({clip(scrub(str(finish)))}){said}", text=kept)
    if not text.strip():
        raise VerdictUnusable("the model answered no text", text=kept)
    try:
        answer = json.loads(text)
    except ValueError:
        raise VerdictUnusable(f"the model's answer is not JSON: {clip(text)}", text=kept) from None
    tokens_in, tokens_out = usage_tokens(data.get("usageMetadata"))
    try:
        return _verdict(answer, tokens_in, tokens_out)
    except ValueError as e:
        raise VerdictUnusable(f"the model's answer breaks the schema: {e}", text=kept) from None


def _candidate_text(candidate: dict[str, Any]) -> str:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    texts = [
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    ]
    return "".join(texts)


def _kept(text: str) -> str:
    """The model's text as an unusable verdict keeps it: printable, clipped."""
    text = "".join(c if c.isprintable() or c == "\n" else " " for c in text).strip()
    if len(text) <= MAX_VERDICT_TEXT_CHARS:
        return text
    return text[: MAX_VERDICT_TEXT_CHARS - 1] + "…"


def usage_tokens(usage: Any) -> tuple[int, int]:
    """(tokens in, tokens out) of ``usageMetadata``; thinking counts as out. Zero for a
    count the answer does not give (the real cost is then unknown, not refused)."""
    if not isinstance(usage, dict):
        return 0, 0

    def count(key: str) -> int:
        value = usage.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0
        return value

    return count("promptTokenCount"), count("candidatesTokenCount") + count("thoughtsTokenCount")


def _verdict(answer: Any, tokens_in: int, tokens_out: int) -> Verdict:
    """The schema's checks; ValueError saying the first thing wrong."""
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    score = answer.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise ValueError(f"score must be a number, got {clip(repr(score))}")
    if not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
        raise ValueError(f"score must be from 0 to 10, got {score}")
    matches = answer.get("matches_prompt")
    if not isinstance(matches, bool):
        raise ValueError(f"matches_prompt must be true or false, got {clip(repr(matches))}")
    summary = answer.get("summary")
    if not isinstance(summary, str):
        raise ValueError("summary must be a string")
    defects = answer.get("defects")
    if not isinstance(defects, list):
        raise ValueError("defects must be a list")
    return Verdict(
        score=float(score),
        matches_prompt=matches,
        defects=tuple(_defect(d, n) for n, d in enumerate(defects, 1)),
        summary=summary.strip(),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
    )


def _defect(item: Any, n: int) -> Defect:
    if not isinstance(item, dict):
        raise ValueError(f"defect {n} is not an object")
    at, issue = item.get("at"), item.get("issue")
    if not isinstance(at, str):
        raise ValueError(f"defect {n} has no MM:SS timestamp")
    try:
        seconds_of(at)
    except ValueError:
        raise ValueError(f"defect {n} is at {clip(repr(at))}, not MM:SS") from None
    if not isinstance(issue, str) or not issue.strip():
        raise ValueError(f"defect {n} says no issue")
    return Defect(at=at.strip(), issue=issue.strip())
