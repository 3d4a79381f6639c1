"""Ingest outputs: Events as Parquet partitioned by month, the quarantine as JSON lines, and the
run manifest. Every file is written to a temporary name and renamed into place, and its name
depends only on the inputs, so re-running on the same inbox replaces the same files.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import zlib
from collections import Counter, defaultdict

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.normalise import TZ
from pipelines.packed_events import EventTables, apply_each, flatten, is_event_table

# The manifest's count, per feed file, of stored rows a run replaced with newer versions (WriteManifest).
REPLACED_IN_WAREHOUSE = "replaced_in_warehouse"
# The manifest's list, per month, of the townships a run linked (their stored Events again, with its new
# ones); the month's other townships kept theirs as stored (WriteManifest).
RELINKED_TOWNSHIPS = "relinked_townships"


def events_dir(out: str) -> str:
    return FileSystems.join(out, "warehouse", "events")


def rows_per_feed_file(table: pa.Table) -> dict[str, int]:
    """Rows of a table of Events per input file (``feed_file``)."""
    counts = pc.value_counts(table.column("feed_file")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def written_event_rows(out: str, written: list[dict]) -> Counter:
    """Rows per input file in the Event files a run wrote (its manifest's ``written``)."""
    prefix, rows = out.rstrip("/") + "/", Counter()
    for entry in written:
        if entry["path"].startswith("warehouse/events/"):
            rows.update(rows_per_feed_file(read_parquet(prefix + entry["path"], ["feed_file"])))
    return rows


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file on any Beam filesystem (or some of its columns)."""
    with FileSystems.open(path) as f:
        return pq.read_table(pa.BufferReader(f.read()), columns=columns)


def manifest_path(out: str, job: str, run_id: str) -> str:
    return FileSystems.join(out, "manifests", f"{job}-{run_id}.json")


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (readers never see half a file)."""
    tmp = f"{path}.tmp-{zlib.crc32(data):08x}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def to_json(value, **kwargs) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default, **kwargs)


def month_of(event: dict) -> str:
    return month_of_time(event["reported_at"])


def month_of_time(reported: dt.datetime) -> str:
    """The county month (``YYYY-MM``, local time) of a timestamp."""
    if reported.tzinfo is not TZ:
        reported = reported.astimezone(TZ)
    # Called for every Event at several steps: formatting the fields is 3x faster than strftime.
    return f"{reported.year:04d}-{reported.month:02d}"


class _KeyByMonthShard(beam.DoFn):
    """An Event, or a group's (annotations, table) of Events → ((month, shard), ("row", packed Event) or
    ("table", its rows of that month and shard))."""

    def __init__(self, shards: int):
        super().__init__()
        self._shards = shards

    def setup(self):
        self._tables = EventTables()

    def _shard(self, event_id: str) -> int:
        return zlib.crc32(event_id.encode()) % self._shards

    def process(self, element):
        if not is_event_table(element):
            yield (month_of(element), self._shard(element["event_id"])), ("row", self._tables.packer.pack(element))
            return
        data = element[1]
        table = self._tables.from_bytes(data)
        times = pc.min_max(table.column("reported_at")).as_py()
        first, last = month_of_time(times["min"]), month_of_time(times["max"])
        if first == last and self._shards == 1:  # a township-month's group: its rows are one file's
            yield (first, 0), ("table", data)
            return
        rows = defaultdict(list)
        for i, (t, event_id) in enumerate(zip(table.column("reported_at").to_pylist(), table.column("event_id").to_pylist())):
            rows[(month_of_time(t), self._shard(event_id))].append(i)
        for key, indices in rows.items():
            yield key, ("table", self._tables.to_bytes(table.take(indices)))


class _WriteEventPartition(beam.DoFn):
    def __init__(self, out: str, run_digest: str, only_marked: bool):
        super().__init__()
        self._out, self._digest, self._only_marked = out, run_digest, only_marked

    def setup(self):
        self._tables = EventTables()

    def process(self, keyed):
        (month, shard), tagged = keyed
        rows, tables, marked = [], [], False
        for kind, value in tagged:
            if kind == "row":
                rows.append(value)
            elif kind == "table":
                tables.append(self._tables.from_bytes(value))
            else:
                marked = True
        if self._only_marked and not marked:
            return
        path = FileSystems.join(events_dir(self._out), f"month={month}", f"events-{self._digest}-{shard:03d}.parquet")
        # A marked partition left with no rows (its records' newer versions moved to other months) is
        # written empty, or its stale rows would be read beside the new versions; nothing then, nothing
        # now: no empty files for months without events.
        if not (rows or tables) and not FileSystems.exists(path):
            return
        # a deterministic row order: by event_id (byte order of UTF-8 is the code points' order)
        table = pa.concat_tables([self._tables.table(rows), *tables]).sort_by("event_id").combine_chunks()
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        write_atomically(path, buffer.getvalue())
        beam.metrics.Metrics.counter("ingest", "events_written").inc(table.num_rows)
        yield path, table.num_rows


class WriteEvents(beam.PTransform):
    """Events (one PCollection or several, ``packed_events.apply_each``; an element may be a group's
    Events as an Arrow table, ``is_event_table``) →
    ``<out>/warehouse/events/month=YYYY-MM/events-<inputs digest>-<shard>.parquet``.

    One file per month and shard, rows sorted by event_id, so the bytes depend only on the input.
    Raise ``shards`` when a month no longer fits one worker's memory. With ``months`` (a
    PCollection of ``YYYY-MM``), only those months' partitions are written, the others are left
    as they are; a stored partition of those months left with no rows is written empty.
    """

    def __init__(self, out: str, run_digest: str, shards: int = 1, months=None):
        super().__init__()
        self._out, self._digest, self._shards = out, run_digest, shards
        self._months = months

    def expand(self, events):
        shards = self._shards
        keyed = apply_each(events, "KeyByMonth", lambda: beam.ParDo(_KeyByMonthShard(shards)))
        if self._months is not None:
            keyed.append(self._months | "MarkMonths" >> beam.FlatMap(
                lambda month: [((month, shard), ("write", None)) for shard in range(shards)]))
        return (
            flatten(keyed, "RowsAndMarks")
            | "GroupByMonth" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(_WriteEventPartition(self._out, self._digest, self._months is not None))
        )


class _WriteQuarantineFile(beam.DoFn):
    def __init__(self, out: str, run_digest: str):
        super().__init__()
        self._out, self._digest = out, run_digest

    def process(self, keyed):
        feed, records = keyed
        records = sorted(records, key=lambda r: (r["file"], r.get("sheet") or "", r["line"]))
        data = "".join(to_json(r) + "\n" for r in records).encode("utf-8")
        path = FileSystems.join(self._out, "quarantine", f"{feed}-{self._digest}.jsonl")
        write_atomically(path, data)
        yield path, len(records)


class WriteQuarantine(beam.PTransform):
    """Quarantine records → ``<out>/quarantine/<feed>-<inputs digest>.jsonl`` (restricted access)."""

    def __init__(self, out: str, run_digest: str):
        super().__init__()
        self._out, self._digest = out, run_digest

    def expand(self, records):
        return (
            records
            | "KeyByFeed" >> beam.Map(lambda r: (r["feed"], r))
            | "GroupByFeed" >> beam.GroupByKey()
            | "WriteJsonl" >> beam.ParDo(_WriteQuarantineFile(self._out, self._digest))
        )


def _written_entry(value: tuple, out: str | None) -> dict:
    """A sink's (path, rows) as the manifest lists it: the path relative to the output root, so the
    manifest does not depend on where that root is mounted."""
    path, rows = value
    prefix = out.rstrip("/") + "/" if out else None
    return {"path": path[len(prefix):] if prefix and path.startswith(prefix) else path, "rows": rows}


class _WriteManifestFile(beam.DoFn):
    def __init__(self, path: str, header: dict, out: str | None):
        super().__init__()
        self._path, self._header, self._out = path, header, out

    def process(self, keyed):
        _, items = keyed
        files, written, replaced, relinked = [], [], Counter(), {}
        for kind, value in items:
            if kind == "file":
                files.append(value)
            elif kind == "written":
                written.append(_written_entry(value, self._out))
            elif kind == "replaced":
                replaced[value] += 1
            elif kind == "relinked":
                month, townships = value
                relinked[month] = sorted(townships)
        files.sort(key=lambda e: e["file"])
        manifest = dict(self._header, files=files, totals=manifest_totals(files))
        if written:
            manifest["written"] = sorted(written, key=lambda w: w["path"])
        if replaced:
            manifest[REPLACED_IN_WAREHOUSE] = dict(sorted(replaced.items()))
        if relinked:
            manifest[RELINKED_TOWNSHIPS] = dict(sorted(relinked.items()))
        write_atomically(self._path, to_json(manifest, indent=2, sort_keys=False).encode("utf-8"))
        yield self._path


class _AddWrittenToManifest(beam.DoFn):
    def __init__(self, path: str, out: str | None):
        super().__init__()
        self._path, self._out = path, out

    def process(self, keyed):
        _, written = keyed
        manifest = read_manifest(self._path)
        entries = manifest.get("written", []) + [_written_entry(value, self._out) for value in written]
        manifest["written"] = sorted(entries, key=lambda w: w["path"])
        write_atomically(self._path, to_json(manifest, indent=2, sort_keys=False).encode("utf-8"))
        yield self._path


class AddToManifest(beam.PTransform):
    """The ``(path, rows)`` a later pipeline of the same run wrote → listed in the run's manifest
    (``WriteManifest``'s, read and written again). Apply it last, for the reason ``WriteManifest``
    gives."""

    def __init__(self, path: str, out: str | None = None):
        super().__init__()
        self._path, self._out = path, out

    def expand(self, written):
        return (
            written
            | "KeyAll" >> beam.Map(lambda w: (None, tuple(w)))
            | "GroupAll" >> beam.GroupByKey()
            | "AddToJson" >> beam.ParDo(_AddWrittenToManifest(self._path, self._out))
        )


def read_manifest(path: str) -> dict:
    """A run manifest (``WriteManifest``'s) as written."""
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def manifest_totals(files: list[dict]) -> dict:
    totals = {"files": len(files), "rows_read": 0, "accepted": 0, "superseded": 0, "quarantined": 0,
              "quarantined_by_reason": {}, "unresolved_regions": 0}
    for entry in files:
        for key in ("rows_read", "accepted", "superseded", "unresolved_regions"):
            totals[key] += entry[key]
        for reason, n in entry["quarantined"].items():
            totals["quarantined"] += n
            totals["quarantined_by_reason"][reason] = totals["quarantined_by_reason"].get(reason, 0) + n
    totals["quarantined_by_reason"] = dict(sorted(totals["quarantined_by_reason"].items()))
    return totals


class WriteManifest(beam.PTransform):
    """Per-file accounting entries (+ the ``(path, rows)`` every other sink yields) → one manifest
    JSON, written even when the inbox is empty.

    Apply it last with every sink's output in ``written``: it is then the pipeline's single
    terminal step, which runners that only compute the last transform's branch (DaskRunner) need
    in order to run the other sinks at all, and the manifest lists the files the run wrote
    (relative to ``out`` when given).

    ``replaced``: the stored Events of earlier files that this run's newer versions replaced in the
    warehouse, counted per feed file under ``REPLACED_IN_WAREHOUSE`` (those files' manifests
    counted them accepted; the batch job checks the warehouse against both).

    ``relinked``: (month, townships) whose stored Events the run linked again (an incremental batch
    run's), listed per month under ``RELINKED_TOWNSHIPS``: the work the run did on stored months
    (the month's other townships kept their links, Events and tallies as stored).
    """

    def __init__(self, path: str, header: dict, written: list | None = None, out: str | None = None,
                 replaced: beam.PCollection | None = None, relinked: beam.PCollection | None = None):
        super().__init__()
        self._path, self._header, self._out = path, header, out
        self._written = list(written or [])
        self._replaced, self._relinked = replaced, relinked

    def expand(self, entries):
        tagged = [entries | "KeyAll" >> beam.Map(lambda e: (None, ("file", e)))]
        tagged += [pcoll | f"KeyWritten{i}" >> beam.Map(lambda w: (None, ("written", tuple(w))))
                   for i, pcoll in enumerate(self._written)]
        if self._replaced is not None:
            tagged.append(self._replaced | "KeyReplaced" >> beam.Map(lambda e: (None, ("replaced", e["feed_file"]))))
        if self._relinked is not None:
            tagged.append(self._relinked | "KeyRelinked" >> beam.Map(lambda kv: (None, ("relinked", kv))))
        # An anchor guarantees the single group exists, so an empty inbox still gets a manifest.
        anchor = entries.pipeline | "Anchor" >> beam.Create([(None, ("anchor", None))])
        return (
            (*tagged, anchor)
            | "Together" >> beam.Flatten()
            | "GroupAll" >> beam.GroupByKey()
            | "WriteJson" >> beam.ParDo(_WriteManifestFile(self._path, self._header, self._out))
        )
