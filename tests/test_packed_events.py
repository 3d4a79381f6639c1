"""Events cross a Flatten of PCollections from different stages packed, and arrive as they left."""
import datetime as dt

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.packed_events import FlattenEvents, PackedEvent
from pipelines.sinks import month_of
from schemas import event_fields

AT = dt.datetime(2025, 9, 30, 23, 59, 58, 123000, tzinfo=TZ)


def whole_event(i: int) -> dict:
    """An Event with every field set: timestamps, text, numbers, lists."""
    event = {}
    for field in event_fields():
        kind = field["type"]
        if kind.startswith("timestamp"):
            event[field["name"]] = AT + dt.timedelta(hours=i)
        elif kind.startswith("int"):
            event[field["name"]] = i
        elif kind.startswith("float"):
            event[field["name"]] = i + 0.5
        elif kind.startswith("list"):
            event[field["name"]] = [f"s{i}"]
        else:
            event[field["name"]] = f"{field['name']}-{i}"
    return event


def test_an_event_round_trips_with_its_annotations_and_a_partial_record_as_it_is():
    packed = PackedEvent()
    annotated = {**whole_event(1), "keep_incident": True}
    partial = {"event_id": "p1", "reported_at": AT}
    assert packed.unpack(packed.pack(annotated)) == annotated
    assert packed.pack(partial) == (None, partial)
    assert packed.unpack(packed.pack(partial)) == partial
    # a whole Event crosses as values only: no key strings, timestamps as integers
    values, others = packed.pack(annotated)
    assert others == (("keep_incident", True),)
    assert not any(isinstance(v, dt.datetime) for v in values)
    assert packed.pack(whole_event(2))[1] == ()
    assert packed.unpack(packed.pack(whole_event(2))) == whole_event(2)


def test_an_event_is_filed_under_its_month_on_the_county_clock():
    # 16:30 UTC on the last day of a month is already the next month in the county (UTC+8).
    utc_evening = dt.datetime(2025, 9, 30, 16, 30, tzinfo=dt.timezone.utc)
    assert month_of({"reported_at": utc_evening}) == "2025-10"
    assert month_of({"reported_at": utc_evening.astimezone(TZ)}) == "2025-10"


def test_flatten_of_events_from_two_stages_gives_every_event_back():
    first = [whole_event(i) for i in range(20)]
    second = [{**whole_event(i), "role": "tail"} for i in range(20, 30)] + [{"event_id": "p", "reported_at": AT}]
    with beam.Pipeline(options=beam_options([])) as p:
        a = p | "A" >> beam.Create(first) | "ByTownship" >> beam.Map(lambda e: (e["event_id"][-1], e)) \
            | "Group" >> beam.GroupByKey() | "Ungroup" >> beam.FlatMapTuple(lambda _, events: events)
        b = p | "B" >> beam.Create(second)
        out = (a, b) | FlattenEvents() | "Ids" >> beam.Map(lambda e: (e["event_id"], sorted(e.items(), key=str)))
        assert_that(out, equal_to([(e["event_id"], sorted(e.items(), key=str)) for e in first + second]))
