"""The report step's checks of a month: the feed-quality checks (great-expectations, written to
``<out>/quality/YYYY-MM/``) and the trend's incident counts. Neither needs the topics, and the
topics need neither until the report is written, so on a machine with a second core they run in a
second process (``pipelines.second_process``) while this one builds the topics or scores the month.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.month_events import MonthEvents
from pipelines.second_process import SecondProcess, write_result
from pipelines.sinks import events_dir
from quality.report import QualityReport

# a month smaller than this is checked in one process: a second interpreter's start-up (~3-4 s of
# imports, most of them great-expectations) costs more than such a month's checks
CHECKS_PROCESS_ROWS = 20_000
# the second process costs ~7 CPU-s more in all (its imports, its reads): it pays only on a core
# that nothing else uses, so it needs this much of one idle besides the core of this process
IDLE_CORE_SHARE = 0.5


@dataclass
class MonthChecks:
    quality: QualityReport
    quality_paths: dict
    incidents: dict  # (domain, month) -> incidents, ``MonthEvents.incidents_by_domain``


def check_month(out: str, month: str, gazetteer: str, trend_months: list[str],
                store: MonthEvents | None = None) -> MonthChecks:
    """The checks in this process (``store``: the warehouse's Events as the report step reads them)."""
    # imported here: a report step whose checks run in the second process never loads great-expectations
    from pipelines.quality import run_quality

    store = store or MonthEvents(out)
    quality, paths = run_quality(out, month, gazetteer_csv=gazetteer, store=store)
    return MonthChecks(quality, paths, store.incidents_by_domain(trend_months))


def stored_rows(out: str, month: str) -> int:
    """The month's stored Event rows, from the Parquet footers."""
    folder = Path(events_dir(out)) / f"month={month}"
    return sum(pq.ParquetFile(path).metadata.num_rows for path in folder.glob("*.parquet"))


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user … steal (guests are in user)


def idle_cores(seconds: float = 0.25) -> float:
    """Cores that ran nothing during a short look (this process sleeps through it, so its own core
    counts); where /proc/stat is missing, the cores less the 1-minute load average, which lags."""
    cores = os.cpu_count() or 1
    try:
        idle, total = _cpu_times()
        time.sleep(seconds)
        idle_after, total_after = _cpu_times()
    except (OSError, ValueError, IndexError):
        try:
            return cores - os.getloadavg()[0] + 1
        except OSError:
            return 0.0
    return cores * (idle_after - idle) / max(1, total_after - total)


def worth_a_process(out: str, month: str) -> bool:
    """A large month on a machine with a core to spare besides this process's (outputs are the
    same either way)."""
    return (len(os.sched_getaffinity(0)) >= 2 and stored_rows(out, month) >= CHECKS_PROCESS_ROWS
            and idle_cores() >= 1 + IDLE_CORE_SHARE)


class ChecksProcess:
    """``check_month`` in a second interpreter, started at once; ``result()`` waits for it."""

    def __init__(self, out: str, month: str, gazetteer: str, trend_months: list[str], python: str = sys.executable):
        self._args = (out, month, gazetteer, list(trend_months))
        self._process = SecondProcess("pipelines.month_checks", [out, month, gazetteer, *trend_months],
                                      "the month's checks", python)

    def result(self, store: MonthEvents | None = None) -> MonthChecks:
        """The second process's checks; if it failed, the checks of this process."""
        checks = self._process.result()
        return checks if checks is not None else check_month(*self._args, store)

    def close(self) -> None:
        self._process.close()

    def __enter__(self) -> "ChecksProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str]) -> int:
    from pipelines.runners import fewer_collections  # as the batch job runs the step

    result, out, month, gazetteer, *trend_months = argv
    with fewer_collections():
        checks = check_month(out, month, gazetteer, trend_months)
    # the report reads the findings and the time; the batches' tables were written with them
    checks.quality = replace(checks.quality, batch_tables={}, accounting={})
    write_result(result, checks)
    return 0


if __name__ == "__main__":
    from pipelines import month_checks  # pickled under its module's name, not __main__'s

    sys.exit(month_checks.main(sys.argv[1:]))
