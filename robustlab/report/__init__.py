"""Reports: shared figures (figures.py), the self-contained HTML page (html.py), provenance, browser check."""

from robustlab.report.html import render_report, write_report
from robustlab.report.provenance import provenance, write_provenance

__all__ = ["provenance", "render_report", "write_provenance", "write_report"]
