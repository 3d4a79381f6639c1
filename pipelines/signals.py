"""Escalation signals (``schemas/signals.yaml``) found in an event: a list of signal codes.

A signal is raised when one of its terms occurs in the normalised text and is not negated.
Negation is checked cheaply and only right before the term: a negation word (没有, 未, 无, 并未,
不存在, 未见 …) followed by at most two filler words (发现, 出现, 人员, 群众, 任何 …) and then the
term — 现场没有聚集, 未发现人员聚集, 无群众围堵 raise nothing, while 讨薪未果后聚集 still raises
``gathering`` because 果后 is no filler. ``many_people`` is also raised by the feed's
``people_involved`` reaching ``people_involved_at_least`` or by a stated head count in the text
(三十余名工人, 约50人, 二十多户) reaching it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import schemas
from models.features import normalise_text

_NEGATION = r"(?:没有|没|未|无|并未|并无|不存在|未见|不会)"
_FILLER = r"(?:发现|出现|见|有|人员|群众|任何|人|明显|大规模|过)"
_HEAD_COUNT = re.compile(r"(\d+|[一二三四五六七八九十两百]+)\s*(?:余|多|来)?\s*(?:名|个|位|户|人)")
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def chinese_number(token: str) -> int | None:
    """Arabic digits, or a Chinese numeral below 1000 (三十, 二十五, 一百, 百)."""
    if token.isdigit():
        return int(token)
    total, current = 0, 0
    for char in token:
        if char in _CN_DIGITS:
            current = _CN_DIGITS[char]
        elif char == "十":
            total += (current or 1) * 10
            current = 0
        elif char == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


@dataclass(frozen=True)
class SignalLexicon:
    patterns: tuple[tuple[str, re.Pattern], ...]
    many_people_code: str | None
    people_threshold: int | None

    @classmethod
    def from_schema(cls, spec: dict | None = None) -> "SignalLexicon":
        spec = spec or schemas.signals()
        patterns, many_code, threshold = [], None, None
        for signal in spec["signals"]:
            terms = sorted({normalise_text(t) for t in signal.get("terms") or ()}, key=len, reverse=True)
            if terms:
                alternatives = "|".join(re.escape(t) for t in terms)
                # group 1 is set when the term is negated
                patterns.append((signal["code"], re.compile(f"({_NEGATION}{_FILLER}{{0,2}})?(?:{alternatives})")))
            if "people_involved_at_least" in signal:
                many_code, threshold = signal["code"], int(signal["people_involved_at_least"])
        return cls(tuple(patterns), many_code, threshold)

    def extract(self, text: str | None, people_involved: int | None = None) -> list[str]:
        """Signal codes in the order of ``signals.yaml``."""
        text = normalise_text(text)
        found = [code for code, pattern in self.patterns if any(not m.group(1) for m in pattern.finditer(text))]
        if self.many_people_code and self.many_people_code not in found and self._many_people(text, people_involved):
            found.append(self.many_people_code)
        order = [code for code, _ in self.patterns]
        return sorted(found, key=lambda c: order.index(c) if c in order else len(order))

    def _many_people(self, text: str, people_involved: int | None) -> bool:
        if self.people_threshold is None:
            return False
        if people_involved is not None and people_involved >= self.people_threshold:
            return True
        for match in _HEAD_COUNT.finditer(text):
            count = chinese_number(match.group(1))
            if count is not None and count >= self.people_threshold:
                return True
        return False
