"""`riskwatch simulate`: a fictional county's department feeds with ground truth (docs/simulator.md)."""
from __future__ import annotations

import argparse
import logging
import re
import time

NAME = "simulate"
HELP = "simulate a county's 12345, 110 and grid feeds with ground truth"
log = logging.getLogger(__name__)


def _month(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"expected YYYY-MM, got {value!r}")
    return value


def _share(value: str) -> float:
    share = float(value)
    if not 0 <= share < 0.5:
        raise argparse.ArgumentTypeError(f"broken share must be in [0, 0.5), got {value}")
    return share


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (gazetteer.csv, inbox/, truth/)")
    parser.add_argument("--start", required=True, type=_month, help="first month, YYYY-MM")
    parser.add_argument("--months", type=int, default=12, help="number of months (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument("--population", type=int, default=200_000, help="county population (default 200000)")
    parser.add_argument("--broken-share", type=_share, default=0.005, help="share of broken rows (default 0.005)")
    parser.add_argument("--files", choices=["monthly", "daily"], default="monthly", help="one file per month or per day")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from simulator import simulate

    if beam_args:
        log.error("unknown arguments: %s", " ".join(beam_args))
        return 2
    if args.months < 1 or args.population < 1000:
        log.error("need --months >= 1 and --population >= 1000")
        return 2
    started = time.perf_counter()
    try:
        summary = simulate(args.out, args.start, args.months, args.seed, population=args.population,
                           broken_share=args.broken_share, files=args.files)
    except ValueError as e:
        log.error("%s", e)
        return 2
    log.info("wrote %d rows to %s in %.1f s: %s; %d broken, %d repeated exports, %d episodes, %d outages",
             summary.rows, summary.out, time.perf_counter() - started,
             ", ".join(f"{k} {v}" for k, v in summary.per_feed.items()),
             summary.broken, summary.duplicates, summary.episodes, summary.outages)
    return 0
