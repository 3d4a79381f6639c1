"""Events' datetimes cross Beam's stage boundaries as integers, exactly."""
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.element_coder import ElementCoder
from pipelines.normalise import TZ
from pipelines.options import beam_options

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
