"""How many records, when: rates per feed and situation, hour and weekday rhythm, seasons, holidays.

Times are seconds since 1970-01-01 on the Asia/Shanghai wall clock (the county has one time zone),
so calendar arithmetic stays integer arithmetic; writers attach +08:00.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

import schemas
from simulator.county import County, sample_grids, sample_villages

DATA_DIR = Path(__file__).resolve().parent / "data"
DAY = 86_400

# Share of the ~1 event per person per year that each feed carries (DESIGN.md).
FEED_SHARE = {"hotline_12345": 0.40, "police_110": 0.45, "grid": 0.15}
EVENTS_PER_PERSON_YEAR = 1.0

# Lunar new year's day; the calendar cannot be computed cheaply, so it is looked up.
SPRING_FESTIVAL = {
    2020: dt.date(2020, 1, 25), 2021: dt.date(2021, 2, 12), 2022: dt.date(2022, 2, 1),
    2023: dt.date(2023, 1, 22), 2024: dt.date(2024, 2, 10), 2025: dt.date(2025, 1, 29),
    2026: dt.date(2026, 2, 17), 2027: dt.date(2027, 2, 6), 2028: dt.date(2028, 1, 26),
    2029: dt.date(2029, 2, 13), 2030: dt.date(2030, 2, 3), 2031: dt.date(2031, 1, 23),
}

# Relative volume by hour of day (0..23).
HOUR_PROFILES = {
    "office": [0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 1, 2.5, 3.5, 3.5, 3, 1.8, 2.2, 3.2, 3.2, 2.8, 2, 1, 0.7, 0.5, 0.4, 0.2, 0.1],
    "day": [0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.6, 1.4, 2.2, 2.6, 2.6, 2.4, 2, 2, 2.4, 2.4, 2.3, 2.1, 1.8, 1.5, 1.2, 0.9, 0.6, 0.4],
    "evening": [0.6, 0.3, 0.2, 0.1, 0.1, 0.1, 0.3, 0.6, 0.8, 0.9, 1, 1.1, 1.2, 1, 1, 1, 1.2, 1.6, 2.2, 2.6, 2.6, 2.2, 1.6, 1],
    "night": [2.4, 2, 1.4, 0.8, 0.4, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.9, 1, 1.3, 1.7, 2.2, 2.6, 2.8, 2.7],
    "traffic": [0.4, 0.3, 0.2, 0.2, 0.2, 0.4, 1, 2.6, 2.8, 1.6, 1.3, 1.4, 1.6, 1.3, 1.3, 1.4, 1.8, 2.7, 2.8, 1.8, 1.2, 0.9, 0.7, 0.5],
    "any": [0.6, 0.5, 0.4, 0.3, 0.3, 0.4, 0.6, 0.9, 1.1, 1.2, 1.2, 1.2, 1.1, 1.1, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2, 1.1, 1, 0.9, 0.7],
}


@lru_cache(maxsize=None)
def situations() -> list[dict]:
    with open(DATA_DIR / "situations.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)["situations"]


@dataclass
class Calendar:
    """The simulated days and what each of them is."""

    first: dt.date
    days: int

    @classmethod
    def from_month(cls, start: str, months: int) -> "Calendar":
        year, month = (int(x) for x in start.split("-"))
        first = dt.date(year, month, 1)
        end_month = month - 1 + months
        end = dt.date(year + end_month // 12, end_month % 12 + 1, 1)
        for y in range(first.year, end.year + 2):
            if y not in SPRING_FESTIVAL:
                raise ValueError(f"no Spring Festival date for {y}; the simulator covers 2020–2030")
        return cls(first, (end - first).days)

    @property
    def epoch_day0(self) -> int:
        return (self.first - dt.date(1970, 1, 1)).days

    @property
    def end_seconds(self) -> int:
        return (self.epoch_day0 + self.days) * DAY

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range(self.days)]

    def month_of_day(self) -> np.ndarray:
        return np.array([d.month for d in self.dates()])

    def weekend(self) -> np.ndarray:
        return np.array([d.weekday() >= 5 for d in self.dates()])

    def _days_to_festival(self) -> np.ndarray:
        """Days from each date to the next or current Spring Festival (negative: after it)."""
        out = []
        for d in self.dates():
            sf_this, sf_next = SPRING_FESTIVAL[d.year], SPRING_FESTIVAL[d.year + 1]
            after_this = (d - sf_this).days
            out.append(-after_this if after_this <= 20 else (sf_next - d).days)
        return np.array(out)

    def festival(self) -> np.ndarray:
        """Spring Festival week (eve to the 6th day) and the National Day week."""
        to_sf = self._days_to_festival()
        national = np.array([d.month == 10 and d.day <= 7 for d in self.dates()])
        return ((to_sf <= 1) & (to_sf >= -6)) | national

    def pre_festival(self) -> np.ndarray:
        """The weeks before the Spring Festival when workers want their year's pay."""
        to_sf = self._days_to_festival()
        return (to_sf >= 2) & (to_sf <= 40)

    def school_term(self) -> np.ndarray:
        to_sf = self._days_to_festival()
        summer = np.array([(d.month == 7 and d.day >= 10) or d.month == 8 for d in self.dates()])
        winter = (to_sf <= 20) & (to_sf >= -15)
        return ~(summer | winter)

    def summer(self) -> np.ndarray:
        return np.isin(self.month_of_day(), [6, 7, 8])


def day_factors(sit: dict, cal: Calendar) -> np.ndarray:
    """Relative volume of a situation on each simulated day (season × weekday × holidays)."""
    f = np.ones(cal.days)
    if "season" in sit:
        f *= np.asarray(sit["season"], dtype=float)[cal.month_of_day() - 1]
    f *= np.where(cal.weekend(), sit.get("weekend", 1.0), 1.0)
    f *= np.where(cal.festival(), sit.get("festival", 1.0), 1.0)
    f *= np.where(cal.pre_festival(), sit.get("pre_festival", 1.0), 1.0)
    if sit.get("term"):
        f *= np.where(cal.school_term(), 1.0, 0.15)
    return f


def feed_daily_rate(population: int, feed: str) -> float:
    return population * EVENTS_PER_PERSON_YEAR * FEED_SHARE[feed] / 365.0


def situation_weights(feed: str) -> np.ndarray:
    w = np.array([s["rates"].get(feed, 0.0) for s in situations()], dtype=float)
    return w / w.sum()


def expected_daily(population: int, cal: Calendar) -> dict[str, np.ndarray]:
    """Per feed, the expected count per (day, situation), normalised so the yearly mean holds."""
    factors = np.stack([day_factors(s, cal) for s in situations()], axis=1)
    # Normalise each situation's factors over a whole year, not only the simulated days, so that a
    # two-month run in winter keeps the winter level rather than being rescaled to a yearly mean.
    year_cal = Calendar(dt.date(cal.first.year, 1, 1), 365)
    year_mean = np.stack([day_factors(s, year_cal) for s in situations()], axis=1).mean(axis=0)
    factors = factors / year_mean
    return {feed: feed_daily_rate(population, feed) * situation_weights(feed)[None, :] * factors for feed in schemas.FEEDS}


def hour_probabilities(profile: str) -> np.ndarray:
    p = np.asarray(HOUR_PROFILES[profile], dtype=float)
    return p / p.sum()


def sample_times(day: np.ndarray, profile: np.ndarray, cal: Calendar, rng: np.random.Generator) -> np.ndarray:
    """Wall-clock seconds for records on the given day indexes with the given hour-profile names."""
    hours = np.empty(len(day), dtype=np.int64)
    for name in HOUR_PROFILES:
        mask = profile == name
        if mask.any():
            hours[mask] = rng.choice(24, size=int(mask.sum()), p=hour_probabilities(name))
    seconds = rng.integers(0, 3600, size=len(day))
    return (cal.epoch_day0 + day.astype(np.int64)) * DAY + hours * 3600 + seconds


def township_weights(county: County, area: str) -> np.ndarray:
    pop = county.township_population
    urban = county.township_urban
    if area == "urban":
        w = pop * np.where(urban, 3.0, 0.4)
    elif area == "rural":
        w = pop * np.where(urban, 0.3, 2.0)
    else:
        w = pop
    return w / w.sum()


def baseline_counts(population: int, cal: Calendar, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Counts per (day, situation) for each feed: over-dispersed (gamma-Poisson), as real counts are."""
    out = {}
    for feed, lam in expected_daily(population, cal).items():
        day_noise = rng.gamma(60.0, 1 / 60.0, size=(cal.days, 1))  # weather, news, a busy Monday
        cell_noise = rng.gamma(25.0, 1 / 25.0, size=lam.shape)
        out[feed] = rng.poisson(lam * day_noise * cell_noise)
    return out


def mobile_numbers(n: int, rng: np.random.Generator) -> np.ndarray:
    from simulator.county import place_parts

    prefixes = np.array([int(p) for p in place_parts()["mobile_prefixes"]], dtype=np.int64)
    return prefixes[rng.integers(len(prefixes), size=n)] * 100_000_000 + rng.integers(0, 100_000_000, size=n)


def people_involved(domains: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grid workers count the parties: mostly one or two, disputes a few more."""
    base = 1 + rng.poisson(0.6, size=len(domains))
    many = rng.random(len(domains)) < 0.08
    return np.where(many, base + rng.integers(2, 8, size=len(domains)), base)


# Share of baseline records that another department also receives (a fight seen by 110 and the grid).
BASELINE_ECHO_SHARE = 0.03
# Habitual 12345 callers: a small pool of numbers behind a share of ordinary calls.
HABITUAL_CALLER_SHARE = 0.03


def baseline_records(county: County, cal: Calendar, rng: np.random.Generator) -> "Records":
    from simulator.records import Records

    domain_codes = schemas.domain_codes()
    sits = situations()
    counts = baseline_counts(county.population, cal, rng)
    parts = []
    for fi, feed in enumerate(schemas.FEEDS):
        for si, sit in enumerate(sits):
            per_day = counts[feed][:, si]
            n = int(per_day.sum())
            if n == 0:
                continue
            day = np.repeat(np.arange(cal.days), per_day)
            township = rng.choice(len(county.townships), size=n, p=township_weights(county, sit.get("area", "any")))
            parts.append(dict(
                feed=np.full(n, fi), situation=np.full(n, si), episode=np.full(n, -1),
                domain=np.full(n, domain_codes.index(sit["domain"])),
                ts=sample_times(day, np.full(n, sit.get("hours", "day")), cal, rng),
                township=township,
            ))
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = len(cols["feed"])
    cols["village"] = sample_villages(county, cols["township"], rng)
    cols["grid"] = sample_grids(county, cols["village"], rng)
    cols["escalated"] = np.zeros(n, dtype=bool)
    cols["people"] = people_involved(cols["domain"], rng)
    cols["incident"] = np.arange(n, dtype=np.int64)
    habitual = mobile_numbers(max(5, county.population // 5000), rng)
    is_habitual = (cols["feed"] == schemas.FEEDS.index("hotline_12345")) & (rng.random(n) < HABITUAL_CALLER_SHARE)
    cols["caller"] = np.where(is_habitual, habitual[rng.integers(len(habitual), size=n)], 0)
    records = Records(**cols)
    return Records.concat([records, _echoes(records, county, rng)])


def _echoes(records: "Records", county: County, rng: np.random.Generator) -> "Records":
    """Copies of some records as another feed received them, sharing the incident."""
    sits = situations()
    chosen = np.flatnonzero(rng.random(len(records)) < BASELINE_ECHO_SHARE)
    keep, feeds = [], []
    for i in chosen:
        others = [f for f, rate in sits[records.situation[i]]["rates"].items()
                  if rate > 0 and schemas.FEEDS.index(f) != records.feed[i]]
        if others:
            keep.append(i)
            feeds.append(schemas.FEEDS.index(others[rng.integers(len(others))]))
    echo = records.take(np.array(keep, dtype=np.int64))
    echo.columns["feed"] = np.array(feeds, dtype=np.int8)
    echo.columns["ts"] = echo.ts + rng.integers(600, 8 * 3600, size=len(echo))
    echo.columns["grid"] = sample_grids(county, echo.village, rng)
    echo.columns["caller"] = np.zeros(len(echo), dtype=np.int64)
    return echo
