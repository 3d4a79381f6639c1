"""Escalation signals from schemas/signals.yaml, with cheap negation and head counts."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from pipelines.signals import SignalLexicon, chinese_number, signal_metrics


@pytest.fixture(scope="module")
def lexicon() -> SignalLexicon:
    return SignalLexicon.from_schema()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("三十多名工人在项目部门口拉横幅讨薪", ["gathering", "many_people"]),
        ("业主们在售楼处门口静坐", ["gathering"]),
        ("当事人站在楼顶扬言要跳楼", ["extreme_act"]),
        ("称不给钱就喝農藥", ["extreme_act"]),
        ("称要找记者曝光此事", ["media_exposure"]),
        ("扬言要发抖音让大家评评理", ["extreme_act", "media_exposure"]),
        ("一群人围在村委会", ["many_people"]),
        ("约50人在镇政府反映问题", ["many_people"]),
        ("二十余户村民反映补偿问题", ["many_people"]),
        ("咨询社保怎么缴费", []),
    ],
)
def test_each_signal(lexicon, text, expected):
    assert lexicon.extract(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("现场没有聚集", []),
        ("未发现人员聚集，已劝离", []),
        ("无群众围堵", []),
        ("当事人情绪稳定，没有扬言", []),
        ("并未找媒体曝光", []),
        # negation words that do not govern the term leave it standing
        ("讨薪未果后聚集在公司门口", ["gathering"]),
        ("民警劝其不要跳楼", ["extreme_act"]),
        ("没有拿到工资，工人在门口聚集", ["gathering"]),
    ],
)
def test_negation(lexicon, text, expected):
    assert lexicon.extract(text) == expected


def test_people_involved_threshold_comes_from_the_schema(lexicon):
    threshold = next(s["people_involved_at_least"] for s in schemas.signals()["signals"] if "people_involved_at_least" in s)
    assert lexicon.extract("两家因地界争吵", people_involved=threshold) == ["many_people"]
    assert lexicon.extract("两家因地界争吵", people_involved=threshold - 1) == []
    assert lexicon.extract(f"{threshold - 1}名工人讨薪") == []
    assert lexicon.extract(f"{threshold}名工人讨薪") == ["many_people"]


def test_a_county_lexicon_replaces_the_bundled_one():
    spec = {"signals": [{"code": "weapon", "terms": ["持刀", "拿刀"]}]}
    custom = SignalLexicon.from_schema(spec)
    assert custom.extract("有人持刀在街上") == ["weapon"]
    assert custom.extract("约100人聚集") == []


@pytest.mark.parametrize("token, value", [("30", 30), ("三十", 30), ("二十五", 25), ("十二", 12), ("一百", 100), ("两百", 200), ("几", None)])
def test_chinese_number(token, value):
    assert chinese_number(token) == value


PIECES = ["聚集", "没有聚集", "扬言", "跳楼", "曝光", "三十人", "咨询", "路灯", "未发现", "，", "。", "5名", "記者", ""]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=6).map("".join), max_size=12),
       st.data())
def test_batch_equals_one_by_one(texts, data):
    lexicon = SignalLexicon.from_schema()
    people = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=len(texts), max_size=len(texts)))
    assert lexicon.extract_batch(texts, people) == [lexicon.extract(t, p) for t, p in zip(texts, people)]


def test_durations_and_amounts_are_no_head_count(lexicon):
    assert lexicon.extract("拖欠12个月工资共计30000元") == []
    assert lexicon.extract("20个工人在门口") == ["many_people"]


def test_negation_is_measured_against_the_same_lexicon_without_it(lexicon):
    texts = ["现场没有聚集", "工人在门口聚集", "未造成人员聚集"]
    truth = [[], ["gathering"], []]
    with_negation = signal_metrics(lexicon, texts, truth)
    without = signal_metrics(lexicon.without_negation(), texts, truth)
    assert with_negation["gathering"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert without["gathering"]["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert (with_negation["exact"], without["exact"]) == (1.0, pytest.approx(1 / 3, abs=1e-4))
