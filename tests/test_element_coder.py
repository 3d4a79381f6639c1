"""Events' datetimes cross Beam's stage boundaries as integers, exactly; marked records as their fields."""
import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import element_coder
from pipelines.element_coder import ElementCoder
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.warn import SeriesRecord

ZONES = [TZ, ZoneInfo("UTC"), ZoneInfo("America/New_York"), ZoneInfo("Europe/London")]
CODER = ElementCoder()


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return (type(a) is type(b) and a == b and getattr(a, "tzinfo", None) is getattr(b, "tzinfo", None)
            and getattr(a, "fold", None) == getattr(b, "fold", None))


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.sampled_from(ZONES), allow_imaginary=False))
def test_zoned_datetimes_round_trip_with_their_zone_and_fold(value):
    decoded = CODER.decode(CODER.encode(value))
    assert _same(decoded, value)
    assert decoded.utcoffset() == value.utcoffset()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.datetimes(), st.dates(),
                 st.datetimes(timezones=st.just(dt.timezone.utc)),
                 st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=8))))))
def test_naive_utc_dates_and_other_zones_round_trip(value):
    decoded = CODER.decode(CODER.encode(value))
    assert decoded == value and type(decoded) is type(value)
    assert getattr(decoded, "fold", None) == getattr(value, "fold", None)


def test_an_event_costs_a_fraction_of_its_pickled_size():
    at = dt.datetime(2025, 10, 3, 14, 5, 7, tzinfo=TZ)
    event = {"event_id": "12345-000001", "reported_at": at, "occurred_at": at, "ingested_at": at,
             "closed_at": None, "text": "小区噪音扰民", "tags": ["noise"]}
    encoded = CODER.encode(event)
    assert _same(CODER.decode(encoded), event)
    assert len(encoded) * 2 < len(beam.coders.FastPrimitivesCoder().encode(event))


def test_pipelines_built_with_riskwatch_options_shuffle_events_with_it():
    at = dt.datetime(2025, 10, 3, 14, 5, 7, tzinfo=TZ)
    events = [{"event_id": str(i), "township": f"t{i % 3}", "reported_at": at + dt.timedelta(hours=i),
               "day": (at + dt.timedelta(days=i)).date()} for i in range(30)]
    options = beam_options([])
    assert isinstance(beam.coders.registry.get_coder(Any), ElementCoder)
    with beam.Pipeline(options=options) as p:
        grouped = (p | beam.Create(events) | beam.Map(lambda e: (e["township"], e)) | beam.GroupByKey()
                   | beam.MapTuple(lambda key, es: (key, sorted((e["reported_at"], e["day"]) for e in es))))
        zones = grouped | beam.FlatMap(lambda kv: [r[0].tzinfo is TZ for r in kv[1]]) | beam.Distinct()
        expected = [(f"t{k}", sorted((e["reported_at"], e["day"]) for e in events if e["township"] == f"t{k}"))
                    for k in range(3)]
        assert_that(grouped, equal_to(expected), label="same values")
        assert_that(zones, equal_to([True]), label="same zone object")


record_fields = st.fixed_dictionaries({
    "event_id": st.text(max_size=12), "incident": st.text(max_size=12),
    "reported_at": st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1),
                                timezones=st.sampled_from(ZONES), allow_imaginary=False),
    "source": st.sampled_from(["hotline_12345", "police_110", "grid"]),
    "caller_key": st.none() | st.text(max_size=8), "status": st.none() | st.text(max_size=4),
    "signals": st.lists(st.text(max_size=6), max_size=3).map(tuple),
    "people_involved": st.none() | st.integers(0, 10**6), "satisfaction": st.none() | st.text(max_size=4),
    "fresh": st.booleans(), "subjects": st.lists(st.text(max_size=6), max_size=3).map(tuple),
    "village_code": st.none() | st.text(max_size=12)})


@settings(max_examples=200, deadline=None)
@given(record_fields)
def test_a_series_record_crosses_as_its_fields_not_pickled(fields):
    record = SeriesRecord(**fields)
    encoded = CODER.encode({"k": (record,)})
    decoded = CODER.decode(encoded)["k"][0]
    assert type(decoded) is SeriesRecord and decoded == record
    assert all(_same(getattr(decoded, name), value) for name, value in fields.items())
    assert b"pipelines.warn\nSeriesRecord" not in encoded and b"pipelines.warn:SeriesRecord" in encoded


def test_a_worker_that_never_imported_the_class_finds_it_by_its_path(monkeypatch):
    record = SeriesRecord("e1", "e1", dt.datetime(2025, 10, 3, 14, 5, tzinfo=TZ), "grid", None, None, (),
                          None, None, True)
    encoded = CODER.encode(record)
    monkeypatch.setattr(element_coder, "_BY_PATH", {})
    assert ElementCoder().decode(encoded) == record


def test_only_frozen_dataclasses_of_init_fields_cross_by_their_fields():
    @dataclasses.dataclass
    class Mutable:
        value: int

    @dataclasses.dataclass(frozen=True)
    class Derived:
        value: int
        twice: int = dataclasses.field(init=False, default=0)

    for cls in (Mutable, Derived):
        with pytest.raises(TypeError, match="frozen dataclass of init fields"):
            element_coder.crosses_by_fields(cls)
