"""The month's topic list (``models.topics.build_topics``) from the warehouse.

The topics need the month's scores only after they have read the month's texts, which is most of
their work; the batch job scores the month after writing its Events (``pipelines.batch``). So on a
machine with a second core the topics start in a second process (``pipelines.second_process``),
read the texts once told the Events are written (``TopicsProcess.events_written``) while this process
scores, and read the scores when told they are written (``TopicsProcess.scores_written``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pandas as pd

import schemas
from models.topics import RECORD_COLUMNS, TopicList, build_topics, shift_month
from pipelines import warehouse
from pipelines.gazetteer import read_gazetteer_rows
from pipelines.month_events import MonthEvents
from pipelines.second_process import EVENTS_WRITTEN, SCORES_WRITTEN, SecondProcess, wait_to_hear, write_result
from reports.topics_json import read_topics_json

TOPIC_HISTORY_MONTHS = 3


def month_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The score rows of period ``month`` (the topics, report and workbook read no others)."""
    return scores[scores["period"] == "month"] if "period" in scores.columns else scores


def month_scores(out: str, month: str) -> pd.DataFrame:
    """The month's score rows of period ``month``."""
    return month_rows(warehouse.read_scores(out, [month]))


def topics_of_month(out: str, month: str, gazetteer: str, scores, store: MonthEvents | None = None) -> TopicList:
    """The month's topics from the warehouse's Events (``store``: as the report step reads them) and
    ``scores`` (``month_scores``' rows, or a function giving them when the topics need them)."""
    store = store or MonthEvents(out)
    # DataFrames: topics convert only the events a topic can hold
    events = store.latest([month], columns=RECORD_COLUMNS)
    history = store.latest([shift_month(month, -k) for k in range(1, TOPIC_HISTORY_MONTHS + 1)],
                           columns=RECORD_COLUMNS)
    previous = read_topics_json(Path(out) / "reports" / shift_month(month, -1) / "topics.json")
    return build_topics(events, scores, history, previous, schemas.taxonomy(), read_gazetteer_rows(gazetteer), month)


class TopicsProcess:
    """``topics_of_month`` in a second interpreter, started at once; it reads the Events once they are
    written (at once unless ``events_written=False``: then after ``events_written()``) and the scores
    after ``scores_written``; ``result()`` waits for it."""

    def __init__(self, out: str, month: str, gazetteer: str, python: str = sys.executable,
                 events_written: bool = True):
        self._args = (out, month, gazetteer)
        self._process = SecondProcess("pipelines.month_topics", [out, month, gazetteer], "the month's topics", python)
        if events_written:
            self.events_written()

    def events_written(self) -> None:
        self._process.tell(EVENTS_WRITTEN)

    def scores_written(self) -> None:
        self._process.tell(SCORES_WRITTEN)

    def result(self, scores: pd.DataFrame, store: MonthEvents | None = None) -> TopicList:
        """The second process's topics; if it failed, the topics of this process from ``scores``
        (``month_rows``')."""
        topics = self._process.result()
        return topics if topics is not None else topics_of_month(*self._args, scores, store)

    def close(self) -> None:
        self._process.close()


def scores_once_told(out: str, month: str) -> Callable[[], pd.DataFrame]:
    """In a second process: the month's scores for ``topics_of_month``, read once the caller tells
    they are written (``SCORES_WRITTEN``)."""
    def scores() -> pd.DataFrame:
        wait_to_hear(SCORES_WRITTEN)
        return month_scores(out, month)
    return scores


def main(argv: list[str]) -> int:
    from pipelines.runners import fewer_collections  # as the batch job runs the step

    result, out, month, gazetteer = argv
    wait_to_hear(EVENTS_WRITTEN)
    with fewer_collections():
        topics = topics_of_month(out, month, gazetteer, scores_once_told(out, month))
    write_result(result, topics)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
