"""The report step's checks of a month: the feed-quality checks (great-expectations, written to
``<out>/quality/YYYY-MM/``) and the trend's incident counts. Neither needs the topics, and the
topics need neither until the report is written, so on a machine with a second core they run in a
second process (``pipelines.second_process``) while this one builds the topics or scores the month.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, replace

from pipelines.month_events import MonthEvents
from pipelines.second_process import EVENTS_WRITTEN, SecondProcess, wait_to_hear, write_result
from quality.report import QualityReport


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


class ChecksProcess:
    """``check_month`` in a second interpreter, started at once; it reads the Events once they are
    written (at once unless ``events_written=False``: then after ``events_written()``); ``result()``
    waits for it."""

    def __init__(self, out: str, month: str, gazetteer: str, trend_months: list[str], python: str = sys.executable,
                 events_written: bool = True):
        self._args = (out, month, gazetteer, list(trend_months))
        self._process = SecondProcess("pipelines.month_checks", [out, month, gazetteer, *trend_months],
                                      "the month's checks", python)
        if events_written:
            self.events_written()

    def events_written(self) -> None:
        self._process.tell(EVENTS_WRITTEN)

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
    importlib.import_module("pipelines.quality")  # great-expectations loads while the Events are written
    wait_to_hear(EVENTS_WRITTEN)
    with fewer_collections():
        checks = check_month(out, month, gazetteer, trend_months)
    # the report reads the findings and the time; the batches' tables were written with them
    checks.quality = replace(checks.quality, batch_tables={}, accounting={})
    write_result(result, checks)
    return 0


if __name__ == "__main__":
    from pipelines import month_checks  # pickled under its module's name, not __main__'s

    sys.exit(month_checks.main(sys.argv[1:]))
