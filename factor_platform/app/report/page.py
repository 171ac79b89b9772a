"""`factor-platform report`: one portfolio as of one session, as a self-contained HTML file.

Everything is read from the analytics tables the portfolio layer wrote (nothing is recomputed here);
the file has no external reference at all — charts are PNGs drawn by matplotlib's Agg canvas and
embedded as base64 `data:` URIs, the CSS is inline, and a Content-Security-Policy forbids any fetch —
so it can be mailed, archived or opened offline. Every string from the data (symbols, sectors, scenario
names, the portfolio's name) is HTML-escaped: they come from user files.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from factor_platform.app.report.charts import equity_chart, factor_chart, sector_chart, stress_chart
from factor_platform.app.report.data import ReportData, correlation_clusters, load_report_data, ordered_factors
from factor_platform.app.report.formatting import DASH, finite, money, number, pct, per_share, quantity
from factor_platform.storage import Database

TOP_PAIRS = 10  # correlation pairs listed, by |rho|


# ---------------------------------------------------------------------------------------------- html
def _sign_class(x: Any) -> str:
    """The CSS class that colours a figure by its sign."""
    if not finite(x) or float(x) == 0:
        return ""
    return "pos" if float(x) > 0 else "neg"


def esc(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return html.escape(str(value), quote=True)


# A cell is text, or (text, css class). Text is escaped here, once.
Cell = str | tuple[str, str]


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, numeric: Iterable[int] = (), css: str = "") -> str:
    numeric = set(numeric)
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text, klass = cell if isinstance(cell, tuple) else (cell, "")
            classes = " ".join(c for c in (("num" if i in numeric else ""), klass) if c)
            cells.append(f'<td class="{classes}">{esc(text)}</td>' if classes else f"<td>{esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def signed_cell(text: str, x: Any) -> Cell:
    return (text, _sign_class(x))


CSS = """
:root { --ink:#1d2330; --muted:#667085; --line:#e4e7ec; --pos:#2e7d32; --neg:#c62828; --bg:#f7f8fa; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { margin: 0 0 2px; font-size: 24px; }
header .sub { color: var(--muted); margin: 0 0 18px; }
h2 { font-size: 16px; margin: 0 0 10px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin: 14px 0; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px;
         background: none; border: 0; padding: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 21px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
.grid2 > section { margin: 0; }
@media (max-width: 900px) { .grid2, .cards { grid-template-columns: 1fr 1fr; } }
img.chart { display: block; max-width: 100%; height: auto; margin: 0 auto 8px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; background: #fafbfc; }
td.num, th.num { text-align: right; white-space: nowrap; }
tbody tr:hover { background: #f5f8ff; }
.pos { color: var(--pos); } .neg { color: var(--neg); }
.ok { color: var(--pos); } .warn { color: var(--neg); font-weight: 600; }
.empty, .muted { color: var(--muted); }
.cluster { margin: 4px 0; }
.chip { display: inline-block; background: #eef2f8; border-radius: 10px; padding: 0 8px; margin: 2px 3px 2px 0; font-size: 12px; }
footer { color: var(--muted); font-size: 12px; margin-top: 18px; }
"""
# The report may not fetch anything: images are data: URIs, CSS is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _card(label: str, value: str, note: str = "", klass: str = "") -> str:
    value_class = f"value {klass}".strip()
    note_html = f'<div class="note">{esc(note)}</div>' if note else ""
    return f'<div class="card"><div class="label">{esc(label)}</div><div class="{value_class}">{esc(value)}</div>{note_html}</div>'


def _cards(data: ReportData) -> str:
    s = data.snapshot
    equity = float(s["equity"])
    starting = data.portfolio.get("starting_equity")
    cumulative_return = float(s["cumulative_pnl"]) / float(starting) if finite(starting) and float(starting) else None
    incomplete_days = int((~data.history["is_complete"].astype(bool)).sum())
    complete = bool(s["is_complete"])
    completeness_note = (
        f"{incomplete_days} of {len(data.history)} sessions incomplete since inception"
        if incomplete_days
        else f"all {len(data.history)} sessions since inception complete"
    )
    ratio = (lambda x: f"{pct(float(x) / equity, digits=1)} of equity") if equity else (lambda x: "")
    return "".join(
        [
            _card("Equity", money(equity), f"starting {money(starting)}"),
            _card(
                "Cumulative P&L",
                money(s["cumulative_pnl"], signed=True),
                f"{pct(cumulative_return, signed=True)} since inception",
                _sign_class(s["cumulative_pnl"]),
            ),
            _card(
                "Daily P&L",
                money(s["daily_pnl"], signed=True),
                f"{pct(s['daily_return'], signed=True)} return",
                _sign_class(s["daily_pnl"]),
            ),
            _card("Gross exposure", money(s["gross_exposure"]), ratio(s["gross_exposure"])),
            _card("Net exposure", money(s["net_exposure"], signed=True), ratio(s["net_exposure"])),
            _card(
                "Long / short",
                f"{money(s['long_exposure'])} / {money(s['short_exposure'])}",
                f"cash {money(s['cash'], signed=True)}",
            ),
            _card("Positions", f"{int(s['n_positions']):,}" if finite(s["n_positions"]) else DASH),
            _card(
                "Completeness",
                "complete" if complete else "INCOMPLETE",
                completeness_note,
                "ok" if complete else "warn",
            ),
        ]
    )


def _empty(what: str, day: dt.date) -> str:
    return f'<p class="empty">No {esc(what)} on {day}.</p>'


def _factor_section(data: ReportData) -> str:
    if data.factors.empty:
        return f"<section><h2>Factor exposures</h2>{_empty('factor exposures', data.day)}</section>"
    factors = ordered_factors(data.factors, data.factor_order)
    rows = [
        (
            r.factor,
            signed_cell(number(r.beta, digits=3, signed=True), r.beta),
            signed_cell(money(r.exposure_dollar, signed=True), r.exposure_dollar),
        )
        for r in factors.itertuples()
    ]
    return (
        "<section><h2>Factor exposures</h2>"
        f'<img class="chart" alt="factor exposures" src="{factor_chart(factors)}">'
        + table(["Factor", "Beta", "Exposure $"], rows, numeric=[1, 2])
        + "</section>"
    )


def _sector_section(data: ReportData) -> str:
    if data.sectors.empty:
        return f"<section><h2>Sector weights</h2>{_empty('sector weights', data.day)}</section>"
    sectors = data.sectors
    labels = [s if isinstance(s, str) else "(unknown)" for s in sectors["sector"]]
    chart = sector_chart(labels, sectors["weight"].to_numpy(float))
    rows = [(label, signed_cell(pct(w, signed=True, digits=1), w)) for label, w in zip(labels, sectors["weight"])]
    return (
        f'<section><h2>Sector weights</h2><img class="chart" alt="sector weights" src="{chart}">'
        + table(["Sector", "Weight"], rows, numeric=[1])
        + "</section>"
    )


def _stress_section(data: ReportData) -> str:
    if data.stress.empty:
        return f"<section><h2>Stress tests</h2>{_empty('stress results', data.day)}</section>"
    stress = data.stress  # worst first
    chart = stress_chart(stress)
    rows = [
        (
            r.scenario,
            data.scenario_descriptions.get(r.scenario, ""),
            signed_cell(money(r.pnl, signed=True), r.pnl),
            signed_cell(pct(r.pnl_pct, signed=True, digits=1), r.pnl_pct),
        )
        for r in stress.itertuples()
    ]
    return (
        '<section><h2>Stress tests</h2><div class="grid2"><div>'
        f'<img class="chart" alt="stress results" src="{chart}"></div><div>'
        + table(["Scenario", "Description", "P&L", "% equity"], rows, numeric=[2, 3])
        + "</div></div></section>"
    )


def _risk_section(data: ReportData) -> str:
    if data.risk.empty:
        return f"<section><h2>Risk</h2>{_empty('risk figures', data.day)}</section>"
    r = data.risk.iloc[0]
    rows = [
        ("Volatility, 21 sessions (annualized)", pct(r["volatility_21d"], digits=1)),
        ("Volatility, 63 sessions (annualized)", pct(r["volatility_63d"], digits=1)),
        ("Volatility forecast, EWMA \u03bb=0.94 (annualized)", pct(r["volatility_forecast"], digits=1)),
        ("Concentration HHI (|exposure| weights)", number(r["hhi"], digits=3)),
        ("Effective number of positions", number(r["effective_n"], digits=1)),
        ("Top 3 weight", pct(r["top3_weight"], digits=1)),
        ("Top 10 weight", pct(r["top10_weight"], digits=1)),
    ]
    return "<section><h2>Risk</h2>" + table(["Measure", "Value"], rows, numeric=[1]) + "</section>"


def _correlation_section(data: ReportData) -> str:
    corr = data.correlations
    if corr.empty:
        return f"<section><h2>Correlations</h2>{_empty('correlations', data.day)}</section>"
    clusters = correlation_clusters(corr)
    if clusters:
        items = "".join(
            f'<div class="cluster"><strong>Cluster {cid}</strong> <span class="muted">({len(symbols)} symbols, '
            f"mean \u03c1 {number(mean_rho, digits=2)})</span>: "
            + "".join(f'<span class="chip">{esc(s)}</span>' for s in symbols)
            + "</div>"
            for cid, symbols, mean_rho in clusters
        )
    else:
        items = '<p class="empty">No cluster: no pair of holdings has |\u03c1| \u2265 0.7.</p>'
    top = corr.reindex(corr["rho"].abs().sort_values(ascending=False, kind="mergesort").index).head(TOP_PAIRS)
    rows = [
        (
            r.symbol_a,
            r.symbol_b,
            signed_cell(number(r.rho, digits=3, signed=True), r.rho),
            DASH if pd.isna(r.cluster) else str(int(r.cluster)),
        )
        for r in top.itertuples()
    ]
    return (
        "<section><h2>Correlation clusters</h2>"
        '<p class="muted">Pearson correlation of daily log returns over the last 90 sessions between public holdings; '
        "a cluster is a connected group of pairs with |\u03c1| \u2265 0.7.</p>"
        + items
        + f"<h3>Top {len(top)} pairs by |\u03c1| (of {len(corr)})</h3>"
        + table(["Symbol A", "Symbol B", "\u03c1", "Cluster"], rows, numeric=[2])
        + "</section>"
    )


def _action_text(kind: str, value: float) -> str:
    """'4:1 split', '1:10 reverse split', 'dividend $0.52' (a split's value is new shares per old share)."""
    if kind == "dividend":
        return f"dividend {per_share(value)}"
    if not finite(value) or value <= 0:
        return f"split ({value})"
    return f"{value:g}:1 split" if value >= 1 else f"1:{round(1 / value, 4):g} reverse split"


def _actions_section(data: ReportData) -> str:
    """Splits and dividends of the holdings in the last year: why a quantity, a price or a day's P&L jumped."""
    actions = data.corporate_actions
    if actions.empty:
        return (
            "<section><h2>Corporate actions</h2>"
            '<p class="empty">No splits or dividends of the holdings in the last year.</p></section>'
        )
    rows = [
        (f"{pd.Timestamp(r.date):%Y-%m-%d}", r.symbol, _action_text(r.kind, float(r.value)), r.source)
        for r in actions.itertuples()
    ]
    return "<section><h2>Corporate actions</h2>" + table(["Date", "Symbol", "Action", "Source"], rows) + "</section>"


def _positions_section(data: ReportData) -> str:
    held = data.positions
    if held.empty:
        return f"<section><h2>Positions</h2>{_empty('open positions', data.day)}</section>"
    equity = float(data.snapshot["equity"])
    rows = []
    for r in held.itertuples():
        weight = r.exposure / equity if equity and finite(r.exposure) else None
        rows.append(
            (
                r.symbol,
                r.position_type,
                r.investment_class,
                r.sector_shown if isinstance(r.sector_shown, str) else DASH,
                quantity(r.quantity),
                number(r.price, digits=2),
                signed_cell(money(r.market_value, signed=True), r.market_value),
                signed_cell(money(r.exposure, signed=True), r.exposure),
                pct(weight, signed=True, digits=1),
                number(r.delta, digits=3),
                r.price_source,
            )
        )
    return (
        f"<section><h2>Positions ({len(held)})</h2>"
        + table(
            [
                "Symbol",
                "Type",
                "Class",
                "Sector",
                "Quantity",
                "Price",
                "Market value",
                "Exposure",
                "% equity",
                "Delta",
                "Price source",
            ],
            rows,
            numeric=[4, 5, 6, 7, 8, 9],
        )
        + '<p class="muted">Exposure is delta-adjusted for options (contracts \u00d7 100 \u00d7 delta \u00d7 underlying). '
        "Sorted by |exposure|.</p></section>"
    )


def render_report(data: ReportData, *, generated: dt.datetime | None = None) -> str:
    """The report's HTML (a complete document, no external reference)."""
    p = data.portfolio
    pid, name = str(p["portfolio_id"]), p.get("name")
    title = name if isinstance(name, str) and name else pid
    inception = pd.Timestamp(p["inception_date"]).date() if pd.notna(p.get("inception_date")) else None
    generated = generated or dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    history = data.history
    subtitle = (
        f"{pid} \u00b7 as of {data.day}"
        + (f" \u00b7 inception {inception}" if inception else "")
        + f" \u00b7 {len(history)} sessions"
    )
    body = [
        f'<header><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p></header>',
        f'<section class="cards">{_cards(data)}</section>',
        "<section><h2>Equity and daily P&amp;L since inception</h2>"
        f'<img class="chart" alt="equity curve and daily P&amp;L" src="{equity_chart(history)}"></section>',
        _factor_section(data),
        f'<div class="grid2">{_sector_section(data)}{_risk_section(data)}</div>',
        _stress_section(data),
        _correlation_section(data),
        _positions_section(data),
        _actions_section(data),
        f"<footer>Generated {generated:%Y-%m-%d %H:%M} UTC by factor_platform from the analytics tables "
        "(portfolio_snapshots, portfolio_factor_exposures, portfolio_sector_weights, stress_results, portfolio_risk, "
        "portfolio_correlations, position_values, positions, corporate_actions).</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} \u2014 portfolio report {data.day}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def default_output(portfolio_id: str, day: dt.date) -> Path:
    """report-<portfolio>-<date>.html in the current directory (unsafe filename characters -> _)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", portfolio_id).lstrip(".") or "portfolio"
    return Path.cwd() / f"report-{safe}-{day.isoformat()}.html"


def write_report(
    db: Database, *, portfolio_id: str, day: dt.date | str | None = None, output: str | Path | None = None
) -> Path:
    """Write the HTML report of `portfolio_id` as of `day` (default: its latest snapshot); return its path.

    `output` may be a file or an existing directory (the default file name is used inside it).
    Raises ValueError for an unknown portfolio or one without snapshots on or before `day`.
    """
    data = load_report_data(db, portfolio_id, day)
    if output is None:
        path = default_output(portfolio_id, data.day)
    else:
        path = Path(output)
        if path.is_dir() or str(output).endswith(("/", os.sep)):
            path = path / default_output(portfolio_id, data.day).name
    document = render_report(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)  # never leave a half-written report behind
    return path
