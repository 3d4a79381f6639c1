"""Score rows from Event dicts: the Beam pipeline, gaps, Chinese reasons, the stream window."""
import datetime as dt
import functools
import pickle
import zoneinfo
from collections import Counter

import apache_beam as beam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from models import baselines, gaps, risk_score
from pipelines import link, score
from pipelines.options import beam_options

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
TOWN, OTHER_TOWN, VILLAGE = "330100001000", "330100002000", "330100001001"
HISTORY_START, TARGET = dt.date(2025, 1, 1), dt.date(2025, 4, 1)
TARGET_END = dt.date(2025, 4, 30)


def event(i, source, day, hour, text, township=TOWN, domain="labor_wage", **extra):
    t = dt.datetime.combine(day, dt.time(hour), TZ)
    return {"event_id": f"{source}:{i}", "source": source, "reported_at": t, "text": text, "county_code": "330100",
            "township_code": township, "village_code": extra.pop("village_code", None), "domain": domain,
            "signals": extra.pop("signals", []), "caller_key": extra.pop("caller_key", None),
            "status": extra.pop("status", "closed"), "satisfaction": extra.pop("satisfaction", "satisfied"),
            "people_involved": extra.pop("people_involved", None), "lon": None, "lat": None, **extra}


BACKGROUND = ["饭店服务员说老板欠了{n}个月工钱", "快递站分拣员被克扣{n}天工资", "装修师傅干完活结不到账，欠{n}千元",
              "厂里辞退员工不给经济补偿，涉及{n}人", "保安公司{n}个月没交社保", "超市收银员离职后工资被扣{n}百元"]
SITES = ["宏达建筑城南安置房工地", "锦程置业三期项目", "东风村厂房扩建工地", "滨江路改造工程", "实验学校新校区工地",
         "凯旋广场商业楼工地", "永安路管网工程"]
CREWS = ["钢筋班组", "木工班组", "瓦工班组", "水电安装队", "外墙保温班组"]


def build_events():
    """Background labour complaints in two townships, then a wage-arrears episode in April."""
    rng = np.random.default_rng(4)
    events, i = [], 0
    sources = ["hotline_12345", "police_110", "grid"]
    day = HISTORY_START
    while day <= TARGET_END:
        for town in (TOWN, OTHER_TOWN):
            for _ in range(rng.poisson(1.0)):
                i += 1
                events.append(event(i, sources[i % 3], day, 10, BACKGROUND[i % len(BACKGROUND)].format(n=i % 13 + 2),
                                    township=town))
            for _ in range(6):  # ordinary requests keep every feed busy (gap detection needs a usual level)
                for src in sources:
                    i += 1
                    events.append(event(i, src, day, 9, "咨询办事流程", township=town, domain="none"))
        day += dt.timedelta(days=1)
    # the episode: 宏达建筑劳务公司 owes wages; records echo across feeds, the same caller rings again
    for k, day in enumerate(TARGET + dt.timedelta(days=d) for d in range(9, 16)):
        for n in range(3):
            i += 1
            site, crew = SITES[(3 * k + n) % len(SITES)], CREWS[(3 * k + n) % len(CREWS)]
            events.append(event(i, "hotline_12345", day, 8 + 4 * n, f"{site}{crew}反映被拖欠工资，老板一直不露面",
                                caller_key="caller-a" if n == 0 else None, status="open"))
            events.append(event(f"{i}b", "police_110", day, 9 + 4 * n, f"{site}有{crew}讨要工资，在项目部门口聚集",
                                signals=["gathering"] if k >= 4 else [], village_code=VILLAGE))
            events.append(event(f"{i}c", "grid", day, 10 + 4 * n, f"{site}{crew}因欠薪到项目部讨说法",
                                village_code=VILLAGE))
    return events


def run_rows(events, path, history_start=HISTORY_START):
    with beam.Pipeline(options=beam_options([])) as p:
        (p | beam.Create(events) | link.LinkIncidents()
         | score.ScoreEvents(TARGET, TARGET_END, history_start)
         | beam.combiners.ToList()
         | beam.Map(lambda rows: path.write_bytes(pickle.dumps(rows))))
    return pickle.loads(path.read_bytes())


def test_pipeline_from_events_to_score_rows(tmp_path):
    events = build_events()
    # the police feed is silent in the other township for a week of April
    silent = [e for e in events if not (e["source"] == "police_110" and e["township_code"] == OTHER_TOWN
                                       and TARGET + dt.timedelta(days=19) <= e["reported_at"].date()
                                       <= TARGET + dt.timedelta(days=25))]
    rows = run_rows(silent, tmp_path / "rows.pickle")
    by = {(r["period"], r["period_start"], r["township_code"], r["village_code"], r["domain"]): r for r in rows}
    assert {r["domain"] for r in rows} == {"labor_wage"}
    month = by[("month", TARGET, TOWN, None, "labor_wage")]
    # incidents, not records: the episode's 63 records in TOWN are far fewer incidents
    episode_records = 63
    background = sum(1 for e in silent if e["township_code"] == TOWN and e["domain"] == "labor_wage"
                     and e["reported_at"].date() >= TARGET) - episode_records
    # 21 happenings each told by three feeds count once each at most (similar background records link too)
    assert 21 <= month["observed"] <= background + 21
    assert month["level"] in risk_score.ALERT_LEVELS
    assert month["reasons"][0].startswith(f"本月{month['observed']}起，较近3月均值高")
    assert any("涉及聚集" in r for r in month["reasons"])
    assert any(r.startswith("12345、110、网格三方均有反映") for r in month["reasons"])
    assert any("12345工单未解决或不满意占" in r for r in month["reasons"])
    assert "1名来电人重复来电" in month["reasons"]
    assert month["complete"] is True
    first_alert = min(r["period_start"] for r in rows if r["period"] == "day" and r["township_code"] == TOWN
                      and r["village_code"] is None and r["level"] in risk_score.ALERT_LEVELS)
    assert TARGET + dt.timedelta(days=9) <= first_alert <= TARGET + dt.timedelta(days=12)
    quiet = [r for r in rows if r["period"] == "day" and r["township_code"] == TOWN and r["village_code"] is None
             and r["period_start"] < TARGET + dt.timedelta(days=9)]
    assert len(quiet) == 9 and all(r["level"] in ("none", "blue") for r in quiet)
    village_rows = [r for r in rows if r["village_code"] == VILLAGE]
    assert {r["period"] for r in village_rows} == {"day", "month"}
    other = by[("month", TARGET, OTHER_TOWN, None, "labor_wage")]
    assert other["complete"] is False and other["level"] in ("none", "blue")
    assert "数据缺失：110 7天无数据或明显偏少" in other["reasons"]
    gap_day = by[("day", TARGET + dt.timedelta(days=20), OTHER_TOWN, None, "labor_wage")]
    assert gap_day["complete"] is False
    assert by[("day", TARGET + dt.timedelta(days=5), OTHER_TOWN, None, "labor_wage")]["complete"] is True
    assert all(0 <= r["score"] <= 100 for r in rows)
    assert set(rows[0]) == {"period", "period_start", "township_code", "village_code", "domain", "observed",
                            "expected", "score", "level", "reasons", "complete"}


def test_find_gaps_lists_a_silent_feed_day_and_not_a_quiet_weekend():
    rows = []
    day = dt.date(2025, 1, 1)
    while day <= dt.date(2025, 3, 31):
        weekend = day.weekday() >= 5
        rows.append(("police_110", TOWN, day, 2 if weekend else 20))
        if day != dt.date(2025, 3, 12):
            rows.append(("grid", TOWN, day, 10))
        day += dt.timedelta(days=1)
    found = gaps.find_gaps(rows, dt.date(2025, 3, 1), dt.date(2025, 3, 31))
    assert {(g.feed, g.township_code, g.date) for g in found} == {("grid", None, dt.date(2025, 3, 12))}


def test_a_township_gap_must_last_while_one_empty_day_is_noise():
    rows = []
    day = dt.date(2025, 1, 1)
    while day <= dt.date(2025, 3, 31):
        if day != dt.date(2025, 3, 5):
            rows.append(("grid", TOWN, day, 8))
        if not dt.date(2025, 3, 12) <= day <= dt.date(2025, 3, 14):
            rows.append(("grid", OTHER_TOWN, day, 8))
        day += dt.timedelta(days=1)
    found = gaps.find_gaps(rows, dt.date(2025, 3, 1), dt.date(2025, 3, 31))
    assert {(g.feed, g.township_code, g.date) for g in found} == {
        ("grid", OTHER_TOWN, dt.date(2025, 3, d)) for d in (12, 13, 14)}


def test_reasons_text_for_signals_callers_and_gaps():
    tally = risk_score.merge_tallies([{**risk_score.empty_tally(), "incidents": 3, "signals": {"gathering": 2, "extreme_act": 1},
                                       "feeds": {"police_110": 3, "hotline_12345": 2, "grid": 1}, "feeds_3": 1, "feeds_2": 1,
                                       "hotline": 10, "hotline_bad": 6}])
    a = risk_score.assess(4.0, risk_score.month_volume_reason(32, 12.0, [10, 11, 10]), tally, n_repeat_callers=5,
                          gap_days={"police_110": 3})
    assert a.reasons[0] == "本月32起，较近3月均值高210%（预期约12起）"
    assert {"2起涉及聚集", "1起扬言极端行为", "5名来电人重复来电", "12345工单未解决或不满意占60%（6/10）",
            "12345、110、网格三方均有反映（2起多渠道印证）", "数据缺失：110 3天无数据或明显偏少"} <= set(a.reasons)
    assert a.complete is False
    assert a.score > risk_score.base_score(4.0)
    assert risk_score.level_for(a.score) == a.level


def test_score_window_uses_the_same_assessment_as_the_batch_rows():
    rng = np.random.default_rng(1)
    history = {HISTORY_START + dt.timedelta(days=i): int(n) for i, n in enumerate(rng.poisson(2.0, 90))}
    end = HISTORY_START + dt.timedelta(days=96)
    calm = risk_score.score_window(15, history, 7, window_end=end)
    burst = risk_score.score_window(40, history, 7, {**risk_score.empty_tally(), "signals": {"gathering": 1}},
                                    window_end=end)
    assert calm["level"] == "none" and calm["complete"]
    assert burst["level"] in ("red", "orange")
    assert burst["reasons"][0].startswith("近7日40起，预期约")
    assert "1起涉及聚集" in burst["reasons"]
    assert 12 <= burst["expected"] <= 16


def test_many_reports_of_few_incidents_still_raise_the_volume():
    """Linking folds a run of complaints about one site into a few incidents; the further reports
    still count (dampened), so the episode shows; with the weight at 0 it would hide."""
    rng = np.random.default_rng(2)
    daily = {}
    day = HISTORY_START
    while day <= TARGET_END:
        n = int(rng.poisson(1.0))
        daily[day] = {**risk_score.empty_tally(), "incidents": n, "records": n}
        day += dt.timedelta(days=1)
    for k in range(9, 14):  # two incidents a day, told by eight reports each
        daily[TARGET + dt.timedelta(days=k)] = {**risk_score.empty_tally(), "incidents": 2, "records": 16}
    cfg = risk_score.config()

    def alarms(weight):
        c = {**cfg, "anomaly": {**cfg["anomaly"], "extra_report_weight": weight}}
        rows = risk_score.score_series(daily, target_start=TARGET, target_end=TARGET_END, history_start=HISTORY_START,
                                       township_code=TOWN, village_code=None, domain="labor_wage", cfg=c)
        return [r for r in rows if r["period"] == "day" and r["level"] in risk_score.ALERT_LEVELS], rows

    hidden, _ = alarms(0.0)
    shown, rows = alarms(cfg["anomaly"]["extra_report_weight"])
    assert not hidden
    assert shown and min(r["period_start"] for r in shown) <= TARGET + dt.timedelta(days=11)
    first = min(shown, key=lambda r: r["period_start"])
    assert first["observed"] == 2 and isinstance(first["observed"], int)
    assert "条反映）" in first["reasons"][0] and first["reasons"][0].split("起")[0][-1].isdigit()
    quiet = [r for r in rows if r["period"] == "day" and r["period_start"] < TARGET + dt.timedelta(days=9)]
    assert all(0.3 < r["expected"] < 2.0 for r in quiet)  # in incidents, as observed


def test_window_reason_names_reports_when_several_tell_one_incident():
    assert risk_score.window_volume_reason(9, 4.0, 3, 27) == "近3日9起（27条反映），预期约4起，高125%"
    assert risk_score.window_volume_reason(9, 4.0, 3, 9) == "近3日9起，预期约4起，高125%"


def test_score_window_counts_further_reports_as_the_batch_statistic_does():
    history = {HISTORY_START + dt.timedelta(days=i): {"incidents": 2, "records": 2} for i in range(90)}
    end = HISTORY_START + dt.timedelta(days=96)
    window = {**risk_score.empty_tally(), "incidents": 18, "records": 18}
    retold = {**window, "records": 60}  # the same incidents, each reported again and again
    quiet = risk_score.score_window(18, history, 7, window, window_end=end)
    loud = risk_score.score_window(18, history, 7, retold, window_end=end)
    assert loud["score"] > quiet["score"]
    assert loud["reasons"][0].startswith("近7日18起（60条反映），预期约14起")
    assert quiet["expected"] == loud["expected"] == 14.0


def daily_series(rng, days, mean, dispersion=1.0, signal_share=None):
    """date → tally over ``days``: over-dispersed counts (variance ≈ dispersion × mean); with
    ``signal_share`` that share of incidents involves a gathering and is heard by two feeds."""
    out = {}
    for day in days:
        n = int(rng.negative_binomial(mean / (dispersion - 1), 1 / dispersion)) if dispersion > 1 else int(rng.poisson(mean))
        k = int(rng.binomial(n, signal_share)) if signal_share else 0
        out[day] = {**risk_score.empty_tally(), "incidents": n, "records": n,
                    "signals": {"gathering": k} if k else {}, "feeds_2": k}
    return out


def day_rows(daily, cfg=None, end=TARGET_END):
    rows = risk_score.score_series(daily, target_start=TARGET, target_end=end, history_start=HISTORY_START,
                                   township_code=TOWN, village_code=None, domain="public_order", cfg=cfg)
    return [r for r in rows if r["period"] == "day"]


def all_days(start, end):
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def test_usual_counts_scale_the_history_share_to_the_period():
    history = risk_score.signal_history([
        {**risk_score.empty_tally(), "incidents": 60, "signals": {"gathering": 6}, "feeds_2": 12, "feeds_3": 3},
        {**risk_score.empty_tally(), "incidents": 40, "signals": {"gathering": 4, "media_exposure": 1}, "feeds_2": 8}])
    usual = risk_score.usual_counts(history, incidents=5.0)
    assert usual == pytest.approx({"gathering": 0.5, "media_exposure": 0.05, "feeds_2": 1.0, "feeds_3": 0.15})
    assert risk_score.usual_counts(risk_score.signal_history([]), 5.0) == {}


def test_a_signal_usual_for_the_series_earns_fewer_points_and_says_so():
    cfg = risk_score.config()
    rule, margin = cfg["contributions"]["gathering"], cfg["contributions"]["usual_margin_sd"]
    tally = {**risk_score.empty_tally(), "incidents": 6, "signals": {"gathering": 3}}
    new = risk_score.assess(0.0, "当日6起", tally, cfg=cfg, usual={})
    usual = risk_score.assess(0.0, "当日6起", tally, cfg=cfg, usual={"gathering": 1.0})
    routine = risk_score.assess(0.0, "当日6起", tally, cfg=cfg, usual={"gathering": 2.5})
    assert new.score == min(rule["cap"], 3 * rule["per_incident"]) and "3起涉及聚集" in new.reasons
    assert usual.score == pytest.approx(rule["per_incident"] * (3 - 1.0 - margin), abs=0.1)
    assert "3起涉及聚集（通常约1起）" in usual.reasons
    assert routine.score == 0.0 and not any("聚集" in r for r in routine.reasons)


def test_signals_count_above_their_usual_share_of_the_incidents_seen():
    """A busy day with three times the usual incidents, a fifth of them gatherings as always: the volume
    says there were more incidents; the gatherings say nothing more, so no points and no reason for
    them (given the expected incidents they would score the same excess again). The same day with
    most of its incidents gatherings does earn them."""
    for seed in range(3):
        daily = daily_series(np.random.default_rng(seed), all_days(HISTORY_START, TARGET_END), mean=8.0,
                             signal_share=0.2)
        day = TARGET + dt.timedelta(days=20)
        for gatherings, counted in ((5, False), (14, True)):
            daily[day] = {**risk_score.empty_tally(), "incidents": 24, "records": 24,
                          "signals": {"gathering": gatherings}, "feeds_2": gatherings}
            row = next(r for r in day_rows(daily) if r["period_start"] == day)
            assert any("涉及聚集" in r for r in row["reasons"]) is counted, (seed, gatherings, row["reasons"])


def test_flat_over_dispersed_series_with_routine_signals_raises_no_level():
    """A series where a tenth of the incidents always involve a gathering heard by two feeds:
    nothing changes in the target months, so no day may raise a level — which counting its
    routine signals as new evidence would do, again and again."""
    rng = np.random.default_rng(7)
    end = dt.date(2025, 6, 30)
    daily = daily_series(rng, all_days(HISTORY_START, end), mean=4.0, dispersion=2.0, signal_share=0.1)
    cfg = risk_score.config()
    rows = day_rows(daily, cfg, end)
    assert len(rows) == 91
    assert not [r for r in rows if r["level"] in risk_score.ALERT_LEVELS]
    counted = day_rows(daily, {**cfg, "contributions": {**cfg["contributions"], "above_usual": False}}, end)
    assert len([r for r in counted if r["level"] in risk_score.ALERT_LEVELS]) >= 5


def test_a_slow_ramp_with_escalation_is_raised_earlier_than_before():
    """A dispute building slowly — one, then two, then three… extra incidents a day, retold, each
    day one a gathering — in a series that never saw gatherings, over six random backgrounds:
    never later than with session 1's weights and a day earlier on average, always earlier than the
    counts alone, always by day 5; no level before it starts."""
    cfg = risk_score.config()
    session1 = {**cfg, "contributions": {
        **cfg["contributions"], "gathering": {"per_incident": 8, "cap": 20}, "many_people": {"per_incident": 3, "cap": 10},
        "cross_feed": {"per_incident_two_feeds": 2, "per_incident_three_feeds": 4, "cap": 10},
        "repeat_callers": {"per_caller": 2, "cap": 10, "within_days": 30}, "total_cap": 40, "above_usual": False}}
    counts_only = {**cfg, "contributions": {**cfg["contributions"], "total_cap": 0}}
    onset = TARGET + dt.timedelta(days=6)
    delays = []
    for seed in range(6):
        daily = daily_series(np.random.default_rng(seed), all_days(HISTORY_START, TARGET_END), mean=3.0, dispersion=1.5)
        for k in range(10):
            day, extra = onset + dt.timedelta(days=k), (k + 2) // 2
            t = daily[day]
            daily[day] = {**t, "incidents": t["incidents"] + extra, "records": t["records"] + 2 * extra,
                          "signals": {"gathering": 1}, "feeds_2": 1}
        first = {}
        for name, c in (("now", cfg), ("session1", session1), ("counts", counts_only)):
            rows = day_rows(daily, c)
            assert not [r for r in rows if r["period_start"] < onset and r["level"] in risk_score.ALERT_LEVELS]
            first[name] = min(((r["period_start"] - onset).days for r in rows
                               if r["level"] in risk_score.ALERT_LEVELS and r["period_start"] >= onset), default=99)
        delays.append(first)
    assert all(d["now"] <= d["session1"] and d["now"] < d["counts"] for d in delays)
    assert sum(d["now"] < d["session1"] for d in delays) >= 4
    assert all(d["now"] <= 5 for d in delays)
    assert sum(d["session1"] - d["now"] for d in delays) >= 6  # a day earlier on average


def test_the_month_before_the_spring_festival_is_expected_from_last_years():
    """Wage complaints almost double in the month before the festival and drop in its week, every
    year (29 January 2025, 17 February 2026). With the festival dates in scoring.yaml last year's
    pattern is expected and January–February 2026 raise no level; without them, weeks of alarms."""
    festivals = (dt.date(2025, 1, 29), dt.date(2026, 2, 17))

    def rate(day):
        offset = min(((day - f).days for f in festivals), key=abs)
        return 4.0 * (0.4 if -1 <= offset <= 6 else 1.8 if -30 <= offset <= -2 else 1.0)

    cfg = risk_score.config()
    # the regression without festival terms; a window's own dispersion (``window_dispersion``) is left out
    # too, since last year's festival month, unexpected, widens the long windows' tails for this one
    plain = {**cfg, "expected": {k: v for k, v in cfg["expected"].items() if k not in ("festival", "window_dispersion")}}
    start, end = dt.date(2026, 1, 1), dt.date(2026, 2, 28)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        daily = {}
        for day in all_days(dt.date(2025, 1, 1), end):
            n = int(rng.poisson(rate(day)))
            daily[day] = {**risk_score.empty_tally(), "incidents": n, "records": n}
        alarms = []
        for c in (cfg, plain):
            rows = risk_score.score_series(daily, target_start=start, target_end=end, history_start=dt.date(2025, 1, 1),
                                           township_code=TOWN, village_code=None, domain="labor_wage", cfg=c)
            alarms.append(sum(r["period"] == "day" and r["level"] in risk_score.ALERT_LEVELS for r in rows))
        assert alarms[0] == 0 and alarms[1] >= 5


# --------------------------------------------------------------------------------------------
# Village scan: a burst confined to one village of a township
# --------------------------------------------------------------------------------------------

VILLAGES = [f"330100001{200 + j}" for j in range(1, 11)]
QUARRELS = ["邻居因宅基地边界争吵", "两家因排水沟堵塞起纠纷", "村民反映有人占用道路堆放杂物", "因门前停车位发生口角",
            "兄弟分家产生矛盾", "养狗扰民引发争执", "承包地界址不清起争议", "婚约彩礼返还纠纷"]


def village_burst_events(burst_per_day=5, burst_days=(10, 11)):
    """Three civil disputes a day spread over ten villages (Jan–Apr), and ``burst_per_day`` more on
    ``burst_days`` of April, all in the last village: the township's count barely moves."""
    rng = np.random.default_rng(8)
    events, i = [], 0
    for day in all_days(HISTORY_START, TARGET_END):
        for _ in range(rng.poisson(3.0)):
            i += 1
            events.append(event(i, "police_110", day, 8 + i % 12, QUARRELS[i % len(QUARRELS)], domain="civil_dispute",
                                village_code=VILLAGES[int(rng.integers(len(VILLAGES)))], incident_id=f"i{i}"))
    for d in burst_days:
        for k in range(burst_per_day):
            i += 1
            events.append(event(i, "grid", TARGET + dt.timedelta(days=d), 8 + 2 * k, QUARRELS[k % len(QUARRELS)],
                                domain="civil_dispute", village_code=VILLAGES[-1], incident_id=f"i{i}"))
    return events


def test_a_burst_in_one_village_raises_its_township_with_the_village_named(tmp_path):
    """Beam (DailyCounts → ScoreSeries): the township's tallies tell their villages, and the burst day
    is yellow or higher with a reason naming the village; the days before stay quiet."""
    events = village_burst_events()
    with beam.Pipeline(options=beam_options([])) as p:
        created = p | beam.Create(events)
        (created | "Tallies" >> score.DailyCounts() | "AllTallies" >> beam.combiners.ToList()
         | "WriteTallies" >> beam.Map(lambda t: (tmp_path / "tallies").write_bytes(pickle.dumps(dict(t)))))
        (created | "Counts" >> score.DailyCounts() | score.DomainBatches()
         | score.ScoreSeries(TARGET, TARGET_END, HISTORY_START, village_names={VILLAGES[-1]: "宋集村"})
         | "AllRows" >> beam.combiners.ToList()
         | "WriteRows" >> beam.Map(lambda r: (tmp_path / "rows").write_bytes(pickle.dumps(r))))
    tallies, rows = (pickle.loads((tmp_path / name).read_bytes()) for name in ("tallies", "rows"))
    burst_day = TARGET + dt.timedelta(days=11)
    town_tally = tallies[(("330100", TOWN, None, "civil_dispute"), burst_day.isoformat())]
    assert town_tally["villages"][VILLAGES[-1]][0] >= 5
    assert sum(n for n, _ in town_tally["villages"].values()) == town_tally["incidents"]
    days = {r["period_start"]: r for r in rows
            if r["period"] == "day" and r["village_code"] is None and r["township_code"] == TOWN}
    assert days[burst_day]["level"] in risk_score.ALERT_LEVELS
    assert any(text.startswith("其中宋集村：") for text in days[burst_day]["reasons"])
    # without the gazetteer's names the reason still says which village, by its code
    unnamed = next(r for r in day_rows(tallies_by_day(tallies)) if r["period_start"] == burst_day)
    assert any(text.startswith(f"其中村（社区）{VILLAGES[-1]}：") for text in unnamed["reasons"])
    before = [r for d, r in days.items() if d < TARGET + dt.timedelta(days=10)]
    assert len(before) == 10 and all(r["level"] in ("none", "blue") for r in before)


def tallies_by_day(tallies):
    """The township's tallies from DailyCounts' ((series, date), tally) elements, by day."""
    return {dt.date.fromisoformat(date): t for ((_, town, village, _), date), t in tallies.items()
            if town == TOWN and village is None}


def township_tallies_of(events):
    """The township's day tallies as DailyCounts gives them (one incident per event), in plain Python."""
    combine = score.IncidentCombineFn(None)
    per_day: dict = {}
    for e in events:
        out = combine.extract_output(combine.add_input(combine.create_accumulator(), e))
        per_day.setdefault(dt.date.fromisoformat(out["date"]), []).append(out["tally"])
    return {d: risk_score.merge_tallies(ts) for d, ts in per_day.items()}


def test_the_village_scan_is_what_raises_the_township():
    cfg = risk_score.config()
    without = {k: v for k, v in cfg.items() if k != "villages"}
    events = village_burst_events()
    burst_day = TARGET + dt.timedelta(days=11)
    scanned = {r["period_start"]: r for r in day_rows(township_tallies_of(events), cfg)}
    plain = {r["period_start"]: r for r in day_rows(township_tallies_of(events), without)}
    assert scanned[burst_day]["level"] in risk_score.ALERT_LEVELS
    assert plain[burst_day]["level"] not in risk_score.ALERT_LEVELS
    assert scanned[burst_day]["observed"] == plain[burst_day]["observed"]
    # the same incidents spread over the township's villages are no village's burst
    spread = township_tallies_of([dict(e, village_code=VILLAGES[k % len(VILLAGES)]) for k, e in enumerate(events)])
    spread_day = next(r for r in day_rows(spread, cfg) if r["period_start"] == burst_day)
    assert spread_day["level"] not in risk_score.ALERT_LEVELS
    assert not any(text.startswith("其中村") for text in spread_day["reasons"])


def test_tallies_stored_before_villages_give_no_village_evidence():
    """A warehouse written before tallies told villages: no scan, not every village new."""
    daily = township_tallies_of(village_burst_events())
    old = {d: {k: v for k, v in t.items() if k != "villages"} if d < TARGET else t for d, t in daily.items()}
    burst_day = TARGET + dt.timedelta(days=11)
    row = next(r for r in day_rows(old) if r["period_start"] == burst_day)
    assert not any(text.startswith("其中村") for text in row["reasons"])


def test_a_period_without_places_has_the_counts_signals_feeds_and_callers():
    tallies = [
        {**risk_score.empty_tally(), "incidents": 2, "records": 3, "signals": {"gathering": 1}, "feeds": {"grid": 2},
         "feeds_2": 1, "callers": {"a": 2}, "hotline": 1, "subjects": {"解放路": 1}, "villages": {VILLAGE: [2, 3]}},
        risk_score.empty_tally(),
        {**risk_score.empty_tally(), "incidents": 1, "records": 1, "signals": {"gathering": 1, "media_exposure": 1},
         "feeds": {"police_110": 1}, "callers": {"a": 1, "b": 1}, "hotline_bad": 1, "subjects": {"解放路": 1}},
    ]
    whole, lean = risk_score.merge_tallies(tallies), risk_score.merge_tallies(tallies, places=False)
    assert lean == {**whole, "subjects": {}, "villages": {}}
    assert whole["villages"] == {VILLAGE: [2, 3]} and whole["subjects"] == {"解放路": 2}
    assert lean["signals"] == {"gathering": 2, "media_exposure": 1} and lean["callers"] == {"a": 3, "b": 1}


def test_villages_pooling_from_their_township_score_alike_with_one_shared_fit():
    """Sparse villages pool from their township's series: scored with a shared memo of that fit, their
    rows are those each gets alone, and the township's history is fitted once."""
    rng = np.random.default_rng(5)
    dates = all_days(HISTORY_START, TARGET_END)
    township = {d: float(n) for d, n in zip(dates, rng.poisson(4.0, len(dates)))}
    villages = []
    for k in range(3):
        daily = {}
        for d in rng.choice(len(dates), 6 + 3 * k, replace=False):
            day = dates[int(d)]
            daily[day] = {**risk_score.empty_tally(), "incidents": 1, "records": 1 + k % 2,
                          "feeds": {"grid": 1}, "callers": {f"c{int(d) % 4}": 1}}
        villages.append(daily)
    args = dict(target_start=TARGET, target_end=TARGET_END, history_start=HISTORY_START, township_code=TOWN,
                domain="public_order", parent_daily_counts=township, n_siblings=3, day_rows="observed")
    fits = {}
    shared = [risk_score.score_series(v, village_code=f"{TOWN[:9]}00{k}", parent_fits=fits, **args)
              for k, v in enumerate(villages)]
    alone = [risk_score.score_series(v, village_code=f"{TOWN[:9]}00{k}", **args) for k, v in enumerate(villages)]
    assert shared == alone
    assert len(fits) == 1
    assert all(rows[-1]["period"] == "month" for rows in shared)


def test_series_fitted_ahead_together_score_as_each_fitted_alone(monkeypatch):
    """The scorer fits a domain's series together before scoring them (``fit_ahead``), and takes their month
    models, windows' dispersions and window surprisals together too: a township (months of its own, two target
    months) and villages pooling from it, or busy enough for their own fit. Scored after, no series fits or
    computes those again, and every row is the row it gets without the memos."""
    rng = np.random.default_rng(12)
    dates = all_days(HISTORY_START, TARGET_END)
    township = daily_series(rng, dates, 4.0)
    villages = [{d: t for d, t in township.items() if rng.random() < share} for share in (0.04, 0.5)]
    args = dict(target_start=dt.date(2025, 3, 1), target_end=TARGET_END, history_start=HISTORY_START,
                township_code=TOWN, domain="public_order", cfg=risk_score.config())
    parent = {d: 3.0 * (1 + d.day % 3) for d in dates}
    weight = risk_score.report_weight()
    township_counts = risk_score.dense_counts({d: risk_score.volume(t, weight=weight) for d, t in township.items()},
                                              HISTORY_START, TARGET_END)[1]
    memos = dict(parent_fits={}, month_models={}, window_scores={})
    risk_score.fit_ahead([(township, parent, 1)] + [(v, township_counts, 2) for v in villages], **memos,
                         **{k: v for k, v in args.items() if k not in ("township_code", "domain")})
    # per target month: the township (also for the sparse village) and the busy village; the months of each series
    assert len(memos["parent_fits"]) == 2 * 2
    assert len(memos["month_models"]) == len(memos["window_scores"]) == 2 * 3
    def no_more(*_):
        raise AssertionError("computed again")
    for name in ("fit_expected", "at_recent_levels", "window_dispersions_many", "window_surprisal", "surprisal"):
        monkeypatch.setattr(risk_score.baselines, name, no_more)
    ahead = [risk_score.score_series(township, village_code=None, parent_daily_counts=parent, **memos, **args)]
    ahead += [risk_score.score_series(v, village_code=f"{TOWN[:9]}00{k}", parent_daily_counts=township_counts,
                                      n_siblings=2, day_rows="observed", **memos, **args)
              for k, v in enumerate(villages)]
    monkeypatch.undo()
    alone = [risk_score.score_series(township, village_code=None, parent_daily_counts=parent, **args)]
    alone += [risk_score.score_series(v, village_code=f"{TOWN[:9]}00{k}", parent_daily_counts=township_counts,
                                      n_siblings=2, day_rows="observed", **args) for k, v in enumerate(villages)]
    assert ahead == alone
    assert sum(row["period"] == "month" for rows in ahead for row in rows) == 6


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(-3, 40), st.tuples(st.integers(0, 30), st.integers(0, 40)), max_size=40),
       st.sampled_from([0.0, 0.25, 0.3, 1 / 3, 0.7]))
def test_dense_volumes_are_each_days_volume(days, weight):
    """``dense_volumes`` (the scorer lays out every series' volumes over arrays) gives each day the float
    ``volume`` gives it, bit for bit, and 0 to the days without a tally or outside the period."""
    start, end = dt.date(2025, 3, 1), dt.date(2025, 4, 5)
    daily = {start + dt.timedelta(days=k): {"incidents": n, "records": n + extra} for k, (n, extra) in days.items()}
    expected = risk_score.dense_counts({d: risk_score.volume(t, weight=weight) for d, t in daily.items()}, start, end)[1]
    assert risk_score.dense_volumes(daily, start, end, weight).tobytes() == expected.tobytes()


def test_a_window_reaching_into_last_month_is_compared_with_the_days_before_it():
    """A compound never named before is named on a month's last two days and its first. The batch's row
    for the first day and the stream's 3-day window both compare those mentions with the days before the
    window; the batch's history (the days before the month) must not already hold the window's first days,
    or the new compound looks usual ("以往约每月…") where the stream says it was never named."""
    days = all_days(HISTORY_START, TARGET)
    daily = daily_series(np.random.default_rng(3), days, 4.0)
    for t in daily.values():
        t["subjects"] = {"幸福里小区": 1} if t["incidents"] else {}
    burst = {TARGET - dt.timedelta(days=2): 2, TARGET - dt.timedelta(days=1): 2, TARGET: 3}
    for day, n in burst.items():
        daily[day].update(incidents=daily[day]["incidents"] + n, records=daily[day]["records"] + n,
                          subjects={**daily[day]["subjects"], "锦绣花园小区": n})
    batch = day_rows(daily, end=TARGET)[-1]
    window = risk_score.merge_tallies([daily[d] for d in burst])
    history = {d: t for d, t in daily.items() if d < min(burst)}
    stream = risk_score.score_window(window["incidents"], history, 3, window, window_end=TARGET,
                                     history_start=HISTORY_START)

    def subject(reasons):
        return [r for r in reasons if r.startswith("同一对象")]

    assert subject(stream["reasons"]) == ["同一对象（锦绣花园小区）近3日7起（此前88天未见）"]
    assert subject(batch["reasons"]) == subject(stream["reasons"])


def test_base_score_is_the_curve_interpolated_as_numpy_does():
    cfg = risk_score.config()
    xp, fp = np.array(cfg["anomaly"]["surprisal_to_score"], dtype=float).T
    values = np.concatenate([np.linspace(-1.0, xp[-1] + 3.0, 4001), xp, np.nextafter(xp, np.inf),
                             np.nextafter(xp, -np.inf), np.random.default_rng(2).exponential(2.5, 2000)])
    assert [risk_score.base_score(v, cfg) for v in values] == [float(np.interp(v, xp, fp)) for v in values]


def incident_summary(records, combine_many_people):
    """One incident's records in a series → its date and tally, as the tally's contract
    (``models.risk_score``) reads: each signal, feed and subject once; callers and villages by records."""
    first = min(e["reported_at"] for e in records)
    feeds = {e["source"] for e in records}
    signals = {s for e in records for s in e["signals"]}
    signals |= {"many_people"} if any((e["people_involved"] or 0) >= combine_many_people for e in records) else set()
    hotline = [e for e in records if e["source"] == "hotline_12345"]
    villages = Counter(e["village_code"] for e in records if e["village_code"])
    return {"date": first.astimezone(TZ).date().isoformat(), "tally": {
        "incidents": 1, "records": len(records), "signals": {s: 1 for s in signals}, "feeds": {f: 1 for f in feeds},
        "feeds_2": int(len(feeds) == 2), "feeds_3": int(len(feeds) >= 3),
        "callers": dict(Counter(e["caller_key"] for e in records if e["caller_key"])), "hotline": len(hotline),
        "hotline_bad": sum(e["status"] != "closed" or e["satisfaction"] == "dissatisfied" for e in hotline),
        "subjects": {s: 1 for e in records for s in e["subjects"]}, "villages": {v: [1, n] for v, n in villages.items()}}}


def test_daily_counts_shards_sum_incidents_as_the_combine_fn_does(tmp_path):
    """DailyCounts' shards (records counted per column, per incident and series) give the tallies
    ``IncidentCombineFn`` gives the stream: incidents spanning midnight, feeds, villages, callers, 12345
    statuses, many people; its accumulators merged from any split. The same from Events one by one and from
    tables of several townships' Events (``packed_events.is_event_table``), with records that count nowhere
    (no domain, no township) and empty codes beside them."""
    from models.subjects import SubjectNamer
    from pipelines.packed_events import EventTables

    rng = np.random.default_rng(11)
    texts = ["锦绣花园小区门口十几人讨要工钱", "工地老板欠薪三个月", "宏达建筑城南安置房工地工人聚集", ""]
    events = [event(i, str(rng.choice(["hotline_12345", "police_110", "grid"])),
                    TARGET + dt.timedelta(days=int(rng.integers(3))), int(rng.integers(24)), texts[i % 4],
                    township=(TOWN, OTHER_TOWN)[i % 5 == 0], village_code=[None, VILLAGE, VILLAGES[0], ""][i % 4],
                    incident_id=f"i{i % 23}", signals=list(rng.choice(["gathering", "extreme_act"], int(rng.integers(3)))),
                    caller_key=[None, "a", "b", ""][int(rng.integers(4))], status=str(rng.choice(["closed", "returned"])),
                    satisfaction=str(rng.choice(["satisfied", "dissatisfied", None])),
                    people_involved=[None, *range(60)][int(rng.integers(61))])
              for i in range(90)]
    nowhere = [event(90, "grid", TARGET, 9, texts[0], domain="none"), event(91, "grid", TARGET, 9, texts[0], township="")]
    tables = EventTables()
    whole = [{f["name"]: None for f in schemas.event_fields()}
             | e | {"source_id": e["event_id"], "ingested_at": e["reported_at"], "batch_id": "b"} for e in events + nowhere]
    as_tables = [((), tables.to_bytes(tables.table([tables.packer.pack(e) for e in whole[i::2]]))) for i in (0, 1)]
    with beam.Pipeline(options=beam_options([])) as p:
        counted = [(p | f"Create{name}" >> beam.Create(elements) | f"Count{name}" >> score.DailyCounts(shards=3)
                    | f"List{name}" >> beam.combiners.ToList())
                   for name, elements in (("Events", events + nowhere), ("Tables", as_tables))]
        (counted | beam.Flatten() | "Both" >> beam.combiners.ToList()
         | beam.Map(lambda both: (tmp_path / "tallies").write_bytes(pickle.dumps([dict(t) for t in both]))))
    counted, from_tables = pickle.loads((tmp_path / "tallies").read_bytes())
    assert counted == from_tables

    namer, combine = SubjectNamer(), score.IncidentCombineFn(score._many_people_threshold())
    incidents: dict = {}
    for e in events:
        for key in score.series_keys(e):
            incidents.setdefault((key, e["incident_id"]), []).append(dict(e, subjects=namer.names(e["text"])))
    per_day: dict = {}
    for (key, _), records in incidents.items():
        halves = [functools.reduce(combine.add_input, part, combine.create_accumulator())
                  for part in (records[::2], records[1::2])]
        out = combine.extract_output(combine.merge_accumulators(halves))
        assert out == incident_summary(records, combine_many_people=score._many_people_threshold())
        per_day.setdefault((key, out["date"]), []).append(out["tally"])
    expected = {key_day: risk_score.merge_tallies(tallies) for key_day, tallies in per_day.items()}
    assert counted == expected
    assert any(t["incidents"] > 1 for t in expected.values()) and any(t["records"] > 1 for t in expected.values())
    assert any("many_people" in t["signals"] for t in expected.values())


def _repeat_callers_as_merged(tallies: list, first: int, last: int, lookback_days: int) -> int:
    """Repeat callers of days first..last, every caller's records over the lookback and the period summed."""
    period, before = Counter(), Counter()
    for t in tallies[first:last + 1]:
        period.update(t["callers"])
    for t in tallies[max(0, first - lookback_days):first]:
        before.update(t["callers"])
    return sum(1 for key, n in period.items() if n + before[key] >= 2)


def test_repeat_callers_of_a_day_and_a_month_count_the_lookback_and_the_period():
    """Callers twice on one day, once on a day and again within or beyond the lookback, once only: each
    day row (over the window its volume reason names) and the month row name the repeat callers that
    summing every caller's records over lookback + period gives."""
    cfg = risk_score.config()
    lookback = cfg["contributions"]["repeat_callers"]["within_days"]
    dates = all_days(HISTORY_START, TARGET_END)
    calls = {TARGET + dt.timedelta(days=2): {"a": 2, "b": 1, "c": 1, "d": 1},
             TARGET + dt.timedelta(days=3): {"d": 1, "e": 1},
             TARGET - dt.timedelta(days=5): {"b": 1},
             TARGET + dt.timedelta(days=2) - dt.timedelta(days=lookback + 3): {"c": 1},
             TARGET + dt.timedelta(days=20): {"e": 1, "f": 1}}
    daily = {d: {**risk_score.empty_tally(), "incidents": sum(c.values()), "records": sum(c.values()),
                 "feeds": {"hotline_12345": sum(c.values())}, "callers": c} for d, c in calls.items()}
    rows = risk_score.score_series(daily, target_start=TARGET, target_end=TARGET_END, history_start=HISTORY_START,
                                   township_code=TOWN, village_code=None, domain="labor_wage", day_rows="all", cfg=cfg)
    tallies = [daily.get(d, risk_score.empty_tally()) for d in dates]

    def named(row):
        found = [r for r in row["reasons"] if r.endswith("名来电人重复来电")]
        return int(found[0][:-len("名来电人重复来电")]) if found else 0

    windows = Counter()
    for row in rows:
        first = last = dates.index(row["period_start"])
        if row["period"] == "month":
            last = dates.index(TARGET_END)
        elif not row["reasons"][0].startswith("当日"):
            first = last - int(row["reasons"][0][1:row["reasons"][0].index("日")]) + 1
        windows[last - first + 1] += 1
        assert named(row) == _repeat_callers_as_merged(tallies, first, last, lookback)
    assert windows[1] and len(windows) > 2  # one-day windows, longer ones and the month
    assert named(rows[-1]) == 4  # a, b, d, e


def test_villages_without_history_share_their_month_model_and_score_as_alone():
    """Sparse villages heard of first in the target month pool the same fit of their township with the same
    (empty) history: with a shared ``month_models`` memo they get one month model (the recent level and the
    windows' dispersions), and their rows are those each gets alone; a village with history gets its own."""
    rng = np.random.default_rng(9)
    dates = all_days(HISTORY_START, TARGET_END)
    township = {d: float(n) for d, n in zip(dates, rng.poisson(4.0, len(dates)))}
    villages = []
    for k in range(3):
        days = [TARGET + dt.timedelta(days=int(i)) for i in rng.choice(30, 4 + k, replace=False)]
        villages.append({d: {**risk_score.empty_tally(), "incidents": 1 + k, "records": 2 + k, "feeds": {"grid": 1 + k}}
                         for d in days})
    villages.append({**villages[0], HISTORY_START + dt.timedelta(days=40): villages[0][min(villages[0])]})
    args = dict(target_start=TARGET, target_end=TARGET_END, history_start=HISTORY_START, township_code=TOWN,
                domain="public_order", parent_daily_counts=township, n_siblings=4, day_rows="observed")
    fits, month_models = {}, {}
    shared = [risk_score.score_series(v, village_code=f"{TOWN[:9]}00{k}", parent_fits=fits, month_models=month_models,
                                      **args) for k, v in enumerate(villages)]
    alone = [risk_score.score_series(v, village_code=f"{TOWN[:9]}00{k}", **args) for k, v in enumerate(villages)]
    assert shared == alone
    assert len(month_models) == 2


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.sampled_from([0, 3]))
def test_month_windows_of_series_together_are_each_series_alone_bit_for_bit(seed, k, min_observed):
    """``fit_ahead`` takes a domain's series' window surprisals and month surprisals together (``_month_windows``,
    one row per series); each series gets what it gets alone, bit for bit."""
    rng = np.random.default_rng(seed)
    cfg = risk_score.config()
    windows = tuple(cfg["anomaly"]["windows"])
    history, month = 200, 31
    dates = all_days(HISTORY_START, HISTORY_START + dt.timedelta(days=history + month - 1))
    series = []
    for _ in range(k):
        level = rng.choice([0.0, 0.2, 3.0, 50.0])
        counts = rng.poisson(level * rng.uniform(0.6, 1.6, len(dates))) * rng.choice([1.0, 1.25])
        model = baselines.fit_expected(dates[:history], counts[:history], cfg["expected"])
        dispersions = baselines.window_dispersions(model, dates[:history], counts[:history], windows, cfg["expected"])
        lo = history - max(windows) + 1
        series.append((model, dispersions, counts[lo:]))
    span = dates[history - max(windows) + 1:]
    together = risk_score._month_windows(series, span, month, windows, min_observed, None)
    for got, one in zip(together, series):
        alone = risk_score._month_windows([one], span, month, windows, min_observed, None)[0]
        assert [a.tobytes() for a in got[:3]] == [a.tobytes() for a in alone[:3]]
        assert repr(got[3:]) == repr(alone[3:])
