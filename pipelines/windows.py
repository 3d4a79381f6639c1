"""Event-time windows and triggers for warnings, shared by the streaming and the embedded runs.

One definition serves both: the streaming pipeline fires early (on processing time), on time (at
the watermark) and late (for each late record) with accumulating panes; a bounded run of the same
transforms fires each window once, because Beam's batch runners have no processing-time clock.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Timestamp

from pipelines.normalise import TZ

HOUR = 3600
DAY = 24 * HOUR
# Daily windows end at local midnight (Asia/Shanghai is UTC+8 all year), not at UTC midnight.
LOCAL_MIDNIGHT_OFFSET = (-int(dt.datetime(2000, 1, 1, tzinfo=TZ).utcoffset().total_seconds())) % DAY


@dataclasses.dataclass(frozen=True)
class SeriesWindow:
    """A sliding event-time window over a township × domain series."""

    rule: str  # recorded on each warning, e.g. "window_24h"
    size_s: int
    period_s: int
    name_zh: str

    @property
    def days(self) -> float:
        return self.size_s / DAY

    def window_fn(self) -> window.SlidingWindows:
        offset = LOCAL_MIDNIGHT_OFFSET % self.period_s
        return window.SlidingWindows(self.size_s, self.period_s, offset=offset)


SERIES_WINDOWS = (
    SeriesWindow("window_24h", DAY, HOUR, "近24小时"),
    SeriesWindow("window_7d", 7 * DAY, DAY, "近7天"),
)


@dataclasses.dataclass(frozen=True)
class FiringPolicy:
    """When panes fire. ``streaming=False`` is the bounded (embedded or batch) run."""

    streaming: bool
    allowed_lateness_s: int = 3 * DAY
    early_delay_s: int = 60  # processing time after a pane's first record before an early firing
    early_count: int | None = None  # or fire early after this many records, whichever comes first
    batching_delay_s: int = 1  # candidates of one series arriving this close together are decided together


def series_windowing(spec: SeriesWindow, policy: FiringPolicy) -> beam.WindowInto:
    if not policy.streaming:
        return beam.WindowInto(spec.window_fn(), allowed_lateness=policy.allowed_lateness_s)
    early = trigger.AfterProcessingTime(policy.early_delay_s)
    if policy.early_count:
        early = trigger.AfterAny(early, trigger.AfterCount(policy.early_count))
    return beam.WindowInto(
        spec.window_fn(),
        trigger=trigger.AfterWatermark(early=early, late=trigger.AfterCount(1)),
        accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
        allowed_lateness=policy.allowed_lateness_s,
    )


def decision_windowing(policy: FiringPolicy) -> beam.WindowInto:
    """Candidates leave their event-time windows to be decided per series in one global window.

    In streaming, panes that fire together (all the sliding windows one record falls in) are
    grouped by a short processing-time trigger, so they are decided in event-time order, as the
    bounded run decides all of its candidates.
    """
    if not policy.streaming:
        return beam.WindowInto(window.GlobalWindows())
    # Grouped candidates keep their earliest event time, holding the watermark back so that the
    # state-expiry timer downstream cannot fire before candidates still on their way.
    return beam.WindowInto(
        window.GlobalWindows(),
        trigger=trigger.Repeatedly(trigger.AfterProcessingTime(policy.batching_delay_s)),
        accumulation_mode=trigger.AccumulationMode.DISCARDING,
        timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_EARLIEST,
    )


def to_timestamp(value: dt.datetime) -> Timestamp:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: event times must be timezone-aware")
    return Timestamp.from_utc_datetime(value.astimezone(dt.timezone.utc))


def to_local(ts: Timestamp) -> dt.datetime:
    return ts.to_utc_datetime(has_tz=True).astimezone(TZ)
