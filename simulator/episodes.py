"""Risk episodes: planned with their truth, then turned into happenings reported across feeds."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

import schemas
from simulator.county import County, sample_grids, sample_villages
from simulator.records import Records
from simulator.volumes import (
    DAY,
    Calendar,
    expected_daily,
    mobile_numbers,
    sample_times,
    township_weights,
)

DATA_DIR = Path(__file__).resolve().parent / "data"
DURATION_DAYS = {"sudden": (4, 12), "gradual": (20, 50), "wave": (20, 40)}
# Episodes per month for a county of 200k people; bigger counties have more (square-root growth).
EPISODES_PER_MONTH_200K = 2.0


@lru_cache(maxsize=None)
def episode_catalog() -> dict:
    with open(DATA_DIR / "episodes.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@dataclass
class Episode:
    episode_id: str
    kind: str
    domain: str
    township: int
    village: int  # -1: spread over the township
    start_day: int
    end_day: int  # inclusive
    shape: str
    subject: str
    peak: float
    magnitude: int = 0

    @property
    def template(self) -> dict:
        return next(t for t in episode_catalog()["episodes"] if t["kind"] == self.kind)

    def intensity(self) -> np.ndarray:
        """Relative intensity (peak 1) on each day of the episode."""
        n = self.end_day - self.start_day + 1
        d = np.arange(n, dtype=float)
        if self.shape == "sudden":
            s = np.exp(-d / max(n / 3.0, 1.0))
        elif self.shape == "gradual":
            top = max(0.7 * n, 1.0)
            s = np.where(d < top, (d + 1) / top, 1 - 0.6 * (d - top) / max(n - top, 1.0))
        else:  # wave: two or three bumps
            bumps = 2 if n < 30 else 3
            centres = (np.arange(bumps) + 0.5) * n / bumps
            s = np.exp(-0.5 * ((d[:, None] - centres[None, :]) / (n / (4.0 * bumps))) ** 2).sum(axis=1)
        return np.clip(s / s.max(), 0.0, 1.0)

    def truth(self, county: County, cal: Calendar) -> dict:
        t = county.townships[self.township]
        first = cal.first
        return {
            "episode_id": self.episode_id,
            "township_code": t.code,
            "village_code": county.village_code[self.village] if self.village >= 0 else None,
            "domain": self.domain,
            "start": (first + dt.timedelta(days=self.start_day)).isoformat(),
            "end": (first + dt.timedelta(days=self.end_day)).isoformat(),
            "shape": self.shape,
            "magnitude": self.magnitude,
            "subject": self.subject,
            "description": self.template["description"].format(township=t.name, subject=self.subject),
        }


def _domain_daily_baseline(county: County, cal: Calendar) -> dict[str, float]:
    """Expected records per day of each domain in the whole county, over all feeds."""
    from simulator.volumes import situations

    out: dict[str, float] = {}
    for lam in expected_daily(county.population, cal).values():
        for si, sit in enumerate(situations()):
            out[sit["domain"]] = out.get(sit["domain"], 0.0) + float(lam[:, si].mean())
    return out


def _kind_weight(template: dict, cal: Calendar, days: np.ndarray) -> float:
    when = template.get("when", "any")
    w = float(template["weight"])
    if when == "pre_festival":
        return w * (4.0 if cal.pre_festival()[days].any() else 0.4)
    if when == "summer":
        return w if cal.summer()[days].mean() > 0.5 else 0.0
    if when == "term":
        return w if cal.school_term()[days].mean() > 0.6 else 0.0
    return w


def _subject(template: dict, county: County, township: int, rng: np.random.Generator) -> tuple[str, int]:
    """The episode's subject and its village (-1 when the episode spreads over the township)."""
    t = county.townships[township]
    in_town = np.flatnonzero(county.village_township == township)
    kind = template["subject"]
    if kind == "scam":
        scams = episode_catalog()["scams"]
        return scams[rng.integers(len(scams))], -1
    if kind == "village":
        rural = in_town[~county.village_is_community[in_town]]
        v = int(rng.choice(rural if len(rural) else in_town))
        return county.village_name[v], v
    if kind == "compound":
        communities = in_town[county.village_is_community[in_town]]
        v = int(rng.choice(communities if len(communities) else in_town))
        return t.compounds[rng.integers(len(t.compounds))], v
    names = {"company": t.companies, "school": t.schools}[kind]
    return names[rng.integers(len(names))], int(rng.choice(in_town))


def plan_episodes(county: County, cal: Calendar, rng: np.random.Generator) -> list[Episode]:
    catalog = episode_catalog()["episodes"]
    baseline = _domain_daily_baseline(county, cal)
    pop_share = county.township_population / county.township_population.sum()
    rate = EPISODES_PER_MONTH_200K * np.sqrt(county.population / 200_000)
    dates = cal.dates()
    month_starts = [i for i, d in enumerate(dates) if d.day == 1]
    episodes: list[Episode] = []
    for m, first_day in enumerate(month_starts):
        last_day = month_starts[m + 1] - 1 if m + 1 < len(month_starts) else cal.days - 1
        month_days = np.arange(first_day, last_day + 1)
        weights = np.array([_kind_weight(t, cal, month_days) for t in catalog])
        for k in range(max(1, int(rng.poisson(rate)))):
            template = catalog[rng.choice(len(catalog), p=weights / weights.sum())]
            shape = template["shapes"][rng.integers(len(template["shapes"]))]
            lo, hi = DURATION_DAYS[shape]
            start = int(rng.integers(first_day, last_day + 1))
            if template.get("when") == "pre_festival":
                pre = month_days[cal.pre_festival()[month_days]]
                if len(pre):
                    start = int(rng.choice(pre))
            end = min(start + int(rng.integers(lo, hi + 1)) - 1, cal.days - 1)
            for _attempt in range(20):
                township = int(rng.choice(len(county.townships), p=township_weights(county, template["area"])))
                clash = any(e.township == township and e.domain == template["domain"]
                            and e.start_day <= end and start <= e.end_day for e in episodes)
                if not clash:
                    break
            subject, village = _subject(template, county, township, rng)
            # Detectable but not absurd: a peak a few standard deviations above the township's
            # usual daily count of the domain, and never below a handful of reports a day.
            b = baseline.get(template["domain"], 0.0) * pop_share[township]
            peak = max(2.5, float(rng.uniform(2.5, 6.0)) * np.sqrt(max(b, 0.1)) + 0.5 * b)
            episodes.append(Episode(
                episode_id=f"EP{dates[first_day]:%Y%m}-{k + 1:02d}", kind=template["kind"],
                domain=template["domain"], township=township, village=village, start_day=start,
                end_day=end, shape=shape, subject=subject, peak=round(peak, 2),
            ))
    return episodes


def episode_records(episodes: list[Episode], county: County, cal: Calendar, rng: np.random.Generator,
                    first_incident: int) -> Records:
    """The reports of every episode's happenings; incidents numbered from first_incident."""
    domain_codes = schemas.domain_codes()
    feeds = list(schemas.FEEDS)
    parts = []
    next_incident = first_incident
    for ei, ep in enumerate(episodes):
        t = ep.template
        feed_p = np.array([t["feeds"].get(f, 0.0) for f in feeds])
        feed_p /= feed_p.sum()
        echo = float(t["echo"])
        mean_reports = 1 + echo * 1.3
        intensity = ep.intensity()
        per_day = rng.poisson(ep.peak * intensity / mean_reports)
        n_happen = int(per_day.sum())
        if n_happen == 0:
            continue
        day = np.repeat(np.arange(ep.start_day, ep.end_day + 1), per_day)
        level = np.repeat(intensity, per_day)
        happen_ts = sample_times(day, np.full(n_happen, t.get("hours", "day")), cal, rng)
        escalated = (rng.random(n_happen) < 0.05 + 0.6 * level ** 1.5) if t["escalates"] else np.zeros(n_happen, bool)
        if ep.village >= 0:
            village = np.full(n_happen, ep.village)
        else:
            village = sample_villages(county, np.full(n_happen, ep.township), rng)
        # Which feeds hear of each happening: a primary one, and sometimes one or two more.
        primary = rng.choice(len(feeds), size=n_happen, p=feed_p)
        extra = np.where(rng.random(n_happen) < echo, np.where(rng.random(n_happen) < 0.7, 1, 2), 0)
        rows_h, rows_f, rows_delay = [], [], []
        for h in range(n_happen):
            others = [f for f in rng.permutation(len(feeds)) if f != primary[h]][: extra[h]]
            for j, f in enumerate([primary[h], *others]):
                rows_h.append(h)
                rows_f.append(f)
                rows_delay.append(0 if j == 0 else int(rng.integers(300, (20 if f == feeds.index("grid") else 4) * 3600)))
        h = np.array(rows_h)
        f = np.array(rows_f, dtype=np.int8)
        n = len(h)
        pool = mobile_numbers(max(2, int(round(n * t["callers"] / 4))), rng)
        zipf = 1.0 / np.arange(1, len(pool) + 1)
        from_pool = (rng.random(n) < t["callers"]) & (f != feeds.index("grid"))
        caller = np.where(from_pool, pool[rng.choice(len(pool), size=n, p=zipf / zipf.sum())], 0)
        esc = escalated[h]
        people = np.where(esc, rng.integers(10, 150, size=n), rng.integers(1, 6, size=n))
        ts = np.minimum(happen_ts[h] + np.array(rows_delay, dtype=np.int64), cal.end_seconds - 1)
        parts.append(Records(
            feed=f, situation=np.full(n, -1), episode=np.full(n, ei),
            domain=np.full(n, domain_codes.index(ep.domain)), ts=ts,
            township=np.full(n, ep.township), village=village[h],
            grid=sample_grids(county, village[h], rng), incident=next_incident + h,
            escalated=esc, caller=caller, people=people,
        ))
        next_incident += n_happen
    return Records.concat(parts) if parts else Records.empty()


def day_of(ts: np.ndarray, cal: Calendar) -> np.ndarray:
    return ts // DAY - cal.epoch_day0
