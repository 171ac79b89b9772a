"""Bad positions files, portfolio ids and equities through the real CLI, into a real database.

Property: whatever is wrong, ``factor-platform portfolio import`` exits 2, names the row and the
field, and writes NOTHING -- a byte image of every table (timestamps included) is identical before
and after. The database already holds portfolios (the one being re-imported among them), so a
bad re-import that clobbered them would show. (The parser alone is fuzzed in test_positions_csv.py;
this goes through ``factor_platform.app.cli.main`` and the database.)
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factor_platform.app import cli
from factor_platform.layers.books import import_portfolio
from factor_platform_tests.reliability import processes
from factor_platform_tests.reliability.support import LEDGER, dump_text

COLUMNS = [
    "symbol",
    "quantity",
    "position_type",
    "investment_class",
    "entry_price",
    "entry_date",
    "exit_date",
    "exit_price",
    "underlying",
    "strike",
    "expiration",
    "option_type",
    "manual_market_value",
    "sector",
]
GOOD_ROWS = [
    {
        "symbol": "AAPL",
        "quantity": "100",
        "position_type": "LONG",
        "investment_class": "PUBLIC",
        "entry_price": "185.5",
        "entry_date": "2024-01-02",
    },
    {
        "symbol": "MSFT",
        "quantity": "40",
        "position_type": "SHORT",
        "investment_class": "PUBLIC",
        "entry_price": "370",
        "entry_date": "2024-01-02",
        "exit_date": "2024-02-01",
        "exit_price": "400",
        "sector": "Tech",
    },
    {
        "symbol": "AAPL240315C00190000",
        "quantity": "2",
        "position_type": "LC",
        "investment_class": "OPTIONS",
        "entry_price": "5.2",
        "entry_date": "2024-01-03",
        "underlying": "AAPL",
        "strike": "190",
        "expiration": "2024-03-15",
        "option_type": "CALL",
    },
    {
        "symbol": "ACME_PRIVATE",
        "quantity": "1000",
        "position_type": "LONG",
        "investment_class": "PRIVATE",
        "entry_price": "150",
        "entry_date": "2024-01-02",
        "manual_market_value": "180000",
    },
]
ROW_OF = {"public": 0, "public_closed": 1, "option": 2, "private": 3}
TODAY = dt.date.today()
INJECTIONS = [
    "'; DROP TABLE positions; --",
    "AAPL'--",
    'A"B',
    "A B",
    "A|B",
    "A,B",
    "Robert'); DROP TABLE portfolios;--",
    "1 OR 1=1",
    "AAPL;DELETE FROM prices",
    "ÄPPLE",
    "苹果",
    "AAPL\u200b",
    "A\tB",
    "%s",
    "{0}",
    "A\\B",
    "A/B",
    "..",
    "-AAPL",
    "A" * 33,
    "NUL\x00X",
    "AAPL\nMSFT",
]


# ------------------------------------------------------------------------------- bad values
def _iso(day: dt.date) -> str:
    return day.isoformat()


_not_a_number = st.sampled_from(
    [
        "abc",
        "1,000",
        "$5",
        "1_000",
        "0x10",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e400",
        "١٢",
        "12abc",
        "--1",
        "1.2.3",
        "½",
        "1e16",
        "-1e16",
        "true",
    ]
)
_negative = st.floats(min_value=-1e12, max_value=-1e-6, allow_nan=False).map(repr)
_zero = st.sampled_from(["0", "0.0", "-0", "0e5", "-0.000"])
_malformed_date = st.sampled_from(
    [
        "01/02/2024",
        "2024/01/02",
        "20240102",
        "2024-1-2",
        "2024-13-01",
        "2024-02-30",
        "2023-02-29",
        "02-01-2024",
        "yesterday",
        "2024-01-02T00:00",
        "2024-01-0２",
        "0000-01-01",
        "9999-99-99",
    ]
)
_bad_date = st.one_of(
    _malformed_date,
    st.dates(max_value=dt.date(1989, 12, 31)).map(_iso),  # before the earliest entry date
    st.dates(min_value=TODAY + dt.timedelta(days=1), max_value=dt.date(9999, 12, 31)).map(_iso),  # in the future
)
_bad_symbol = st.one_of(
    st.sampled_from(INJECTIONS),
    st.tuples(
        st.text("ABCXYZ019", min_size=1, max_size=5),
        st.sampled_from(list("|,'\" ;()*%$#@!?<>{}[]~`+&/\\")),
        st.text("ABCXYZ019", min_size=1, max_size=5),
    ).map("".join),
    st.text(
        st.characters(min_codepoint=0x80, max_codepoint=0x2FFF, exclude_categories=("Cs",)), min_size=1, max_size=8
    ),
)
_bad_choice = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), min_size=1, max_size=12
).filter(
    lambda s: (
        s.strip() != ""
        and s.strip().upper()
        not in {"LONG", "SHORT", "LC", "LP", "SC", "SP", "PUBLIC", "OPTIONS", "PRIVATE", "CALL", "PUT"}
    )
)

# (row kind, field, bad value) -> the importer must name exactly that row and field
MUTATIONS = st.one_of(
    st.tuples(st.sampled_from(list(ROW_OF)), st.just("quantity"), st.one_of(_not_a_number, _negative, _zero)),
    st.tuples(st.sampled_from(list(ROW_OF)), st.just("entry_price"), st.one_of(_not_a_number, _negative)),
    st.tuples(st.just("public"), st.just("entry_price"), _zero),  # PUBLIC needs a positive entry price
    st.tuples(st.sampled_from(list(ROW_OF)), st.just("entry_date"), _bad_date),
    st.tuples(st.just("public_closed"), st.just("exit_date"), st.one_of(_bad_date, st.just("2023-12-29"))),
    st.tuples(st.just("public_closed"), st.just("exit_price"), st.one_of(_not_a_number, _negative)),
    st.tuples(st.sampled_from(list(ROW_OF)), st.just("symbol"), _bad_symbol),
    st.tuples(st.sampled_from(list(ROW_OF)), st.just("position_type"), _bad_choice),
    st.tuples(st.sampled_from(list(ROW_OF)), st.just("investment_class"), _bad_choice),
    st.tuples(st.just("public"), st.just("position_type"), st.sampled_from(["LC", "LP", "SC", "SP"])),
    st.tuples(st.just("option"), st.just("position_type"), st.sampled_from(["LONG", "SHORT"])),
    st.tuples(
        st.just("option"), st.just("underlying"), st.one_of(_bad_symbol, st.just(""), st.just("AAPL240315C00190000"))
    ),
    st.tuples(st.just("option"), st.just("strike"), st.one_of(_not_a_number, _negative, _zero, st.just(""))),
    # (a well-formed later expiration is valid in itself: it only contradicts the OCC symbol, on field symbol)
    st.tuples(
        st.just("option"),
        st.just("expiration"),
        st.one_of(_malformed_date, st.just(""), st.dates(dt.date(1900, 1, 1), dt.date(2024, 1, 2)).map(_iso)),
    ),  # before entry
    st.tuples(st.just("option"), st.just("option_type"), st.one_of(st.just("PUT"), _bad_choice)),
    st.tuples(
        st.just("private"), st.just("manual_market_value"), st.one_of(_not_a_number, _negative, _zero, st.just(""))
    ),
    st.tuples(st.just("public"), st.just("manual_market_value"), st.just("1000")),  # only for PRIVATE rows
    st.tuples(st.just("public"), st.just("strike"), st.just("100")),  # only for OPTIONS rows
    st.tuples(
        st.sampled_from(list(ROW_OF)),
        st.just("sector"),
        st.one_of(
            st.text("abc ", min_size=65, max_size=80).filter(lambda t: len(t.strip()) > 64),
            st.sampled_from(["Tech\x07", "A\x1bB", "\x00"]),
        ),
    ),
    st.tuples(
        st.sampled_from(list(ROW_OF)),
        st.sampled_from(["symbol", "quantity", "position_type", "investment_class", "entry_price", "entry_date"]),
        st.just(""),
    ),  # required
)


def _csv(rows: list[dict], header: list[str] = COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(c, "") for c in header])
    return out.getvalue()


# ------------------------------------------------------------------------------- fixtures
def _fill(db, tmp_path, monkeypatch) -> tuple[str, bytes]:
    url = db.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", url)
    for pid, rows in (("existing", GOOD_ROWS), ("other", GOOD_ROWS[:1])):
        path = tmp_path / f"{pid}.csv"
        path.write_text(_csv(rows))
        import_portfolio(db, path, portfolio_id=pid)
    return url, dump_text(url)


@pytest.fixture
def book(database, tmp_path, monkeypatch):
    """The database (SQLite and Postgres) holding two portfolios already; FACTOR_PLATFORM_DB_URL points the CLI at it."""
    return _fill(database, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def _shared_sqlite_book(tmp_path_factory):
    from factor_platform.storage import Database

    folder = tmp_path_factory.mktemp("book")
    db = Database(f"sqlite:///{folder / 'book.db'}")
    db.init_schema()
    try:
        with pytest.MonkeyPatch.context() as patch:
            url, _ = _fill(db, folder, patch)
        yield url
    finally:
        db.dispose()


@pytest.fixture
def sqlite_book(_shared_sqlite_book, monkeypatch):
    """One SQLite book for the refusals that happen before any write (the dialect does not matter there);
    each test takes its own byte image first, so a test that wrote would fail itself."""
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", _shared_sqlite_book)
    return _shared_sqlite_book, dump_text(_shared_sqlite_book)


def _cli(*argv: str) -> tuple[int, str]:
    """`factor-platform ARGV` in this process: (exit code, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse refuses a malformed option itself
            code = exc.code
    return code, err.getvalue()


def _import(path: Path, *args: str) -> tuple[int, str]:
    """`factor-platform portfolio import PATH ARGS` in this process: (exit code, stderr)."""
    return _cli("portfolio", "import", str(path), *args)


def _assert_refused(url: str, before: bytes, code: int, message: str, *expected: str) -> None:
    LEDGER.bad_input()
    assert code == 2, f"exit code {code}, not 2; stderr:\n{message}"
    for text in expected:
        assert text in message, f"{text!r} not in the message:\n{message}"
    assert "Traceback" not in message, message
    assert dump_text(url) == before, "a refused import wrote to the database"


# ------------------------------------------------------------------------------- properties
def _fuzz_examples(database) -> int:
    return 100 if database.dialect == "sqlite" else 10  # nothing is written either way: the dialect matters little


@pytest.mark.parametrize("portfolio_id", ["existing", "brand_new"])
def test_any_bad_cell_is_refused_naming_row_and_field_and_writes_nothing(book, database, portfolio_id, tmp_path):
    url, before = book
    folder = tmp_path

    @settings(
        max_examples=_fuzz_examples(database) // 2,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(mutation=MUTATIONS, extra_rows=st.integers(0, 3))
    def check(mutation, extra_rows):
        kind, field, value = mutation
        rows = [dict(r) for r in GOOD_ROWS] + [dict(GOOD_ROWS[0]) for _ in range(extra_rows)]  # lots are fine
        rows[ROW_OF[kind]][field] = value
        path = folder / "positions.csv"
        path.write_text(_csv(rows), encoding="utf-8")
        code, message = _import(path, "--portfolio", portfolio_id)
        row = ROW_OF[kind] + 2  # header = row 1
        # An underlying equal to the contract's own symbol is reported on either field.
        fields = (
            ["underlying", "symbol"] if field == "underlying" and value == rows[ROW_OF[kind]]["symbol"] else [field]
        )
        named = [f for f in fields if f"row {row}, field {f}" in message]
        _assert_refused(
            url, before, code, message, f"row {row}, field {named[0] if named else field}", "Nothing was written"
        )

    check()


@pytest.mark.parametrize(
    "case",
    [
        "duplicate_column",
        "unknown_column",
        "missing_column",
        "ragged_row",
        "empty",
        "header_only",
        "not_utf8",
        "utf16",
        "semicolons",
        "too_large",
        "directory",
        "missing_file",
        "unterminated_quote",
    ],
)
def test_bad_files_are_refused_and_write_nothing(sqlite_book, tmp_path, case):
    url, before = sqlite_book
    path = tmp_path / "positions.csv"
    good = _csv(GOOD_ROWS)
    expected = {
        "duplicate_column": "row 1, field quantity",
        "unknown_column": "row 1, field qty",
        "missing_column": "row 1, field entry_date",
        "ragged_row": "row 3",
        "empty": "row 1",
        "header_only": "row 1",
        "not_utf8": "UTF-8",
        "utf16": "UTF-16",
        "semicolons": "row 1",
        "too_large": "file",
        "directory": "",
        "missing_file": "",
        "unterminated_quote": "row 3",
    }[case]
    if case == "duplicate_column":
        path.write_text(_csv(GOOD_ROWS, COLUMNS + ["quantity"]))
    elif case == "unknown_column":
        path.write_text(good.replace("quantity", "qty", 1))
    elif case == "missing_column":
        path.write_text(_csv(GOOD_ROWS, [c for c in COLUMNS if c != "entry_date"]))
    elif case == "ragged_row":
        lines = good.splitlines()
        path.write_text("\n".join([lines[0], lines[1], lines[2] + ",extra", *lines[3:]]) + "\n")
    elif case == "empty":
        path.write_text("")
    elif case == "header_only":
        path.write_text(",".join(COLUMNS) + "\n")
    elif case == "not_utf8":
        path.write_bytes(good.encode("utf-8").replace(b"Tech", b"T\xe9ch\xff"))
    elif case == "utf16":
        path.write_bytes(good.encode("utf-16"))
    elif case == "semicolons":
        path.write_text(good.replace(",", ";"))
    elif case == "too_large":
        with path.open("wb") as handle:  # sparse: 50 MiB + 1 byte without writing them
            handle.truncate(50 * 1024 * 1024 + 1)
    elif case == "directory":
        path.mkdir()
    elif case == "unterminated_quote":
        lines = good.splitlines()
        path.write_text("\n".join([lines[0], lines[1], '"MSFT,40,SHORT', *lines[3:]]) + "\n")
    code, message = _import(path, "--portfolio", "existing")
    _assert_refused(url, before, code, message, expected)


@pytest.mark.parametrize(
    "portfolio_id",
    [
        "",
        " ",
        "bad|id",
        "a,b",
        "'; DROP TABLE positions; --",
        "x" * 65,
        "ünï",
        "../etc",
        "-lead",
        "a..b",
        "a b",
        "a\nb",
        "a[1]",
        "p1...p2",
    ],
)
def test_bad_portfolio_id_is_refused_and_writes_nothing(sqlite_book, tmp_path, portfolio_id):
    url, before = sqlite_book
    path = tmp_path / "positions.csv"
    path.write_text(_csv(GOOD_ROWS))
    code, message = _import(path, f"--portfolio={portfolio_id}")  # "=": "-lead" is a value, not an option
    _assert_refused(url, before, code, message, "portfolio id")


@pytest.mark.parametrize("equity", ["-5", "0", "-0", "nan", "inf", "-inf", "1e400", "abc", "1,000", "", "$100"])
def test_bad_equity_is_refused_and_writes_nothing(sqlite_book, tmp_path, equity):
    url, before = sqlite_book
    path = tmp_path / "positions.csv"
    path.write_text(_csv(GOOD_ROWS))
    code, message = _import(path, "--portfolio", "existing", f"--equity={equity}")
    _assert_refused(url, before, code, message, "--equity")


@pytest.mark.parametrize("workers", ["0", "-1", "two", "1.5", ""])
def test_bad_worker_count_is_refused_before_anything_runs(sqlite_book, tmp_path, workers, monkeypatch):
    url, before = sqlite_book
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    code, message = _cli("materialize", "--start", "2025-06-02", "--end", "2025-06-03", f"--workers={workers}")
    _assert_refused(url, before, code, message, "--workers")
    monkeypatch.setenv("FACTOR_PLATFORM_WORKERS", workers or "none")
    code, message = _cli("materialize", "--start", "2025-06-02", "--end", "2025-06-03")
    _assert_refused(url, before, code, message, "FACTOR_PLATFORM_WORKERS")
    assert not (tmp_path / "home").exists(), "a refused command started the embedded Dagster storage"


@pytest.mark.slow
def test_the_installed_script_refuses_bad_input_with_exit_code_2(sqlite_book, tmp_path):
    """The same through `.venv/bin/factor-platform` itself: a real process, its exit code and its stderr."""
    url, before = sqlite_book
    env = processes.base_env(FACTOR_PLATFORM_DB_URL=url, DAGSTER_HOME=str(tmp_path / "home"))
    rows = [dict(r) for r in GOOD_ROWS]
    rows[1]["symbol"] = "'; DROP TABLE positions; --"
    bad = tmp_path / "bad.csv"
    bad.write_text(_csv(rows))
    done = processes.run_binary(["portfolio", "import", str(bad), "--portfolio", "existing"], env)
    LEDGER.bad_input()
    assert done.returncode == 2, f"exit {done.returncode}\n{done.stderr}"
    assert "row 3, field symbol" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert dump_text(url) == before
