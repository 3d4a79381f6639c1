"""Beam transforms from linked Events to score rows (docs/architecture.md, "Score row").

- ``DailyCounts``: Events → ((series, date), tally): incidents (not records) per township ×
  domain and village × domain × day, with signal tallies. Records meet in shards by township (a
  table of them per group of Events) and are summed per incident, then per series × day inside the
  shard, per column.
- ``ScoreSeries``: ((series, date), tally) over history + target → day and month score rows for
  the target period (``models.risk_score.score_series``). The batch job feeds it the target
  month's events together with the history months read back from the warehouse.
- ``FeedDayCounts`` / ``FindGaps``: Events (all, including domain ``none``) → records per feed ×
  township × day → the data gaps of the target period (``models.gaps``), as one list; in two halves,
  so the batch job can keep the per-day record counts in the warehouse and find gaps without the events.
- ``ScoreTallies``: tallies and feed-day counts → score rows; ``ScoreEvents``: from Events. Days before the
  feeds' coverage begins (``DataStart``) are not history: a warehouse's first months are
  compared only with what it holds, never with the empty months before it.
Portable: ParDo, GroupByKey, CombinePerKey and Flatten only; no state, no side inputs (the
DaskRunner recomputes a side input's whole upstream for every partition that reads it).
"""
from __future__ import annotations

import datetime as dt
import zlib
import zoneinfo
from collections import Counter, defaultdict

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import schemas
from models import gaps as gaps_model
from models import risk_score
from models.subjects import SubjectNamer
from pipelines.link import linkable_rows
from pipelines.packed_events import EventTables, apply_each, flatten, is_event_table
from pipelines.warehouse import FEED_DAYS, SERIES_ROWS, SERIES_TALLIES, SeriesReader, domain_item, series_row
from schemas import event_arrow_schema

_TZ = zoneinfo.ZoneInfo(schemas.TIMEZONE)
_HOTLINE = "hotline_12345"
_EPOCH = dt.date(1970, 1, 1)
# Records are summarised in this many groups, by a hash of their township: every series is a
# township's or one of its villages', so a group's tallies are whole and need no combining across
# groups; enough groups to spread townships over workers.
DAILY_COUNT_SHARDS = 64


def local_date(t: dt.datetime) -> dt.date:
    return t.astimezone(_TZ).date()


def local_days(reported_at):
    """``local_date`` of an Arrow column of timestamps or epoch milliseconds, as ``date32`` (days since the epoch)."""
    instants = pc.cast(reported_at, pa.timestamp("ms", tz=schemas.TIMEZONE))
    return pc.local_timestamp(instants).cast(pa.date32())


def _many_people_threshold() -> int | None:
    for s in schemas.signals()["signals"]:
        if s["code"] == "many_people":
            return s.get("people_involved_at_least")
    return None


def series_keys(event: dict):
    """The series an event counts in: its township's and, if known, its village's (× domain)."""
    county, township = event.get("county_code"), event["township_code"]
    yield county, township, None, event["domain"]
    if event.get("village_code"):
        yield county, township, event["village_code"], event["domain"]


class IncidentCombineFn(beam.CombineFn):
    """The records of one incident in one series → one incident summary.

    The accumulator is the list of its records' ``contribution`` tuples: an incident has few
    records. The stream counts with it; the batch's shards (``_ShardTallies``) give the same tallies
    summed per series × day from columns (``series_day_tallies``).
    """

    def __init__(self, many_people_at_least: int | None):
        self._many = many_people_at_least

    def contribution(self, e: dict, reported_at, subjects) -> tuple:
        """What one record adds to its incident: (reported_at, feed, signals, subjects, village,
        caller, hotline_bad: None for a record of another feed than 12345)."""
        signals = tuple(e.get("signals") or ())
        if self._many is not None and (e.get("people_involved") or 0) >= self._many:
            signals += ("many_people",)
        hotline_bad = None
        if e["source"] == _HOTLINE:
            # still open / sent back, or closed to the caller's dissatisfaction
            hotline_bad = int(e.get("status") != "closed" or e.get("satisfaction") == "dissatisfied")
        return (reported_at, e["source"], signals, tuple(subjects or ()), e.get("village_code"), e.get("caller_key"),
                hotline_bad)

    def create_accumulator(self):
        return []

    def add_input(self, acc, e):
        acc.append(self.contribution(e, e["reported_at"], e.get("subjects")))
        return acc

    def merge_accumulators(self, accs):
        return [c for acc in accs for c in acc]

    def extract_output(self, acc):
        # ISO strings in keys: Beam must encode keys deterministically, which dates are not
        return {"date": local_date(min(c[0] for c in acc)).isoformat(), "tally": incident_tally(acc)}


def incident_tally(contributions: list) -> dict:
    """One incident's record contributions (``IncidentCombineFn.contribution``) in a series → its tally."""
    if len(contributions) == 1:  # most incidents have one record in a series: its fields as they are
        _, feed, signals, subjects, village, caller, bad = contributions[0]
        feeds, callers, places = (feed,), {caller: 1} if caller else {}, {village: [1, 1]} if village else {}
        hotline, hotline_bad = (0, 0) if bad is None else (1, bad)
    else:
        feeds, signals, subjects, callers, villages = set(), set(), set(), {}, {}
        hotline = hotline_bad = 0
        for _, feed, record_signals, record_subjects, village, caller, bad in contributions:
            feeds.add(feed)
            signals.update(record_signals)
            subjects.update(record_subjects)
            if village:
                villages[village] = villages.get(village, 0) + 1
            if caller:
                callers[caller] = callers.get(caller, 0) + 1
            if bad is not None:
                hotline += 1
                hotline_bad += bad
        # per village of its records: the incident once, and its records there (the village scan)
        places = {v: [1, n] for v, n in sorted(villages.items())}
    n_feeds = len(feeds)
    # dict.fromkeys of the sorted names: each once (a record may name a signal twice), in order
    return {"incidents": 1, "records": len(contributions), "signals": dict.fromkeys(sorted(signals), 1),
            "feeds": dict.fromkeys(sorted(feeds), 1), "feeds_2": int(n_feeds == 2), "feeds_3": int(n_feeds >= 3),
            "callers": callers, "hotline": hotline, "hotline_bad": hotline_bad,
            "subjects": dict.fromkeys(sorted(subjects), 1), "villages": places}


# What _IncidentRecords keeps of an Event (IncidentCombineFn.contribution, series_keys), with the subjects its
# text names in place of the text; reported_at as epoch milliseconds.
_RECORD_FIELDS = ["event_id", "incident_id", "reported_at", "county_code", "township_code", "village_code", "domain",
                  "source", "signals", "people_involved", "status", "satisfaction", "caller_key", "subjects"]


def _record_schema() -> pa.Schema:
    events = event_arrow_schema()
    types = {"reported_at": pa.int64(), "subjects": pa.list_(pa.string())}
    return pa.schema([pa.field(name, types.get(name) or events.field(name).type) for name in _RECORD_FIELDS])


class _IncidentRecords(beam.DoFn):
    """Event → (shard of its township, its record: ``_RECORD_FIELDS``' values). A group's Events as a table
    (``packed_events.is_event_table``) → (shard, its records as a table of ``_RECORD_FIELDS``, IPC bytes) per
    shard of its townships (a township-month's all go to one): they cross to their shard as one element."""

    def __init__(self, shards: int):
        self._shards = shards
        self._skipped = beam.metrics.Metrics.counter("score", "records_without_township")

    def setup(self):
        self._namer = SubjectNamer()
        self._schema = _record_schema()

    def _shard(self, township: str) -> int:
        return zlib.crc32(township.encode("utf-8")) % self._shards

    def process(self, element):
        if not is_event_table(element):
            yield from self._record(element)
            return
        table = EventTables.from_bytes(element[1])
        # Records of no domain count nowhere: a table of the Events linking leaves alone holds nothing else.
        table = table.filter(linkable_rows(table))
        towns = table.column("township_code")
        placed = pc.fill_null(pc.not_equal(towns, ""), False)
        skipped = table.num_rows - pc.sum(placed).as_py() if table.num_rows else 0
        if skipped:
            self._skipped.inc(skipped)
            table = table.filter(placed)
        if not table.num_rows:
            return
        subjects = pa.array(self._namer.names_of(table.column("text").to_pylist()), self._schema.field("subjects").type)
        records = pa.table([subjects if name == "subjects" else table.column(name).cast(self._schema.field(name).type)
                            for name in _RECORD_FIELDS], schema=self._schema)
        towns = pc.dictionary_encode(records.column("township_code").combine_chunks())
        shard_of = [self._shard(t) for t in towns.dictionary.to_pylist()]
        if len(set(shard_of)) == 1:  # a link group's table: one township
            yield shard_of[0], EventTables.to_bytes(records)
            return
        shards = np.array(shard_of)[towns.indices.to_numpy()]
        for shard in sorted(set(shard_of)):
            yield shard, EventTables.to_bytes(records.filter(pa.array(shards == shard)))

    def _record(self, event: dict):
        if not event.get("domain") or event["domain"] == "none":
            return
        if not event.get("township_code"):
            self._skipped.inc()
            return
        # Epoch milliseconds: a datetime would be pickled element by element in the shuffle.
        fields = {"reported_at": int(event["reported_at"].timestamp() * 1000),
                  "subjects": self._namer.names(event.get("text"))}
        yield self._shard(event["township_code"]), tuple(
            fields[name] if name in fields else event.get(name) for name in _RECORD_FIELDS)


def _codes(values: pa.Array, nulls: bool = False) -> tuple[np.ndarray, list]:
    """A column → (a code per row, the distinct values sorted: a code is its value's index there). A null is
    coded -1, or (``nulls``) as a value of its own."""
    encoded = pc.dictionary_encode(values, null_encoding="encode" if nulls else "mask")
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order) + 1, np.int64)
    rank[order], rank[-1] = np.arange(len(order)), -1
    return rank[encoded.indices.fill_null(-1).to_numpy()], encoded.dictionary.take(order).to_pylist()


def _firsts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer keys → (a code per key, numbered in key order; the index of each code's first key)."""
    _, first, code = np.unique(keys, return_index=True, return_inverse=True)
    return code, first


def _counted(tallies: list, field: str, keys: np.ndarray, codes: np.ndarray, n_codes: int, values: list):
    """Per (tally, code) pair: how often it occurs, set in ``tallies[k][field][values[code]]``; each tally's
    names in sorted order, as the tally is stored (JSON with sorted keys) and read back."""
    if not len(keys):
        return
    pairs, counts = np.unique(keys * n_codes + codes, return_counts=True)
    for k, code, n in zip((pairs // n_codes).tolist(), (pairs % n_codes).tolist(), counts.tolist()):
        tallies[k][field][values[code]] = n


def series_day_tallies(records: pa.Table, many_people_at_least: int | None):
    """Records (a table of ``_RECORD_FIELDS``, each of a domain and a township) → ((series, ISO date), tally)
    per series × day: the ``merge_tallies`` sum of the ``IncidentCombineFn`` tallies of the incidents whose
    first record in the series is of that day. Computed per column: each record is counted once in each
    of its series (``series_keys``), its incident's items (feeds, signals, subjects) once per incident."""
    n = records.num_rows
    if not n:
        return
    column = {name: records.column(name).combine_chunks() for name in _RECORD_FIELDS}

    def given(values):  # a text that is neither null nor empty (what `if value` tells of an Event's field)
        return pc.fill_null(pc.not_equal(values, ""), False)

    incident, incidents = _codes(pc.if_else(given(column["incident_id"]), column["incident_id"], column["event_id"]))
    county, counties = _codes(column["county_code"], nulls=True)
    town, towns = _codes(column["township_code"])
    domain, domains = _codes(column["domain"])
    villages_column = column["village_code"]
    village, villages = _codes(pc.if_else(given(villages_column), villages_column, pa.scalar(None, pa.string())))
    # Each record counts in its township's series and, with a village, in that village's: "entries", the
    # records of the first kind then those of the second; entry_of[row]: a record's village entry or -1.
    town_series, town_first = _firsts((county * len(towns) + town) * len(domains) + domain)
    in_village = np.flatnonzero(village >= 0)
    village_series, village_first = _firsts(town_series[in_village] * len(villages) + village[in_village])
    n_town = len(town_first)
    row = np.concatenate([np.arange(n), in_village])
    series = np.concatenate([town_series, n_town + village_series])
    entry_of = np.full(n, -1)
    entry_of[in_village] = n + np.arange(len(in_village))
    series_names = [(counties[county[r]], towns[town[r]], None, domains[domain[r]]) for r in town_first.tolist()]
    series_names += [(counties[county[r]], towns[town[r]], villages[village[r]], domains[domain[r]])
                     for r in in_village[village_first].tolist()]

    # an incident in a series ("group") counts on the local day of its first record there
    group, group_first = _firsts(series * len(incidents) + incident[row])
    reported = column["reported_at"].to_numpy()
    first = np.full(len(group_first), np.iinfo(np.int64).max)
    np.minimum.at(first, group, reported[row])
    day = local_days(pa.array(first)).cast(pa.int32()).to_numpy().astype(np.int64)
    group_series = series[group_first]
    tally_of, tally_first = _firsts(group_series * (day.max() - day.min() + 1) + day - day.min())
    entry_tally = tally_of[group]
    n_tallies = len(tally_first)

    feed, feeds = _codes(column["source"])
    hotline = pc.fill_null(pc.equal(column["source"], _HOTLINE), False).to_numpy(zero_copy_only=False)
    # still open / sent back, or closed to the caller's dissatisfaction
    bad = hotline & (pc.fill_null(pc.not_equal(column["status"], "closed"), True).to_numpy(zero_copy_only=False)
                     | pc.fill_null(pc.equal(column["satisfaction"], "dissatisfied"), False).to_numpy(zero_copy_only=False))
    feed_pairs = np.unique(group * len(feeds) + feed[row])
    feed_group = feed_pairs // len(feeds)
    n_feeds = np.bincount(feed_group, minlength=len(group_first))
    counts = [np.bincount(tally_of, minlength=n_tallies), np.bincount(entry_tally, minlength=n_tallies),
              np.bincount(tally_of[n_feeds == 2], minlength=n_tallies),
              np.bincount(tally_of[n_feeds >= 3], minlength=n_tallies),
              np.bincount(entry_tally[hotline[row]], minlength=n_tallies),
              np.bincount(entry_tally[bad[row]], minlength=n_tallies)]
    tallies = [{"incidents": i, "records": r, "signals": {}, "feeds": {}, "feeds_2": f2, "feeds_3": f3, "callers": {},
                "hotline": h, "hotline_bad": b, "subjects": {}, "villages": {}}
               for i, r, f2, f3, h, b in zip(*(c.tolist() for c in counts))]
    _counted(tallies, "feeds", tally_of[feed_group], feed_pairs % len(feeds), len(feeds), feeds)

    def in_groups(item_rows: np.ndarray, item_codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
        """Items of records (rows, codes) → the tally of each distinct (group, item), for each of its groups."""
        entries = entry_of[item_rows]
        also = entries >= 0
        pairs = np.unique(np.concatenate([group[item_rows], group[entries[also]]]) * n_codes
                          + np.concatenate([item_codes, item_codes[also]]))
        return tally_of[pairs // n_codes], pairs % n_codes

    signals = column["signals"]
    signal_names, signal_rows = [pc.list_flatten(signals)], [pc.list_parent_indices(signals).to_numpy()]
    if many_people_at_least is not None:
        people = pc.fill_null(column["people_involved"], 0)
        many = np.flatnonzero(pc.greater_equal(people, many_people_at_least).to_numpy(zero_copy_only=False))
        signal_names.append(pa.array(["many_people"] * len(many), pa.string()))
        signal_rows.append(many)
    for field, names, item_rows in (("signals", pa.concat_arrays(signal_names), np.concatenate(signal_rows)),
                                    ("subjects", pc.list_flatten(column["subjects"]),
                                     pc.list_parent_indices(column["subjects"]).to_numpy())):
        codes, values = _codes(names)
        if values:
            _counted(tallies, field, *in_groups(item_rows, codes, len(values)), len(values), values)

    callers_column = column["caller_key"]
    caller, callers = _codes(pc.if_else(given(callers_column), callers_column, pa.scalar(None, pa.string())))
    called = caller[row] >= 0
    _counted(tallies, "callers", entry_tally[called], caller[row][called], len(callers), callers)

    # per village: the incidents with records there, and their records there
    placed = village[row] >= 0
    if placed.any():
        n_villages = len(villages)
        places, records_there = np.unique(group[placed] * n_villages + village[row][placed], return_counts=True)
        per_tally, at = np.unique(tally_of[places // n_villages] * n_villages + places % n_villages,
                                  return_inverse=True)
        in_place = np.bincount(at, minlength=len(per_tally)).tolist()
        records_in_place = np.bincount(at, weights=records_there, minlength=len(per_tally)).astype(np.int64).tolist()
        for k, code, i, r in zip((per_tally // n_villages).tolist(), (per_tally % n_villages).tolist(), in_place,
                                 records_in_place):
            tallies[k]["villages"][villages[code]] = [i, r]

    dates = {}
    for k, tally in enumerate(tallies):
        d = int(day[tally_first[k]])
        date = dates.get(d)
        if date is None:
            date = dates[d] = (_EPOCH + dt.timedelta(days=d)).isoformat()
        yield (series_names[group_series[tally_first[k]]], date), tally


class _ShardTallies(beam.DoFn):
    """(shard, records: tables of them, ``_IncidentRecords``, or single ones) → ((series, ISO date), tally)
    summed over the shard's incidents (``series_day_tallies``); ``by_month``: → (month, [the month's
    tallies as stored rows, ``warehouse.series_row``]) per month of the shard.

    Every record of a series is in its township's shard, so incidents are summarised and summed per
    series × day here, per column over the shard's records, not through combines per key, which cost
    Beam's per-key overhead per record and per partial tally.
    """

    def __init__(self, by_month: bool = False):
        super().__init__()
        self._by_month = by_month

    def setup(self):
        self._schema = _record_schema()
        self._many = _many_people_threshold()

    def process(self, keyed):
        tallies = series_day_tallies(self._records(keyed[1]), self._many)
        if not self._by_month:
            yield from tallies
            return
        # The rows cross to the store as a few lists: a tally as nested dicts costs 8-20 µs to decode at the
        # store's shuffle, plus Beam's steps per element; a row of texts ~1 µs. The texts are made here
        # rather than in the store, even for days an incremental run keeps as stored (tail months).
        months = defaultdict(list)
        for (series, date), tally in tallies:
            months[date[:7]].append(series_row(series, date, tally))
        yield from months.items()

    def _records(self, values) -> pa.Table:
        tables, rows = [], []
        for value in values:
            if type(value) is bytes:
                tables.append(EventTables.from_bytes(value))
            else:
                rows.append(value)
        if rows:
            tables.append(pa.table([pa.array(c, f.type) for c, f in zip(zip(*rows), self._schema)], schema=self._schema))
        return pa.concat_tables(tables)


class DailyCounts(beam.PTransform):
    """Linked Events (one PCollection or several) → (((county, township, village|None, domain), ISO
    date), tally); ``by_month``: → (month, [tallies as the warehouse stores them,
    ``warehouse.series_row``]), a few elements per month (one per shard), for ``warehouse.StoreTallies``.

    Records are grouped by a hash shard of their township, summarised per incident and series and
    summed per series × day within the shard.
    """

    def __init__(self, shards: int = DAILY_COUNT_SHARDS, by_month: bool = False):
        super().__init__()
        self._shards, self._by_month = shards, by_month

    def expand(self, events):
        records = apply_each(events, "RecordsByIncident", lambda: beam.ParDo(_IncidentRecords(self._shards)))
        return (
            flatten(records, "AllRecords")
            | "GroupIncidentShards" >> beam.GroupByKey()
            | "ShardTallies" >> beam.ParDo(_ShardTallies(self._by_month))
        )


def feed_day_key(event: dict) -> tuple:
    """What a data gap is measured on: records per feed × township × local day (ISO date)."""
    return event["source"], event.get("township_code"), local_date(event["reported_at"]).isoformat()


def _feed_days(element) -> list[tuple]:
    """An Event → [(``feed_day_key``, 1)]; a group's Events as a table (``packed_events.is_event_table``)
    → [(key, its records)] per key, counted in Arrow."""
    if not is_event_table(element):
        return [(feed_day_key(element), 1)]
    table = EventTables.from_bytes(element[1])
    days = pa.table({"source": table.column("source"), "township_code": table.column("township_code"),
                     "date": local_days(table.column("reported_at"))})
    counts = days.group_by(["source", "township_code", "date"]).aggregate([([], "count_all")])
    return [((source, township, date.isoformat()), n) for source, township, date, n in zip(
        *(counts.column(name).to_pylist() for name in ("source", "township_code", "date", "count_all")))]


class FeedDayCounts(beam.PTransform):
    """All Events (including domain ``none``; one PCollection or several; an element may be a group's
    Events as a table, ``packed_events.is_event_table``) → ((feed, township_code, ISO date), records)."""

    def expand(self, events):
        parts = apply_each(events, "FeedTownshipDay", lambda: beam.FlatMap(_feed_days))
        if len(parts) > 1:
            # each part's counts summed in its own stage first (a lifted combine), so the Events that come one
            # by one (those linking leaves alone) do not cross to the sum as an element each
            parts = [part | f"PartCounts{i}" >> beam.CombinePerKey(sum) for i, part in enumerate(parts)]
        return flatten(parts, "AllFeedDays") | "CountRecords" >> beam.CombinePerKey(sum)


class FindGaps(beam.PTransform):
    """((feed, township_code, ISO date), records) → one list of ``models.gaps.Gap`` for start..end."""

    def __init__(self, target_start: dt.date, target_end: dt.date):
        super().__init__()
        self._start, self._end = target_start, target_end

    def expand(self, feed_days):
        start, end = self._start, self._end
        return (
            feed_days
            | "OneKey" >> beam.MapTuple(lambda key, n: (None, (key[0], key[1], dt.date.fromisoformat(key[2]), n)))
            | "AllFeedDays" >> beam.GroupByKey()
            | "FindGaps" >> beam.MapTuple(lambda _, rows: gaps_model.find_gaps(rows, start, end))
        )


class DataStart(beam.PTransform):
    """(ISO date, records) → the first day the feeds cover (``models.gaps.coverage_start``) up to ``end`` (None:
    the last day with records), one element (none without records): where a series' history can begin."""

    def __init__(self, end: dt.date | None = None):
        super().__init__()
        self._end = end

    def expand(self, day_records):
        # one group, as FindGaps': the streaming DirectRunner cannot run a CombinePerKey here
        return (day_records
                | "OneKey" >> beam.Map(lambda day: (None, day))
                | "AllDays" >> beam.GroupByKey()
                | "CoverageStart" >> beam.FlatMap(_coverage_start, self._end))


def _coverage_start(keyed, end: dt.date | None):
    daily: Counter = Counter()
    for day, n in keyed[1]:
        daily[dt.date.fromisoformat(day)] += n
    start = gaps_model.coverage_start(daily, end or max(daily))
    if start is not None:
        yield start


def _by_township(batches, weight: float) -> tuple[dict, dict]:
    """A domain's runs of (county, township, village, dates, tallies) (``SeriesReader.runs``) →
    {(county, township): {village or None: {date: tally}}} and per county its townships' daily volume
    summed over them, and how many (the parent series); in one pass, a run's days laid out at once."""
    series = defaultdict(lambda: defaultdict(dict))
    daily, townships = defaultdict(Counter), defaultdict(set)
    for runs in batches:
        for county, township, village, dates, tallies in runs:
            series[(county, township)][village].update(zip(dates, tallies))
            if village is None:
                volumes = daily[county]
                for date, tally in zip(dates, tallies):
                    volumes[date] += risk_score.volume(tally, weight=weight)
                townships[county].add(township)
    parents = {county: {"daily": dict(days), "children": len(townships[county])} for county, days in daily.items()}
    return series, parents


def _siblings(by_village: dict) -> int:
    """How many villages of a township have tallies (the ``n_siblings`` of each)."""
    return max(len(by_village) - (None in by_village), 1)


class _ScoreDomain(beam.DoFn):
    """Every series of one domain (townships and their villages, all counties) → score rows.

    One group per domain holds what a township's score needs from its county (the parent series),
    so no side input is needed; the feed gaps arrive in the same group.
    """

    def __init__(self, target_start, target_end, history_start, villages: bool = True,
                 village_names: dict[str, str] | None = None):
        self._period = dict(target_start=target_start, target_end=target_end, history_start=history_start)
        self._villages = villages
        self._village_names = village_names
        self._rows = beam.metrics.Metrics.counter("score", "score_rows")

    def setup(self):
        self._cfg = risk_score.config()
        self._stored = SeriesReader()

    def finish_bundle(self):
        self._stored.clear()

    def process(self, element):
        domain, joined = element
        gaps = next(iter(joined.get("gaps", ())), None) or []
        period = self._with_data_from(next(iter(joined.get("data_start", ())), None))
        # a stored tally's callers are parsed only where a repeat caller's lookback reads them
        callers_from = risk_score.first_caller_day(period["target_start"], self._cfg).isoformat()
        by_township, parents = _by_township((self._stored.runs(batch, domain, callers_from=callers_from)
                                             for batch in joined["series"]), risk_score.report_weight(self._cfg))
        townships = sorted(by_township.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
        # the villages' parent series, laid out once per township for all of them
        township_counts = {key: self._volumes(by_village.get(None, {}), period) for key, by_village in townships}
        # sparse townships pool from their county, sparse villages from their township: one fit each,
        # all fitted together before the series are scored one by one, and their month models and windows'
        # surprisals likewise
        memos = dict(parent_fits={}, month_models={}, window_scores={})
        risk_score.fit_ahead(self._fitted_series(townships, parents, township_counts), cfg=self._cfg, **memos,
                             **period)
        for (county, township), by_village in townships:
            rows = self._score_township(county, township, domain, by_village, parents, gaps, memos,
                                        township_counts[(county, township)], period)
            self._rows.inc(len(rows))
            yield from rows

    def _with_data_from(self, data_start: dt.date | None) -> dict:
        """The period, its history starting no earlier than the feeds' coverage (``DataStart``): the days
        before it are unknown, not quiet."""
        if data_start is None or data_start <= self._period["history_start"]:
            return self._period
        return {**self._period, "history_start": min(data_start, self._period["target_start"])}

    def _volumes(self, daily: dict, period: dict):
        """A series' daily volumes on the history and period (``risk_score.dense_counts``)."""
        return risk_score.dense_volumes(daily, period["history_start"], period["target_end"],
                                        risk_score.report_weight(self._cfg))

    def _scored_villages(self, by_village: dict):
        """(village, daily) of the villages scored: those with incidents in the period."""
        start, end = self._period["target_start"], self._period["target_end"]
        for village, daily in sorted((v, d) for v, d in by_village.items() if v is not None):
            # from the last day: the period's days come last (a village scored has one there, mostly)
            if any(start <= d <= end and t["incidents"] for d, t in reversed(daily.items())):
                yield village, daily

    def _fitted_series(self, townships, parents, township_counts):
        """(daily, parent daily counts, n_siblings) of every series ``_score_township`` scores, in ``score_series``'
        terms."""
        for (county, township), by_village in townships:
            parent = parents.get(county, {"daily": {}, "children": 1})
            yield township_counts[(county, township)], parent["daily"], parent["children"]
            if self._villages:
                for _, daily in self._scored_villages(by_village):
                    yield daily, township_counts[(county, township)], _siblings(by_village)

    def _score_township(self, county, township, domain, by_village, parents, gaps, memos,
                        township_counts, period: dict) -> list[dict]:
        n_villages = _siblings(by_village)
        township_daily = by_village.get(None, {})
        parent = parents.get(county, {"daily": {}, "children": 1})
        rows = risk_score.score_series(township_daily, township_code=township, village_code=None, domain=domain,
                                       gaps=gaps, parent_daily_counts=parent["daily"], n_siblings=parent["children"],
                                       day_rows="all", cfg=self._cfg, village_names=self._village_names,
                                       **memos, **period)
        if not self._villages:
            return rows
        for village, daily in self._scored_villages(by_village):
            rows += risk_score.score_series(daily, township_code=township, village_code=village, domain=domain,
                                            gaps=gaps, parent_daily_counts=township_counts,
                                            n_siblings=n_villages, day_rows="observed",
                                            cfg=self._cfg, **memos, **period)
        return rows


class DomainBatches(beam.PTransform):
    """Series tallies ((series, date), tally) → (domain, [((county, township, village), date, tally)]),
    the batches ``ScoreSeries`` takes (a tally may also be as stored, ``tally_value``).
    Combined per key: the shuffle carries a few lists per bundle, not every tally."""

    def expand(self, tallies):
        return (tallies | "ByDomain" >> beam.Map(domain_item)
                | "ToLists" >> beam.CombinePerKey(beam.combiners.ToListCombineFn()))


class ScoreSeries(beam.PTransform):
    """(domain, [tally items]) batches (``DomainBatches``; or ``warehouse.StoredSeries``, a stored
    month read where scored) over history + target → score rows for target_start..target_end.

    ``gaps``: a PCollection with one list of gaps (``FindGaps``), or None. ``data_start``: a PCollection with
    where the feeds' coverage begins (``DataStart``), or None: history starts no earlier. ``villages=False``
    scores townships only (evaluation compares township series; villages cost most of the fits).
    ``village_names`` (code → the gazetteer's name) name villages in the village scan's reasons.
    Grouped by domain, with the gaps and the data's start joined to every domain's group: no side inputs,
    which the DaskRunner recomputes, whole upstream included, for every partition that reads them.
    """

    def __init__(self, target_start: dt.date, target_end: dt.date, history_start: dt.date, gaps=None,
                 villages: bool = True, village_names: dict[str, str] | None = None, data_start=None):
        super().__init__()
        self._args = (target_start, target_end, history_start, villages, village_names)
        self._joined = {"gaps": gaps, "data_start": data_start}

    def expand(self, batches):
        groups = {"series": batches}
        domains = schemas.domain_codes(include_none=False)
        for name, pcoll in self._joined.items():
            if pcoll is not None:
                label = "".join(word.title() for word in name.split("_"))
                groups[name] = pcoll | f"{label}PerDomain" >> beam.FlatMap(
                    lambda value: [(d, value) for d in domains])
        return (
            groups
            | "GroupDomain" >> beam.CoGroupByKey()
            | "DomainsWithSeries" >> beam.Filter(lambda kv: bool(kv[1]["series"]))
            | "Score" >> beam.ParDo(_ScoreDomain(*self._args))
        )


class DailyTallies(beam.PTransform):
    """Linked Events (one PCollection or several) → ``{SERIES_TALLIES: DailyCounts' tallies, FEED_DAYS:
    FeedDayCounts' counts}``: what scoring reads, and what the batch job keeps per month in the warehouse.
    ``by_month``: ``{SERIES_ROWS: DailyCounts(by_month=True)'s rows, FEED_DAYS: …}``, for
    ``warehouse.StoreTallies`` only."""

    def __init__(self, by_month: bool = False):
        super().__init__()
        self._by_month = by_month

    def expand(self, events):
        return {SERIES_ROWS if self._by_month else SERIES_TALLIES:
                events | "DailyCounts" >> DailyCounts(by_month=self._by_month),
                FEED_DAYS: events | "FeedDays" >> FeedDayCounts()}


class ScoreTallies(beam.PTransform):
    """``{"series": DailyCounts' tallies in DomainBatches, "feed_days": FeedDayCounts' counts}`` over
    history + target → score rows of the target period, history starting no earlier than the feeds' coverage
    (``DataStart``). The batch job keeps both per month in the warehouse, so a month is scored without reading
    its history's events again. ``villages=False`` scores townships only (``ScoreSeries``)."""

    def __init__(self, target_start: dt.date, target_end: dt.date, history_start: dt.date,
                 village_names: dict[str, str] | None = None, villages: bool = True):
        super().__init__()
        self._args = (target_start, target_end, history_start)
        self._village_names, self._villages = village_names, villages

    def expand(self, tallies):
        target_start, target_end, _ = self._args
        gaps = tallies[FEED_DAYS] | "FeedGaps" >> FindGaps(target_start, target_end)
        data_start = (tallies[FEED_DAYS] | "RecordsByDay" >> beam.MapTuple(lambda key, n: (key[2], n))
                      | "DataStart" >> DataStart(target_end))
        return tallies[SERIES_TALLIES] | "ScoreSeries" >> ScoreSeries(*self._args, gaps=gaps, data_start=data_start,
                                                                      villages=self._villages,
                                                                      village_names=self._village_names)


class ScoreEvents(beam.PTransform):
    """Linked Events (history + target period) → score rows of the target period."""

    def __init__(self, target_start: dt.date, target_end: dt.date, history_start: dt.date):
        super().__init__()
        self._args = (target_start, target_end, history_start)

    def expand(self, events):
        tallies = events | "Tallies" >> DailyTallies()
        batched = {SERIES_TALLIES: tallies[SERIES_TALLIES] | "DomainBatches" >> DomainBatches(),
                   FEED_DAYS: tallies[FEED_DAYS]}
        return batched | "ScoreTallies" >> ScoreTallies(*self._args)
