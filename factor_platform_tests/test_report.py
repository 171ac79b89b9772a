"""write_report on hand-made portfolio rows (SQLite and Postgres): self-contained, complete, escaped."""

from __future__ import annotations

import base64
import datetime as dt
import html
import re

import pandas as pd
import pytest

from factor_platform.app.report import compact_money, money, pct, write_report
from factor_platform.app.report.formatting import per_share

PID = "demo_fund"
DAYS = [pd.Timestamp("2025-03-03"), pd.Timestamp("2025-03-04"), pd.Timestamp("2025-03-05")]  # Mon..Wed
EQUITY = [1_000_000.0, 1_012_345.67, 1_234_567.89]
HOSTILE_SECTOR = "<script>alert('$x^$')</script>"  # also invalid mathtext if matplotlib parsed it
FACTORS = {"market_beta": 0.95, "ir_beta": -0.12, "value": 0.31, "growth_value_spread": -0.44}
STRESS = {"Equity -20%": -190_000.0, "Rates +100bp & <b>bold</b>": 12_000.0, "2008 GFC": -480_000.0}
POSITIONS = [
    # position_id, symbol, type, class, qty, sector, exposure on the last day
    ("p1", "AAPL", "LONG", "PUBLIC", 1000, HOSTILE_SECTOR, 600_000.0),
    ("p2", "TSLA", "SHORT", "PUBLIC", 500, None, -250_000.0),
    ("p3", "AAPL250620C00200000", "LC", "OPTIONS", 10, None, 95_000.0),
]


def seed(db) -> None:
    db.upsert(
        "portfolios",
        pd.DataFrame(
            [{"portfolio_id": PID, "name": "Demo & Co fund", "starting_equity": 1_000_000.0, "inception_date": DAYS[0]}]
        ),
    )
    db.upsert(
        "portfolios",
        pd.DataFrame(
            [{"portfolio_id": "empty_fund", "name": "Empty", "starting_equity": 1.0, "inception_date": DAYS[0]}]
        ),
    )
    db.upsert(
        "positions",
        pd.DataFrame(
            [
                {
                    "position_id": pid,
                    "portfolio_id": PID,
                    "symbol": sym,
                    "position_type": ptype,
                    "investment_class": cls,
                    "quantity": qty,
                    "entry_price": 100.0,
                    "entry_date": DAYS[0],
                    "sector": sector,
                    **(
                        {
                            "underlying": "AAPL",
                            "strike": 200.0,
                            "expiration": pd.Timestamp("2025-06-20"),
                            "option_type": "CALL",
                        }
                        if cls == "OPTIONS"
                        else {}
                    ),
                }
                for pid, sym, ptype, cls, qty, sector, _ in POSITIONS
            ]
        ),
    )
    db.upsert(
        "company_profiles",
        pd.DataFrame(
            [
                {"symbol": "TSLA", "name": "Tesla", "sector": "Consumer Discretionary"},
                {"symbol": "AAPL", "name": "Apple", "sector": "Information Technology"},
            ]
        ),
    )
    snaps = []
    for i, (day, equity) in enumerate(zip(DAYS, EQUITY)):
        prev = EQUITY[i - 1] if i else 1_000_000.0
        snaps.append(
            {
                "portfolio_id": PID,
                "date": day,
                "equity": equity,
                "cash": equity - 445_000.0,
                "long_exposure": 695_000.0,
                "short_exposure": -250_000.0,
                "gross_exposure": 945_000.0,
                "net_exposure": 445_000.0,
                "daily_pnl": equity - prev,
                "daily_return": equity / prev - 1,
                "cumulative_pnl": equity - 1_000_000.0,
                "n_positions": 3,
                "is_complete": i != 1,
            }
        )
    db.upsert("portfolio_snapshots", pd.DataFrame(snaps))
    rows = lambda table, records: db.upsert(table, pd.DataFrame([{"portfolio_id": PID, **r} for r in records]))  # noqa: E731
    for day, scale in zip(DAYS, (1.0, 2.0, 3.0)):
        rows(
            "portfolio_factor_exposures",
            [
                {"date": day, "factor": f, "beta": b * scale, "exposure_dollar": b * scale * 1e6}
                for f, b in FACTORS.items()
            ],
        )
        rows(
            "stress_results",
            [{"date": day, "scenario": s, "pnl": p * scale, "pnl_pct": p * scale / 1e6} for s, p in STRESS.items()],
        )
    last = DAYS[-1]
    rows(
        "portfolio_sector_weights",
        [
            {"date": last, "sector": HOSTILE_SECTOR, "weight": 0.49},
            {"date": last, "sector": "Consumer Discretionary", "weight": -0.2},
        ],
    )
    rows(
        "portfolio_risk",
        [
            {
                "date": last,
                "volatility_21d": 0.1834,
                "volatility_63d": 0.17,
                "volatility_forecast": 0.19,
                "hhi": 0.4,
                "effective_n": 2.5,
                "top3_weight": 1.0,
                "top10_weight": 1.0,
            }
        ],
    )
    rows(
        "portfolio_correlations",
        [
            {"date": last, "symbol_a": "AAPL", "symbol_b": "MSFT", "rho": 0.91, "cluster": 1},
            {"date": last, "symbol_a": "AAPL", "symbol_b": "NVDA", "rho": 0.75, "cluster": 1},
            {"date": last, "symbol_a": "MSFT", "symbol_b": "TSLA", "rho": -0.83, "cluster": 2},
            {"date": last, "symbol_a": "NVDA", "symbol_b": "TSLA", "rho": 0.12, "cluster": None},
        ],
    )
    rows(
        "position_values",
        [
            {
                "date": last,
                "position_id": pid,
                "price": abs(exposure) / qty if cls != "OPTIONS" else 12.5,
                "market_value": exposure if cls != "OPTIONS" else 12_500.0,
                "exposure": exposure,
                "delta": 0.62 if cls == "OPTIONS" else 1.0,
                "price_source": "model" if cls == "OPTIONS" else "market",
            }
            for pid, _, _, cls, qty, _, exposure in POSITIONS
        ],
    )


def test_report_is_self_contained_complete_and_escaped(database, tmp_path, monkeypatch):
    seed(database)
    monkeypatch.chdir(tmp_path)
    path = write_report(database, portfolio_id=PID)

    assert path == tmp_path / f"report-{PID}-2025-03-05.html"
    text = path.read_text(encoding="utf-8")
    # Self-contained: no URL at all, every image an embedded PNG.
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?!data:)[a-z]+:""", text, re.I)
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == 4  # equity + P&L, factors, sectors, stress
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    # Figures, formatted.
    assert "1,234,568" in text and "+234,568" in text  # equity, cumulative P&L
    assert "+222,222" in text and "+21.95%" in text  # daily P&L and return
    assert "945,000" in text and "+445,000" in text  # gross, net
    assert "18.3%" in text  # volatility_21d
    assert "Demo &amp; Co fund" in text and "INCOMPLETE" not in text and "1 of 3 sessions incomplete" in text
    for factor, beta in FACTORS.items():
        assert f"<td>{factor}</td>" in text
        assert f"{beta * 3:+.3f}" in text
    # Stress: every scenario, escaped, worst first.
    positions = {name: text.index(f"<td>{html.escape(name)}</td>") for name in STRESS}
    assert sorted(positions, key=positions.get) == sorted(STRESS, key=STRESS.get)
    # Correlations: clusters and top pairs.
    assert "Cluster 1" in text and "Cluster 2" in text and "+0.910" in text and "-0.830" in text
    # Positions: symbol, type, delta, price source; the option's sector is its underlying's profile.
    for needle in ("AAPL250620C00200000", "<td>LC</td>", "0.620", "<td>model</td>", "Consumer Discretionary"):
        assert needle in text
    # Escaping: user text never becomes markup.
    assert "<script" not in text.lower() and "<b>" not in text
    assert "&lt;script&gt;alert(&#x27;$x^$&#x27;)&lt;/script&gt;" in text
    assert "Rates +100bp &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "No splits or dividends of the holdings in the last year." in text


def test_report_as_of_a_day_and_errors(database, tmp_path):
    seed(database)
    # A Saturday: as of the latest snapshot on or before it; nothing later is shown.
    path = write_report(database, portfolio_id=PID, day=dt.date(2025, 3, 4), output=tmp_path / "sub" / "r.html")
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "sub" / "r.html"
    assert "as of 2025-03-04" in text and "1,012,346" in text and "1,234,567" not in text
    assert "INCOMPLETE" in text
    assert f"{FACTORS['market_beta'] * 2:+.3f}" in text  # the factor rows of that day
    assert "No sector weights on 2025-03-04" in text and "No open positions on 2025-03-04" in text

    into_dir = write_report(database, portfolio_id=PID, day="2025-03-08", output=tmp_path)
    assert into_dir == tmp_path / f"report-{PID}-2025-03-05.html"

    with pytest.raises(ValueError, match=r"unknown portfolio 'nope' \(known portfolios: demo_fund, empty_fund\)"):
        write_report(database, portfolio_id="nope", output=tmp_path / "x.html")
    with pytest.raises(ValueError, match="'empty_fund' has no snapshots"):
        write_report(database, portfolio_id="empty_fund", output=tmp_path / "x.html")
    with pytest.raises(ValueError, match="no snapshots on or before 2025-03-01"):
        write_report(database, portfolio_id=PID, day=dt.date(2025, 3, 1), output=tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_formatting():
    assert money(1234567.891) == "1,234,568"
    assert money(-1234.4, signed=True) == "-1,234" and money(1234.4, signed=True) == "+1,234"
    assert money(-0.2, signed=True) == "0" and money(float("nan")) == "\u2014" and money(None) == "\u2014"
    assert pct(0.0123, signed=True) == "+1.23%" and pct(-0.5, digits=0) == "-50%" and pct(pd.NA) == "\u2014"
    assert compact_money(1_500_000) == "+1.5M" and compact_money(-200_000) == "-200k" and compact_money(0) == "0"
    assert per_share(0.52) == "$0.52" and per_share(0.2425) == "$0.2425" and per_share(3) == "$3.00"


def test_report_lists_the_holdings_corporate_actions(database, tmp_path):
    seed(database)
    database.upsert(
        "corporate_actions",
        pd.DataFrame(
            [
                {"symbol": "AAPL", "date": DAYS[1], "kind": "split", "value": 4.0, "source": "csv"},
                {"symbol": "TSLA", "date": DAYS[2], "kind": "dividend", "value": 0.52, "source": "csv"},
                {"symbol": "TSLA", "date": DAYS[0], "kind": "split", "value": 0.1, "source": "<i>vendor</i>"},
                {"symbol": "ZZZZ", "date": DAYS[2], "kind": "dividend", "value": 9.0, "source": "csv"},  # not held
                {
                    "symbol": "AAPL",
                    "date": pd.Timestamp("2024-03-05"),
                    "kind": "dividend",
                    "value": 0.24,
                    "source": "csv",
                },  # more than a year before the report day
            ]
        ),
    )
    text = write_report(database, portfolio_id=PID, output=tmp_path / "r.html").read_text(encoding="utf-8")
    section = text[text.index("<h2>Corporate actions</h2>") :]
    section = section[: section.index("</section>")]
    assert "<td>2025-03-04</td><td>AAPL</td><td>4:1 split</td>" in section
    assert "<td>2025-03-05</td><td>TSLA</td><td>dividend $0.52</td>" in section
    assert "<td>1:10 reverse split</td>" in section and "&lt;i&gt;vendor&lt;/i&gt;" in section
    assert "ZZZZ" not in section and "$0.24" not in section
    dates = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>", section)
    assert dates == sorted(dates, reverse=True) and len(dates) == 3  # newest first
