"""Time of the feed-quality checks for a county month (~85,000 events) with a month of history.

    cd /work/main && PYTHONPATH=. /work/venv/bin/python benchmarks/bench_quality.py [--batch-seconds S]

Prints the time of the checks (GX suites, batch table, gaps), of the data docs and scorecard, and,
given the batch job's own time for the same month (--batch-seconds), the share spent in quality.
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from quality.monthly import check_month, write_outputs
from quality.policy import load_policy
from quality.validation import QualityRun
from tests.quality_events import make_month


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=28.0, help="x the test volumes (28: ~85,000 events a month)")
    parser.add_argument("--batch-seconds", type=float, help="the batch job's time for the same month, for the share")
    args = parser.parse_args()
    began = time.perf_counter()
    events = make_month(dt.date(2026, 9, 1), 61, seed=11, scale=args.scale)
    in_month = int((events["reported_at"] >= "2026-10-01").sum())
    print(f"generated {len(events):,} events ({in_month:,} in 2026-10) in {time.perf_counter() - began:.1f} s")
    policy = load_policy()
    began = time.perf_counter()
    run = QualityRun(policy, "2026-10")
    report = check_month(events, "2026-10", policy, run=run)
    checks = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        write_outputs(report, run, Path(out))
        outputs = time.perf_counter() - began
    batches = sum(len(t) for t in report.batch_tables.values())
    print(f"quality checks: {checks:.1f} s for {in_month:,} events in {batches} batches, {len(run.results)} GX validations "
          f"({in_month / checks:,.0f} events/s); findings {len(report.findings)}")
    print(f"data docs + scorecard: {outputs:.1f} s; quality total {checks + outputs:.1f} s")
    if args.batch_seconds:
        total = checks + outputs
        print(f"share of the batch job: {total / (args.batch_seconds + total):.1%} (batch job {args.batch_seconds:.0f} s + quality {total:.1f} s)")


if __name__ == "__main__":
    main()
