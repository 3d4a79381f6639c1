"""Detection quality of day-level alarms against known episodes (the simulator's truth).

A *series* is a township × domain. An alarm day is a day whose statistic reaches the threshold
(RiskWatch: the day score at yellow, `levels.yellow`; EARS: the C2/C3 statistic). For every episode that
starts inside the evaluated period: detected when its series alarms on a day of the episode,
with the delay from the episode's first day to the first such alarm. A false alarm is a run of
consecutive alarm days of a series none of whose days lies within an episode of that series
(± ``margin`` days: the window statistics still see an episode's last reports a few days after
it ends, and one may start to show a little before the truth says it began). False alarms are
reported per series-year over every township × domain series, quiet ones included, since a
quiet series is where a false alarm would be the most misleading.

Everything here works on plain dates and numbers, so the same code scores RiskWatch, EARS and any
other method on identical series.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import statistics
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from models import baselines

Series = tuple  # (township_code, domain)


@dataclasses.dataclass(frozen=True)
class TruthEpisode:
    episode_id: str
    township_code: str
    village_code: str | None
    domain: str
    start: dt.date
    end: dt.date
    shape: str
    magnitude: int

    @property
    def series(self) -> Series:
        # A village episode counts at its township: that is where the score rows are compared.
        return self.township_code, self.domain


@dataclasses.dataclass(frozen=True)
class TruthRecord:
    domain: str
    incident_key: str
    episode_id: str | None


def load_episodes(path: str | Path) -> list[TruthEpisode]:
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return [TruthEpisode(episode_id=r["episode_id"], township_code=r["township_code"],
                         village_code=r.get("village_code"), domain=r["domain"],
                         start=dt.date.fromisoformat(r["start"]), end=dt.date.fromisoformat(r["end"]),
                         shape=r.get("shape", ""), magnitude=int(r.get("magnitude") or 0)) for r in rows]


def load_truth_records(path: str | Path) -> dict[str, TruthRecord]:
    """event_id (``<feed>:<source_id>``) → truth; duplicate export rows map to the same record."""
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            event_id = f"{row['feed']}:{row['source_id']}"
            if row.get("duplicate_of") and event_id in out:
                continue
            out[event_id] = TruthRecord(domain=row["domain"], incident_key=row["incident_key"],
                                        episode_id=row.get("episode_id") or None)
    return out


# --------------------------------------------------------------------------------------------
# Alarms → detections and false alarms
# --------------------------------------------------------------------------------------------

def alarm_runs(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Consecutive alarm days as (first, last) runs: a run is one alarm to the people acting on it."""
    runs: list[list[dt.date]] = []
    for d in sorted(set(days)):
        if runs and (d - runs[-1][1]).days == 1:
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return [(a, b) for a, b in runs]


@dataclasses.dataclass(frozen=True)
class EpisodeResult:
    episode: TruthEpisode
    detected: bool
    delay_days: int | None
    first_alarm: dt.date | None


@dataclasses.dataclass(frozen=True)
class Evaluation:
    episodes: list[EpisodeResult]
    false_alarms: int
    series_years: float

    @property
    def detected(self) -> int:
        return sum(r.detected for r in self.episodes)

    @property
    def sensitivity(self) -> float:
        return self.detected / len(self.episodes) if self.episodes else float("nan")

    @property
    def median_delay(self) -> float | None:
        delays = [r.delay_days for r in self.episodes if r.detected]
        return float(statistics.median(delays)) if delays else None

    @property
    def false_alarms_per_series_year(self) -> float:
        return self.false_alarms / self.series_years if self.series_years else float("nan")

    def summary(self) -> dict:
        def rounded(x, digits):
            return None if x != x else round(x, digits)  # NaN (nothing to divide by) → null in JSON

        return {"episodes": len(self.episodes), "detected": self.detected,
                "sensitivity": rounded(self.sensitivity, 4), "median_delay_days": self.median_delay,
                "false_alarms": self.false_alarms, "series_years": round(self.series_years, 2),
                "false_alarms_per_series_year": rounded(self.false_alarms_per_series_year, 3)}


def episodes_in_period(episodes: Iterable[TruthEpisode], start: dt.date, end: dt.date) -> list[TruthEpisode]:
    return [e for e in episodes if start <= e.start <= end]


def evaluate_alarms(alarms: Mapping[Series, Iterable[dt.date]], episodes: Iterable[TruthEpisode],
                    n_series: int, start: dt.date, end: dt.date, margin_days: int = 3) -> Evaluation:
    """Detections and false alarms of one method's alarm days over start..end (inclusive).

    ``alarms``: series → alarm days (days outside the period are ignored). ``n_series``: how
    many series were watched (every township × domain), the denominator of the false-alarm rate.
    """
    episodes = list(episodes)
    by_series: dict[Series, list[TruthEpisode]] = defaultdict(list)
    for e in episodes:
        by_series[e.series].append(e)
    margin = dt.timedelta(days=margin_days)
    alarm_days = {s: sorted(d for d in days if start <= d <= end) for s, days in alarms.items()}
    results = []
    for e in episodes_in_period(episodes, start, end):
        first = next((d for d in alarm_days.get(e.series, ()) if e.start <= d <= e.end), None)
        results.append(EpisodeResult(e, first is not None, None if first is None else (first - e.start).days, first))
    false_alarms = 0
    for series, days in alarm_days.items():
        spans = [(e.start - margin, e.end + margin) for e in by_series.get(series, ())]
        for first, last in alarm_runs(days):
            if not any(lo <= d <= hi for d in _days(first, last) for lo, hi in spans):
                false_alarms += 1
    years = n_series * ((end - start).days + 1) / 365.25
    return Evaluation(results, false_alarms, years)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# --------------------------------------------------------------------------------------------
# Day statistics: RiskWatch's scores and the EARS baselines on the same series
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DayStatistic:
    """One method's statistic per series and day; alarm when ≥ threshold."""

    name: str
    values: dict  # series → {date: value}
    operating_threshold: float

    def alarms(self, threshold: float) -> dict[Series, list[dt.date]]:
        return {s: [d for d, v in days.items() if v >= threshold] for s, days in self.values.items()}


def ears_statistic(daily_counts: Mapping[Series, Mapping[dt.date, float]], method: str, first_day: dt.date,
                   start: dt.date, end: dt.date) -> DayStatistic:
    """EARS C1/C2/C3 on each series' daily counts (history from ``first_day``), kept for start..end."""
    values = {}
    for series, daily in daily_counts.items():
        n = (end - first_day).days + 1
        dates = [first_day + dt.timedelta(days=i) for i in range(n)]
        stat = baselines.ears([daily.get(d, 0) for d in dates], method)
        values[series] = {d: float(v) for d, v in zip(dates, stat) if d >= start and not np.isnan(v)}
    # EARS alarms when the statistic exceeds its threshold; the next float up makes '≥' equivalent.
    return DayStatistic(f"EARS {method}", values, float(np.nextafter(baselines.EARS_THRESHOLDS[method], np.inf)))


def curve(statistic: DayStatistic, thresholds: Sequence[float], episodes, n_series: int, start: dt.date,
          end: dt.date, margin_days: int = 3) -> list[dict]:
    """Sensitivity, median delay and false alarms per series-year for each threshold."""
    rows = []
    for t in thresholds:
        ev = evaluate_alarms(statistic.alarms(t), episodes, n_series, start, end, margin_days)
        rows.append({"threshold": round(float(t), 4), **ev.summary()})
    return rows


def at_false_alarm_rate(rows: Sequence[Mapping], max_rate: float) -> dict | None:
    """The most sensitive point of a curve whose false-alarm rate is at most ``max_rate``
    (ties: the shorter median delay)."""
    ok = [r for r in rows if r["false_alarms_per_series_year"] is not None
          and r["false_alarms_per_series_year"] <= max_rate + 1e-9]
    if not ok:
        return None
    return max(ok, key=lambda r: (r["sensitivity"], -(r["median_delay_days"] or 1e9)))


def default_thresholds(values: Iterable[float], n: int = 60) -> list[float]:
    """Thresholds at quantiles of the positive values, denser towards the top: at about one false
    alarm per series-year only the top few thousandths of the days alarm."""
    v = np.array([x for x in values if x > 0], dtype=float)
    if v.size == 0:
        return [1.0]
    levels = 1.0 - 0.5 * np.logspace(0.0, -4.0, n)
    return [float(q) for q in np.unique(np.quantile(v, levels))]


# --------------------------------------------------------------------------------------------
# The curve as a picture
# --------------------------------------------------------------------------------------------

_COLOURS = ("#1f5fa8", "#e07b39", "#5a9e4b", "#8a5fb0")


def curve_svg(curves: Mapping[str, Sequence[Mapping]], max_rate: float = 5.0, title: str = "") -> str:
    """Sensitivity against false alarms per series-year, one line per method (inline SVG)."""
    width, height, left, bottom, top, right = 480, 320, 48, 40, 28, 12
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(rate):
        return left + plot_w * min(rate, max_rate) / max_rate

    def y(sens):
        return top + plot_h * (1.0 - sens)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="16">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#8a949e"/>']
    for k in range(6):
        rate = max_rate * k / 5
        parts.append(f'<text x="{x(rate):.1f}" y="{height - 24}" text-anchor="middle">{rate:g}</text>')
        parts.append(f'<text x="{left - 4}" y="{y(k / 5) + 4:.1f}" text-anchor="end">{k * 20}%</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">'
                 f'false alarms per township-domain-year</text>')
    parts.append(f'<line x1="{x(1):.1f}" y1="{top}" x2="{x(1):.1f}" y2="{top + plot_h}" stroke="#bbb" '
                 f'stroke-dasharray="4 3"/>')
    for i, (name, rows) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = sorted((r["false_alarms_per_series_year"], r["sensitivity"]) for r in rows
                     if r["false_alarms_per_series_year"] is not None and r["sensitivity"] is not None)
        path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pts if a <= max_rate)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + 8}" y="{top + 16 + 14 * i}" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
