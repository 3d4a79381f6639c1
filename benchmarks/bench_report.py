"""Time the monthly job's step after the Beam pipeline (``pipelines.monthly.report_month``: data
quality, topics, report) on an existing warehouse, and optionally compare its outputs with another
run's.

    PYTHONPATH=. python benchmarks/bench_report.py --out WAREHOUSE_COPY --month 2025-10 --gazetteer GAZ.csv [--repeat 3]
    PYTHONPATH=. python benchmarks/bench_report.py --compare REPORTS_A REPORTS_B

``report_month`` writes into ``--out`` (reports/, quality/): run it on a copy of a warehouse.
``--repeat`` runs it several times in a row and prints the median; ``import_s`` is the import of the report stack, which the batch job pays
once after its pipeline; ``cpu_s`` counts both processes when the checks run in a second one
(``this_process_cpu_s`` this one only; ``--checks-process no`` keeps them in this one). ``--parts`` adds the CPU seconds of the step's parts (quality, the
trend's counts, the reads, topics, the page and workbook) and of the topics' costliest steps. To time an older tree, put it first on PYTHONPATH (this script
imports ``pipelines.monthly`` from there). ``--compare`` takes two ``<out>/reports/<month>``
directories and prints what differs between their topics.json, topics.xlsx and the report's page
(the HTML with its run time stamps removed).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# (module, owner name, function name) of the parts --parts times; an owner of "" is the module itself
_PARTS = [
    ("pipelines.quality", "", "run_quality"), ("pipelines.month_topics", "", "build_topics"),
    ("pipelines.monthly", "", "write_report"), ("pipelines.month_events", "MonthEvents", "incidents_by_domain"),
    ("pipelines.month_events", "MonthEvents", "latest"), ("models.topics", "TopicBuilder", "group_topics"),
    ("models.topics", "TopicBuilder", "topic_keys"), ("models.topics", "TopicBuilder", "cluster"),
    ("models.topics", "TopicBuilder", "shared_noun"), ("models.topics", "SubjectFinder", "mentions_of"),
    ("models.topics", "TopicBuilder", "own_evidence"), ("models.topics", "TopicBuilder", "_group_wave"),
    ("models.topics", "", "domain_counts"), ("models.topics", "", "topic_records"),
]


def _timed_parts() -> dict:
    """Wrap the parts in CPU-time counters (outermost calls only); returns the counters."""
    import functools
    import importlib
    import inspect

    spent: dict = {}

    def wrap(owner, name, label):
        raw = inspect.getattr_static(owner, name)
        function = getattr(owner, name)
        depth = [0]

        @functools.wraps(function)
        def timed(*args, **kwargs):
            if depth[0]:
                return function(*args, **kwargs)
            depth[0] += 1
            began = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - began
                depth[0] -= 1

        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)

    for module, owner, name in _PARTS:
        target = importlib.import_module(module)
        wrap(getattr(target, owner) if owner else target, name, f"{owner or module.split('.')[-1]}.{name}")
    return spent


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def time_report(out: str, month: str, gazetteer: str, parts: bool = False, checks_process: bool | None = None) -> dict:
    began = time.perf_counter()
    from pipelines.monthly import report_month  # the batch job imports the report stack after its pipeline
    from pipelines.runners import fewer_collections

    imported = time.perf_counter() - began
    spent = _timed_parts() if parts else None
    load = _load()
    wall, cpu, child = time.perf_counter(), time.process_time(), _children_cpu()
    with fewer_collections():  # as the batch job runs it (jobs/cli.py)
        _, summary = report_month(out, month, gazetteer, processes=checks_process)
    wall, cpu, child = time.perf_counter() - wall, time.process_time() - cpu, _children_cpu() - child
    figures = {"report_s": round(wall, 1), "cpu_s": round(cpu + child, 1), "this_process_cpu_s": round(cpu, 1),
               "import_s": round(imported, 1),
               "load_before": load, "load_after": _load(),
               **{k: v for k, v in summary.items() if k != "quality_critical"}}
    if spent is not None:
        figures["parts_cpu_s"] = {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
    return figures


_VOLATILE = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)?|\d+(\.\d+)?\s*(秒|s\b)")


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two report directories (empty: same topics and figures)."""
    problems = []
    ta, tb = (json.loads((d / "topics.json").read_text(encoding="utf-8")) for d in (a, b))
    for name in ("topics", "closed"):
        la, lb = ta.get(name) or [], tb.get(name) or []
        if len(la) != len(lb):
            problems.append(f"{name}: {len(la)} vs {len(lb)} entries")
        for i, (x, y) in enumerate(zip(la, lb)):
            for key in sorted(set(x) | set(y)):
                if x.get(key) != y.get(key):
                    problems.append(f"{name}[{i}].{key}: {str(x.get(key))[:120]} != {str(y.get(key))[:120]}")
    for key in sorted(set(ta) | set(tb)):
        if key not in ("topics", "closed", "generated_at") and ta.get(key) != tb.get(key):
            problems.append(f"topics.json {key}: {str(ta.get(key))[:120]} != {str(tb.get(key))[:120]}")
    import openpyxl

    books = [openpyxl.load_workbook(d / "topics.xlsx", read_only=True) for d in (a, b)]
    for name in sorted(set(books[0].sheetnames) | set(books[1].sheetnames)):
        rows = [list(book[name].iter_rows(values_only=True)) if name in book.sheetnames else [] for book in books]
        if rows[0] != rows[1]:
            problems.append(f"topics.xlsx sheet {name}: {len(rows[0])} vs {len(rows[1])} rows, first difference at row "
                            f"{next((i + 1 for i, (x, y) in enumerate(zip(*rows)) if x != y), min(map(len, rows)) + 1)}")
    ha, hb = (_VOLATILE.sub("<t>", (d / "report.html").read_text(encoding="utf-8")) for d in (a, b))
    if ha != hb:
        lines_a, lines_b = ha.splitlines(), hb.splitlines()
        diff = [f"report.html line {i + 1}: {x[:100]!r} != {y[:100]!r}"
                for i, (x, y) in enumerate(zip(lines_a, lines_b)) if x != y]
        problems.extend(diff[:20] or [f"report.html: {len(lines_a)} vs {len(lines_b)} lines"])
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="warehouse (a copy: the reports are written into it)")
    parser.add_argument("--month")
    parser.add_argument("--gazetteer")
    parser.add_argument("--repeat", type=int, default=1, help="runs in a row (the median is printed)")
    parser.add_argument("--parts", action="store_true", help="CPU seconds of the step's parts (one run: the "
                        "counters are set up once)")
    parser.add_argument("--compare", nargs=2, metavar=("REPORTS_A", "REPORTS_B"))
    parser.add_argument("--checks-process", choices=("auto", "yes", "no"), default="auto",
                        help="the quality checks and trend counts in a second process (default: as the job decides)")
    args = parser.parse_args(argv)
    if args.compare:
        problems = compare(Path(args.compare[0]), Path(args.compare[1]))
        print("\n".join(problems) if problems else "same topics and report figures")
        return 1 if problems else 0
    if not (args.out and args.month and args.gazetteer):
        parser.error("--out, --month and --gazetteer (or --compare)")
    runs = []
    for i in range(args.repeat):
        runs.append(time_report(args.out, args.month, args.gazetteer, parts=args.parts and i == 0,
                                checks_process={"auto": None, "yes": True, "no": False}[args.checks_process]))
        print(" ".join(f"{k}={v}" for k, v in runs[-1].items()), flush=True)
    if len(runs) > 1:
        print(f"median of {len(runs)}: report_s={statistics.median(r['report_s'] for r in runs)} "
              f"cpu_s={statistics.median(r['cpu_s'] for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
