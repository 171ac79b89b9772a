"""price_panel's wide frames against pandas' own pivot of the stored rows (the oracle), on both databases:
holes, a symbol never priced, a symbol with adj_close on only some rows, a dividend payer."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from factor_platform.calc.returns import total_return_prices
from factor_platform.domain import sessions
from factor_platform.layers.panels import price_panel

SYMBOLS = ["AAA", "BBB", "CCC", "NEVER"]


def _stored(days: pd.DatetimeIndex) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = pd.DataFrame(
        [(s, d) for s in SYMBOLS[:3] for d in days if not (s == "BBB" and d in days[5:9])],
        columns=["symbol", "date"],
    )
    rows["close"] = rng.uniform(10, 20, len(rows)).round(2)
    rows["adj_close"] = rows["close"] * 0.97
    rows.loc[(rows["symbol"] == "CCC") & (rows["date"] == days[3]), "adj_close"] = np.nan  # incomplete: not used
    return rows


def _oracle(rows: pd.DataFrame, column: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    return rows.pivot(index="date", columns="symbol", values=column).reindex(index=index, columns=SYMBOLS)


def test_price_panel_equals_the_pivot_of_the_stored_rows(database):
    last = dt.date(2024, 3, 28)
    index = sessions.sessions_in_range(sessions.sessions_before(last, 29, "XNYS"), last, "XNYS")
    rows = _stored(index)
    database.upsert("prices", rows)
    dividend = pd.DataFrame({"symbol": ["CCC"], "date": [index[10]], "kind": ["dividend"], "value": [0.25]})
    database.upsert("corporate_actions", dividend)

    panel = price_panel(database, SYMBOLS, first_date=last, last_date=last, lookback_sessions=29)

    close = _oracle(rows, "close", index)
    adjusted = _oracle(rows, "adj_close", index)
    pd.testing.assert_frame_equal(panel.close, close, check_exact=True, check_names=False)
    wide_dividends = dividend.pivot_table(index="date", columns="symbol", values="value").reindex(
        index=index, columns=SYMBOLS
    )
    expected = total_return_prices(close, wide_dividends)
    expected[["AAA", "BBB"]] = adjusted[["AAA", "BBB"]]  # adj_close on every priced row
    pd.testing.assert_frame_equal(panel.prices, expected, check_exact=True, check_names=False)
    assert panel.prices["NEVER"].isna().all() and panel.prices["BBB"].iloc[5:9].isna().all()
    assert panel.prices["CCC"].iloc[10] / panel.prices["CCC"].iloc[9] != close["CCC"].iloc[10] / close["CCC"].iloc[9]
