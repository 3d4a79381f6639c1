"""Colloquial Chinese descriptions, addresses and caller details built from composable parts.

A description is opener + time + what (+ a second what) + how bad + escalation + want + contact, each
part drawn independently, with input-method slips on a share of texts. The parts live in
``data/phrasing.yaml``, ``data/situations.yaml`` and ``data/episodes.yaml``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

import schemas
from simulator.county import County, place_parts
from simulator.episodes import Episode
from simulator.records import Records
from simulator.volumes import situations

DATA_DIR = Path(__file__).resolve().parent / "data"
TYPO_SHARE = 0.12
CONTACT_SHARE = {"hotline_12345": 0.08, "police_110": 0.05, "grid": 0.04}
SECOND_WHAT_SHARE = 0.2
TERSE_110_SHARE = 0.3
JOINERS = ["，而且", "，另外", "。还有就是", "，", "；"]
PROVINCE_LETTERS = "ABCDEFGH"


@lru_cache(maxsize=None)
def phrasing() -> dict:
    with open(DATA_DIR / "phrasing.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def id_number(region6: str, birth: str, seq: int) -> str:
    """An 18-digit resident ID with a valid GB 11643 check digit."""
    body = f"{region6}{birth}{seq:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


def _fill(template: str, values: dict) -> str:
    return template.format_map(values) if "{" in template else template


class _Pick:
    """Cheap repeated choice from lists using a block of pre-drawn uniforms."""

    def __init__(self, rng: np.random.Generator, n: int, k: int):
        self.u = rng.random((n, k))

    def __call__(self, items: list, i: int, slot: int):
        return items[int(self.u[i, slot] * len(items))]

    def chance(self, i: int, slot: int, p: float) -> bool:
        return self.u[i, slot] < p


class TextComposer:
    def __init__(self, county: County, episodes: list[Episode]):
        self.county = county
        self.episodes = episodes
        self.parts = place_parts()
        self.phr = phrasing()
        self.sits = situations()
        self.typos = [tuple(p) for p in self.phr["typos"]]

    def _names(self, rng: np.random.Generator, n: int) -> list[str]:
        s, g = self.parts["surnames"], self.parts["given_names"]
        si, gi = rng.integers(len(s), size=n), rng.integers(len(g), size=n)
        return [s[a] + g[b] for a, b in zip(si, gi)]

    def compose(self, records: Records, phones: list[str], rng: np.random.Generator) -> dict[str, list[str]]:
        """Text, address, caller name and source category (`大类/小类` for 110 and grid) per record."""
        n = len(records)
        county = self.county
        feeds = schemas.FEEDS
        pick = _Pick(rng, n, 24)
        names = self._names(rng, n)
        names2 = self._names(rng, n)
        numbers = rng.integers(2, 30, size=n)
        money = np.round(rng.lognormal(8.5, 1.1, size=n), -2).astype(int) + 100
        floors = rng.integers(2, 28, size=n)
        birth = rng.integers(0, 55 * 365, size=n)
        texts, addresses, callers, subjects = [], [], [], []
        for i in range(n):
            feed = feeds[records.feed[i]]
            town = county.townships[records.township[i]]
            v = records.village[i]
            village = county.village_name[v]
            road, road2 = pick(town.roads, i, 0), pick(self.parts["roads"], i, 1)
            if records.episode[i] >= 0:
                ep = self.episodes[records.episode[i]]
                tpl = ep.template
                subject = ep.subject
                whats = tpl["what"]
                category = {**tpl["category"], **tpl.get("escalated_category", {})} if records.escalated[i] else tpl["category"]
            else:
                tpl = self.sits[records.situation[i]]
                kind = tpl.get("subject", "compound")
                if kind == "road":
                    subject = road
                elif kind == "village":
                    subject = village
                else:
                    names_of_kind = {"compound": town.compounds, "company": town.companies, "school": town.schools}[kind]
                    subject = pick(names_of_kind, i, 2)
                whats = tpl["what"]
                category = tpl["category"]
            caller = names[i] if pick.chance(i, 3, 0.5) else names[i][0] + ("先生" if pick.chance(i, 4, 0.5) else "女士")
            values = {
                "subject": subject, "village": village, "road": road, "road2": road2,
                "township": town.name, "name": names[i], "name2": names2[i], "n": int(numbers[i]),
                "money": int(money[i]), "floor": int(floors[i]), "caller": caller,
                "grid": county.grid_name[records.grid[i]], "phone": phones[i],
                "plate": f"{pick(['皖', '豫', '鄂', '湘', '鲁', '川', '陕', '冀', '赣'], i, 5)}{pick(PROVINCE_LETTERS, i, 6)}{int(pick.u[i, 7] * 90000) + 10000}",
            }
            what = _fill(pick(whats, i, 8), values)
            if pick.chance(i, 9, SECOND_WHAT_SHARE):
                second = _fill(pick(whats, i, 10), values)
                if second != what:
                    what += pick(JOINERS, i, 11) + second
            if records.escalated[i]:
                what += _fill(pick(tpl["escalation"], i, 12), values)
            if feed == "police_110" and pick.chance(i, 13, TERSE_110_SHARE):
                text = what
            else:
                text = (
                    _fill(pick(self.phr["openers"][feed], i, 14), values)
                    + pick(self.phr["fillers"], i, 15)
                    + pick(self.phr["times"], i, 16)
                    + what
                    + pick(self.phr["how_bad"], i, 17)
                    + pick(self.phr["wants"][feed], i, 18)
                )
            if pick.chance(i, 19, CONTACT_SHARE[feed]):
                values["idno"] = id_number(county.code[:6], _birth(int(birth[i])), int(pick.u[i, 20] * 999))
                text += _fill(pick(self.phr["contacts"][feed], i, 21), values) + "。"
            if pick.chance(i, 22, TYPO_SHARE):
                text = self._typo(text, int(pick.u[i, 23] * 1000))
            texts.append(text)
            addresses.append(self._address(i, town, village, v, subject, road, pick))
            callers.append(caller)
            subjects.append(pick(category[feed], i, 2))
        return {"text": texts, "address": addresses, "caller_name": callers, "category": subjects}

    def _typo(self, text: str, k: int) -> str:
        present = [p for p in self.typos if p[0] in text]
        if not present:
            return text
        right, wrong = present[k % len(present)]
        return text.replace(right, wrong, 1)

    def _address(self, i: int, town, village: str, v: int, subject: str, road: str, pick: _Pick) -> str:
        """As a call-taker types it: sometimes full, sometimes only a road or the alias."""
        u = pick.u[i, 23]
        town_name = town.name if u < 0.55 else (town.aliases[0] if u < 0.7 else "")
        if self.county.village_is_community[v]:
            place = f"{village}{subject}{int(pick.u[i, 20] * 30) + 1}栋" if subject.endswith(tuple(self.parts["compound_suffixes"])) else f"{village}{road}{int(pick.u[i, 21] * 300) + 1}号"
        else:
            place = f"{village}{int(pick.u[i, 21] * 12) + 1}组"
        if u > 0.93:  # only a road: the ingest must flag it unresolved rather than guess
            return f"{road}{int(pick.u[i, 20] * 300) + 1}号附近"
        return town_name + place


def _birth(days: int) -> str:
    import datetime as dt

    return (dt.date(1950, 1, 1) + dt.timedelta(days=days)).strftime("%Y%m%d")
