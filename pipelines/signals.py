"""Escalation signals (``schemas/signals.yaml``) found in an event: a list of signal codes.

A signal is raised when one of its terms occurs in the normalised text and is not negated.
Negation is checked cheaply and only right before the term: a negation word (没有, 未, 无, 并未,
不存在, 未见, 否认 …) followed by at most three filler words (发现, 出现, 造成, 人员, 群众, 再, 去, 找 …, or
the signal's own terms) and then the term — 现场没有聚集, 未发现人员聚集, 无群众围堵 raise nothing, while 讨薪未果后聚集 still raises
``gathering`` because 果后 is no filler. ``many_people`` is also raised by the feed's
``people_involved`` reaching ``people_involved_at_least`` or by a stated head count in the text
(三十余名工人, 约50人, 二十多户) reaching it.
"""
from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

import schemas
from models.features import normalise_texts

_NEGATION = r"(?:没有|没|未|无|并未|并无|不存在|未见|不会|否认)"
_FILLER = r"(?:发现|出现|发生|造成|形成|再|曾|见|有|人员|群众|任何|人|明显|大规模|过|去|找|向|联系|接受)"
_NEGATION_REACH = 12  # characters before a term that can hold its negation
# 个 counts people only when people follow: 12个月 is no head count
_HEAD_COUNT = re.compile(r"(\d+|[一二三四五六七八九十两百]+)\s*(?:余|多|来)?\s*(?:名|位|户|人|个(?:人|工人|村民|业主|学生|家长))")
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
    patterns: tuple[tuple[str, re.Pattern, re.Pattern], ...]
    many_people_code: str | None
    people_threshold: int | None
    order: tuple[str, ...]

    @classmethod
    def from_schema(cls, spec: dict | None = None) -> "SignalLexicon":
        spec = spec or schemas.signals()
        patterns, many_code, threshold = [], None, None
        order = tuple(signal["code"] for signal in spec["signals"])
        for signal in spec["signals"]:
            terms = sorted(set(normalise_texts(signal.get("terms") or [])), key=len, reverse=True)
            if terms:
                alternatives = "|".join(re.escape(t) for t in terms)
                # the signal's own terms count as fillers: 没有找媒体曝光 negates 曝光 as well
                negated = re.compile(f"{_NEGATION}(?:{_FILLER}|{alternatives}){{0,3}}\\Z")
                patterns.append((signal["code"], re.compile(alternatives), negated))
            if "people_involved_at_least" in signal:
                many_code, threshold = signal["code"], int(signal["people_involved_at_least"])
        return cls(tuple(patterns), many_code, threshold, order)

    def extract(self, text: str | None, people_involved: int | None = None) -> list[str]:
        """Signal codes of one text, in the order of ``signals.yaml``."""
        return self.extract_batch([text], [people_involved])[0]

    def extract_batch(self, texts: list[str | None], people_involved: list[int | None] | None = None,
                      normalised: bool = False) -> list[list[str]]:
        """Signal codes per text. The batch is scanned as one string: most texts raise nothing,
        and one regex pass over the batch costs far less than one per text. ``normalised=True``:
        the texts already went through ``models.features.normalise_texts``."""
        normalised = list(texts) if normalised else normalise_texts(texts)
        joined = "\x00".join(normalised)
        # where each text starts in ``joined``; a match's text by bisection (a Python list: numpy's
        # searchsorted costs ~1 µs a call, for one position at a time)
        starts = list(itertools.accumulate((len(t) + 1 for t in normalised[:-1]), initial=0))
        found: list[set[str]] = [set() for _ in normalised]
        for code, pattern, negated in self.patterns:
            for match in pattern.finditer(joined):
                start = match.start()
                if not negated.search(joined, max(0, start - _NEGATION_REACH), start):
                    found[bisect.bisect_right(starts, start) - 1].add(code)
        if self.many_people_code:
            for i, count in enumerate(people_involved or ()):
                if count is not None and count >= self.people_threshold:
                    found[i].add(self.many_people_code)
            for match in _HEAD_COUNT.finditer(joined):
                count = chinese_number(match.group(1))
                if count is not None and count >= self.people_threshold:
                    found[bisect.bisect_right(starts, match.start()) - 1].add(self.many_people_code)
        order = self.order
        return [[code for code in order if code in codes] if codes else [] for codes in found]


    def without_negation(self) -> "SignalLexicon":
        """The same lexicon raising every term, negated or not: the baseline negation is measured against."""
        never = re.compile(r"(?!)")
        return SignalLexicon(tuple((c, p, never) for c, p, _ in self.patterns), self.many_people_code,
                             self.people_threshold, self.order)


def signal_metrics(lexicon: SignalLexicon, texts: list[str], truth: list[list[str]]) -> dict:
    """Per signal precision, recall, F1 and support of ``lexicon`` on labelled texts."""
    found = lexicon.extract_batch(texts)
    metrics = {}
    for code in lexicon.order:
        tp = sum(code in f and code in t for f, t in zip(found, truth))
        fp = sum(code in f and code not in t for f, t in zip(found, truth))
        fn = sum(code not in f and code in t for f, t in zip(found, truth))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics[code] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                         "support": tp + fn}
    metrics["exact"] = round(sum(f == t for f, t in zip(found, truth)) / max(len(truth), 1), 4)
    return metrics
