"""price_source(spec): the contract's FACTOR_PLATFORM_PRICE_SOURCE values, and the one interface."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import factor_platform.sources as sources
from factor_platform.sources import (
    CsvPriceSource,
    FetchResult,
    PriceSource,
    SampleSource,
    YFinanceSource,
    price_source,
)


def test_specs_build_their_sources(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("date,symbol,close\n2024-01-02,SPY,472.65\n")
    built = {
        "sample": price_source("sample"),
        "yfinance": price_source(" yfinance "),
        "csv": price_source(f"csv:{path}", calendar="XNYS"),
    }
    assert isinstance(built["sample"], SampleSource)
    assert isinstance(built["yfinance"], YFinanceSource)
    assert isinstance(built["csv"], CsvPriceSource) and built["csv"].path == path
    for name, source in built.items():
        assert source.name == name and isinstance(source, PriceSource)
    assert price_source("sample", calendar="XLON").calendar == "XLON"


@pytest.mark.parametrize("spec", ["bogus", "Sample", "csv:", "csv: ", "yahoo", "", "sample:x"])
def test_unknown_specs_are_refused_by_name(spec):
    with pytest.raises(ValueError) as info:
        price_source(spec)
    assert repr(spec) in str(info.value)


def test_every_source_answers_with_fetch_results(tmp_path):
    source = price_source("sample")
    for result in (
        source.fetch_prices(["SPY"], "2024-01-02", "2024-01-02"),
        source.fetch_profiles(["SPY"]),
        source.fetch_fundamentals(["AAPL"]),
    ):
        assert isinstance(result, FetchResult) and isinstance(result.failures, dict)


def test_sources_import_neither_dagster_nor_sqlalchemy():
    folder = Path(sources.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in {"dagster", "sqlalchemy"}, f"{path.name} imports {name}"
