"""Personal data: the caller's phone as a keyed hash, and masking of free text.

Outside the quarantine no output may carry a phone number, ID number, bank card, plate or a
named person in clear. Masking runs on text already passed through ``normalise.clean_text``
(half-width digits), so the patterns only need ASCII digits.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
import unicodedata
from pathlib import Path

KEY_ENV = "RISKWATCH_HMAC_KEY"


class MissingKeyError(RuntimeError):
    """No HMAC key: the job must not run, or caller_key values would be unkeyed or random."""


def load_key(key_file: str | os.PathLike | None = None, environ=os.environ) -> bytes:
    """The HMAC key from ``--key-file`` (preferred) or the RISKWATCH_HMAC_KEY variable."""
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise MissingKeyError(f"HMAC key file {path} does not exist (create it with a long random secret).")
        key = path.read_bytes().strip()
        if not key:
            raise MissingKeyError(f"HMAC key file {path} is empty.")
        return key
    key = environ.get(KEY_ENV, "").strip()
    if key:
        return key.encode("utf-8")
    raise MissingKeyError(
        f"No HMAC key for hashing caller phones: set {KEY_ENV} or pass --key-file FILE "
        "(e.g. `python -c \"import secrets; print(secrets.token_hex(32))\" > riskwatch.key`). "
        "The same key must be used for every run, or repeat callers cannot be recognised."
    )


_NON_DIGIT_RE = re.compile(r"\D")
_COUNTRY_PREFIX_RE = re.compile(r"^(?:\+?0{0,2}86)(?=1[3-9]\d{9}$)")


def normalise_phone(value) -> str | None:
    """Digits of a phone number without +86/0086, separators or extension text; None if no number."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # XLSX stores numbers as floats: 13812345678.0
    text = str(value).strip()
    digits = _NON_DIGIT_RE.sub("", text if not text.startswith("+") else "+" + text[1:])
    if not digits.isascii():
        # full-width (１３９…) or other scripts' decimal digits: the same number as ASCII digits
        digits = "".join(str(unicodedata.decimal(c)) for c in digits)
    digits = _COUNTRY_PREFIX_RE.sub("", digits.lstrip("+"))
    # Fewer than 5 digits is not a callable number (匿名, 未知, 110 itself).
    return digits if len(digits) >= 5 else None


def caller_key(phone, key: bytes) -> str | None:
    """HMAC-SHA256 (hex) of the normalised phone: the same caller gets the same key across feeds."""
    digits = normalise_phone(phone)
    if digits is None:
        return None
    inner, outer = _hmac_sha256_pads(key)
    inner = inner.copy()
    inner.update(digits.encode("ascii"))
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


_SHA256_BLOCK = 64


@functools.lru_cache(maxsize=8)
def _hmac_sha256_pads(key: bytes):
    """SHA-256 after HMAC's inner and outer key blocks (RFC 2104): what ``hmac.new`` computes
    first for every message, computed once per key (hmac.new costs ~6 µs per phone, this ~1.7)."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


# Common surnames (single and double): a marker such as 本人 or 我叫 is only followed by a name
# when a surname comes next; otherwise "本人反映" would lose its verb. 于/和/时 are left out: after
# 本人 they are almost always words (本人于10月…), rarely surnames.
_DOUBLE_SURNAMES = "欧阳|司马|上官|诸葛|东方|皇甫|尉迟|公孙|慕容|长孙|宇文|司徒|夏侯|令狐|端木|西门|南宫"
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏"
    "吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱"
    "严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁"
    "尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳"
    "穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师仇栾"
    "隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
# Characters that end a name rather than continue it (verbs, particles, honorific nouns). 先生 and
# 同志 end it at their first character: 生 and 志 are common in given names (王志强, 张海生).
_NAME_STOP = "称说反映报到在于和与的了是来电投诉要求因等向被将把从对称讲诉道家住现今年岁男女先女士同某等及"
_NAME_MARKERS = (
    "报警人姓名|报警人|来电人姓名|来电人|诉求人|当事人|联系人|举报人|投诉人|求助人|反映人|受害人|"
    "嫌疑人|户主|业主|姓名|我叫|本人"
)

# One alternation, most specific first, so an 18-digit ID is never half-masked as a phone.
_ND = r"(?<![0-9A-Za-z])"  # not glued to a longer number/code on the left
_NDR = r"(?![0-9])"
_MASK_PATTERNS = [
    ("身份证号", _ND + r"[1-9]\d{5}[\s-]?(?:18|19|20)\d{2}[\s-]?(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[\s-]?\d{3}[\dXx]" + _NDR),
    ("身份证号", _ND + r"[1-9]\d{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}" + _NDR),
    ("银行卡号", _ND + r"\d{4}(?:[\s-]?\d{4}){3}(?:[\s-]?\d{1,3})?" + _NDR),
    ("银行卡号", _ND + r"\d{16,19}" + _NDR),
    ("手机号", _ND + r"(?:(?:\+|00)?86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}" + _NDR),
    ("固定电话", r"(?<![0-9])(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}[\s-]?)\d{7,8}(?:-\d{1,5})?" + _NDR),
    ("车牌号", r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-HJ-NP-Za-hj-np-z]"
              r"[\s·•.]?[A-HJ-NP-Za-hj-np-z0-9]{5,6}(?![A-Za-z0-9])"),
]
# The leading lookahead lets most positions fail on one character test instead of seven patterns.
_MASK_RE = re.compile(
    r"(?=[0-9(（+京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领])(?:"
    + "|".join(f"(?P<g{i}>{p})" for i, (_, p) in enumerate(_MASK_PATTERNS)) + ")"
)
_MASK_TOKENS = {f"g{i}": f"[{label}]" for i, (label, _) in enumerate(_MASK_PATTERNS)}
# A phone number after a phone marker, in any length a local number can have (no area code).
_MARKED_NUMBER_RE = re.compile(r"(电话|手机|联系方式|号码|tel|Tel|TEL)([:：\s是为]*)(\d[\d\s-]{5,}\d)")
_NAME = rf"(?:(?:{_DOUBLE_SURNAMES})[\u4e00-\u9fff]{{1,2}}|[{_SURNAMES}][^\W\d_{_NAME_STOP}A-Za-z]{{1,2}})"
# A name with no marker before it: nor a place's characters in it ("杜庄村", "丽景社区", "三点左右")
_PLACE_CHARS = "村社区组镇乡路街巷庄楼湾集岗圩屯营寨左右"
_BARE_NAME = (rf"(?:(?:{_DOUBLE_SURNAMES})[^\W\d_{_NAME_STOP}{_PLACE_CHARS}A-Za-z]{{1,2}}"
              rf"|[{_SURNAMES}][^\W\d_{_NAME_STOP}{_PLACE_CHARS}A-Za-z]{{1,2}})")
_NAME_RE = re.compile(
    rf"(?=[{''.join(sorted(set(m[0] for m in _NAME_MARKERS.split('|'))))}])({_NAME_MARKERS})([:：\s]*(?:是|为|叫|系)?[:：\s]*)"
    + _NAME
)
# Names without a marker, where a grid report or a police note puts them: after a person the text
# speaks of ("走访独居老人杜浩然，"), or opening a clause or following a village or community and
# followed by what that person did ("肖秀兰报警称", "青龙三村曹国强家老房子开裂", "建设路社区肖秀兰多次上访"),
# or anywhere as a household, one of a pair or who threatens ("占了陈敏家的宅基地", "王强和李明两家因为排水",
# "刚才周红扬言要去北京").
# Each context asks for what follows the name too, so that words beginning with a surname's
# character ("村民安全意识", "社区高压线多次跳闸") are seldom taken for names; a miss in the other
# direction would carry a name into every output.
_PERSON_NOUNS = ("独居老人|孤寡老人|空巢老人|留守老人|留守儿童|低保户|五保户|困难户|精神病人|刑满释放人员|社区矫正人员|吸毒人员"
                 "|工作人员|环卫工人|工人|包工头|老板|司机|保安|租户|房东|老师|医生|患者|网格员|民警|辅警|村民|居民|老人")
_AFTER_NAME = (r"(?=[，。,.、；;：:！!？?\s（(\x00]|$|今年|\d|多次|报警|来电|反映|称|说|家(?!庭|属|长|具|电|里|中|门|园|居|乐)|夫妇|一家|身体|因|与|等|被"
               r"|上报|巡查|走访|发现|入户|在|到|去|的|和|跟|扬言|两口子|夫妻|干活|拾金不昧)")
_ACTED = rf"(?=报警|来电|反映|称|说|多次|家(?!庭|属|长|具|电|里|中|门|人|园|居|乐)|今年\d|夫妇|夫妻|两口子|扬言|和[{_SURNAMES}])"
_NOT_NAMES = ("安全|高空|高压|高速|文明|明显|方面|常年|经常|成员|全部|全家|车辆|路边|路上|马路|白天|江边|万元|钱款|都是|管理"
              "|查看|查处|查获|查明|安抚|严重|严厉|及时"
              "|向(?:民警|警方|派出所|村|社区|镇|乡|县|街道|有关|相关|上级|领导|物业|单位|我|他|她|其)")
# Each pattern first tests one character (C-level, ~10 times faster than trying its alternatives at
# every position of a county month's texts).
_NAME_FIRST = "[" + _SURNAMES + "".join(sorted({d[0] for d in _DOUBLE_SURNAMES.split("|")})) + "]"
_PERSON_NAME_RE = re.compile(rf"(?=[{''.join(sorted({n[0] for n in _PERSON_NOUNS.split('|')}))}])({_PERSON_NOUNS})"
                             rf"(?!{_NOT_NAMES}){_BARE_NAME}{_AFTER_NAME}")
_ACTING_NAME_RE = re.compile(rf"(?={_NAME_FIRST})(?:^|(?<=[，。,.、；;：:！!？?\s\x00村组屯])|(?<=社区))(?!{_NOT_NAMES})"
                             rf"{_BARE_NAME}{_ACTED}")
_HOUSEHOLD_NAME_RE = re.compile(rf"(?={_NAME_FIRST})(?!{_NOT_NAMES}){_BARE_NAME}"
                                rf"(?=家(?:的|得|门口|院|建房|老房|房子|庭困难)|扬言)")
_PAIRED_NAME_RE = re.compile(rf"(?<=和)(?!{_NOT_NAMES}){_BARE_NAME}(?=两家|两人|两口子|夫妻|之间|发生|吵|打)")


# Exactly the characters str.isdigit() accepts (decimal digits plus superscripts, circled digits
# …), as C-level searches instead of a Python loop over the text. Split at the BMP: a class of BMP
# characters only is a bitmap (~0.3 µs per work order's text), one reaching beyond is a list of
# ranges tried in turn (~2.3 µs); the few astral digits are looked for only in texts holding an
# astral character.
_DIGITS = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isdigit()]
_BMP_DIGIT_RE = re.compile("[" + "".join(re.escape(c) for c in _DIGITS if c <= "\uffff") + "]")
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")
_ASTRAL_DIGIT_RE = re.compile("[" + "".join(re.escape(c) for c in _DIGITS if c > "\uffff") + "]")


def _has_digit(text: str) -> bool:
    """``any(c.isdigit() for c in text)``."""
    return _BMP_DIGIT_RE.search(text) is not None or (
        _ASTRAL_RE.search(text) is not None and _ASTRAL_DIGIT_RE.search(text) is not None)


def _token(match: re.Match) -> str:
    return _MASK_TOKENS[match.lastgroup]


# (pattern, replacement) in the order masking applies them: those needing a digit, then names.
_DIGIT_STEPS = ((_MASK_RE, _token), (_MARKED_NUMBER_RE, lambda m: m.group(1) + m.group(2) + "[电话]"))
# the marker and what joins it to the name stay; the bare patterns match the name alone
_NAME_STEPS = ((_NAME_RE, r"\1\2[姓名]"), (_PERSON_NAME_RE, r"\1[姓名]"), (_ACTING_NAME_RE, "[姓名]"),
               (_HOUSEHOLD_NAME_RE, "[姓名]"), (_PAIRED_NAME_RE, "[姓名]"))


def mask(text: str | None) -> str | None:
    """Replace phone, ID, bank card and plate numbers and names after markers with tokens."""
    if not text:
        return text
    if len(text) <= _CACHED_LENGTH:
        return _mask_short(text)
    return _mask(text)


# A record's own name cell, when it holds a name: a surname and one to three more characters
# ("王芳", "欧阳娜娜", "王女士"), not "匿名" or "市民".
_OWN_NAME_RE = re.compile(rf"(?:{_DOUBLE_SURNAMES}|[{_SURNAMES}])[\u4e00-\u9fff]{{1,3}}")


def mask_names(text: str | None, names) -> str | None:
    """``text`` with the record's own names (its caller-name cells, already masked text) masked
    wherever the text repeats them: "王芳来电反映" when 王芳 is the row's 来电人."""
    if not text:
        return text
    for name in names:
        if name and name in text and _OWN_NAME_RE.fullmatch(name):
            text = text.replace(name, "[姓名]")
    return text


def mask_many(texts: list[str | None]) -> list[str | None]:
    """``[mask(text) for text in texts]``, each pattern run once over the texts joined by NUL:
    no pattern matches a NUL, and each treats it as it treats a text's start or end. Each text
    keeps its own digit test (a plate of letters only is masked only in a text with a digit)."""
    out = list(texts)
    if any(text and "\x00" in text for text in out):
        return [mask(text) for text in out]
    for indices, steps in (
        ([i for i, text in enumerate(out) if text and _has_digit(text)], _DIGIT_STEPS),
        # after the digit step, as in ``_mask``: its tokens make an ASCII text non-ASCII
        ([i for i, text in enumerate(out) if text and not text.isascii()], _NAME_STEPS),
    ):
        if not indices:
            continue
        joined = "\x00".join(out[i] for i in indices)
        for pattern, replace in steps:
            joined = pattern.sub(replace, joined)
        for i, text in zip(indices, joined.split("\x00")):
            out[i] = text
    return out


# Addresses, unit names and dispositions repeat across rows; free texts rarely do.
_CACHED_LENGTH = 64


@functools.lru_cache(maxsize=65_536)
def _mask_short(text: str) -> str:
    return _mask(text)


def _mask(text: str) -> str:
    # Every pattern but the name needs a digit (plates carry at least three), so most short
    # texts skip the big alternation.
    if _has_digit(text):
        for pattern, replace in _DIGIT_STEPS:
            text = pattern.sub(replace, text)
    if not text.isascii():
        for pattern, replace in _NAME_STEPS:
            text = pattern.sub(replace, text)
    return text

