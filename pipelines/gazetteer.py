"""Region resolution against the county gazetteer (format: schemas/gazetteer.yaml).

Order: a code column, then the exact name, then an alias, then the longest gazetteer names found
in the address (or, for 110, the police station). Only what is certain is resolved: a village
name shared by two townships yields neither township; an unresolved record is kept and flagged.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from pipelines.normalise import clean_text
from schemas import load

LEVELS = ("county", "township", "village", "grid")
UNRESOLVED = "unresolved"
# Division codes are 12 digits: county 6, township 9, village 12 significant digits. A grid code
# the gazetteer does not list still names its village/township through this prefix.
_CODE_PREFIXES = (12, 9, 6)
# Bound of each lookup memo: addresses and unit names repeat, but a long run must not grow them without end.
_CACHE_MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class Resolution:
    county_code: str | None
    township_code: str | None
    village_code: str | None
    grid_code: str | None
    by: str

    @property
    def resolved(self) -> bool:
        return self.by != UNRESOLVED


def region_names(rows: list[dict]) -> dict[str, str]:
    """code → name of every region in the gazetteer's rows (what reasons call a place)."""
    return {row["code"]: row["name"] for row in rows}


def read_gazetteer_rows(path: str) -> list[dict]:
    """The gazetteer CSV as plain dicts (small, picklable: shipped inside the DoFn)."""
    fmt = load("gazetteer.yaml")
    with open(path, "rb") as f:
        text = f.read().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in fmt["columns"] if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"gazetteer {path}: missing columns {', '.join(missing)} (found {reader.fieldnames})")
    rows = []
    for number, row in enumerate(reader, start=2):
        level = (row["level"] or "").strip()
        if level not in fmt["levels"]:
            raise ValueError(f"gazetteer {path} line {number}: level {level!r} is not one of {fmt['levels']}")
        rows.append(
            {
                "code": row["code"].strip(),
                "name": clean_text(row["name"]),
                "level": level,
                "parent_code": (row["parent_code"] or "").strip() or None,
                "aliases": [clean_text(a) for a in (row["aliases"] or "").split(fmt["alias_separator"]) if a.strip()],
            }
        )
    return rows


class Gazetteer:
    """Lookup tables built once per worker from the gazetteer rows."""

    def __init__(self, rows: Sequence[dict]):
        self._rows = {r["code"]: r for r in rows}
        self._chains = {code: self._chain(code) for code in self._rows}
        self._names: dict[str, list[str]] = {}
        self._aliases: dict[str, list[str]] = {}
        for r in rows:
            self._names.setdefault(_key(r["name"]), []).append(r["code"])
            for alias in r["aliases"]:
                self._aliases.setdefault(_key(alias), []).append(r["code"])
        # Every name and alias that can be found inside an address, with the codes it denotes.
        self._terms: dict[str, set[str]] = {}
        for table in (self._names, self._aliases):
            for term, codes in table.items():
                if len(term) >= 2:
                    self._terms.setdefault(term, set()).update(codes)
        lengths: dict[str, set[int]] = {}
        for term in self._terms:
            lengths.setdefault(term[0], set()).add(len(term))
        self._lengths_by_first = {c: sorted(ls, reverse=True) for c, ls in lengths.items()}
        # Jump straight to characters that can start a term instead of testing every position.
        self._starts_re = re.compile("[" + "".join(re.escape(c) for c in sorted(lengths)) + "]") if lengths else None
        self._codes_cache: dict[str, frozenset] = {}
        self._certain_cache: dict[tuple, dict[str, str]] = {}
        self._structured_cache: dict[tuple, tuple[dict[str, str], str]] = {}
        self._resolutions: dict[tuple, Resolution] = {}
        counties = [r["code"] for r in rows if r["level"] == "county"]
        self._only_county = counties[0] if len(counties) == 1 else None

    @classmethod
    def from_csv(cls, path: str) -> "Gazetteer":
        return cls(read_gazetteer_rows(path))

    def _chain(self, code: str) -> dict[str, str]:
        chain = {}
        seen = set()
        while code and code in self._rows and code not in seen:
            seen.add(code)
            row = self._rows[code]
            chain[row["level"]] = code
            code = row["parent_code"]
        return chain

    def find_terms(self, text: str) -> list[str]:
        """Gazetteer names/aliases inside ``text``, longest match first at each position."""
        found: list[str] = []
        if self._starts_re is None:
            return found
        n, i = len(text), 0
        while (match := self._starts_re.search(text, i)) is not None:
            i = match.start()
            for length in self._lengths_by_first[text[i]]:
                if i + length <= n and text[i:i + length] in self._terms:
                    found.append(text[i:i + length])
                    i += length
                    break
            else:
                i += 1
        return found

    def _by_code(self, code: str) -> dict[str, str] | None:
        if code in self._chains:
            return self._chains[code]
        if code.isdigit():
            for size in _CODE_PREFIXES:
                if len(code) > size:
                    prefix = code[:size].ljust(12, "0")
                    if prefix in self._chains:
                        return self._chains[prefix]
        return None

    def _certain(self, codes: Iterable[str], within: dict[str, str] | None = None) -> dict[str, str]:
        """The levels on which all candidate regions agree (deepest level's candidates first).

        Memoised: the same candidates within the same region recur for every record of a place.
        """
        key = (codes if isinstance(codes, frozenset) else frozenset(codes), tuple(within.items()) if within else ())
        agreed = self._certain_cache.get(key)
        if agreed is None:
            if len(self._certain_cache) >= _CACHE_MAX_ENTRIES:
                self._certain_cache.clear()
            agreed = self._certain_cache[key] = self._agreed(key[0], within)
        return agreed

    def _agreed(self, codes: frozenset, within: dict[str, str] | None) -> dict[str, str]:
        chains = [self._chains[c] for c in codes]
        if within:
            consistent = [ch for ch in chains if all(ch.get(lv) == code for lv, code in within.items())]
            chains = consistent or []
        if not chains:
            return {}
        # A township named alongside an ambiguous village tells which village it is.
        named_townships = {ch["township"] for ch in chains if ch.get("township") and _deepest(ch) == "township"}
        if named_townships:
            deeper = [ch for ch in chains if _deepest(ch) in ("village", "grid") and ch.get("township") in named_townships]
            if deeper:
                chains = deeper
        depth = max(LEVELS.index(_deepest(ch)) for ch in chains)
        deepest = [ch for ch in chains if LEVELS.index(_deepest(ch)) == depth]
        agreed = {}
        for level in LEVELS:
            values = {ch.get(level) for ch in deepest}
            if len(values) != 1 or None in values:
                break
            agreed[level] = values.pop()
        return agreed

    def resolve(
        self,
        codes: Sequence[str | None] = (),
        names: Sequence[str | None] = (),
        texts: Sequence[tuple[str | None, str]] = (),
    ) -> Resolution:
        """Resolve from code cells, then region-name cells, then free texts ``(text, by)`` in order."""
        key = (tuple(codes), tuple(names))
        structured = self._structured_cache.get(key)
        if structured is None:
            if len(self._structured_cache) >= _CACHE_MAX_ENTRIES:
                self._structured_cache.clear()
            structured = self._structured_cache[key] = self._from_cells(codes, names)
        chain, by = structured
        for text, how in texts:
            if "village" in chain:
                break
            if text and (found := self._certain(self._codes_in(text), chain)) and len(found) > len(chain):
                if "township" not in chain:
                    by = how
                chain = found
        if "township" not in chain:
            by = UNRESOLVED
        county = chain.get("county") or self._only_county
        grid = chain.get("grid") or next((str(c).strip() for c in codes if c), None)
        # Resolutions are immutable and few (one per place and way found): shared, not rebuilt per record.
        fields = (county, chain.get("township"), chain.get("village"), grid, by)
        resolution = self._resolutions.get(fields)
        if resolution is None:
            if len(self._resolutions) >= _CACHE_MAX_ENTRIES:
                self._resolutions.clear()
            resolution = self._resolutions[fields] = Resolution(*fields)
        return resolution

    def _from_cells(self, codes: Sequence[str | None], names: Sequence[str | None]) -> tuple[dict[str, str], str]:
        """The region the code and name cells give, and how it was found."""
        chain: dict[str, str] = {}
        by = UNRESOLVED
        for code in codes:
            if code and (found := self._by_code(str(code).strip())):
                chain, by = found, "code"
                break
        if "township" not in chain:
            for name in names:
                if not name:
                    continue
                key = _key(name)
                for table, how in ((self._names, "name"), (self._aliases, "alias")):
                    if key in table and (found := self._certain(table[key], chain)) and len(found) > len(chain):
                        chain, by = found, how
                        break
                else:
                    if (found := self._certain(self._codes_in(key), chain)) and len(found) > len(chain):
                        chain, by = found, "name"
                if "township" in chain:
                    break
        return chain, by

    def _codes_in(self, text: str) -> frozenset:
        """Codes of the gazetteer terms in ``text`` (as written: keyed here, ``_key`` is idempotent)."""
        # Addresses and unit names repeat; bounded so that a long run cannot grow it without end.
        codes = self._codes_cache.get(text)
        if codes is None:
            if len(self._codes_cache) >= _CACHE_MAX_ENTRIES:
                self._codes_cache.clear()
            codes = frozenset(c for term in self.find_terms(_key(text)) for c in self._terms[term])
            self._codes_cache[text] = codes
        return codes


def _deepest(chain: dict[str, str]) -> str:
    return max(chain, key=LEVELS.index)


def _key(text: str) -> str:
    return clean_text(text).replace(" ", "")
