"""Prompt markers: ``[sim:...]`` in a prompt forces an outcome.

So a test can build a batch holding every kind of failure. This is the service deciding on
content: the client never needs to know about them.

- ``[sim:content_policy]``: the submit is rejected 400 (usage guidelines).
- ``[sim:bad_request]``: the submit is rejected 400 INVALID_ARGUMENT.
- ``[sim:op_error]``: the operation ends ``done`` with ``error`` {code 13, INTERNAL}.
- ``[sim:filtered]``: the operation ends ``done`` with raiMediaFilteredCount and no samples.
  On Vertex, ``[sim:filteredxN]`` filters N of the ``sampleCount`` samples (the others come
  back: a partial result); N at least ``sampleCount``, or no ``xN``, filters them all.
- ``[sim:empty]`` (Vertex): the operation ends ``done`` with no video, no error and nothing
  filtered, the known intermittent service bug.
- ``[sim:slow]``: generation takes the maximum of ``generation_s`` (a log-normal's 99.9th
  percentile).
- ``[sim:file403]``: the operation ends ``done``, but every download of its video answers
  ``403 PERMISSION_DENIED`` "You do not have permission to access the File ... or it may not
  exist", as the Files API says of a missing or expired file.
- ``[sim:resetxN]``: the first N submits of this prompt are read, then the connection is
  dropped with no response and no operation created.
- ``[sim:500xN]`` / ``[sim:503xN]`` / ``[sim:429xN]``: the next N submits get that status.
- ``[sim:502xN]`` / ``[sim:504xN]``: the next N submits get a gateway's HTML page with that
  status (a proxy such as the reseller's; nothing is created here, but a real gateway may time
  out after its upstream created the operation, so the client cannot know).
  Counted faults apply in order reset, 5xx, 429 (``[sim:resetx1][sim:500x2]``: reset, 500, 500,
  then accepted). ``xN`` may be omitted for N = 1.
- ``[sim:lostxN]``: the first N *accepted* submits of this prompt create a (paid) operation
  but the connection is dropped before the reply: the "outcome unknown" case.
- ``[sim:truncatedxN]``: the first N downloads of this prompt's video send a full
  Content-Length, part of the bytes, then close (on Vertex: the first N media reads of each
  of its objects in the simulator's own Cloud Storage).
- ``[sim:corruptxN]`` (Vertex, the simulator's own Cloud Storage): the first N media reads of
  each of its objects answer the right size with one byte changed, so its ``md5Hash`` and
  ``crc32c`` no longer match the metadata.

Review markers (``[sim:review=...]``, read from the question of a ``generateContent``
review, which quotes the prompt) are ``review``'s: ``[sim:review=N]`` scores N,
``[sim:review=3/8]`` scores 3 the first review of this question, then 8 (a retake that
passes), ``bad-json``, ``not-json``, ``refuse``, ``429``/``5xx`` (see ``sim/review.py``).
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

Marks = dict[str, int]
"""Marker name -> its N (1 for a marker without ``xN``)."""

OUTCOME_MARKERS = (
    "content_policy",
    "bad_request",
    "op_error",
    "filtered",
    "slow",
    "file403",
    "empty",
)
COUNTED_MARKERS = ("reset", "500", "502", "503", "504", "429", "lost", "truncated", "corrupt")
COUNTED_FAULTS = ("reset", "500", "502", "503", "504", "429")
"""The counted markers a submit meets before it is accepted, in the order they apply."""
_MARKER = re.compile(r"\[sim:([a-z0-9_]+?)(?:x(\d+))?\]")
_FILTERED = re.compile(r"\[sim:filtered(?:x(\d+))?\]")


def parse_markers(prompt: str) -> Marks:
    """The markers of ``prompt``; an unknown one is logged and ignored."""
    if "[sim:" not in prompt:
        return {}
    out: Marks = {}
    for name, count in _MARKER.findall(prompt):
        if name not in OUTCOME_MARKERS and name not in COUNTED_MARKERS:
            log.warning("simulator: unknown prompt marker [sim:%s] ignored", name)
        out[name] = int(count) if count else 1
    return out


def counted_fault(marks: Marks, seen: int) -> str | None:
    """The fault (``"reset"`` or a status) the ``seen``-th submit (from 1) of a prompt gets."""
    for kind in COUNTED_FAULTS:
        seen -= marks.get(kind, 0)
        if seen <= 0:
            return kind
    return None


def filtered_samples(prompt: str, sample_count: int) -> int:
    """How many of ``sample_count`` samples ``[sim:filtered]``/``[sim:filteredxN]`` filter."""
    match = _FILTERED.search(prompt)
    if match is None:
        return 0
    return sample_count if match.group(1) is None else min(int(match.group(1)), sample_count)
