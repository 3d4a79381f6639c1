"""Risk score 0–100, four-colour level and Chinese reasons for a region × domain series.

The base score comes from how surprising the observed number of incidents is against the
series' expected count (``models.baselines``); contributions are added for escalation signals,
repeat callers, unresolved 12345 work orders and cross-feed corroboration — signals and
cross-feed incidents only above the series' usual level for the period (``usual_counts``).
All weights and thresholds live in ``schemas/scoring.yaml``.

A *tally* is the per series × day summary produced by ``pipelines.score.DailyCounts``:
``{"incidents", "records", "signals": {code: incidents}, "feeds": {feed: incidents},
"feeds_2", "feeds_3", "callers": {caller_key: records}, "hotline", "hotline_bad",
"subjects": {name: incidents naming it}, "villages": {village_code: [incidents, records]}}``
(``models.subjects``; ``subjects`` and ``villages`` are absent in tallies stored before them).
A township's day score also scans its villages (``VillageSeries``): a burst confined to one village
is far more surprising against that village's share of the township than in the township's count.
``score_series`` (batch: day and month rows of a target period) and ``score_window`` (stream: one
window) share ``assess``, so both give the same score for the same counts.
"""
from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
import itertools
import math
from collections import Counter
from typing import Any, Callable, Iterable, Mapping

import numpy as np

import schemas
from models import baselines
from models import subjects as subjects_model
from models.gaps import Gap, gaps_for

LEVELS = ("red", "orange", "yellow", "blue")
ALERT_LEVELS = ("red", "orange", "yellow")


def config() -> dict:
    return schemas.load("scoring.yaml")


# --------------------------------------------------------------------------------------------
# Tallies
# --------------------------------------------------------------------------------------------

def empty_tally() -> dict:
    return {"incidents": 0, "records": 0, "signals": {}, "feeds": {}, "feeds_2": 0, "feeds_3": 0,
            "callers": {}, "hotline": 0, "hotline_bad": 0, "subjects": {}, "villages": {}}


_COUNT_FIELDS = ("incidents", "records", "feeds_2", "feeds_3", "hotline", "hotline_bad")


def merge_tallies(tallies: Iterable[Mapping], places: bool = True) -> dict:
    """The tallies summed. ``places=False`` leaves ``subjects`` and ``villages`` empty: what ``assess``
    reads of a period, for the many windows a series is scored through."""
    out = empty_tally()
    signals, feeds, callers, subjects, villages = {}, {}, {}, {}, {}
    for t in tallies:
        if not (t["records"] or t["incidents"]):
            continue  # most days of a sparse series are empty: nothing to add
        for field in _COUNT_FIELDS:
            out[field] += t[field]
        parts = ((signals, t["signals"]), (feeds, t["feeds"]), (callers, t["callers"]))
        if places:
            parts += ((subjects, t.get("subjects") or {}),)
            add_villages(villages, t)
        for merged, part in parts:
            for key, n in part.items():
                merged[key] = merged.get(key, 0) + n
    out["signals"], out["feeds"], out["callers"], out["subjects"] = signals, feeds, callers, subjects
    out["villages"] = villages
    return out


def add_villages(villages: dict, tally: Mapping) -> dict:
    """Add a tally's ``villages`` ({code: [incidents, records]}) into ``villages``."""
    for code, (n_incidents, n_records) in (tally.get("villages") or {}).items():
        have = villages.get(code, (0, 0))
        villages[code] = [have[0] + n_incidents, have[1] + n_records]
    return villages


def signal_history(tallies: Iterable[Mapping]) -> dict:
    """Incidents, signal counts and cross-feed incidents summed over days (``usual_counts``'s history);
    lighter than ``merge_tallies``, which also merges callers."""
    out = {"incidents": 0, "signals": Counter(), "feeds_2": 0, "feeds_3": 0}
    for t in tallies:
        if not t["incidents"]:
            continue
        out["incidents"] += t["incidents"]
        signals = t.get("signals")
        if signals:  # most days carry none: Counter.update costs even for an empty dict
            out["signals"].update(signals)
        out["feeds_2"] += t.get("feeds_2", 0)
        out["feeds_3"] += t.get("feeds_3", 0)
    return out


def report_weight(cfg: Mapping | None = None) -> float:
    """What each further report of an incident adds to a series' volume (``anomaly.extra_report_weight``)."""
    return float((cfg or config())["anomaly"].get("extra_report_weight", 0.0))


def volume(tally: Mapping, cfg: Mapping | None = None, weight: float | None = None) -> float:
    """What a series counts: each linked incident once, plus ``extra_report_weight`` for each further
    report of it (see ``anomaly`` in schemas/scoring.yaml and docs/notes/scoring.md); ``weight``:
    ``report_weight(cfg)``, for callers that add up many tallies."""
    if weight is None:
        weight = report_weight(cfg)
    return tally["incidents"] + weight * (tally["records"] - tally["incidents"])


def knows_villages(tally: Mapping) -> bool:
    """Whether a day's tally tells its villages (tallies stored before ``villages`` existed do not;
    a day without incidents has nothing to tell)."""
    return "villages" in tally or not tally["incidents"]


REPEAT_MIN_RECORDS = 2  # a caller repeats with this many records over lookback + period


def repeat_callers(period_tally: Mapping, lookback_tally: Mapping, min_records: int = REPEAT_MIN_RECORDS) -> int:
    """Callers of the period who called at least ``min_records`` times over lookback + period."""
    return sum(1 for key, n in period_tally["callers"].items()
               if n + lookback_tally["callers"].get(key, 0) >= min_records)


# --------------------------------------------------------------------------------------------
# Score, level, reasons
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Assessment:
    score: float
    level: str
    reasons: list
    complete: bool
    base: float
    surprisal: float


def level_for(score: float, levels: Mapping | None = None) -> str:
    levels = levels or config()["levels"]
    for name in LEVELS:
        if score >= levels[name]:
            return name
    return "none"


@functools.lru_cache(maxsize=8)
def _score_curve(points: tuple) -> tuple[tuple, tuple]:
    """``anomaly.surprisal_to_score`` as its x and y values, made once per curve, not per score."""
    return tuple(float(x) for x, _ in points), tuple(float(y) for _, y in points)


def base_score(surprisal_value: float, cfg: Mapping | None = None) -> float:
    """The score curve at ``surprisal_value``, linear between its points (``np.interp``)."""
    xp, fp = _score_curve(tuple(map(tuple, (cfg or config())["anomaly"]["surprisal_to_score"])))
    x = float(surprisal_value)
    if x == xp[0] < xp[1]:
        return fp[0]  # the curve's start (every unsurprising day): what np.interp gives there
    if not xp[0] < x < xp[-1]:
        return float(np.interp(x, xp, fp))  # at or past the ends (or NaN)
    # inside the curve: np.interp's own arithmetic, without its conversions to arrays (most of its cost)
    j = bisect.bisect_right(xp, x) - 1
    if xp[j] == x:
        return fp[j]
    return (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]) * (x - xp[j]) + fp[j]


def _pct(observed: float, reference: float) -> str:
    change = (observed - reference) / reference * 100.0
    return f"高{change:.0f}%" if change >= 0 else f"低{-change:.0f}%"


def _num(x: float) -> str:
    return f"{x:.0f}" if x >= 10 or float(x).is_integer() else f"{x:.1f}"


def history_before(history: Mapping, shared: list) -> Mapping:
    """``history`` (``signal_history`` of the days before a month) without the ``shared`` days, the days
    before the month that a window early in it also covers: a window's usual counts come from the days
    before the window, as in the stream's ``score_window``, so the window's own first days (an episode's
    first reports) do not make its signals look usual."""
    if not shared:
        return history
    days = signal_history(shared)
    return {key: history[key] - days[key] for key in history}


def usual_counts(history: Mapping, incidents: float) -> dict:
    """What the series' history makes usual among a period's ``incidents``: for each signal and for
    incidents seen by two / three feeds, the history's share of incidents × the period's incidents.

    A signal that comes with every tenth incident of a busy series (110 and 12345 both hearing of a
    traffic accident) is that series' normal, not evidence of a rising risk; the same signal in a
    series that has never carried it is. The usual count is taken given the incidents the period
    did have, not the incidents it was expected to have: the volume statistic already scores how
    many incidents there were, so the signals score only what it cannot see — a larger share of them
    escalating or retold than usual. (Given the expected incidents, a day with chance excess volume
    also had proportionally more routine gatherings and echoes, and earned points for the same
    excess twice: most alarm days on synthetic busy series with no episode, docs/notes/scoring.md,
    Session 5.) ``history``: ``signal_history`` of the days before.
    """
    if not history["incidents"]:
        return {}
    scale = incidents / history["incidents"]
    usual = {code: n * scale for code, n in history["signals"].items()}
    usual["feeds_2"], usual["feeds_3"] = history["feeds_2"] * scale, history["feeds_3"] * scale
    return usual


def _excess(n: float, usual: Mapping | None, key: str, margin_sd: float = 0.0) -> float:
    """How far ``n`` lies above the usual count and its chance variation (``margin_sd`` Poisson
    standard deviations): in a busy series a few more gatherings than usual are noise."""
    mean = (usual or {}).get(key, 0.0)
    return max(0.0, n - mean - margin_sd * math.sqrt(mean))  # correctly rounded, as np.sqrt


def _contributions(tally: Mapping, n_repeat_callers: int, cfg: Mapping,
                   usual: Mapping | None = None,
                   subject: subjects_model.SubjectEvidence | None = None) -> list[tuple[float, str]]:
    """(points, reason) for each contribution that applies, biggest first. With ``usual``
    (``usual_counts``), signals and cross-feed incidents earn points only above the series' usual;
    ``subject``: the window's most surprising subject (``models.subjects.strongest``)."""
    rules = cfg["contributions"]
    margin = float(rules.get("usual_margin_sd", 0.0))
    out = []
    wording = {"gathering": "{n}起涉及{name}", "extreme_act": "{n}起{name}",
               "media_exposure": "{n}起{name}", "many_people": "{n}起{name}"}
    for code, n in sorted(tally["signals"].items()):
        if n and code in rules:
            rule = rules[code]
            excess = _excess(n, usual, code, margin)
            if not excess:
                continue
            # the names only where a signal earns points: most periods have none to name
            names = {s["code"]: s["name_zh"] for s in schemas.signals()["signals"]}
            text = wording.get(code, "{n}起含“{name}”信号").format(n=n, name=names.get(code, code))
            out.append((min(rule["cap"], rule["per_incident"] * excess), text + _usual_note(usual, code)))
    if n_repeat_callers:
        rule = rules["repeat_callers"]
        out.append((min(rule["cap"], rule["per_caller"] * n_repeat_callers),
                    f"{n_repeat_callers}名来电人重复来电"))
    rule = rules["hotline_unresolved"]
    if tally["hotline"] >= rule["min_records"]:
        share = tally["hotline_bad"] / tally["hotline"]
        if share >= rule["min_share"]:
            hotline = cfg["feed_names_zh"].get("hotline_12345", "12345")
            out.append((rule["points_at_full_share"] * share,
                        f"{hotline}工单未解决或不满意占{share * 100:.0f}%（{tally['hotline_bad']}/{tally['hotline']}）"))
    rule = rules["cross_feed"]
    points = (rule["per_incident_two_feeds"] * _excess(tally["feeds_2"], usual, "feeds_2", margin)
              + rule["per_incident_three_feeds"] * _excess(tally["feeds_3"], usual, "feeds_3", margin))
    if points:
        out.append((min(rule["cap"], points), _cross_feed_reason(tally, cfg)))
    if subject is not None and cfg.get("subjects"):
        out.append((subjects_model.points(subject, cfg["subjects"]), subject.reason()))
    out.sort(key=lambda pr: -pr[0])
    return out


def _usual_note(usual: Mapping | None, code: str) -> str:
    """"（通常约1.5起）" where the history makes some of them usual, so a reader sees why few points."""
    n = (usual or {}).get(code, 0.0)
    return f"（通常约{_num(n)}起）" if n >= 0.5 else ""


def _cross_feed_reason(tally: Mapping, cfg: Mapping) -> str:
    feeds = [cfg["feed_names_zh"].get(f, f) for f in schemas.FEEDS if tally["feeds"].get(f)]
    multi = tally["feeds_2"] + tally["feeds_3"]
    if tally["feeds_3"] and len(feeds) >= 3:
        count = "三方" if len(feeds) == 3 else f"{len(feeds)}方"
        return f"{'、'.join(feeds)}{count}均有反映（{multi}起多渠道印证）"
    return f"{multi}起经多渠道印证（{'、'.join(feeds)}）"


def gap_reasons(gap_days: Mapping[str, int], single_day: bool, cfg: Mapping) -> list[str]:
    names = cfg["feed_names_zh"]
    if single_day:
        return [f"数据缺失：{names.get(f, f)}当日无数据或明显偏少" for f in gap_days]
    return [f"数据缺失：{names.get(f, f)} {n}天无数据或明显偏少" for f, n in gap_days.items()]


def assess(surprisal_value: float, volume_reason: str, tally: Mapping, n_repeat_callers: int = 0,
           gap_days: Mapping[str, int] | None = None, single_day: bool = False, cfg: Mapping | None = None,
           usual: Mapping | None = None, subject: subjects_model.SubjectEvidence | None = None,
           village: VillageEvidence | None = None) -> Assessment:
    """Combine the anomaly statistic and the contributions into score, level and reasons.

    ``usual``: the series' usual signal counts for this period (``usual_counts``), used when
    ``contributions.above_usual`` is on. ``subject``: the strongest subject evidence of the period.
    ``village``: the village whose burst gave ``surprisal_value`` (``VillageSeries``), named after the volume.
    A series with a feed gap keeps the score its observed
    counts give (a lower bound: records are missing) and says so; it is never presented as complete.
    """
    cfg = cfg or config()
    base = base_score(surprisal_value, cfg)
    contributions = _contributions(tally, n_repeat_callers, cfg,
                                   usual if cfg["contributions"].get("above_usual") else None, subject)
    added = min(cfg["contributions"]["total_cap"], sum(p for p, _ in contributions))
    score = round(min(100.0, base + added), 1)
    reasons = [volume_reason] + ([village.reason()] if village else []) + [text for _, text in contributions]
    gap_days = dict(gap_days or {})
    reasons += gap_reasons(gap_days, single_day, cfg)
    return Assessment(score=score, level=level_for(score, cfg["levels"]), reasons=reasons,
                      complete=not gap_days, base=round(base, 1), surprisal=round(float(surprisal_value), 2))


def window_volume_reason(observed: int, expected: float, window_days: int, reports: int | None = None) -> str:
    """"近3日9起（27条反映），预期约4起，高125%" — reports shown when several describe one incident."""
    text = f"{window_count(observed, window_days, reports)}，预期约{_num(expected)}起"
    return text + (f"，{_pct(observed, expected)}" if expected > 0 and observed > expected else "")


def window_count(observed: int, window_days: int, reports: int | None = None) -> str:
    """"近3日9起（27条反映）"."""
    span = "当日" if window_days == 1 else f"近{window_days}日"
    told = f"（{reports}条反映）" if reports is not None and reports > observed else ""
    return f"{span}{observed}起{told}"


def unbaselined_reason(counted: str, history_days: int) -> str:
    """"当日3起，历史数据仅12天，不足以估计预期": a count with no expectation to compare with."""
    known = f"历史数据仅{history_days}天" if history_days else "此前无历史数据"
    return f"{counted}，{known}，不足以估计预期"


def month_volume_reason(observed: int, expected: float, previous_months: list[int]) -> str:
    """"本月32起，较近3月均值高210%" — the comparison a person can check on the last reports."""
    text = f"本月{observed}起"
    if previous_months:
        mean = sum(previous_months) / len(previous_months)
        label = f"近{len(previous_months)}月均值"
        text += f"，较{label}{_pct(observed, mean)}" if mean > 0 else f"，{label}为0"
    return text + f"（预期约{_num(expected)}起）"


# --------------------------------------------------------------------------------------------
# One window (stream) and a series' target period (batch)
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _date_range(start: dt.date, n: int) -> tuple[dt.date, ...]:
    return tuple(start + dt.timedelta(days=i) for i in range(n))


def _positions(daily: Mapping[dt.date, Any], start: dt.date, n: int):
    """(day's position from ``start``, value) for the days of ``daily`` within the ``n`` days from ``start``."""
    first = start.toordinal()
    for d, value in daily.items():
        i = d.toordinal() - first
        if 0 <= i < n:
            yield i, value


def _told_days(daily: Mapping[dt.date, Any], start: dt.date, n: int) -> list[tuple[int, Any]]:
    """``_positions`` in day order."""
    return sorted(_positions(daily, start, n), key=lambda told: told[0])


def _volumes(incidents: np.ndarray, records: np.ndarray, weight: float) -> np.ndarray:
    """``volume`` of each day's incidents and records: its arithmetic over arrays, element by element (the same
    floats as ``volume`` gives day by day, without a call per day)."""
    return incidents + weight * (records - incidents)


def dense_volumes(daily: Mapping[dt.date, Mapping], start: dt.date, end: dt.date, weight: float) -> np.ndarray:
    """``dense_counts`` of the tallies' ``volume`` (``weight``: ``report_weight``)."""
    n = max((end - start).days + 1, 0)
    incidents, records = np.zeros(n), np.zeros(n)
    told = list(_positions(daily, start, n))
    at = [i for i, _ in told]
    incidents[at], records[at] = [t["incidents"] for _, t in told], [t["records"] for _, t in told]
    return _volumes(incidents, records, weight)


def dense_counts(daily: Mapping[dt.date, float], start: dt.date, end: dt.date) -> tuple[list, np.ndarray]:
    """Dates start..end (inclusive) and the counts on them (0 where absent)."""
    n = max((end - start).days + 1, 0)
    dates = list(_date_range(start, n))
    counts = np.zeros(n)
    for i, value in _positions(daily, start, n):
        counts[i] = value
    return dates, counts


def score_window(observed: int, history_daily_counts: Mapping[dt.date, Mapping | float], window_days: int,
                 signals: Mapping | None = None, *, window_end: dt.date, history_start: dt.date | None = None,
                 n_repeat_callers: int = 0, gap_days: Mapping[str, int] | None = None,
                 parent_daily_counts: Mapping[dt.date, float] | None = None, n_siblings: int = 1,
                 cfg: Mapping | None = None, village_names: Mapping[str, str] | None = None) -> dict:
    """Score the incidents of one window against the series' history before the window.

    ``history_daily_counts``: per day before the window, a tally (``incidents``, ``records`` and,
    for the signals' usual level, ``signals``, ``feeds_2``, ``feeds_3``) or a plain incident count
    (missing days count as zero from ``history_start``, default the earliest date given).
    ``signals``: the window's tally (see module doc) or None. As in ``score_series``, the statistic
    runs on the volume (incidents + weighted further reports), Bonferroni-corrected for the
    batch's windows, and the reasons speak in incidents; a history without signal counts makes
    every signal unusual (full points).
    Returns score, level, expected, reasons, complete. ``village_names``: code → name for the
    village scan's reason (the gazetteer's; without, the reason names the code).
    """
    cfg = cfg or config()
    tally = signals or empty_tally()

    def as_tally(value) -> Mapping:
        return value if isinstance(value, Mapping) else {"incidents": value, "records": value}

    first_day = window_end - dt.timedelta(days=window_days - 1)
    history_end = first_day - dt.timedelta(days=1)
    start = history_start or min(history_daily_counts, default=history_end)
    history = {d: as_tally(v) for d, v in history_daily_counts.items()}
    dates, volumes = dense_counts({d: volume(t, cfg) for d, t in history.items()}, start, history_end)
    incidents = dense_counts({d: t["incidents"] for d, t in history.items()}, start, history_end)[1]
    per_volume = float(incidents.sum()) / float(volumes.sum()) if volumes.sum() else 1.0
    parent = None if parent_daily_counts is None else dense_counts(parent_daily_counts, start, history_end)[1]
    fitted = baselines.expected_model(dates, volumes, cfg["expected"], parent, n_siblings)
    model = baselines.at_recent_level(fitted, dates, volumes, cfg["expected"])
    window_dates = [first_day + dt.timedelta(days=i) for i in range(window_days)]
    expected_volume = float(model.predict(window_dates).sum())
    observed_volume = volume({"incidents": observed, "records": max(tally.get("records") or 0, observed)}, cfg)
    correction = baselines.window_correction(cfg["anomaly"]["windows"])
    window_dispersion = float(baselines.window_dispersions(fitted, dates, volumes, (window_days,), cfg["expected"])[0])
    s = (max(0.0, float(baselines.surprisal(observed_volume, expected_volume, window_dispersion)) - correction)
         if observed_volume >= cfg["anomaly"]["min_observed"] else 0.0)
    village = None
    if cfg.get("villages") and tally.get("villages") and window_days in village_windows(cfg):
        # the window as one more "day" after the history, scanned as the batch scans its windows
        empty = empty_tally()
        series = VillageSeries([history.get(d, empty) for d in dates] + [tally], cfg, village_names)
        scan = series.scan(np.append(volumes, observed_volume), slice(0, len(dates)), slice(len(dates), None),
                           np.array([expected_volume]), model.dispersion, (1,), cfg, len(village_windows(cfg)))
        if scan is not None and scan[0][0] > s:
            s, village_index = float(scan[0][0]), int(scan[2][0])
            village = series.evidence(village_index, len(dates), len(dates),
                                      float(scan[3][village_index]) * expected_volume, per_volume, window_days)
    expected = expected_volume * per_volume
    reason = window_volume_reason(observed, expected, window_days, tally.get("records"))
    past = [t for d, t in history.items() if start <= d <= history_end]
    usual = usual_counts(signal_history(past), observed)
    subject = window_subject(tally.get("subjects") or {}, window_days, subjects_model.sum_subjects(past),
                             len(dates), model.dispersion, cfg)
    result = assess(s, reason, tally, n_repeat_callers, gap_days, window_days == 1, cfg, usual, subject, village)
    return {"observed": observed, "expected": round(expected, 2), "score": result.score, "level": result.level,
            "reasons": result.reasons, "complete": result.complete}


def window_subject(window: Mapping[str, int], window_days: int, history: Mapping[str, int], history_days: int,
                   dispersion: float, cfg: Mapping, folds: dict[str, str] | None = None, tails: dict | None = None
                   ) -> subjects_model.SubjectEvidence | None:
    """The strongest subject of a window, corrected for the windows the batch looks through
    (``subjects.windows``), so the stream's window scores as the batch's day where it is the best.
    ``folds``: as for ``subjects.fold_names``; ``tails``: as for ``subjects.strongest``."""
    rules = cfg.get("subjects")
    if not rules or not window:
        return None
    return subjects_model.strongest(window, window_days, history, history_days, rules, len(rules["windows"]),
                                    dispersion if rules.get("series_dispersion", True) else 1.0, folds, tails)


# --------------------------------------------------------------------------------------------
# Village scan: a township's day also looks at its most surprising village
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VillageEvidence:
    village_code: str
    incidents: int
    records: int
    expected: float  # incidents, as the township's reason speaks
    window_days: int
    village_name: str | None = None  # the gazetteer's; the code where the scorer was given none

    def reason(self) -> str:
        """"其中宋集村：近3日5起（8条反映），预期约0.6起，高733%" (without a name: "其中村（社区）130528107206：…")."""
        place = self.village_name or f"村（社区）{self.village_code}"
        return f"其中{place}：" + window_volume_reason(self.incidents, self.expected, self.window_days, self.records)


def village_windows(cfg: Mapping) -> tuple[int, ...]:
    """The windows a township's villages are scanned through (default: the township's)."""
    return tuple(cfg["villages"].get("windows") or cfg["anomaly"]["windows"])


def village_reach(cfg: Mapping) -> int:
    """The longest village window, or 0 without the village scan."""
    return max(village_windows(cfg)) if cfg.get("villages") else 0


class VillageSeries:
    """A township's villages as arrays over its days (from the tallies' ``villages``), and the scan of
    each window against each village's share of the township (``baselines.subregion_surprisal``).

    A village's expected volume is the township's expected volume × the village's share of the
    township's history (shrunk towards an even share by ``villages.prior_events``), with the share's
    uncertainty: a village seldom heard from has a wide rate. A village's count varies as its share of
    the township's count does in its history (``baselines.share_dispersion``) plus its share of the
    township's own over-dispersion: variance = (φ_share + share × φ) × mean.
    """

    def __init__(self, tallies: list, cfg: Mapping, names: Mapping[str, str] | None = None):
        self.names = names or {}
        self.codes = sorted({code for t in tallies for code in (t.get("villages") or {})})
        index = {code: j for j, code in enumerate(self.codes)}
        self.incidents = np.zeros((len(self.codes), len(tallies)))
        self.records = np.zeros_like(self.incidents)
        for i, t in enumerate(tallies):
            for code, (n, r) in (t.get("villages") or {}).items():
                self.incidents[index[code], i], self.records[index[code], i] = n, r
        weight = report_weight(cfg)
        self.volume = self.incidents + weight * (self.records - self.incidents)
        self.informed = np.array([knows_villages(t) for t in tallies], dtype=bool)

    def scan(self, township_volume: np.ndarray, history: slice, scanned: slice, expected: np.ndarray,
             dispersion: float, windows, cfg: Mapping, n_windows: int | None = None):
        """(surprisal, window, village index; −1 where none counts) per ``scanned`` day and each village's
        share, or None when the history tells too few days' villages or the township has fewer than two.
        ``history``: the days the shares are learnt from; ``expected``: the township's expected volume on
        the scanned days; ``n_windows``: the windows to correct for, when only one of them is scanned."""
        rules = cfg.get("villages")
        informed = self.informed[history]
        if not rules or not self.codes or informed.sum() < rules["min_history_days"]:
            return None
        if len(self.codes) < 2:
            return None  # a single village is the township: nothing to scan
        daily = self.volume[:, history][:, informed]
        township = township_volume[history][informed]
        past = daily.sum(axis=1)
        prior = float(rules["prior_events"])
        shapes = past + prior / max(int((past > 0).sum()), 1)
        shares = shapes / (float(township.sum()) + prior)
        village_dispersion = (baselines.share_dispersion(daily, township, shares, rules["dispersion_prior_days"])
                              + shares * dispersion)
        s, w, r = baselines.subregion_surprisal(self.volume[:, scanned], shares, shapes, expected, village_dispersion,
                                                tuple(windows), past > 0, cfg["anomaly"]["min_observed"], n_windows)
        return s, w, r, shares

    def evidence(self, village: int, first: int, last: int, expected_volume: float, per_volume: float,
                 window_days: int) -> VillageEvidence:
        """What a reason says of village ``village`` over days first..last (indices into the tallies)."""
        span = slice(first, last + 1)
        code = self.codes[village]
        return VillageEvidence(code, int(self.incidents[village, span].sum()), int(self.records[village, span].sum()),
                               expected_volume * per_volume, window_days, self.names.get(code))


def first_caller_day(target_start: dt.date, cfg: Mapping) -> dt.date:
    """The first day whose callers ``score_series`` reads for a target period from ``target_start``: the
    repeat callers' lookback before the longest window (a township's or its villages') ending in the period."""
    windows = cfg["anomaly"]["windows"]
    lookback_days = cfg["contributions"]["repeat_callers"]["within_days"]
    return target_start - dt.timedelta(days=max(max(windows), village_reach(cfg)) + lookback_days)


def _month_starts(start: dt.date, end: dt.date) -> list[dt.date]:
    months, d = [], start.replace(day=1)
    while d <= end:
        months.append(d)
        d = (d + dt.timedelta(days=32)).replace(day=1)
    return months


def _month_end(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def score_series(daily: Mapping[dt.date, Mapping], *, target_start: dt.date, target_end: dt.date,
                 history_start: dt.date, township_code: str, village_code: str | None, domain: str,
                 gaps: Iterable[Gap] = (), parent_daily_counts: Mapping[dt.date, float] | np.ndarray | None = None,
                 n_siblings: int = 1, day_rows: str = "all", cfg: Mapping | None = None,
                 village_names: Mapping[str, str] | None = None, parent_fits: dict | None = None,
                 month_models: dict | None = None, window_scores: dict | None = None) -> list[dict]:
    """Day and month score rows of one series for the target period (whole months expected).

    ``daily``: date → tally over history_start..target_end. The expected counts for each month
    come from a model fitted on the days before that month. ``parent_daily_counts``: date → the
    parent region's volume, or those volumes on history_start..target_end (``dense_counts``; for
    siblings sharing one parent). ``day_rows``: ``all`` (every day),
    ``observed`` (days with incidents only, for village series) or ``none``. ``village_names``:
    as for ``score_window``. ``parent_fits``: a memo shared by series scored with the same ``cfg``
    (``baselines.expected_model``): a parent is fitted once, for its own series (scored first) and
    for its sparse children. ``month_models``, ``window_scores``: memos shared likewise (``_month_models``,
    ``_month_windows``).
    """
    cfg = cfg or config()
    windows = tuple(cfg["anomaly"]["windows"])
    min_observed = cfg["anomaly"]["min_observed"]
    lookback_days = cfg["contributions"]["repeat_callers"]["within_days"]
    gaps = list(gaps)
    # The statistic runs on the volume (incidents + weighted further reports); rows and reasons
    # speak in incidents, with the volume's expected count turned into incidents by the history's ratio.
    dates = list(_date_range(history_start, max((target_end - history_start).days + 1, 0)))
    # the days that have a tally, in day order (other days are empty): what the sums over days look at
    told = _told_days(daily, history_start, len(dates))
    told_at = [i for i, _ in told]
    naming = [(i, t["subjects"]) for i, t in told if t.get("subjects")]
    subject_days = [i for i, _ in naming]
    # the mentions on the subject days before each: a window's mentions without summing its subjects
    subject_mentions = list(itertools.accumulate((sum(named.values()) for _, named in naming), initial=0))
    tallies = [empty_tally()] * len(dates)
    day_incidents, day_records = [0] * len(dates), [0] * len(dates)
    for i, t in told:
        tallies[i], day_incidents[i], day_records[i] = t, t["incidents"], t["records"]
    incidents = np.array(day_incidents, dtype=float)
    counts = _volumes(incidents, np.array(day_records, dtype=float), report_weight(cfg))

    def index(d: dt.date) -> int:
        return (d - history_start).days  # the day's position in ``dates``

    parent = _parent_counts(parent_daily_counts, history_start, target_end)
    villages = VillageSeries(tallies, cfg, village_names) if village_code is None and cfg.get("villages") else None
    feed_totals: dict = {}
    for d, t in daily.items():
        if d < target_start and (t["records"] or t["incidents"]):
            for feed, n in t["feeds"].items():
                feed_totals[feed] = feed_totals.get(feed, 0) + n
    total = sum(feed_totals.values())
    min_share = cfg["gaps"]["min_feed_share"]
    # Without history every feed counts; otherwise only feeds that carry a real share of the series.
    feeds = [f for f in schemas.FEEDS if not total or feed_totals.get(f, 0) / total >= min_share]
    # the gaps that can touch this series, sorted out once rather than for each of its windows
    feed_set = set(feeds)
    gaps = [g for g in gaps if g.feed in feed_set and g.township_code in (township_code, None)]
    # Each caller's days from the first a window's lookback can reach: the lookback only tells who
    # called before, so a window needs its own callers' earlier records, not a merged tally. Only callers
    # heard on two days or more have earlier records to add (most are heard once: no list for them).
    first_heard, caller_days = {}, {}
    for i, t in told[bisect.bisect_left(told_at, index(first_caller_day(target_start, cfg))):]:
        for key, n in t["callers"].items():
            if key in caller_days:
                caller_days[key].append((i, n))
            elif key in first_heard:
                caller_days[key] = [first_heard[key], (i, n)]
            else:
                first_heard[key] = (i, n)

    def span(first: int, last: int) -> tuple[Mapping, int]:
        told = [t for t in tallies[first:last + 1] if t["records"] or t["incidents"]]
        # one day with reports (a village's day, mostly): its tally is the sum, as merge_tallies gives it
        period = told[0] if len(told) == 1 else merge_tallies(told, places=False)
        lo = max(0, first - lookback_days)
        # only callers short of a repeat within the period and heard on another day need their earlier records
        before = {key: sum(n for day, n in caller_days[key] if lo <= day < first)
                  for key, n in period["callers"].items() if n < REPEAT_MIN_RECORDS and key in caller_days}
        return period, repeat_callers(period, {"callers": before})

    tails: dict = {}  # the subjects' tails (``subjects.strongest``), over all days of the series
    rows = []
    for month in _month_starts(target_start, target_end):
        m_first, m_last = index(max(month, target_start)), index(min(_month_end(month), target_end))
        fitted = baselines.expected_model(dates[:m_first], counts[:m_first], cfg["expected"],
                                          None if parent is None else parent[:m_first], n_siblings, parent_fits)
        model, window_dispersion = _month_models([(fitted, counts[:m_first])], dates[:m_first], windows,
                                                 cfg["expected"], month_models)[0]
        history_volume = float(counts[:m_first].sum())
        per_volume = float(incidents[:m_first].sum()) / history_volume if history_volume else 1.0
        # Windows ending early in the month reach back into history; the month's model predicts
        # those days too, so a window's observed and expected cover the same days.
        lo = max(0, m_first - max(windows) + 1)
        mu = np.full(len(dates), np.nan)
        mu[lo:m_last + 1], s_part, w_part, expected_volume, month_surprisal = _month_windows(
            [(model, window_dispersion, counts[lo:m_last + 1])], dates[lo:m_last + 1], m_last + 1 - m_first, windows,
            min_observed, window_scores)[0]
        history_first = max(0, m_first - cfg["expected"]["max_history_days"])
        # Without enough history (a warehouse's first weeks: ``history_start`` is where the feeds' coverage
        # begins) no count is compared with an expectation: the signals still score, the reasons say why the
        # volume does not. ``complete`` still speaks of the data only (feed gaps).
        baselined = m_first - history_first >= cfg["expected"]["warn_min_history_days"]
        if not baselined:
            s_part, w_part, month_surprisal = np.zeros_like(s_part), np.ones_like(w_part), 0.0
        # a village's burst scores the township's day when it is more surprising than the township's count
        scan = None if villages is None or not baselined else villages.scan(counts, slice(history_first, m_first),
                                                           slice(lo, m_last + 1), mu[lo:m_last + 1],
                                                           model.dispersion, village_windows(cfg), cfg)
        # per day: the village, its window and surprisal where a village is more surprising than the township
        area, area_w, area_s = np.full(len(dates), -1), np.ones(len(dates), dtype=int), np.zeros(len(dates))
        if scan is not None:
            v_s, v_w, v_r, shares = scan
            wins = v_s > s_part
            area[lo:m_last + 1], area_w[lo:m_last + 1], area_s[lo:m_last + 1] = np.where(wins, v_r, -1), v_w, v_s
        surprisal = np.concatenate([np.zeros(lo), s_part])
        best_w = np.concatenate([np.ones(lo, dtype=int), w_part])
        base = dict(township_code=township_code, village_code=village_code, domain=domain)
        # the history's days that have a tally, in order: the sums skip empty days
        history_told = [t for _, t in told[bisect.bisect_left(told_at, history_first):
                                           bisect.bisect_left(told_at, m_first)]]
        history = signal_history(history_told)
        subject_history = subjects_model.sum_subjects(history_told)
        folds: dict[str, str] = {}
        if day_rows != "none":
            def window_assessment(i: int, w: int, s: float, subject, village_index: int = -1) -> Assessment:
                """Day ``i`` scored through its ``w``-day window (contributions over that window)."""
                first = max(0, i - w + 1)
                tally, n_repeat = span(first, i)
                expected = float(mu[first:i + 1].sum())
                # whole counts: summed as Python ints, exactly what the float arrays' sums give
                observed = int(sum(day_incidents[first:i + 1]))
                reports = int(sum(day_records[first:i + 1]))
                reason = (window_volume_reason(observed, expected * per_volume, w, reports) if baselined else
                          unbaselined_reason(window_count(observed, w, reports), m_first - history_first))
                gap_days = gaps_for(gaps, township_code, feeds, dates[first:i + 1])
                usual = usual_counts(history_before(history, tallies[first:m_first]), observed)
                village = None if village_index < 0 else villages.evidence(
                    village_index, first, i, float(shares[village_index]) * expected, per_volume, w)
                return assess(s, reason, tally, n_repeat, gap_days, w == 1, cfg, usual, subject, village)

            for i in range(m_first, m_last + 1):
                if day_rows == "observed" and incidents[i] == 0:
                    continue
                subject = _day_subject(tallies, i, subject_history, m_first, m_first - history_first,
                                       model.dispersion, cfg, subject_days, subject_mentions, folds, tails)
                a = window_assessment(i, int(best_w[i]), float(surprisal[i]), subject)
                if area[i] >= 0:
                    # a village's window may be shorter than the township's best: the day keeps the higher score
                    # of the two, so the scan never lowers it (the stream scores each window this way)
                    a = max(window_assessment(i, int(area_w[i]), float(area_s[i]), subject, int(area[i])), a,
                            key=lambda assessment: assessment.score)
                rows.append(_row("day", dates[i], int(incidents[i]),
                                 float(mu[i]) * per_volume if baselined else None, a, base))
        observed = int(incidents[m_first:m_last + 1].sum())
        previous = [int(incidents[index(p):index(_month_end(p)) + 1].sum()) for p in _previous_months(month, 3)
                    if p >= history_start]
        tally, n_repeat = span(m_first, m_last)
        gap_days = gaps_for(gaps, township_code, feeds, dates[m_first:m_last + 1])
        reason = month_volume_reason(observed, expected_volume * per_volume, previous)
        if not baselined:
            reason = unbaselined_reason(f"本月{observed}起", m_first - history_first)
        a = assess(month_surprisal, reason, tally, n_repeat, gap_days, False, cfg, usual_counts(history, observed))
        rows.append(_row("month", month, observed, expected_volume * per_volume if baselined else None, a, base))
    return rows


def _month_models(series: list, dates: list, windows: tuple, cfg: Mapping, memo: dict | None) -> list:
    """For each (``fitted``, history ``counts`` on ``dates``) of ``series``: the month's model at the series' recent
    level (``baselines.at_recent_levels``) and its windows' dispersions (``baselines.window_dispersions_many``),
    computed together for the series not in ``memo``. ``memo``: shared by series scored with the same ``cfg`` and
    period, keyed by the fit and the history: the sparse villages of a township with the same history (in a first
    month, none) pool the same fit, and get the same model and dispersions; ``fit_ahead`` fills it for a domain's
    series at once."""
    def compute(missing: list) -> list:
        fitted, counts = [f for f, _ in missing], [c for _, c in missing]
        return list(zip(baselines.at_recent_levels(fitted, dates, counts, cfg),
                        baselines.window_dispersions_many(fitted, dates, counts, windows, cfg)))

    keys = [(fitted, dates[0] if dates else None, counts.tobytes(), windows) for fitted, counts in series]
    return _together(series, keys, compute, memo)


def _month_windows(series: list, dates: list, month_days: int, windows: tuple, min_observed: float,
                   memo: dict | None) -> list:
    """For each (month ``model``, its windows' ``dispersions``, the series' volumes on ``dates``) of ``series``: the
    model's expected volumes on ``dates``, each day's window surprisal and best window (``baselines.window_surprisal``),
    and the month's (its last ``month_days`` days') expected volume and surprisal (0 below ``min_observed``).
    Computed together, one row per series, for the series not in ``memo``: each row's sums and tails are the series'
    own, bit for bit. ``memo``: shared by series scored with the same ``cfg`` (its ``windows`` and ``min_observed``)
    and period; ``fit_ahead`` fills it for a domain's series at once."""
    def compute(missing: list) -> list:
        models = [model for model, _, _ in missing]
        mu = np.stack([model.predict(dates) for model in models])
        counts = np.stack([counts for _, _, counts in missing])
        s, w = baselines.window_surprisal(counts, mu, np.stack([dispersions for _, dispersions, _ in missing])
                                          [:, :, None], windows, min_observed)
        month = slice(len(dates) - month_days, len(dates))
        observed, expected = counts[:, month].sum(axis=1), mu[:, month].sum(axis=1)
        month_surprisal = np.zeros(len(models))
        counted = observed >= min_observed
        if counted.any():
            month_surprisal[counted] = baselines.surprisal(observed[counted], expected[counted],
                                                           np.array([model.dispersion for model in models])[counted])
        return list(zip(mu, s, w, expected.tolist(), month_surprisal.tolist()))

    keys = [(model, dates[0], dispersions.tobytes(), counts.tobytes()) for model, dispersions, counts in series]
    return _together(series, keys, compute, memo)


def _together(items: list, keys: list, compute: Callable[[list], list], memo: dict | None) -> list:
    """``compute`` of each of ``items`` (one result per item, in order), through ``memo`` by ``keys``: the items
    whose key is not there yet (one per key) computed in one call."""
    memo = {} if memo is None else memo
    missing = {}
    for key, item in zip(keys, items):
        if key not in memo:
            missing.setdefault(key, item)
    if missing:
        memo.update(zip(missing, compute(list(missing.values()))))
    return [memo[key] for key in keys]


def _parent_counts(parent_daily_counts, history_start: dt.date, target_end: dt.date) -> np.ndarray | None:
    """``score_series``' ``parent_daily_counts`` as volumes on history_start..target_end."""
    if isinstance(parent_daily_counts, Mapping):
        return dense_counts(parent_daily_counts, history_start, target_end)[1]
    return parent_daily_counts


def fit_ahead(series: Iterable[tuple[Mapping, Any, int]], *, target_start: dt.date, target_end: dt.date,
              history_start: dt.date, cfg: Mapping, parent_fits: dict, month_models: dict | None = None,
              window_scores: dict | None = None) -> None:
    """Fit together (``baselines.fit_ahead``), into the memo ``parent_fits``, the expected models that
    ``score_series`` will need for each (``daily``, ``parent_daily_counts``, ``n_siblings``) of ``series`` (its
    arguments of those names) with the same period, ``cfg`` and memos: scored one by one, the series find them
    there; and with ``month_models`` and ``window_scores``, their month models and windows' dispersions, and
    their days' window surprisals likewise (``_month_models``, ``_month_windows``).
    ``daily`` may also be the series' volumes on history_start..target_end (``dense_counts``), where at hand."""
    dates = dense_counts({}, history_start, target_end)[0]
    weight = report_weight(cfg)
    windows = tuple(cfg["anomaly"]["windows"])
    histories = []
    for daily, parent, n_siblings in series:
        counts = daily
        if isinstance(daily, Mapping):
            counts = dense_volumes(daily, history_start, target_end, weight)
        histories.append((counts, _parent_counts(parent, history_start, target_end), n_siblings))
    for month in _month_starts(target_start, target_end):
        m_first = (max(month, target_start) - history_start).days
        before = [(counts[:m_first], None if parent is None else parent[:m_first], n_siblings)
                  for counts, parent, n_siblings in histories]
        baselines.fit_ahead(dates[:m_first], [(counts, parent) for counts, parent, _ in before], cfg["expected"],
                            parent_fits)
        if month_models is None or window_scores is None:
            continue
        fitted = [baselines.expected_model(dates[:m_first], counts, cfg["expected"], parent, n_siblings,
                                           parent_fits) for counts, parent, n_siblings in before]
        models = _month_models([(f, counts) for f, (counts, _, _) in zip(fitted, before)], dates[:m_first], windows,
                               cfg["expected"], month_models)
        lo, m_last = max(0, m_first - max(windows) + 1), (min(_month_end(month), target_end) - history_start).days
        _month_windows([(model, dispersions, counts[lo:m_last + 1])
                        for (model, dispersions), (counts, _, _) in zip(models, histories)],
                       dates[lo:m_last + 1], m_last + 1 - m_first, windows, cfg["anomaly"]["min_observed"],
                       window_scores)


def _day_subject(tallies: list, i: int, history: Mapping[str, int], history_end: int, history_days: int,
                 dispersion: float, cfg: Mapping, subject_days: list[int], subject_mentions: list[int],
                 folds: dict[str, str] | None = None, tails: dict | None = None
                 ) -> subjects_model.SubjectEvidence | None:
    """The most surprising subject over the windows ending on day ``i`` (``subjects.windows``).

    ``history``: subject counts of the ``history_days`` days before ``history_end`` (the month's first day).
    A window reaching back before the month is compared with the days before the window only, as the
    stream's ``score_window`` compares it: the days it shares with the history are taken out of both.
    ``subject_days``: the positions of the days whose tallies name a subject, in order; ``subject_mentions``: the
    mentions on those days before each (one more, the last is all of them).
    ``folds``: names folded onto ``history`` (``subjects.fold_names``), kept over the month's days; ``tails``: as for
    ``subjects.strongest``."""
    rules = cfg.get("subjects")
    if not rules:
        return None
    last = bisect.bisect_right(subject_days, i)
    best = None
    for w in rules["windows"]:
        first = max(0, i - w + 1)
        held = bisect.bisect_left(subject_days, first)
        if subject_mentions[last] - subject_mentions[held] < rules["min_incidents"]:
            continue  # no subject of the window has enough mentions to be evidence (most windows): none summed
        window = subjects_model.sum_subjects(tallies[d] for d in subject_days[held:last])
        past, past_days = history, history_days
        # a window reaching back before the month: its own days out of the history
        if first < history_end:
            shared = subjects_model.sum_subjects(tallies[first:history_end])
            past = Counter({k: n - shared.get(k, 0) for k, n in history.items() if n > shared.get(k, 0)})
            past_days = history_days - (history_end - first)
        evidence = window_subject(window, w, past, past_days, dispersion, cfg, folds if past is history else None,
                                  tails)
        if evidence is not None and (best is None or evidence.surprisal > best.surprisal):
            best = evidence
    return best


def _previous_months(month: dt.date, n: int) -> list[dt.date]:
    out, d = [], month
    for _ in range(n):
        d = (d - dt.timedelta(days=1)).replace(day=1)
        out.append(d)
    return out


def _row(period: str, start: dt.date, observed: int, expected: float | None, a: Assessment, base: Mapping) -> dict:
    """A score row; ``expected`` None where the history is too short to estimate it (``warn_min_history_days``):
    no number a reader could take for "none expected"."""
    return {"period": period, "period_start": start, **base, "observed": observed,
            "expected": None if expected is None else round(expected, 2), "score": a.score, "level": a.level,
            "reasons": a.reasons, "complete": a.complete}
