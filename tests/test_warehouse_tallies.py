"""Series tallies in the warehouse: written with their callers in a column of their own, read back as
counted, from this layout and from the one before it (callers inside the tally's JSON)."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

import schemas
from pipelines.options import beam_options
from pipelines.warehouse import (FEED_DAYS, SERIES_TALLIES, ReadScoredTallies, SeriesReader, StoredSeries,
                                 StoreTallies, read_month_tallies, tally_path)
from pipelines.score import incident_tally

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


def _scorer_rows(out: Path, domain: str) -> list:
    """What the scorer reads: rows with callers parsed on first read, then read."""
    rows = list(SeriesReader().rows(StoredSeries(str(out), "2025-03"), domain, callers_on_read=True))
    for *_, tally in rows:
        tally["callers"]  # noqa: B018 (parsed when read)
    return sorted(((county, township, village, date, dict(tally)) for county, township, village, date, tally in rows),
                  key=repr)


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
    assert list(SeriesReader().rows(StoredSeries(str(tmp_path), "2025-03"), "campus_safety")) == []


def test_callers_are_parsed_only_where_the_scorer_reads_them(tmp_path):
    _store(tmp_path, SERIES, FEEDS)
    (*_, tally), = [row for row in SeriesReader().rows(StoredSeries(str(tmp_path), "2025-03"), "labor_wage",
                                                       callers_on_read=True)]
    assert "callers" not in tally and tally["records"] == 3
    assert tally["callers"] == {"ab" * 32: 3} and "callers" in tally


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
    # an incremental run counts the month again from the 10th: the days before are kept and written back
    later = [((("341523", "341523001000", None, "civil_dispute"), "2025-03-21"), _tally(1))]
    _store(tmp_path, later, [], rewrite=[("2025-03", "2025-03-10")])
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
            rows = [row[:4] for row in reader.rows(StoredSeries(str(tmp_path), "2025-03"), domain)]
            in_file = [tuple(r[k] for k in ("county_code", "township_code", "village_code", "date"))
                       for r in stored.to_pylist() if r["domain"] == domain]
            assert rows == in_file and len(rows) == {"labor_wage": 3, "civil_dispute": 4, "campus_safety": 0}[domain]


def test_a_months_callers_column_is_read_only_when_a_tallys_callers_are(tmp_path, monkeypatch):
    """The scorer reads callers only on the days a repeat caller's lookback reaches: a month none of whose
    tallies' callers are read never reads its ``callers`` column (most of the file)."""
    from pipelines import warehouse
    _store(tmp_path, SERIES, FEEDS)
    columns_read = []
    read = warehouse.pq.read_table
    monkeypatch.setattr(warehouse.pq, "read_table", lambda source, columns=None: (
        columns_read.append(columns) if columns == ["callers"] else None) or read(source, columns=columns))
    reader = SeriesReader()
    rows = [list(reader.rows(StoredSeries(str(tmp_path), "2025-03"), domain, callers_on_read=True))
            for domain in ("civil_dispute", "labor_wage")]
    assert [row[4]["records"] for row in rows[1]] == [3] and columns_read == []
    assert rows[1][0][4]["callers"] == {"ab" * 32: 3} and columns_read == [["callers"]]
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
