"""The MP4 length reader and the copy made to last another length (``batchveo/mp4.py``)."""

from __future__ import annotations

import struct

import pytest

from batchveo import mp4
from batchveo.sim.storage import sample_bytes, video_tail


def _media_length_s(data: bytes) -> float:
    """What the sample table adds up to, over the media's own timescale: what a player plays."""
    mdhd = data.index(b"mdhd") - 4
    (scale,) = struct.unpack_from(">I", data, mdhd + 8 + 12)
    stts = data.index(b"stts") - 4
    (count,) = struct.unpack_from(">I", data, stts + 12)
    total = 0
    for i in range(count):
        n, delta = struct.unpack_from(">II", data, stts + 16 + i * 8)
        total += n * delta
    return total / scale


def test_the_packaged_sample_says_how_long_it_lasts() -> None:
    assert mp4.duration_s(sample_bytes()) == pytest.approx(_media_length_s(sample_bytes()))


@pytest.mark.parametrize("seconds", [4, 8, 15, 148])
def test_a_copy_lasts_what_was_asked_in_its_header_and_its_frames(seconds: int) -> None:
    longer = mp4.with_duration(sample_bytes() + video_tail("x"), seconds)
    assert mp4.duration_s(longer) == seconds
    assert _media_length_s(longer) == pytest.approx(seconds)
    assert len(longer) == len(sample_bytes() + video_tail("x"))
    assert longer.endswith(video_tail("x"))


def test_bytes_that_are_no_mp4_say_so() -> None:
    with pytest.raises(mp4.NotAnMp4):
        mp4.duration_s(b"\x00\x00\x00\x08free" + b"not a video")
    with pytest.raises(mp4.NotAnMp4):
        mp4.with_duration(b"garbage", 8)
