"""factor-platform: the project's command line (contract §2).

Exit codes: 0 success, 1 some partition failed (each listed), 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path

EXAMPLES = {
    "init": "factor-platform init",
    "portfolio import": "factor-platform portfolio import positions.csv --portfolio growth_fund --name 'Growth fund' --equity 1000000",
    "materialize": "factor-platform materialize --start 2025-01-02 --end 2025-06-30 --portfolio growth_fund",
    "status": "factor-platform status --json",
    "demo": "FACTOR_PLATFORM_PRICE_SOURCE=sample factor-platform demo",
    "ui": "factor-platform ui --port 3000",
    "report": "factor-platform report --portfolio growth_fund --output report.html",
}


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do; exit code 2, nothing written."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (YYYY-MM-DD)") from None


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _amount(text: str) -> float:
    """A positive, finite amount of money (argparse type: a bad one is exit code 2 before anything runs)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive amount, got {text!r}")
    return value


def _context():
    """Settings, the analytics database (schema applied) and the Dagster instance."""
    from factor_platform.running.instance import prepare_dagster_home
    from factor_platform.settings import Settings
    from factor_platform.storage import Database

    prepare_dagster_home()
    settings = Settings.from_env()
    db = Database(settings.db_url)
    db.init_schema()
    return settings, db


def cmd_init(args) -> int:
    from factor_platform.settings import Settings
    from factor_platform.storage import Database

    settings = Settings.from_env()
    Database(settings.db_url).init_schema()
    _emit(
        args,
        {"database": _redact(settings.db_url), "schema": "up to date"},
        f"schema up to date in {_redact(settings.db_url)}",
    )
    return 0


def cmd_import(args) -> int:
    from factor_platform.domain.positions_csv import PositionsCsvError
    from factor_platform.domain.symbols import InvalidSymbolError
    from factor_platform.layers.books import import_portfolio
    from factor_platform.settings import Settings
    from factor_platform.storage import Database

    settings = Settings.from_env()
    db = Database(settings.db_url)
    db.init_schema()
    try:
        outcome = import_portfolio(db, Path(args.path), portfolio_id=args.portfolio, name=args.name, equity=args.equity)
    except (PositionsCsvError, InvalidSymbolError, FileNotFoundError, IsADirectoryError) as exc:
        raise UserError(f"{exc}\nNothing was written. Fix the file and run the import again.") from exc
    _emit(
        args,
        outcome,
        f"portfolio {args.portfolio}: {outcome['status']} ({outcome['positions']} positions, inception {outcome['inception_date']})",
    )
    if not args.materialize:
        return 0
    # Onboard now instead of waiting for the sensor: the sensor then finds the portfolio registered
    # and up to date, so nothing runs twice.
    from factor_platform.app.progress import progress_display
    from factor_platform.domain import sessions
    from factor_platform.running.execution import materialize
    from factor_platform.running.instance import prepare_dagster_home

    prepare_dagster_home()
    end = sessions.latest_closed_session(name=settings.calendar)
    with progress_display() as progress:
        done = materialize(
            db,
            start=outcome["inception_date"],
            end=end,
            portfolios=[outcome["portfolio_id"]],
            settings=settings,
            progress=progress,
        )
    for failure in done["failures"]:
        _say(f"FAILED {failure}")
    return 1 if done["failures"] else 0


def cmd_materialize(args) -> int:
    from factor_platform.app.progress import progress_display
    from factor_platform.running.execution import materialize
    from factor_platform.settings import workers as configured_workers

    # Arguments first: _context() starts the embedded Dagster storage.
    if args.start > args.end:
        raise UserError(f"--start {args.start} is after --end {args.end}")
    try:
        workers = args.workers or configured_workers()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    settings, db = _context()
    symbols = None
    if args.symbol:
        from factor_platform.domain.symbols import InvalidSymbolError, validate_symbol

        try:
            symbols = [validate_symbol(s) for s in args.symbol]
        except InvalidSymbolError as exc:
            raise UserError(str(exc)) from exc
    try:
        # stderr: a bar on a terminal, the plain lines elsewhere (app/progress.py); nothing with --json
        with nullcontext() if args.json else progress_display() as progress:
            outcome = materialize(
                db,
                start=args.start,
                end=args.end,
                portfolios=args.portfolio or None,
                symbols=symbols,
                settings=settings,
                progress=progress,
                workers=workers,
                refresh=args.refresh,
                executor=args.executor,
            )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps(outcome, indent=2, default=str))
    else:
        _say(f"{outcome['runs']} run(s), {outcome['partitions']} partition(s) in {outcome['seconds']:.1f} s")
        for warning in outcome["warnings"][:20]:
            _say(f"warning: {warning}")
        if len(outcome["warnings"]) > 20:
            _say(f"... and {len(outcome['warnings']) - 20} more warnings (factor-platform status lists them)")
        for failure in outcome["failures"]:
            _say(f"FAILED {failure}")
    return 1 if outcome["failures"] else 0


def cmd_status(args) -> int:
    from factor_platform.app.status import layer_status

    settings, db = _context()
    status = layer_status(db, settings=settings)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(f"latest closed session: {status['latest_session']}")
    print(f"{'layer':<28}{'latest date':<14}{'sessions behind':>16}")
    for layer in status["layers"]:
        behind = "-" if layer["sessions_behind"] is None else layer["sessions_behind"]
        print(f"{layer['table']:<28}{str(layer['latest_date'] or '-'):<14}{behind:>16}")
    for asset, stale in status["stale"].items():
        print(
            f"stale: {asset} of {stale['keys']} key(s) from {stale['first_date']} (the next materialize recomputes them)"
        )
    print(f"open failures: {len(status['failures'])}")
    for f in status["failures"][:50]:
        print(f"  {f['symbol']:<10} {f['stage']:<24} {f['status']:<8} attempts={f['attempts']}  {f['error']}")
    return 0


def cmd_demo(args) -> int:
    from factor_platform.app.demo import run_demo
    from factor_platform.settings import export

    export("FACTOR_PLATFORM_PRICE_SOURCE", "sample")

    return run_demo()  # its progress on stderr, as `materialize` shows it


def cmd_ui(args) -> int:
    from factor_platform.running.instance import prepare_dagster_home

    home = prepare_dagster_home()
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-m",
        "factor_platform.definitions",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    _say(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home}); Ctrl-C stops it")
    os.execv(command[0], command)


def cmd_report(args) -> int:
    from factor_platform.app.report import write_report

    settings, db = _context()
    try:
        path = write_report(
            db, portfolio_id=args.portfolio, day=args.date, output=Path(args.output) if args.output else None
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _emit(args, {"report": str(path)}, f"report written to {path}")
    return 0


def _redact(url: str) -> str:
    """A database URL without its password (never print credentials)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _emit(args, payload: dict, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, default=str))
    else:
        print(text)


def build_parser() -> argparse.ArgumentParser:
    def sub(parent, name, help_text, example_key, func):
        parser = parent.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {EXAMPLES[example_key]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        parser.set_defaults(func=func)
        return parser

    parser = argparse.ArgumentParser(
        prog="factor-platform",
        description="Market data, factor risk and P&L for portfolios, as partitioned Dagster assets.",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub(commands, "init", "create or upgrade the analytics schema (idempotent)", "init", cmd_init)

    portfolio = commands.add_parser("portfolio", help="portfolio commands (import)")
    portfolio_commands = portfolio.add_subparsers(dest="portfolio_command", required=True, metavar="COMMAND")
    imp = sub(
        portfolio_commands,
        "import",
        "load positions from a CSV; any bad row: exit 2, nothing written",
        "portfolio import",
        cmd_import,
    )
    imp.add_argument("path", help="positions CSV (contract §2)")
    imp.add_argument("--portfolio", required=True, help="portfolio id (letters, digits, _ . -)")
    imp.add_argument("--name", help="display name (default: the id)")
    imp.add_argument("--equity", type=_amount, help="starting equity (default 1,000,000)")
    imp.add_argument(
        "--materialize",
        action="store_true",
        help="materialize the portfolio (and its new symbols) now, from inception to the latest session",
    )

    mat = sub(
        commands,
        "materialize",
        "materialize, through Dagster, exactly the missing partitions in [start, end]",
        "materialize",
        cmd_materialize,
    )
    mat.add_argument("--start", type=_date, required=True)
    mat.add_argument("--end", type=_date, required=True)
    mat.add_argument("--portfolio", action="append", help="only this portfolio (repeatable)")
    mat.add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    mat.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="processes for a large plan (10,000+ partitions), each chunk its own Dagster run "
        "(default: FACTOR_PLATFORM_WORKERS, else one per core, at most 4)",
    )
    mat.add_argument(
        "--executor",
        choices=("auto", "local", "processes", "celery"),
        default="auto",
        help="where the runs execute: this process (local), --workers processes (processes), or the "
        "dagster-celery workers, --workers chunks per rectangle (celery; docs/scale-out.md); "
        "auto: processes for a large plan when --workers > 1, else local",
    )
    mat.add_argument(
        "--refresh",
        action="store_true",
        help="fetch the prices again, re-reading each symbol's whole stored history (catches restatements "
        "and re-basings older than the overlap); what changed is recomputed",
    )

    sub(commands, "status", "freshness of each layer in trading days, open failures", "status", cmd_status)
    sub(commands, "demo", "offline end-to-end demo on the sample source", "demo", cmd_demo)
    ui = sub(commands, "ui", "start the Dagster UI and daemon on this instance (binds 127.0.0.1)", "ui", cmd_ui)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    rep = sub(commands, "report", "write a self-contained HTML report of a portfolio", "report", cmd_report)
    rep.add_argument("--portfolio", required=True)
    rep.add_argument("--date", type=_date, help="as of this session (default: latest)")
    rep.add_argument("--output", help="HTML file (default: report-<portfolio>-<date>.html)")
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    # platformdirs warns on every start where XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
