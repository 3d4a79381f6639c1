"""CPU seconds of scoring a month from a warehouse's stored tallies, per domain, without Beam; and
whether two code trees give the same score rows.

The batch job's scoring step (``pipelines.score.ScoreSeries``) takes one batch of tallies per
domain; this runs the same DoFn on the same batches in this process, so a change to the scoring
code is timed apart from the rest of the pipeline.

    PYTHONPATH=. python benchmarks/bench_score.py --out WAREHOUSE --month 2025-10 [--save rows.pkl]
    PYTHONPATH=OLD_TREE python benchmarks/bench_score.py --out WAREHOUSE --month 2025-10 --save old.pkl
    python benchmarks/bench_score.py --compare old.pkl rows.pkl

``WAREHOUSE``: a ``riskwatch batch --out`` folder holding the month and its history's tallies (in either
layout, ``pipelines.warehouse``: months written before callers had their own column parse them all).
``--compare``: the same rows, score and expected to 1e-9 relative; with ``--exact``, every field of every row
bit for bit (floats by ``repr``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import pickle
import sys
import time
from pathlib import Path



def _months(month: str, history: int) -> list[str]:
    year, number = map(int, month.split("-"))
    index = year * 12 + number - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - history, index + 1)]


def score_domains(out: str, month: str, history_months: int) -> tuple[dict[str, list], dict[str, float]]:
    """Each domain scored as the batch job's incremental month gets it: the history months as
    ``StoredSeries`` (read by the scorer, once for all domains: the first domain's figure holds
    the reading), the month itself as parsed tallies."""
    from pipelines.runners import fewer_collections
    from pipelines.score import _ScoreDomain
    from pipelines.warehouse import SERIES_TALLIES, StoredSeries, domain_item, read_month_tallies

    months = _months(month, history_months)
    target: dict[str, list] = {}
    for _, element in read_month_tallies(out, month, tables=(SERIES_TALLIES,)):
        domain, item = domain_item(element)
        target.setdefault(domain, []).append(item)
    start = dt.date.fromisoformat(f"{month}-01")
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    scorer = _ScoreDomain(start, end, dt.date.fromisoformat(f"{months[0]}-01"))
    scorer.setup()
    rows, seconds = {}, {}
    with fewer_collections():  # as the batch job runs (jobs/cli.py)
        for domain in sorted(target):
            batches = [StoredSeries(out, m) for m in months[:-1]] + [target[domain]]
            began = time.process_time()
            rows[domain] = list(scorer.process((domain, {"series": batches, "gaps": [[]]})))
            seconds[domain] = time.process_time() - began
            print(f"{domain} rows={len(rows[domain])} cpu_s={seconds[domain]:.2f}", flush=True)
    scorer.finish_bundle()
    return rows, seconds


# Score and expected may differ in their last bits (a fit started from the previous fit's β reaches the
# same solution to ~1e-14); every other field must be equal.
_CLOSE_FIELDS, _RELATIVE = ("score", "expected"), 1e-9


def _same_row(x: dict, y: dict) -> bool:
    if x.keys() != y.keys() or any(x[k] != y[k] for k in x if k not in _CLOSE_FIELDS):
        return False
    return all(_close(x[k], y[k]) for k in _CLOSE_FIELDS if k in x)


def _close(a: float | None, b: float | None) -> bool:
    """Within ``_RELATIVE`` of each other; None (a row without a baseline's ``expected``) equals only None."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= _RELATIVE * max(abs(a), abs(b))


def _identical_row(x: dict, y: dict) -> bool:
    return repr(x) == repr(y)


def differences(a: dict[str, list], b: dict[str, list], exact: bool = False) -> list[str]:
    same = _identical_row if exact else _same_row
    problems = []
    for domain in sorted(set(a) | set(b)):
        ra, rb = a.get(domain, []), b.get(domain, [])
        if len(ra) != len(rb):
            problems.append(f"{domain}: {len(ra)} vs {len(rb)} rows")
        problems += [f"{domain} row {i}: {x} != {y}" for i, (x, y) in enumerate(zip(ra, rb)) if not same(x, y)][:5]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="a riskwatch batch --out folder")
    parser.add_argument("--month", help="the month to score (YYYY-MM)")
    parser.add_argument("--history-months", type=int, default=12)
    parser.add_argument("--save", help="pickle the score rows here (for --compare)")
    parser.add_argument("--compare", nargs=2, metavar=("ROWS_A", "ROWS_B"))
    parser.add_argument("--exact", action="store_true", help="with --compare: every field bit for bit")
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (pickle.loads(Path(p).read_bytes()) for p in args.compare)
        problems = differences(a, b, args.exact)
        same = "identical rows" if args.exact else "same rows"
        print("\n".join(problems) if problems else f"{same} ({sum(map(len, a.values()))})")
        return 1 if problems else 0
    if not (args.out and args.month):
        parser.error("--out and --month (or --compare)")
    rows, seconds = score_domains(args.out, args.month, args.history_months)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"total cpu_s={sum(seconds.values()):.1f} rows={sum(map(len, rows.values()))} load_average={load}")
    if args.save:
        Path(args.save).write_bytes(pickle.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
