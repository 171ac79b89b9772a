"""Security properties: a local-only UI, no credentials in the repository or in output, no SQL built
from strings, and a CSV source that opens only the file it was given."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import subprocess
import traceback
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from factor_platform.app import cli
from factor_platform.sources import price_source
from factor_platform.sources.csv import CsvPriceSource
from factor_platform.storage import Database
from factor_platform_tests.conftest import PG_ADMIN_URL
from factor_platform_tests.reliability import processes
from factor_platform_tests.reliability.support import create_database, drop_database

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "factor_platform"
# a URL with a scheme, a user, a colon, a non-empty password and an at sign (an empty password is no secret)
CREDENTIAL_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]+:[^@\s/'\"]+@")
PRIVATE_KEY = re.compile("-----BEGIN [A-Z ]*PRIVATE " + "KEY-----")


# ------------------------------------------------------------------------------------ UI
def test_ui_binds_localhost_by_default(tmp_path, monkeypatch):
    args = cli.build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    # And that host is what reaches `dagster dev` (the exec is intercepted: no server starts).
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for name in ("DAGSTER_HOME", "DAGSTER_EVENT_BATCH_SIZE", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"):
        monkeypatch.setenv(name, str(home) if name == "DAGSTER_HOME" else "0")
    started = []

    def execv(path, argv):
        started.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", execv)
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        cli.main(["ui"])
    (argv,) = started
    assert argv[argv.index("--host") + 1] == "127.0.0.1", argv


# ------------------------------------------------------------------------------------ credentials
def _repository_files() -> list[Path]:
    listed = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    return [REPO / name for name in listed if name and (REPO / name).is_file()]


def test_no_credentials_in_the_repository():
    files = _repository_files()
    assert len(files) > 50, "git ls-files found too few files to be the repository"
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary
        for pattern in (CREDENTIAL_URL, PRIVATE_KEY):
            found += [
                f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
                for m in pattern.finditer(text)
            ]
    assert not found, "credentials in tracked files:\n" + "\n".join(found)


@pytest.fixture
def password_url():
    """A URL to a fresh database on the machine's (trust-auth) Postgres, with a password it ignores."""
    url = create_database("fp_rel_secret")
    secret = f"S3cr3t-{uuid.uuid4().hex[:10]}"
    with_password = sa.make_url(url).set(password=secret).render_as_string(hide_password=False)
    try:
        yield with_password, secret
    finally:
        drop_database(url)


@pytest.mark.postgres
def test_a_database_password_is_never_printed(password_url, tmp_path, monkeypatch, capfd):
    url, secret = password_url
    env = processes.base_env(FACTOR_PLATFORM_DB_URL=url, DAGSTER_HOME=str(tmp_path / "home"))
    done = processes.run_binary(["init"], env)  # the installed script, a process of its own
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr, "`factor-platform init` printed the password"
    assert "***" in done.stdout, done.stdout  # the URL is shown, redacted

    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", url)
    assert cli.main(["init", "--json"]) == 0
    out, err = capfd.readouterr()
    assert secret not in out + err and "***" in out, out + err

    # A database that does not exist: the error (and its traceback) must not carry the password either.
    missing = (
        sa.make_url(url).set(database=f"fp_rel_missing_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)
    )
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", missing)
    with pytest.raises(Exception) as failure:
        cli.main(["init"])
    out, err = capfd.readouterr()
    shown = "".join(traceback.format_exception(failure.value)) + out + err
    assert secret not in shown, shown

    # status (in this process: it needs no server) and the Database's repr.
    home = tmp_path / "status-home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", url)
    for name, value in (
        ("DAGSTER_HOME", str(home)),
        ("DAGSTER_EVENT_BATCH_SIZE", "0"),
        ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "false"),
    ):
        monkeypatch.setenv(name, value)
    for argv in (["status"], ["status", "--json"]):
        assert cli.main(argv) == 0
        out, err = capfd.readouterr()
        assert secret not in out + err, f"`factor-platform {' '.join(argv)}` printed the password"
    db = Database(url)
    try:
        assert secret not in repr(db) and secret not in str(db)
    finally:
        db.dispose()


# ------------------------------------------------------------------------------------ SQL from strings
SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|PRAGMA|BEGIN|COPY|GRANT|WHERE|VALUES)\b"
)
# Where SQL text is formatted, only identifiers from the fixed schema or constants of the code go in:
# never a value that came from a user, a file or a vendor. Each place is listed with its reason.
ALLOWED = {
    ("storage/database.py", "Database.init_schema"): (1, "pg_advisory_xact_lock(<module constant int>)"),
    ("storage/database.py", "Database._add_missing_columns"): (
        1,
        "ALTER TABLE <quoted table name> ADD COLUMN <DDL compiled by SQLAlchemy>: both from schema.metadata",
    ),
    ("storage/bulk.py", "_write_postgres"): (
        3,
        "temp table name from uuid4().hex; column names quoted from schema.metadata; values go through binary COPY",
    ),
    ("storage/database.py", "Database._copy_out"): (
        1,
        "COPY (<a SELECT compiled by SQLAlchemy, its values bound by psycopg2's mogrify>) TO STDOUT "
        "(test_copy_read: hostile values find exactly their rows)",
    ),
    ("storage/engines.py", "_sqlite_engine._on_connect"): (1, "PRAGMA busy_timeout = <int of a module constant>"),
    ("storage/engines.py", "_sqlite_engine._on_begin"): (1, "BEGIN IMMEDIATE|DEFERRED, chosen by the code"),
    ("storage/schema.py", "ddl"): (
        1,
        "INSERT INTO schema_version VALUES (<SCHEMA_VERSION int constant>) in generated DDL",
    ),
    ("running/instance.py", "ensure_embedded_postgres"): (2, "the embedded Dagster database name, a module constant"),
}


def _formatted_sql(path: Path) -> list[tuple[str, int, str]]:
    """(enclosing function, line, source) of every f-string / % / + / .format() whose text has SQL keywords."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def enclosing(node) -> str:
        names = []
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
        return ".".join(reversed(names)) or "<module>"

    def strings(*nodes) -> str:
        return " ".join(n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str))

    found = []
    for node in ast.walk(tree):
        text = ""
        if isinstance(node, ast.JoinedStr):
            text = strings(*node.values)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
            text = strings(node.left, node.right)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            text = strings(node.func.value)
        if text and SQL_WORDS.search(text):
            found.append((enclosing(node), node.lineno, ast.unparse(node)))
    return found


def test_no_sql_is_built_by_string_formatting():
    per_place: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for where, line, source in _formatted_sql(path):
            key = (path.relative_to(PACKAGE).as_posix(), where)
            per_place.setdefault(key, []).append(f"factor_platform/{key[0]}:{line} in {where}: {source[:140]}")
    unexplained = [
        line for key, lines in per_place.items() if key not in ALLOWED or len(lines) > ALLOWED[key][0] for line in lines
    ]
    assert not unexplained, (
        "SQL built by string formatting (use bound parameters or SQLAlchemy constructs; if it is only fixed "
        "identifiers, add it to ALLOWED with the reason):\n" + "\n".join(unexplained)
    )


def test_the_sql_scan_catches_formatting(tmp_path):
    """The scan itself: a value formatted into SQL in any of the usual ways is found."""
    sample = tmp_path / "probe.py"
    sample.write_text(
        "def f(conn, name, sym):\n"
        "    conn.execute(f\"SELECT * FROM prices WHERE symbol = '{sym}'\")\n"
        "    conn.execute(\"DELETE FROM prices WHERE symbol = '%s'\" % sym)\n"
        "    conn.execute(\"UPDATE prices SET close = 1 WHERE symbol = '{}'\".format(sym))\n"
        '    conn.execute("SELECT * FROM " + name)\n'
        "    conn.execute('SELECT 1')\n"
    )
    found = _formatted_sql(sample)
    assert [line for _, line, _ in found] == [2, 3, 4, 5]


# ------------------------------------------------------------------------------------ CSV source paths
PRICES = "date,symbol,close\n2024-01-02,AAPL,185.5\n2024-01-03,AAPL,184.25\n"
SECRET_PRICES = "date,symbol,close\n2024-01-02,AAPL,999999\n"


@pytest.fixture
def folders(tmp_path):
    inside, outside = tmp_path / "vendor", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret.csv").write_text(SECRET_PRICES)
    return inside, outside


def test_csv_source_refuses_a_symlink_pointing_outside_its_folder(folders):
    inside, outside = folders
    link = inside / "prices.csv"
    link.symlink_to(outside / "secret.csv")
    for make in (lambda: CsvPriceSource(link), lambda: price_source(f"csv:{link}")):
        with pytest.raises(ValueError, match="outside"):
            make()


def test_csv_source_refuses_a_profiles_symlink_pointing_outside(folders):
    inside, outside = folders
    (inside / "prices.csv").write_text(PRICES)
    (outside / "profiles.csv").write_text("symbol,name\nAAPL,Apple\n")
    (inside / "prices.profiles.csv").symlink_to(outside / "profiles.csv")
    with pytest.raises(ValueError, match="outside"):
        CsvPriceSource(inside / "prices.csv")


def test_csv_source_refuses_directories_and_special_files(folders):
    inside, _ = folders
    (inside / "prices.csv").mkdir()
    with pytest.raises(ValueError, match="directory"):
        CsvPriceSource(inside / "prices.csv")
    fifo = inside / "pipe.csv"
    os.mkfifo(fifo)  # opening it would block forever
    with pytest.raises(ValueError, match="regular file"):
        CsvPriceSource(fifo)


def test_csv_source_checks_the_path_again_at_every_read(folders):
    """A file swapped for a symlink after the source was created is refused, not read."""
    inside, outside = folders
    path = inside / "prices.csv"
    path.write_text(PRICES)
    source = CsvPriceSource(path)
    import datetime as dt

    assert source.fetch_prices(["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 3)).frame["close"].tolist() == [
        185.5,
        184.25,
    ]
    path.unlink()
    path.symlink_to(outside / "secret.csv")
    with pytest.raises(ValueError, match="outside"):
        source.fetch_prices(["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 2))


def test_csv_source_accepts_a_symlink_inside_its_folder(folders):
    inside, _ = folders
    (inside / "2024-01.csv").write_text(PRICES)
    (inside / "prices.csv").symlink_to(inside / "2024-01.csv")
    import datetime as dt

    frame = CsvPriceSource(inside / "prices.csv").fetch_prices(["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 3)).frame
    assert frame["close"].tolist() == [185.5, 184.25]


def test_admin_url_of_the_tests_carries_no_password():
    assert sa.make_url(PG_ADMIN_URL).password in (None, ""), "the tests' own Postgres URL must not embed a password"
