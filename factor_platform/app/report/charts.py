"""The report's figures: matplotlib on its own Agg canvas, each returned as a base64 `data:` PNG URI.

Labels come from user files (symbols, sectors, scenario names) and are drawn as plain text, never mathtext.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DayLocator
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from factor_platform.app.report.formatting import compact_money

POSITIVE, NEGATIVE, NEUTRAL = "#2e7d32", "#c62828", "#1f5f99"


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **subplots) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas (pyplot's global backend and state are never touched)."""
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, **subplots)


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="both", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)


def _thousands(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def png(fig: Figure) -> str:
    """The figure as a `data:image/png;base64,...` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _labels(ax, positions, labels: Sequence[str]) -> None:
    # parse_math=False: a '$' in a user's sector or symbol is text, not mathtext.
    ax.set_yticks(positions, [str(label) for label in labels], parse_math=False)


def equity_chart(history: pd.DataFrame) -> str:
    dates = pd.to_datetime(history["date"]).to_numpy()
    fig, (top, bottom) = _figure(10, 4.6, 2, 1, sharex=True, height_ratios=[2, 1])
    top.plot(
        dates,
        history["equity"].to_numpy(float),
        color=NEUTRAL,
        linewidth=1.6,
        marker="o" if len(dates) <= 10 else None,
        markersize=4,
    )
    top.axhline(
        float(history["equity"].iloc[0] - history["cumulative_pnl"].iloc[0]),
        color="#999",
        linewidth=0.8,
        linestyle="--",
    )
    top.set_title("Equity (dashed: starting equity)", fontsize=9, loc="left")
    pnl = np.nan_to_num(history["daily_pnl"].to_numpy(float))
    # One LineCollection, not a Rectangle per session: years of history stay cheap to draw.
    width_points = 0.75 * fig.get_figwidth() * 72 * 0.9 / max(len(pnl), 1)
    bottom.vlines(
        dates, 0, pnl, colors=np.where(pnl >= 0, POSITIVE, NEGATIVE), linewidth=min(max(width_points, 0.6), 6)
    )
    bottom.axhline(0, color="#555", linewidth=0.6)
    bottom.set_title("Daily P&L", fontsize=9, loc="left")
    # Sessions are days: never tick hours, however short the history.
    locator = AutoDateLocator(minticks=3, maxticks=9) if len(dates) > 10 else DayLocator()
    if len(dates) <= 10:  # a lone point would otherwise widen the axis to years
        day = np.timedelta64(1, "D")
        bottom.set_xlim(dates[0] - day, dates[-1] + day)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    for ax in (top, bottom):
        _style(ax)
        _thousands(ax)
    return png(fig)


def _hbar(labels: Sequence[str], values: np.ndarray, *, title: str, formatter) -> str:
    """Horizontal bars, first label at the top, green/red by sign."""
    fig, ax = _figure(5.2, max(1.6, 0.28 * len(labels) + 0.8))
    y = np.arange(len(labels))
    ax.barh(y, values, color=np.where(values >= 0, POSITIVE, NEGATIVE), height=0.65)
    _labels(ax, y, labels)
    ax.invert_yaxis()  # first row at the top
    ax.axvline(0, color="#555", linewidth=0.6)
    ax.set_title(title, fontsize=9, loc="left")
    _style(ax)
    ax.grid(axis="y", visible=False)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: formatter(v)))
    return png(fig)


def factor_chart(factors: pd.DataFrame) -> str:
    labels = factors["factor"].tolist()
    fig, (left, right) = _figure(10, max(2.0, 0.3 * len(labels) + 0.9), 1, 2, sharey=True)
    y = np.arange(len(labels))
    for ax, column, title, fmt in (
        (left, "beta", "Beta (fraction of equity)", lambda v, _: f"{v:+.2f}"),
        (right, "exposure_dollar", "Dollar exposure", lambda v, _: compact_money(v)),
    ):
        values = factors[column].to_numpy(float)
        ax.barh(y, values, color=np.where(values >= 0, POSITIVE, NEGATIVE), height=0.65)
        ax.axvline(0, color="#555", linewidth=0.6)
        ax.set_title(title, fontsize=9, loc="left")
        ax.xaxis.set_major_formatter(FuncFormatter(fmt))
        _style(ax)
        ax.grid(axis="y", visible=False)
    _labels(left, y, labels)
    left.invert_yaxis()
    return png(fig)


def sector_chart(labels: Sequence[str], weights: np.ndarray) -> str:
    return _hbar(labels, weights, title="Net exposure / equity", formatter=lambda v: f"{v:.0%}")


def stress_chart(stress: pd.DataFrame) -> str:
    return _hbar(
        stress["scenario"].tolist(),
        stress["pnl"].to_numpy(float),
        title="Direct P&L (worst first)",
        formatter=compact_money,
    )
