"""An MP4's length, read from its boxes, and a copy of a video made to last another length.

Two users: the simulator, whose videos must last what was asked for (an 8 s clip, or a
scene chain's hop that is its parent plus 7 s: the issue asks for "the MP4's duration field
really says so"); and whoever needs a downloaded video's length without decoding it (a
chain's longest cut, a review's token estimate). Reading four fixed-layout boxes is a few
lines; decoding with PyAV for a number that sits in a header would be slower and would need
the codec.

``with_duration`` stretches the sample table (``stts``), not only the headers, so the video
really plays for that long (its frames shown for longer): a browser's ``<video>`` seeks into
it and a decoder agrees with the header. It handles what the packaged sample is made of:
version 0 or 1 ``mvhd``/``tkhd``/``mdhd``, an ``elst`` edit list, one or more ``stts``
entries, no ``ctts``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"})
"""Boxes whose payload is more boxes, on the way to the ones that hold a duration."""


class NotAnMp4(ValueError):
    """The bytes are not an MP4 whose length can be read (no ``moov``/``mvhd``)."""


@dataclass(frozen=True)
class _Box:
    kind: bytes
    start: int
    """Offset of the box's size field."""
    end: int
    header: int
    """Bytes of size and type (8, or 16 with a 64-bit size)."""

    @property
    def body(self) -> int:
        return self.start + self.header


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[_Box]:
    """Every box from ``start`` to ``end``, descending into the containers."""
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, off)
        header = 8
        if size == 1:
            if off + 16 > end:
                return
            (size,) = struct.unpack_from(">Q", data, off + 8)
            header = 16
        elif size == 0:
            size = end - off
        if size < header or off + size > end:
            return
        box = _Box(kind, off, off + size, header)
        yield box
        if kind in _CONTAINERS:
            yield from _boxes(data, box.body, box.end)
        off += size


def _find(data: bytes | bytearray, kind: bytes) -> list[_Box]:
    return [b for b in _boxes(data, 0, len(data)) if b.kind == kind]


def _timescale_and_duration(data: bytes | bytearray, box: _Box) -> tuple[int, int, int]:
    """``(timescale, duration, offset of duration)`` of an ``mvhd`` or ``mdhd``."""
    version = data[box.body]
    if version == 1:
        timescale, duration = struct.unpack_from(">IQ", data, box.body + 20)
        return timescale, duration, box.body + 24
    timescale, duration = struct.unpack_from(">II", data, box.body + 12)
    return timescale, duration, box.body + 16


def duration_s(data: bytes | bytearray) -> float:
    """The video's length in seconds, from its ``mvhd``; ``NotAnMp4`` if there is none."""
    found = _find(data, b"mvhd")
    if not found:
        raise NotAnMp4("no mvhd box: not an MP4 whose length can be read")
    timescale, duration, _ = _timescale_and_duration(data, found[0])
    if timescale == 0:
        raise NotAnMp4("mvhd has a timescale of 0")
    return duration / timescale


def _put(data: bytearray, offset: int, value: int, wide: bool) -> None:
    struct.pack_into(">Q" if wide else ">I", data, offset, value)


def with_duration(data: bytes, seconds: float) -> bytes:
    """A copy of the MP4 ``data`` that lasts ``seconds``: headers, edit list and sample
    table scaled alike. ``NotAnMp4`` if ``data`` has no readable length."""
    if seconds <= 0:
        raise ValueError("a video lasts more than 0 s")
    out = bytearray(data)
    factor = seconds / duration_s(out)
    movie_scale, _, _ = _timescale_and_duration(out, _find(out, b"mvhd")[0])
    for box in _find(out, b"mvhd") + _find(out, b"mdhd"):
        scale, _, at = _timescale_and_duration(out, box)
        _put(out, at, round(seconds * scale), wide=out[box.body] == 1)
    for box in _find(out, b"tkhd"):  # in the movie's timescale
        wide = out[box.body] == 1
        _put(out, box.body + (28 if wide else 20), round(seconds * movie_scale), wide)
    for box in _find(out, b"elst"):
        wide = out[box.body] == 1
        (count,) = struct.unpack_from(">I", out, box.body + 4)
        step = 20 if wide else 12
        for i in range(count):
            at = box.body + 8 + i * step
            (old,) = struct.unpack_from(">Q" if wide else ">I", out, at)
            _put(out, at, round(old * factor), wide)
    for box in _find(out, b"stts"):
        (count,) = struct.unpack_from(">I", out, box.body + 4)
        for i in range(count):
            at = box.body + 8 + i * 8 + 4
            (delta,) = struct.unpack_from(">I", out, at)
            struct.pack_into(">I", out, at, max(1, round(delta * factor)))
    return bytes(out)
