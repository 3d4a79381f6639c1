"""The warehouse under ``--out``: score rows written by the batch job, and readers of its tables.

Events are written by ``pipelines.sinks.WriteEvents``; this module reads them back for the steps
that look at a month as a whole (quality, topics, report).
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.sinks import events_dir, write_atomically
from pipelines.validate import EventPacker
from schemas import arrow_schema, event_arrow_schema


def scores_dir(out: str) -> str:
    return FileSystems.join(out, "warehouse", "scores")


def month_of_date(day: dt.date) -> str:
    return day.strftime("%Y-%m")


class _WriteScoreMonth(beam.DoFn):
    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def setup(self):
        self._schema = arrow_schema("score")

    def process(self, keyed):
        month, rows = keyed
        names = self._schema.names
        rows = sorted(
            ({name: row.get(name) for name in names} for row in rows),
            key=lambda r: (r["period"], r["period_start"], r["township_code"] or "", r["village_code"] or "", r["domain"]),
        )
        table = pa.Table.from_pylist(rows, schema=self._schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        path = FileSystems.join(scores_dir(self._out), f"month={month}", "scores.parquet")
        write_atomically(path, buffer.getvalue())
        yield path, len(rows)


class WriteScores(beam.PTransform):
    """Score rows → ``<out>/warehouse/scores/month=YYYY-MM/scores.parquet``, one file per month,
    replaced whole on every run of that month."""

    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def expand(self, rows):
        return (
            rows
            | "KeyByMonth" >> beam.Map(lambda r: (month_of_date(r["period_start"]), r))
            | "GroupByMonth" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(_WriteScoreMonth(self._out))
        )


def batch_event_files(out: str) -> list[str]:
    """The batch job's own event partitions (``WriteEvents(out, "batch")``), oldest month first."""
    return sorted(str(p) for p in Path(events_dir(out)).glob("month=*/events-batch-*.parquet"))


class _ReadEventFile(beam.DoFn):
    """A warehouse events Parquet file → its Events, exactly as the pipeline carried them."""

    def setup(self):
        self._schema = event_arrow_schema()
        self._packer = EventPacker()

    def process(self, path: str):
        with FileSystems.open(path) as f:
            parquet = pq.ParquetFile(pa.BufferReader(f.read()))
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group).cast(self._schema)
            # Timestamps as epoch milliseconds: the packed form EventPacker turns back into datetimes.
            columns = [c.cast(pa.int64()).to_pylist() if pa.types.is_timestamp(c.type) else c.to_pylist()
                       for c in table.columns]
            for values in zip(*columns):
                yield self._packer.unpack(values)


class ReadEvents(beam.PTransform):
    """Warehouse events Parquet files → Event dicts (``Create(paths) | ParDo(read)``: portable)."""

    def __init__(self, paths: list[str]):
        super().__init__()
        self._paths = list(paths)

    def expand(self, pbegin):
        return pbegin | "ListFiles" >> beam.Create(self._paths) | "ReadFile" >> beam.ParDo(_ReadEventFile())


def _read_months(root: str, months: list[str], schema: pa.Schema, columns: list[str] | None = None) -> pd.DataFrame:
    if columns:
        schema = pa.schema([schema.field(name) for name in columns])
    tables = []
    for month in months:
        folder = Path(root) / f"month={month}"
        for path in sorted(folder.glob("*.parquet")):
            tables.append(pq.read_table(path, columns=schema.names, schema=schema))
    if not tables:
        return schema.empty_table().to_pandas()
    return pa.concat_tables(tables).to_pandas()


def read_events(out: str, months: list[str], columns: list[str] | None = None,
                latest_only: bool = True) -> pd.DataFrame:
    """The warehouse's Events of these months; a record written by several runs counts once
    (its latest ingest wins) unless ``latest_only`` is False (the quality checks look for
    records stored twice)."""
    if columns:
        columns = list(dict.fromkeys([*columns, "event_id", "ingested_at"]))
    frame = _read_months(events_dir(out), months, arrow_schema("event"), columns)
    if frame.empty or not latest_only:
        return frame
    frame = frame.sort_values(["event_id", "ingested_at"], kind="stable")
    return frame.drop_duplicates("event_id", keep="last").reset_index(drop=True)


def read_scores(out: str, months: list[str]) -> pd.DataFrame:
    return _read_months(scores_dir(out), months, arrow_schema("score"))
