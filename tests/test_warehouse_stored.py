"""The incremental run reads stored months back (warehouse.ReadStoredMonths): within the windows
asked for, without the replaced records, as tables; the Events to link keyed into link groups'
tables exactly as each of them would be keyed on its own, the others as linking leaves them."""
import datetime as dt
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

import schemas
from pipelines import link, warehouse
from pipelines.batch import _relinked
from pipelines.options import beam_options
from pipelines.packed_events import PackedEvent, PackedRows, is_event_table
from pipelines.sinks import events_dir, month_of
from tests.test_link import AROUND_MONTH_END, TZ

SINCE = dt.datetime(2025, 4, 1, 5, tzinfo=TZ)
DROPPED = "police_110:4"


def _store(out: Path, events: list[dict]) -> None:
    for month in {month_of(e) for e in events}:
        path = Path(events_dir(str(out))) / f"month={month}" / "events-batch-000.parquet"
        path.parent.mkdir(parents=True)
        rows = [e for e in events if month_of(e) == month]
        pq.write_table(pa.Table.from_pylist(rows, schema=schemas.event_arrow_schema()), path)


def _events(element) -> list[dict]:
    """A table of Events (annotations, Arrow IPC bytes) → its Events, each taking the annotations."""
    assert is_event_table(element)
    annotations, data = element
    return PackedRows().unpack_all([(data, annotations)])


def _read(element):
    """(tag, table of Events) or (LINKED, link group element) → (tag, key, role, event_id, marked)."""
    tag, value = element
    if tag != warehouse.LINKED:
        return [(tag, None, None, e["event_id"], e.get(link.KEEP_INCIDENT)) for e in _events(value)]
    key, (role, rows) = value
    return [(tag, key, role, e["event_id"], e.get(link.KEEP_INCIDENT)) for e in PackedRows().unpack_all([rows])]


def _read_march_relinked_april_tail(p, tmp_path):
    """``ReadStoredMonths`` as an incremental run reads a relinked March (without ``DROPPED``) and the
    hours of April from ``SINCE`` (a month that keeps its links, marked ``KEEP_INCIDENT``)."""
    since = int(SINCE.timestamp() * 1000)
    reach = p | "Reach" >> beam.Create([("2025-03", ("relink", None, None, None, ())),
                                        ("2025-04", ("tail", since, None, None, ()))])
    drop = p | "Drop" >> beam.Create([("2025-03", DROPPED)])
    return ({"reach": reach, "drop": drop}
            | warehouse.ReadStoredMonths(str(tmp_path), linked={"relink": (), "tail": ((link.KEEP_INCIDENT, True),)}))


def test_stored_months_come_back_in_their_windows_with_the_events_to_link_in_tables(tmp_path):
    _store(tmp_path, AROUND_MONTH_END)
    march = [e for e in AROUND_MONTH_END if month_of(e) == "2025-03" and e["event_id"] != DROPPED]
    april = [{**e, link.KEEP_INCIDENT: True} for e in AROUND_MONTH_END
             if month_of(e) == "2025-04" and e["reported_at"] >= SINCE]
    keyer, packed = link._KeyByTownshipMonth(link.link_config()["max_span_hours"]), PackedEvent()
    keyer.setup()
    expected = []
    for tag, events in (("relink", march), ("tail", april)):
        for e in events:
            keyed = [(warehouse.LINKED, key, f"{role}_rows", e["event_id"], packed.unpack(value).get(link.KEEP_INCIDENT))
                     for key, (role, value) in keyer.process(e)]
            expected += keyed or [(tag, None, None, e["event_id"], e.get(link.KEEP_INCIDENT))]
    assert {row[0] for row in expected} == {warehouse.LINKED, "relink"}
    assert any(row[2] == "guest_rows" and row[4] for row in expected)

    with beam.Pipeline(options=beam_options([])) as p:
        read = _read_march_relinked_april_tail(p, tmp_path)
        assert_that(read | beam.FlatMap(_read), equal_to(expected))
        # The Events that need no linking come as linking leaves them: each its own incident.
        incidents = (read | beam.Filter(lambda kv: kv[0] != warehouse.LINKED)
                     | beam.FlatMap(lambda kv: [(e["event_id"], e["incident_id"]) for e in _events(kv[1])]))
        assert_that(incidents, equal_to([("hotline_12345:7", "hotline_12345:7")]), label="OwnIncidents")


def test_without_linked_tags_every_stored_event_comes_back_as_stored(tmp_path):
    stored = [{**e, "incident_id": "police_110:1"} for e in AROUND_MONTH_END]
    _store(tmp_path, stored)
    with beam.Pipeline(options=beam_options([])) as p:
        reach = p | "Reach" >> beam.Create([("2025-03", ("head", None, None, None, ()))])
        drop = p | "Drop" >> beam.Create([("2025-04", DROPPED)])
        read = {"reach": reach, "drop": drop} | warehouse.ReadStoredMonths(str(tmp_path))
        assert_that(read | beam.FlatMapTuple(lambda tag, table: [(tag, sorted(e.items())) for e in _events(table)]),
                    equal_to([("head", sorted(e.items())) for e in stored if month_of(e) == "2025-03"]))


def test_the_stored_events_that_need_no_linking_are_written_only_for_the_months_relinked(tmp_path):
    """What the batch job's incremental run writes of the tables read back: a month that keeps its
    links (``KEEP_INCIDENT``) is there for its tallies only."""
    april_none = {**AROUND_MONTH_END[-3], "event_id": "hotline_12345:70", "reported_at": SINCE + dt.timedelta(hours=1)}
    assert april_none["domain"] == "none"
    _store(tmp_path, [*AROUND_MONTH_END, april_none])
    with beam.Pipeline(options=beam_options([])) as p:
        read = _read_march_relinked_april_tail(p, tmp_path)
        stored = read | beam.Filter(lambda kv: kv[0] != warehouse.LINKED) | beam.Values()
        assert_that(stored | "All" >> beam.FlatMap(lambda table: [e["event_id"] for e in _events(table)]),
                    equal_to(["hotline_12345:7", "hotline_12345:70"]), label="Read")
        written = stored | beam.Filter(_relinked) | "Written" >> beam.FlatMap(lambda t: [e["event_id"] for e in _events(t)])
        assert_that(written, equal_to(["hotline_12345:7"]), label="Written")
