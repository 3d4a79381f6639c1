"""Ingest outputs: Events as Parquet partitioned by month, the quarantine as JSON lines, and the
run manifest. Every file is written to a temporary name and renamed into place, and its name
depends only on the inputs, so re-running on the same inbox replaces the same files.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import zlib

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.normalise import TZ
from pipelines.packed_events import apply_each, flatten
from pipelines.validate import EventPacker
from schemas import event_arrow_schema


def events_dir(out: str) -> str:
    return FileSystems.join(out, "warehouse", "events")


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
    reported = event["reported_at"]
    if reported.tzinfo is not TZ:
        reported = reported.astimezone(TZ)
    # Called for every Event at several steps: formatting the fields is 3x faster than strftime.
    return f"{reported.year:04d}-{reported.month:02d}"


class _WriteEventPartition(beam.DoFn):
    def __init__(self, out: str, run_digest: str, only_marked: bool):
        super().__init__()
        self._out, self._digest, self._only_marked = out, run_digest, only_marked

    def setup(self):
        self._schema = event_arrow_schema()

    def process(self, keyed):
        (month, shard), tagged = keyed
        rows, marked = [], False
        for kind, packed in tagged:
            if kind == "row":
                rows.append(packed)
            else:
                marked = True
        if self._only_marked and not (marked and rows):
            return
        by_id = self._schema.get_field_index("event_id")
        rows.sort(key=lambda r: r[by_id])  # a deterministic row order
        columns = list(zip(*rows)) if rows else [[] for _ in self._schema]
        table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, self._schema)], schema=self._schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        path = FileSystems.join(events_dir(self._out), f"month={month}", f"events-{self._digest}-{shard:03d}.parquet")
        write_atomically(path, buffer.getvalue())
        beam.metrics.Metrics.counter("ingest", "events_written").inc(len(rows))
        yield path, len(rows)


class WriteEvents(beam.PTransform):
    """Events (one PCollection or several, ``packed_events.apply_each``) →
    ``<out>/warehouse/events/month=YYYY-MM/events-<inputs digest>-<shard>.parquet``.

    One file per month and shard, rows sorted by event_id, so the bytes depend only on the input.
    Raise ``shards`` when a month no longer fits one worker's memory. With ``months`` (a
    PCollection of ``YYYY-MM``), only those months' partitions are written, the others are left
    as they are.
    """

    def __init__(self, out: str, run_digest: str, shards: int = 1, months=None):
        super().__init__()
        self._out, self._digest, self._shards = out, run_digest, shards
        self._months = months

    def expand(self, events):
        shards, packer = self._shards, EventPacker()
        keyed = apply_each(events, "KeyByMonth", lambda: beam.Map(
            lambda e: ((month_of(e), zlib.crc32(e["event_id"].encode()) % shards), ("row", packer.pack(e)))))
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
        files, written = [], []
        for kind, value in items:
            if kind == "file":
                files.append(value)
            elif kind == "written":
                written.append(_written_entry(value, self._out))
        files.sort(key=lambda e: e["file"])
        manifest = dict(self._header, files=files, totals=manifest_totals(files))
        if written:
            manifest["written"] = sorted(written, key=lambda w: w["path"])
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
    """

    def __init__(self, path: str, header: dict, written: list | None = None, out: str | None = None):
        super().__init__()
        self._path, self._header, self._out = path, header, out
        self._written = list(written or [])

    def expand(self, entries):
        tagged = [entries | "KeyAll" >> beam.Map(lambda e: (None, ("file", e)))]
        tagged += [pcoll | f"KeyWritten{i}" >> beam.Map(lambda w: (None, ("written", tuple(w))))
                   for i, pcoll in enumerate(self._written)]
        # An anchor guarantees the single group exists, so an empty inbox still gets a manifest.
        anchor = entries.pipeline | "Anchor" >> beam.Create([(None, ("anchor", None))])
        return (
            (*tagged, anchor)
            | "Together" >> beam.Flatten()
            | "GroupAll" >> beam.GroupByKey()
            | "WriteJson" >> beam.ParDo(_WriteManifestFile(self._path, self._header, self._out))
        )
