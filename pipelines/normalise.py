"""Pure normalisers for the values departments send: timestamps and free text.

Everything here is a plain function (or a small class holding a converter loaded once per
worker), so the Beam DoFns stay lean and hypothesis can test the rules directly.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from zoneinfo import ZoneInfo

from schemas import TIMEZONE

TZ = ZoneInfo(TIMEZONE)
UTC = dt.timezone.utc

# Excel's day zero: serial 1 is 1900-01-01 and Excel counts the non-existent 1900-02-29.
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
# Serials between these bounds are 1954..2119: far enough from epoch seconds/ms to tell apart.
_EXCEL_SERIAL_RANGE = (20000.0, 80000.0)
_EPOCH_SECONDS_RANGE = (1e8, 1e10)
_EPOCH_MS_RANGE = (1e11, 1e13)

_AMPM = r"(?P<ampm>上午|下午|晚上|凌晨|中午|AM|PM|am|pm)?"
# Separators departments use between date parts: - / . 年 月, with an optional trailing 日/号.
_DATE = r"(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*[日号]?"
_TIME = (
    r"(?:[\sT]*" + _AMPM + r"\s*(?P<H>\d{1,2})\s*[:：时点]\s*(?P<M>\d{1,2})\s*分?"
    r"(?:\s*[:：]?\s*(?P<S>\d{1,2})(?:[.,](?P<frac>\d{1,6}))?\s*秒?)?)?"
)
_TZ_SUFFIX = r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?"
_DATETIME_RE = re.compile(r"^" + _DATE + _TIME + _TZ_SUFFIX + r"$")
_COMPACT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?$")
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")


def _localise(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=TZ)
    return value.astimezone(TZ)


def _from_number(number: float) -> dt.datetime | None:
    if _EXCEL_SERIAL_RANGE[0] <= number <= _EXCEL_SERIAL_RANGE[1]:
        # Round to the millisecond: binary floats turn 14:05:00 into 14:04:59.999999.
        delta = dt.timedelta(milliseconds=round(number * 86_400_000))
        return (_EXCEL_EPOCH + delta).replace(tzinfo=TZ)
    if _EPOCH_SECONDS_RANGE[0] <= number < _EPOCH_SECONDS_RANGE[1]:
        return dt.datetime.fromtimestamp(number, UTC).astimezone(TZ)
    if _EPOCH_MS_RANGE[0] <= number < _EPOCH_MS_RANGE[1]:
        return dt.datetime.fromtimestamp(number / 1000.0, UTC).astimezone(TZ)
    return None


def _offset(tz_text: str | None) -> dt.tzinfo | None:
    if not tz_text:
        return None
    if tz_text == "Z":
        return UTC
    sign = -1 if tz_text[0] == "-" else 1
    digits = tz_text[1:].replace(":", "")
    return dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _hour_24(hour: int, ampm: str | None) -> int:
    if ampm in ("下午", "晚上", "PM", "pm") and hour < 12:
        return hour + 12
    if ampm in ("凌晨", "上午", "AM", "am") and hour == 12:
        return 0
    return hour


def _from_text(text: str) -> dt.datetime | None:
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        try:  # the common ISO-like form, parsed in C
            return _localise(dt.datetime.fromisoformat(text))
        except ValueError:
            pass  # e.g. 2026-10-3 14:05 (no zero padding): the general pattern below
    compact = _COMPACT_RE.match(text)
    if compact:
        y, mo, d, h, mi, s = compact.groups()
        return dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=TZ)
    if _NUMBER_RE.match(text):
        return _from_number(float(text))
    match = _DATETIME_RE.match(text)
    if not match:
        return None
    g = match.groupdict()
    frac = g["frac"] or ""
    micro = int((frac + "000000")[:6]) if frac else 0
    value = dt.datetime(
        int(g["y"]), int(g["m"]), int(g["d"]),
        _hour_24(int(g["H"] or 0), g["ampm"]), int(g["M"] or 0), int(g["S"] or 0), micro,
        tzinfo=_offset(g["tz"]),
    )
    return _localise(value)


def parse_time(value) -> dt.datetime | None:
    """A timezone-aware Asia/Shanghai datetime from what a department wrote, or None.

    Accepts datetimes and dates (XLSX cells; naive means local time), Excel serial numbers,
    epoch seconds and milliseconds, compact ``20261003140500``, ISO 8601 (with ``T``, ``Z`` or an
    offset) and the Chinese forms ``2026年10月3日14时05分`` / ``2026/10/3 14:05``.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, dt.datetime):
            return _localise(value)
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=TZ)
        if isinstance(value, (int, float)):
            return _from_number(float(value))
        text = half_width(str(value)).strip()
        return _from_text(text) if text else None
    except (ValueError, OverflowError, OSError):
        # Out-of-range parts (month 13, hour 25) are unparseable, not a crash.
        return None


# Full-width forms that are ASCII in disguise: letters, digits and the symbols that have no
# Chinese typographic use. Chinese punctuation (，。：；！？（）、) stays as written.
_KEEP_FULL_WIDTH = set("，。：；！？（）、")
_WIDTH_TABLE = {
    code: code - 0xFEE0
    for code in range(0xFF01, 0xFF5F)
    if chr(code) not in _KEEP_FULL_WIDTH
}
_WIDTH_TABLE[0x3000] = 0x20  # ideographic space
for _invisible in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD):
    _WIDTH_TABLE[_invisible] = None
# Most text has nothing to translate; a C-level search is cheaper than translating every string.
_NEEDS_WIDTH_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _WIDTH_TABLE) + "]")
# Short values (categories, township names, units) repeat endlessly; long texts rarely do.
_CACHE_MAX_LENGTH = 24
_CACHE_MAX_ENTRIES = 50_000


def half_width(text: str) -> str:
    """Full-width ASCII letters, digits and symbols to half-width; Chinese punctuation kept."""
    return text.translate(_WIDTH_TABLE)


def clean_text(text: str) -> str:
    """Half-width, control characters removed, whitespace collapsed, trimmed."""
    # every character half_width changes is non-ASCII
    if not text.isascii() and _NEEDS_WIDTH_RE.search(text):
        text = half_width(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() or c.isspace() else " " for c in text)
    # str.split() splits at runs of what ``\s`` matches (both are str.isspace) and drops them at
    # the ends: ``re.sub(r"\s+", " ", text).strip()`` without the regex engine
    return " ".join(text.split())


class TextNormaliser:
    """Traditional → simplified (OpenCC t2s) plus :func:`clean_text`.

    Build once per worker (DoFn.setup): loading the OpenCC dictionaries costs milliseconds,
    converting a row costs microseconds.
    """

    def __init__(self):
        import opencc

        self._t2s = opencc.OpenCC("t2s")
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        if len(text) <= _CACHE_MAX_LENGTH:
            cached = self._cache.get(text)
            if cached is None:
                cached = self._remember(text, self._convert(text))
            return cached
        return self._convert(text)

    def _remember(self, text: str, converted: str) -> str:
        """Keep a short text's conversion; a full cache starts again (a year's values cannot grow it without end)."""
        if len(self._cache) >= _CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[text] = converted
        return converted

    def many(self, texts: list[str]) -> list[str]:
        """``[self(text) for text in texts]``, the non-ASCII texts not in the cache converted as one
        string: OpenCC's per-call overhead exceeds the conversion of a work order's text, let alone
        an address's. A NUL joins them: no dictionary entry holds it and NFC never composes across
        it, and no cleaned text contains it (``clean_text`` turns control characters into spaces)."""
        out = list(texts)
        cache = self._cache
        batch: list[int] = []
        missed: list[int] = []  # short texts to remember once converted
        for i, text in enumerate(texts):
            if len(text) <= _CACHE_MAX_LENGTH:
                cached = cache.get(text)
                if cached is not None:
                    out[i] = cached
                    continue
                missed.append(i)
            text = out[i] = clean_text(text)
            if not text.isascii():
                batch.append(i)
        if batch:
            joined = unicodedata.normalize("NFC", self._t2s.convert("\x00".join(out[i] for i in batch)))
            for i, text in zip(batch, joined.split("\x00")):
                out[i] = text
        for i in missed:
            self._remember(texts[i], out[i])
        return out

    def _convert(self, text: str) -> str:
        text = clean_text(text)
        if text.isascii():
            return text
        return unicodedata.normalize("NFC", self._t2s.convert(text))
