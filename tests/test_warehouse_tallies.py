"""Series tallies in the warehouse: written with their callers in a column of their own, read back as
counted, from this layout and from the one before it (callers inside the tally's JSON)."""
from __future__ import annotations

import datetime as dt
import json
import pickle
from collections import Counter
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

import schemas
from models import risk_score
from pipelines.options import beam_options
from pipelines.packed_events import EventTables
from pipelines.normalise import TZ
from pipelines.warehouse import (FEED_DAYS, SERIES_TALLIES, ReadScoredTallies, SeriesReader, StoredSeries,
                                 StoreTallies, domain_item, read_month_tallies, series_row, tally_path)
from pipelines.score import _ScoreDomain, _by_township, incident_tally
from tests.test_linked_groups import TOWNS, whole_event

CALLER = "9f" * 32  # a hashed caller key


def _tally(n: int, caller: str | None = CALLER, subject: str | None = None) -> dict:
    """One incident told by ``n`` 12345 records."""
    return incident_tally([(0, "hotline_12345", ("gathering",), (subject,) if subject else (), "341523001001",
                            caller, 1)] * n)


SERIES = [
    ((("341523", "341523001000", None, "civil_dispute"), "2025-03-02"), _tally(2)),
    ((("341523", "341523001000", "341523001001", "civil_dispute"), "2025-03-02"), _tally(2)),
    ((("341523", "341523001000", None, "civil_dispute"), "2025-03-20"), _tally(1, None, "锦绣花园小区")),
    ((("341523", "341523002000", None, "labor_wage"), "2025-03-05"), _tally(3, "ab" * 32, "宏达公司")),
]
FEEDS = [(("hotline_12345", "341523001000", "2025-03-02"), 4), (("police_110", "341523002000", "2025-03-05"), 3)]


def _store(out: Path, series, feed_days, rewrite=None) -> None:
    with beam.Pipeline(options=beam_options(["--direct_num_workers=1"])) as p:
        tallies = {SERIES_TALLIES: p | "S" >> beam.Create(series), FEED_DAYS: p | "F" >> beam.Create(feed_days)}
        marks = None if rewrite is None else p | "Rewrite" >> beam.Create(rewrite)
        _ = tallies | StoreTallies(str(out), marks)


def _series_read(out: Path) -> list:
    return sorted((element for table, element in read_month_tallies(str(out), "2025-03") if table == SERIES_TALLIES),
                  key=repr)


def _rows(reader: SeriesReader, batch, domain: str, **options) -> list:
    """``reader``'s runs of ``domain`` as rows (county, township, village, ISO date, tally), in the order read."""
    return [(county, township, village, date.isoformat(), tally)
            for county, township, village, dates, tallies in reader.runs(batch, domain, **options)
            for date, tally in zip(dates, tallies)]


def _scorer_rows(out: Path, domain: str) -> list:
    """What the scorer reads, callers and all."""
    return sorted(_rows(SeriesReader(), StoredSeries(str(out), "2025-03"), domain), key=repr)


def _expected_rows(domain: str) -> list:
    return sorted(((*series[:3], date, tally) for (series, date), tally in SERIES if series[3] == domain), key=repr)


def test_tallies_are_stored_with_callers_apart_and_read_back_as_counted(tmp_path):
    _store(tmp_path, SERIES, FEEDS)
    table = pq.read_table(tally_path(str(tmp_path), "2025-03", SERIES_TALLIES))
    assert table.column_names[-2:] == ["tally", "callers"]
    assert not any("callers" in json.loads(text) for text in table.column("tally").to_pylist())
    assert sorted(map(json.loads, table.column("callers").to_pylist()), key=repr) == sorted(
        [{CALLER: 2}, {CALLER: 2}, {}, {"ab" * 32: 3}], key=repr)
    assert _series_read(tmp_path) == sorted(SERIES, key=repr)
    for domain in ("civil_dispute", "labor_wage"):
        assert _scorer_rows(tmp_path, domain) == _expected_rows(domain)
    assert list(_rows(SeriesReader(), StoredSeries(str(tmp_path), "2025-03"), "campus_safety")) == []


def test_callers_are_parsed_only_from_the_day_the_scorer_reads_them(tmp_path):
    """``callers_from``: the tallies dated before it come without callers, one dict per text; those from it
    on with theirs."""
    _store(tmp_path, SERIES, FEEDS)
    rows = _rows(SeriesReader(), StoredSeries(str(tmp_path), "2025-03"), "civil_dispute", callers_from="2025-03-02")
    assert [tally["callers"] for *_, tally in rows] == [{CALLER: 2}, {}, {CALLER: 2}]
    rows = _rows(SeriesReader(), StoredSeries(str(tmp_path), "2025-03"), "civil_dispute", callers_from="2025-03-03")
    assert [(date, "callers" in tally) for _, _, _, date, tally in rows] == [
        ("2025-03-02", False), ("2025-03-20", True), ("2025-03-02", False)]
    assert rows[0][4] is rows[2][4] and dict(rows[0][4]) == {k: v for k, v in _tally(2).items() if k != "callers"}


def _write_previous_layout(out: Path) -> None:
    """The month as stored before callers had a column: the whole tally as one JSON text."""
    rows = [(*series, date, json.dumps(tally, sort_keys=True, ensure_ascii=False)) for (series, date), tally in SERIES]
    names = ["county_code", "township_code", "village_code", "domain", "date", "tally"]
    path = Path(tally_path(str(out), "2025-03", SERIES_TALLIES))
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_arrays([pa.array(c, pa.string()) for c in zip(*rows)], names=names), path)
    feeds = [(*key, n) for key, n in FEEDS]
    pq.write_table(pa.Table.from_arrays([pa.array(c) for c in zip(*feeds)], names=["feed", "township_code", "date",
                                                                                    "records"]),
                   tally_path(str(out), "2025-03", FEED_DAYS))


def test_a_month_stored_in_the_previous_layout_reads_as_counted_and_is_split_when_written_again(tmp_path):
    _write_previous_layout(tmp_path)
    assert _series_read(tmp_path) == sorted(SERIES, key=repr)
    for domain in ("civil_dispute", "labor_wage"):
        assert _scorer_rows(tmp_path, domain) == _expected_rows(domain)
    # an incremental run counts the month again from the 10th for one township: the days before, and the
    # other township's, are kept and written back
    later = [((("341523", "341523001000", None, "civil_dispute"), "2025-03-21"), _tally(1))]
    _store(tmp_path, later, [], rewrite=[("2025-03", "341523001000", "2025-03-10")])
    assert "callers" in pq.read_schema(tally_path(str(tmp_path), "2025-03", SERIES_TALLIES)).names
    kept = [element for element in SERIES if element[0][1] < "2025-03-10"]
    assert _series_read(tmp_path) == sorted(kept + later, key=repr)


def test_the_scorer_reads_a_domains_tallies_in_their_stored_order(tmp_path):
    """A domain's rows come in the order stored (the scorer's rows follow it), with the domains interleaved
    in the file, and again from the month kept after its first read."""
    interleaved = SERIES + [((("341523", "341523001000", "341523001002", "labor_wage"), day), _tally(1))
                            for day in ("2025-03-09", "2025-03-01")]
    interleaved += [((("341523", "341523002000", "341523002001", "civil_dispute"), "2025-03-11"), _tally(2))]
    _store(tmp_path, interleaved, FEEDS)
    stored = pq.read_table(tally_path(str(tmp_path), "2025-03", SERIES_TALLIES))
    assert len(set(stored.column("domain").to_pylist()[:4])) == 2  # interleaved in the file
    reader = SeriesReader()
    for _ in range(2):  # the month is read once and kept
        for domain in ("labor_wage", "civil_dispute", "campus_safety"):
            rows = [row[:4] for row in _rows(reader, StoredSeries(str(tmp_path), "2025-03"), domain)]
            in_file = [tuple(r[k] for k in ("county_code", "township_code", "village_code", "date"))
                       for r in stored.to_pylist() if r["domain"] == domain]
            assert rows == in_file and len(rows) == {"labor_wage": 3, "civil_dispute": 4, "campus_safety": 0}[domain]


def _laid_out(batches, domain: str) -> tuple:
    """``_by_township`` of ``domain``'s runs from ``batches``, as plain dicts."""
    series, parents = _by_township((SeriesReader().runs(batch, domain) for batch in batches), 0.5)
    return {key: {village: dict(daily) for village, daily in by_village.items()}
            for key, by_village in series.items()}, parents


def test_a_series_days_come_in_one_run_and_in_runs_where_the_file_has_them_apart(tmp_path):
    """A stored month's days of one series come as one run (the file is sorted by series). A file whose
    rows of a series lie apart (the previous layout's, written here in the counted order) gives a run per
    stretch; either way the scorer lays out the days it lays out from the tallies as counted."""
    _store(tmp_path, SERIES, FEEDS)
    runs = list(SeriesReader().runs(StoredSeries(str(tmp_path), "2025-03"), "civil_dispute"))
    assert [(village, dates) for _, _, village, dates, _ in runs] == [
        (None, [dt.date(2025, 3, 2), dt.date(2025, 3, 20)]), ("341523001001", [dt.date(2025, 3, 2)])]
    previous = tmp_path / "previous"
    _write_previous_layout(previous)
    runs = list(SeriesReader().runs(StoredSeries(str(previous), "2025-03"), "civil_dispute"))
    assert [village for _, _, village, _, _ in runs] == [None, "341523001001", None]
    for domain in ("civil_dispute", "labor_wage"):
        counted = [[item for d, item in map(domain_item, SERIES) if d == domain]]
        for root in (tmp_path, previous):
            assert _laid_out([StoredSeries(str(root), "2025-03")], domain) == _laid_out(counted, domain)


def test_a_months_callers_column_is_read_only_when_a_tallys_callers_are(tmp_path, monkeypatch):
    """The scorer reads callers only on the days a repeat caller's lookback reaches: a month none of whose
    tallies' callers are read never reads its ``callers`` column (most of the file); a month they are read
    from reads it once for all its domains."""
    from pipelines import warehouse
    _store(tmp_path, SERIES, FEEDS)
    columns_read = []
    read = warehouse.pq.read_table
    monkeypatch.setattr(warehouse.pq, "read_table", lambda source, columns=None: (
        columns_read.append(columns) if columns == ["callers"] else None) or read(source, columns=columns))
    reader = SeriesReader()
    rows = [_rows(reader, StoredSeries(str(tmp_path), "2025-03"), domain, callers_from="2025-04-01")
            for domain in ("civil_dispute", "labor_wage")]
    assert [row[4]["records"] for row in rows[1]] == [3] and columns_read == []
    assert not any("callers" in row[4] for domain_rows in rows for row in domain_rows)
    reader.clear()
    rows = [_rows(reader, StoredSeries(str(tmp_path), "2025-03"), domain, callers_from="2025-03-01")
            for domain in ("civil_dispute", "labor_wage")]
    assert rows[1][0][4]["callers"] == {"ab" * 32: 3}
    assert sorted(repr(row[4]["callers"]) for row in rows[0]) == sorted(map(repr, [{CALLER: 2}, {CALLER: 2}, {}]))
    assert columns_read == [["callers"]]  # one read of the column for the month


def test_the_scorer_is_handed_each_stored_month_and_its_feed_days(tmp_path):
    _store(tmp_path, SERIES, FEEDS)
    domains = schemas.domain_codes(include_none=False)
    with beam.Pipeline(options=beam_options([])) as p:
        read = p | beam.Create(["2025-03", "2025-04"]) | ReadScoredTallies(str(tmp_path))
        assert_that(read[FEED_DAYS], equal_to(FEEDS), label="FeedDays")  # April has no tallies: nothing
        assert_that(read[SERIES_TALLIES], equal_to([(d, StoredSeries(str(tmp_path), m)) for d in domains
                                                    for m in ("2025-03", "2025-04")]), label="Series")


def _month_end_events() -> list[dict]:
    """Events of two townships around the end of March (``tests.test_linked_groups``), a fight's three
    records one incident, and several incidents of one series on a day (their tallies summed)."""
    from pipelines import link
    from tests.test_linked_groups import month_end_events
    events = [{k: v for k, v in e.items() if k != link.KEEP_INCIDENT} for e in month_end_events()]
    return [e | {"incident_id": "fight" if e["event_id"].split(":")[1] in "123" else e["event_id"]} for e in events]


def _in_parts(events: list[dict]) -> list[list]:
    """Events as the batch job's counters take them: several PCollections, one holding a group's table."""
    tables, third = EventTables(), len(events) // 3
    table = ((), tables.to_bytes(tables.table([tables.packer.pack(e) for e in events[third:-third]])))
    return [events[:third], [table], events[-third:]]


def _count_and_store(out: Path, parts: list[list], by_month: bool, rewrite=None) -> None:
    from pipelines import score
    with beam.Pipeline(options=beam_options([])) as p:
        created = tuple(p | f"Part{i}" >> beam.Create(part) for i, part in enumerate(parts))
        counted = (created if len(created) > 1 else created[0]) | score.DailyTallies(by_month=by_month)
        marks = None if rewrite is None else p | "Rewrite" >> beam.Create(rewrite)
        _ = counted | StoreTallies(str(out), marks)


def _stored_files(out: Path) -> dict:
    root = out / "warehouse" / "tallies"
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.parquet"))}


def test_tallies_counted_by_month_are_stored_as_those_counted_one_by_one(tmp_path):
    """``DailyTallies(by_month=True)`` hands the store a month's tallies as a few lists of stored rows, from
    Events in several parts (feed days summed per part first): the files are byte for byte those of the
    tallies counted one by one from one PCollection, in a first run (every month whole) and in an
    incremental one (April's townships counted again from the 2nd, its 1st kept as stored)."""
    events = _month_end_events()
    later = events + [whole_event(40, "police_110", 30, "幸福里小区门口又有人打架", village_code="330100001001")]
    april = [e for e in later if e["reported_at"] >= dt.datetime(2025, 4, 1, 0, tzinfo=TZ)]
    files = {}
    for by_month in (False, True):
        out = tmp_path / f"by_month={by_month}"
        _count_and_store(out, _in_parts(events) if by_month else [events], by_month)
        first = _stored_files(out)
        _count_and_store(out, _in_parts(april) if by_month else [april], by_month,
                         rewrite=[("2025-04", township, "2025-04-02") for township in TOWNS])
        files[by_month] = (first, _stored_files(out))
    assert files[True] == files[False]
    first, second = files[True]
    assert sorted(first) == [f"month=2025-0{m}/{t}.parquet" for m in (3, 4) for t in (FEED_DAYS, SERIES_TALLIES)]
    assert first["month=2025-03/series.parquet"] == second["month=2025-03/series.parquet"]
    assert first["month=2025-04/series.parquet"] != second["month=2025-04/series.parquet"]
    dates = Counter(pq.read_table(pa.BufferReader(second["month=2025-04/series.parquet"])).column("date").to_pylist())
    assert dates["2025-04-01"] and dates["2025-04-02"]  # kept and counted again


def test_daily_counts_by_month_are_the_tallies_as_stored_rows_in_a_list_per_shard_and_month(tmp_path):
    from pipelines import score
    events = _month_end_events()
    with beam.Pipeline(options=beam_options([])) as p:
        created = p | beam.Create(events)
        counted = {"elements": created | "OneByOne" >> score.DailyCounts(shards=2),
                   "lists": created | "ByMonth" >> score.DailyCounts(shards=2, by_month=True)}
        _ = ([pcoll | f"List{name}" >> beam.combiners.ToList() | f"Name{name}" >> beam.Map(lambda v, n=name: (n, v))
              for name, pcoll in counted.items()]
             | beam.Flatten() | "All" >> beam.combiners.ToList()
             | beam.Map(lambda named: (tmp_path / "counted.pickle").write_bytes(pickle.dumps(dict(named)))))
    counted = pickle.loads((tmp_path / "counted.pickle").read_bytes())
    lists, elements = counted["lists"], counted["elements"]
    assert {month for month, _ in lists} == {"2025-03", "2025-04"} and len(lists) <= 4  # two shards
    assert all(row[4][:7] == month for month, rows in lists for row in rows)
    assert sorted((row for _, rows in lists for row in rows), key=repr) == sorted(
        (series_row(*key, tally) for key, tally in elements), key=repr)
    assert len(elements) > len({(key[0][1], key[1]) for key, _ in elements})  # villages' series too


def test_equal_texts_are_parsed_once_per_domain_and_keep_their_own_callers(tmp_path, monkeypatch):
    """Tallies of a domain with equal texts (in one month or in two) share one parse; each keeps its own
    callers, and the shared parse is not changed by them."""
    from pipelines import warehouse
    quiet = [((("341523", "341523001000", "341523001001", "civil_dispute"), f"{month}-{day:02d}"), _tally(1, caller))
             for month in ("2025-03", "2025-04") for day, caller in ((3, "aa" * 32), (4, "bb" * 32), (5, None))]
    _store(tmp_path, quiet, FEEDS)
    texts = set(pq.read_table(tally_path(str(tmp_path), "2025-04", SERIES_TALLIES)).column("tally").to_pylist())
    assert len(texts) == 1
    parsed = []
    loads = warehouse.json.loads
    monkeypatch.setattr(warehouse.json, "loads", lambda text: parsed.append(text) or loads(text))
    reader = SeriesReader()
    for _ in range(2):
        rows = [row for month in ("2025-03", "2025-04")
                for row in _rows(reader, StoredSeries(str(tmp_path), month), "civil_dispute")]
        assert [row[4]["callers"] for row in rows] == [tally["callers"] for _, tally in quiet]
        assert [row[:4] + (row[4],) for row in rows] == [(*series[:3], date, tally) for (series, date), tally in quiet]
        assert len({id(row[4]["signals"]) for row in rows}) == 1  # one parse, shared
        reader.clear()
    assert sum('"signals"' in text for text in parsed) == 2  # the tallies once per reading of the domain


def test_months_before_callers_from_are_read_without_their_callers(tmp_path):
    """The scorer's lookback reaches back from ``callers_from``: a month wholly before it is read without
    callers (its tallies one dict per text); the month ``callers_from`` falls in keeps them from that day on.
    A month in the previous layout has its callers in its text, and keeps them."""
    early = [((("341523", "341523001000", None, "civil_dispute"), "2025-02-27"), _tally(2))]
    _store(tmp_path, SERIES + early, FEEDS)
    reader = SeriesReader()
    (*_, february), = _rows(reader, StoredSeries(str(tmp_path), "2025-02"), "civil_dispute",
                            callers_from="2025-03-02")
    assert february == {k: v for k, v in early[0][1].items() if k != "callers"}
    march = _rows(reader, StoredSeries(str(tmp_path), "2025-03"), "civil_dispute", callers_from="2025-03-02")
    assert sorted(repr(row[4]["callers"]) for row in march) == sorted(map(repr, [{CALLER: 2}, {CALLER: 2}, {}]))
    previous = tmp_path / "previous"
    _write_previous_layout(previous)
    rows = _rows(SeriesReader(), StoredSeries(str(previous), "2025-03"), "labor_wage", callers_from="2025-05-01")
    assert [row[4]["callers"] for row in rows] == [{"ab" * 32: 3}]


def _year_of_tallies(rng) -> list:
    """Two townships (one with villages) of one domain over Jan-Apr 2025: incidents with subjects and callers
    that call again, some within a repeat caller's lookback of April and some long before it."""
    items = []
    day = dt.date(2025, 1, 1)
    while day <= dt.date(2025, 4, 30):
        for township, villages in (("341523001000", ("341523001001", "341523001002")), ("341523002000", ())):
            for village in (None, *villages):
                n = int(rng.poisson(0.8 if village else 1.5))
                if not n:
                    continue
                parts = [incident_tally([(0, ("hotline_12345", "grid")[k % 2], ("gathering",) if k == 3 else (),
                                          (("锦绣花园小区", "宏达公司")[k % 2],) if rng.random() < 0.5 else (),
                                          (village or villages[0]) if villages else None,
                                          f"{int(rng.integers(6)):02x}" * 32 if k % 2 == 0 else None, 1)]
                                        * int(rng.integers(1, 3))) for k in range(n)]
                tally = parts[0] if n == 1 else risk_score.merge_tallies(parts)
                items.append(((("341523", township, village, "labor_wage"), day.isoformat()), tally))
        day += dt.timedelta(days=1)
    return items


def test_stored_months_score_as_the_tallies_counted_in_both_layouts(tmp_path):
    """The scorer reading stored months (texts parsed once per domain, callers only where its lookback
    reaches) gives the rows it gives from the tallies as counted, in this layout and the one before it."""
    items = _year_of_tallies(np.random.default_rng(3))
    _store(tmp_path / "now", items, [])
    previous = tmp_path / "previous"
    for month in ("2025-01", "2025-02", "2025-03", "2025-04"):
        rows = [(*series, date, json.dumps(tally, sort_keys=True, ensure_ascii=False))
                for (series, date), tally in items if date.startswith(month)]
        path = Path(tally_path(str(previous), month, SERIES_TALLIES))
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_arrays([pa.array(c, pa.string()) for c in zip(*rows)], names=[
            "county_code", "township_code", "village_code", "domain", "date", "tally"]), path)
    months = ("2025-01", "2025-02", "2025-03", "2025-04")

    def scored(batches):
        scorer = _ScoreDomain(dt.date(2025, 4, 1), dt.date(2025, 4, 30), dt.date(2025, 1, 1))
        scorer.setup()
        return list(scorer.process(("labor_wage", {"series": batches, "gaps": [[]]})))

    counted = scored([[domain_item(item)[1] for item in items if item[0][1].startswith(m)] for m in months])
    assert any(r["period"] == "day" and r["village_code"] for r in counted)
    assert any(any(reason.endswith("名来电人重复来电") for reason in r["reasons"]) for r in counted)
    for root in (tmp_path / "now", previous):
        assert scored([StoredSeries(str(root), m) for m in months]) == counted
