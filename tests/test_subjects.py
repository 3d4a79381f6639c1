"""Subject-level evidence: names found in hand-written texts, the predictive tail, the strongest
subject of a window, and the day rows of a series whose incidents start naming one compound."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import nbinom

from models import risk_score, subjects

RULES = risk_score.config()["subjects"]
HISTORY_START, TARGET, TARGET_END = dt.date(2025, 1, 1), dt.date(2025, 4, 1), dt.date(2025, 4, 30)
POOL = [f"{stem}小区" for stem in ("幸福里", "锦绣花园", "阳光", "滨江", "东方")] + ["解放路", "人民路", "宏达机械厂"]


def test_namer_finds_compounds_companies_schools_and_roads():
    namer = subjects.SubjectNamer()
    assert namer.names("锦绣花园小区业主反映开发商逾期交房，几十人聚集在售楼处") == ("锦绣花园小区",)
    assert namer.names("来电人反映宏达建筑工程有限公司拖欠工资三个月，又来电说宏达建筑工程有限公司不给钱") == ("宏达建筑工程有限公司",)
    assert namer.names("报警称实验小学门口有人寻衅滋事") == ("实验小学",)
    assert namer.names("路口有人聚集争吵") == ()
    assert namer.names(None) == ()


def test_a_name_with_words_before_it_folds_onto_the_name_the_history_knows():
    history = {"锦绣花园小区": 6, "花园小区": 1}
    folded = subjects.fold_names({"购买锦绣花园小区": 2, "锦绣花园小区": 1, "花园小区": 1}, history)
    assert folded == {"锦绣花园小区": 3, "花园小区": 1}
    # a longer name the history knows better is never clipped to a shorter one
    assert subjects.fold_names({"锦绣花园小区": 2}, history) == {"锦绣花园小区": 2}


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 12), window=st.integers(1, 14), mentions=st.integers(0, 200),
       days=st.integers(28, 730), prior_rate=st.floats(0.001, 2.0))
def test_predictive_tail_is_the_gamma_poisson_upper_tail(count, window, mentions, days, prior_rate):
    b = 1.0 / prior_rate
    p = (days + b) / (days + b + window)
    expected = nbinom.sf(count - 1, mentions + 1.0, p)
    tail = subjects.predictive_tail(count, window, mentions, days, 1.0, prior_rate)
    assert tail == pytest.approx(expected, rel=1e-6, abs=1e-300)


def test_a_seldom_named_subject_recurring_is_evidence_and_a_busy_one_is_not():
    history = {name: 90 for name in POOL}  # each named about once a day over 90 days
    history["东郊加工厂"] = 1
    new = subjects.strongest({"锦苑小区": 4, "解放路": 1}, 3, history, 90, RULES, 3)
    rare = subjects.strongest({"东郊加工厂": 4}, 3, history, 90, RULES, 3)
    busy = subjects.strongest({"解放路": 4}, 3, history, 90, RULES, 3)
    assert new.subject == "锦苑小区" and new.count == 4 and new.surprisal > 3
    assert 0 < rare.surprisal < new.surprisal
    assert busy is None
    assert new.reason() == "同一对象（锦苑小区）近3日4起（此前90天未见）"
    assert rare.reason() == "同一对象（东郊加工厂）近3日4起（以往约每月0.3起）"
    # fewer incidents than min_incidents are no evidence, however rare the subject
    assert subjects.strongest({"锦苑小区": RULES["min_incidents"] - 1}, 1, history, 90, RULES, 3) is None
    # looking at more subjects costs: the same count is less surprising among 200 names than among 9
    crowded = {**history, **{f"{i}号楼": 1 for i in range(200)}}
    assert subjects.strongest({"锦苑小区": 4}, 3, crowded, 90, RULES, 3).surprisal < new.surprisal
    # in an over-dispersed series (one matter told as several incidents) the same count says less
    clumped = subjects.strongest({"锦苑小区": 4}, 3, history, 90, RULES, 3, dispersion=2.0)
    assert 0 < clumped.surprisal < new.surprisal - 1
    assert subjects.strongest({"锦苑小区": 4}, 3, history, 90, RULES, 3, dispersion=3.0) is None
    assert subjects.strongest({"锦苑小区": 8}, 3, history, 90, RULES, 3, dispersion=3.0).surprisal > 2


def series(rng, days, mean=6.0, burst=None):
    """date → tally: Poisson incidents naming POOL's subjects in turn (one unnamed a day); ``burst``:
    date → incidents naming one new compound added that day."""
    out, turn = {}, 0
    for day in days:
        n = int(rng.poisson(mean))
        names = {}
        for _ in range(max(0, n - 1)):
            names[POOL[turn % len(POOL)]] = names.get(POOL[turn % len(POOL)], 0) + 1
            turn += 1
        extra = (burst or {}).get(day, 0)
        if extra:
            names["锦苑小区"] = extra
        out[day] = {**risk_score.empty_tally(), "incidents": n + extra, "records": n + extra, "subjects": names}
    return out


def day_rows(daily, cfg):
    rows = risk_score.score_series(daily, target_start=TARGET, target_end=TARGET_END, history_start=HISTORY_START,
                                   township_code="330100001000", village_code=None, domain="housing_construction",
                                   cfg=cfg)
    return {r["period_start"]: r for r in rows if r["period"] == "day"}


def test_day_rows_name_a_new_compound_recurring_and_score_it_higher():
    days = [HISTORY_START + dt.timedelta(days=i) for i in range((TARGET_END - HISTORY_START).days + 1)]
    burst = {dt.date(2025, 4, 10): 2, dt.date(2025, 4, 11): 2}
    daily = series(np.random.default_rng(3), days, burst=burst)
    cfg = risk_score.config()
    without = {k: v for k, v in cfg.items() if k != "subjects"}
    with_subjects, counts_only = day_rows(daily, cfg), day_rows(daily, without)
    day = dt.date(2025, 4, 11)
    assert "同一对象（锦苑小区）近3日4起（此前90天未见）" in with_subjects[day]["reasons"]
    assert with_subjects[day]["score"] > counts_only[day]["score"] + 15
    assert not any("同一对象" in r for r in counts_only[day]["reasons"])
    # the busy pool alone: no subject reasons on the days before the burst
    before = [r for d, row in with_subjects.items() if d < dt.date(2025, 4, 10) for r in row["reasons"]]
    assert not any("同一对象" in r for r in before)


def test_equally_surprising_subjects_give_the_same_evidence_in_any_order():
    """Tallies merged in another order (an incremental run, another runner) name the same subject."""
    history = {"盛世名苑": 3, "泰和嘉园": 3, "文化路": 40}
    window = {"泰和嘉园": 4, "盛世名苑": 4, "文化路": 2}
    first = subjects.strongest(window, 7, history, 120, RULES, 3)
    second = subjects.strongest(dict(reversed(window.items())), 7, history, 120, RULES, 3)
    assert first is not None and first == second
    assert first.count == 4 and first.subject in ("泰和嘉园", "盛世名苑")


def test_sum_subjects_adds_to_a_start_without_changing_it():
    start = {"锦绣花园小区": 2}
    tallies = [{"subjects": {"锦绣花园小区": 1, "解放路": 1}}, {"incidents": 0}, {"subjects": {}},
               {"subjects": {"解放路": 2}}]
    assert subjects.sum_subjects(tallies, start) == {"锦绣花园小区": 3, "解放路": 3}
    assert start == {"锦绣花园小区": 2}
    assert subjects.sum_subjects(tallies) == {"锦绣花园小区": 1, "解放路": 3}
    assert subjects.sum_subjects([]) == {}


def test_tails_of_several_subjects_are_each_ones_tail():
    counts, mentions = [1, 2, 5, 9, 0], [0, 3, 40, 1, 7]
    tails = subjects.predictive_tails(counts, 3, mentions, 120, 1.0, 0.05, 1.7)
    assert tails.tolist() == [subjects.predictive_tail(n, 3, m, 120, 1.0, 0.05, 1.7) for n, m in zip(counts, mentions)]
    assert tails[-1] == 1.0


def test_tails_kept_over_many_windows_give_the_evidence_found_without():
    """The scorer keeps the candidates' tails over a series' days (``strongest(tails=…)``): consecutive days' windows
    hold the same counts of the same subjects. Every window finds the evidence it finds without, and the memo is used."""
    history = {"锦绣花园小区": 6, "解放路": 30, "宏达机械厂": 1}
    windows = [({"锦苑小区": 4, "解放路": 1}, 3), ({"锦苑小区": 4, "解放路": 3}, 3), ({"锦苑小区": 4}, 7),
               ({"锦苑小区": 4, "宏达机械厂": 3}, 3), ({"解放路": 9, "宏达机械厂": 3}, 7), ({"锦苑小区": 3}, 1)]
    tails = {}
    kept = [subjects.strongest(w, days, history, 120, RULES, 3, 1.4, tails=tails) for w, days in windows]
    assert kept == [subjects.strongest(w, days, history, 120, RULES, 3, 1.4) for w, days in windows]
    assert any(e is not None for e in kept) and len(tails) < sum(n >= RULES["min_incidents"]
                                                                 for w, _ in windows for n in w.values())


def test_names_folded_through_a_kept_memo_fold_as_without():
    history = {"锦绣花园小区": 6, "花园小区": 1, "宏达机械厂": 2}
    windows = [{"购买锦绣花园小区": 2, "花园小区": 1}, {"锦绣花园小区": 1, "说宏达机械厂": 3}, {"购买锦绣花园小区": 4}]
    folds = {}
    assert [subjects.fold_names(w, history, folds=folds) for w in windows] == [subjects.fold_names(w, history)
                                                                               for w in windows]
    assert folds["购买锦绣花园小区"] == "锦绣花园小区" and folds["花园小区"] == "花园小区"


def test_a_time_phrase_before_a_name_is_no_part_of_it():
    namer = subjects.SubjectNamer()
    assert namer.names("报警称半个小时前滨江嘉园门口有两伙人打架，现已散去") == ("滨江嘉园",)
    assert namer.names("来电人称十分钟前金色小区地下车库有人砸车") == ("金色小区",)
    assert namer.names("两天前翠湖小区停水至今未恢复，居民生活不便") == ("翠湖小区",)
    assert namer.names("今早幸福里小区门口垃圾堆积无人清运") == ("幸福里小区",)
    assert namer.names("一个月前宏达建筑工地的包工头就不见了，工资一直没发") == ("宏达建筑工地",)
    assert namer.names("2025年3月5日14时30分许滨江嘉园3栋有人报警称家中被盗") == ("滨江嘉园",)
    assert namer.names("晚上八点半阳光花园有人放音乐太吵") == ("阳光花园",)
    # names that only look like time words stay whole
    assert namer.names("五月花园小区业主反映电梯停运") == ("五月花园小区",)
    assert namer.names("前进小区有人占道经营") == ("前进小区",)
    assert namer.names("十里铺村村民反映河道有人倾倒垃圾") == ("十里铺村",)


_NUMBERS = st.sampled_from(["", "半", "一", "两", "三", "十", "几", "二十", "3", "12", "１"])
_RELATIVE = st.builds(lambda n, ge, duo, half, unit, duo2, yi: n + ge + duo + half + unit + duo2 + yi + "前",
                      _NUMBERS, st.sampled_from(["", "个"]), st.sampled_from(["", "多"]), st.sampled_from(["", "半"]),
                      st.sampled_from(["小时", "钟头", "分钟", "天", "周", "星期", "月", "年"]),
                      st.sampled_from(["", "多"]), st.sampled_from(["", "以", "之"]))
_DAY_PART = st.builds(lambda day, part: day + part, st.sampled_from(["今", "昨", "前", "当", "今天", "昨天", "前天"]),
                      st.sampled_from(["早", "晚", "夜", "早上", "上午", "中午", "下午", "傍晚", "晚上", "夜里", "凌晨"]))
_CLOCK = st.builds(lambda hour, rest: hour + rest, st.sampled_from(["三点", "八点", "十一点", "9点", "14时", "21点"]),
                   st.sampled_from(["", "半", "多", "左右", "许", "三十分", "15分许"]))
_NAMER = subjects.SubjectNamer()
_TIME_PHRASES = st.one_of(_RELATIVE, _DAY_PART, _CLOCK, st.sampled_from(["刚才", "刚刚", "前几天", "上个月", "上周三"]))
# name characters that are no boundary word, no place suffix and no time word on their own
_NAME_CHARS = "滨江锦绣金色阳光翠湖宏达龙凤桂兰松柏泰和兴隆"


@settings(max_examples=150, deadline=None)
@given(before=st.sampled_from(["", "报警称", "来电人反映", "据群众反映，"]), time=_TIME_PHRASES,
       name=st.text(alphabet=_NAME_CHARS, min_size=2, max_size=4),
       suffix=st.sampled_from(["小区", "嘉园", "花园", "有限公司", "幼儿园", "工地", "农贸市场"]))
def test_a_name_never_starts_with_a_time_phrase(before, time, name, suffix):
    # a name of up to four characters leaves the phrase's time word within the name_max_chars looked at
    assert _NAMER.names(f"{before}{time}{name}{suffix}有人聚集吵闹") == (name + suffix,)
