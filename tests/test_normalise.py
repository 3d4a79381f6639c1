import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.normalise import TextNormaliser, clean_text, half_width, parse_time

SH = ZoneInfo("Asia/Shanghai")
EXPECTED = dt.datetime(2026, 10, 3, 14, 5, tzinfo=SH)


@pytest.mark.parametrize(
    "value",
    [
        "2026-10-03 14:05:00",
        "2026/10/3 14:05",
        "2026年10月3日14时05分",
        "2026年10月3日 14:05",
        "2026年10月3日14点05分00秒",
        "20261003140500",
        "2026-10-03T14:05:00+08:00",
        "2026-10-03T06:05:00Z",
        "2026-10-03T06:05:00.000Z",
        "２０２６－１０－０３　１４：０５",
        "2026/10/3 下午2:05",
        " 2026.10.03 14:05:00 ",
        1791007500,
        1791007500000,
        "1791007500000",
        46298.586805555555,
        dt.datetime(2026, 10, 3, 14, 5),
        dt.datetime(2026, 10, 3, 6, 5, tzinfo=dt.timezone.utc),
    ],
)
def test_department_time_forms_parse_to_shanghai(value):
    parsed = parse_time(value)
    assert parsed == EXPECTED
    assert parsed.utcoffset() == dt.timedelta(hours=8)


def test_date_only_is_local_midnight():
    assert parse_time("2026-10-03") == dt.datetime(2026, 10, 3, tzinfo=SH)
    assert parse_time(dt.date(2026, 10, 3)) == dt.datetime(2026, 10, 3, tzinfo=SH)


@pytest.mark.parametrize("value", ["2026-13-45", "2026-02-30 10:00", "2026-10-03 25:00", "昨天下午", "", None, True, "12", 3.5])
def test_unparseable_times_are_none(value):
    assert parse_time(value) is None


_times = st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)
_FORMATS = [
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y年%m月%d日%H时%M分%S秒",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y-%m-%dT%H:%M:%S+08:00",
]


@given(_times, st.sampled_from(_FORMATS))
def test_every_written_form_round_trips(moment, fmt):
    assert parse_time(moment.strftime(fmt)) == moment.replace(tzinfo=SH)


@given(_times)
def test_epoch_and_excel_serial_round_trip(moment):
    local = moment.replace(tzinfo=SH)
    assert parse_time(int(local.timestamp())) == local
    assert parse_time(int(local.timestamp()) * 1000) == local
    serial = (moment - dt.datetime(1899, 12, 30)) / dt.timedelta(days=1)
    assert parse_time(serial) == local


@given(st.one_of(st.text(max_size=40), st.floats(allow_nan=True), st.integers()))
def test_parse_time_never_raises(value):
    result = parse_time(value)
    assert result is None or result.tzinfo is not None


def test_half_width_keeps_chinese_punctuation():
    assert half_width("ＡＢＣ１２３＃＠　门牌，（东）：是否？") == "ABC123#@ 门牌，（东）：是否？"


@given(st.text(max_size=80))
def test_clean_text_is_trimmed_collapsed_and_idempotent(text):
    cleaned = clean_text(text)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert not any(0xFF10 <= ord(c) <= 0xFF19 or 0xFF21 <= ord(c) <= 0xFF3A or 0xFF41 <= ord(c) <= 0xFF5A for c in cleaned)
    assert clean_text(cleaned) == cleaned


_WHITESPACE_RUN = re.compile(r"\s+")


@given(st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u3000\u200bab街"), max_size=30))
def test_clean_text_collapses_whitespace_as_the_pattern_would(text):
    # clean_text splits instead of substituting ``\s+``: both mean str.isspace, at the ends too
    folded = "".join(c if c.isprintable() or c.isspace() else " " for c in half_width(text))
    assert clean_text(text) == _WHITESPACE_RUN.sub(" ", folded).strip()


@pytest.fixture(scope="module")
def normalise():
    return TextNormaliser()


def test_traditional_becomes_simplified(normalise):
    assert normalise("報警人稱樓上鄰居長期噪音擾民　 ") == "报警人称楼上邻居长期噪音扰民"
    assert normalise("電動車被盜，請儘快處理") == "电动车被盗，请尽快处理"


def test_simplified_text_is_unchanged(normalise):
    text = "楼上住户夜间噪音扰民，已多次协调未果。"
    assert normalise(text) == text


_NORMALISER = TextNormaliser()


@settings(max_examples=50)
@given(st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x4E80) | st.sampled_from(" ，。１Ａ"), max_size=40))
def test_normalised_text_is_stable(text):
    once = _NORMALISER(text)
    assert _NORMALISER(once) == once


_normalise_pieces = st.sampled_from(["樓上", "頭", "髮", "型", "臺灣", "ＡＢＣ", "　", "\u200b", "\x00", "\n", " ", "e\u0301", "\u0301",
                                     "電話13812345678", "abc", "发", "後", "乾隆"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_normalise_pieces | st.text(max_size=6), max_size=12).map("".join), max_size=10))
def test_a_batch_normalises_each_text_as_it_would_alone(texts):
    # long texts go to OpenCC as one string: a phrase or a composition must not span two texts
    normaliser = TextNormaliser()
    assert normaliser.many(texts) == [TextNormaliser()(text) for text in texts]
