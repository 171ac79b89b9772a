"""A layer run's failures, per symbol: one bad symbol never stops the run, and each outcome is settled.

The asset records a failure in `symbol_failures` (storage.failure_rows), the next run retries it, a success closes it,
and after FACTOR_PLATFORM_MAX_ATTEMPTS failed fetches a symbol is marked `skipped` (delisted or
unknown to the source) and no longer fetched until an operator clears the row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import pandas as pd

from factor_platform.domain import sessions
from factor_platform.sources.base import FetchResult, empty_frame
from factor_platform.storage import Database

FAILURE_COLUMNS = ["symbol", "stage", "date", "error"]


def fetch_isolated(
    fetch: Callable[..., FetchResult], symbols: Sequence[str], *args, columns: Sequence[str]
) -> FetchResult:
    """``fetch(symbols, *args)`` with an exception confined to the symbols that raise it.

    A source that raises for a whole request (a client that chokes on one ticker, a rate limit)
    would otherwise fail every symbol of the run: the request is split in halves until each
    raising symbol is alone, and that symbol becomes a failure ``"<ExceptionType>: <message>"``.
    """
    symbols = list(symbols)
    try:
        return fetch(symbols, *args)
    except Exception as exc:  # noqa: BLE001 -- any source error is that symbol's failure, never the run's
        if len(symbols) == 1:
            return FetchResult(empty_frame(columns), {symbols[0]: f"{type(exc).__name__}: {exc}"})
    mid = len(symbols) // 2
    parts = [fetch_isolated(fetch, half, *args, columns=columns) for half in (symbols[:mid], symbols[mid:])]
    frames = [p.frame for p in parts if len(p.frame)]
    frame = pd.concat(frames, ignore_index=True) if frames else empty_frame(columns)
    return FetchResult(frame, {**parts[0].failures, **parts[1].failures})


def price_gaps(
    frame: pd.DataFrame, symbols: Sequence[str], first: dt.date, last: dt.date, calendar: str
) -> dict[str, str]:
    """{symbol: why} for requested symbols whose prices in [first, last] are absent, stop before `last`,
    or skip sessions (holes).

    A source that silently returns nothing, a hole, or stops short, for a symbol is a failure like any
    other: recorded, retried on the next run (which fills the hole and invalidates what read around it).
    Sessions before a symbol's first row are not missing (not yet listed) -- unless the frame holds
    earlier rows of the symbol (the fetch's overlap), which show it was listed.
    """
    days = sessions.sessions_in_range(first, last, calendar)
    if not len(days):
        return {}
    rows = frame.loc[frame["symbol"].isin(list(symbols))] if len(frame) else frame
    by_symbol = {s: pd.DatetimeIndex(d) for s, d in rows.groupby("symbol")["date"]} if len(rows) else {}
    gaps = {}
    for symbol in symbols:
        dates = by_symbol.get(symbol)
        inside = dates[(dates >= days[0]) & (dates <= days[-1])] if dates is not None else None
        if inside is None or not len(inside):
            gaps[symbol] = f"the source returned no prices for {symbol} between {first} and {last}"
            continue
        listed = days[0] if dates.min() < days[0] else inside.min()
        missing = days[(days >= listed) & ~days.isin(inside)]
        if not len(missing):
            continue
        if missing[0] > inside.max():
            gaps[symbol] = (
                f"the source returned no prices for {symbol} after {inside.max().date()}: "
                f"{len(missing)} session(s) missing up to {last}"
            )
        else:
            shown = ", ".join(f"{d:%Y-%m-%d}" for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
            gaps[symbol] = f"the source returned no prices for {symbol} on {len(missing)} session(s): {shown}"
    return gaps


def failure_frame(errors: dict[str, str], stage: str, day: dt.date) -> pd.DataFrame:
    return pd.DataFrame(
        [(symbol, stage, pd.Timestamp(day), error) for symbol, error in sorted(errors.items())],
        columns=FAILURE_COLUMNS,
    )


def settle_failures(
    db: Database,
    conn,
    *,
    stage: str | None,
    succeeded: list[str] | pd.DataFrame,
    failed: pd.DataFrame,
    limit: int | None = None,
) -> list[str]:
    """Record `failed`, close the failures of `succeeded`; return symbols newly marked skipped.

    `succeeded` is a list of symbols of `stage`, or a frame of (symbol, stage) pairs, optionally
    with the `date` of the pair's latest success: a failure of an earlier date is then closed too
    (a factor that lacked history on its first sessions and succeeds on later ones).
    """
    if not isinstance(succeeded, pd.DataFrame):
        succeeded = pd.DataFrame({"symbol": list(succeeded), "stage": stage})
    if "date" in succeeded and len(failed) and len(succeeded):
        ok_dates = succeeded[["symbol", "stage", "date"]].rename(columns={"date": "ok_date"})
        merged = failed.merge(ok_dates, on=["symbol", "stage"], how="left")
        failed = failed.loc[~(merged["ok_date"].notna() & (merged["ok_date"] > merged["date"])).to_numpy()]
        still = pd.MultiIndex.from_frame(failed[["symbol", "stage"]])
        succeeded = succeeded.loc[~pd.MultiIndex.from_frame(succeeded[["symbol", "stage"]]).isin(still)]
    if "date" in succeeded and len(succeeded):  # a stored failure of a later date than this success stays open
        stored = db.read(
            "symbol_failures",
            {"symbol": sorted(set(succeeded["symbol"]))},
            columns=["symbol", "stage", "date"],
            conn=conn,
        )
        merged = succeeded.merge(stored.rename(columns={"date": "failed_date"}), on=["symbol", "stage"], how="left")
        succeeded = succeeded.loc[~(merged["failed_date"] > merged["date"]).to_numpy()]
    if len(succeeded):
        db.clear_failures(succeeded[["symbol", "stage"]], conn=conn)
    if not len(failed):
        return []
    db.record_failures(failed[FAILURE_COLUMNS], conn=conn)
    if limit is None or stage is None:
        return []
    rows = db.read("symbol_failures", {"symbol": sorted(failed["symbol"]), "stage": stage}, conn=conn)
    exhausted = rows[(rows["attempts"] >= limit) & (rows["status"] != "skipped")]["symbol"].tolist()
    if exhausted:
        db.mark_skipped(exhausted, stage, conn=conn)
    return exhausted
