"""`factor-platform report`: data (reads), charts (figures), page (HTML), formatting (numbers as text); see page.py."""

from factor_platform.app.report.data import ReportData, load_report_data
from factor_platform.app.report.formatting import compact_money, money, pct
from factor_platform.app.report.page import render_report, write_report

__all__ = ["ReportData", "compact_money", "load_report_data", "money", "pct", "render_report", "write_report"]
