"""The batch job's new Events travel as tables (``packed_events.is_event_table``) from the supersede
step (``IngestFeeds(tables=True)``: one per shard) into linking, and the Events linking leaves alone
on to the writers and counters: the Events, the accounting and the links are those of the
per-Event path the stream job and ``run_ingest`` keep."""
import datetime as dt
import pickle
import shutil

import apache_beam as beam

from pipelines import link, sinks
from pipelines.ingest import SUPERSEDED_TAG, IngestFeeds
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.packed_events import EventTables, PackedRows, is_event_table
from schemas import event_fields
from tests.conftest import INGEST_TIME, TEST_KEY
from tests.test_linked_groups import month_end_events, whole_event


def _collect(pcolls: dict, path) -> None:
    """Each PCollection of ``pcolls`` as a list, all pickled into ``path`` once the pipeline ran."""
    _ = ([pcoll | f"List{name}" >> beam.combiners.ToList() | f"Name{name}" >> beam.Map(lambda v, k=name: (k, v))
          for name, pcoll in pcolls.items()]
         | "AllLists" >> beam.Flatten() | "Together" >> beam.combiners.ToList()
         | beam.Map(lambda named: path.write_bytes(pickle.dumps(dict(named)))))


def _events(elements: list) -> list[dict]:
    """Events and tables of Events → the Events as dicts (as the pipeline carries them), by event_id."""
    rows = PackedRows()
    events = [e for element in elements
              for e in (rows.unpack_all([(element[1], element[0])]) if is_event_table(element) else [element])]
    return sorted(events, key=lambda e: e["event_id"])


def _stored(event_id: str, status: str | None, closed_at: dt.datetime | None) -> dict:
    """A version of a record as the warehouse keeps it (every Event field), from a file this run does not read."""
    event = {f["name"]: None for f in event_fields()}
    event.update({"event_id": event_id, "source": event_id.split(":")[0], "source_id": event_id.split(":")[1],
                  "reported_at": dt.datetime(2026, 10, 3, 14, 5, tzinfo=TZ), "ingested_at": dt.datetime(2026, 10, 20, tzinfo=TZ),
                  "batch_id": "stored", "feed_file": "hotline_12345/2026-09/stored.csv", "feed_line": 2,
                  "text": "楼上住户夜间噪音扰民", "signals": [], "status": status, "closed_at": closed_at})
    return event


class _StoredVersions(beam.PTransform):
    """Lists of event_ids → a list of the stored versions among ``versions`` (as
    ``warehouse.LookupStoredVersions`` finds them)."""

    def __init__(self, versions: list[dict]):
        super().__init__()
        self._versions = {e["event_id"]: e for e in versions}

    def expand(self, event_ids):
        versions = self._versions
        return (event_ids | beam.FlatMap(lambda ids: ids) | beam.Distinct()
                | beam.FlatMap(lambda i: [[versions[i]]] if i in versions else []))


def test_a_shards_latest_versions_leave_as_one_table_with_the_same_events_and_accounting(
        fixture_inbox, gazetteer_path, tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(fixture_inbox, inbox)
    # A stored closed version newer than the inbox's (it wins: the inbox's versions are superseded and
    # the record leaves no Event) and a stored open one (it loses: replaced).
    stored = [_stored("hotline_12345:GD20261003001", "closed", dt.datetime(2026, 10, 9, 9, tzinfo=TZ)),
              _stored("grid:WG001", None, None)]
    with beam.Pipeline(options=beam_options([])) as p:
        outputs = {}
        for name, tables in (("events", False), ("tables", True)):
            ingested = p | name >> IngestFeeds(str(inbox), gazetteer_path, TEST_KEY, INGEST_TIME,
                                               stored_versions=_StoredVersions(stored), tables=tables)
            outputs.update({f"{name}_{kind}": ingested[kind]
                            for kind in ("events", "accounting", SUPERSEDED_TAG, "replaced", "quarantine")})
        _collect(outputs, tmp_path / "got.pickle")
    got = pickle.loads((tmp_path / "got.pickle").read_bytes())
    assert not any(is_event_table(e) for e in got["events_events"])
    assert got["tables_events"] and all(is_event_table(e) for e in got["tables_events"])
    events = _events(got["events_events"])
    assert _events(got["tables_events"]) == events and len(events) == 20
    assert "hotline_12345:GD20261003001" not in {e["event_id"] for e in events}
    for kind in ("accounting", SUPERSEDED_TAG, "replaced", "quarantine"):
        assert sorted(map(repr, got[f"tables_{kind}"])) == sorted(map(repr, got[f"events_{kind}"])), kind
    assert [e["event_id"] for e in got["tables_replaced"]] == ["grid:WG001"]
    assert sum(e["superseded"] for e in got["tables_accounting"]) == 2
    assert all(e["balanced"] for e in got["tables_accounting"])


def _table(events: list[dict]) -> tuple:
    tables = EventTables()
    return (), tables.to_bytes(tables.table([tables.packer.pack(e) for e in events]))


def test_events_given_as_tables_are_linked_as_one_by_one_and_those_left_alone_leave_as_a_table(tmp_path):
    """The month-end Events (a claim across the month end, two townships, records of domain ``none``
    on both sides of it) in two tables, as two supersede shards give them, beside a stored Event kept
    as it is (``KEEP_INCIDENT``, one by one)."""
    events = month_end_events() + [whole_event(8, "grid", 30, "咨询垃圾清运时间", domain="none")]
    new = [e for e in events if not e.get(link.KEEP_INCIDENT)]
    kept = [e for e in events if e.get(link.KEEP_INCIDENT)]
    with beam.Pipeline(options=beam_options([])) as p:
        flat = p | "Events" >> beam.Create(events) | "Flat" >> link.LinkIncidents()
        parts = ((p | "Tables" >> beam.Create([_table(new[::2]), _table(new[1::2])]),
                  p | "Kept" >> beam.Create(kept))
                 | "Grouped" >> link.LinkIncidentsInParts(grouped=True))
        _collect({"flat": flat, "grouped": parts | "AllParts" >> beam.Flatten(), "alone": parts[2]},
                 tmp_path / "got.pickle")
    got = pickle.loads((tmp_path / "got.pickle").read_bytes())

    def links(elements):
        return [(e["event_id"], e["incident_id"], bool(e.get(link.KEEP_INCIDENT))) for e in _events(elements)]

    assert links(got["grouped"]) == links(got["flat"])
    assert ("grid:3", "police_110:1", False) in links(got["flat"])
    # the records of domain none: their own incidents, in tables of one month each (the writers take those whole)
    assert all(is_event_table(e) for e in got["alone"])
    assert sorted(len({sinks.month_of(e) for e in _events([table])}) for table in got["alone"]) == [1, 1]
    assert [(e["event_id"], e["incident_id"], e["domain"]) for e in _events(got["alone"])] == [
        ("grid:8", "grid:8", "none"), ("hotline_12345:5", "hotline_12345:5", "none")]
    assert _events(got["grouped"]) == _events(got["flat"])
