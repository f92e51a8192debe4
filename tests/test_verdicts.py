"""The review types' own rules: timestamps, the pass mark, the wire name of a resolution."""

from __future__ import annotations

import pytest

from batchveo.verdicts import Defect, MediaResolution, Verdict, seconds_of


@pytest.mark.parametrize(("text", "seconds"), [("00:05", 5), ("01:05", 65), ("12:00", 720)])
def test_a_timestamp_is_minutes_and_seconds(text: str, seconds: int) -> None:
    assert seconds_of(text) == seconds
    assert Defect(text, "x").at_s == seconds


@pytest.mark.parametrize("text", ["5", "0:5", "00:60", "1:02:03", "aa:bb", ""])
def test_anything_else_is_no_timestamp(text: str) -> None:
    with pytest.raises(ValueError, match="MM:SS"):
        seconds_of(text)


def test_a_take_passes_at_the_threshold_and_not_below() -> None:
    v = Verdict(7.0, True, (), "", 0, 0)
    assert v.passes(7.0) and not v.passes(7.5)


def test_media_resolution_is_sent_by_its_api_name() -> None:
    assert MediaResolution("low").wire == "MEDIA_RESOLUTION_LOW"
