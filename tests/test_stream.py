"""The streaming pipeline on the direct runner with TestStream: panes, lateness, suppression."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing import test_stream
from apache_beam.transforms.window import TimestampedValue

from pipelines.alert_sinks import AlertStore
from pipelines.options import beam_options
from pipelines.stream import STREAM_RUNNER, warn_and_publish
from pipelines.warn import WarnPolicy
from pipelines.windows import SERIES_WINDOWS, FiringPolicy, to_timestamp
from tests.warn_fixtures import ThresholdScorer, at, event

DAY_S = 86400
POLICY = WarnPolicy(FiringPolicy(streaming=True, allowed_lateness_s=3 * DAY_S, early_delay_s=60),
                    cooldown_s=DAY_S)


class Feed:
    """A TestStream of Events in arrival order; processing time moves on after each landing."""

    def __init__(self):
        self.stream = test_stream.TestStream().advance_watermark_to(to_timestamp(at(0)))

    def land(self, *events):
        self.stream = self.stream.add_elements(
            [TimestampedValue(e, to_timestamp(e["reported_at"])) for e in events]
        )
        return self.settle()

    def settle(self):
        # Early panes fire after 60 s, the per-series decision 1 s after: time for both, in steps,
        # because the test clock only moves with the stream.
        for _ in range(3):
            self.stream = self.stream.advance_processing_time(61)
        return self

    def watermark(self, hours):
        self.stream = self.stream.advance_watermark_to(to_timestamp(at(hours)))
        return self.settle()


def run_stream(feed: Feed, out_dir, history=(), prior=(), windows=SERIES_WINDOWS[:1], policy=POLICY):
    options = beam_options([f"--runner={STREAM_RUNNER}"], streaming=True)
    # Beam 2.77's direct runner hangs when the watermark jumps from before the first window's end
    # straight to infinity; a finite step past every window first lets it finish.
    feed.watermark(24 * 60)
    with beam.Pipeline(options=options) as p:
        events = p | feed.stream.advance_watermark_to_infinity()
        warn_and_publish(events, p | "History" >> beam.Create(list(history)),
                         p | "Prior" >> beam.Create(list(prior)), policy, ThresholdScorer(), str(out_dir),
                         windows=windows)
    return AlertStore(out_dir).raised()


def summary(alerts):
    return [(a["level"], a["rule"], a["window_end"], a["observed"]) for a in alerts]


def test_early_on_time_and_late_panes_raise_once_per_level(tmp_path):
    feed = (
        Feed()
        .land(event(3, 3), event(1, 1), event(2, 2))      # out of order: early pane, 3 → yellow
        .land(event(4, 5), event(5, 6))                   # early pane, 5 → orange (level rises)
        .watermark(30)                                    # on-time panes repeat orange: suppressed
        .land(event(6, 4.5), event(7, 4.6), event(8, 4.7))  # late for closed windows: 8 → red
        .watermark(24 * 10)
        .land(*[event(100 + i, 2, domain="labor_wage") for i in range(10)])  # beyond allowed lateness
    )
    alerts = run_stream(feed, tmp_path)
    assert summary(alerts) == [
        ("yellow", "window_24h", at(4), 3),
        ("orange", "window_24h", at(7), 5),
        ("red", "window_24h", at(7), 8),
    ]
    assert alerts[2]["window_start"] == at(7 - 24)
    assert sorted(alerts[2]["event_ids"]) == sorted(f"hotline_12345:{n}" for n in range(1, 9))
    assert any("升至红色" in r for r in alerts[2]["reasons"])
