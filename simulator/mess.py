"""The mess of real feeds: outages, late arrival, repeated exports, broken rows, traditional text.

Which rows are affected is decided here, on the record table; the writers in ``feeds.py`` apply the
damage in each file's own format, so every broken row breaks in exactly one, known way.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import opencc

import schemas
from simulator.county import County
from simulator.records import Records
from simulator.volumes import DAY, Calendar

# The quarantine reason codes (docs/architecture.md) each file format can plant faithfully: an
# XLSX cell cannot carry a wrong byte, a 110 call has no status that the contract checks.
BROKEN_REASONS = {
    "hotline_12345": ["bad_time", "missing_field", "future_time", "unknown_value"],
    "police_110": ["bad_time", "missing_field", "future_time", "encoding_error", "malformed_row"],
    "grid": ["bad_time", "missing_field", "future_time", "unknown_value", "encoding_error", "malformed_row"],
}
# Required fields a clerk leaves empty (the ids of schemas/feeds/*.yaml).
MISSING_FIELDS = {
    "hotline_12345": ["text", "source_category", "source_id"],
    "police_110": ["text", "source_category", "source_id"],
    "grid": ["text", "source_category", "grid_code", "source_id"],
}
# Status words of systems the contract does not know.
UNKNOWN_STATUS = ["挂起", "已归档", "待审核", "作废", "延期办理", "已转办"]
BAD_TIMES = ["待补录", "0000-00-00 00:00:00", "1900-01-00", "#VALUE!", "时间不详", "2026-1O-03"]
DUPLICATE_SHARE = 0.012
# Delay between the event and its export: most within hours, a tail of days.
LATE_TAIL_SHARE = {"hotline_12345": 0.04, "police_110": 0.02, "grid": 0.08}
# Sources that write traditional characters: the grid app of some townships (a phone set to a
# traditional locale), and 12345 web messages from such phones.
TRADITIONAL_TOWNSHIPS = 1
TRADITIONAL_12345_SHARE = 0.02


@dataclass
class Outage:
    feed: str
    township: int  # -1: the whole feed
    start_day: int
    end_day: int  # inclusive

    def truth(self, county: County, cal: Calendar) -> dict:
        return {
            "feed": self.feed,
            "township_code": county.townships[self.township].code if self.township >= 0 else None,
            "start": (cal.first + dt.timedelta(days=self.start_day)).isoformat(),
            "end": (cal.first + dt.timedelta(days=self.end_day)).isoformat(),
        }


def plan_outages(county: County, cal: Calendar, rng: np.random.Generator) -> list[Outage]:
    """A system migration silences a whole feed for a day or three; a township's grid workers
    stop reporting for a week or so (a vacancy, a broken app)."""
    months = max(1, cal.days // 30)
    outages = []
    for feed in schemas.FEEDS:
        for _ in range(max(1, int(rng.poisson(months / 5)))):
            whole = feed != "grid" or rng.random() < 0.3
            length = int(rng.integers(1, 4)) if whole else int(rng.integers(5, 11))
            start = int(rng.integers(0, max(1, cal.days - length)))
            township = -1 if whole else int(rng.integers(len(county.townships)))
            outages.append(Outage(feed, township, start, min(start + length - 1, cal.days - 1)))
    return outages


def silenced(records: Records, outages: list[Outage], cal: Calendar) -> np.ndarray:
    """Mask of the records that an outage kept out of the feed."""
    day = records.ts // DAY - cal.epoch_day0
    mask = np.zeros(len(records), dtype=bool)
    for o in outages:
        hit = (records.feed == schemas.FEEDS.index(o.feed)) & (day >= o.start_day) & (day <= o.end_day)
        if o.township >= 0:
            hit &= records.township == o.township
        mask |= hit
    return mask


def arrival_times(records: Records, outages: list[Outage], cal: Calendar, rng: np.random.Generator) -> np.ndarray:
    """When each record reached the export: hours later, a tail of days (a record of the 30th in
    next month's file)."""
    n = len(records)
    delay = rng.exponential(4 * 3600, size=n).astype(np.int64)
    tail_share = np.array([LATE_TAIL_SHARE[f] for f in schemas.FEEDS])[records.feed]
    tail = rng.random(n) < tail_share
    delay = np.where(tail, rng.integers(DAY, 10 * DAY, size=n), delay)
    arrival = records.ts + delay
    # A silent feed exports nothing; what was on its way arrives with the backlog after the outage.
    for o in outages:
        if o.township >= 0:
            continue
        day = arrival // DAY - cal.epoch_day0
        held = (records.feed == schemas.FEEDS.index(o.feed)) & (day >= o.start_day) & (day <= o.end_day)
        arrival = np.where(held, (cal.epoch_day0 + o.end_day + 1) * DAY + arrival % DAY, arrival)
    return np.minimum(arrival, cal.end_seconds - 1)


def duplicate_plan(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows exported again: their indexes, and whether the copy goes into the next file (with the
    status it has by then) rather than again into the same file."""
    index = np.flatnonzero(rng.random(n) < DUPLICATE_SHARE)
    return index, rng.random(len(index)) < 0.5


def broken_plan(feeds: np.ndarray, exclude: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Reason code (or '') per row; rows in `exclude` (repeated exports) stay intact."""
    reasons = np.full(len(feeds), "", dtype=object)
    chosen = (rng.random(len(feeds)) < share) & ~exclude
    for fi, feed in enumerate(schemas.FEEDS):
        idx = np.flatnonzero(chosen & (feeds == fi))
        options = BROKEN_REASONS[feed]
        reasons[idx] = np.array(options, dtype=object)[rng.integers(len(options), size=len(idx))]
    return reasons


def traditional_mask(records: Records, county: County, rng: np.random.Generator) -> np.ndarray:
    grid_towns = rng.choice(len(county.townships), size=TRADITIONAL_TOWNSHIPS, replace=False)
    grid = (records.feed == schemas.FEEDS.index("grid")) & np.isin(records.township, grid_towns)
    hotline = (records.feed == schemas.FEEDS.index("hotline_12345")) & (rng.random(len(records)) < TRADITIONAL_12345_SHARE)
    return grid | hotline


def to_traditional(texts: list[str], mask: np.ndarray) -> list[str]:
    converter = opencc.OpenCC("s2t")
    return [converter.convert(t) if m else t for t, m in zip(texts, mask)]


def bad_time_value(good: str, k: int) -> str:
    """A time a clerk or a system got wrong: an impossible date or hour, or a placeholder."""
    if k % 3 == 0:
        return BAD_TIMES[k % len(BAD_TIMES)]
    if k % 3 == 1:  # month 13
        return good[:5] + "13" + good[7:] if good[4] == "-" else f"{good[:4]}-13-01 08:00:00"
    return good[:11] + "25" + good[13:] if good[4] == "-" and len(good) > 13 else "2026-02-30 09:00:00"


def future_year(year: int) -> int:
    """A typo that lands the year far ahead (2026 → 2062), beyond any export's own date."""
    swapped = int(str(year)[:2] + str(year)[3] + str(year)[2])
    return swapped if swapped > year + 5 else year + 10
