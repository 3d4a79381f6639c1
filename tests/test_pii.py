import hashlib
import hmac
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipelines import pii

KEY = b"k"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("报警人张三称其电话13812345678被盗", "报警人[姓名]称其电话[手机号]被盗"),
        ("身份证号110101199003071234，卡号6222 0212 3456 7890 123", "身份证号[身份证号]，卡号[银行卡号]"),
        ("老身份证340123900101123丢失", "老身份证[身份证号]丢失"),
        ("身份证11010119900307123X", "身份证[身份证号]"),
        ("联系电话：0551-62345678，车牌苏E·D12345", "联系电话：[固定电话]，车牌[车牌号]"),
        ("京A12345停在门口，皖AD12345充电", "[车牌号]停在门口，[车牌号]充电"),
        ("手机+86 138-1234-5678", "手机[手机号]"),
        ("我叫欧阳娜娜，本人于昨日反映", "我叫[姓名]，本人于昨日反映"),
        ("姓名：李明，来电人王芳反映", "姓名：[姓名]，来电人[姓名]反映"),
        ("本人反映噪音问题，电话6234567", "本人反映噪音问题，电话[电话]"),
        ("联系人员到场，当事人双方和解", "联系人员到场，当事人双方和解"),
        ("工单20261003140500已转办，涉及3户", "工单20261003140500已转办，涉及3户"),
    ],
)
def test_mask_examples(text, expected):
    assert pii.mask(text) == expected


def _digits(text):
    return re.sub(r"\D", "", text)


_filler = st.text(alphabet="的了在是反映噪音楼上邻居小区门口，。、 请尽快处理村组号栋", max_size=12)
_mobile = st.builds(lambda p, rest: f"1{p}{rest}", st.sampled_from("3456789"), st.text("0123456789", min_size=9, max_size=9))


@st.composite
def _separated_mobile(draw):
    number = draw(_mobile)
    sep = draw(st.sampled_from(["", " ", "-"]))
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "86-"]))
    return prefix + number[:3] + sep + number[3:7] + sep + number[7:], number


@st.composite
def _id_number(draw):
    area = draw(st.integers(110000, 659999))
    year = draw(st.integers(1930, 2020))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    seq = draw(st.integers(0, 999))
    check = draw(st.sampled_from("0123456789X"))
    return f"{area}{year}{month:02d}{day:02d}{seq:03d}{check}"


@given(_filler, _separated_mobile(), _filler)
def test_generated_mobiles_never_survive(before, mobile, after):
    written, number = mobile
    masked = pii.mask(before + written + after)
    assert number not in _digits(masked)
    assert "[手机号]" in masked


@given(_filler, _id_number(), _filler)
def test_generated_id_numbers_never_survive(before, id_number, after):
    masked = pii.mask(before + id_number + after)
    assert id_number[:17] not in _digits(masked)
    assert "[身份证号]" in masked


@given(_filler, st.text("0123456789", min_size=16, max_size=19), _filler)
def test_long_digit_runs_never_survive(before, card, after):
    masked = pii.mask(before + card + after)
    assert card not in masked


@given(_filler, st.sampled_from(["0551", "010", "021", "0755"]), st.text("0123456789", min_size=7, max_size=8), _filler)
def test_landlines_never_survive(before, area, number, after):
    masked = pii.mask(f"{before}{area}-{number}{after}")
    assert number not in masked


def test_caller_key_is_the_same_for_every_spelling_of_one_phone():
    keys = {pii.caller_key(p, KEY) for p in ["13812345678", "+86 138-1234-5678", "0086 13812345678", 13812345678.0]}
    assert len(keys) == 1
    key = keys.pop()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert "13812345678" not in key
    assert pii.caller_key("13812345678", b"other") != key


@pytest.mark.parametrize("value", [None, "", "匿名", "110", "-"])
def test_no_number_no_caller_key(value):
    assert pii.caller_key(value, KEY) is None


def test_key_from_file_or_environment(tmp_path):
    key_file = tmp_path / "k"
    key_file.write_text("s3cret\n")
    assert pii.load_key(key_file, environ={}) == b"s3cret"
    assert pii.load_key(None, environ={pii.KEY_ENV: "from-env"}) == b"from-env"


def test_no_key_is_a_clear_error(tmp_path):
    with pytest.raises(pii.MissingKeyError, match="RISKWATCH_HMAC_KEY"):
        pii.load_key(None, environ={})
    with pytest.raises(pii.MissingKeyError, match="does not exist"):
        pii.load_key(tmp_path / "missing.key", environ={})


def test_full_width_and_other_script_digits_are_the_same_caller():
    # full-width digits typed with a Chinese input method once crashed the caller key (non-ASCII digits)
    assert pii.normalise_phone("１３８１２３４５６７８") == "13812345678"
    assert pii.caller_key("＋８６ １３８-１２３４-５６７８", KEY) == pii.caller_key("13812345678", KEY)
    assert pii.normalise_phone("٠٥٥١١٢٣٤٥٦٧") == "05511234567"


@given(st.binary(max_size=100), st.text("0123456789０１２３４５６７８９ +-()", max_size=20))
def test_caller_key_is_hmac_sha256_of_the_digits(key, phone):
    digits = pii.normalise_phone(phone)
    expected = None if digits is None else hmac.new(key, digits.encode("ascii"), hashlib.sha256).hexdigest()
    assert pii.caller_key(phone, key) == expected


# Pieces that meet at a text's edge in a batch: digits, plate letters, name markers, separators.
_mask_pieces = st.sampled_from(["13812345678", "0551-62345678", "京", "A", "ABCDEF", "D12345", "报警人", "王", "张三",
                                "电话", "：", " ", "-", "号", "3", "（", "\x00", "我叫欧阳", "称", "Tel", "110101199003071234"])
_mask_texts = st.none() | st.lists(_mask_pieces | st.text(max_size=4), max_size=8).map("".join)


@example(["京ABCDEF停在门口", "电话13812345678"])
@example(["我叫", "欧阳娜娜", "电话138", "12345678"])
@given(st.lists(_mask_texts, max_size=12))
def test_a_batch_masks_each_text_as_it_would_alone(texts):
    # no match may run from one text into the next, and each text keeps its own digit test
    # (京ABCDEF is masked only in a text with a digit)
    assert pii.mask_many(texts) == [pii.mask(text) for text in texts]


@given(st.text(max_size=30) | st.lists(st.sampled_from(["1", "²", "①", "𝟙", "🄀", "一", "a", "𠀀", "٣"]), max_size=6).map("".join))
def test_the_digit_test_is_str_isdigit_per_character(text):
    # masking is skipped for texts without a digit: any script's, superscripts and circled ones count
    assert pii._has_digit(text) == any(c.isdigit() for c in text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("走访独居老人杜浩然，身体状况良好", "走访独居老人[姓名]，身体状况良好"),
        ("独居老人苏艳今年20岁，生活不能自理", "独居老人[姓名]今年20岁，生活不能自理"),
        ("青龙三村曹国强家老房子墙体开裂", "青龙三村[姓名]家老房子墙体开裂"),
        ("建设路社区肖秀兰多次到县里上访", "建设路社区[姓名]多次到县里上访"),
        ("肖秀兰报警称：被几个人围着打了", "[姓名]报警称：被几个人围着打了"),
        ("网格员张伟上报：河堤有裂缝", "网格员[姓名]上报：河堤有裂缝"),
        ("刘建军家的狗昨天咬人，欧阳娜娜来电反映", "[姓名]家的狗昨天咬人，[姓名]来电反映"),
        # words beginning with a surname's character, and names already in a public form
        ("老人向民警反映邻居占道，民警查看，民警张伟到场调解", "老人向民警反映邻居占道，民警查看，民警[姓名]到场调解"),
        ("村民安全意识差，社区高压线多次跳闸", "村民安全意识差，社区高压线多次跳闸"),
        ("王家庄村民反映张庄村委会不作为", "王家庄村民反映张庄村委会不作为"),
        ("梁先生来电反映，李某报警称邻居王大妈天天跳广场舞", "梁先生来电反映，李某报警称邻居王大妈天天跳广场舞"),
        ("老人家里没人，王家的狗咬人，小组成员反映高空抛物", "老人家里没人，王家的狗咬人，小组成员反映高空抛物"),
    ],
)
def test_names_without_a_marker_are_masked_where_a_report_puts_them(text, expected):
    assert pii.mask(text) == expected


_name = st.builds(lambda surname, given: surname + given,
                  st.sampled_from(["王", "李", "曹", "肖", "欧阳", "高", "文", "安", "向", "石", "常"]),
                  st.sampled_from(["国强", "秀兰", "浩然", "丽娟", "建军", "志强", "海生", "春梅", "桂英", "小红", "海燕",
                                   "德华", "晓东", "敏", "伟", "芳", "磊", "静", "勇"]))
_named = st.sampled_from(["走访独居老人{}，身体状况良好", "{}报警称被人打了", "郝庄村{}多次到县里上访",
                          "建设路社区{}家老房子开裂", "网格员{}上报：路灯坏了", "来电人{}反映噪音", "低保户{}，今年70岁",
                          "邻居占了{}家的宅基地", "刚才{}扬言要去北京", "郝庄村王强和{}两家因为排水吵架"])


@given(_filler, _named, _name)
def test_generated_names_in_a_reports_places_never_survive(before, template, name):
    text = before + "。" + template.format(name)
    assert name not in pii.mask(text)


@pytest.mark.parametrize(
    "text, names, expected",
    [
        ("王建国来电反映，王建国家门口积水", ("王建国",), "[姓名]来电反映，[姓名]家门口积水"),
        ("王女士称楼上漏水", ("王女士",), "[姓名]称楼上漏水"),
        ("匿名来电反映市民广场积水", ("匿名",), "匿名来电反映市民广场积水"),
        ("市民来电反映", ("市民",), "市民来电反映"),
        ("巡查发现wg00139辖区路灯坏了", ("wg00139",), "巡查发现wg00139辖区路灯坏了"),
        ("路灯坏了", (None,), "路灯坏了"),
    ],
)
def test_a_records_own_name_is_masked_in_its_texts(text, names, expected):
    assert pii.mask_names(text, names) == expected
