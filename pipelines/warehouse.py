"""The warehouse under ``--out``: score rows and per-month tallies written by the batch job, and
readers of its tables.

Events are written by ``pipelines.sinks.WriteEvents``; this module reads them back for the steps
that look at a month as a whole (quality, topics, report) and for the batch job's incremental run:
the stored versions of the records a run's new files carry (``LookupStoredVersions``), the months
it relinks (``ReadStoredMonths``), and the tallies it scores from (``StoreTallies``, ``SeriesReader``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import itertools
import json
import typing
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.link import KeyRowsByTownshipMonth, link_config, linkable_rows, own_incidents
from pipelines.packed_events import EventTables, table_events
from pipelines.runners import ParDoWithOutputs
from pipelines.sinks import events_dir, read_parquet, write_atomically
from pipelines.validate import EventPacker
from schemas import arrow_schema, domain_codes, event_arrow_schema


def scores_dir(out: str) -> str:
    return FileSystems.join(out, "warehouse", "scores")


def month_of_date(day: dt.date) -> str:
    return day.strftime("%Y-%m")


# A scored month's mark among its score rows (``WriteScores(months=…)``).
_SCORED = None


class _WriteScoreMonth(beam.DoFn):
    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def setup(self):
        self._schema = arrow_schema("score")

    def process(self, keyed):
        month, rows = keyed
        names = self._schema.names
        path = FileSystems.join(scores_dir(self._out), f"month={month}", "scores.parquet")
        rows = [row for row in rows if row is not _SCORED]
        # A scored month left with no rows (its series' records moved out of its reach) is written empty, or
        # its stale rows would stay; nothing then, nothing now: no empty files for months never scored.
        if not rows and not FileSystems.exists(path):
            return
        rows = sorted(
            ({name: row.get(name) for name in names} for row in rows),
            key=lambda r: (r["period"], r["period_start"], r["township_code"] or "", r["village_code"] or "", r["domain"]),
        )
        table = pa.Table.from_pylist(rows, schema=self._schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        write_atomically(path, buffer.getvalue())
        yield path, len(rows)


class WriteScores(beam.PTransform):
    """Score rows → ``<out>/warehouse/scores/month=YYYY-MM/scores.parquet``, one file per month,
    replaced whole on every run of that month. ``months``: the months scored (``YYYY-MM``), whose stored
    file is replaced even when they have no rows left."""

    def __init__(self, out: str, months: list[str] = ()):
        super().__init__()
        self._out, self._months = out, list(months)

    def expand(self, rows):
        keyed = rows | "KeyByMonth" >> beam.Map(lambda r: (month_of_date(r["period_start"]), r))
        if self._months:
            marks = (rows.pipeline | "ScoredMonths" >> beam.Create(self._months)
                     | "MarkScored" >> beam.Map(lambda month: (month, _SCORED)))
            keyed = (keyed, marks) | "RowsAndMarks" >> beam.Flatten()
        return (
            keyed
            | "GroupByMonth" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(_WriteScoreMonth(self._out))
        )


def batch_event_files(out: str, month: str = "*") -> list[str]:
    """The batch job's own event partitions (``WriteEvents(out, "batch")``), oldest month first."""
    pattern = FileSystems.join(events_dir(out), f"month={month}", "events-batch-*.parquet")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


class _EventMaker(beam.DoFn):
    """Makes Event dicts of warehouse tables (the Arrow schema and packer load once per worker)."""

    def setup(self):
        self._schema = event_arrow_schema()
        self._packer = EventPacker()


class _ReadEventFile(_EventMaker):
    """A warehouse events Parquet file → its Events, one row group at a time."""

    def process(self, path: str):
        with FileSystems.open(path) as f:
            parquet = pq.ParquetFile(pa.BufferReader(f.read()))
        for group in range(parquet.num_row_groups):
            yield from table_events(parquet.read_row_group(group), self._schema, self._packer)


class ReadEvents(beam.PTransform):
    """Warehouse events Parquet files → Event dicts (``Create(paths) | ParDo(read)``: portable)."""

    def __init__(self, paths: list[str]):
        super().__init__()
        self._paths = list(paths)

    def expand(self, pbegin):
        return pbegin | "ListFiles" >> beam.Create(self._paths) | "ReadFile" >> beam.ParDo(_ReadEventFile())


class _LookupStoredVersions(_EventMaker):
    """(_, lists of event_ids) → per batch partition holding some, [the stored Events with those ids].

    Only the event_id column is read to find them (a status update may concern a record of any
    month); a partition's other columns are read only when it holds one of the ids.
    """

    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def process(self, keyed):
        _, lists = keyed
        wanted = pa.array(sorted(set(itertools.chain.from_iterable(lists))), pa.string())
        for path in batch_event_files(self._out):
            found = pc.is_in(read_parquet(path, ["event_id"]).column("event_id"), value_set=wanted)
            if pc.any(found).as_py():
                yield list(table_events(read_parquet(path).filter(found), self._schema, self._packer))


class LookupStoredVersions(beam.PTransform):
    """Lists of event_ids (a chunk's) → lists of the warehouse's stored versions of those records,
    one per partition holding some (an enrichment join on event_id through pyarrow: the stored events
    themselves are not shuffled, and the ids cross to the lookup a chunk at a time)."""

    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def expand(self, event_ids):
        return (
            event_ids
            | "OneKey" >> beam.Map(lambda ids: (None, ids))
            | "AllIds" >> beam.GroupByKey()
            | "Lookup" >> beam.ParDo(_LookupStoredVersions(self._out))
        )


# ReadStoredMonths' tag of the link groups it reads (``linked``).
LINKED = "linked"


class _ReadStoredMonth(beam.DoFn):
    """(month, {"reach": [window], "drop": [event_id]}) → (tag, Events as a table) for the month's
    stored Events within each window (``ReadStoredMonths``) but the dropped ones (records that have a
    newer version in this run), one table per window and stored file: (annotations, Arrow IPC bytes),
    ``packed_events.is_event_table``. Of a window whose tag is in ``linked``, the Events that need
    linking come as ``(LINKED, link group element)`` (``link.KeyRowsByTownshipMonth``), the others
    linked already (each its own incident); both take the tag's annotations."""

    def __init__(self, out: str, linked: typing.Mapping[str, tuple]):
        super().__init__()
        self._out, self._linked = out, dict(linked)

    def setup(self):
        self._schema = event_arrow_schema()
        self._keyed = KeyRowsByTownshipMonth(link_config()["max_span_hours"])

    def process(self, keyed):
        month, joined = keyed
        windows = sorted(set(joined["reach"]), key=repr)
        if not windows:
            return
        drop = pa.array(sorted(set(joined["drop"])), pa.string())
        for path in batch_event_files(self._out, month):
            table = read_parquet(path).cast(self._schema)
            if len(drop):
                table = table.filter(pc.invert(pc.is_in(table.column("event_id"), value_set=drop)))
            millis = table.column("reported_at").cast(pa.int64())
            townships = pc.fill_null(table.column("township_code"), "")
            for tag, since, until, only, but in windows:
                bounds = [pc.greater_equal(millis, since)] if since is not None else []
                bounds += [pc.less_equal(millis, until)] if until is not None else []
                bounds += [pc.is_in(townships, value_set=pa.array(only, pa.string()))] if only is not None else []
                bounds += [pc.invert(pc.is_in(townships, value_set=pa.array(but, pa.string())))] if but else []
                inside = table.filter(functools.reduce(pc.and_, bounds)) if bounds else table
                annotations = self._linked.get(tag, ())
                if tag in self._linked:
                    linkable = linkable_rows(inside)
                    for group in self._keyed.keyed(inside.filter(linkable), annotations):
                        yield LINKED, group
                    # As linking leaves them: they go to the writers and counters without crossing it.
                    inside = own_incidents(inside.filter(pc.invert(linkable)))
                if inside.num_rows:
                    yield tag, (annotations, EventTables.to_bytes(inside))


class ReadStoredMonths(beam.PTransform):
    """``{"reach": (month, (tag, since, until, townships, but)), "drop": (month, event_id)}`` → (tag,
    Events as a table: (annotations, Arrow IPC bytes), ``packed_events.is_event_table``) of those
    months' stored Events within the windows: reported from ``since`` to ``until`` (epoch ms, ends
    included, None: open), of the ``townships`` (their link groups' townships, ``link.group_key``:
    "" for none; None: all) but those in ``but``; one element per window and stored file, not one per
    Event. The tag says what the caller reads them for; a month's windows of one tag must not overlap.

    ``linked``: tag → annotations ((key, value) pairs) for the windows whose Events are to be
    linked: those that need linking come keyed for ``link.LinkIncidentsInParts(groups=…)``, one
    element per township-month and role, tagged ``LINKED``; the others come linked (each its own
    incident, as ``LinkIncidentsInParts`` would leave them), tagged as their window; every Event of
    the window takes the annotations."""

    def __init__(self, out: str, linked: typing.Mapping[str, tuple] | None = None):
        super().__init__()
        self._out = out
        self._linked = dict(linked or {})

    def expand(self, pcolls):
        return (pcolls | "ByMonth" >> beam.CoGroupByKey()
                | "Read" >> beam.ParDo(_ReadStoredMonth(self._out, self._linked)))


def read_stored_columns(out: str, month: str, columns: list[str]) -> pa.Table:
    """Some columns of a month's batch partitions, as one table (e.g. for statistics over the
    whole month when only part of it is read as Events)."""
    schema = pa.schema([event_arrow_schema().field(c) for c in columns])
    tables = [read_parquet(path, columns).cast(schema) for path in batch_event_files(out, month)]
    return pa.concat_tables(tables) if tables else schema.empty_table()


# --------------------------------------------------------------------------------------------
# Tallies: per month, what scoring needs from the events (pipelines.score.DailyCounts and
# FeedDayCounts), so a month is scored without reading its history's events again.
# --------------------------------------------------------------------------------------------

SERIES_TALLIES, FEED_DAYS = "series", "feed_days"
# What ``StoreTallies`` also takes in place of ``SERIES_TALLIES``: (month, [``series_row``]), a few lists
# per month (``pipelines.score.DailyTallies(by_month=True)``).
SERIES_ROWS = "series_rows"
# A series tally is stored as JSON in two columns: ``tally`` without its callers and ``callers``, the
# one field only the last weeks before a scored month are read for (a repeat caller's lookback) and
# most of the text (hashed caller keys). Files written before the split have no ``callers`` column:
# their ``tally`` holds the callers too, and they are read as they are (a month is written in the
# current layout when a run next writes it; kept tallies written back are split then).
_CALLERS = "callers"
_TALLY_SCHEMAS = {
    SERIES_TALLIES: pa.schema([("county_code", pa.string()), ("township_code", pa.string()),
                               ("village_code", pa.string()), ("domain", pa.string()), ("date", pa.string()),
                               ("tally", pa.string()), (_CALLERS, pa.string())]),
    FEED_DAYS: pa.schema([("feed", pa.string()), ("township_code", pa.string()), ("date", pa.string()),
                          ("records", pa.int64())]),
}


def tallies_dir(out: str) -> str:
    return FileSystems.join(out, "warehouse", "tallies")


def tally_path(out: str, month: str, table: str) -> str:
    return FileSystems.join(tallies_dir(out), f"month={month}", f"{table}.parquet")


def _tally_texts(tally: dict | StoredTally) -> tuple[str, str]:
    """A series tally as counted, or as read back (kept as its texts) → its ``tally`` and ``callers`` texts.
    JSON keeps the tally exactly (ints and string-keyed maps), whatever fields it grows."""
    if isinstance(tally, StoredTally) and tally.callers is not None:
        return tally
    rest = dict(tally_value(tally))
    callers = rest.pop(_CALLERS, {})
    return _tally_text(rest), _tally_text(callers)


# json.dumps' text; json.dumps given options builds an encoder per call, a fifth of its time on a tally.
_tally_text = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


def series_row(series: tuple, date: str, tally: dict | StoredTally) -> tuple:
    """A series tally → its row as stored (the columns of ``_TALLY_SCHEMAS[SERIES_TALLIES]``)."""
    return (*series, date, *_tally_texts(tally))


def _tally_row(table: str, element) -> tuple:
    """A tally element (``SERIES_TALLIES``' or ``FEED_DAYS``') → its row as stored."""
    key, value = element
    return series_row(*key, value) if table == SERIES_TALLIES else (*key, value)


def _stored_rows(out: str, month: str, table: str):
    """A month's stored tally table as rows (tuples of its columns' values); none without the file."""
    path = tally_path(out, month, table)
    if not FileSystems.exists(path):
        return iter(())
    stored = read_parquet(path)
    schema = _TALLY_SCHEMAS[table]
    # a column added since the file was written (``callers``) reads as None
    columns = [stored.column(f.name).cast(f.type).to_pylist() if f.name in stored.column_names else [None] * len(stored)
               for f in schema]
    return zip(*columns)


def read_month_tallies(out: str, month: str, parse: bool = True, tables: tuple = (SERIES_TALLIES, FEED_DAYS)):
    """The stored tallies of a month as (table, element): the elements ``StoreTallies`` took.
    Without ``parse``, series tallies stay as stored (``StoredTally``; ``tally_value`` parses them)."""
    for table in tables:
        rows = _stored_rows(out, month, table)
        if table == SERIES_TALLIES:
            for county, township, village, domain, date, text, callers in rows:
                tally = StoredTally(text, callers)
                yield table, (((county, township, village, domain), date), tally_value(tally) if parse else tally)
        else:
            for feed, township, date, n in rows:
                yield table, ((feed, township, date), n)


def tally_date(table: str, element) -> str:
    """The ISO date of a tally element (``SERIES_TALLIES``' or ``FEED_DAYS``')."""
    return element[0][1] if table == SERIES_TALLIES else element[0][2]


_TALLY_JSON = json.JSONDecoder()


class StoredTally(typing.NamedTuple):
    """A series tally as stored: its JSON text and its callers' (None: the text holds them, as stored
    before they had a column of their own)."""

    text: str
    callers: str | None


class _MonthCallers:
    """A stored month's ``callers`` column, read from the file's bytes (kept as read with the rest of the
    month: the same version of the file) when a tally's callers are first asked for: the months a scored
    month's lookback does not reach (most of its history) never read theirs, the larger half of the file."""

    def __init__(self, data: bytes):
        self._data, self._column = data, None

    def texts(self, rows: np.ndarray) -> list[str]:
        """The callers' texts of these rows of the month's file."""
        if self._column is None:
            self._column = pq.read_table(pa.BufferReader(self._data), columns=[_CALLERS]).column(_CALLERS)
            self._data = None
        return self._column.take(rows).to_pylist()


def tally_value(tally: dict | StoredTally) -> dict:
    """A series tally as counted (a dict) or as stored (``StoredTally``) → the dict.

    The stored text is ``json.dumps``' own: ``raw_decode`` skips ``json.loads``' checks for surrounding
    whitespace, a fifth of its cost on these short texts (a county year holds ~430,000 of them)."""
    if isinstance(tally, dict):
        return tally
    value = _TALLY_JSON.raw_decode(tally.text)[0]
    return value if tally.callers is None else {**value, _CALLERS: _TALLY_JSON.raw_decode(tally.callers)[0]}


def domain_item(element) -> tuple:
    """A series tally (((county, township, village, domain), date), tally) → (domain,
    ((county, township, village), date, tally)): how ``pipelines.score.ScoreSeries`` takes it."""
    (county, township, village, domain), date = element[0]
    return domain, ((county, township, village), date, element[1])


# What a month's group holds besides its tallies: per township it counts again, the first day counted
# again (None: all of it; a township without a mark, or a month without any, keeps its stored tallies).
_SINCE = "since"


def _counted_again(since: dict, township: str | None, date: str) -> bool:
    """Whether a run that counts ``since`` (township → first day, None: all) counts a tally of that
    township (None: the records of no township) and day again."""
    township = township or ""
    return township in since and (since[township] is None or date >= since[township])


class _StoreTallyMonth(beam.DoFn):
    """(month, [(table, [rows as stored]) or (_SINCE, (township, first day))]) → the month's tallies
    written: (path, rows).

    ``marked``: only months with a ``_SINCE`` mark are written: of a marked township (the township of
    its link groups, ``link.group_key``: "" for none), this run's tallies from that day on and the
    stored ones before it; of the others, the stored ones (an incremental run); otherwise every month
    with a tally is written whole."""

    def __init__(self, out: str, marked: bool):
        super().__init__()
        self._out, self._marked = out, marked

    def process(self, keyed):
        month, items = keyed
        fresh = {SERIES_TALLIES: [], FEED_DAYS: []}  # rows as stored
        since = {}
        for kind, value in items:
            if kind == _SINCE:
                township, first = value
                since[township] = first
            else:
                fresh[kind] += value
        if since:
            yield from self._write(month, self._picked(month, since, fresh))
        elif not self._marked and any(fresh.values()):
            yield from self._write(month, fresh)

    def _picked(self, month: str, since: dict, fresh: dict) -> dict:
        """This run's tallies of the townships and days it counts again, the stored ones of the others."""
        tables = {SERIES_TALLIES: [], FEED_DAYS: []}
        # Kept tallies stay as stored: written back as they are.
        for table, element in read_month_tallies(self._out, month, parse=False):
            township = element[0][0][1] if table == SERIES_TALLIES else element[0][1]
            if not _counted_again(since, township, tally_date(table, element)):
                tables[table].append(_tally_row(table, element))
        for table, rows in fresh.items():
            # the township is the second column of both tables' rows
            date = _TALLY_SCHEMAS[table].get_field_index("date")
            tables[table] += [r for r in rows if _counted_again(since, r[1], r[date])]
        return tables

    def _write(self, month: str, tables: dict):
        if not any(tables.values()) and not FileSystems.exists(tally_path(self._out, month, SERIES_TALLIES)):
            return  # nothing then, nothing now: no empty files for months without events
        for table, rows in tables.items():
            rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r))
            schema = _TALLY_SCHEMAS[table]
            arrow = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(zip(*rows), schema)]
                                         if rows else [pa.array([], type=f.type) for f in schema], schema=schema)
            buffer = io.BytesIO()
            pq.write_table(arrow, buffer, compression="zstd")
            path = tally_path(self._out, month, table)
            write_atomically(path, buffer.getvalue())
            yield path, len(rows)


class StoreTallies(beam.PTransform):
    """``{"series": DailyCounts, "feed_days": FeedDayCounts}`` (or ``"series_rows"``:
    ``DailyCounts(by_month=True)``'s rows in place of ``"series"``) →
    ``<out>/warehouse/tallies/month=YYYY-MM/{series,feed_days}.parquet``, each month replaced whole
    (the month of a tally is its date's), in one shuffle by month; returns the (path, rows) written.
    The scores are made from the months as stored (``ReadScoredTallies``).

    ``rewrite`` (a PCollection of (month, township, first day counted again or None: all), the
    township as its link groups' key, ``link.group_key``: "" for none): only those months are
    written, and written even when they have nothing left; their other townships, and the other
    months, keep their stored tallies. Without it every month that has a tally is written whole.
    """

    def __init__(self, out: str, rewrite: beam.PCollection | None = None):
        super().__init__()
        self._out, self._rewrite = out, rewrite

    def expand(self, tallies):
        # every element reaches its month's group as a list of rows as stored
        keyed = [tallies[table] | f"{label}ByMonth" >> beam.Map(
                     lambda kv, table=table: (tally_date(table, kv)[:7], (table, [_tally_row(table, kv)])))
                 for table, label in ((SERIES_TALLIES, "Series"), (FEED_DAYS, "FeedDays")) if table in tallies]
        if SERIES_ROWS in tallies:
            keyed.append(tallies[SERIES_ROWS] | "SeriesRowsByMonth" >> beam.MapTuple(
                lambda month, rows: (month, (SERIES_TALLIES, rows))))
        if self._rewrite is not None:
            keyed.append(self._rewrite | "MarkSince" >> beam.MapTuple(
                lambda month, township, first: (month, (_SINCE, (township, first)))))
        return (
            keyed
            | "Together" >> beam.Flatten()
            | "GroupByMonth" >> beam.GroupByKey()
            | "Store" >> beam.ParDo(_StoreTallyMonth(self._out, marked=self._rewrite is not None))
        )


class _ScoredMonth(beam.DoFn):
    """A month → its stored feed-day counts (main output) and (domain, ``StoredSeries``) for every
    domain of the taxonomy (``SERIES_TALLIES``): the scorer reads the month as stored, so its series
    tallies never cross a shuffle."""

    def __init__(self, out: str, domains: list[str]):
        super().__init__()
        self._out, self._domains = out, domains

    def process(self, month: str):
        for _, element in read_month_tallies(self._out, month, tables=(FEED_DAYS,)):
            yield element
        for domain in self._domains:
            yield beam.pvalue.TaggedOutput(SERIES_TALLIES, (domain, StoredSeries(self._out, month)))


class ReadScoredTallies(beam.PTransform):
    """Months (``YYYY-MM``) → what ``pipelines.score.ScoreTallies`` reads of them as stored:
    ``{"series": (domain, StoredSeries), "feed_days": counts}``. A month without tallies reads as
    empty."""

    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def expand(self, months):
        return months | "Read" >> ParDoWithOutputs(_ScoredMonth(self._out, domain_codes(include_none=False)),
                                                   SERIES_TALLIES, main=FEED_DAYS)


@dataclasses.dataclass(frozen=True)
class StoredSeries:
    """A month's series tallies as stored (kept, or written by this run before the reference is
    made), in place of the tallies themselves: the scorer reads them (``SeriesReader``). A county's year of history is ~400,000 tallies; carried
    through the shuffle to the scorer they cost more than scoring them (docs/notes/performance.md,
    "Session 6")."""

    out: str
    month: str


class SeriesReader:
    """Batches of series items (``domain_item``'s, as ``pipelines.score.ScoreSeries`` takes them) or
    ``StoredSeries`` → one domain's tallies as runs of a series' days: (county, township, village, dates,
    tallies), ``dates`` (``datetime.date``) and ``tallies`` (dicts) in the order read. A series' days come in one
    run from a stored month (its file is sorted by series), so the scorer lays them out a run, not a row, at
    a time. A stored month's table is read once and kept until ``clear`` (the scorer takes the domains one
    after the other); a domain's rows become Python values only when that domain is read.

    Stored tallies are read-only: equal texts of the domain last read (over all its months) are parsed
    once and give one dict (or copies of it carrying each tally's callers). Half of a county year's
    ~430,000 texts repeat one seen before in their domain (a village's quiet days: one incident, one feed),
    and the parse was most of the reading."""

    def __init__(self):
        # per stored month: its table without callers, its callers column (None: stored in the tally
        # texts, the previous layout) and its rows of each domain; None: the month has no series tallies
        self._months: dict[tuple, _StoredMonth | None] = {}
        self._parsed_domain, self._parsed = None, {}  # tally text → its dict, for the domain last read

    def runs(self, batch, domain: str, callers_from: str | None = None):
        """``callers_from`` (ISO date): a stored month's tallies dated before it come without their ``callers``
        (none read: the scorer's lookback does not reach them, ``risk_score.first_caller_day``), so they need
        no dict of their own, and a month wholly before it never reads its callers' column; the tallies from
        it on come with theirs, parsed together. Tallies stored in the previous layout keep the callers their
        texts hold."""
        if not isinstance(batch, StoredSeries):
            return _item_runs(batch)
        key = (batch.out, batch.month)
        if key not in self._months:
            self._months[key] = _StoredMonth.read(tally_path(batch.out, batch.month, SERIES_TALLIES))
        month = self._months[key]
        rows = None if month is None else month.rows.get(domain)
        if rows is None:
            return iter(())
        table = month.table.take(rows)
        values = self._parse(table.column("tally"), domain)
        if month.callers is not None and not (callers_from and batch.month < callers_from[:7]):
            reached = (np.arange(len(table)) if callers_from is None else np.flatnonzero(
                pc.greater_equal(table.column("date"), callers_from).to_numpy(zero_copy_only=False)))
            if len(reached):
                # the callers' texts sit in the month's file at the domain's rows
                callers = json.loads("[" + ",".join(month.callers.texts(rows[reached])) + "]")
                for i, heard in zip(reached.tolist(), callers):
                    values[i] = {**values[i], _CALLERS: heard}
        dates = _dates(table.column("date"))
        starts = _series_starts(table)
        series = zip(*(table.column(name).take(starts[:-1]).to_pylist()
                       for name in ("county_code", "township_code", "village_code")))
        return ((*names, dates[first:end], values[first:end])
                for names, first, end in zip(series, starts[:-1].tolist(), starts[1:].tolist()))

    def _parse(self, texts: pa.ChunkedArray, domain: str) -> list[dict]:
        """A domain's tally texts → their dicts, texts parsed before for the domain not parsed again."""
        if domain != self._parsed_domain:
            self._parsed_domain, self._parsed = domain, {}
        parsed = self._parsed
        encoded = texts.combine_chunks().dictionary_encode()
        distinct = encoded.dictionary.to_pylist()
        new = [text for text in distinct if text not in parsed]
        if new:
            # one parse of all new texts: the decoder's key memo then holds across them
            parsed.update(zip(new, json.loads("[" + ",".join(new) + "]")))
        values = [parsed[text] for text in distinct]
        return [values[i] for i in encoded.indices.to_numpy(zero_copy_only=False).tolist()]

    def clear(self) -> None:
        self._months.clear()
        self._parsed_domain, self._parsed = None, {}


def _item_runs(items):
    """Series items (``domain_item``'s) → ``SeriesReader.runs``' runs: one per stretch of one series' items."""
    for series, days in itertools.groupby(items, key=lambda item: item[0]):
        days = list(days)
        yield (*series, [dt.date.fromisoformat(date) for _, date, _ in days],
               [tally_value(tally) for *_, tally in days])


def _dates(column: pa.ChunkedArray) -> list[dt.date]:
    """ISO date texts → dates, each distinct text (a month has ~30) parsed once."""
    encoded = column.combine_chunks().dictionary_encode()
    days = [dt.date.fromisoformat(text) for text in encoded.dictionary.to_pylist()]
    return [days[i] for i in encoded.indices.to_numpy(zero_copy_only=False).tolist()]


def _series_starts(table: pa.Table) -> np.ndarray:
    """The rows where a run of one series' (county, township, village) rows starts, and the table's length."""
    starts = np.zeros(len(table) + 1, dtype=bool)
    starts[[0, -1]] = True
    for name in ("county_code", "township_code", "village_code"):
        codes = pc.fill_null(table.column(name).combine_chunks().dictionary_encode().indices, -1).to_numpy()
        starts[1:-1] |= codes[1:] != codes[:-1]
    return np.flatnonzero(starts)


@dataclasses.dataclass
class _StoredMonth:
    """A stored month's series tallies as ``SeriesReader`` keeps them: the table without its ``callers``
    column, which is read only when a tally's callers are (``_MonthCallers``; None: the previous layout, whose
    texts hold the callers), and each domain's rows in the file (in file order)."""

    table: pa.Table
    callers: _MonthCallers | None
    rows: dict[str, np.ndarray]

    @classmethod
    def read(cls, path: str) -> _StoredMonth | None:
        """None without the file."""
        stored = _month_without_callers(path)
        if stored is None:
            return None
        table, callers = stored
        domains = table.column("domain").combine_chunks().dictionary_encode()
        codes = domains.indices.to_numpy(zero_copy_only=False)
        # one stable sort of the month's rows by domain, where a filter per domain read the whole month each time
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(domains.dictionary) + 1))
        return cls(table, callers, {domain: order[bounds[j]:bounds[j + 1]]
                                    for j, domain in enumerate(domains.dictionary.to_pylist())})


def _month_without_callers(path: str) -> tuple[pa.Table, _MonthCallers | None] | None:
    """A stored month's series tallies without their ``callers`` column, which is read only when a tally's
    callers are (``_MonthCallers``); None without the file."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        data = f.read()
    names = pq.read_schema(pa.BufferReader(data)).names
    if _CALLERS not in names:
        return pq.read_table(pa.BufferReader(data)), None  # the previous layout: the texts hold the callers
    return pq.read_table(pa.BufferReader(data), columns=[n for n in names if n != _CALLERS]), _MonthCallers(data)


def _month_tables(root: str, months: list[str], schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    if columns:
        schema = pa.schema([schema.field(name) for name in columns])
    tables = []
    for month in months:
        folder = Path(root) / f"month={month}"
        for path in sorted(folder.glob("*.parquet")):
            tables.append(pq.read_table(path, columns=schema.names, schema=schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def event_table(out: str, months: list[str], columns: list[str] | None = None) -> pa.Table:
    """Every stored version of these months' Events as one Arrow table (``latest_versions`` keeps
    one per record)."""
    return _month_tables(events_dir(out), months, arrow_schema("event"), columns)


def latest_versions(table: pa.Table) -> pa.Table:
    """One row per event_id, its latest ``ingested_at`` (the last stored of equals), in event_id
    order; deduplicated in Arrow, before pandas sees the rows."""
    if not len(table):
        return table
    order = pc.sort_indices(table, [("event_id", "ascending"), ("ingested_at", "ascending")])
    ids = table.column("event_id").take(order).to_numpy(zero_copy_only=False)
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[:-1] != ids[1:]
    return table.take(order.filter(pa.array(last)))


def read_events(out: str, months: list[str], columns: list[str] | None = None,
                latest_only: bool = True) -> pd.DataFrame:
    """The warehouse's Events of these months; a record written by several runs counts once
    (its latest ingest wins) unless ``latest_only`` is False (the quality checks look for
    records stored twice)."""
    if columns:
        columns = list(dict.fromkeys([*columns, "event_id", "ingested_at"]))
    table = event_table(out, months, columns)
    return (latest_versions(table) if latest_only else table).to_pandas()


def read_scores(out: str, months: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    return _month_tables(scores_dir(out), months, arrow_schema("score"), columns).to_pandas()
