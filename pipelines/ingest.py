"""The ingest composite: inbox files → Events, quarantine and per-file accounting.

``IngestFeeds`` is what the batch and the stream jobs apply; ``run_ingest`` runs it alone with
the sinks and checks that every row of every file is accounted for:
rows_read = accepted + superseded + quarantined.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import sinks
from pipelines.classify import ClassifyChunks
from pipelines.gazetteer import UNRESOLVED, read_gazetteer_rows, region_names
from pipelines.normalise import TZ, parse_time
from pipelines.options import beam_options
from pipelines.packed_events import EventTables, apply_each, flatten
from pipelines.read import FILES_TAG, FeedFile, ReadFeeds, discover, inbox_digest
from pipelines.runners import ParDoWithOutputs, run_to_completion
from pipelines.validate import QUARANTINE_TAG, EventPacker, ValidateRows, event_shard, version_rank

log = logging.getLogger(__name__)
SUPERSEDED_TAG = "superseded"
# Shards the versions of records meet in: enough to spread over many workers, few enough that
# each shard's list of versions is large.
SUPERSEDE_SHARDS = 64
_ENTRY_KEYS = ("feed", "file", "sha256", "batch_id", "bytes", "format", "declared_format", "encoding", "delimiter",
               "sheets", "skipped_sheets", "header_line", "header", "header_mapping", "unmapped_columns",
               "missing_required", "title_rows", "blank_rows", "error")


class AccountingError(RuntimeError):
    """Some file's rows do not add up: rows were lost or counted twice."""


def default_ingest_time(files: list[FeedFile]) -> dt.datetime:
    """When not given: the newest file's modification time, so re-runs on one inbox agree."""
    if not files:
        return dt.datetime.now(TZ).replace(microsecond=0)
    return dt.datetime.fromtimestamp(int(max(f.mtime for f in files)), TZ)


def parse_ingest_time(text: str) -> dt.datetime:
    parsed = parse_time(text)
    if parsed is None:
        raise ValueError(f"--ingest-time {text!r} is not a date/time (e.g. 2026-11-01T00:00:00+08:00)")
    return parsed


class PickLatestVersion(beam.DoFn):
    """(shard, lists of packed Events) → the latest version of each record; the others on
    ``superseded`` (counted, not kept).

    ``tables``: the shard's latest versions leave as one table of Events (``((), Arrow IPC bytes)``,
    ``packed_events.EventTables``), made from their packed tuples: a shard holds every version of
    its records, so its winners are final there."""

    def __init__(self, file_order: dict[str, tuple], tables: bool = False):
        super().__init__()
        self._file_order = file_order
        self._tables = tables

    def setup(self):
        self._packer = EventPacker()
        self._id = self._packer.names.index("event_id")
        self._events = EventTables()

    def process(self, keyed):
        _, chunks = keyed
        versions: dict[str, list[tuple]] = {}
        for chunk in chunks:
            for packed in chunk:
                versions.setdefault(packed[self._id], []).append(packed)
        unpack = self._packer.unpack
        latest = []  # tables: the winners, packed
        for packed in versions.values():
            if len(packed) == 1:
                if self._tables:
                    latest.append(packed[0])
                else:
                    yield unpack(packed[0])
                continue
            ranked = sorted(((unpack(p), p) for p in packed), key=lambda pair: version_rank(pair[0], self._file_order))
            for older, _ in ranked[:-1]:
                yield beam.pvalue.TaggedOutput(SUPERSEDED_TAG, older)
            if self._tables:
                latest.append(ranked[-1][1])
            else:
                yield ranked[-1][0]
        if latest:
            yield (), self._events.to_bytes(self._events.table(latest))


def _packed_by_shard(events: list[dict], packer: EventPacker, shards: int):
    by_shard: dict[int, list[tuple]] = {}
    for event in events:
        by_shard.setdefault(event_shard(event["event_id"], shards), []).append(packer.pack(event))
    return by_shard.items()


class SupersedeChunks(beam.PTransform):
    """Lists of Events (one PCollection or several) → one Event per event_id (``events``) and the
    versions it replaced (``superseded``): overlapping exports and status updates collapse to the latest.

    Versions meet by a hash shard of their event_id, not by the id itself, and cross the shuffle as
    lists of packed tuples: one shuffled element per shard and chunk instead of one pickled dict
    of datetimes per Event. ``tables``: ``events`` holds one table of Events per shard
    (``PickLatestVersion``); ``superseded`` holds Events either way.
    """

    def __init__(self, file_order: dict[str, tuple], shards: int = SUPERSEDE_SHARDS, tables: bool = False):
        super().__init__()
        self._file_order = file_order
        self._shards = shards
        self._tables = tables

    def expand(self, chunks):
        packer, shards = EventPacker(), self._shards
        packed = apply_each(chunks, "PackByShard", lambda: beam.FlatMap(_packed_by_shard, packer, shards))
        return (
            flatten(packed, "AllShards")
            | "GroupVersions" >> beam.GroupByKey()
            | "PickLatest" >> ParDoWithOutputs(PickLatestVersion(self._file_order, self._tables), SUPERSEDED_TAG,
                                               main="events")
        )


def _rows_of_files(element, files: frozenset):
    """A table of Events (``packed_events.is_event_table``) → [the table of its rows read from
    ``files``], or [] when there are none."""
    annotations, data = element
    table = EventTables.from_bytes(data)
    read = pc.is_in(table.column("feed_file"), value_set=pa.array(sorted(files), pa.string()))
    if pc.all(read).as_py():
        return [element]
    kept = table.filter(read)
    return [(annotations, EventTables.to_bytes(kept))] if kept.num_rows else []


def _valid_by_file(events: list[dict]):
    """A chunk of validated Events → (file, ("valid", (events, of which unresolved))) per file."""
    counts: dict[str, list[int]] = {}
    for event in events:
        count = counts.setdefault(event["feed_file"], [0, 0])
        count[0] += 1
        count[1] += event["region_resolved_by"] == UNRESOLVED
    return [(file, ("valid", tuple(count))) for file, count in counts.items()]


def _accounting_entry(keyed) -> dict:
    file, items = keyed
    info, valid, unresolved, superseded, superseded_unresolved, quarantined = None, 0, 0, 0, 0, {}
    for kind, value in items:
        if kind == "info":
            info = value
        elif kind == "valid":
            valid += value[0]
            unresolved += value[1]
        elif kind == "superseded":
            superseded += 1
            superseded_unresolved += value
        else:
            quarantined[value] = quarantined.get(value, 0) + 1
    entry = {k: info.get(k) for k in _ENTRY_KEYS}
    # Every valid row ends as exactly one Event: the record's latest version, or a superseded one.
    entry.update(
        rows_read=info["rows_read"],
        accepted=valid - superseded,
        superseded=superseded,
        quarantined=dict(sorted(quarantined.items())),
        unresolved_regions=unresolved - superseded_unresolved,
    )
    entry["balanced"] = entry["rows_read"] == entry["accepted"] + entry["superseded"] + sum(quarantined.values())
    return entry


class AccountPerFile(beam.PTransform):
    """File infos + valid counts per chunk + superseded versions + quarantine → one accounting
    entry per file. Only the counts cross the shuffle, never the accepted Events themselves."""

    def expand(self, pcolls):
        infos = pcolls["files"] | "InfoByFile" >> beam.Map(lambda i: (i["file"], ("info", i)))
        superseded = pcolls["superseded"] | "SupersededByFile" >> beam.Map(
            lambda e: (e["feed_file"], ("superseded", int(e["region_resolved_by"] == UNRESOLVED))))
        quarantined = pcolls["quarantine"] | "QuarantinedByFile" >> beam.Map(
            lambda q: (q["file"], ("quarantine", q["reason"]))
        )
        return (
            (infos, pcolls["valid"], superseded, quarantined)
            | "AllByFile" >> beam.Flatten()
            | "GroupByFile" >> beam.GroupByKey()
            | "Entry" >> beam.Map(_accounting_entry)
        )


def file_order(files: list[FeedFile]) -> dict[str, tuple]:
    """How versions of a record from different files rank: the newer file, then its path."""
    return {f.relpath: (int(f.mtime), f.relpath) for f in files}


class IngestFeeds(beam.PTransform):
    """Inbox → ``{"events", "quarantine", "accounting", "superseded", "replaced"}`` PCollections
    (``replaced``: None without ``stored_versions``).

    Files are listed and the gazetteer is read when the pipeline is built; the gazetteer rows
    travel with the DoFn, so workers need no access to the driver's disk for it.
    ``ingest_time`` is the run's clock: it stamps ``ingested_at`` and bounds ``future_time``.
    ``order_files`` (default ``files``) rank versions of one record by file (``file_order``).
    ``classify``: Events leave classified (``ClassifyChunks`` on the validated chunks, before the
    supersede shuffle; ``model_dir`` None = the bundled model), which saves the batch job a shuffle.
    ``tables``: ``events`` holds the Events as tables, one per supersede shard (``packed_events.
    is_event_table``; the batch job's: its linking, writers and counters take them whole); the
    other outputs hold Events either way.

    ``stored_versions``: a transform from lists of the rows' event_ids (a chunk's) to lists of
    versions of those records kept elsewhere (``pipelines.warehouse.LookupStoredVersions``: an
    incremental run's warehouse). They meet the rows' versions in the same supersede shuffle. A stored version that wins stays where it
    is (not in ``events``); one that loses is returned on ``replaced``; rows that lose to a stored
    version are accounted as superseded, as to a newer row.
    """

    def __init__(self, inbox: str, gazetteer_path: str, hmac_key: bytes, ingest_time: dt.datetime,
                 files: list[FeedFile] | None = None, order_files: list[FeedFile] | None = None,
                 classify: bool = False, model_dir: str | None = None,
                 stored_versions: beam.PTransform | None = None, tables: bool = False):
        super().__init__()
        self._classify, self._model_dir = classify, model_dir
        self._tables = tables
        self._stored_versions = stored_versions
        self.files = discover(inbox) if files is None else files
        self.ingest_time = ingest_time.astimezone(TZ)
        self._gazetteer_rows = read_gazetteer_rows(gazetteer_path)
        self.region_names = region_names(self._gazetteer_rows)
        self._key = hmac_key
        self._order_files = self.files if order_files is None else order_files

    def expand(self, pbegin):
        read = pbegin | "Read" >> ReadFeeds(self.files)
        validated = read.chunks | "Validate" >> ParDoWithOutputs(
            ValidateRows(self._gazetteer_rows, self._key, self.ingest_time), QUARANTINE_TAG, main="events")
        valid = validated.events
        if self._classify:
            valid = valid | "Classify" >> ClassifyChunks(self._model_dir)
        versions = [valid]
        if self._stored_versions is not None:
            versions.append(valid | "EventIds" >> beam.Map(lambda chunk: [e["event_id"] for e in chunk])
                            | "StoredVersions" >> self._stored_versions)
        latest = tuple(versions) | "Supersede" >> SupersedeChunks(file_order(self._order_files), tables=self._tables)
        events, superseded, replaced = latest.events, latest[SUPERSEDED_TAG], None
        if self._stored_versions is not None:
            read_files = frozenset(f.relpath for f in self.files)
            won = (beam.FlatMap(_rows_of_files, read_files) if self._tables
                   else beam.Filter(lambda e: e["feed_file"] in read_files))
            events = events | "ReadWon" >> won
            superseded = latest[SUPERSEDED_TAG] | "ReadSuperseded" >> beam.Filter(lambda e: e["feed_file"] in read_files)
            replaced = latest[SUPERSEDED_TAG] | "StoredReplaced" >> beam.Filter(lambda e: e["feed_file"] not in read_files)
        accounting = {
            "files": read[FILES_TAG], "valid": valid | "ValidByFile" >> beam.FlatMap(_valid_by_file),
            "superseded": superseded, "quarantine": validated[QUARANTINE_TAG],
        } | "Account" >> AccountPerFile()
        return {"events": events, "quarantine": validated[QUARANTINE_TAG], "accounting": accounting,
                "superseded": superseded, "replaced": replaced}


@dataclass
class IngestResult:
    manifest_path: str
    manifest: dict


def unbalanced_files(manifest: dict) -> list[dict]:
    return [e for e in manifest["files"] if not e["balanced"]]


def run_ingest(inbox: str, gazetteer_path: str, out: str, hmac_key: bytes,
               ingest_time: dt.datetime | None = None, beam_args: list[str] | None = None,
               event_shards: int = 1, classify: bool = False) -> IngestResult:
    """Ingest an inbox into ``out`` and return the manifest; AccountingError if rows do not add up, or
    if the Event files written do not hold every row accepted.
    ``classify``: the Events are written classified (``IngestFeeds(classify=True)``, as the batch job ingests)."""
    files = discover(inbox)
    if not files:
        log.warning("no feed files under %s (expected sub-folders %s)", inbox, ", ".join(sorted({"hotline_12345", "police_110", "grid"})))
    ingest_time = (ingest_time or default_ingest_time(files)).astimezone(TZ)
    digest = inbox_digest(files)[:12]
    run_id = f"{ingest_time:%Y%m%dT%H%M%S}-{digest}"
    path = sinks.manifest_path(out, "ingest", run_id)
    header = {"job": "ingest", "run_id": run_id, "inbox": str(inbox), "gazetteer": str(gazetteer_path),
              "ingest_time": ingest_time.isoformat()}
    pipeline = beam.Pipeline(options=beam_options(beam_args))
    ingested = pipeline | "Ingest" >> IngestFeeds(inbox, gazetteer_path, hmac_key, ingest_time, files, classify=classify)
    written = [
        ingested["events"] | "WriteEvents" >> sinks.WriteEvents(out, digest, event_shards),
        ingested["quarantine"] | "WriteQuarantine" >> sinks.WriteQuarantine(out, digest),
    ]
    _ = ingested["accounting"] | "WriteManifest" >> sinks.WriteManifest(path, header, written, out)
    run_to_completion(pipeline)
    manifest = sinks.read_manifest(path)
    broken = unbalanced_files(manifest)
    if broken:
        names = "; ".join(
            f"{e['file']}: read {e['rows_read']} != accepted {e['accepted']} + superseded {e['superseded']} "
            f"+ quarantined {sum(e['quarantined'].values())}" for e in broken
        )
        raise AccountingError(f"rows do not add up in {len(broken)} file(s): {names} (manifest {path})")
    held = sinks.written_event_rows(out, manifest.get("written", []))
    lost = [f"{e['file']}: {e['accepted']} accepted, {held.get(e['file'], 0)} written"
            for e in manifest["files"] if held.get(e["file"], 0) != e["accepted"]]
    if lost:
        raise AccountingError("the Event files this run wrote do not hold the rows it accepted from "
                              + "; ".join(lost) + f" (manifest {path}); run it again")
    return IngestResult(path, manifest)
