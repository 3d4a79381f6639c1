"""Monthly topics: subjects, clustering, titles, history, ranking and status against last month."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that
from hypothesis import given, settings
from hypothesis import strategies as st

from models import topics as model
from pipelines.options import beam_options
from pipelines.topics import BuildTopics
from pipelines.gazetteer import read_gazetteer_rows
from tests.topic_fixtures import (CHENGGUAN, GAZETTEER, MONTH, QINGSHI, history_events, label_of, month_events,
                                  month_scores, score_row)


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
        "城关镇·锦绣花园电梯集中投诉",
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
    assert top.reasons[0] == "本月20件，为预期的3.3倍"
    assert any(r.startswith("含预警信号：聚集4件") for r in top.reasons)
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


def test_groups_studied(topic_list):
    groups = model.select_groups(month_scores(), MONTH, model.TopicParams(top_n_groups=1))
    # blue and above always; the top-N by score only with a few events (land_demolition has 1)
    assert set(groups) == {(CHENGGUAN, "housing_construction"), (QINGSHI, "labor_wage")}
    groups = model.select_groups(month_scores(), MONTH, model.TopicParams(top_n_groups=3))
    assert (CHENGGUAN, "public_order") in groups and (QINGSHI, "land_demolition") not in groups
    assert model.select_groups(month_scores(), "2025-07") == {}


def test_large_groups_use_linear_memory_clustering():
    builder = model.TopicBuilder(str(GAZETTEER), params=model.TopicParams(max_agglomerative=4))
    result = model.build_topics(month_events(), month_scores(), history_events(), builder=builder, month=MONTH)
    top = result.topics[0]
    assert top.title == "城关镇·幸福里小区逾期交房集中投诉"
    assert {label_of(i) for i in top.evidence_event_ids} == {"xingfuli"} and top.events >= 10


def test_beam_transform_matches_in_process_build(topic_list):
    previous = [{**topic_list.topics[0].as_json(), "topic_id": "xfl-may", "events": 4},
                {"topic_id": "gone", "rank": 9, "title": "青石镇·红星村拆迁", "domain": "land_demolition",
                 "region": {"code": QINGSHI}, "subject": "红星村", "keywords": []}]
    expected = model.build_topics(month_events(), month_scores(), history_events(), previous,
                                  gazetteer=str(GAZETTEER), month=MONTH)

    def check(lists):
        assert len(lists) == 1
        got = lists[0]
        assert [(t.rank, t.title, t.status, t.topic_id, t.evidence_event_ids, t.monthly_events) for t in got.topics] == [
            (t.rank, t.title, t.status, t.topic_id, t.evidence_event_ids, t.monthly_events) for t in expected.topics]
        assert got.closed == expected.closed and got.closed[0]["status"] == "resolved"

    with beam.Pipeline(options=beam_options([])) as p:
        inputs = {
            "events": p | "Events" >> beam.Create(month_events()),
            "history": p | "History" >> beam.Create(history_events()),
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
