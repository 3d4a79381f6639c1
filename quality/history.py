"""A feed's history as per-day aggregates, so that every batch compares with its reference days
without rescanning events: counts, filled key columns, category counts, hour-of-day counts and
region resolution, per day of event time."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.gaps import coverage_start, gap_config
from quality import suites

HOURS = list(range(24))


def event_dates(frame: pd.DataFrame) -> pd.Series:
    """``reported_at.dt.date``, made once per distinct day: ``.dt.date`` builds a date object per
    row (a county month's three months of history: ~250,000)."""
    times = frame["reported_at"]
    if getattr(times.dtype, "tz", None) is None or times.isna().any():
        return times.dt.date
    codes, days = pd.factorize(times.dt.tz_localize(None).dt.normalize())
    dates = np.empty(len(days), dtype=object)
    dates[:] = [d.date() for d in days]
    return pd.Series(dates[codes], index=times.index, name=times.name)


@dataclass
class DailyProfile:
    feed: str
    counts: pd.Series                 # date -> events
    filled: pd.DataFrame              # date x key column -> non-empty values
    categories: dict                  # column -> DataFrame date x value -> events
    hours: pd.DataFrame               # date x hour 0..23 -> events
    resolved: pd.Series               # date -> events with a resolved region

    @classmethod
    def from_events(cls, feed: str, events: pd.DataFrame, unresolved_value: str) -> "DailyProfile":
        frame = events[events["source"] == feed] if "source" in events else events
        dates = event_dates(frame)
        counts = frame.groupby(dates).size()
        filled = frame[suites.key_columns(feed)].notna().groupby(dates).sum()
        categories = {
            column: frame.groupby([dates, frame[column]]).size().unstack(fill_value=0)
            for column in suites.department_category_columns(feed)
        }
        hours = frame.groupby([dates, frame["reported_at"].dt.hour]).size().unstack(fill_value=0).reindex(columns=HOURS, fill_value=0)
        resolved = (frame["region_resolved_by"] != unresolved_value).groupby(dates).sum()
        return cls(feed, counts, filled, categories, hours, resolved)

    def reference_days(self, start: dt.date, end: dt.date, window_days: int) -> list[dt.date]:
        """Days around [start, end) to compare with: the window before and after, not the batch's own, and
        none before the feed's coverage begins (its late records of earlier weeks are no usual volume)."""
        low, high = start - dt.timedelta(days=window_days), end + dt.timedelta(days=window_days)
        low = max(low, self.covered_from) if self.covered_from else low
        return [d for d in self.counts.index if low <= d < high and not (start <= d < end)]

    @functools.cached_property
    def covered_from(self) -> dt.date | None:
        # A reference day is a usual day: one a gap's ratio below the usual volume is none (a feed's late
        # records thicken in the days before its first file's month, to ~5-20 % of a day's volume).
        daily = {d: int(n) for d, n in self.counts.items()}
        return coverage_start(daily, max(daily), min_ratio=gap_config()["max_ratio"]) if daily else None

    def expected_count(self, start: dt.date, end: dt.date, days: list[dt.date]) -> float:
        """Expected events in [start, end): per day the median of the same weekday among the
        reference days (all reference days where a weekday has fewer than 3)."""
        counts = self.counts.reindex(days)
        total = 0.0
        day = start
        while day < end:
            same = counts[[d.weekday() == day.weekday() for d in counts.index]]
            total += float((same if len(same) >= 3 else counts).median())
            day += dt.timedelta(days=1)
        return total

    def filled_share(self, days: list[dt.date]) -> pd.Series:
        n = self.counts.reindex(days).sum()
        return self.filled.reindex(days).sum() / n if n else pd.Series(dtype=float)

    def category_shares(self, column: str, days: list[dt.date]) -> pd.Series:
        table = self.categories[column].reindex(days).fillna(0).sum()
        total = table.sum()
        return (table[table > 0] / total) if total else pd.Series(dtype=float)

    def hour_shares(self, days: list[dt.date]) -> pd.Series:
        table = self.hours.reindex(days).fillna(0).sum()
        return table / table.sum() if table.sum() else pd.Series(dtype=float)

    def resolved_share(self, days: list[dt.date]) -> float | None:
        n = self.counts.reindex(days).sum()
        return float(self.resolved.reindex(days).sum() / n) if n else None
