"""The monthly batch job: one Beam pipeline from inbox to scores, then the month's topics and report.

    new inbox files ─ IngestFeeds ─ ClassifyNew ─ LinkIncidents ─┬─ WriteEvents (changed months) ─ (warehouse/events/) ─┐
    warehouse events ──┘  │  │                                  └─ ScoreMonths ─ WriteScores ─── (warehouse/scores/) ─┤
                          │  └─ quarantine ─ WriteQuarantine ──────────────────── (quarantine/) ────────────────────┤
                          └─ accounting ─────────────────────────────────────────────────────────── WriteManifest (manifests/)

Every sink yields what it wrote into the manifest step, the one terminal transform (the DaskRunner
computes only the last transform's branch; see docs/notes/performance.md, "Rules for portable
transforms"). The month as a whole (topics, report) is then read back from the warehouse, so every
step after the pipeline sees exactly what was written.

A run reads only the inbox files that the warehouse's ledger (``pipelines.ledger``) does not list;
the Events of the others are read back from the warehouse, so ``superseded`` still sees every
version of a record, classified events keep their domain, and every event is linked again (links
join neighbouring months). Only the months whose records changed, and their neighbours, are
rewritten. The first run, a changed or vanished file, or a new gazetteer, key or model read the
whole inbox, as does ``incremental=False``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from models.topics import shift_month
from pipelines import sinks, warehouse
from pipelines.classify import ClassifyEvents
from pipelines.ingest import AccountingError, IngestFeeds, default_ingest_time, unbalanced_files
from pipelines.ledger import Ledger, file_sha256, read_ledger, run_fingerprint, write_ledger
from pipelines.link import LinkIncidents
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.read import discover, inbox_digest
from pipelines.runners import run_to_completion
from pipelines.score import ScoreEvents, local_date

log = logging.getLogger(__name__)
HISTORY_MONTHS = 12


class BatchJobError(RuntimeError):
    """The job cannot do its work; the message says why and what to do."""


def parse_month(text: str) -> str:
    try:
        parsed = dt.datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise BatchJobError(f"month {text!r} is not of the form YYYY-MM (e.g. 2026-10)") from None
    return parsed.strftime("%Y-%m")


@dataclasses.dataclass(frozen=True)
class MonthRange:
    """The months a run reports on (``--month``, or ``--from``/``--to`` for a backfill)."""

    first: str
    last: str

    def __post_init__(self):
        if self.last < self.first:
            raise BatchJobError(f"--to {self.last} is before --from {self.first}")

    @property
    def months(self) -> list[str]:
        out, month = [], self.first
        while month <= self.last:
            out.append(month)
            month = shift_month(month, 1)
        return out

    @property
    def target_start(self) -> dt.date:
        return dt.date.fromisoformat(f"{self.first}-01")

    @property
    def target_end(self) -> dt.date:
        return dt.date.fromisoformat(f"{shift_month(self.last, 1)}-01") - dt.timedelta(days=1)

    @property
    def history_start(self) -> dt.date:
        return dt.date.fromisoformat(f"{shift_month(self.first, -HISTORY_MONTHS)}-01")


class ScoreMonths(beam.PTransform):
    """Linked Events → score rows of the months in range, each series scored against its own
    twelve months of history."""

    def __init__(self, months: MonthRange):
        super().__init__()
        self._months = months

    def expand(self, events):
        first, last = self._months.history_start, self._months.target_end
        return (
            events
            | "InScope" >> beam.Filter(lambda e: first <= local_date(e["reported_at"]) <= last)
            | "Score" >> ScoreEvents(self._months.target_start, self._months.target_end, self._months.history_start)
        )


class ChangedMonths(beam.PTransform):
    """The months whose event partitions an incremental run must rewrite: those of records from
    the run's new files, of the warehouse records they superseded, and one month either side
    (linking joins a month's incidents with the first hours of the next)."""

    def __init__(self, new_files: list[str]):
        super().__init__()
        self._new_files = frozenset(new_files)

    def expand(self, ingested):
        new_files = self._new_files
        added = ingested["events"] | "FromNewFiles" >> beam.Filter(lambda e: e["feed_file"] in new_files)
        replaced = ingested["superseded"] | "FromWarehouse" >> beam.Filter(lambda e: e["feed_file"] not in new_files)
        return (
            (added, replaced)
            | "Changed" >> beam.Flatten()
            | "Month" >> beam.Map(sinks.month_of)
            | "DistinctMonths" >> beam.Distinct()
            | "WithNeighbours" >> beam.FlatMap(lambda m: [shift_month(m, -1), m, shift_month(m, 1)])
        )


class ClassifyNew(beam.PTransform):
    """Classifies the Events that have no domain yet; those read back from the warehouse keep theirs."""

    def __init__(self, model_dir: str | None):
        super().__init__()
        self._model_dir = model_dir

    def expand(self, events):
        fresh = events | "Unclassified" >> beam.Filter(lambda e: e["domain"] is None)
        known = events | "Classified" >> beam.Filter(lambda e: e["domain"] is not None)
        return (fresh | "Classify" >> ClassifyEvents(self._model_dir), known) | "AllClassified" >> beam.Flatten()


def build_pipeline(pipeline: beam.Pipeline, *, ingest: IngestFeeds, out: str, months: MonthRange,
                   manifest_path: str, manifest_header: dict, model_dir: str | None = None) -> None:
    digest = inbox_digest(ingest.files)[:12]
    ingested = pipeline | "Ingest" >> ingest
    # Every Flatten adds its inputs' partitions on the DaskRunner, and each later shuffle costs
    # tasks per partition: split only when warehouse events are mixed in.
    classify = ClassifyNew(model_dir) if ingest.incremental else ClassifyEvents(model_dir)
    events = ingested["events"] | "Classify" >> classify | "Link" >> LinkIncidents()
    changed = (ingested | "ChangedMonths" >> ChangedMonths([f.relpath for f in ingest.files])
               if ingest.incremental else None)
    written = [
        events | "WriteEvents" >> sinks.WriteEvents(out, "batch", months=changed),
        ingested["quarantine"] | "WriteQuarantine" >> sinks.WriteQuarantine(out, digest),
        events | "ScoreMonths" >> ScoreMonths(months) | "WriteScores" >> warehouse.WriteScores(out),
    ]
    # Last, and fed by every sink: some runners compute only the last transform's branch.
    _ = ingested["accounting"] | "WriteManifest" >> sinks.WriteManifest(manifest_path, manifest_header, written, out)


@dataclasses.dataclass
class BatchResult:
    manifest_path: str
    manifest: dict
    reports: dict[str, dict[str, Path]]


Progress = Callable[[str], None]


def run_batch_pipeline(inbox: str, gazetteer: str, out: str, key: bytes, months: MonthRange, *,
                       beam_args: list[str] | None = None, ingest_time: dt.datetime | None = None,
                       model_dir: str | None = None, progress: Progress = log.info,
                       incremental: bool = True) -> tuple[str, dict]:
    """The Beam part of the batch job (inbox → warehouse, quarantine, manifest) on the runner that
    ``beam_args`` name; returns the manifest's path and content. Raises BatchJobError or
    AccountingError when it cannot do its work.

    With ``incremental`` and a matching ledger (``pipelines.ledger``), only inbox files not yet in
    the warehouse are read; the warehouse's Events stand in for the others, and only the months
    that change are rewritten. The manifest accounts for the files this run read.
    """
    if not Path(inbox).is_dir():
        raise BatchJobError(f"inbox {inbox} is not a folder (expected hotline_12345/, police_110/, grid/ inside)")
    if not Path(gazetteer).is_file():
        raise BatchJobError(f"gazetteer {gazetteer} does not exist (CSV with code,name,level,parent_code,aliases)")
    files = discover(inbox)
    if not files:
        raise BatchJobError(f"no feed files under {inbox}/hotline_12345, police_110 or grid")
    sha256 = {f.relpath: file_sha256(f.path) for f in files}
    fingerprint = run_fingerprint(gazetteer, key, _model_version(model_dir))
    known = read_ledger(out) if incremental else None
    new_files = known.new_files(files, sha256, fingerprint) if known else None
    ingest_time = (ingest_time or default_ingest_time(files)).astimezone(TZ)
    to_read = files if new_files is None else new_files
    run_id = f"{months.first}_{months.last}-{inbox_digest(to_read)[:12]}"
    path = sinks.manifest_path(out, "batch", run_id)
    header = {"job": "batch", "run_id": run_id, "months": months.months, "inbox": str(inbox),
              "gazetteer": str(gazetteer), "ingest_time": ingest_time.isoformat(),
              "read": "all_files" if new_files is None else "new_files", "files_in_inbox": len(files)}
    started = time.monotonic()
    progress(f"读取与处理 {len(to_read)} 个文件（共 {len(files)} 个；接入、校验、分类、关联、评分）…")
    prior = None if new_files is None else warehouse.ReadEvents(warehouse.batch_event_files(out))
    ingest = IngestFeeds(inbox, gazetteer, key, ingest_time, to_read, prior=prior, order_files=files)
    pipeline = beam.Pipeline(options=beam_options(beam_args))
    build_pipeline(pipeline, ingest=ingest, out=out, months=months, manifest_path=path, manifest_header=header,
                   model_dir=model_dir)
    run_to_completion(pipeline)
    with FileSystems.open(path) as f:
        manifest = json.loads(f.read().decode("utf-8"))
    broken = unbalanced_files(manifest)
    if broken:
        raise AccountingError("rows do not add up in: " + "; ".join(e["file"] for e in broken) + f" (manifest {path})")
    write_ledger(out, Ledger(fingerprint, sha256))
    totals = manifest["totals"]
    progress(f"接入完成：读取 {totals['rows_read']} 行，入库 {totals['accepted']}，"
             f"覆盖 {totals['superseded']}，隔离 {totals['quarantined']}（{time.monotonic() - started:.1f} 秒）")
    return path, manifest


def run_batch(inbox: str, gazetteer: str, out: str, key: bytes, months: MonthRange, *,
              beam_args: list[str] | None = None, ingest_time: dt.datetime | None = None,
              model_dir: str | None = None, progress: Progress = log.info, incremental: bool = True) -> BatchResult:
    """Run the whole chain for ``months``; raise BatchJobError or AccountingError when it cannot.
    ``incremental=False`` re-reads the whole inbox (see ``run_batch_pipeline``)."""
    from pipelines.monthly import report_month  # the report stack is only needed after the pipeline

    started = time.monotonic()
    path, manifest = run_batch_pipeline(inbox, gazetteer, out, key, months, beam_args=beam_args,
                                        ingest_time=ingest_time, model_dir=model_dir, progress=progress,
                                        incremental=incremental)
    pipeline_seconds = time.monotonic() - started
    reports, stages = {}, []
    for month in months.months:
        month_started = time.monotonic()
        progress(f"{month}：数据质量、研判选题与报告…")
        reports[month], summary = report_month(out, month, gazetteer)
        stages.append({"month": month, "seconds": round(time.monotonic() - month_started, 2), **summary})
        progress(f"{month}：{summary['topics']} 个选题，报告 {reports[month]['report.html']}")
    manifest.update(
        pipeline_seconds=round(pipeline_seconds, 2),
        seconds=round(time.monotonic() - started, 2),
        model=_model_version(model_dir),
        months_done=stages,
        outputs={m: {k: str(v) for k, v in r.items()} for m, r in reports.items()},
    )
    sinks.write_atomically(path, sinks.to_json(manifest, indent=2).encode("utf-8"))
    return BatchResult(path, manifest, reports)


def critical_findings(result: BatchResult) -> list[str]:
    """The data problems the quality policy marks critical, per month, as the report words them."""
    return [f"{s['month']}：{text}" for s in result.manifest["months_done"] for text in s["quality_critical"]]


def _model_version(model_dir: str | None) -> dict:
    from models.domain_classifier import DEFAULT_ARTIFACTS, ARTIFACT_NAME

    meta = Path(model_dir or DEFAULT_ARTIFACTS) / f"{ARTIFACT_NAME}.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    return {k: data.get(k) for k in ("model_version", "sklearn_version", "taxonomy_version", "training_data_sha256")}
