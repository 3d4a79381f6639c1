"""The stream job's assembly: Events → ``WarnOnSeries`` → alert sinks.

The Event source is pluggable: ``TestStream`` in tests, Kafka on a streaming runner (see
docs/streaming.md), and, on one machine, the warehouse plus freshly ingested inbox files as a
bounded collection (``jobs/commands/stream.py``). Only the source and the firing policy differ.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path

import apache_beam as beam
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import sinks, warehouse
from pipelines.alert_sinks import (AlertStore, PublishAlerts, WebhookNotifier, dead_letter_path, deliver_pending,
                                   from_json_line)
from pipelines.gazetteer import read_gazetteer_rows, region_names
from pipelines.inbox_watch import Journal, LandingDetector, feed_files, new_landed_files, state_dir
from pipelines.ingest import IngestFeeds, default_ingest_time
from pipelines.ledger import file_sha256
from pipelines.link import LinkIncidents
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.read import inbox_digest
from pipelines.warn import RiskScorer, WarnOnSeries, WarnPolicy
from pipelines.windows import SERIES_WINDOWS

LOG = logging.getLogger(__name__)

STREAM_RUNNER = "BundleBasedDirectRunner"  # the local runner that streams TestStream without Prism
_EVENT_TIME_FIELDS = ("reported_at", "ingested_at", "closed_at")


def event_from_json(payload: bytes | str) -> dict:
    """An Event serialised as JSON (ISO-8601 times), e.g. a Kafka message value."""
    event = json.loads(payload)
    for name in _EVENT_TIME_FIELDS:
        if event.get(name):
            value = dt.datetime.fromisoformat(event[name])
            if value.tzinfo is None:
                raise ValueError(f"{name} {event[name]!r} has no UTC offset")
            event[name] = value.astimezone(TZ)
    return event


def event_to_json(event: dict) -> bytes:
    record = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in event.items()}
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


class ReadEventsFromKafka(beam.PTransform):
    """Events published as JSON on a Kafka topic (one Event per message value).

    ``ReadFromKafka`` is a cross-language transform: it needs Java and a runner that can expand
    it (Flink, Dataflow, Prism); the Python direct runner refuses it.
    """

    def __init__(self, bootstrap_servers: str, topic: str, consumer_group: str = "riskwatch-stream"):
        super().__init__()
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.consumer_group = consumer_group

    def expand(self, pbegin):
        from apache_beam.io.kafka import ReadFromKafka

        return (
            pbegin
            | "ReadKafka" >> ReadFromKafka(
                consumer_config={"bootstrap.servers": self.bootstrap_servers, "group.id": self.consumer_group,
                                 "auto.offset.reset": "earliest"},
                topics=[self.topic],
                with_metadata=False,
                commit_offset_in_finalize=True,
            )
            | "Value" >> beam.Map(lambda kv: event_from_json(kv[1]))
        )


def warn_and_publish(events, history, prior_alerts, policy: WarnPolicy, scorer, out_dir: str,
                     webhook_url: str | None = None, windows=None):
    """The streaming tail shared by every source: warnings recorded and sent as they are raised."""
    kwargs = {"windows": windows} if windows else {}
    alerts = events | "Warn" >> WarnOnSeries(history, prior_alerts, policy, scorer, **kwargs)
    return alerts | "Publish" >> beam.ParDo(PublishAlerts(out_dir, webhook_url))


# ---------------------------------------------------------------------------------------------
# The embedded default on one machine: repeated bounded runs over the alert horizon


def month_paths(out_dir, start: dt.datetime, end: dt.datetime, exclude: str) -> list[str]:
    """Event files of the warehouse months overlapping start..end, without a re-run's own files."""
    root = Path(out_dir) / "warehouse" / "events"
    months = set()
    day = start.date().replace(day=1)
    while day <= end.date():
        months.add(f"month={day:%Y-%m}")
        day = (day + dt.timedelta(days=32)).replace(day=1)
    return sorted(str(p) for m in months for p in (root / m).glob("*.parquet") if exclude not in p.name)


class _WriteStagedAlerts(beam.DoFn):
    def __init__(self, path: str):
        self.path = path

    def process(self, keyed):
        from pipelines.alert_sinks import to_json_line, write_atomic

        _, alerts = keyed
        data = "".join(to_json_line(a) for a in sorted(alerts, key=lambda a: a["alert_id"]))
        write_atomic(Path(self.path), data.encode("utf-8"))


@dataclasses.dataclass
class EmbeddedConfig:
    inbox: str
    gazetteer: str
    out: str
    hmac_key: bytes
    policy: WarnPolicy
    history_days: int = 90
    stable_seconds: float = 5.0
    webhook_url: str | None = None
    beam_args: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CycleResult:
    run_id: str | None
    files: int
    events: int
    alerts: list


class EmbeddedStream:
    """Watches the inbox; each cycle ingests the files that landed and decides the warnings."""

    def __init__(self, config: EmbeddedConfig, scorer=None):
        self.config = config
        self.scorer = scorer or RiskScorer(region_names(read_gazetteer_rows(config.gazetteer)))
        self.detector = LandingDetector(config.stable_seconds)
        self.store = AlertStore(config.out)

    def recover(self) -> list[CycleResult]:
        """Redo runs a previous process began but did not finish, with their own files."""
        journal = Journal.open(self.config.out)
        results = []
        for run_id, relpaths in sorted(journal.pending.items()):
            present = {f.relpath: f for f in feed_files(self.config.inbox)}
            files = [present[r] for r in relpaths if r in present]
            missing = sorted(set(relpaths) - set(present))
            if missing:
                LOG.error("run %s: files gone from the inbox since, not re-ingested: %s", run_id, missing)
            checksums = {f.relpath: file_sha256(f.path) for f in files}
            journal.pending[run_id] = [f.relpath for f in files]
            LOG.info("redoing interrupted run %s (%d files)", run_id, len(files))
            results.append(self._run(journal, run_id, files, checksums))
        return results

    def cycle(self) -> CycleResult:
        journal = Journal.open(self.config.out)
        files, checksums = new_landed_files(self.config.inbox, journal, self.detector)
        if not files:
            return CycleResult(None, 0, 0, [])
        ingest_time = default_ingest_time(files)
        run_id = f"{ingest_time:%Y%m%dT%H%M%S}-{inbox_digest(files)[:12]}"
        journal.begin(run_id, [f.relpath for f in files])
        return self._run(journal, run_id, files, checksums)

    def _run(self, journal: Journal, run_id: str, files: list, checksums: dict) -> CycleResult:
        cfg = self.config
        digest = inbox_digest(files)[:12]
        staging = state_dir(cfg.out) / "staging" / run_id
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if files:
            self._ingest(files, digest, run_id, staging)
        staged = sorted(str(p) for p in (staging / "warehouse" / "events").glob("*/*.parquet"))
        fresh = pq.read_table(staged, columns=["reported_at", "batch_id"]) if staged else None
        alerts: list = []
        if fresh is not None and fresh.num_rows:
            alerts = self._warn(fresh, staged, digest, staging)
        _move_tree(staging, Path(cfg.out))
        new = self.store.append(alerts)
        if new:
            self.store.write_parquet(new, f"alerts-{run_id}")
        if cfg.webhook_url:
            deliver_pending(self.store, WebhookNotifier(cfg.webhook_url, dead_letter_path(cfg.out)))
        journal.commit(run_id, checksums)
        shutil.rmtree(staging, ignore_errors=True)
        n_events = fresh.num_rows if fresh is not None else 0
        LOG.info("run %s: %d files, %d events, %d new warnings", run_id, len(files), n_events, len(new))
        return CycleResult(run_id, len(files), n_events, new)

    def _ingest(self, files, digest: str, run_id: str, staging: Path) -> None:
        cfg = self.config
        ingest_time = default_ingest_time(files)
        header = {"job": "stream", "run_id": run_id, "inbox": cfg.inbox, "gazetteer": cfg.gazetteer,
                  "ingest_time": ingest_time.isoformat()}
        with beam.Pipeline(options=beam_options(cfg.beam_args)) as p:
            ingested = p | "Ingest" >> IngestFeeds(cfg.inbox, cfg.gazetteer, cfg.hmac_key, ingest_time, files,
                                                   classify=True)
            _ = ingested["events"] | "WriteEvents" >> sinks.WriteEvents(str(staging), digest)
            _ = ingested["quarantine"] | "WriteQuarantine" >> sinks.WriteQuarantine(str(staging), digest)
            _ = ingested["accounting"] | "WriteManifest" >> sinks.WriteManifest(
                sinks.manifest_path(str(staging), "stream", run_id), header)

    def _warn(self, fresh, staged: list[str], digest: str, staging: Path) -> list[dict]:
        cfg = self.config
        reach = dt.timedelta(seconds=max(w.size_s for w in SERIES_WINDOWS))
        times = fresh.column("reported_at")
        first = pc.min(times).as_py().astimezone(TZ)
        last = pc.max(times).as_py().astimezone(TZ)
        lo, hi = first - reach, last + reach
        paths = month_paths(cfg.out, lo - dt.timedelta(days=cfg.history_days), hi, digest) + staged
        policy = dataclasses.replace(cfg.policy, fresh_batches=frozenset(pc.unique(fresh.column("batch_id")).to_pylist()))
        cooldown = dt.timedelta(seconds=policy.cooldown_s)
        prior = [a for a in self.store.raised() if a["window_end"] >= lo - cooldown]
        out_path = staging / "alerts.staged.jsonl"
        with beam.Pipeline(options=beam_options(cfg.beam_args)) as p:
            stored = p | "Events" >> warehouse.ReadEvents(paths)
            recent = (stored
                      | "Horizon" >> beam.Filter(lambda e: lo <= e["reported_at"] < hi)
                      | "Link" >> LinkIncidents())
            alerts = recent | "Warn" >> WarnOnSeries(stored, p | "Prior" >> beam.Create(prior), policy, self.scorer)
            _ = (alerts
                 | "One" >> beam.Map(lambda a: ("", a))
                 | "All" >> beam.GroupByKey()
                 | "Stage" >> beam.ParDo(_WriteStagedAlerts(str(out_path))))
        if not out_path.exists():
            return []
        lines = out_path.read_text(encoding="utf-8").splitlines(keepends=True)
        out_path.unlink()
        return [from_json_line(line) for line in lines]


def _move_tree(src: Path, dst: Path) -> None:
    """Staged outputs into place, file by file with renames (names are deterministic per run)."""
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
