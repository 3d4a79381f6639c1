"""Series tallies in the warehouse: written with their callers in a column of their own, read back as
counted, from this layout and from the one before it (callers inside the tally's JSON)."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.options import beam_options
from pipelines.warehouse import (FEED_DAYS, SERIES_TALLIES, SeriesReader, StoredSeries, StoreTallies,
                                 read_month_tallies, tally_path)
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
        _ = tallies | StoreTallies(str(out), ["2025-03"], marks)


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
