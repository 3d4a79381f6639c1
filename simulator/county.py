"""A plausible fictional county: townships, villages/communities, grids, and the named things in them.

The gazetteer is written in the format of ``schemas/gazetteer.yaml``; everything else here (compounds,
companies, schools, roads, coordinates, populations) is what the text and volume generators draw on.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

import schemas

DATA_DIR = Path(__file__).resolve().parent / "data"

# Division-code blocks of the national standard: street offices 001-099, towns 100-199,
# townships (乡) 200-299; under them communities 001-199 and villages 200-399.
_KIND_CODE_BASE = {"street": 1, "town": 101, "xiang": 201}
_KIND_SUFFIX = {"street": "街道", "town": "镇", "xiang": "乡"}


@lru_cache(maxsize=None)
def place_parts() -> dict:
    with open(DATA_DIR / "places.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def township_stem(name: str) -> str:
    """城关镇 → 城关, 东城街道 → 东城, 柳林乡 → 柳林."""
    for suffix in ("街道", "镇", "乡"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def police_station_name(township_name: str) -> str:
    """The police station that covers a township: 城关镇 → 城关派出所."""
    return f"{township_stem(township_name)}派出所"


@dataclass
class Township:
    code: str
    name: str
    kind: str  # street | town | xiang
    population: int
    lon: float
    lat: float
    compounds: list[str] = field(default_factory=list)
    companies: list[str] = field(default_factory=list)
    schools: list[str] = field(default_factory=list)
    roads: list[str] = field(default_factory=list)

    @property
    def urban(self) -> bool:
        return self.kind == "street" or self.name == "城关镇"

    @property
    def aliases(self) -> list[str]:
        stem = township_stem(self.name)
        extra = [f"{stem}办事处"] if self.kind == "street" else []
        return [stem, *extra]

    @property
    def station(self) -> str:
        return police_station_name(self.name)


@dataclass
class County:
    code: str
    name: str
    population: int
    townships: list[Township]
    # Villages and communities, ordered by township; numpy arrays for vectorised sampling.
    village_code: list[str]
    village_name: list[str]
    village_township: np.ndarray
    village_population: np.ndarray
    village_is_community: np.ndarray
    grid_code: list[str]
    grid_name: list[str]
    grid_start: np.ndarray  # first grid index of each village
    grid_count: np.ndarray
    lon: float
    lat: float

    @property
    def township_population(self) -> np.ndarray:
        return np.array([t.population for t in self.townships], dtype=float)

    @property
    def township_urban(self) -> np.ndarray:
        return np.array([t.urban for t in self.townships])

    def gazetteer_rows(self) -> list[dict]:
        rows = [dict(code=self.code, name=self.name, level="county", parent_code="", aliases=self.name[:-1])]
        for t in self.townships:
            rows.append(dict(code=t.code, name=t.name, level="township", parent_code=self.code, aliases="|".join(t.aliases)))
        for v, (code, name) in enumerate(zip(self.village_code, self.village_name)):
            parent = self.townships[self.village_township[v]].code
            office = "居委会" if self.village_is_community[v] else "村委会"
            rows.append(dict(code=code, name=name, level="village", parent_code=parent, aliases=name + office))
            start, count = self.grid_start[v], self.grid_count[v]
            for g in range(start, start + count):
                rows.append(dict(code=self.grid_code[g], name=self.grid_name[g], level="grid", parent_code=code, aliases=""))
        return rows

    def write_gazetteer(self, path: Path) -> None:
        columns = schemas.load("gazetteer.yaml")["columns"]
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.gazetteer_rows())


def _township_count(population: int) -> int:
    # 12 townships for a county of 200k, 20 for 1M and more.
    scale = math.log(max(population, 1) / 200_000) / math.log(5)
    return int(np.clip(round(12 + 8 * scale), 12, 20))


def _pick(rng: np.random.Generator, items: list, n: int) -> list:
    return [items[i] for i in rng.choice(len(items), size=n, replace=False)]


def build_county(population: int, rng: np.random.Generator) -> County:
    parts = place_parts()
    code6 = parts["county_prefixes"][rng.integers(len(parts["county_prefixes"]))]
    name = parts["county_names"][rng.integers(len(parts["county_names"]))]
    lon, lat = float(rng.uniform(108, 118)), float(rng.uniform(28, 36))

    n = _township_count(population)
    n_streets = int(np.clip(round(n * 0.22), 2, len(parts["streets"])))
    n_xiang = int(np.clip(round(n * 0.18), 2, len(parts["xiang"])))
    n_towns = n - n_streets - n_xiang
    kinds = (
        [("street", s) for s in _pick(rng, parts["streets"], n_streets)]
        + [("town", "城关镇")]
        + [("town", s) for s in _pick(rng, parts["towns"][1:], n_towns - 1)]
        + [("xiang", s) for s in _pick(rng, parts["xiang"], n_xiang)]
    )
    weights = np.array([{"street": 1.6, "town": 1.0, "xiang": 0.6}[k] for k, _ in kinds]) * rng.uniform(0.7, 1.3, n)
    weights[n_streets] *= 2.2  # the county seat
    pops = np.maximum(1, np.round(population * weights / weights.sum())).astype(int)

    compound_names = [p + s for p in parts["compound_prefixes"] for s in parts["compound_suffixes"]]
    compound_order = rng.permutation(len(compound_names))
    company_names = [s + k for s in parts["company_stems"] for k in parts["company_kinds"]]
    company_order = rng.permutation(len(company_names))
    townships: list[Township] = []
    counters = {k: 0 for k in _KIND_CODE_BASE}
    for i, ((kind, tname), pop) in enumerate(zip(kinds, pops)):
        seq = _KIND_CODE_BASE[kind] + counters[kind]
        counters[kind] += 1
        stem = township_stem(tname)
        t = Township(
            code=f"{code6}{seq:03d}000",
            name=tname,
            kind=kind,
            population=int(pop),
            lon=round(lon + float(rng.uniform(-0.18, 0.18)), 5),
            lat=round(lat + float(rng.uniform(-0.14, 0.14)), 5),
        )
        n_compounds = 6 if t.urban else 2
        t.compounds = [compound_names[j % len(compound_names)] for j in compound_order[i * 6 : i * 6 + n_compounds]]
        t.companies = [company_names[j % len(company_names)] for j in company_order[i * 4 : i * 4 + 4]]
        t.schools = [stem + k for k in _pick(rng, parts["school_kinds"], 3)]
        t.roads = _pick(rng, parts["roads"], 4)
        townships.append(t)

    village_stems = list(rng.permutation(parts["village_stems"]))
    community_stems = list(rng.permutation(parts["community_stems"]))
    v_code, v_name, v_town, v_pop, v_comm = [], [], [], [], []
    for ti, t in enumerate(townships):
        if t.kind == "street":
            n_comm, n_vill = max(2, t.population // 7000), 0
        elif t.urban:
            n_comm, n_vill = max(2, t.population // 14000), max(2, t.population // 5000)
        else:
            n_comm, n_vill = (1 if t.kind == "town" else 0), max(3, t.population // 2200)
        n_comm, n_vill = min(n_comm, 12), min(n_vill, 40)
        share = rng.dirichlet(np.full(n_comm + n_vill, 4.0))
        for j in range(n_comm + n_vill):
            is_comm = j < n_comm
            pool = community_stems if is_comm else village_stems
            if not pool:  # a huge county exhausts the stems; number them like real 二村, 三村
                pool.extend(f"{s}{k}" for k in "二三四五" for s in (parts["community_stems"] if is_comm else parts["village_stems"]))
            stem = pool.pop(0)
            seq = (j + 1) if is_comm else (200 + j - n_comm + 1)
            v_code.append(f"{t.code[:9]}{seq:03d}")
            v_name.append(stem + ("社区" if is_comm else "村"))
            v_town.append(ti)
            v_pop.append(max(1, int(round(t.population * share[j]))))
            v_comm.append(is_comm)

    g_code, g_name, g_start, g_count = [], [], [], []
    for code, vname, pop in zip(v_code, v_name, v_pop):
        count = int(np.clip(pop // 1200, 1, 15))
        g_start.append(len(g_code))
        g_count.append(count)
        for k in range(1, count + 1):
            g_code.append(f"{code}{k:03d}")
            g_name.append(f"{vname}第{k}网格")

    return County(
        code=f"{code6}000000",
        name=name,
        population=population,
        townships=townships,
        village_code=v_code,
        village_name=v_name,
        village_township=np.array(v_town),
        village_population=np.array(v_pop, dtype=float),
        village_is_community=np.array(v_comm),
        grid_code=g_code,
        grid_name=g_name,
        grid_start=np.array(g_start),
        grid_count=np.array(g_count),
        lon=lon,
        lat=lat,
    )


def sample_villages(county: County, township: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A village for each record of the given townships, in proportion to village population."""
    cum = np.cumsum(county.village_population)
    n_town = len(county.townships)
    total = np.bincount(county.village_township, weights=county.village_population, minlength=n_town)
    first = np.searchsorted(county.village_township, np.arange(n_town))
    base = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    target = base[township] + rng.random(len(township)) * total[township]
    return np.minimum(np.searchsorted(cum, target, side="right"), len(cum) - 1)


def sample_grids(county: County, village: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return county.grid_start[village] + (rng.random(len(village)) * county.grid_count[village]).astype(int)
