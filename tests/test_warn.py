"""Warning logic: immediate rule, suppression, and bounded runs that restart from raised warnings."""
from __future__ import annotations

import datetime as dt

import apache_beam as beam

from pipelines.alert_sinks import AlertStore
from pipelines.options import beam_options
from pipelines.stream import warn_and_publish
from pipelines.warn import ImmediateRule, WarnPolicy, decide, history_start
from pipelines.windows import SERIES_WINDOWS, FiringPolicy
from tests.test_stream import Feed, run_stream
from tests.warn_fixtures import ThresholdScorer, at, event

DAY_S = 86400


def bounded_policy(fresh=None):
    return WarnPolicy(FiringPolicy(streaming=False, allowed_lateness_s=3 * DAY_S), cooldown_s=DAY_S,
                      fresh_batches=frozenset(fresh) if fresh else None)


def run_bounded(events, out_dir, fresh=None, history=(), windows=SERIES_WINDOWS[:1]):
    """One embedded-style run: all events at once, seeded with the warnings already in out_dir."""
    store = AlertStore(out_dir)
    before = {a["alert_id"] for a in store.raised()}
    with beam.Pipeline(options=beam_options([])) as p:
        warn_and_publish(p | "Events" >> beam.Create(events), p | "History" >> beam.Create(list(history)),
                         p | "Prior" >> beam.Create(store.raised()), bounded_policy(fresh), ThresholdScorer(),
                         str(out_dir), windows=windows)
    return [a for a in store.raised() if a["alert_id"] not in before]


def key(alerts):
    return sorted((a["rule"], a["level"], a["window_start"], a["window_end"], tuple(sorted(a["event_ids"])))
                  for a in alerts)


def test_immediate_rule_needs_escalation_and_many_people():
    rule = ImmediateRule.from_schema()
    assert rule.level_for(event(1, 0, signals=["gathering"], people=30)) == "orange"
    assert rule.level_for(event(1, 0, signals=["gathering", "many_people"])) == "orange"
    assert rule.level_for(event(1, 0, signals=["gathering", "extreme_act"], people=12)) == "red"
    assert rule.level_for(event(1, 0, signals=["gathering"], people=3)) is None
    assert rule.level_for(event(1, 0, signals=["media_exposure", "many_people"])) is None


def test_decide_cooldown_is_symmetric_in_event_time_and_yields_to_a_rise():
    raised = [{"alert_id": "x", "window_start": at(0), "window_end": at(24), "level": "orange"}]
    candidate = {"alert_id": "y", "window_start": at(-30), "window_end": at(-6), "level": "orange"}
    assert decide(raised, candidate, dt.timedelta(hours=24)) == "cooldown"
    assert decide(raised, {**candidate, "level": "red"}, dt.timedelta(hours=24)) is None
    later = {**candidate, "window_start": at(48), "window_end": at(72)}
    assert decide(raised, later, dt.timedelta(hours=24)) is None
    assert decide(raised, {**later, "window_start": at(47)}, dt.timedelta(hours=24)) == "cooldown"
    assert decide(raised, {**candidate, "alert_id": "x"}, dt.timedelta(hours=24)) == "duplicate"


def test_history_starts_at_the_first_day_on_record():
    first = at(0).date()
    assert history_start(None, first, 90) is None
    assert history_start(first, first, 90) is None
    assert history_start(first, first + dt.timedelta(days=200), 90) == first + dt.timedelta(days=110)


def test_late_records_before_the_history_are_no_history(tmp_path):
    """Two late records of weeks before the warehouse's coverage (25 a day) change no window's expectation."""
    history = [event(1000 + 25 * d + k, -24 * d + 9 + k / 3, batch="h") for d in range(1, 30) for k in range(25)]
    late = [event(900 + d, -24 * d + 12, batch="h") for d in (50, 49)]
    burst = [event(n, 24 * (n % 5) + 10 + n / 100) for n in range(1, 201)]
    raised = [[(a["level"], a["observed"], a["expected"], a["window_start"])
               for a in run_bounded(burst + h, tmp_path / name, fresh={"b1"}, history=burst + h,
                                    windows=SERIES_WINDOWS[1:])]
              for name, h in (("covered", history), ("with_late", history + late))]
    assert raised[0] == raised[1]
    # a week against the 29 covered days' 25 a day
    assert [(level, expected) for level, _, expected, _ in raised[0]] == [("red", 175.0)]


def test_immediate_warning_then_window_at_same_level_suppressed_until_it_rises(tmp_path):
    events = [event(1, 1, signals=["gathering"], people=40)] + [event(n, 1 + n / 10) for n in range(2, 7)]
    alerts = run_bounded(events, tmp_path)
    # the five more records make an orange window, as the immediate warning already was
    assert [(a["rule"], a["level"]) for a in alerts] == [("immediate", "orange")]
    assert "涉及约40人" in alerts[0]["reasons"][0]
    assert alerts[0]["expected"] is None  # one record's signals: no count was compared with an expectation
    more = events + [event(n, 2 + n / 10, batch="b2") for n in range(7, 10)]
    alerts = run_bounded(more, tmp_path, fresh={"b2"})
    assert [(a["rule"], a["level"], a["observed"]) for a in alerts] == [("window_24h", "red", 9)]


def test_restart_raises_nothing_twice_and_cooldown_expires(tmp_path):
    day1 = [event(n, n) for n in range(1, 4)]
    assert [a["level"] for a in run_bounded(day1, tmp_path)] == ["yellow"]
    assert run_bounded(day1, tmp_path) == []  # the same run again, e.g. after a crash
    day3 = [event(10 + n, 48 + n, batch="b3") for n in range(1, 4)]
    alerts = run_bounded(day1 + day3, tmp_path, fresh={"b3"})
    assert [(a["level"], a["window_end"]) for a in alerts] == [("yellow", at(52))]


def test_seven_day_windows_align_to_local_midnight_and_use_history(tmp_path):
    history = [event(500 + d, -24 * d + 12, batch="h") for d in range(1, 30)]  # one a day before
    week = [event(n, 24 * (n % 5) + 10) for n in range(1, 11)]
    alerts = run_bounded(week + history, tmp_path, fresh={"b1"}, history=week + history,
                         windows=SERIES_WINDOWS[1:])
    # the week's ten plus the history's own records in the window, against one a day
    assert [(a["level"], a["observed"], a["expected"]) for a in alerts] == [("yellow", 10, 7.0), ("orange", 12, 7.0)]
    assert [a["window_start"] for a in alerts] == [at(-24 * 4), at(-24 * 2)]
    assert all(a["window_end"] - a["window_start"] == dt.timedelta(days=7) for a in alerts)


def test_stream_and_repeated_bounded_runs_raise_the_same_warnings(tmp_path):
    batches = [
        [event(3, 3), event(1, 1), event(2, 2)],
        [event(4, 5), event(5, 6), event(50, 6, domain="labor_wage", signals=["gathering"], people=25, batch="b2")],
        [event(6, 4.5, batch="b3"), event(7, 4.6, batch="b3"), event(8, 4.7, batch="b3")],
    ]
    feed = Feed()
    for batch in batches:
        feed.land(*batch)
    streamed = run_stream(feed, tmp_path / "stream")
    seen, bounded = [], []
    for i, batch in enumerate(batches):
        seen += batch
        bounded += run_bounded(seen, tmp_path / "bounded", fresh={e["batch_id"] for e in batch})
    assert [a["level"] for a in streamed] == ["yellow", "orange", "orange", "red"]
    assert key(streamed) == key(bounded)


def test_the_risk_scorer_raises_no_window_warning_without_history():
    from pipelines.warn import RiskScorer, SeriesRecord

    scorer = RiskScorer()
    scorer.setup()
    records = [SeriesRecord.of(event(n, 24 * 60 + n), None) for n in range(1, 13)]
    candidate = {"records": records, "window_start": at(24 * 60), "window_end": at(24 * 61)}
    assert scorer.assess(dict(candidate), {}, None)["level"] == "none"
    two_weeks = {(at(0) + dt.timedelta(days=d)).date(): 1 for d in range(46, 60)}
    assert scorer.assess(dict(candidate), two_weeks, at(24 * 46).date())["level"] == "none"
    two_months = {(at(0) + dt.timedelta(days=d)).date(): 1 for d in range(60)}
    assessed = scorer.assess(dict(candidate), two_months, at(0).date())
    assert assessed["level"] in ("orange", "red") and assessed["expected"] < 3
