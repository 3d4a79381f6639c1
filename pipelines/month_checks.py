"""The report step's checks of a month: the feed-quality checks (great-expectations, written to
``<out>/quality/YYYY-MM/``) and the trend's incident counts. Neither needs the topics, and the
topics need neither until the report is written, so on a machine with a second core they run in a
second process (``pipelines.second_process``) while this one scores the month. With little history
to score, the topics have no process of their own (``pipelines.batch``): that process builds them
after its checks, reading the month's texts while this one still scores, the scores once told.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd

from pipelines.month_events import MonthEvents
from pipelines.second_process import EVENTS_WRITTEN, SCORES_WRITTEN, SecondProcess, wait_to_hear, write_result
from quality.report import QualityReport

if TYPE_CHECKING:  # the topics' models load only in a process that builds them
    from models.topics import TopicList

# what the second process hears instead of EVENTS_WRITTEN when it is to build the topics after its checks
TOPICS_TOO = "events written; topics too"


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
    written (at once unless ``events_written=False``: then after ``events_written()``), and with
    ``topics`` builds the month's topics after its checks (``topics_of_month``, reading the scores
    after ``scores_written``). ``result()`` and ``topics()`` wait for it."""

    def __init__(self, out: str, month: str, gazetteer: str, trend_months: list[str], python: str = sys.executable,
                 events_written: bool = True, topics: bool = False):
        self._args = (out, month, gazetteer, list(trend_months))
        self._process = SecondProcess("pipelines.month_checks", [out, month, gazetteer, *trend_months],
                                      "the month's checks", python)
        self.builds_topics = False
        self._value: tuple | None = None
        self._waited = False
        if events_written:
            self.events_written(topics)

    def events_written(self, topics: bool = False) -> None:
        self.builds_topics = topics
        self._process.tell(TOPICS_TOO if topics else EVENTS_WRITTEN)

    def scores_written(self) -> None:
        if self.builds_topics:
            self._process.tell(SCORES_WRITTEN)

    def _result(self) -> tuple | None:
        if not self._waited:
            self._value, self._waited = self._process.result(), True
        return self._value

    def result(self, store: MonthEvents | None = None) -> MonthChecks:
        """The second process's checks; if it failed, the checks of this process."""
        value = self._result()
        return value[0] if value is not None else check_month(*self._args, store)

    def topics(self, scores: pd.DataFrame, store: MonthEvents | None = None) -> TopicList:
        """The second process's topics; if it failed or built none, the topics of this process from
        ``scores`` (``month_rows``')."""
        from pipelines.month_topics import topics_of_month

        value = self._result()
        if value is not None and value[1] is not None:
            return value[1]
        return topics_of_month(*self._args[:3], scores, store)

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
    topics_too = wait_to_hear(EVENTS_WRITTEN, TOPICS_TOO) == TOPICS_TOO
    topics = None
    with fewer_collections():
        checks = check_month(out, month, gazetteer, trend_months)
        # the report reads the findings and the time; the batches' tables were written with them
        checks.quality = replace(checks.quality, batch_tables={}, accounting={})
        if topics_too:
            # imported only here: a checks process beside a topics process never loads the topics' models
            from pipelines.month_topics import scores_once_told, topics_of_month

            topics = topics_of_month(out, month, gazetteer, scores_once_told(out, month))
    write_result(result, (checks, topics))
    return 0


if __name__ == "__main__":
    from pipelines import month_checks  # pickled under its module's name, not __main__'s

    sys.exit(month_checks.main(sys.argv[1:]))
