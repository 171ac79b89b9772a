"""Materialize the missing partitions of [start, end] on the Celery workers, in symbol chunks.

    .venv/bin/python deploy/celery/materialize.py --start 2025-01-02 --end 2025-06-30 --chunks 8
    .venv/bin/python deploy/celery/materialize.py --start 2025-06-02 --end 2025-06-30 --symbol NVDA --json

What `factor-platform materialize` plans (the same planner, the same Dagster instance and tables),
run by `materialize(executor="celery")` (`factor_platform.running.celery_workers`) instead of in this process. Progress on stderr; exit 0 when every
run succeeded, 1 when any failed (each listed), 2 on bad input. Environment: deploy/celery/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first session (YYYY-MM-DD)")
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True, help="last session (YYYY-MM-DD)")
    parser.add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    parser.add_argument("--portfolio", action="append", help="only this portfolio (repeatable)")
    parser.add_argument(
        "--chunks", type=int, default=None, help="chunks per rectangle (default 4; about the worker slots)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable outcome on stdout")
    args = parser.parse_args(argv)

    from factor_platform.domain.symbols import InvalidSymbolError, validate_symbol
    from factor_platform.running.celery_workers import DEFAULT_CHUNKS
    from factor_platform.running.execution import materialize
    from factor_platform.running.instance import get_instance
    from factor_platform.settings import Settings
    from factor_platform.storage import Database

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.start > args.end:
            raise ValueError(f"--start {args.start} is after --end {args.end}")
        symbols = [validate_symbol(s) for s in args.symbol] if args.symbol else None
        settings = Settings.from_env()
        db = Database(settings.db_url)
        db.init_schema()
        outcome = materialize(
            db,
            start=args.start,
            end=args.end,
            instance=get_instance(),
            portfolios=args.portfolio,
            symbols=symbols,
            settings=settings,
            executor="celery",
            workers=args.chunks or DEFAULT_CHUNKS,
            progress=None if args.json else say,
        )
    except (ValueError, InvalidSymbolError) as exc:
        say(f"error: {exc}")
        return 2
    if args.json:
        print(json.dumps(outcome, indent=2, default=str))
    else:
        say(f"{outcome['runs']} run(s), {outcome['partitions']} partition(s) in {outcome['seconds']:.1f} s")
        for warning in outcome["warnings"]:
            say(f"warning: {warning}")
        for failure in outcome["failures"]:
            say(f"FAILED {failure}")
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
