"""Time the county simulator for a county of 1M people over 12 months; print counts per feed and domain.

    cd /work/main && PYTHONPATH=. /work/venv/bin/python benchmarks/bench_simulator.py [--population N] [--months N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from simulator import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--population", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--start", default="2025-01")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="bench-simulator-")
    try:
        started, cpu = time.perf_counter(), os.times()
        summary = simulate(out, args.start, args.months, args.seed, population=args.population, workers=args.workers)
        wall = time.perf_counter() - started
        after = os.times()
        cpu_s = (after.user - cpu.user) + (after.system - cpu.system) + (after.children_user - cpu.children_user) \
            + (after.children_system - cpu.children_system)
        load = os.getloadavg()[0]
        print(f"population {args.population:,} × {args.months} months: {summary.rows:,} rows in {wall:.1f} s wall, "
              f"{cpu_s:.1f} s CPU (load average {load:.1f} on {os.cpu_count()} CPUs)")
        print(f"broken {summary.broken:,}, repeated exports {summary.duplicates:,}, episodes {summary.episodes}, "
              f"outages {summary.outages}")
        print("per feed:  " + ", ".join(f"{k} {v:,}" for k, v in summary.per_feed.items()))
        print("per domain (originals): " + ", ".join(f"{k} {v:,}" for k, v in summary.per_domain.items()))
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
