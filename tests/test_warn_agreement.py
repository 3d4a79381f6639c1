"""The stream's window scores agree with the batch's day scores on series with routine signals.

Three townships share one public-order history where a fifth of the incidents involve a gathering
heard by both 110 and 12345. On the target day each sees seven or more incidents with a different
number of gatherings. The batch job (``ScoreEvents``) scores the day; the stream scores the window
of that day against the history side input (``DailyIncidentCounts``). Both must give the same
score, level and reasons; a history of incident counts alone (the stream before) counts the
series' routine gatherings as new evidence and warns where the batch stays quiet. The texts name
the township's roads in turn; a fourth township's target day has four incidents at one compound
never named before, which both score as subject evidence (``models.subjects``). A fifth township's
incidents fall in eight villages in turn; on the target day eight of its ten are in one village,
which both score through the village scan (``models.risk_score.VillageSeries``).
"""
from __future__ import annotations

import datetime as dt
import pickle

import apache_beam as beam
import numpy as np
import pytest

from models.subjects import SubjectNamer
from pipelines import score
from pipelines.alert_sinks import AlertStore
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.stream import warn_and_publish
from pipelines.warn import DailyIncidentCounts, RiskScorer, SeriesRecord, WarnPolicy, series_key
from pipelines.windows import SERIES_WINDOWS, FiringPolicy

DOMAIN = "public_order"
HISTORY_START, DAY = dt.date(2025, 4, 1), dt.date(2025, 7, 1)
# township → (incidents on the target day, of which gatherings heard by two feeds)
TARGET_DAYS = {"330101001000": (7, 2), "330101002000": (10, 3), "330101003000": (12, 8)}
SUBJECT_TOWN, COMPOUND = "330101004000", "金桂苑小区"
VILLAGE_TOWN = "330101005000"
VILLAGES = [f"330101005{201 + j}" for j in range(8)]
ROADS = ["解放路", "人民路", "建设路", "胜利路", "和平路", "文化路"]


def record(event_id, source, day, hour, township, incident, signals=(), text="路口有人聚集争吵", village=None):
    return {"event_id": event_id, "source": source, "reported_at": dt.datetime.combine(day, dt.time(hour), TZ),
            "batch_id": "history" if day < DAY else "today", "county_code": "330101", "township_code": township,
            "village_code": village, "domain": DOMAIN, "signals": list(signals), "people_involved": None,
            "caller_key": None, "status": "closed", "satisfaction": "satisfied", "incident_id": incident,
            "text": text}


def incidents(township, day, n, gatherings, at_compound=0, at_village=0):
    """n incidents of one day; the first ``gatherings`` are told to 110 and 12345, the rest to 12345.
    Each names one of ROADS in turn, or COMPOUND for the last ``at_compound``. In VILLAGE_TOWN they fall
    in VILLAGES in turn, the last ``at_village`` in the last village."""
    out = []
    for k in range(n):
        incident, hour = f"{township}-{day}-{k}", 8 + k % 12
        place = COMPOUND if k >= n - at_compound else ROADS[(day.toordinal() + k) % len(ROADS)]
        text = f"{place}门口有人聚集争吵"
        village = None
        if township == VILLAGE_TOWN:
            village = VILLAGES[-1] if k >= n - at_village else VILLAGES[(day.toordinal() + k) % len(VILLAGES)]
        if k < gatherings:
            out += [record(f"police_110:{incident}", "police_110", day, hour, township, incident, ["gathering"], text,
                           village),
                    record(f"hotline_12345:{incident}", "hotline_12345", day, hour, township, incident, (), text,
                           village)]
        else:
            out.append(record(f"hotline_12345:{incident}", "hotline_12345", day, hour, township, incident, (), text,
                              village))
    return out


def build_events():
    rng = np.random.default_rng(5)
    days = [HISTORY_START + dt.timedelta(days=i) for i in range((DAY - HISTORY_START).days)]
    counts = [(int(n), int(rng.binomial(n, 0.2))) for n in rng.poisson(5.0, len(days))]
    history = [e for town in [*TARGET_DAYS, SUBJECT_TOWN, VILLAGE_TOWN] for day, (n, g) in zip(days, counts)
               for e in incidents(town, day, n, g)]
    today = {town: incidents(town, DAY, n, g) for town, (n, g) in TARGET_DAYS.items()}
    today[SUBJECT_TOWN] = incidents(SUBJECT_TOWN, DAY, 8, 0, at_compound=6)
    today[VILLAGE_TOWN] = incidents(VILLAGE_TOWN, DAY, 10, 0, at_village=8)
    return history, today


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(events, batch day rows by township, stream history side input by series key)."""
    out = tmp_path_factory.mktemp("agreement")
    history, today = build_events()
    events = history + [e for day in today.values() for e in day]
    with beam.Pipeline(options=beam_options([])) as p:
        created = p | beam.Create(events)
        (created | score.ScoreEvents(DAY, DAY, HISTORY_START) | "Rows" >> beam.combiners.ToList()
         | "WriteRows" >> beam.Map(lambda rows: (out / "rows").write_bytes(pickle.dumps(rows))))
        (p | "History" >> beam.Create(history) | DailyIncidentCounts() | "Days" >> beam.combiners.ToList()
         | "WriteDays" >> beam.Map(lambda days: (out / "days").write_bytes(pickle.dumps(dict(days)))))
    rows = pickle.loads((out / "rows").read_bytes())
    day_rows = {r["township_code"]: r for r in rows if r["period"] == "day" and r["village_code"] is None}
    return history, today, day_rows, pickle.loads((out / "days").read_bytes())


def stream_assessment(records, history):
    scorer = RiskScorer()
    scorer.setup()
    namer = SubjectNamer()
    candidate = {"records": tuple(SeriesRecord.of(e, None, namer) for e in records),
                 "window_start": dt.datetime.combine(DAY, dt.time(0), TZ),
                 "window_end": dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(0), TZ)}
    return scorer.assess(candidate, history, HISTORY_START)


def test_history_side_input_carries_the_batch_tallys_signal_fields(scored):
    history, _, _, days = scored
    town = next(iter(TARGET_DAYS))
    series = days[series_key(town, DOMAIN)]
    mine = [e for e in history if e["township_code"] == town]
    assert sum(t["incidents"] for t in series.values()) == len({e["incident_id"] for e in mine})
    assert sum(t["records"] for t in series.values()) == len(mine)
    gatherings = len({e["incident_id"] for e in mine if "gathering" in e["signals"]})
    assert gatherings > 50
    assert sum(t["signals"].get("gathering", 0) for t in series.values()) == gatherings
    assert sum(t["feeds_2"] for t in series.values()) == gatherings
    assert not any(t["feeds_3"] for t in series.values())
    named = [road for e in mine if e["source"] == "hotline_12345" for road in ROADS if road in e["text"]]
    assert sum(sum(t["subjects"].values()) for t in series.values()) == len(named)


def test_a_new_compound_named_six_times_scores_alike_in_stream_and_batch(scored):
    _, today, day_rows, days = scored
    stream = stream_assessment(today[SUBJECT_TOWN], days[series_key(SUBJECT_TOWN, DOMAIN)])
    batch = day_rows[SUBJECT_TOWN]
    assert (stream["score"], stream["level"], stream["reasons"]) == (batch["score"], batch["level"], batch["reasons"])
    assert f"同一对象（{COMPOUND}）当日6起（此前91天未见）" in batch["reasons"]
    assert batch["level"] != "none"


def test_a_burst_in_one_village_scores_alike_in_stream_and_batch(scored):
    _, today, day_rows, days = scored
    history = days[series_key(VILLAGE_TOWN, DOMAIN)]
    assert {v for t in history.values() for v in t["villages"]} == set(VILLAGES)
    stream = stream_assessment(today[VILLAGE_TOWN], history)
    batch = day_rows[VILLAGE_TOWN]
    assert (stream["score"], stream["level"]) == (batch["score"], batch["level"])
    assert stream["reasons"] == batch["reasons"]
    assert batch["reasons"][1].startswith(f"其中村（社区）{VILLAGES[-1]}：当日8起")
    assert batch["level"] != "none"
    # the stream with a history that does not tell villages (stored before them): no village evidence
    untold = {d: {k: v for k, v in t.items() if k != "villages"} for d, t in history.items()}
    assert not any(r.startswith("其中村") for r in stream_assessment(today[VILLAGE_TOWN], untold)["reasons"])


def test_the_window_of_a_day_scores_as_the_batch_scores_the_day(scored):
    _, today, day_rows, days = scored
    levels = {}
    for town in TARGET_DAYS:
        history = days[series_key(town, DOMAIN)]
        stream = stream_assessment(today[town], history)
        batch = day_rows[town]
        assert (stream["score"], stream["level"], stream["reasons"]) == (batch["score"], batch["level"], batch["reasons"])
        assert stream["expected"] == pytest.approx(batch["expected"], abs=0.01)
        # incident counts alone (the history the stream had before) make the routine gatherings new
        counts_only = {d: {"incidents": t["incidents"], "records": t["records"]} for d, t in history.items()}
        levels[town] = (batch["level"], stream_assessment(today[town], counts_only)["level"])
    # gatherings count only above their usual share of the incidents the day had: 8 of 12 do, 2 of 7 do not
    assert any(r.startswith("8起涉及聚集（通常约") for r in day_rows["330101003000"]["reasons"])
    assert not any("聚集" in r for r in day_rows["330101001000"]["reasons"])
    assert levels == {"330101001000": ("none", "blue"), "330101002000": ("none", "yellow"),
                      "330101003000": ("orange", "orange")}


def test_bounded_warning_run_stays_quiet_where_the_batch_does(scored, tmp_path):
    history, today, day_rows, _ = scored
    policy = WarnPolicy(FiringPolicy(streaming=False, allowed_lateness_s=3 * 86400), cooldown_s=86400,
                        fresh_batches=frozenset({"today"}))
    events = history + [e for day in today.values() for e in day]
    with beam.Pipeline(options=beam_options([])) as p:
        warn_and_publish(p | "Events" >> beam.Create(events), p | "History" >> beam.Create(history),
                         p | "Prior" >> beam.Create([]), policy, RiskScorer(), str(tmp_path), windows=SERIES_WINDOWS)
    warned = {a["township_code"] for a in AlertStore(tmp_path).raised() if a["rule"] != "immediate"}
    leveled = {town for town, row in day_rows.items() if row["level"] != "none"}
    assert leveled == {"330101003000", SUBJECT_TOWN, VILLAGE_TOWN}
    assert warned == leveled
