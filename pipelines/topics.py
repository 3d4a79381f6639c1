"""Monthly topics as Beam transforms: the same steps as ``models.topics.build_topics``, with the
per-group work (clustering and each candidate topic's evidence, the costly part) spread over
workers; every township × domain with events is looked at, the county-wide counts per township ×
domain × grievance × month × signal or none (for the seasonal factors, and a first month's signal
shares) come in as a side input. Only the topics the month lists get keywords and excerpts: the
list, cut over all groups' topics, goes back to the groups as a side input
(``models.topics.listed_by_group``). The history begins where the feeds' coverage does
(``CoveredHistory``).

    {'events': month events, 'history': earlier events, 'scores': score rows}
        | BuildTopics(month, previous_topics, gazetteer_rows)
        → one ``TopicList`` (ranked topics + last month's closed ones)
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from models import topics as model
from pipelines.score import DataStart


class _KeyByGroup(beam.DoFn):
    """(township_code, domain) → event record, for events of the given months that a topic can hold."""

    def __init__(self, months: Sequence[str]):
        self._months = set(months)
        self._kept = Metrics.counter("topics", "events_in_groups")

    def process(self, event: Mapping):
        record = model.as_record(event)
        key = model.group_key(record)
        if key and record["month"] in self._months:
            self._kept.inc()
            yield key, record


class CoveredHistory(beam.PTransform):
    """(month events, history events) → the history's records from its first day (``models.topics.history_start``):
    where the feeds' coverage begins by the records per day of both (``pipelines.score.DataStart``). The day is
    joined to each day of the history months, not handed over as a side input."""

    def __init__(self, month: str, params: model.TopicParams):
        super().__init__()
        self._month, self._params = month, params

    def expand(self, inputs):
        events, history = inputs
        history = history | "HistoryRecords" >> beam.Map(model.as_record)
        start = (
            (events, history)
            | "AllEvents" >> beam.Flatten()
            | "RecordDays" >> beam.Map(lambda e: model.record_day(model.as_record(e)))
            | "RecordsPerDay" >> beam.combiners.Count.PerElement()
            | "DataStart" >> DataStart(model.month_end(self._month))
            | "HistoryStart" >> beam.Map(model.covered_from, self._params)
        )
        days = self._history_days()
        return (
            {"records": history | "ByDay" >> beam.Map(lambda r: (model.record_day(r), r)),
             "start": start | "StartPerDay" >> beam.FlatMap(lambda day: [(d, day) for d in days])}
            | "JoinStart" >> beam.CoGroupByKey()
            | "Covered" >> beam.FlatMapTuple(_covered_day)
        )

    def _history_days(self) -> list[str]:
        first = dt.date.fromisoformat(model.shift_month(self._month, -self._params.history_months) + "-01")
        last = model.month_end(model.shift_month(self._month, -1))
        return [(first + dt.timedelta(days=k)).isoformat() for k in range((last - first).days + 1)]


def _covered_day(day: str, joined: Mapping) -> Iterable[dict]:
    # no start joined: no records at all, or a day outside the history months (not kept as history anyway)
    return model.covered_history(joined["records"], next(iter(joined["start"]), None))


class _CountKey(beam.DoFn):
    """``models.topics.count_key`` of a keyed event: what the seasonal factors and signal shares count."""

    def setup(self):
        self._grievances = model.GrievanceVocabulary(model.load_lexicon())

    def process(self, keyed: tuple):
        yield model.count_key(self._grievances, keyed[1])


class _ClusterGroup(beam.DoFn):
    """Topics of one township × domain. The tokenizer and lexicons load once per worker."""

    def __init__(self, month: str, gazetteer_rows: Sequence[Mapping], params: model.TopicParams,
                 previous: Sequence[Mapping]):
        self._month = month
        self._gazetteer_rows = list(gazetteer_rows)
        self._params = params
        self._previous = list(previous)
        self._topics = Metrics.counter("topics", "topics")
        self._builder = None

    def setup(self):
        self._builder = model.TopicBuilder(self._gazetteer_rows, params=self._params)

    def process(self, element, regions: Mapping, counts: Mapping):
        key, grouped = element
        found = self._builder.group_topics(key, list(grouped["events"]), list(grouped["history"]), regions.get(key),
                                           self._month, counts, self._previous)
        self._topics.inc(len(found))
        yield from found


class _PresentListed(beam.DoFn):
    """Keywords and excerpts of a township × domain's listed topics (``TopicBuilder.present``), weighed
    against the group's events: the side input holds the few dozen topics the month lists."""

    def __init__(self, month: str, gazetteer_rows: Sequence[Mapping], params: model.TopicParams):
        self._month = month
        self._gazetteer_rows = list(gazetteer_rows)
        self._params = params
        self._builder = None

    def setup(self):
        self._builder = model.TopicBuilder(self._gazetteer_rows, params=self._params)

    def process(self, element, listed: Mapping):
        key, grouped = element
        if key not in listed:
            return
        background = self._builder.background(list(grouped["events"]), list(grouped["history"]), self._month)
        for topic in listed[key]:
            # side input values may be shared between bundles: present a copy
            yield self._builder.present(dataclasses.replace(topic), background)


class _PreviousTopicHits(beam.DoFn):
    """topic_id of last month's topics that an event of this month still speaks of."""

    def __init__(self, month: str, previous: Sequence[Mapping]):
        self._month = month
        self._previous = list(previous)

    def process(self, event: Mapping):
        record = model.event_record(event)
        if record["month"] == self._month:
            yield from model.previous_topic_hits(record, self._previous)


def _finalise(topics: list, hits: Mapping[str, int], month: str, previous: Sequence[Mapping],
              params: model.TopicParams) -> model.TopicList:
    return model.finalise(month, topics, previous, hits, params)


class BuildTopics(beam.PTransform):
    """Month events, history events and score rows → one ranked ``TopicList``.

    ``previous_topics``: last month's topics.json document (or its `topics` list), read by the
    caller since it is one small file; ``gazetteer_rows`` as ``pipelines.gazetteer.read_gazetteer_rows``.
    """

    def __init__(self, month: str, previous_topics: Any = None, gazetteer_rows: Iterable[Mapping] = (),
                 params: model.TopicParams = model.TopicParams()):
        super().__init__()
        self._month = month
        self._previous = model.previous_topic_list(previous_topics)
        self._gazetteer_rows = list(gazetteer_rows)
        self._params = params

    def expand(self, inputs: Mapping[str, beam.PCollection]):
        month, params = self._month, self._params
        history_months = [model.shift_month(month, -k) for k in range(1, params.history_months + 1)]
        regions = (
            inputs["scores"]
            | "AllScores" >> beam.combiners.ToList()
            | "RegionScores" >> beam.Map(model.region_scores, month)
        )
        keyed_month = inputs["events"] | "KeyMonth" >> beam.ParDo(_KeyByGroup([month]))
        keyed_history = ((inputs["events"], inputs["history"]) | "CoveredHistory" >> CoveredHistory(month, params)
                         | "KeyHistory" >> beam.ParDo(_KeyByGroup(history_months)))
        counts = (
            (keyed_month, keyed_history)
            | "AllKeyed" >> beam.Flatten()
            | "CountKey" >> beam.ParDo(_CountKey())
            | "CountGroupMonths" >> beam.combiners.Count.PerElement()
        )
        groups = {"events": keyed_month, "history": keyed_history} | "JoinHistory" >> beam.CoGroupByKey()
        listed = (
            groups
            | "ClusterGroups" >> beam.ParDo(_ClusterGroup(month, self._gazetteer_rows, params, self._previous),
                                            beam.pvalue.AsSingleton(regions), beam.pvalue.AsDict(counts))
            | "AllDrafts" >> beam.combiners.ToList()
            | "ListedByGroup" >> beam.Map(model.listed_by_group, params)
        )
        found = groups | "PresentListed" >> beam.ParDo(_PresentListed(month, self._gazetteer_rows, params),
                                                      beam.pvalue.AsSingleton(listed))
        hits = (
            inputs["events"]
            | "PreviousTopicHits" >> beam.ParDo(_PreviousTopicHits(month, self._previous))
            | "CountHits" >> beam.combiners.Count.PerElement()
        )
        return (
            found
            | "AllTopics" >> beam.combiners.ToList()
            | "RankAndStatus" >> beam.Map(_finalise, beam.pvalue.AsDict(hits), month, self._previous, params)
        )
