"""The Beam part of ``riskwatch evaluate-detection``: the production transforms on simulated events.

Events (Parquet) → domains (the classifier, or the truth's for detection alone) → ``LinkIncidents``
→ ``DailyCounts`` → ``ScoreTallies`` (townships only; the feed gaps, and the history beginning where the
feeds' coverage does, as the batch job scores). Three small text outputs
for the driver-side comparison with the truth (``models.detection_eval``): ``incidents.csv``
(event_id, incident_id, domain), ``daily_counts.jsonl`` (township × domain × day incidents and
records) and ``day_scores.jsonl`` (the day score rows).
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import apache_beam as beam

from pipelines.classify import ClassifyEvents
from pipelines.link import LinkIncidents
from pipelines.options import beam_options
from pipelines.score import DailyCounts, DomainBatches, FeedDayCounts, ScoreTallies
from pipelines.warehouse import FEED_DAYS, SERIES_TALLIES


def truth_domain(line: str) -> tuple[str, str]:
    """A ``truth/records.csv`` line → (event_id, domain)."""
    row = next(csv.reader([line]))
    return f"{row[0]}:{row[1]}", row[4]


class _SetTrueDomain(beam.DoFn):
    """(event_id, {events, truth}) → the events with the truth's domain; signals still come from
    the text, as the classifier step adds them."""

    def setup(self):
        from pipelines.signals import SignalLexicon

        self.lexicon = SignalLexicon.from_schema()
        self.missing = beam.metrics.Metrics.counter("evaluation", "events_without_truth")

    def process(self, joined):
        _, grouped = joined
        domains = list(grouped["truth"])
        for event in grouped["events"]:
            if not domains:
                self.missing.inc()
            found = self.lexicon.extract(event.get("text"), event.get("people_involved"))
            yield {**event, "domain": domains[0] if domains else "none", "domain_by": "truth",
                   "signals": list(dict.fromkeys([*(event.get("signals") or ()), *found]))}


class TruthDomains(beam.PTransform):
    """Events → the same Events with the simulator's true domain (joined on event_id)."""

    def __init__(self, records_csv: str):
        super().__init__()
        self._path = records_csv

    def expand(self, events):
        truth = (events.pipeline | "ReadTruth" >> beam.io.ReadFromText(self._path, skip_header_lines=1)
                 | "TruthDomain" >> beam.Map(truth_domain))
        return ({"events": events | "ById" >> beam.Map(lambda e: (e["event_id"], e)), "truth": truth}
                | "JoinTruth" >> beam.CoGroupByKey()
                | "SetDomain" >> beam.ParDo(_SetTrueDomain()))


def day_row_json(row: dict) -> str:
    return json.dumps({"date": row["period_start"].isoformat(), "township_code": row["township_code"],
                       "domain": row["domain"], "observed": row["observed"], "expected": row["expected"],
                       "score": row["score"], "level": row["level"], "complete": row["complete"]},
                      ensure_ascii=False)


def township_daily_json(kv) -> list[str]:
    ((_county, township, village, domain), date), tally = kv
    if village is not None:
        return []
    return [json.dumps({"date": date, "township_code": township, "domain": domain,
                        "incidents": tally["incidents"], "records": tally["records"]}, ensure_ascii=False)]


def _write(pcoll, label: str, path: str, suffix: str):
    return pcoll | label >> beam.io.WriteToText(path, suffix, shard_name_template="")


def run_detection_pipeline(events_pattern: str, truth_records: str, work: str, use_true_domains: bool,
                           model: Path | None, history_start: dt.date, target_start: dt.date, target_end: dt.date,
                           beam_args=None) -> None:
    from apache_beam.io.parquetio import ReadFromParquet

    with beam.Pipeline(options=beam_options(beam_args)) as p:
        events = p | "ReadEvents" >> ReadFromParquet(events_pattern)
        if use_true_domains:
            classified = events | "TruthDomains" >> TruthDomains(truth_records)
        else:
            classified = events | "Classify" >> ClassifyEvents(model)
        linked = classified | "Link" >> LinkIncidents()
        _write(linked | "IncidentPairs" >> beam.Map(lambda e: f"{e['event_id']},{e['incident_id']},{e['domain']}"),
               "WriteIncidents", f"{work}/incidents", ".csv")
        daily = linked | "DailyCounts" >> DailyCounts()
        _write(daily | "DailyJson" >> beam.FlatMap(township_daily_json), "WriteDaily", f"{work}/daily_counts", ".jsonl")
        tallies = {SERIES_TALLIES: daily | "DomainBatches" >> DomainBatches(),
                   FEED_DAYS: classified | "FeedDays" >> FeedDayCounts()}
        day_rows = (tallies
                    | "Score" >> ScoreTallies(target_start, target_end, history_start, villages=False)
                    | "DayRows" >> beam.Filter(lambda r: r["period"] == "day"))
        _write(day_rows | "DayJson" >> beam.Map(day_row_json), "WriteScores", f"{work}/day_scores", ".jsonl")
