"""Validation of chunks of rows: memoised values keep each row's own position in its messages,
and supersede + accounting hold when a record's versions arrive in different chunks."""
from __future__ import annotations

import csv
import datetime as dt
import io

import apache_beam as beam
from hypothesis import given, settings
from hypothesis import strategies as st
from apache_beam.testing.util import assert_that, equal_to

from pipelines.gazetteer import Gazetteer
from pipelines.ingest import SUPERSEDED_TAG, SupersedeChunks, run_ingest
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.read import CHUNK_ROWS, FileReader
from pipelines.validate import EventPacker, RecordValidator, validate_rows
from schemas import FEEDS
from tests.conftest import INGEST_TIME, TEST_KEY

HEADER = ["工单编号", "来电时间", "来电号码", "诉求类型", "诉求内容", "事发地址", "所属镇街", "承办单位", "办理状态", "办结时间"]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8")


def _row(number: int, reported: str = "2026-10-03 14:05:00", status: str = "已受理", closed: str = "") -> list[str]:
    return [f"GD{number:06d}", reported, "13912345678", "投诉", "楼上噪音扰民", "东关村3组", "城关镇", "住建局", status, closed]


def test_repeated_bad_values_are_reported_at_each_rows_own_line(gazetteer_path):
    data = _csv([_row(1, reported="明天下午"), _row(2), _row(3, reported="明天下午"),
                 _row(4, reported="明天下午", status="搁置")])
    rows, _ = FileReader("hotline_12345").read("hotline_12345/a.csv", data)
    validator = RecordValidator("hotline_12345", Gazetteer.from_csv(gazetteer_path), TEST_KEY, INGEST_TIME)
    results = [validator.validate(row) for row in rows]
    assert [ok for ok, _ in results] == [False, True, False, False]
    bad_time = "“来电时间”为“明天下午”，无法识别为日期时间，请按“2026-10-03 14:05:00”格式填写"
    assert results[0][1]["message"] == f"第2行{bad_time}"
    assert results[2][1]["message"] == f"第4行{bad_time}"
    # two problems in one row: each message carries the row's position, the first one's reason wins
    assert results[3][1]["reason"] == "bad_time"
    assert results[3][1]["message"].startswith(f"第5行{bad_time}；第5行“办理状态”为“搁置”，不是可识别的取值")


def test_versions_in_different_chunks_collapse_to_the_latest():
    base = {"source": "hotline_12345", "feed_line": 1, "closed_at": None, "status": "open"}
    chunk_a = [dict(base, event_id="hotline_12345:1", feed_file="a.csv"),
               dict(base, event_id="hotline_12345:2", feed_file="a.csv")]
    chunk_b = [dict(base, event_id="hotline_12345:1", feed_file="a.csv", feed_line=9, status="closed")]
    names = EventPacker().names
    full = [[{**dict.fromkeys(names), **e} for e in chunk] for chunk in (chunk_a, chunk_b)]
    with beam.Pipeline(options=beam_options([])) as p:
        latest = p | beam.Create(full, reshuffle=False) | SupersedeChunks({"a.csv": (0, "a.csv")}, shards=4)
        assert_that(latest.events | beam.Map(lambda e: (e["event_id"], e["status"], e["feed_line"])),
                    equal_to([("hotline_12345:1", "closed", 9), ("hotline_12345:2", "open", 1)]), label="latest")
        assert_that(latest[SUPERSEDED_TAG] | beam.Map(lambda e: (e["event_id"], e["status"])),
                    equal_to([("hotline_12345:1", "open")]), label="superseded")


def test_accounting_balances_across_chunks(write_feed, gazetteer_path, tmp_path):
    # More rows than one chunk holds; the updates of the first rows come in the last chunk.
    first = [_row(i) for i in range(CHUNK_ROWS + 50)]
    updates = [_row(i, status="已办结", closed="2026-10-05 09:00:00") for i in range(30)]
    inbox = write_feed("hotline_12345/export.csv", _csv([*first, _row(999, reported="明天"), *updates, ["合计", "281"]]))
    manifest = run_ingest(str(inbox), gazetteer_path, str(tmp_path / "out"), TEST_KEY, INGEST_TIME).manifest
    [entry] = manifest["files"]
    assert entry["rows_read"] == CHUNK_ROWS + 50 + 1 + 30 + 1
    assert (entry["accepted"], entry["superseded"]) == (CHUNK_ROWS + 50, 30)
    assert entry["quarantined"] == {"bad_time": 1, "summary_row": 1}
    assert entry["balanced"]


_CELLS = ["", " ", "-", "'", "'13912345678", "null", "N/A", "13912345678", "１３９１２３４５６７８", "2026-10-03 14:05:00",
          "2026/10/3 下午2:05", "20261003140500", "明天", "2027-01-01", "投诉", "咨询 ", "搁置", "已办结", "城关镇", "東關村3組",
          "住建局", "樓上噪音擾民，電話13812345678", "  报警人王小明称  ", "3", "十", None, 46298.5868, 1791007500000,
          dt.datetime(2026, 10, 3, 14, 5), dt.date(2026, 10, 3)]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_CELLS), min_size=len(HEADER), max_size=len(HEADER)), min_size=1, max_size=40))
def test_memoised_validation_equals_a_fresh_validators(gazetteer_path, cells):
    # Values repeat across rows and columns: what the memo returns must be what parsing returns.
    gazetteer = Gazetteer.from_csv(gazetteer_path)
    warm = RecordValidator("hotline_12345", gazetteer, TEST_KEY, INGEST_TIME)
    for line, row_cells in enumerate(cells + cells, start=2):
        row = {"feed": "hotline_12345", "file": "hotline_12345/a.csv", "line": line, "sheet": None, "header": HEADER,
               "values": dict(zip(HEADER, row_cells)), "raw": "", "error": None, "batch_id": "b"}
        fresh = RecordValidator("hotline_12345", gazetteer, TEST_KEY, INGEST_TIME)
        assert warm.validate(row) == fresh.validate(row)


GRID_HEADER = ["事件编号", "上报时间", "网格编码", "事件大类", "事件描述", "涉及人数", "处置状态", "办结时间"]
# Equal but differently typed cells (1, 1.0, True) must not share a parse: drawn half the time.
_EQUAL_NUMBERS = st.sampled_from([1, 1.0, True, 0, 0.0, False])
_GRID_CELLS = st.sampled_from([*_CELLS, 2.5, -3, "12人", 341523003007004, ["列表"], {"键": "值"}]) | _EQUAL_NUMBERS
_HEADERS = {"hotline_12345": (HEADER, HEADER[::-1]), "grid": (GRID_HEADER, GRID_HEADER[1:])}


@st.composite
def _raw_rows(draw):
    feed = draw(st.sampled_from(sorted(_HEADERS)))
    header = draw(st.sampled_from(_HEADERS[feed]))
    cells = draw(st.lists(_GRID_CELLS, min_size=len(header), max_size=len(header)))
    error = draw(st.sampled_from([None, None, None, ("summary_row", "第9行是合计/统计行，不是一条记录，已跳过")]))
    return {"feed": feed, "file": f"{feed}/a.csv", "line": 0, "sheet": draw(st.sampled_from([None, "明细"])),
            "header": header, "values": dict(zip(header, cells)), "raw": "", "error": error, "batch_id": "b"}


@settings(max_examples=40, deadline=None)
@given(st.lists(_raw_rows(), min_size=1, max_size=30))
def test_a_chunk_validates_as_each_of_its_rows_alone(gazetteer_path, rows):
    # Columns are parsed at once and repeated values once: no row may see another row's value,
    # position or problem, whatever feeds and headers one chunk mixes.
    for line, row in enumerate(rows, start=2):
        row["line"] = line
    gazetteer = Gazetteer.from_csv(gazetteer_path)
    validators = {feed: RecordValidator(feed, gazetteer, TEST_KEY, INGEST_TIME) for feed in FEEDS}
    alone = [RecordValidator(row["feed"], gazetteer, TEST_KEY, INGEST_TIME).validate(row) for row in rows]
    assert validate_rows(validators, rows) == alone


_times = st.none() | st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=TZ))


@given(st.lists(st.tuples(_times, _times), min_size=1, max_size=20), _times)
def test_packed_events_unpack_to_themselves(times, ingested_at):
    # one packer for all Events, as in a DoFn: its last-conversion memo must not leak between them
    packer = EventPacker()
    events = [{**dict.fromkeys(packer.names), "event_id": f"e{i}", "reported_at": reported, "closed_at": closed,
               "ingested_at": ingested_at, "signals": ["gathering"]} for i, (reported, closed) in enumerate(times)]
    packed = [packer.pack(e) for e in events]
    assert [packer.unpack(p) for p in packed] == events
    assert packed == [EventPacker().pack(e) for e in events]
