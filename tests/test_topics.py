"""Monthly topics: subjects, clustering, titles, history, ranking and status against last month."""
from __future__ import annotations

import datetime as dt
import re

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that
from hypothesis import given, settings
from hypothesis import strategies as st

from models import topics as model
from pipelines.options import beam_options
from pipelines.topics import BuildTopics
from pipelines.gazetteer import read_gazetteer_rows
from tests.topic_fixtures import (CHENGGUAN, GAZETTEER, MONTH, QINGSHI, TZ, history_events, label_of,
                                  month_events, month_scores, score_row)


@pytest.fixture(scope="module")
def builder():
    return model.TopicBuilder(str(GAZETTEER))


@pytest.fixture(scope="module")
def topic_list(builder):
    return model.build_topics(month_events(), month_scores(), history_events(), None, builder=builder, month=MONTH)


@pytest.mark.parametrize("text, subjects", [
    ("市民来电反映：其购买的城关镇幸福里小区3号楼商品房逾期交房", ["幸福里小区"]),
    ("我是锦绣花园小区的业主，物业公司不修电梯", ["锦绣花园小区"]),
    ("来电人称宏达建筑工程有限公司拖欠农民工工资", ["宏达建筑工程有限公司"]),
    ("家住建设路与人民路交叉口，红绿灯坏了", ["建设路", "人民路"]),
    ("东风村村民反映征地补偿款至今未发放", ["东风村"]),
    ("青石镇实验小学门口有人卖三无食品", ["实验小学"]),
    ("在花园路菜市场被偷了手机", ["花园路菜市场"]),
    ("村民反映村里的路灯坏了，到镇政府反映没人管", []),
])
def test_subjects_found_in_field_texts(builder, text, subjects):
    found = model.canonical_subjects([builder.finder.mentions(text)])[0]
    assert [name for name, _ in found] == subjects


def test_subject_names_are_chosen_across_events(builder):
    texts = ["购买幸福里小区的房子逾期", "幸福里小区业主聚集", "反映幸福里小区停工",
             "宏达建筑工程有限公司欠薪", "鑫源建筑工程有限公司欠薪"]
    chosen = model.canonical_subjects([builder.finder.mentions(t) for t in texts])
    assert [c[0][0] for c in chosen] == ["幸福里小区"] * 3 + ["宏达建筑工程有限公司", "鑫源建筑工程有限公司"]
    unified = model.unify_subjects(chosen + [[]], texts + ["宏达建筑老板跑路了"], builder.suffixes)
    assert unified[-1] == [("宏达建筑工程有限公司", "company")]
    # two compounds of one developer are two places; a name with and without its last suffix is one
    texts = ["幸福里华庭逾期交房", "幸福里公馆逾期交房", "幸福里公馆业主聚集", "锦绣花园电梯坏了", "锦绣花园小区电梯坏了"]
    unified = model.unify_subjects(model.canonical_subjects([builder.finder.mentions(t) for t in texts]), texts,
                                   builder.suffixes)
    assert [u[0][0] for u in unified] == ["幸福里华庭", "幸福里公馆", "幸福里公馆", "锦绣花园小区", "锦绣花园小区"]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("我在幸福里小区宏达公司村路街的业主反映了工地学校，。3*")), max_size=40))
def test_subjects_are_named_places_of_the_text(builder, text):
    for name, kind in model.canonical_subjects([builder.finder.mentions(text)])[0]:
        assert name in builder.finder.strip_regions(text)
        assert any(name.endswith(s) for s in builder.suffixes) or kind == "village"
        assert name not in builder.lexicon["generic_subjects"]


def test_topics_are_the_hand_labelled_episodes(topic_list):
    by_title = {t.title: t for t in topic_list.topics}
    assert list(by_title)[:3] == [
        "城关镇·幸福里小区逾期交房集中投诉",
        "青石镇·宏达建筑工程有限公司拖欠工资集中投诉",
        "城关镇·锦绣花园电梯故障集中投诉",
    ]
    for topic, label in zip(topic_list.topics[:3], ["xingfuli", "hongda", "jinxiu"]):
        labels = {label_of(i) for i in topic.evidence_event_ids}
        assert labels == {label}, topic.title
    assert {label_of(i) for i in topic_list.topics[0].evidence_event_ids} == {"xingfuli"}
    assert len(topic_list.topics[0].evidence_event_ids) == 12
    assert len(topic_list.topics[1].evidence_event_ids) == 6  # "宏达建筑工地", "宏达建筑拖欠" included
    assert [t.rank for t in topic_list.topics] == list(range(1, len(topic_list.topics) + 1))
    # ordinary events of a group do not become topics of their own
    assert all(label_of(i) != "other" for t in topic_list.topics for i in t.evidence_event_ids)


def test_topic_fields(topic_list):
    top = topic_list.topics[0]
    assert (top.township_code, top.township_name, top.domain, top.domain_name) == (
        CHENGGUAN, "城关镇", "housing_construction", "住房建设")
    assert (top.level, top.score, top.lead_department) == ("orange", 82.0, "住建局")
    assert top.monthly_events == [{"month": "2025-03", "events": 1}, {"month": "2025-04", "events": 2},
                                  {"month": "2025-05", "events": 3}, {"month": "2025-06", "events": 12}]
    assert top.trend == "rising"
    assert top.sources == {"hotline_12345": 9, "grid": 2, "police_110": 1}
    assert top.signals["gathering"] == 4
    assert top.repeat_callers == 1 and top.callers == 8  # c1 called three times
    # the topic's own reasons; the township × domain's once, apart
    assert top.reasons[0] == "本月12件，前3个月月均2.0件"
    assert top.region_reasons == ["本月20件，为预期的3.3倍"]
    assert any(r.startswith("含预警信号：聚集4件") for r in top.reasons)
    assert top.strength["count"] > 2 and top.strength["signals"] > 2 and top.list_name == "study"
    assert len(top.excerpts) == 3
    assert len({e["source"] for e in top.excerpts}) == 3  # one per feed when the feeds allow
    assert all(len(e["text"]) <= model.TopicParams().excerpt_chars for e in top.excerpts)
    doc = top.as_json()
    assert doc["region"] == {"code": CHENGGUAN, "name": "城关镇"}
    assert doc["status"] == "new" and doc["evidence_event_ids"] == top.evidence_event_ids


def test_status_against_last_month(builder, topic_list):
    previous = {"month": "2025-05", "topics": [
        {**topic_list.topics[0].as_json(), "topic_id": "xfl-may", "events": 4, "rank": 2,
         "title": "城关镇·幸福里小区交房问题"},
        {**topic_list.topics[2].as_json(), "topic_id": "jx-may", "events": 5, "rank": 1},
        {"topic_id": "dfc-may", "rank": 3, "title": "青石镇·东风村征地补偿集中投诉", "domain": "land_demolition",
         "region": {"code": QINGSHI, "name": "青石镇"}, "subject": "东风村", "keywords": ["征地补偿"], "events": 9},
        {"topic_id": "hx-may", "rank": 4, "title": "青石镇·红星村拆迁集中投诉", "domain": "land_demolition",
         "region": {"code": QINGSHI, "name": "青石镇"}, "subject": "红星村", "keywords": ["拆迁"], "events": 7},
    ]}
    events = month_events() + [{**month_events()[0], "event_id": "grid:dfc", "township_code": QINGSHI,
                                "domain": "land_demolition", "text": "东风村还有两户对征地补偿标准有意见"}]
    result = model.build_topics(events, month_scores(), history_events(), previous, builder=builder, month=MONTH)
    status = {t.topic_id: t.status for t in result.topics}
    assert status["xfl-may"] == "rising"  # 4 → 12, id carried over
    assert status["jx-may"] == "continuing"  # 5 → 5
    assert next(t for t in result.topics if t.topic_id == "xfl-may").previous == {
        "rank": 2, "title": "城关镇·幸福里小区交房问题", "events": 4}
    closed = {c["topic_id"]: c["status"] for c in result.closed}
    assert closed == {"dfc-may": "quiet", "hx-may": "resolved"}
    assert sum(1 for t in result.topics if t.status == "new") == len(result.topics) - 2


def test_easing_when_a_topic_shrinks(builder, topic_list):
    previous = [{**topic_list.topics[0].as_json(), "topic_id": "xfl", "events": 30}]
    result = model.build_topics(month_events(), month_scores(), history_events(), previous, builder=builder,
                                month=MONTH)
    assert result.topics[0].status == "easing"


def test_study_and_watch_lists():
    """Topics at study priority come first (研判选题, at most max_study), the next at watch priority
    follow (观察清单, at most max_watch); the rest are not listed."""
    params = model.TopicParams(max_study=2, max_watch=1)
    result = model.build_topics(month_events(), month_scores(), history_events(), gazetteer=str(GAZETTEER),
                                month=MONTH, params=params)
    assert [(t.list_name, t.rank) for t in result.topics] == [("study", 1), ("study", 2), ("watch", 3)]
    assert result.topics[2].title == "城关镇·锦绣花园电梯故障集中投诉"  # a study-grade topic past the cap waits
    assert all(t.priority >= params.watch_priority for t in result.topics)
    listed = model.build_topics(month_events(), month_scores(), history_events(), gazetteer=str(GAZETTEER),
                                month=MONTH, params=model.TopicParams(study_priority=101))
    assert listed.topics and {t.list_name for t in listed.topics} == {"watch"}


def test_large_groups_use_linear_memory_clustering():
    builder = model.TopicBuilder(str(GAZETTEER), params=model.TopicParams(max_agglomerative=4))
    result = model.build_topics(month_events(), month_scores(), history_events(), builder=builder, month=MONTH)
    top = result.topics[0]
    assert top.title == "城关镇·幸福里小区逾期交房集中投诉"
    assert {label_of(i) for i in top.evidence_event_ids} == {"xingfuli"} and top.events >= 10


# -- where the history begins -------------------------------------------------------------------

DAILY = 40  # the county's events a day in the cases below, most of them of no domain


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def _calls(days, per_day: int) -> list[dict]:
    """``per_day`` calls of no domain on each of ``days``: the feeds' daily volume, which no topic holds."""
    return [{"event_id": f"hotline_12345:v{day:%m%d}-{i}", "source": "hotline_12345",
             "reported_at": dt.datetime.combine(day, dt.time(8 + i % 12), tzinfo=TZ), "township_code": CHENGGUAN,
             "village_code": None, "domain": "none", "text": "咨询社保缴费办法", "signals": [], "caller_key": None,
             "incident_id": None} for day in days for i in range(per_day)]


JUNE = _days(dt.date(2025, 6, 1), dt.date(2025, 6, 30))


def _first_run() -> tuple[list, list]:
    """A county's first month as its files come: June's events and a few late records of the months before
    (the fixture's history, one on a day: some 2 % of a day's), thickening on 31 May to a sixth of a day."""
    eve = dt.datetime(2025, 5, 31, 21, tzinfo=TZ)
    late = [{**e, "event_id": f"{e['event_id']}-late", "reported_at": eve} for e in history_events()[3:4]]
    return month_events() + _calls(JUNE, DAILY), history_events() + late + _calls([eve.date()], DAILY // 6)


def _history_claims(topics) -> list[str]:
    return [r for t in topics for r in t.reasons if re.search(r"前\d+个月", r)]


def test_history_begins_where_the_feeds_cover_most_of_a_month():
    # the hand-written fixture: a few events a day, every day with records a usual one
    daily = model.records_per_day(month_events()) + model.records_per_day(history_events())
    assert model.history_start(daily, MONTH) == "2025-03-05"
    # a first run's late records: a sixth of a day on the month's eve covers no month before
    events, history = _first_run()
    assert model.history_start(model.records_per_day(events) + model.records_per_day(history), MONTH) == "2025-06-01"
    assert model.covered_from(dt.date(2025, 3, 16)) == "2025-03-16"  # half of March and more
    assert model.covered_from(dt.date(2025, 3, 17)) == "2025-04-01"


def test_a_first_runs_late_records_are_no_history(builder):
    events, history = _first_run()
    result = model.build_topics(events, month_scores(), history, builder=builder, month=MONTH)
    by_title = {t.title: t for t in result.topics}
    xingfuli = by_title["城关镇·幸福里小区逾期交房集中投诉"]
    assert xingfuli.reasons[0] == "本月12件（此前月份尚无数据）"
    assert _history_claims(result.topics) == []
    # months before the feeds' coverage have no count, not a count of none
    assert [m["events"] for m in xingfuli.monthly_events] == [None, None, None, 12] and xingfuli.trend == "unknown"


def test_a_real_history_is_history_from_where_the_feeds_cover_it(builder, topic_list):
    events = month_events() + _calls(JUNE, DAILY)
    # the feeds cover the three months before: all of the fixture's history counts, as without the volume
    full = model.build_topics(events, month_scores(), history_events() + _calls(_days(dt.date(2025, 3, 1),
                                                                                          dt.date(2025, 5, 31)), DAILY),
                              builder=builder, month=MONTH)
    assert [(t.topic_id, t.rank, t.title, t.reasons, t.monthly_events) for t in full.topics] == [
        (t.topic_id, t.rank, t.title, t.reasons, t.monthly_events) for t in topic_list.topics]
    # a warehouse begun in April: March's one record is a late one of its first month's files
    april = model.build_topics(events, month_scores(), history_events() + _calls(_days(dt.date(2025, 4, 1),
                                                                                           dt.date(2025, 5, 31)), DAILY),
                               builder=builder, month=MONTH)
    xingfuli = next(t for t in april.topics if t.title == "城关镇·幸福里小区逾期交房集中投诉")
    assert xingfuli.reasons[0] == "本月12件，前2个月月均2.5件"
    assert [m["events"] for m in xingfuli.monthly_events] == [None, 2, 3, 12]  # March: not covered


@pytest.mark.parametrize("first_run", [False, True], ids=["history", "first run"])
def test_beam_transform_matches_in_process_build(topic_list, first_run):
    previous = [{**topic_list.topics[0].as_json(), "topic_id": "xfl-may", "events": 4},
                {"topic_id": "gone", "rank": 9, "title": "青石镇·红星村拆迁", "domain": "land_demolition",
                 "region": {"code": QINGSHI}, "subject": "红星村", "keywords": []}]
    events, history = _first_run() if first_run else (month_events(), history_events())
    expected = model.build_topics(events, month_scores(), history, previous, gazetteer=str(GAZETTEER), month=MONTH)

    def check(lists):
        assert len(lists) == 1
        got = lists[0]
        assert [(t.rank, t.title, t.status, t.topic_id, t.evidence_event_ids, t.monthly_events, t.reasons)
                for t in got.topics] == [
            (t.rank, t.title, t.status, t.topic_id, t.evidence_event_ids, t.monthly_events, t.reasons)
            for t in expected.topics]
        # presented on the workers after the county-wide cut, as in one process
        assert [(t.keywords, t.excerpts) for t in got.topics] == [(t.keywords, t.excerpts) for t in expected.topics]
        assert all(t.keywords and t.excerpts for t in got.topics)
        assert got.closed == expected.closed and got.closed[0]["status"] == "resolved"
        # the late records of a first run are no history in either
        assert bool(_history_claims(got.topics)) != first_run

    with beam.Pipeline(options=beam_options([])) as p:
        inputs = {
            "events": p | "Events" >> beam.Create(events),
            "history": p | "History" >> beam.Create(history),
            "scores": p | "Scores" >> beam.Create(month_scores() + [score_row(CHENGGUAN, "housing_construction",
                                                                              "2025-05", 5, 4, 40, "blue")]),
        }
        result = inputs | BuildTopics(MONTH, {"topics": previous}, read_gazetteer_rows(str(GAZETTEER)))
        assert_that(result, check)


def test_events_from_a_dataframe(builder):
    import pandas as pd

    frame = pd.DataFrame(month_events())
    frame["village_code"] = float("nan")
    result = model.build_topics(frame, pd.DataFrame(month_scores()), pd.DataFrame(history_events()),
                                builder=builder)
    assert result.month == MONTH
    assert result.topics[0].title == "城关镇·幸福里小区逾期交房集中投诉"


# -- title rules, on hand-written events -------------------------------------------------------

def _events(township, domain, month, texts, source="police_110", signals=()):
    year, mon = (int(p) for p in month.split("-"))
    return [{"event_id": f"{source}:{domain}-{month}-{i}", "source": source, "township_code": township,
             "village_code": None, "domain": domain, "text": text, "signals": list(signals),
             "caller_key": None, "incident_id": None,
             "reported_at": f"{year:04d}-{mon:02d}-{1 + i % 27:02d}T10:00:00+08:00"} for i, text in enumerate(texts)]


QUARRELS = ["和老公吵架，他喝了酒砸东西", "丈夫经常打人，这次把脸打肿了", "夫妻两个因为孩子上学的事吵得很厉害",
            "儿媳和婆婆吵起来了，双方不让", "妻子要离婚，男方不同意，在家里闹", "报警人称老婆回娘家不回来，双方家人吵架"]


@pytest.mark.parametrize("domain, text, phrase", [
    ("environment_health", "谭庄村养猪场污水直排到沟里，臭气熏天", "养殖污染"),
    ("civil_dispute", "和老公吵架，他喝了酒砸东西", "婚姻家庭纠纷"),
    ("civil_dispute", "邻居盖房占了我家宅基地", "宅基地纠纷"),
    ("housing_construction", "房子延期交付快半年了，开发商没有说法", "逾期交房"),
    ("labor_wage", "包工头跑了，二十多个人的工钱没结", "拖欠工资"),
    ("public_order", "小区门口有人喝得烂醉", None),
    ("public_order", "我家电动车昨晚在楼下被盗了", "盗窃"),
    ("public_order", "停在路边的车玻璃被砸了，包被拿走", "盗窃"),
    ("public_order", "两伙人在烧烤店门口打起来了", "打架斗殴"),
])
def test_grievance_phrases_say_what_is_wrong(builder, domain, text, phrase):
    assert builder.grievances.phrase(domain, text) == phrase


# terms that overlap, hold one another and share starts, each of its own phrase: which comes first
# in the lexicon's order is what the text's phrase says
_TERMS = ["欠薪", "欠薪款", "薪款", "款", "拖欠", "拖欠工资", "工资", "资", "欠"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TERMS), min_size=1, max_size=9, unique=True),
       st.text(alphabet="拖欠薪款工资不X", max_size=14))
def test_a_texts_grievance_is_the_first_term_it_holds_longest_first(terms, text):
    lexicon = {"grievances": {"labor_wage": [{"phrase": f"P{i}", "terms": [term]} for i, term in enumerate(terms)]}}
    vocabulary = model.GrievanceVocabulary(lexicon)
    in_order = sorted(((-len(term), i, term) for i, term in enumerate(terms)))
    expected = next((f"P{i}" for _, i, term in in_order if term in text), None)
    assert vocabulary.phrase("labor_wage", text) == expected
    assert vocabulary.phrase("public_order", text) is None


@pytest.mark.parametrize("text", ["从上周开始路边有人乱倒垃圾", "一辆大货车把路边护栏撞坏了", "我们小区门口天天堵车",
                                  "丈夫在马路上打人", "最近一个多月村里有人焚烧秸秆"])
def test_time_words_people_and_generic_places_are_no_subjects(builder, text):
    assert model.canonical_subjects([builder.finder.mentions(text)]) == [[]]


def test_scattered_quarrels_make_one_topic_named_by_their_kind(builder):
    history = [e for m in ("2025-03", "2025-04", "2025-05") for e in _events(CHENGGUAN, "civil_dispute", m, QUARRELS * 3)]
    month = _events(CHENGGUAN, "civil_dispute", MONTH, QUARRELS * 3 + ["借给邻居两万块钱，一直不还", "邻居借钱不还还骂人",
                                                                       "借条写得清楚，对方就是赖着不还钱"])
    scores = [score_row(CHENGGUAN, "civil_dispute", MONTH, 21, 18, 55, "yellow")]
    result = model.build_topics(month, scores, history, builder=builder, month=MONTH)
    titles = [t.title for t in result.topics]
    # a new kind of matter is watched; the big but normal quarrels are not listed at all
    assert titles == ["城关镇·债务纠纷警情多发"] and result.topics[0].list_name == "watch"
    quiet = model.TopicBuilder(str(GAZETTEER), params=model.TopicParams(watch_priority=0))
    groups = quiet.group_topics((CHENGGUAN, "civil_dispute"), month, history, scores[0], MONTH)
    for word in builder.lexicon["actor_terms"]:
        assert all(word not in t.title.split("·")[1] for t in groups), word
    quarrels = next(t for t in groups if t.phrase == "婚姻家庭纠纷")
    assert quarrels.title == "城关镇·婚姻家庭纠纷警情多发"
    assert quarrels.events == 18 and [m["events"] for m in quarrels.monthly_events] == [18, 18, 18, 18]
    assert quarrels.trend == "flat" and quarrels.priority < 5


def test_a_named_company_surging_outranks_a_big_normal_series(builder):
    history = [e for m in ("2025-03", "2025-04", "2025-05") for e in _events(CHENGGUAN, "civil_dispute", m, QUARRELS * 5)]
    quarrels = _events(CHENGGUAN, "civil_dispute", MONTH, QUARRELS * 6)
    wages = _events(QINGSHI, "labor_wage", MONTH, [
        "瑞丰房地产开发有限公司欠我们二十几个工人的工资，再不给就去找电视台",
        "在瑞丰房地产开发有限公司的工地干了大半年，工钱一分没拿到",
        "瑞丰房地产开发有限公司拖欠的工资还没结，工人们拉横幅讨薪"], source="hotline_12345",
        signals=["gathering"])
    scores = [score_row(CHENGGUAN, "civil_dispute", MONTH, 36, 30, 60, "yellow"),
              score_row(QINGSHI, "labor_wage", MONTH, 3, 2, 45, "blue")]
    result = model.build_topics(quarrels + wages, scores, history, builder=builder, month=MONTH)
    top = result.topics[0]
    assert top.title == "青石镇·瑞丰房地产开发有限公司拖欠工资集中投诉"
    assert (top.subject, top.subject_kind, top.phrase) == ("瑞丰房地产开发有限公司", "company", "拖欠工资")
    assert top.list_name == "study"
    assert all(t.phrase != "婚姻家庭纠纷" for t in result.topics)  # 36 against 30 a month: not listed


def test_unnamed_clusters_take_a_shared_characteristic_noun_or_none(builder):
    background = ["路灯坏了好几天", "井盖丢了", "有人占道经营"] * 4
    texts = ["说实话，小区门口共享单车乱停乱放", "共享单车堆在人行道上，说实话走不了人", "麻烦管一下共享单车"]
    assert builder.shared_noun(texts, background + texts) in {"共享单车", "单车"}
    # fillers that every text of the group uses say nothing about a cluster
    assert builder.shared_noun(["说实话，情况比较急", "说实话，情况比较急，麻烦你们"], background) is None


# last month's topic to study on 锦绣花园 (41 this month): still followed under a watch floor of 50
_FOLLOWED = [{"topic_id": "jinxiu", "rank": 1, "list": "study", "title": "城关镇·锦绣花园电梯故障集中投诉",
              "region": {"code": CHENGGUAN, "name": "城关镇"}, "domain": "housing_construction",
              "subject": "锦绣花园", "phrase": "电梯故障", "events": 4}]


@pytest.mark.parametrize("params, previous", [
    # a short watch list, so that some of the fixture's topics are weighed but not listed
    (model.TopicParams(max_study=1, max_watch=1, watch_priority=0), []),
    # no watch list but last month's topic followed below its floor
    (model.TopicParams(max_study=1, max_watch=0, watch_priority=50), _FOLLOWED),
])
def test_building_and_presenting_only_the_listed_topics_lists_the_same_topics(params, previous):
    builder = model.TopicBuilder(str(GAZETTEER), params=params)
    got = model.build_topics(month_events(), month_scores(), history_events(), previous, builder=builder, month=MONTH)

    # every topic presented before the cut, as the list was built before it was cut
    events, history = model.records(month_events()), model.records(history_events())
    regions = model.region_scores(month_scores(), MONTH)
    counts = model.domain_counts(builder.grievances, events + history)
    everything = []
    for key in sorted({model.group_key(e) for e in events if model.group_key(e)}):
        mine = [e for e in events if model.group_key(e) == key]
        past = [e for e in history if model.group_key(e) == key]
        drafts = builder.group_topics(key, mine, past, regions.get(key), MONTH, counts, previous)
        background = builder.background(mine, past, MONTH)
        everything.extend(builder.present(t, background) for t in drafts)
    expected = model.finalise(MONTH, everything, previous, params=params)

    assert len(everything) > len(expected.topics) >= 2
    assert [t.as_json() for t in got.topics] == [t.as_json() for t in expected.topics]
    assert [t.followed for t in got.topics] == [t.followed for t in expected.topics] == [False, bool(previous)]


def test_records_from_a_warehouse_frame_equal_those_from_event_dicts():
    import numpy as np
    import pandas as pd

    events = month_events() + history_events()
    # an event reported at 01:00 county time on 1 July is July's, though June 30th in UTC
    edge = {**events[0], "event_id": "hotline_12345:edge", "reported_at": dt.datetime(2025, 6, 30, 17, 0, 5,
                                                                                       tzinfo=dt.timezone.utc),
            "signals": ["media", "gathering", "media"], "incident_id": None, "caller_key": None, "village_code": None}
    events.append(edge)
    frame = pd.DataFrame(events)
    # as the warehouse hands them over: UTC-stored times, signals as arrays, missing codes as NaN
    frame["reported_at"] = pd.to_datetime([e["reported_at"] for e in events], utc=True).tz_convert("UTC")
    frame["signals"] = [np.array(e["signals"], dtype=object) for e in events]
    frame["village_code"] = frame["village_code"].astype(object).where(frame["village_code"].notna(), np.nan)
    got = model.records(frame)
    assert got == model.records(events)
    assert model.records_per_day(frame) == model.records_per_day(events)
    assert model.records_per_day(frame)["2025-07-01"] == 1  # the edge event, on its county day
    last = got[-1]
    assert (last["month"], last["reported_at"], last["signals"]) == ("2025-07", "2025-07-01T01:00:05+08:00",
                                                                      ["gathering", "media"])
    assert [e["event_id"] for e in model.topic_records(frame)] == [
        e["event_id"] for e in model.records(events) if model.group_key(e)]
