"""The HTTP client for Veo's long-running video API; the wire contract is ``docs/veo-api.md``.

``VeoClient`` submits, polls and downloads, each one request, and turns every outcome into a
value or one exception of ``batchveo.errors`` that tells the runner what to do. The modules,
from the client down:

- ``client``: ``VeoClient``, the Gemini v1beta routes (Gemini API, GPTProto, the simulator).
- ``vertex``: ``VertexClient``, Vertex AI (a bearer token; videos inline or in a bucket).
- ``wire``: the Gemini format as pure functions: request bodies, operation names, polls.
- ``vertex_wire``: the Vertex format as pure functions: parameters, operation names, polls.
- ``vertex_body``: a job's Vertex request body, its local images read and verified.
- ``review``: ``ReviewClient``, what the review stage needs of either client, and the steps
  both share (the video read off the loop, its size checked first; the verdict read).
- ``review_wire``: the review's ``generateContent`` as pure functions: body, verdict.
- ``files``: the Gemini API's Files API, for a take over the inline budget: a resumable
  upload streamed from disk, the wait until it is active, its deletion.
- ``providers``: ``Provider`` (hosts, key variable, model ids as data), ``ApiKey``.
- ``gauth``, ``bearer``: Google credentials and tokens; the token as a transport credential.
- ``gcs``: ``gs://`` videos: metadata, bytes, size and checksum verified before they count.
- ``transport``: one request with a credential: session, bounded answer, mapped failure.
- ``download``: a video to ``<dest>.part``, checked, made durable; redirects by hand.
- ``errormap``: ``error_for_status`` and ``network_error``: what went wrong, as an exception.
- ``probe``: whether a failed submit was sent, from aiohttp's hooks (pinned in pyproject).
- ``bounded``: reading JSON answers under a cap, inflating them ourselves.
- ``urls``, ``texts``, ``results``: URLs kept keyless, texts fit for messages, the values.

A provider in another wire format (Vertex AI) is a client module of its own beside
``client`` (``vertex``), with its own credential (``bearer``), over the same ``transport``,
``download``, ``errormap`` and ``results``.
"""

from batchveo.api.bearer import BearerToken
from batchveo.api.bounded import MAX_ERROR_BODY_BYTES, MAX_JSON_BYTES
from batchveo.api.client import MAX_OPERATION_NAME_CHARS, VeoClient
from batchveo.api.download import MAX_REDIRECTS, MAX_VIDEO_BYTES
from batchveo.api.errormap import (
    Kind,
    error_for_status,
    parse_envelope,
    retry_after_s,
    vertex_error_for_status,
)
from batchveo.api.gcs import STORAGE_BASE, CloudStorage
from batchveo.api.providers import (
    KEY_HEADER,
    PROVIDERS,
    Provider,
    resolve_api_key,
    resolve_provider,
)
from batchveo.api.results import DownloadResult, OperationStatus
from batchveo.api.review import ReviewClient
from batchveo.api.review_wire import RESPONSE_SCHEMA, parse_review_answer, review_question
from batchveo.api.texts import MAX_MESSAGE_CHARS
from batchveo.api.vertex import (
    MAX_INLINE_VIDEO_BYTES,
    MAX_POLL_ANSWER_BYTES,
    VERTEX_MODEL_IDS,
    VertexClient,
)
from batchveo.api.vertex_body import build_vertex_body
from batchveo.api.wire import (
    build_parameters,
    build_request_body,
    load_image,
    parse_operation,
    split_operation_name,
)

__all__ = [
    "KEY_HEADER",
    "MAX_ERROR_BODY_BYTES",
    "MAX_INLINE_VIDEO_BYTES",
    "MAX_JSON_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_OPERATION_NAME_CHARS",
    "MAX_POLL_ANSWER_BYTES",
    "MAX_REDIRECTS",
    "MAX_VIDEO_BYTES",
    "PROVIDERS",
    "RESPONSE_SCHEMA",
    "STORAGE_BASE",
    "VERTEX_MODEL_IDS",
    "BearerToken",
    "CloudStorage",
    "DownloadResult",
    "Kind",
    "OperationStatus",
    "Provider",
    "ReviewClient",
    "VeoClient",
    "VertexClient",
    "build_parameters",
    "build_request_body",
    "build_vertex_body",
    "error_for_status",
    "load_image",
    "parse_envelope",
    "parse_operation",
    "parse_review_answer",
    "resolve_api_key",
    "resolve_provider",
    "retry_after_s",
    "review_question",
    "split_operation_name",
    "vertex_error_for_status",
]
