"""The batch job's linked Events travel per township-month as Arrow tables (as bytes,
``LinkIncidentsInParts(grouped=True)``): the links, the written Events and the tallies are those of
the per-Event path (``LinkIncidents``, Events as dicts)."""
import datetime as dt
import pickle

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

from pipelines import link, score, sinks
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.packed_events import EventTables, is_event_table
from pipelines.warehouse import FEED_DAYS, SERIES_TALLIES
from schemas import event_fields

MONTH_END = dt.datetime(2025, 3, 31, 22, 0, tzinfo=TZ)
TOWNS = ("330100001000", "330100002000")


def whole_event(i: int, source: str, hours: float, text: str, township: str = TOWNS[0], domain: str = "public_order",
                **fields) -> dict:
    """An Event with every field of the schema (as validation makes them), the given ones set."""
    event = {f["name"]: None for f in event_fields()}
    event.update({"event_id": f"{source}:{i}", "source": source, "reported_at": MONTH_END + dt.timedelta(hours=hours),
                  "ingested_at": dt.datetime(2025, 4, 3, 8, tzinfo=TZ), "text": text, "county_code": "330100",
                  "township_code": township, "domain": domain, "signals": [], "status": "closed",
                  "satisfaction": "satisfied", "feed_file": f"{source}/2025-04.csv", "source_id": str(i),
                  "batch_id": "b1", "feed_line": i, **fields})
    return event


def month_end_events() -> list[dict]:
    """Two townships around the end of March: a fight reported on the 31st and again in April's
    first hours (an incident April's group must give to March's: a claim), look-alike complaints on
    both sides of midnight, a record of domain ``none``, and a March record kept as stored
    (``KEEP_INCIDENT``, the batch job's month before the relinked one)."""
    events = [
        whole_event(1, "police_110", 0, "幸福里小区门口有人打架，一人头部受伤，报警人[手机号]", village_code="330100001001",
                    caller_key="c1", people_involved=12),
        whole_event(2, "hotline_12345", 3, "市民来电反映幸福里小区门口昨晚有人打架斗殴，很吵，请相关部门处理",
                    caller_key="c2", status="returned"),
        whole_event(3, "grid", 12, "网格员巡查发现幸福里小区门口发生打架事件，已劝离", signals=["gathering"]),
        whole_event(4, "police_110", 0.1, "幸福里小区门口有人打架，多人围观", township=TOWNS[1]),
        whole_event(5, "hotline_12345", 1, "咨询幸福里小区门口打架的处理结果", domain="none"),
        whole_event(6, "hotline_12345", 80, "市民来电反映锦绣花园小区物业不作为，请相关部门处理",
                    satisfaction="dissatisfied"),
        {**whole_event(7, "hotline_12345", -30, "锦绣花园小区门口垃圾堆放无人清运", incident_id="hotline_12345:7"),
         link.KEEP_INCIDENT: True},
    ]
    events += [whole_event(10 + k, ("grid", "police_110")[k % 2], -20 + 7 * k, text, township=TOWNS[k % 2],
                           village_code=("330100001002", None)[k % 3 == 0])
               for k, text in enumerate(["新华社区菜市场门口占道经营", "新华社区菜市场门口摊贩占道", "城关中学门口电动车乱停",
                                         "城关中学门口电动车停放混乱", "东关村3组路灯坏了", "东关村3组路灯不亮"])]
    return events


def _rows(element) -> list[dict]:
    """A linked Event, or a group's (annotations, table) → Events as dicts, the annotations on each."""
    if not is_event_table(element):
        return [element]
    annotations, table = element
    return [{**row, **dict(annotations)} for row in EventTables.from_bytes(table).to_pylist()]


def _summary(event: dict) -> tuple:
    return (event["event_id"], event["incident_id"], event["reported_at"], event["text"], event["village_code"],
            bool(event.get(link.KEEP_INCIDENT)))


def test_grouped_links_are_the_per_event_links_with_a_table_per_township_month():
    events = month_end_events()
    with beam.Pipeline(options=beam_options([])) as p:
        created = p | beam.Create(events)
        flat = created | "Flat" >> link.LinkIncidents() | "FlatSummary" >> beam.Map(_summary)
        parts = created | "Grouped" >> link.LinkIncidentsInParts(grouped=True)
        grouped = (parts | "AllParts" >> beam.Flatten() | "Rows" >> beam.FlatMap(_rows)
                   | "GroupedSummary" >> beam.Map(_summary))
        tables = parts[0] | "Annotations" >> beam.MapTuple(lambda annotations, table: (
            dict(annotations).get(link.KEEP_INCIDENT, False), EventTables.from_bytes(table).num_rows))
        same = ({"flat": flat | "KeyFlat" >> beam.Map(lambda s: (s[0], s)),
                 "grouped": grouped | "KeyGrouped" >> beam.Map(lambda s: (s[0], s))}
                | beam.CoGroupByKey() | beam.MapTuple(lambda i, got: (i, len(got["flat"]) == 1 and got["flat"] == got["grouped"])))
        assert_that(same, equal_to([(e["event_id"], True) for e in events]), label="SameLinks")
        # the fight's March incident takes April's reports: those records go the per-Event way
        assert_that(flat | beam.Filter(lambda s: s[0] == "grid:3") | beam.Map(lambda s: s[1]),
                    equal_to(["police_110:1"]), label="Claimed")
        # March of both towns (town 1's kept record in a table of its own) and April of town 1; town 2's
        # April has only a record of its first hours, whose incident March may claim: it goes per Event
        assert_that(tables | beam.Map(lambda t: t[0]), equal_to([True, False, False, False]), label="Tables")


def test_writers_and_counters_take_a_groups_table_as_its_events(tmp_path):
    """One table holding Events of two months, beside Events as dicts, is written and counted as
    those Events one by one would be, in one file per month and shard."""
    events = [{k: v for k, v in e.items() if k != link.KEEP_INCIDENT} | {"incident_id": e["incident_id"] or e["event_id"]}
              for e in month_end_events()]
    tables = EventTables()
    table = ((), tables.to_bytes(tables.table([tables.packer.pack(e) for e in events[4:]])))
    written = {}
    for name, elements in (("events", events), ("table", events[:4] + [table])):
        out = tmp_path / name
        with beam.Pipeline(options=beam_options([])) as p:
            created = p | beam.Create(elements)
            counted = created | score.DailyTallies()
            parts = {"files": created | sinks.WriteEvents(str(out), "run", shards=2), **counted}
            _ = ([pcoll | f"List{key}" >> beam.combiners.ToList() | f"Name{key}" >> beam.Map(lambda v, k=key: (k, v))
                  for key, pcoll in parts.items()]
                 | beam.Flatten() | "All" >> beam.combiners.ToList()
                 | beam.Map(lambda named, path=tmp_path / f"{name}.pickle": path.write_bytes(pickle.dumps(dict(named)))))
        got = pickle.loads((tmp_path / f"{name}.pickle").read_bytes())
        series, feed_days, paths = got[SERIES_TALLIES], got[FEED_DAYS], got["files"]
        written[name] = (dict(series), dict(feed_days),
                         {str(path).removeprefix(str(out)): (rows, pq.read_table(path).to_pylist())
                          for path, rows in paths})
    assert written["table"] == written["events"]
    files = written["events"][2]
    assert {path.split("/")[3] for path in files} == {"month=2025-03", "month=2025-04"} and len(files) == 4
    assert sum(rows for rows, _ in files.values()) == len(events)


def test_groups_that_come_in_tables_are_linked_from_their_columns_as_from_their_events():
    """The batch job's Events reach linking in tables (a supersede shard's, a stored month's), and a
    group whose records all came so is linked from its columns (no Event dicts): the same links,
    the same tables per annotations, the same records of claimable incidents, as from Events."""
    # The kept record's incident began before the records at hand: linked anew, it would be its own.
    events = [{**e, "incident_id": "hotline_12345:0"} if e.get(link.KEEP_INCIDENT) else e for e in month_end_events()]
    # A township whose March group holds only a guest (April's first hours).
    events.append(whole_event(30, "grid", 2, "城北工业园厂房门口堆放垃圾", township="330100003000"))
    tables = EventTables()

    def table(rows, marks=()):
        packed = [tables.packer.pack({k: v for k, v in e.items() if k != link.KEEP_INCIDENT}) for e in rows]
        return tuple(marks), tables.to_bytes(tables.table(packed))

    fresh = [e for e in events if not e.get(link.KEEP_INCIDENT)]
    kept = [e for e in events if e.get(link.KEEP_INCIDENT)]
    elements = [table(fresh[:6]), table(fresh[6:]), table(kept, ((link.KEEP_INCIDENT, True),))]

    def grouped_tables(element):
        annotations, data = element
        return [(annotations, sorted(EventTables.from_bytes(data).to_pylist(), key=lambda row: row["event_id"]))]

    with beam.Pipeline(options=beam_options([])) as p:
        outputs = {}
        for name, created in (("events", p | "Events" >> beam.Create(events)),
                              ("tables", p | "Tables" >> beam.Create(elements))):
            # A March that keeps its links with no record in its last hours: a group of frequencies alone.
            frequencies = p | f"Frequencies{name}" >> beam.Create([(("330100004000", "2025-03"), (3, {"垃圾": 1}))])
            parts = created | f"Link{name}" >> link.LinkIncidentsInParts(frequencies=frequencies, grouped=True)
            outputs[name] = {
                "groups": parts[0] | f"Groups{name}" >> beam.FlatMap(grouped_tables),
                "claimable": parts[1] | f"Claimable{name}" >> beam.Map(_summary),
                "all": (parts | f"All{name}" >> beam.Flatten() | f"Rows{name}" >> beam.FlatMap(_rows)
                        | f"Summary{name}" >> beam.Map(_summary)),
            }
        for kind in ("groups", "claimable", "all"):
            # Each output of one way is once in the other's: every repr is counted twice.
            same = ((outputs["events"][kind], outputs["tables"][kind]) | f"Both{kind}" >> beam.Flatten()
                    | f"Repr{kind}" >> beam.Map(repr) | f"Count{kind}" >> beam.combiners.Count.PerElement()
                    | f"Twice{kind}" >> beam.Values())
            assert_that(same | f"Distinct{kind}" >> beam.Distinct(), equal_to([2]), label=f"Same{kind}")
        assert_that(outputs["tables"]["all"] | beam.Map(lambda s: s[0]), equal_to([e["event_id"] for e in events]),
                    label="EachOnce")
        assert_that(outputs["tables"]["claimable"] | "Claimed" >> beam.Filter(lambda s: s[0] == "grid:3")
                    | beam.Map(lambda s: s[1]), equal_to(["police_110:1"]), label="ClaimedAcrossMonthEnd")
