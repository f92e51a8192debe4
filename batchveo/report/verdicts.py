"""A take's review on its card: the score badge, pass or flag, the defects as links that
seek the card's video, the summary; a review error or a skipped review said plainly.

The model's words (defects, summary, error text) are data from outside, like prompts:
every one goes through ``html.escape`` and nothing of them reaches an attribute but the
seconds of a defect, which are digits (``verdicts.seconds_of``). A defect's link is the
video's own URL with a media fragment (``clip.mp4#t=5``), so with scripts off it still
opens the video at that moment; the page's script instead seeks the card's player there.

The card carries its verdict in ``data-review`` (the status) and ``data-score``, which the
page's script filters ("flagged") and sorts ("lowest score first") by. A job without a
recorded review (none asked, or still due) gets none of this: no attribute, no box.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from batchveo.store import Review, ReviewStatus
from batchveo.verdicts import seconds_of

R = ReviewStatus

LABELS: Mapping[ReviewStatus, str] = {
    R.PASSED: "passed",
    R.FLAGGED: "flagged",
    R.ERROR: "review error",
    R.SKIPPED: "review skipped",
}
"""How a card and the first page name each outcome."""

MAX_TEXT_CHARS = 600
"""Of a summary or a review error's text shown on a card (the model's text may be long:
``batchveo show ID`` prints it whole)."""


def fmt_score(score: float) -> str:
    """``3`` for 3.0, ``6.5`` for 6.5."""
    return f"{score:g}"


def fmt_usd(usd: float) -> str:
    """Reviews cost fractions of a cent each: ``$0.0052``; a dollar or more ``$1.25``."""
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def card_attrs(review: Review | None) -> str:
    """The card's ``data-review`` and ``data-score`` (nothing for no review)."""
    if review is None or review.status is None:
        return ""
    score = "" if review.score is None else f' data-score="{review.score:g}"'
    return f' data-review="{review.status.value}"{score}'


def badge(review: Review | None) -> str:
    """The score badge beside the job's state (nothing without a score)."""
    if review is None or review.status is None or review.score is None:
        return ""
    status = review.status.value
    return (
        f'<span class="sc v-{status}" title="review score {fmt_score(review.score)} of 10: '
        f'{status}">{fmt_score(review.score)}</span>'
    )


def defect_link(at: str, issue: str, video_url: str | None) -> str:
    """One defect: its ``MM:SS`` as a link seeking the video (plain text when the video is
    missing or the time is not ``MM:SS``), then the issue."""
    try:
        seconds = seconds_of(at)
    except ValueError:
        seconds = None
    if seconds is None or video_url is None:
        when = f'<span class="at">{escape(at)}</span>'
    else:
        when = (
            f'<a class="seek" href="{escape(video_url)}#t={seconds}" data-t="{seconds}">'
            f"{escape(at.strip())}</a>"
        )
    return f"<li>{when} {escape(issue)}</li>"


def verdict(review: Review | None, video_url: str | None) -> str:
    """The verdict's box on the card (nothing for no recorded review). ``video_url``: the
    card's video, which the defects' links seek (None: no video on disk)."""
    if review is None or review.status is None:
        return ""
    status = review.status
    head, kind = f"<b>{LABELS[status]}</b>", f"review-{status.value}"
    if status is R.SKIPPED:  # why, as the stage words it: "review skipped: too large"
        why = (review.error or "").removeprefix("review skipped: ").removeprefix("review skipped")
        text = f" · {escape(_clip(why))}" if why.strip() else ""
        return f'<div class="rv v-{status.value}" data-kind="{kind}">{head}{text}</div>'
    if status is R.ERROR:
        text = f"<br>{escape(_clip(review.error or 'no reason given'))}"
        return f'<div class="rv v-{status.value}" data-kind="{kind}">{head}{text}</div>'
    facts = []
    if review.score is not None:
        facts.append(f"score {fmt_score(review.score)} of 10")
    if review.matches_prompt is False:
        facts.append("does not match the prompt")
    if review.model:
        facts.append(review.model)
    if review.cost_usd:
        facts.append(fmt_usd(review.cost_usd))
    line = "".join(f" · {escape(f)}" for f in facts)
    defects = ""
    if review.defects:
        items = "".join(defect_link(d.at, d.issue, video_url) for d in review.defects)
        defects = f'<ul class="defects">{items}</ul>'
    summary = f'<p class="sum">{escape(_clip(review.summary))}</p>' if review.summary else ""
    return (
        f'<div class="rv v-{status.value}" data-kind="{kind}">{head}{line}{defects}{summary}</div>'
    )
