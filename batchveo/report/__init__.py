"""The morning report: one self-contained HTML page to *look at* a night of generation.

* ``build``: ``build_report`` (which jobs, redaction, the atomic write) and
  ``default_report_path`` (beside the downloaded videos).
* ``page``: ``Page``, the server-rendered HTML, with ``assets/report.css`` and
  ``assets/report.js`` inlined.
* ``paths``: where a job's files are, and the relative URLs the page links them with.
"""

from batchveo.report.build import ReportSummary, build_report, default_report_path, write_atomic
from batchveo.report.page import (
    ATTENTION,
    BAR_ORDER,
    COLORS,
    SORT_ORDER,
    Page,
    fmt_duration,
    fmt_span,
    fmt_time,
)
from batchveo.report.paths import locate, rel_url

__all__ = [
    "ATTENTION",
    "BAR_ORDER",
    "COLORS",
    "SORT_ORDER",
    "Page",
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
