"""Subject-level evidence: several incidents naming one compound, company, school, road or village.

A real risk episode concentrates on one named subject (业主 of one 小区, workers of one company, one
construction site). Early in it, the township × domain count has barely moved while the same name
already recurs; a count over the whole series cannot see that. Each incident carries the subjects
its texts name (``SubjectNamer``, the topic lexicon's ``SubjectFinder``); a window's count of
incidents naming one subject is scored against that subject's own history rate in the series.

The rate is uncertain for a subject seldom or never named before, so the count is scored with the
gamma-Poisson predictive: a gamma prior worth ``prior_mentions`` mentions at the series' average
rate per subject, updated with the subject's own mentions over the history days. Looking at every
subject of the series is paid for with a Bonferroni correction over the number of subjects. All
numbers live in ``schemas/scoring.yaml`` (``subjects``).
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Iterable, Mapping

import numpy as np

from models import baselines
from models.topics import RegionNames, SubjectFinder, load_lexicon


class SubjectNamer:
    """Text → the subjects it names (each once, in text order). Holds compiled lexicon patterns:
    create once per worker. Without a gazetteer, villages are found by their suffix (村, 社区)."""

    def __init__(self, lexicon: Mapping | None = None, regions: RegionNames | None = None):
        self._finder = SubjectFinder(lexicon or load_lexicon(), regions or RegionNames([]))

    def names(self, text: str | None) -> tuple[str, ...]:
        return self.names_of([text])[0]

    def names_of(self, texts: list[str | None]) -> list[tuple[str, ...]]:
        """``names`` of each text: each distinct text looked at once, and each stretch before a place suffix
        once per namer (``SubjectFinder.mentions_of``)."""
        return [self._named(mentions) for mentions in self._finder.mentions_of(t or "" for t in texts)]

    @staticmethod
    def _named(mentions) -> tuple[str, ...]:
        # the name the text itself delimits: a per-incident count needs no group to disambiguate
        found = [m.attested[0] for m in mentions if m.attested]
        if len(found) < 2:  # most texts name one place or none
            return tuple(found)
        found = list(dict.fromkeys(found))
        # "说宏达…有限公司" beside "宏达…有限公司" in one text: the words before it are no part of the name
        return tuple(n for n in found if not any(o != n and n.endswith(o) for o in found))


@dataclasses.dataclass(frozen=True)
class SubjectEvidence:
    subject: str
    count: int  # incidents naming it in the window
    window_days: int
    history_mentions: int
    history_days: int
    surprisal: float  # -log10 p after the Bonferroni corrections

    def reason(self) -> str:
        """"同一对象（锦绣花园小区）近3日5起（以往约每月0.2起）"."""
        span = "当日" if self.window_days == 1 else f"近{self.window_days}日"
        if self.history_mentions:
            per_month = self.history_mentions / max(self.history_days, 1) * 30.0
            usual = f"以往约每月{per_month:.1f}起" if per_month < 10 else f"以往约每月{per_month:.0f}起"
        else:
            usual = f"此前{self.history_days}天未见"
        return f"同一对象（{self.subject}）{span}{self.count}起（{usual}）"


def predictive_tail(count: int, window_days: float, mentions: float, history_days: float, prior_mentions: float,
                    prior_rate: float, dispersion: float = 1.0) -> float:
    """P(X ≥ count) over ``window_days`` for a subject named ``mentions`` times in ``history_days``.

    The subject's rate has the gamma posterior (shape mentions + a, rate D + b; the prior's mean is
    ``prior_rate``, b = a / prior_rate); its count over the window is negative binomial with that
    posterior's mean m and variance ``dispersion`` × m + m² / shape: the series' over-dispersion
    (one matter reported as several incidents) on top of the uncertainty of a seldom-named
    subject's rate. With dispersion 1 this is the gamma-Poisson predictive."""
    return float(predictive_tails(count, window_days, mentions, history_days, prior_mentions, prior_rate, dispersion))


def predictive_tails(counts, window_days: float, mentions, history_days: float, prior_mentions: float,
                     prior_rate: float, dispersion: float = 1.0) -> np.ndarray:
    """``predictive_tail`` of each of several subjects (``counts`` and ``mentions`` alike long)."""
    shape = np.asarray(mentions, dtype=float) + prior_mentions
    mean = window_days * shape / (history_days + prior_mentions / prior_rate)
    return baselines.uncertain_rate_tail(counts, mean, dispersion, shape)


def fold_names(window: Mapping[str, int], history: Mapping[str, int], min_chars: int = 3,
               folds: dict[str, str] | None = None) -> Counter:
    """Window names onto the names they end with: a text without a clear start gives its name with
    the words before it ("说远航房地产开发有限公司"). A name becomes the shorter name it ends with when
    the history names that one more often (the clipped "悦花园" never replaces "天悦花园").
    ``folds``: name → the name it becomes, kept by a caller that folds many windows onto one history."""
    out: Counter = Counter()
    for name, n in window.items():
        folded = None if folds is None else folds.get(name)
        if folded is None:
            own = history.get(name, 0)
            # the names it ends with, looked up by its own endings (not by scanning the history)
            shorter = [k for k in (name[i:] for i in range(1, len(name) - min_chars + 1)) if history.get(k, 0) > own]
            folded = max(shorter, key=lambda k: (history[k], len(k))) if shorter else name
            if folds is not None:
                folds[name] = folded
        out[folded] += n
    return out


def strongest(window: Mapping[str, int], window_days: int, history: Mapping[str, int], history_days: int,
              cfg: Mapping, n_windows: int = 1, dispersion: float = 1.0,
              folds: dict[str, str] | None = None, tails: dict | None = None) -> SubjectEvidence | None:
    """The most surprising subject of a window, or None when no subject reaches ``min_incidents``.

    ``window``: subject → incidents naming it in the window; ``history``: subject → incidents over
    the ``history_days`` before it. The correction covers every subject named in the history or
    the window, and the ``n_windows`` windows a day is looked at through. ``dispersion``: the
    series' (``baselines.ExpectedModel.dispersion``); ``folds``: as for ``fold_names``. ``tails``: a candidate's
    tail by its arguments, kept by a caller that looks at many windows of one series: consecutive days' windows
    hold the same counts of the same subjects, and a tail is computed element by element (the same float
    whichever call computes it).
    """
    if sum(window.values()) < cfg["min_incidents"]:
        return None
    window = fold_names(window, history, folds=folds)
    # by name: of equally surprising subjects the same one is named whatever order the tallies came in
    candidates = sorted((s, n) for s, n in window.items() if n >= cfg["min_incidents"])
    if not candidates or history_days < cfg["min_history_days"]:
        return None
    # |history ∪ window| without a set of the whole history
    n_subjects = len(history) + sum(1 for s in window if s not in history)
    total = sum(history.values())
    prior_rate = (total / (history_days * len(history))) if history else 1.0 / history_days
    correction = math.log10(max(n_subjects, 1)) + math.log10(max(n_windows, 1))
    known = [history.get(subject, 0) for subject, _ in candidates]
    keys = [(n, mentions, window_days, history_days, cfg["prior_mentions"], prior_rate, dispersion)
            for (_, n), mentions in zip(candidates, known)]
    memo = {} if tails is None else tails
    missing = list(dict.fromkeys(key for key in keys if key not in memo))
    if missing:
        # the candidates' tails in one call: a call per candidate cost more than its tail
        memo.update(zip(missing, predictive_tails([key[0] for key in missing], window_days, [key[1] for key in missing],
                                                  history_days, cfg["prior_mentions"], prior_rate, dispersion).tolist()))
    # the first of the highest rounded surprisals wins (a later candidate must beat the rounded best)
    best, surprisal = 0, None
    for at, tail in enumerate(memo[key] for key in keys):
        s = -math.log10(max(tail, 1e-300)) - correction
        if surprisal is None or s > surprisal:
            best, surprisal = at, round(s, 3)
    if surprisal < cfg["min_surprisal"]:
        return None
    (subject, n), mentions = candidates[best], known[best]
    return SubjectEvidence(subject, n, window_days, mentions, history_days, surprisal)


def points(evidence: SubjectEvidence | None, cfg: Mapping) -> float:
    if evidence is None:
        return 0.0
    return min(float(cfg["cap"]), float(cfg["per_surprisal"]) * evidence.surprisal)


def sum_subjects(tallies: Iterable[Mapping], start: Mapping[str, int] | None = None) -> Counter:
    """Incidents naming each subject over ``tallies``, added to ``start`` (not changed) if given."""
    out: Counter = Counter(start) if start else Counter()
    for t in tallies:
        subjects = t.get("subjects")
        if subjects:
            # dict.get, not Counter.update: that one checks its argument's type for every tally
            for name, n in subjects.items():
                out[name] = out.get(name, 0) + n
    return out
