"""Detection evaluation: episodes detected or missed, delays, false alarms, EARS on the same series,
and the whole ``riskwatch evaluate-detection`` run on a small simulated county written here."""
import csv
import datetime as dt
import json
import zoneinfo

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.parquetio import ReadFromParquet
from apache_beam.testing.util import assert_that, equal_to

import schemas
from jobs import cli
from jobs.commands import evaluate_detection
from models import detection_eval as de
from models import risk_score
from pipelines.evaluation import TruthDomains, day_row_json, run_detection_pipeline
from pipelines.link import LinkIncidents
from pipelines.options import beam_options
from pipelines.score import ScoreEvents

D0 = dt.date(2025, 3, 1)
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


def day(n):
    return D0 + dt.timedelta(days=n)


def episode(eid, town, domain, start, end, village=None):
    return de.TruthEpisode(eid, town, village, domain, day(start), day(end), "sudden", 20)


def test_detection_delay_and_false_alarm_runs():
    episodes = [episode("A", "T1", "labor_wage", 10, 20), episode("B", "T1", "public_order", 40, 45),
                episode("C", "T2", "labor_wage", 50, 60, village="T2V1"),
                episode("early", "T1", "labor_wage", -20, -10)]  # before the period: not scored
    alarms = {
        ("T1", "labor_wage"): [day(5),  # before A's margin: false alarm
                               day(12), day(13), day(14),  # A detected after 2 days
                               day(22), day(23),  # A's tail within the margin: not false
                               day(70), day(71), day(72)],  # one run: one false alarm
        ("T1", "public_order"): [day(47), day(38)],  # around B but not within it: B missed, no false alarm
        ("T2", "labor_wage"): [day(50)],  # the village episode C counts at its township, delay 0
        ("T3", "campus_safety"): [day(100), day(102)],  # two separate runs
    }
    ev = de.evaluate_alarms(alarms, episodes, n_series=4, start=D0, end=day(364), margin_days=3)
    by_id = {r.episode.episode_id: r for r in ev.episodes}
    assert set(by_id) == {"A", "B", "C"}
    assert (by_id["A"].detected, by_id["A"].delay_days, by_id["A"].first_alarm) == (True, 2, day(12))
    assert (by_id["B"].detected, by_id["B"].delay_days) == (False, None)
    assert (by_id["C"].detected, by_id["C"].delay_days) == (True, 0)
    assert ev.false_alarms == 4
    assert abs(ev.series_years - 4 * 365 / 365.25) < 1e-9
    summary = ev.summary()
    assert summary["detected"] == 2 and summary["median_delay_days"] == 1.0
    assert abs(summary["sensitivity"] - 2 / 3) < 1e-3


def test_alarm_runs_merge_consecutive_days_only():
    assert de.alarm_runs([day(3), day(1), day(2), day(5), day(5)]) == [(day(1), day(3)), (day(5), day(5))]
    assert de.alarm_runs([]) == []


def test_ears_statistic_on_the_counts_and_the_threshold_curve():
    rng = np.random.default_rng(5)
    first = D0 - dt.timedelta(days=60)
    counts = {d: int(n) for d, n in zip((first + dt.timedelta(days=i) for i in range(425)), rng.poisson(2.0, 425))}
    for k in range(6):  # an outbreak from day 100
        counts[day(100 + k)] += 12
    series = {("T1", "labor_wage"): counts}
    c2 = de.ears_statistic(series, "C2", first, D0, day(364))
    values = c2.values[("T1", "labor_wage")]
    assert min(values) == D0 and max(values) == day(364)
    # C2 on day 100: (x − mean of days 91..97) / sd, computed by hand
    base = np.array([counts[day(91 + i)] for i in range(7)], dtype=float)
    assert abs(values[day(100)] - (counts[day(100)] - base.mean()) / max(base.std(ddof=1), 0.5)) < 1e-9
    ep = [episode("O", "T1", "labor_wage", 100, 105)]
    at_operating = de.evaluate_alarms(c2.alarms(c2.operating_threshold), ep, 1, D0, day(364))
    assert at_operating.episodes[0].delay_days == 0
    rows = de.curve(c2, [1.0, 3.0, 50.0], ep, 1, D0, day(364))
    assert [r["detected"] for r in rows] == [1, 1, 0]
    assert rows[0]["false_alarms_per_series_year"] > rows[1]["false_alarms_per_series_year"]
    assert de.at_false_alarm_rate(rows, rows[1]["false_alarms_per_series_year"])["threshold"] == 3.0
    assert de.at_false_alarm_rate(rows, -1.0) is None
    svg = de.curve_svg({"EARS C2": rows})
    assert svg.startswith("<svg") and "polyline" in svg and "EARS C2" in svg


# --------------------------------------------------------------------------------------------
# The command on a small simulated county
# --------------------------------------------------------------------------------------------

TOWNS = ["330100001000", "330100002000"]
PLACES = ["人民路口", "超市门口", "夜市", "网吧", "公园", "菜市场", "KTV", "工业园", "车站广场", "桥头", "医院门口"]
HAPPENINGS = ["两车剐蹭司机争吵", "电动车被盗", "摊主与顾客推搡", "有人醉酒闹事", "可疑人员徘徊", "小偷扒窃手机",
              "两伙人打架", "窗户被砸", "有人强行拉客", "聚众赌博"]
HISTORY = dt.date(2025, 1, 1)


def _event(i, feed, t, town, text):
    row = {f["name"]: None for f in schemas.event_fields()}
    row.update(event_id=f"{feed}:S{i:06d}", source=feed, source_id=f"S{i:06d}", reported_at=t, ingested_at=t,
               batch_id="b", county_code="330100", township_code=town, text=text, status="closed",
               satisfaction="satisfied", signals=[])
    return row


def write_county(root, begins=HISTORY):
    """Three months of background in two townships and a wage episode in April in the first. Feeds that
    ``begins`` later than January 1st send one late record of January 2nd: the history still starts then."""
    rng = np.random.default_rng(3)
    events, truth = [], []
    i = 0
    if begins > HISTORY:
        i += 1
        t = dt.datetime.combine(HISTORY + dt.timedelta(days=1), dt.time(10), TZ)
        events.append(_event(i, "police_110", t, TOWNS[0], "两车剐蹭司机争吵"))
        truth.append(("police_110", f"S{i:06d}", "public_order", "", f"INC{i}", TOWNS[0], t))
    day_ = begins
    while day_ <= dt.date(2025, 4, 30):
        for town in TOWNS:
            for k in range(rng.poisson(1.5)):
                i += 1
                t = dt.datetime.combine(day_, dt.time(9 + k), TZ)
                events.append(_event(i, "police_110", t, town, PLACES[i * 7 % len(PLACES)] + HAPPENINGS[i % len(HAPPENINGS)]))
                truth.append(("police_110", f"S{i:06d}", "public_order", "", f"INC{i}", town, t))
            i += 1
            t = dt.datetime.combine(day_, dt.time(15), TZ)
            events.append(_event(i, "hotline_12345", t, town, "咨询社保办理流程"))
            truth.append(("hotline_12345", f"S{i:06d}", "none", "", f"INC{i}", town, t))
        if dt.date(2025, 4, 10) <= day_ <= dt.date(2025, 4, 16):
            for k in range(4):
                i += 1
                t = dt.datetime.combine(day_, dt.time(8 + 2 * k), TZ)
                events.append(_event(i, "hotline_12345", t, TOWNS[0], f"{['鸿运', '金田', '华新', '东方'][k]}工地第{i}班组工人被拖欠工资"))
                truth.append(("hotline_12345", f"S{i:06d}", "labor_wage", "EP1", f"INC{i}", TOWNS[0], t))
        day_ += dt.timedelta(days=1)
    events_dir = root / "events" / "warehouse" / "events" / "month=all"
    events_dir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(events, schema=schemas.event_arrow_schema()), events_dir / "events.parquet")
    sim = root / "sim"
    (sim / "truth").mkdir(parents=True)
    with open(sim / "truth" / "records.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["feed", "source_id", "file", "line", "domain", "episode_id", "incident_key", "township_code",
                    "village_code", "reported_at", "broken_reason", "duplicate_of"])
        for n, (feed, sid, domain, ep, inc, town, t) in enumerate(truth):
            w.writerow([feed, sid, f"{feed}/f.csv", n + 2, domain, ep, inc, town, "", t.isoformat(), "", ""])
    (sim / "truth" / "episodes.json").write_text(json.dumps([
        {"episode_id": "EP1", "township_code": TOWNS[0], "village_code": None, "domain": "labor_wage",
         "start": "2025-04-10", "end": "2025-04-16", "shape": "sudden", "magnitude": 28, "subject": "工地",
         "description": "欠薪"}]), encoding="utf-8")
    (sim / "gazetteer.csv").write_text("code,name,level,parent_code,aliases\n330100,某县,county,,\n"
                                       + "".join(f"{t},镇{k},township,330100,\n" for k, t in enumerate(TOWNS)),
                                       encoding="utf-8")
    return sim, root / "events"


def test_evaluate_detection_command_with_true_domains(tmp_path, capsys):
    sim, events = write_county(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["evaluate-detection", "--truth", str(sim), "--events", str(events), "--out", str(out),
                     "--use-true-domains"]) == 0
    result = json.loads((out / "true-domains" / "evaluation.json").read_text(encoding="utf-8"))
    assert result["period"] == {"history_start": "2025-01-01", "start": "2025-03-01", "end": "2025-04-30"}
    assert result["series"] == 2 * 10 and result["episodes_in_period"] == 1
    rw = result["methods"]["RiskWatch"]
    assert rw["detected"] == 1 and rw["median_delay_days"] <= 1
    assert set(result["methods"]) == {"RiskWatch", "EARS C2", "EARS C3"}
    assert result["episodes"][0]["episode_id"] == "EP1" and result["episodes"][0]["detected"] is True
    # every record of a domain is matched with its truth; each is its own happening in the truth
    n_scored = sum(1 for line in (sim / "truth" / "records.csv").read_text(encoding="utf-8").splitlines()[1:]
                   if ",none," not in line)
    assert result["linking"]["all_scored_records"]["records"] == n_scored
    assert result["linking"]["episode_records"]["true_pairs"] == 0
    assert result["linking"]["episode_records"]["predicted_pairs"] > 0  # look-alike wage complaints fold
    table = (out / "true-domains" / "evaluation.md").read_text(encoding="utf-8")
    yellow = risk_score.config()["levels"]["yellow"]
    assert f"| RiskWatch (operating point) | {yellow:g} | 1/1 |" in table
    # the table prints each false-alarm rate as the JSON holds it
    assert f"| {rw['false_alarms_per_series_year']:.3f} |" in table.split("RiskWatch (operating point)")[1].split("\n")[0]
    assert (out / "true-domains" / "curve.svg").read_text(encoding="utf-8").startswith("<svg")
    assert "written:" in capsys.readouterr().out


def test_evaluate_detection_needs_the_truth(tmp_path, capsys):
    assert cli.main(["evaluate-detection", "--truth", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "truth/records.csv not found" in capsys.readouterr().err



def test_the_table_prints_the_false_alarm_rate_the_evaluation_computed():
    """57 false-alarm runs over 120 series-years are 0.475 per series-year, stored with three decimals;
    printed with two, the float 0.475 came out as "0.47"."""
    found = de.EpisodeResult(episode("A", "T1", "labor_wage", 10, 20), True, 2, day(12))
    rw = de.Evaluation([found], 57, 120.0).summary()
    assert rw["false_alarms_per_series_year"] == 0.475
    rw.update(threshold=48.0)
    result = {"period": {"start": "2025-03-01", "end": "2026-02-28"}, "townships": 12, "domains": 10,
              "series": 120, "episodes_in_period": 1, "margin_days": 3, "methods": {"RiskWatch": rw},
              "same_false_alarm_rate": {"RiskWatch": rw}, "at_one_false_alarm_per_series_year": {"RiskWatch": None},
              "riskwatch_by_shape": {},
              "linking": {"records_per_incident": 1.2, "true_records_per_incident": 1.0,
                          **{k: {"records": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
                             for k in ("all_scored_records", "episode_records", "background_records")}}}
    table = evaluate_detection.markdown_table(result, "true-domains")
    assert "| RiskWatch (operating point) | 48 | 1/1 | 100% | 2 | 0.475 |" in table
    assert table.count("| 0.475 |") == 2 and "0.47 |" not in table


def test_the_evaluation_reads_history_from_where_the_feeds_begin(tmp_path):
    """Feeds that begin on January 20th, one late record before: the evaluation's history starts on
    January 1st, but the empty days before the feeds' coverage are not read as quiet history. The
    township day scores are the batch scorer's (``ScoreEvents``: history from ``DataStart``)."""
    sim, events = write_county(tmp_path, begins=dt.date(2025, 1, 20))
    pattern = evaluate_detection.events_glob(events)
    records = str(sim / "truth" / "records.csv")
    start, end = dt.date(2025, 3, 1), dt.date(2025, 4, 30)
    run_detection_pipeline(pattern, records, str(tmp_path / "work"), True, None, HISTORY, start, end)
    got = (tmp_path / "work" / "day_scores.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(got) == 3 * 61  # March and April: public order in both townships, the wage episode's series

    with beam.Pipeline(options=beam_options([])) as p:
        rows = (p | ReadFromParquet(pattern) | TruthDomains(records) | LinkIncidents()
                | ScoreEvents(start, end, HISTORY)
                | beam.Filter(lambda r: r["period"] == "day" and r["village_code"] is None)
                | beam.Map(day_row_json))
        assert_that(rows, equal_to(got))
