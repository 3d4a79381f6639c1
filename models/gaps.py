"""Data gaps: a feed that sent nothing, or far too little, for a township (or the county) on a day.

A quiet month must not read as a calm month. ``find_gaps`` compares each feed × township × day
record count with the same feed × township's own recent history (same weekday first, so a feed
that never reports on Sundays is not a gap every Sunday) and lists the days far below it.
Input and output are plain rows so the quality checks (great-expectations) can reuse them.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Iterable, Mapping, NamedTuple

import numpy as np
from scipy import stats

import schemas


class Gap(NamedTuple):
    feed: str
    township_code: str | None  # None: the whole feed (all townships together)
    date: dt.date
    observed: int
    expected: float


def gap_config() -> dict:
    return schemas.load("scoring.yaml")["gaps"]


def find_gaps(daily_counts: Iterable[tuple[str, str | None, dt.date, int]], start: dt.date, end: dt.date,
              config: dict | None = None) -> list[Gap]:
    """Gaps on days ``start..end`` (inclusive) from (feed, township_code, date, records) rows.

    Rows may cover any history before ``start``; days with no row count as zero. The feed-wide
    series (township_code None) is derived here by summing the townships, so a whole-feed outage
    shows once per day as well as per township.
    """
    cfg = config or gap_config()
    history_days = int(cfg["history_days"])
    series: dict[tuple, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    for feed, township, date, n in daily_counts:
        series[(feed, township)][date] += int(n)
        if township is not None:
            series[(feed, None)][date] += int(n)
    gaps = []
    n_days = (end - start).days + 1
    # A township's counts are small and over-dispersed: one empty day in a few hundred is noise
    # across a county's township-days, while an outage lasts. Feed-wide days stand alone.
    township_run = int(cfg.get("township_min_run_days", 1))
    for (feed, township), counts in sorted(series.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        run: list[Gap] = []
        for offset in range(n_days + 1):
            day = start + dt.timedelta(days=offset)
            gap = _gap_on(feed, township, counts, day, history_days, cfg) if offset < n_days else None
            if gap is not None:
                run.append(gap)
                continue
            if len(run) >= (1 if township is None else township_run):
                gaps.extend(run)
            run = []
    return gaps


def _gap_on(feed: str, township: str | None, counts: dict[dt.date, int], day: dt.date, history_days: int,
            cfg: dict) -> Gap | None:
    expected = _usual_count(counts, day, history_days)
    observed = counts.get(day, 0)
    if expected < cfg["min_expected"] or observed >= cfg["max_ratio"] * expected:
        return None
    # Far below the usual count and unlikely under Poisson noise: not just a quiet day.
    if stats.poisson.cdf(observed, expected) < cfg["max_probability"]:
        return Gap(feed, township, day, observed, round(expected, 1))
    return None


def coverage_start(daily_records: Mapping[dt.date, int], end: dt.date, config: dict | None = None,
                   min_ratio: float | None = None) -> dt.date | None:
    """The first day the feeds cover: all feeds' records that day reach ``min_ratio`` (default
    ``coverage_min_ratio``) of their usual day, the median of the last ``coverage_usual_days`` days with records
    up to ``end``. The days before are unknown, not quiet: a month's files carry a few late records of the months
    before, and a warehouse's first month is preceded by nothing. None: no records up to ``end``."""
    cfg = config or gap_config()
    min_ratio = cfg["coverage_min_ratio"] if min_ratio is None else min_ratio
    days = sorted(d for d, n in daily_records.items() if n > 0 and d <= end)
    if not days:
        return None
    usual = float(np.median([daily_records[d] for d in days if (end - d).days < cfg["coverage_usual_days"]] or [0]))
    return next(d for d in days if daily_records[d] >= min_ratio * usual)


def _usual_count(counts: dict[dt.date, int], day: dt.date, history_days: int) -> float:
    """Median of the same weekday over the history window, or of all days if the weekday median is 0."""
    history = [counts.get(day - dt.timedelta(days=k), 0) for k in range(1, history_days + 1)]
    if not any(history):
        return 0.0
    same_weekday = history[6::7]
    weekday_median = float(np.median(same_weekday))
    return weekday_median if weekday_median > 0 else 0.0


def gaps_for(gaps: Iterable[Gap], township_code: str | None, feeds: Iterable[str], dates: Iterable[dt.date]) -> dict[str, int]:
    """Days of gap per feed that touch a township's series (its own or a feed-wide gap) on ``dates``."""
    if not gaps:
        return {}  # a month without gaps (most): no sets to make for each of its windows
    feeds = set(feeds)
    dates = set(dates)
    days: dict[str, set] = defaultdict(set)
    for g in gaps:
        if g.feed in feeds and g.date in dates and g.township_code in (township_code, None):
            days[g.feed].add(g.date)
    return {feed: len(d) for feed, d in sorted(days.items())}
