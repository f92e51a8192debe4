"""The morning report: self-contained HTML pages to *look at* a night of generation.

* ``build``: ``build_report`` (which jobs, one at a time, a page of cards at a time,
  redaction) and ``default_report_path`` (beside the downloaded videos).
* ``night``: ``Night``, the numbers of the first page, counted as the jobs go by.
* ``page``: ``Page``, one server-rendered HTML page, with ``assets/report.css`` and
  ``assets/report.js`` inlined; ``cards``: one job's card.
* ``pages``: a report of several pages (``CARDS_PER_PAGE`` cards each): their files,
  links and atomic writing.
* ``paths``: where a job's files are, and the relative URLs the pages link them with.
* ``posters``: each video's poster frame as the cards show it, and ``backfill_posters``,
  which makes and records the ones missing before a report is written.
* ``sheet``: ``write_contact_sheet``, one JPEG of the posters with ids (and scores).
* ``verdicts``: a take's review on its card (score badge, pass/flag, defects as links that
  seek the video, summary; errors and skips said plainly).
"""

from batchveo.report.build import ReportSummary, build_report, default_report_path
from batchveo.report.cards import fmt_duration, fmt_span, fmt_time
from batchveo.report.night import ATTENTION, BAR_ORDER, MAX_ATTENTION_LINKS, Night
from batchveo.report.page import COLORS, SORT_ORDER, Page
from batchveo.report.pages import CARDS_PER_PAGE, PageFiles, write_atomic
from batchveo.report.paths import locate, rel_url

__all__ = [
    "ATTENTION",
    "BAR_ORDER",
    "CARDS_PER_PAGE",
    "COLORS",
    "MAX_ATTENTION_LINKS",
    "SORT_ORDER",
    "Night",
    "Page",
    "PageFiles",
    "ReportSummary",
    "build_report",
    "default_report_path",
    "fmt_duration",
    "fmt_span",
    "fmt_time",
    "locate",
    "rel_url",
    "write_atomic",
]
