"""`factor-platform report`: data (reads), charts (figures), page (HTML); see page.py."""

from factor_platform.app.report.charts import compact_money
from factor_platform.app.report.data import ReportData, load_report_data
from factor_platform.app.report.page import money, pct, render_report, write_report

__all__ = ["ReportData", "compact_money", "load_report_data", "money", "pct", "render_report", "write_report"]
