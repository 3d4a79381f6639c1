"""Monthly topics: what the month's events are about, and which matters stand out.

Within every township × domain, the month's events are grouped by what they concern — the
compound, the company, the village, the road, the kind of grievance. Subjects come from a lexicon
of place kinds (schemas/topics.yaml) plus the gazetteer's village names, grievances from the
phrases there; events naming neither are clustered on TF-IDF character n-grams. Each topic is
titled ``城关镇·幸福里小区逾期交房集中投诉``, counted back over the previous three months, and ranked
on its own evidence (``Evidence``: its count, its busiest days, warning signals, corroboration
against its own past, corrected for county-wide seasons); the top ones are the task force's topics
to study, the next ones a watch list; statuses are set against last month's list.

Everything here is plain Python on lists of event dicts; ``pipelines/topics.py`` distributes the
per-group work with Beam and ``build_topics`` runs the same steps in one process.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import math
import re
from collections import Counter, abc, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

import numpy as np
from scipy import sparse, special
from scipy.cluster import hierarchy
from scipy.stats import nbinom
from sklearn.cluster import DBSCAN
from sklearn.preprocessing import normalize

import schemas
from models.gaps import coverage_start
from models.grievances import GrievanceVocabulary
from models.patterns import longest_first
from models.text_space import char_tfidf
from models.word_tags import TextWords

_TZ = ZoneInfo(schemas.TIMEZONE)
_NOT_NAME = re.compile(r"[^\u3400-\u9fffA-Za-z]")
_MASK_OR_DIGIT = re.compile(r"[*＊×xX]{2,}|[0-9０-９]+")
# subject slot of the topic key of a township × domain's wave (``_group_wave``) over the month or a few days
_WAVE_MONTH, _WAVE_DAYS = "\x00wave:month", "\x00wave:days"
_EVENT_FIELDS = ("event_id", "source", "township_code", "village_code", "domain", "text", "caller_key", "incident_id")
# the Event columns an event record is made of (a warehouse month has some thirty)
RECORD_COLUMNS = [*_EVENT_FIELDS, "signals", "reported_at"]


@dataclass(frozen=True)
class TopicParams:
    """Knobs of topic building and ranking; the defaults suit a county of 0.2–1M people."""

    distance_threshold: float = 0.8  # cosine distance up to which average linkage merges clusters
    subject_weight: float = 0.5  # share of an event vector given to its subject (squared norm)
    village_weight: float = 0.1
    min_events: int = 2  # smaller clusters become topics only when they carry a signal
    min_subject_events: int = 3  # events of the month naming a subject for it to be a topic of its own
    min_group_events: int = 3  # month events of a township × domain for its topics to be looked for
    max_agglomerative: int = 3000  # above this, DBSCAN (linear memory) replaces the n×n linkage
    excerpts: int = 3
    excerpt_chars: int = 90
    # Keywords and excerpts of a large topic come from an evenly spread sample of its events (and of
    # its group's background): the same words lead, at a bounded cost per topic.
    text_sample: int = 120
    background_sample: int = 1500
    history_months: int = 3
    # share of a history month's days the feeds must cover (``history_start``) for its events to count:
    # a month they begin to cover at its end would read as a quiet month
    min_month_coverage: float = 0.5
    # Ranking: a topic's own evidence against its previous months (see ``Evidence``).
    prior_events: float = 0.5  # monthly count expected of a matter that had no event before
    overdispersion: float = 0.3  # month-to-month spread beyond Poisson, as a share of the mean
    burst_days: int = 3  # window in which a sudden cluster of events is looked for
    min_wave_events: int = 6  # events of a township × domain's wave (``_group_wave``) for it to be a topic
    season_range: tuple[float, float] = (0.5, 3.0)  # bounds of the county-wide seasonal factor
    signal_share: float = 0.01  # share of events with a warning signal, before a group's history says more
    corroborated_share: float = 0.1  # share of incidents seen by several feeds, likewise
    prior_weight: float = 100.0  # events of history that weigh as much as those two prior shares
    evidence_cap: float = 12.0  # -log10 p of one kind of evidence counts up to this
    priority_half: float = 6.0  # total evidence at which priority is 50 (of 100)
    study_priority: float = 40.0  # 研判选题: the task force studies these (cards)
    watch_priority: float = 25.0  # 观察清单: watched, shown compactly
    max_study: int = 12
    max_watch: int = 30


# --------------------------------------------------------------------------------------------
# Inputs: events, score rows, the gazetteer, the lexicon


def month_of(value: Any) -> str:
    """'YYYY-MM' of a timestamp (datetime, pandas Timestamp, date or ISO string) in county time."""
    if value is None:
        raise ValueError("event without reported_at")
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(_TZ)
    return f"{value.year:04d}-{value.month:02d}"


def evenly_spread(items: Sequence, limit: int) -> list:
    """At most ``limit`` of ``items``, spread evenly over the sequence (deterministic)."""
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def shift_month(month: str, delta: int) -> str:
    year, mon = (int(p) for p in month.split("-"))
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return (value.astimezone(_TZ) if value.tzinfo else value).isoformat(timespec="seconds")
    return str(value)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    try:
        return [v for v in value if v is not None]
    except TypeError:
        return []


def _clean_optional(value: Any) -> Any:
    # pandas hands missing strings over as NaN
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def event_record(event: Mapping) -> dict:
    """The parts of an Event that topics use, with pandas/Arrow types turned into plain Python."""
    record = {k: _clean_optional(event.get(k)) for k in _EVENT_FIELDS}
    record["text"] = record["text"] or ""
    record["signals"] = sorted(set(_as_list(event.get("signals"))))
    record["reported_at"] = _iso(event.get("reported_at"))
    record["month"] = month_of(event.get("reported_at"))
    return record


def _is_frame(value: Any) -> bool:
    return hasattr(value, "to_dict") and hasattr(value, "columns")


def _column_values(frame, column: str) -> list:
    """A DataFrame column as Python values, missing numbers (NaN) as None, like ``_clean_optional``
    on ``to_dict`` rows (a tenth of its cost: no dict per row from pandas)."""
    if column not in frame.columns:
        return [None] * len(frame)
    series = frame[column]
    if series.dtype.kind == "f":
        return series.astype(object).where(series.notna(), None).tolist()
    return [None if v.__class__ is float and v != v else v for v in series.tolist()]


def _rows(columns: Mapping[str, list]) -> list[dict]:
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _local_times(series):
    """Timestamps in county time when the column holds time-zone-aware datetimes, else None (other
    representations take the per-value path)."""
    if getattr(series.dtype, "tz", None) is None or series.isna().any():
        return None
    return series.dt.tz_convert(_TZ)


def _wall_times(series):
    """County wall-clock times (naive) of a column of time-zone-aware timestamps, else None: the
    months and ISO texts of records both come from them (one time-zone conversion, not three)."""
    local = _local_times(series)
    return None if local is None else local.dt.tz_localize(None)


def _wall_months(wall) -> list[str]:
    index = (wall.dt.year * 12 + wall.dt.month - 1).to_numpy()
    names = {int(i): f"{i // 12:04d}-{i % 12 + 1:02d}" for i in np.unique(index)}
    return [names[i] for i in index.tolist()]


def event_months(series) -> list[str] | None:
    """``month_of`` of every value of a column of time-zone-aware timestamps, vectorised; None for
    other columns."""
    wall = _wall_times(series)
    return None if wall is None else _wall_months(wall)


def _wall_iso(wall, series, instants: dict | None = None) -> list[str]:
    """``_iso`` of every value of a column of time-zone-aware timestamps (``series``) from their
    county wall-clock times: the text of the wall time and its UTC offset. ``instants``: filled with
    what ``ReportInstants`` would parse from each text."""
    seconds = wall.to_numpy().astype("datetime64[s]")
    text = np.datetime_as_string(seconds, unit="s")
    offsets = ((wall - series.dt.tz_convert(None)).dt.total_seconds()).astype(int).to_numpy()
    suffix = {int(o): datetime(2000, 1, 1, tzinfo=timezone(timedelta(seconds=int(o)))).isoformat()[19:]
              for o in np.unique(offsets)}
    found = [t + suffix[o] for t, o in zip(text.tolist(), offsets.tolist())]
    if instants is not None:
        # the text's wall-clock second less its offset, in microseconds since the epoch: the
        # instant it names, known here without parsing it back
        instants.update(zip(found, ((seconds.astype(np.int64) - offsets) * 10**6).tolist()))
    return found


def _frame_records(frame, instants: dict | None = None) -> list[dict]:
    """``event_record`` of every row of a DataFrame of Events, column by column (``instants``: as
    for ``records``)."""
    times = frame["reported_at"] if "reported_at" in frame.columns else None
    wall = None if times is None else _wall_times(times)
    if wall is None:  # naive or textual times, or missing ones (``month_of`` raises): row by row
        wanted = [c for c in RECORD_COLUMNS if c in frame.columns]
        return [event_record(e) for e in frame[wanted].to_dict("records")]
    columns = {k: _column_values(frame, k) for k in _EVENT_FIELDS}
    columns["text"] = [t or "" for t in columns["text"]]
    columns["signals"] = [sorted(set(_as_list(v))) if v is not None and len(v) else []
                          for v in _column_values(frame, "signals")]
    columns["reported_at"] = _wall_iso(wall, times, instants)
    columns["month"] = _wall_months(wall)
    return _rows(columns)


def as_record(event: Mapping) -> dict:
    """An event's record; one already (e.g. converted once by the monthly job for topics and report)
    as it is."""
    return event if "month" in event else event_record(event)


def records(events: Any, instants: dict | None = None) -> list[dict]:
    """Event records from a pandas DataFrame or any iterable of Event dicts. ``instants``: a
    ``ReportInstants`` given the report times of a DataFrame's records, which it would otherwise
    parse from their text."""
    if events is None:
        return []
    if _is_frame(events):
        return _frame_records(events, instants)
    return [as_record(e) for e in events]


def topic_records(events: Any, instants: dict | None = None) -> list[dict]:
    """Records of the events a topic can hold (``group_key``); a DataFrame is filtered before it
    is converted (half of a month's events are of no domain). ``instants``: as for ``records``."""
    if _is_frame(events) and {"township_code", "domain"} <= set(events.columns):
        domain = events["domain"]
        # what ``group_key`` asks of a record, asked of the columns
        return records(events[events["township_code"].notna() & (events["township_code"] != "") & domain.notna()
                              & (domain != "none")], instants)
    return [e for e in records(events, instants) if group_key(e)]


def record_day(record: Mapping) -> str:
    """The county day (ISO date) an event record was reported on."""
    return record["reported_at"][:10]


def records_per_day(events: Any) -> Counter:
    """Records per county day (ISO date) of all the events (DataFrame or iterable of Event dicts), of
    every domain: the feeds' daily volume (``history_start``)."""
    if events is None:
        return Counter()
    if _is_frame(events) and "reported_at" in events.columns and _local_times(events["reported_at"]) is not None:
        return _day_counts(events["reported_at"])
    return Counter(record_day(e) for e in records(events))


def _day_counts(times) -> Counter:
    """Records per county day of a column of time-zone-aware timestamps. Every UTC offset is a whole
    number of quarter hours: the day of each quarter hour with records is reckoned, not each record's
    (a wall-clock time per record costs a tenth of a second for a county's month)."""
    minutes = times.dt.tz_convert(None).to_numpy().astype("datetime64[m]").astype(np.int64)
    quarters, n = np.unique(minutes // 15, return_counts=True)
    counts: Counter = Counter()
    for quarter, records_ in zip(quarters.tolist(), n.tolist()):
        counts[datetime.fromtimestamp(quarter * 900, _TZ).date().isoformat()] += records_
    return counts


def month_end(month: str) -> date:
    return date.fromisoformat(f"{shift_month(month, 1)}-01") - timedelta(days=1)


def history_start(daily_records: Mapping[str, int], month: str, params: TopicParams = TopicParams()) -> str | None:
    """The first day (ISO date) of the history, from the records per day of the month's events and the
    history's (``records_per_day``): where the feeds' coverage begins (``models.gaps.coverage_start``, up
    to the month's end; ``covered_from``). The history's events before it are the few late records a
    county's first month's files carry, no history to compare the month with. None: no records."""
    start = coverage_start({date.fromisoformat(d): n for d, n in daily_records.items()}, month_end(month))
    return None if start is None else covered_from(start, params)


def covered_from(coverage: date, params: TopicParams = TopicParams()) -> str:
    """The first day (ISO date) of the history when the feeds' coverage begins on ``coverage``: that
    day, or the next month's first when it leaves less than ``min_month_coverage`` of its month covered
    (a county's first month's files carry a sixth of a day's records of the day before it: its month is
    no history)."""
    month = f"{coverage.year:04d}-{coverage.month:02d}"
    end = month_end(month)
    if (end - coverage).days + 1 < params.min_month_coverage * end.day:
        return f"{shift_month(month, 1)}-01"
    return coverage.isoformat()


def covered_history(history: Iterable[Mapping], start: str | None) -> list[dict]:
    """The history records reported on or after ``start`` (``history_start``; None: all)."""
    return list(history) if start is None else [e for e in history if record_day(e) >= start]


def score_rows(scores: Any) -> list[dict]:
    if scores is None:
        return []
    if _is_frame(scores):
        rows = _rows({k: _column_values(scores, k) for k in scores.columns})
        for row in rows:
            row["reasons"] = [str(r) for r in _as_list(row.get("reasons"))]
        return rows
    rows = []
    for row in scores:
        row = {k: _clean_optional(v) for k, v in dict(row).items()}
        row["reasons"] = [str(r) for r in _as_list(row.get("reasons"))]
        rows.append(row)
    return rows


def score_month(row: Mapping) -> str:
    return month_of(row["period_start"]) if not isinstance(row["period_start"], str) else row["period_start"][:7]


class RegionNames:
    """Names from the gazetteer rows (code, name, level, parent_code, aliases)."""

    def __init__(self, rows: Iterable[Mapping]):
        self.rows = {r["code"]: dict(r) for r in rows}
        self.names = {code: r["name"] for code, r in self.rows.items()}
        self.villages: dict[str, str] = {}  # name or alias → village code
        self.region_terms: set[str] = set()  # township/county names and aliases
        for code, r in self.rows.items():
            aliases = r.get("aliases") or []
            if isinstance(aliases, str):
                aliases = [a for a in aliases.split("|") if a]
            terms = [t for t in [r["name"], *aliases] if t and len(t) >= 2]
            if r.get("level") == "village":
                for t in terms:
                    self.villages[t] = code
            elif r.get("level") in ("county", "township"):
                self.region_terms.update(terms)

    @classmethod
    def load(cls, gazetteer: Any) -> "RegionNames":
        """From a RegionNames, a CSV path, a DataFrame or an iterable of row dicts."""
        if gazetteer is None:
            return cls([])
        if isinstance(gazetteer, RegionNames):
            return gazetteer
        if isinstance(gazetteer, (str, Path)):
            from pipelines.gazetteer import read_gazetteer_rows

            return cls(read_gazetteer_rows(str(gazetteer)))
        if hasattr(gazetteer, "to_dict") and hasattr(gazetteer, "columns"):
            gazetteer = gazetteer.to_dict("records")
        return cls(gazetteer)

    def name(self, code: str | None) -> str:
        if not code:
            return "未定位"
        return self.names.get(code, code)


def load_lexicon() -> dict:
    """schemas/topics.yaml from the county's schemas directory, else the bundled copy."""
    path = schemas.schemas_dir() / "topics.yaml"
    if not path.exists():
        path = schemas.BUNDLED_DIR / "topics.yaml"
    return schemas.read_yaml(path)


# --------------------------------------------------------------------------------------------
# Subjects


@dataclass(frozen=True)
class Mention:
    """One place name in a text: candidate names from longest to shortest, all ending in a place
    suffix, and those of them that the text itself delimits (``attested``)."""

    kind: str
    candidates: tuple[str, ...]
    attested: tuple[str, ...]


_MAX_STRETCHES = 1_000_000  # ~200 bytes each


class _NameStarts:
    """Which texts may hold one of a set of names, for many texts at once: the first three characters
    of each name (both of a two-character one) hashed into a bit table, and every three (two)
    neighbouring characters of the texts looked up in it. A text holding a name is always let
    through; one without is let through only on a hash collision (~1 in 1,500 for 700 names)."""

    _SIZE = 1 << 20

    def __init__(self, names: Iterable[str]):
        names = list(names)
        self.everything = any(len(n) < 2 for n in names)  # a one-character name starts anywhere
        self.tables = {}
        for n in (2, 3):
            starts = [name[:n] for name in names if min(len(name), 3) == n]
            table = np.zeros(self._SIZE, dtype=bool)
            if starts:
                codes = np.array([[ord(c) for c in start] for start in starts], dtype=np.int64)
                table[self._hash(*codes.T)] = True
            self.tables[n] = table

    @classmethod
    def _hash(cls, *columns: np.ndarray) -> np.ndarray:
        key = columns[0]
        for column in columns[1:]:
            key = key * 1_000_003 + column  # wraps around alike for the names and the texts
        return key & (cls._SIZE - 1)

    def may_hold(self, texts: Sequence[str]) -> list[bool]:
        if self.everything or not texts:
            return [True] * len(texts)
        # the texts end to end, each followed by a NUL (and two more at the end: every position has
        # two after it, an empty last text a position of its own)
        codes = np.frombuffer("\0".join([*texts, "", "", ""]).encode("utf-32-le", "surrogatepass"),
                              dtype=np.uint32).astype(np.int64)
        hit = self.tables[2][self._hash(codes[:-2], codes[1:-1])]
        hit |= self.tables[3][self._hash(codes[:-2], codes[1:-1], codes[2:])]
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + 1
        starts = np.cumsum(lengths) - lengths
        # a text's positions and the NUL after it: what runs into a NUL is no name's start but may
        # share a hash with one (the text is scanned for nothing)
        return np.logical_or.reduceat(hit, starts).tolist()


class SubjectFinder:
    """Finds the compounds, companies, schools, roads and villages a text names."""

    def __init__(self, lexicon: Mapping, regions: RegionNames):
        self.kind_of = {s: kind for kind, sufs in lexicon["subject_suffixes"].items() for s in sufs}
        not_before = lexicon.get("suffix_not_before") or {}
        self.suffix_re = re.compile(longest_first(self.kind_of, {
            s: f"(?!{'|'.join(map(re.escape, words))})" for s, words in not_before.items() if words}))
        self.min_chars = int(lexicon["name_min_chars"])
        self.max_chars = int(lexicon["name_max_chars"])
        # words that are no part of a name end it too ("上周开始路边…" names no road)
        words = [w for w in [*lexicon["generic_terms"], *(lexicon.get("actor_terms") or [])] if len(w) >= 2]
        self.boundary_re = re.compile(longest_first(set(lexicon["name_boundaries"]) | set(words)))
        # open-ended time phrases ("半个小时前") end a name as the characters no name holds do
        patterns = lexicon.get("name_boundary_patterns") or []
        self.time_re = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self.generic = set(lexicon["generic_subjects"])
        terms = sorted(regions.region_terms, key=len, reverse=True)
        self.region_re = re.compile("|".join(map(re.escape, terms))) if terms else None
        self.villages = regions.villages
        self.village_re = re.compile(longest_first(self.villages)) if self.villages else None
        self._village_starts = _NameStarts(self.villages)
        # the mention of each stretch before a place suffix met so far (``mentions_of``): one compound
        # is named in several domains' groups of its township
        self._stretches: dict[tuple[str, int], Mention | None] = {}

    def strip_regions(self, text: str) -> str:
        # township and county names are the topic's region, never its subject
        return self.region_re.sub("|", text) if self.region_re else text

    def mentions_of(self, texts: Iterable[str]) -> list[list[Mention]]:
        """``mentions`` of each text. A township × domain's texts repeat one another — a text
        reported twice, a compound named after the same few words — so each distinct text is
        looked at once per call, and each distinct stretch before a place suffix once per finder
        (up to ``_MAX_STRETCHES`` of them)."""
        texts = list(texts)
        distinct = list(dict.fromkeys(texts))
        if len(self._stretches) > _MAX_STRETCHES:  # a worker's finder lives for many months
            self._stretches.clear()
        stretches = self._stretches
        # most texts name no village: those holding no start of one skip the scan
        # (the ~300-way branch of the village pattern at every character that may start a name)
        villages = self._village_starts.may_hold(distinct) if self.village_re else [False] * len(distinct)
        seen = {text: self.mentions(text, stretches, may_name_village)
                for text, may_name_village in zip(distinct, villages)}
        return [seen[text] for text in texts]

    def mentions(self, text: str, stretches: dict[tuple[str, int], Mention | None] | None = None,
                 may_name_village: bool = True) -> list[Mention]:
        """The places a text names, in order. ``stretches``: the mention (or None) already found
        for a suffix and the few characters before it (``mentions_of`` shares it between texts);
        ``may_name_village`` False: the text holds the start of no village's name (``_NameStarts``)."""
        text = self.strip_regions(text)
        found: list[tuple[int, int, Mention]] = []
        for m in self.suffix_re.finditer(text):
            start, end = m.span()
            if found and found[-1][1] == start:
                # "锦绣花园" + "小区", "宏达建筑工程" + "有限公司": one name with both suffixes
                _, _, first = found.pop()
                names = [c + m.group() for c in first.candidates] + list(first.candidates)
                mention = self._mention(self.kind_of[m.group()], names, (names[0], first.attested[0]))
            else:
                mention = self._suffix_mention(text, start, end, stretches)
            if mention:
                found.append((start, end, mention))
        villages = False
        if self.village_re and may_name_village:
            for m in self.village_re.finditer(text):
                if not any(m.group() in c for _, _, mm in found for c in mm.candidates):
                    found.append((m.start(), m.end(), Mention("village", (m.group(),), (m.group(),))))
                    villages = True
        if villages:  # the suffixes' mentions come in text order already
            found.sort(key=lambda x: x[0])
        return [mm for _, _, mm in found]

    def _mention(self, kind: str, names: Sequence[str], attested: Sequence[str]) -> Mention | None:
        names = [n for n in names if n not in self.generic]
        attested = tuple(a for a in attested if a in names)
        return Mention(kind, tuple(names), attested) if names and attested else None

    def _suffix_mention(self, text: str, start: int, end: int,
                        known: dict[tuple[str, int], Mention | None] | None) -> Mention | None:
        # it depends on the suffix and the few characters before it only
        stretch = (text[max(0, start - self.max_chars) : end], end - start)
        if known is not None and stretch in known:
            return known[stretch]
        names = self._cut_names(*stretch)
        mention = self._mention(self.kind_of[text[start:end]], names, names[:1])
        if known is not None:
            known[stretch] = mention
        return mention

    def _cut_names(self, stretch: str, suffix_chars: int) -> list[str]:
        window, suffix = stretch[:-suffix_chars], stretch[-suffix_chars:]
        window = _NOT_NAME.split(self.time_re.sub("|", window) if self.time_re else window)[-1]
        cut = 0
        for boundary in self.boundary_re.finditer(window):  # matches end ever later: the last one's end
            cut = boundary.end()
        # a name does not run across an earlier place suffix ("…小区物业公司" names no company)
        for earlier in self.suffix_re.finditer(window):
            if cut < earlier.end() < len(window):
                cut = earlier.end()
        window = window[cut:]
        return [window[i:] + suffix for i in range(0, len(window) - self.min_chars + 1)]


def canonical_subjects(mentions_per_event: Sequence[Sequence[Mention]]) -> list[list[tuple[str, str]]]:
    """For each event, its subjects (name, kind). A mention whose text gives no clear start
    ("购买幸福里小区") takes a name that other events delimit and share ("幸福里小区"); a name no
    text delimits ("建筑工程有限公司") is never chosen."""
    # events naming each candidate, counted in one pass (most texts name no place)
    df = Counter(c for mentions in mentions_per_event if mentions for c in {c for m in mentions for c in m.candidates})
    attested = {a for mentions in mentions_per_event for m in mentions for a in m.attested}
    chosen = []
    picked: dict[int, tuple[str, str]] = {}  # by mention: texts share the mention of a shared stretch
    for mentions in mentions_per_event:
        subjects = []
        for m in mentions:
            subject = picked.get(id(m))
            if subject is None:
                options = [c for c in m.candidates if c in attested]
                top = max(df[c] for c in options)
                # the longest name that at least half as many events use: "幸福里小区" over a clipped "福里小区"
                subject = picked[id(m)] = (max((c for c in options if 2 * df[c] >= top), key=len), m.kind)
            if subject not in subjects:
                subjects.append(subject)
        chosen.append(subjects)
    return chosen


def subject_core(name: str, suffixes: Sequence[str]) -> str:
    """The name without its place suffixes: "锦绣花园小区" → "锦绣", "宏达建筑工程有限公司" → "宏达建筑"."""
    stripped = True
    while stripped:
        stripped = False
        for suffix in suffixes:
            if name.endswith(suffix) and len(name) - len(suffix) >= 2:
                name, stripped = name[: -len(suffix)], True
                break
    return name


def unify_subjects(subjects: Sequence[Sequence[tuple[str, str]]], texts: Sequence[str], suffixes: Sequence[str],
                   min_bare_core: int = 3, kind_of: Mapping[str, str] | None = None) -> list[list[tuple[str, str]]]:
    """One name per thing within a group: "宏达建筑工地" and "宏达建筑工程有限公司" (a site and a
    company of one name) become the more frequent of the two, as do "锦绣花园" and "锦绣花园小区",
    and a text that names the thing without a suffix ("宏达建筑拖欠工资") gets it too. Two places of
    one kind that differ in their suffix ("幸福里华庭", "幸福里公馆") stay two. A name's kind is that of
    its last suffix in ``kind_of`` (suffix → kind), else the kind its mentions gave."""
    counts = Counter(s for subs in subjects if subs for s in {s for s, _ in subs})
    kinds = {s: k for subs in subjects for s, k in subs}
    if kind_of:
        for name in kinds:
            last = max((x for x in kind_of if name.endswith(x)), key=len, default=None)
            kinds[name] = kind_of.get(last, kinds[name])
    order = sorted(counts, key=lambda s: (-counts[s], -len(s), s))
    cores = {s: subject_core(s, suffixes) for s in order}
    alias: dict[str, str] = {}
    for i, s in enumerate(order):
        for r in order[:i]:
            if alias.get(r, r) == r and (s.startswith(r) or r.startswith(s) or (
                    kinds[s] != kinds[r] and (cores[s].startswith(cores[r]) or cores[r].startswith(cores[s])))):
                alias[s] = r
                break
    bare = [(h, cores[h]) for h in order if h not in alias and len(cores[h]) >= min_bare_core]
    result = []
    for subs, text in zip(subjects, texts):
        if subs:
            result.append([(n, kinds[n]) for n in dict.fromkeys(alias.get(s, s) for s, _ in subs)])
            continue
        head = None  # most texts name nothing: the first bare name they hold, if any
        for h, core in bare:
            if core in text:
                head = h
                break
        result.append([(head, kinds[head])] if head else [])
    return result


# --------------------------------------------------------------------------------------------
# Topics


@dataclass
class Topic:
    """One topic of the monthly list; ``as_json`` gives the stable English keys of topics.json."""

    topic_id: str
    month: str
    title: str
    subject: str | None
    subject_kind: str | None
    phrase: str | None
    keywords: list[str]
    domain: str
    domain_name: str
    township_code: str
    township_name: str
    level: str
    score: float
    events: int
    incidents: int
    # [{"month": "YYYY-MM", "events": n}] oldest first, this month last; n is None for a month before
    # the feeds' coverage began (``history_start``): no data, not no event
    monthly_events: list[dict]
    trend: str  # new | rising | flat | falling | unknown (no covered history month)
    reasons: list[str]  # the topic's own evidence, in words
    region_reasons: list[str]  # the township × domain score's reasons (shared by its topics)
    strength: dict[str, float]  # each kind of evidence as -log10 p (``Evidence.strengths``)
    sources: dict[str, int]
    signals: dict[str, int]
    callers: int
    repeat_callers: int
    villages: list[str]
    excerpts: list[dict]
    evidence: list[dict]
    lead_department: str
    priority: float = 0.0
    list_name: str = "study"  # study (研判选题) | watch (观察清单)
    followed: bool = False  # studied last month and still seen, though below this month's watch floor
    rank: int = 0
    status: str = "new"
    previous: dict | None = None  # last month's rank, title and events when matched
    # what its keywords leave out (``TopicBuilder.present``): the subjects its events name
    subject_names: list[str] = field(default_factory=list)

    @property
    def evidence_event_ids(self) -> list[str]:
        return [e["event_id"] for e in self.evidence]

    def as_json(self) -> dict:
        return {
            "rank": self.rank,
            "list": self.list_name,
            "topic_id": self.topic_id,
            "title": self.title,
            "status": self.status,
            "domain": self.domain,
            "domain_name": self.domain_name,
            "region": {"code": self.township_code, "name": self.township_name},
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "phrase": self.phrase,
            "keywords": self.keywords,
            "level": self.level,
            "score": round(float(self.score), 1),
            "priority": round(float(self.priority), 1),
            "events": self.events,
            "incidents": self.incidents,
            "monthly_events": self.monthly_events,
            "trend": self.trend,
            "previous": self.previous,
            "reasons": self.reasons,
            "region_reasons": self.region_reasons,
            "evidence_strength": self.strength,
            "sources": self.sources,
            "signals": self.signals,
            "callers": self.callers,
            "repeat_callers": self.repeat_callers,
            "villages": self.villages,
            "excerpts": self.excerpts,
            "evidence_event_ids": self.evidence_event_ids,
            "lead_department": self.lead_department,
        }


@dataclass
class TopicList:
    """The month's ranked topics plus last month's topics that no longer appear (resolved or quiet)."""

    month: str
    topics: list[Topic]
    closed: list[dict] = field(default_factory=list)


def region_scores(scores: Any, month: str) -> dict[tuple[str, str], dict]:
    """The month's township × domain score rows, keyed by (township_code, domain)."""
    return {
        (r["township_code"], r["domain"]): r
        for r in score_rows(scores)
        if r.get("period") == "month"
        and not r.get("village_code")
        and r.get("township_code")
        and r.get("domain") not in (None, "none")
        and score_month(r) == month
    }


def group_key(record: Mapping) -> tuple[str, str] | None:
    """(township_code, domain) of an event record, or None for events no topic can hold."""
    if not record.get("township_code") or record.get("domain") in (None, "none"):
        return None
    return record["township_code"], record["domain"]


_UNKNOWN = object()  # Grievances: a text not looked at yet (its phrase may be None)


class Grievances(GrievanceVocabulary):
    """``GrievanceVocabulary`` remembering each text's phrase: the county counts (``domain_counts``)
    and the text's group look up the same events."""

    def __init__(self, lexicon: Mapping):
        super().__init__(lexicon)
        self._known: dict[str, dict[str, str | None]] = defaultdict(dict)  # domain → text → phrase

    def phrase(self, domain: str, text: str) -> str | None:
        known = self._known[domain]
        found = known.get(text, _UNKNOWN)
        if found is _UNKNOWN:
            found = known[text] = GrievanceVocabulary.phrase(self, domain, text)
        return found


def count_key(grievances: GrievanceVocabulary, record: Mapping) -> tuple[str, str, str | None, str, bool] | None:
    """(township_code, domain, grievance phrase or None, month, whether it carries a warning signal)
    of an event a topic can hold: what the seasonal factors and the county's signal shares are
    counted by (``domain_counts``); None for other events."""
    key = group_key(record)
    if key is None:
        return None
    township, domain = key
    return township, domain, grievances.phrase(domain, record["text"]), record["month"], bool(record["signals"])


def domain_counts(grievances: GrievanceVocabulary, event_records: Iterable[Mapping]) -> Counter:
    """Events per ``count_key`` over the county."""
    phrase = grievances.phrase
    # count_key written out: a call less per event of the month and its history
    return Counter((e["township_code"], e["domain"], phrase(e["domain"], e["text"]), e["month"], bool(e["signals"]))
                   for e in event_records if e.get("township_code") and e.get("domain") not in (None, "none"))


class CountyCounts:
    """``domain_counts`` arranged for the lookups of one township × domain after another: the months
    it holds events of, and each domain's (township, grievance, month, events, events with a signal)
    in the order the counts first name them (so that the seasonal factors add them up in the order
    a pass over the whole mapping would)."""

    def __init__(self, counts: Mapping):
        self.counts = counts
        self.held = {k[3] for k, n in counts.items() if n}
        merged: dict[tuple, list[int]] = {}
        for (township, domain, grievance, month, signalled), n in counts.items():
            entry = merged.setdefault((domain, township, grievance, month), [0, 0])
            entry[0] += n
            entry[1] += n if signalled else 0
        self.by_domain: dict[str, list[tuple]] = defaultdict(list)
        for (domain, township, grievance, month), (n, signalled) in merged.items():
            self.by_domain[domain].append((township, grievance, month, n, signalled))

    @classmethod
    def of(cls, counts: "Mapping | CountyCounts") -> "CountyCounts":
        return counts if isinstance(counts, cls) else cls(counts)


def covered_months(counts: "Mapping | CountyCounts | None", month: str,
                   params: TopicParams = TopicParams()) -> list[str]:
    """The history months the warehouse holds events of (a county's first months have fewer than
    ``history_months`` before them); all of them when no county-wide counts are given."""
    months = [shift_month(month, -k) for k in range(params.history_months, 0, -1)]
    if counts is None:
        return months
    held = CountyCounts.of(counts).held
    return [m for m in months if m in held]


_DOMAIN = "\x00domain"  # season_factors' key of the whole domain


def season_factors(counts: "Mapping | CountyCounts", key: tuple[str, str], month: str,
                   params: TopicParams = TopicParams()) -> dict[str | None, float]:
    """How much each grievance of the domain (and, under ``_DOMAIN``, the domain as a whole) rose or
    fell across the rest of the county this month against its previous months: drowning in summer,
    school-gate traffic when term starts, straw burning at harvest. Other townships only, so a
    township's own episode does not explain itself away; two events of pseudo-count keep a rare
    grievance's chance moves small."""
    township, domain = key
    county = CountyCounts.of(counts)
    months = covered_months(county, month, params)
    if not months:  # no history to have risen against
        return {_DOMAIN: 1.0}
    now: Counter = Counter()
    before: Counter = Counter()
    for t, g, m, n, _ in county.by_domain.get(domain, ()):
        if t == township:
            continue
        if m == month:
            now[g] += n
            now[_DOMAIN] += n
        elif m in months:
            before[g] += n / len(months)
            before[_DOMAIN] += n / len(months)
    low, high = params.season_range
    return {g: min(high, max(low, (now[g] + 2.0) / (before[g] + 2.0))) for g in set(now) | set(before) | {_DOMAIN}}


def county_signal_shares(counts: "Mapping | CountyCounts", key: tuple[str, str], month: str,
                         params: TopicParams = TopicParams()) -> dict[str | None, float]:
    """Share of each grievance's events (and, under ``_DOMAIN``, the domain's) with a warning signal
    across the rest of the county this month, pulled towards ``signal_share`` when they are few: what
    a group with no covered history weighs its topics' signals against. Other townships only, so a
    township's own episode does not make itself routine, while a signal every township's events of
    the grievance carry is. Keyed by phrase (None: events of none); those the other townships had no
    event of are left out."""
    township, domain = key
    events: Counter = Counter()
    signalled: Counter = Counter()
    for t, g, m, n, s in CountyCounts.of(counts).by_domain.get(domain, ()):
        if t != township and m == month:
            for k in (g, _DOMAIN):
                events[k] += n
                signalled[k] += s
    p = params
    return {k: (signalled[k] + p.signal_share * p.prior_weight) / (events[k] + p.prior_weight)
            for k in events}


@dataclass
class GroupDraft:
    """A township × domain group's texts read (``TopicBuilder.draft_group``), before its score is known."""
    key: tuple[str, str]
    month: str
    events: list
    everything: list
    texts: list[str]
    subjects: list
    candidates: list
    seasons: dict
    phrases: Any
    rates: Mapping[str, float]
    months: Sequence[str]
    evidence: list  # each candidate's evidence but what its score says (``TopicBuilder.own_evidence``)
    surprises: list  # each one's ``Evidence.surprises``: the score changes none
    # the events the candidates explain without a score, and the wave's options for the rest
    # (``TopicBuilder.wave_options``): a score only adds evidence, so most groups explain the same
    wave: tuple[set[int], list]


@dataclass(eq=False)
class Weighed:
    """A topic as ``TopicBuilder.weigh_group`` weighs it: what ranks it (``list_topics``) and what builds
    it (``TopicBuilder.topic``). A month weighs thousands and lists a few dozen: only those are built."""
    priority: float
    followed: bool
    draft: GroupDraft
    topic_key: tuple[str | None, str | None]
    mine: list[int]  # its events of the month: indices into the draft's events
    before: list  # its events of the history months
    evidence: Evidence
    score_row: Mapping | None
    heading: tuple[str | None, str | None, str, str]  # ``TopicBuilder._heading``
    list_name: str = "study"
    topic: Topic | None = None  # built when weighed: one whose id is made of its keywords

    @property
    def events(self) -> int:
        return len(self.mine)

    @property
    def title(self) -> str:
        return self.heading[2]

    @property
    def topic_id(self) -> str:
        return self.heading[3]


class TopicBuilder:
    """Builds topics group by group. Holds the tokenizer and lexicons: create once per worker."""

    def __init__(self, gazetteer: Any = None, taxonomy: Mapping | None = None, params: TopicParams = TopicParams(),
                 lexicon: Mapping | None = None, signal_spec: Mapping | None = None):
        self.params = params
        self.regions = RegionNames.load(gazetteer)
        self.taxonomy = taxonomy or schemas.taxonomy()
        self.lexicon = lexicon or load_lexicon()
        self.signal_spec = signal_spec or schemas.signals()
        self.finder = SubjectFinder(self.lexicon, self.regions)
        self.suffixes = sorted(self.finder.kind_of, key=len, reverse=True)
        self.domains = {d["code"]: d for d in self.taxonomy["domains"]}
        self.generic_terms = set(self.lexicon["generic_terms"]) | set(self.lexicon["generic_subjects"])
        self.generic_terms |= set(self.suffixes)
        self.actor_terms = set(self.lexicon.get("actor_terms") or [])
        self.grievances = Grievances(self.lexicon)
        self.signal_names = {s["code"]: s["name_zh"] for s in self.signal_spec["signals"]}
        # escalation words are reported as signals, never as what a topic is about
        self.signal_terms = {t for s in self.signal_spec["signals"] for t in s.get("terms", [])}
        self.source_names = {}
        for feed in schemas.FEEDS:
            try:
                self.source_names[feed] = schemas.feed_contract(feed).get("name_zh", feed)
            except (OSError, ValueError):
                self.source_names[feed] = feed
        self._words: TextWords | None = None
        self._content_words: dict[str, bool] = {}  # tokens repeat across texts: decide each once
        self.instants = ReportInstants()  # the report times of the events weighed, parsed once
        self._county: CountyCounts | None = None

    def _county_counts(self, counts: Mapping | None) -> CountyCounts | None:
        """The county-wide counts arranged once for all groups (``group_topics`` gets the same ones)."""
        if counts is None:
            return None
        if self._county is None or self._county.counts is not counts:
            self._county = CountyCounts.of(counts)
        return self._county

    # -- text -----------------------------------------------------------------------------------

    @property
    def words(self) -> TextWords:
        """The tokenizer, its dictionary loaded as the texts cut need it, with the lexicon's words."""
        if self._words is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is not the job's log
            words = TextWords(jieba.Tokenizer())
            lexicon_words = {k for d in self.taxonomy["domains"] for k in d.get("keywords", [])}
            lexicon_words |= {t for s in self.signal_spec["signals"] for t in s.get("terms", [])}
            lexicon_words |= set(self.grievances.terms())
            for word in sorted(lexicon_words):
                words.add_word(word, freq=2000, tag="n")
            self._words = words
        return self._words

    @staticmethod
    def feature_text(text: str) -> str:
        return _NOT_NAME.sub(" ", _MASK_OR_DIGIT.sub(" ", text))

    def content_terms(self, text: str, exclude: Iterable[str]) -> list[str]:
        """Keyword candidates: content words and pairs of adjacent content words (no names, people,
        fillers or escalation words)."""
        for term in sorted(exclude, key=len, reverse=True):
            text = text.replace(term, "|")
        text = self.finder.strip_regions(text)
        # dictionary words with their tags, without the HMM: its guesses at unknown words cut
        # fragments across words ("小时前停"); times, numbers, pronouns and adverbs say nothing of a
        # topic, and a person's name (nr) must not become its keyword
        tagged = self.words.tagged(self.feature_text(text))
        tokens = [word for word, _ in tagged]
        ok = [tag[0] not in _FUNCTION_TAG_CLASSES and not tag.startswith("nr") and self._is_content(word)
              for word, tag in tagged]
        terms = [t for t, good in zip(tokens, ok) if good]
        for i in range(len(tokens) - 1):
            if ok[i] and ok[i + 1] and len(tokens[i]) + len(tokens[i + 1]) <= 6:
                terms.append(tokens[i] + tokens[i + 1])
        return terms

    # -- one group ------------------------------------------------------------------------------

    def group_topics(self, key: tuple[str, str], month_events: Sequence[Mapping], history: Sequence[Mapping],
                     score_row: Mapping | None, month: str, counts: Mapping | None = None,
                     previous: Sequence[Mapping] = ()) -> list[Topic]:
        """Topics of one township × domain from its events of the month (and the history months),
        those whose own evidence reaches the watch list (``watch_priority``).

        The month's and the history's events are grouped together, so each topic's count in the
        previous months is measured the same way as this month's. ``counts``: the county's events per
        (township, domain, grievance, month) (``domain_counts``), for the seasonal factors.
        ``previous``: last month's topics; those it listed to study and still seen this month stay
        watched (``followed``) even when their evidence is below the watch list's.

        The topics come without keywords and excerpts: ``present`` the listed ones (``listed_by_group``)."""
        draft = self.draft_group(key, month_events, history, month, counts)
        return [self.topic(weighed) for weighed in self.weigh_group(draft, score_row, previous)] if draft else []

    def draft_group(self, key: tuple[str, str], month_events: Sequence[Mapping], history: Sequence[Mapping],
                    month: str, counts: Mapping | None = None) -> GroupDraft | None:
        """``group_topics``' reading of the group's texts, which needs no score (None: too few events)."""
        p = self.params
        events = self._within(month_events, month, month)
        if len(events) < p.min_group_events:
            return None
        past = self._within(history, shift_month(month, -p.history_months), shift_month(month, -1))
        everything = events + past
        texts = [e["text"] for e in everything]
        subjects = unify_subjects(canonical_subjects(self.finder.mentions_of(texts)), texts, self.suffixes,
                                  kind_of=self.finder.kind_of)
        grievances = [self.grievances.phrase(key[1], t) for t in texts]
        keys = self.topic_keys(key[1], everything, subjects, grievances, month)
        members: dict[tuple, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            members[k].append(i)
        n = len(events)
        candidates = []
        for k in sorted(members, key=lambda k: (k[0] or "", k[1] or "")):
            mine = [i for i in members[k] if i < n]
            if k == (None, None):
                continue  # events about nothing in common are no topic (a wave may hold them: _group_wave)
            if len(mine) < p.min_events and not any(events[i]["signals"] for i in mine):
                continue
            candidates.append((k, mine, [i for i in members[k] if i >= n]))
        candidates = self._merge_same_titles(candidates, events, subjects)
        county = self._county_counts(counts)
        seasons = season_factors(county or {}, key, month, p)
        phrases = self.grievances.phrases(key[1])
        months = covered_months(county, month, p)
        # no covered history: the group's own month is what its topics' corroboration is weighed
        # against, and each event's grievance in the county's other townships this month what their
        # signals are: a signal every township's events of it carry is routine, one township's is not
        rates = self._group_rates(past if months else events)
        shares = {} if months else county_signal_shares(county or {}, key, month, p)
        # most of the weighing needs no score: done here, it runs while the month is still scored
        evidence = []
        for k, mine, before in candidates:
            season_of = k[1] if k[1] in phrases else None
            evidence.append(self.own_evidence([events[i] for i in mine], [everything[i] for i in before],
                                              (seasons.get(season_of or _DOMAIN, 1.0), season_of),
                                              self._signal_rates(rates, shares, [grievances[i] for i in mine]),
                                              months))
        surprises = [own.surprises(p) for own in evidence]
        explained = self._explained(candidates, [priority(scored_evidence(own, None), p, known)
                                                 for own, known in zip(evidence, surprises)])
        rates = self._signal_rates(rates, shares)  # a wave's events are of no grievance in common
        wave = self.wave_options(everything, len(events), candidates, explained, (seasons[_DOMAIN], None), rates, months)
        return GroupDraft(key, month, events, everything, texts, subjects, candidates, seasons, phrases, rates, months,
                          evidence, surprises, (explained, wave))

    def weigh_group(self, draft: GroupDraft, score_row: Mapping | None, previous: Sequence[Mapping] = ()) -> list[Weighed]:
        """``group_topics``' evidence, against the group's score row, for a ``draft_group``: its topics
        weighed, to be built (``topic``) if listed."""
        p = self.params
        key, events, everything, texts, subjects = draft.key, draft.events, draft.everything, draft.texts, draft.subjects
        candidates, seasons, rates, months = draft.candidates, draft.seasons, draft.rates, draft.months
        n = len(events)
        found = []
        for (k, mine, before), own, known in zip(candidates, draft.evidence, draft.surprises):
            evidence = scored_evidence(own, score_row)
            found.append((k, mine, [everything[i] for i in before], evidence, priority(evidence, p, known)))
        explained = self._explained(candidates, [value for *_, value in found])
        drafted, options = draft.wave
        if explained != drafted:
            options = self.wave_options(everything, n, candidates, explained, (seasons[_DOMAIN], None), rates, months)
        wave = self._group_wave(everything, options, score_row)
        if wave:
            found.append(wave)
        followed_subjects, followed_phrases = set(), set()
        for q in previous:  # last month's topics to study, not its watch list: that would grow month by month
            if _prev_region(q) == key[0] and q.get("domain") == key[1] and q.get("list", "study") == "study":
                if q.get("subject"):
                    followed_subjects.add(q["subject"])
                else:
                    followed_phrases.add(q.get("phrase"))
        weighed = []
        for k, mine, before, evidence, value in found:
            cluster = [events[i] for i in mine]
            followed = False
            if value < p.watch_priority:
                shown = None if k[0] in (_WAVE_MONTH, _WAVE_DAYS) else self._subject(
                    k[0], cluster, [subjects[i] for i in mine])[0]
                followed = shown in followed_subjects if shown else (k[1] is not None and k[1] in followed_phrases)
                if not followed or len(mine) < p.min_subject_events:
                    continue
            one = Weighed(value, followed, draft, k, mine, before, evidence, score_row,
                          self._heading(key, k, cluster, [subjects[i] for i in mine]))
            if not one.heading[0] and not k[1]:  # its id is made of its keywords: built and presented now
                one.topic = self._built(one)
                self.present(one.topic, evenly_spread(texts, p.background_sample))
                one.heading = (*one.heading[:3], one.topic.topic_id)
            weighed.append(one)
        return weighed

    def topic(self, weighed: Weighed) -> Topic:
        """The ``Topic`` of a ``weigh_group`` entry (without keywords and excerpts: ``present``), on the
        list it was put on (``list_topics``)."""
        topic = weighed.topic or self._built(weighed)
        topic.list_name = weighed.list_name
        return topic

    def _built(self, weighed: Weighed) -> Topic:
        w, draft = weighed, weighed.draft
        topic = self._topic(draft.key, w.topic_key, [draft.events[i] for i in w.mine],
                            [draft.subjects[i] for i in w.mine], w.before, w.score_row, draft.month, w.evidence,
                            w.heading, draft.months)
        topic.priority = w.priority
        topic.followed = w.followed
        if w.followed:
            topic.reasons.append(f"上月列入清单，本月仍有{w.events}件，继续观察")
        return topic

    def _explained(self, candidates: Sequence[tuple], values: Sequence[float]) -> set[int]:
        """The events (month's and history's) of the candidates whose priority reaches the watch list."""
        return {i for (_, mine, before), value in zip(candidates, values) if value >= self.params.watch_priority
                for i in mine + before}

    def _group_wave(self, everything: Sequence[Mapping], options: Sequence[tuple], score_row: Mapping | None):
        """A wave of one kind of case told in many ways — fraud calls of every sort in two days, or all
        month — as a candidate of its own: of the ``wave_options``, the one of stronger evidence against
        the group's ``score_row``. None when there is none."""
        p = self.params
        best = None
        for marker, mine, before, own in options:
            evidence = scored_evidence(own, score_row)
            value = priority(evidence, p)
            if best is None or value > best[-1]:
                start = evidence.burst_start.astimezone(_TZ)
                domain = self.domains.get(everything[0]["domain"], {}).get("name_zh", everything[0]["domain"])
                template = self.lexicon["wave_phrase"]["month" if marker == _WAVE_MONTH else "days"]
                best = ((marker, template.format(month=start.month, day=start.day, domain=domain)), mine, before,
                        evidence, value)
        return best

    def wave_options(self, everything: Sequence[Mapping], n: int, keyed: Sequence[tuple], explained: set[int],
                     season: tuple[float, str | None], rates: Mapping[str, float], months: Sequence[str]) -> list[tuple]:
        """The group's events that no listed topic explains (``explained``), over the month and over its
        busiest few days, as (marker, events, history, ``own_evidence``) each: none when they are few or
        one subject or grievance holds most of them."""
        p = self.params
        rest = [i for i in range(n) if i not in explained]
        past_rest = [everything[i] for i in range(n, len(everything)) if i not in explained]
        owner = {i: k for k, mine, _ in keyed for i in mine}
        by_month: dict[str, list] = defaultdict(list)
        for e in past_rest:
            by_month[e["month"]].append(e)
        window = [rest[j] for j in busiest_events([everything[i] for i in rest], p.burst_days, self.instants)]
        options = [  # the narrower first: it wins ties
            # the busiest days against the busiest days of each previous month
            (_WAVE_DAYS, window,
             [m[i] for m in by_month.values() for i in busiest_events(m, p.burst_days, self.instants)]),
            # the month's unexplained events against the previous months' ones
            (_WAVE_MONTH, rest, past_rest),
        ]
        found = []
        for marker, mine, before in options:
            if len(mine) < p.min_wave_events:
                continue
            holder, held = Counter(owner.get(i) for i in mine).most_common(1)[0]
            if holder is not None and 2 * held >= len(mine):
                continue
            # no history: the busiest days against the unexplained events of the whole month
            found.append((marker, mine, before, self.own_evidence([everything[i] for i in mine], before, season, rates,
                                                                  months, [everything[i] for i in rest])))
        return found

    def _merge_same_titles(self, candidates: Sequence[tuple], events: Sequence[Mapping],
                           subjects: Sequence[Sequence[tuple[str, str]]]) -> list[tuple]:
        """One candidate per subject and phrase as the title shows them: a grievance whose events come
        from one village takes that village as its subject, and joins the topic that names it."""
        merged: dict[tuple, tuple] = {}
        for k, mine, before in candidates:
            shown = (self._subject(k[0], [events[i] for i in mine], [subjects[i] for i in mine])[0], k[1])
            if shown in merged:
                k0, mine0, before0 = merged[shown]
                merged[shown] = (k0 if k0[0] else k, sorted(mine0 + mine), sorted(before0 + before))
            else:
                merged[shown] = (k, mine, before)
        return list(merged.values())

    def _group_rates(self, reference: Sequence[Mapping]) -> dict[str, float]:
        """Shares of the group's ``reference`` events (its past ones, or its month's when it has no
        covered history) with a warning signal and of their incidents seen by several feeds, pulled
        towards the county-wide priors when they are few."""
        p = self.params
        feeds_of: dict[str, set] = defaultdict(set)
        for e in reference:
            feeds_of[e["incident_id"] or e["event_id"]].add(e["source"])
        signal = sum(1 for e in reference if e["signals"])
        corroborated = sum(1 for feeds in feeds_of.values() if len(feeds) > 1)
        return {
            "signal": (signal + p.signal_share * p.prior_weight) / (len(reference) + p.prior_weight),
            "corroborated": (corroborated + p.corroborated_share * p.prior_weight) / (len(feeds_of) + p.prior_weight),
        }

    @staticmethod
    def _signal_rates(rates: Mapping[str, float], shares: Mapping[str | None, float],
                      grievances: Sequence[str | None] = (_DOMAIN,)) -> Mapping[str, float]:
        """``rates`` with the signal share of a cluster's events by ``county_signal_shares`` (no covered
        history): each event's by its own grievance (a subject's topic tells several), the domain's for a
        wave; a grievance the rest of the county told none of keeps the group's own rate."""
        if not shares:
            return rates
        return {**rates, "signal": sum(shares.get(g, rates["signal"]) for g in grievances) / len(grievances)}

    def own_evidence(self, cluster: Sequence[Mapping], before: Sequence[Mapping], seasonal: tuple[float, str | None],
                     rates: Mapping[str, float], months: Sequence[str], spread: Sequence[Mapping] | None = None
                     ) -> Evidence:
        """The cluster's evidence against ``before``, its events (or busiest days) of the history
        ``months`` that the warehouse covers, but what its township × domain's score row says
        (``scored_evidence``). ``seasonal``: the factor and the grievance it measured (None: the
        domain). With no covered month its count says nothing and its busiest days are weighed
        against the month's events of ``spread`` (default: the cluster's) spread evenly
        (``even_burst``)."""
        p = self.params
        season, season_of = seasonal
        by_month: dict[str, list] = defaultdict(list)
        for e in before:
            by_month[e["month"]].append(e)
        covered = max(1, len(months))
        mean = sum(len(by_month[m]) for m in months) / covered
        past_bursts = [self.instants.busiest(by_month[m], p.burst_days)[0] for m in months]
        if months:
            burst_expected, windows = season * max(sum(past_bursts) / covered, p.prior_events), 1.0
        else:
            burst_expected, windows = even_burst(spread or cluster, p.burst_days)
        expected = season * max(mean, p.prior_events)
        feeds_of: dict[str, set] = defaultdict(set)
        for e in cluster:
            feeds_of[e["incident_id"] or e["event_id"]].add(e["source"])
        burst, start = self.instants.busiest(cluster, p.burst_days)
        callers = Counter(e["caller_key"] for e in cluster if e["caller_key"])
        past_signals = sum(1 for m in months for e in by_month[m] if e["signals"]) / covered
        return Evidence(
            events=len(cluster),
            history_mean=mean,
            history_months=len(months),
            expected=expected,
            season=season,
            season_of=season_of,
            burst=burst,
            burst_start=start,
            burst_expected=burst_expected,
            signal_events=sum(1 for e in cluster if e["signals"]),
            signal_expected=max(season * past_signals, len(cluster) * rates["signal"]),
            corroborated=sum(1 for feeds in feeds_of.values() if len(feeds) > 1),
            corroborated_expected=len(feeds_of) * rates["corroborated"],
            repeat_callers=sum(1 for c in callers.values() if c >= 2),
            level="none",
            region_share=0.0,
            burst_windows=windows,
        )

    @staticmethod
    def _within(events: Iterable[Mapping], first: str, last: str) -> list[dict]:
        # topic building never changes a record: no copies
        return sorted((e for e in map(as_record, events) if first <= e["month"] <= last),
                      key=lambda e: (e["reported_at"] or "", e["event_id"]))

    def topic_keys(self, domain: str, events: Sequence[Mapping], subjects: Sequence[Sequence[tuple[str, str]]],
                   grievances: Sequence[str | None], month: str) -> list[tuple[str | None, str | None]]:
        """(subject, phrase) of each event: what it is about and what is wrong.

        A subject that at least ``min_subject_events`` events of the month name is a topic of its
        own, titled with its most frequent grievance (one matter is told in several ways: "信访局
        没有答复" and "对处理结果不服" about one village are one topic). Other events go by their
        grievance; events naming none are clustered on their text, and a cluster is named by a
        noun its events share and the rest of the group does not, else it joins the 其他 topic."""
        p = self.params
        in_month = [e["month"] == month for e in events]
        named_month: Counter = Counter()
        named_all: Counter = Counter()
        for subs, current in zip(subjects, in_month):
            if not subs:
                continue
            names = {s for s, _ in subs}
            named_all.update(names)
            if current:
                named_month.update(names)
        primary = [max((s for s, _ in subs), key=lambda s: (named_month[s], named_all[s], len(s), s)) if subs
                   else None for subs in subjects]
        entities = {s for s, c in named_month.items() if c >= p.min_subject_events}
        parts = Counter((primary[i], grievances[i]) for i in range(len(events))
                        if in_month[i] and primary[i] in entities and grievances[i])
        main = {s: max(((c, g) for (s2, g), c in parts.items() if s2 == s), default=(0, None))[1] for s in entities}
        keys: list = [None] * len(events)
        residual = []
        for i, (s, g) in enumerate(zip(primary, grievances)):
            if s in entities:
                keys[i] = (s, main[s])
            elif g:
                keys[i] = (None, g)
            else:
                residual.append(i)
        if residual:
            labels = self.cluster([events[i] for i in residual], [subjects[i] for i in residual])
            clusters: dict[int, list[int]] = defaultdict(list)
            for i, label in zip(residual, labels):
                clusters[label].append(i)
            background = [e["text"] for e in events]
            background_counts: dict[str, int] = {}
            for label, idx in clusters.items():
                texts = [events[i]["text"] for i in idx if in_month[i]]
                noun = (self.shared_noun(texts, background, background_counts=background_counts)
                        if len(texts) >= p.min_subject_events else None)
                for i in idx:
                    keys[i] = (None, noun)
        return keys

    def shared_noun(self, texts: Sequence[str], background: Sequence[str], lift: float = 3.0,
                    background_counts: dict[str, int] | None = None) -> str | None:
        """A noun that at least half of the texts use, ``lift`` times as often as the group's texts
        do, and that says what they are about (not who, when or how it was reported).
        ``background_counts``: the background's texts holding each word, kept between calls with the
        same background (a group's clusters share their nouns)."""
        counts: Counter = Counter()
        nouns: dict[str, set[str]] = {}  # a text reported twice is cut once
        for text in texts:
            found = nouns.get(text)
            if found is None:
                found = nouns[text] = set(self.content_nouns(text))
            counts.update(found)
        known = {} if background_counts is None else background_counts
        shared = []
        for word, c in counts.items():
            share = c / len(texts)
            if share < 0.5:  # most words: no need to count them over the whole group
                continue
            held = known.get(word)
            if held is None:
                held = known[word] = sum(1 for t in background if word in t)
            base = held / max(1, len(background))
            if share >= lift * base:
                shared.append(word)
        return max(shared, key=lambda w: (counts[w], len(w), w)) if shared else None

    def content_nouns(self, text: str) -> list[str]:
        text = self.finder.strip_regions(text)
        # without the HMM: the costly guessing of unknown words is no use, a title takes dictionary nouns
        return [word for word, tag in self.words.tagged(self.feature_text(text))
                if tag in _NOUN_TAGS and self._is_content(word)]

    def _is_content(self, word: str) -> bool:
        known = self._content_words.get(word)
        if known is None:
            known = (len(word) >= 2 and not word.isascii() and word not in self.generic_terms
                     and word not in self.signal_terms and word not in self.actor_terms
                     and word not in self.regions.villages and not any(word.endswith(s) for s in self.suffixes)
                     and not word.endswith(_ADDRESSED))
            self._content_words[word] = known
        return known

    def _text_space(self, texts: Sequence[str]):
        """TF-IDF of the texts' character 2–3-grams; None when they hold none."""
        return char_tfidf(texts, self.feature_text, (2, 3))

    def vectors(self, events: Sequence[Mapping], subjects: Sequence[Sequence[tuple[str, str]]]):
        p = self.params
        text_weight = math.sqrt(max(0.0, 1.0 - p.subject_weight - p.village_weight))
        blocks = []
        matrix = self._text_space([e["text"] for e in events])
        if matrix is not None:
            blocks.append(matrix * text_weight)
        subject_index = {s: i for i, s in enumerate(sorted({s for subs in subjects for s, _ in subs}))}
        village_index = {v: i for i, v in enumerate(sorted({e["village_code"] for e in events if e["village_code"]}))}
        for index, weight, keys in (
            (subject_index, p.subject_weight, [[s for s, _ in subs] for subs in subjects]),
            (village_index, p.village_weight, [[e["village_code"]] if e["village_code"] else [] for e in events]),
        ):
            if not index:
                continue
            rows, cols, vals = [], [], []
            for r, ks in enumerate(keys):
                for k in ks:
                    rows.append(r)
                    cols.append(index[k])
                    vals.append(math.sqrt(weight / len(ks)))
            blocks.append(sparse.csr_matrix((vals, (rows, cols)), shape=(len(events), len(index))))
        if not blocks:
            return sparse.csr_matrix((len(events), 1))
        return normalize(sparse.hstack(blocks).tocsr())

    def cluster(self, events: Sequence[Mapping], subjects: Sequence[Sequence[tuple[str, str]]]) -> list[int]:
        """Cluster labels, deterministic for a given event order (what they number is arbitrary)."""
        n = len(events)
        if n == 1:
            return [0]
        x = self.vectors(events, subjects)
        t = self.params.distance_threshold
        if n <= self.params.max_agglomerative:
            distances = np.clip(1.0 - (x @ x.T).toarray(), 0.0, 2.0)
            np.fill_diagonal(distances, 0.0)
            return average_linkage(distances, t)
        labels = DBSCAN(eps=t, min_samples=2, metric="cosine").fit_predict(x)
        # DBSCAN's noise points are singletons, numbered after the clusters
        next_label = int(labels.max()) + 1
        out = []
        for v in labels:
            if v < 0:
                out.append(next_label)
                next_label += 1
            else:
                out.append(int(v))
        return out

    def _heading(self, key, topic_key, cluster, cluster_subjects) -> tuple[str | None, str | None, str, str]:
        """The topic's subject, its kind, its title and its id (made of its keywords instead when it has
        neither subject nor phrase: ``present``)."""
        township, domain = key
        phrase = topic_key[1]
        township_name = self.regions.name(township)
        if topic_key[0] in (_WAVE_MONTH, _WAVE_DAYS):  # titled by its phrase alone
            subject, kind, title = None, None, f"{township_name}·{phrase}"
        else:
            subject, kind = self._subject(topic_key[0], cluster, cluster_subjects)
            title = self._title(township_name, subject, phrase, domain, cluster)
        return subject, kind, title, _topic_id(township, domain, subject, [phrase] if phrase else [])

    def _topic(self, key, topic_key, cluster, cluster_subjects, past_members, score_row, month,
               evidence: Evidence, heading: tuple[str | None, str | None, str, str], covered: Sequence[str]) -> Topic:
        """The topic without its keywords and excerpts (``present``); ``heading``: its ``_heading``;
        ``covered``: the history months the warehouse covers (the others have no count)."""
        township, domain = key
        n = len(cluster)
        subject, kind, title, topic_id = heading
        phrase = topic_key[1]
        names = {s for subs in cluster_subjects for s, _ in subs} | ({subject} if subject else set())
        months = [shift_month(month, -k) for k in range(self.params.history_months, 0, -1)]
        past_counts = Counter(e["month"] for e in past_members)
        monthly = [{"month": m, "events": past_counts[m] if m in covered else None} for m in months]
        monthly.append({"month": month, "events": n})
        trend = _trend(n, [past_counts[m] for m in covered]) if covered else "unknown"
        signals = Counter(s for e in cluster for s in e["signals"])
        sources = Counter(e["source"] for e in cluster)
        callers = Counter(e["caller_key"] for e in cluster if e["caller_key"])
        repeat = sum(1 for c in callers.values() if c >= 2)
        incidents = len({e["incident_id"] or e["event_id"] for e in cluster})
        villages = [self.regions.name(v) for v, _ in Counter(e["village_code"] for e in cluster
                                                              if e["village_code"]).most_common(5)]
        level = (score_row or {}).get("level") or "none"
        score = float((score_row or {}).get("score") or 0.0)
        township_name = self.regions.name(township)
        reasons = self._reasons(evidence, domain, signals, topic_key[0] == _WAVE_DAYS)
        topic = Topic(
            topic_id=topic_id,
            month=month,
            title=title,
            subject=subject,
            subject_kind=kind,
            phrase=phrase,
            keywords=[],
            domain=domain,
            domain_name=self.domains.get(domain, {}).get("name_zh", domain),
            township_code=township,
            township_name=township_name,
            level=level,
            score=score,
            events=n,
            incidents=incidents,
            monthly_events=monthly,
            trend=trend,
            reasons=reasons,
            region_reasons=list((score_row or {}).get("reasons") or []),
            strength={k: round(v, 2) for k, v in evidence.strengths(self.params).items()},
            sources=dict(sources.most_common()),
            signals=dict(signals.most_common()),
            callers=len(callers),
            repeat_callers=repeat,
            villages=villages,
            excerpts=[],
            evidence=[{k: e[k] for k in ("event_id", "source", "reported_at", "village_code", "text", "signals",
                                         "incident_id", "caller_key")} for e in cluster],
            lead_department=self.domains.get(domain, {}).get("lead_department", ""),
            subject_names=sorted(names),
        )
        return topic

    def background(self, month_events: Sequence[Mapping], history: Sequence[Mapping], month: str) -> list[str]:
        """The texts a township × domain's topics' keywords are weighed against (``present``): an even
        sample of its month's and history's events, in ``group_topics``' order."""
        p = self.params
        events = self._within(month_events, month, month)
        past = self._within(history, shift_month(month, -p.history_months), shift_month(month, -1))
        return evenly_spread([e["text"] for e in events] + [e["text"] for e in past], p.background_sample)

    def present(self, topic: Topic, background: Sequence[str]) -> Topic:
        """Fill in what the report shows of a topic but its rank does not depend on: keywords against
        its group's ``background`` and excerpts. Done for the listed topics only (``list_topics``), a
        few dozen of the thousands ``group_topics`` weighs; a topic with neither subject nor phrase
        is presented at once, as its id is made of its keywords."""
        topic.keywords = self._keywords(topic.evidence, topic.subject_names, background, topic.subject, topic.phrase,
                                        topic.domain)
        topic.excerpts = self._excerpts(topic.evidence)
        if not topic.subject and not topic.phrase:
            topic.topic_id = _topic_id(topic.township_code, topic.domain, None, topic.keywords)
        return topic

    def _reasons(self, evidence: Evidence, domain: str, signals: Counter, burst: bool = False) -> list[str]:
        """Why this topic, from its own events: what the card lists under its title. ``burst``: the
        topic is a township × domain's busiest days."""
        p = self.params
        mean, months = evidence.history_mean, evidence.history_months
        start = evidence.burst_start.astimezone(_TZ) if evidence.burst_start else None
        if not months:
            when = f"{start.month}月{start.day}日起{p.burst_days}天内" if burst else "本月"
            reasons = [f"{when}{evidence.events}件（此前月份尚无数据）"]
        elif burst:
            reasons = [f"{start.month}月{start.day}日起{p.burst_days}天内{evidence.events}件，"
                       f"前{months}个月最集中的{p.burst_days}天平均{mean:.1f}件"]
        else:
            reasons = [f"本月{evidence.events}件，前{months}个月月均{mean:.1f}件"]
        if months and abs(evidence.season - 1.0) >= 0.3:
            name = evidence.season_of or self.domains.get(domain, {}).get("name_zh", domain)
            reasons.append(f"全县其他乡镇{name}事件本月为前{months}个月的{evidence.season:.1f}倍，已按此折算预期")
        if not burst and evidence.burst >= 3 and evidence.strengths(p)["burst"] >= 1.0 and start:
            reasons.append(f"{start.month}月{start.day}日起{p.burst_days}天内集中发生{evidence.burst}起")
        if signals:
            reasons.append("含预警信号：" + "、".join(
                f"{self.signal_names.get(code, code)}{count}件" for code, count in signals.most_common()))
        if evidence.corroborated:
            reasons.append(f"{evidence.corroborated}起经多个渠道同时反映")
        if evidence.repeat_callers:
            reasons.append(f"{evidence.repeat_callers}名来电人重复反映")
        return reasons

    def _subject(self, named: str | None, cluster, cluster_subjects) -> tuple[str | None, str | None]:
        """The subject the topic was formed on, else the village most of its events come from."""
        if named:
            kinds = {s: k for subs in cluster_subjects for s, k in subs}
            return named, kinds.get(named, "village" if named in self.regions.villages else None)
        villages = Counter(e["village_code"] for e in cluster if e["village_code"])
        if villages and len(cluster) >= self.params.min_events:
            code, c = villages.most_common(1)[0]
            if c * 2 >= len(cluster) and code in self.regions.names:
                return self.regions.name(code), "village"
        return None, None

    def _keywords(self, cluster, names, background, subject, phrase, domain) -> list[str]:
        """Up to five words that characterise the topic against its group and history (c-TF-IDF),
        the grievance phrase first. ``names``: the subjects its events name."""
        exclude = set(names) | {subject_core(n, self.suffixes) for n in names}
        sample = evenly_spread(cluster, self.params.text_sample)
        candidates = set()
        for e in sample:
            candidates.update(self.content_terms(e["text"], exclude))
        texts = [e["text"] for e in sample]
        domain_words = set(self.domains.get(domain, {}).get("keywords", []))
        # The terms go by score (share × idf × bonus × length), then by term. A term's background
        # count (its idf) is most of the cost, and five keywords seldom need more than the leading
        # terms: each term gets a ceiling, its score were it in no background text (a hair above,
        # so rounding never lifts a score over it); terms are counted in the order of their
        # ceilings, and a counted term is taken once its score beats the next uncounted ceiling.
        most_idf = (math.log(len(background) + 1) + 1.0) * (1.0 + 1e-9)
        ceilings = []
        for term in candidates:
            share = sum(1 for x in texts if term in x) / len(texts)
            bonus = 1.5 if term in domain_words else 1.0
            length = 1.0 + 0.15 * min(len(term) - 2, 4)
            ceilings.append((share * most_idf * bonus * length, term, share, bonus, length))
        ceilings.sort(key=lambda c: (-c[0], c[1]))
        keywords = [phrase] if phrase else []
        counted: list[tuple[float, str]] = []  # heap of (-score, term)

        def take(term: str) -> None:
            if not any(term in k or k in term for k in keywords):
                keywords.append(term)

        for ceiling, term, share, bonus, length in ceilings:
            while counted and len(keywords) < 5 and -counted[0][0] > ceiling:
                take(heapq.heappop(counted)[1])
            if len(keywords) == 5:
                return keywords
            df = sum(1 for t in background if term in t)
            idf = math.log((len(background) + 1) / (df + 1)) + 1.0
            heapq.heappush(counted, (-(share * idf * bonus * length), term))
        while counted and len(keywords) < 5:
            take(heapq.heappop(counted)[1])
        return keywords

    def _title(self, township_name, subject, phrase, domain, cluster) -> str:
        endings = self.lexicon["title_endings"]
        n = len(cluster)
        if n >= int(endings["many_events"]):
            sources = Counter(e["source"] for e in cluster)
            main_source, count = sources.most_common(1)[0] if sources else (None, 0)
            by_source = endings.get("many_by_source", {}).get(main_source)
            majority = count > float(endings.get("majority_share", 0.5)) * n
            ending = by_source if (by_source and majority) else endings["many"]
        else:
            ending = endings["few"]
        domain_name = self.domains.get(domain, {}).get("name_zh", domain)
        what = phrase or domain_name
        return f"{township_name}·{subject or ''}{what}{ending}"

    def _excerpts(self, cluster) -> list[dict]:
        """The events nearest the cluster's centre (TF-IDF within the cluster), preferring different
        sources and texts."""
        limit = self.params.excerpt_chars
        cluster = evenly_spread(cluster, self.params.text_sample)
        order = list(range(len(cluster)))
        matrix = self._text_space([e["text"] for e in cluster]) if len(cluster) > 1 else None
        if matrix is not None:
            m = normalize(matrix)
            centre = np.asarray(m.mean(axis=0)).ravel()
            sims = m @ centre
            order = sorted(order, key=lambda i: (-float(sims[i]), cluster[i]["event_id"]))
        picked, seen_sources, seen_texts = [], set(), set()
        for pass_ in (0, 1):
            for i in order:
                e = cluster[i]
                if len(picked) == self.params.excerpts:
                    break
                if i in picked or e["text"] in seen_texts or (pass_ == 0 and e["source"] in seen_sources):
                    continue
                picked.append(i)
                seen_sources.add(e["source"])
                seen_texts.add(e["text"])
        result = []
        for i in picked:
            e = cluster[i]
            text = e["text"].strip()
            result.append({
                "event_id": e["event_id"],
                "source": e["source"],
                "source_name": self.source_names.get(e["source"], e["source"]),
                "reported_at": e["reported_at"],
                "text": text if len(text) <= limit else text[: limit - 1] + "…",
            })
        return result


def average_linkage(distances: np.ndarray, threshold: float) -> list[int]:
    """The clusters ``AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
    distance_threshold=threshold).fit_predict(distances)`` forms, each labelled by its last merge (or
    its only event): the tree scikit-learn builds (scipy's average linkage of the distances above the
    diagonal), less its last merges, as many as reach the threshold (scikit-learn cuts those off one
    by one, the latest first). Without scikit-learn's checks of the n × n matrix and its tree
    bookkeeping: a third of the clustering's cost for the few hundred events of a group."""
    n = len(distances)
    merges = hierarchy.linkage(distances[np.triu_indices(n, k=1)], method="average")
    kept = n - 1 - int(np.count_nonzero(merges[:, 2] >= threshold))
    parent = list(range(n + kept))
    for node, (a, b) in enumerate(merges[:kept, :2].astype(np.intp).tolist(), start=n):
        parent[a] = parent[b] = node
    # a merge's node comes after the nodes it joins: settle the roots from the last node down
    for node in range(len(parent) - 1, -1, -1):
        parent[node] = parent[parent[node]]
    return parent[:n]


def _trend(current: int, previous: Sequence[int]) -> str:
    if not previous or not any(previous):
        return "new"
    mean = sum(previous) / len(previous)
    last = previous[-1]
    if current >= 1.3 * max(mean, last) and current - mean >= 2:
        return "rising"
    if current <= 0.7 * max(mean, last) and mean - current >= 2:
        return "falling"
    return "flat"


def _topic_id(township: str, domain: str, subject: str | None, keywords: Sequence[str]) -> str:
    basis = "|".join([township, domain, subject or "", *([] if subject else keywords[:2])])
    return hashlib.sha1(basis.encode("utf-8")).hexdigest()[:12]


_LEVEL_WEIGHT = {"red": 1.0, "orange": 0.8, "yellow": 0.6, "blue": 0.4, "none": 0.0}
_NOUN_TAGS = frozenset({"n", "nz", "vn", "nt", "nw", "an"})
# jieba's tag classes of words that never characterise a topic: numerals, quantifiers, times,
# pronouns, adverbs, directions, prepositions, conjunctions, particles, modals, interjections,
# onomatopoeia, status words and what the dictionary does not know (x)
_FUNCTION_TAG_CLASSES = frozenset("mqtrdfpcuyeozx")
# a caller as the work order addresses them (梁先生): who, not what
_ADDRESSED = ("先生", "女士")
_LN10 = math.log(10.0)


def _excess(score_row: Mapping | None) -> float:
    """Events of the region × domain above its expected count this month."""
    if not score_row:
        return 0.0
    return max(0.0, float(score_row.get("observed") or 0) - float(score_row.get("expected") or 0))


def scored_evidence(own: Evidence, score_row: Mapping | None) -> Evidence:
    """A topic's ``TopicBuilder.own_evidence`` with its township × domain's level and the share of
    the township × domain's excess that the topic makes."""
    excess = max(0.0, own.events - own.history_mean)
    return replace(own, level=(score_row or {}).get("level") or "none",
                   region_share=min(1.0, excess / max(_excess(score_row), excess, 1.0)))


def even_burst(events: Sequence[Mapping], days: int) -> tuple[float, float]:
    """What the busiest ``days`` of a month with no covered history are weighed against: the mean of a
    window of ``days`` were the events' incidents spread evenly over their month, and the number of
    such windows in the month (``Evidence.burst_windows``)."""
    month_days = month_end(events[0]["month"]).day
    incidents = len({e["incident_id"] or e["event_id"] for e in events})
    return incidents * days / month_days, month_days / days


def surprise(count: float, expected: float, overdispersion: float = 0.0) -> float:
    """-log10 P(X ≥ count) when X is negative binomial with this mean and a spread of
    ``overdispersion`` × mean beyond Poisson (Poisson at 0): 2 means a 1-in-100 month."""
    if count <= 0:
        return 0.0
    expected = max(expected, 1e-6)
    if overdispersion > 0:
        size = 1.0 / overdispersion**2
        # what ``nbinom.logsf`` computes for a count of at least 1 (log of ``_sf``), without its
        # argument handling: ~80 µs a call, a call per candidate topic
        with np.errstate(divide="ignore"):
            log_p = np.log(nbinom._sf(count - 1, size, size / (size + expected))) if count >= 1 else 0.0
    else:
        # log P(X > count - 1) as ``poisson.logsf`` computes it (log of ``pdtrc`` at the floored
        # count), without scipy.stats' argument handling: ~80 µs a call, three calls per candidate
        with np.errstate(divide="ignore"):
            log_p = np.log(special.pdtrc(math.floor(count - 1), expected))
    return max(0.0, -float(log_p) / _LN10)


_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_WALL_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _microseconds(times: Sequence[datetime]) -> list[int]:
    """The times as integer microseconds, in the order and with the differences Python gives the
    datetimes themselves: since the epoch for aware times; naive ones by their fields alone (a mix
    of both raises TypeError, as comparing them does). Sorting aware datetimes of distinct tzinfo
    objects asks both for their UTC offset at every comparison: ~4 µs a time for a month's events."""
    try:
        return [(t - _UTC_EPOCH) // _MICROSECOND for t in times]
    except TypeError:
        return [(t - _WALL_EPOCH) // _MICROSECOND for t in times]


def _densest(instants: Sequence[int], span: int) -> tuple[int, int | None]:
    """Most of the sorted ``instants`` within less than ``span`` of one another, and the position of
    the first of them."""
    best, start, j = 0, None, 0
    for i, t in enumerate(instants):
        while t - instants[j] >= span:
            j += 1
        if i - j + 1 > best:
            best, start = i - j + 1, j
    return best, start


def busiest_window(times: Sequence[datetime], days: int) -> tuple[int, datetime | None]:
    """Most events within ``days`` consecutive days, and when that window starts (the first of the
    equal times in the given order)."""
    instants = _microseconds(times)
    order = sorted(range(len(instants)), key=instants.__getitem__)
    count, start = _densest([instants[k] for k in order], timedelta(days=days) // _MICROSECOND)
    return count, (None if start is None else times[order[start]])


def incident_times(events: Sequence[Mapping]) -> dict[str, datetime]:
    """First report of each incident (an event without one is its own incident)."""
    first: dict[str, datetime] = {}
    parse = datetime.fromisoformat
    for e in events:
        if e["reported_at"]:
            incident = e["incident_id"] or e["event_id"]
            t = parse(e["reported_at"])
            known = first.get(incident)
            if known is None or t <= known:
                first[incident] = t
    return first


class ReportInstants(dict):
    """ISO text of a report time → microseconds since the epoch (None for a time without a UTC
    offset), parsed once per text: a topic's events are weighed again as part of its group's wave and
    history, and integers sort and subtract without asking each datetime for its offset."""

    limit = 2_000_000  # a worker's builder lives for many months: start over beyond this many texts

    def __missing__(self, text: str) -> int | None:
        if len(self) >= self.limit:
            self.clear()
        t = datetime.fromisoformat(text)
        value = self[text] = None if t.utcoffset() is None else (t - _UTC_EPOCH) // _MICROSECOND
        return value

    def first_reports(self, events: Sequence[Mapping]) -> dict[str, int] | None:
        """``incident_times`` in microseconds since the epoch; None when a time has no UTC offset."""
        first: dict[str, int] = {}
        for e in events:
            if e["reported_at"]:
                t = self[e["reported_at"]]
                if t is None:
                    return None
                incident = e["incident_id"] or e["event_id"]
                known = first.get(incident)
                if known is None or t < known:
                    first[incident] = t
        return first

    def busiest(self, events: Sequence[Mapping], days: int) -> tuple[int, datetime | None]:
        """``busiest_window`` of the events' ``incident_times`` (the start as the same instant in UTC)."""
        first = self.first_reports(events)
        if first is None:
            return busiest_window(list(incident_times(events).values()), days)
        instants = sorted(first.values())
        count, start = _densest(instants, timedelta(days=days) // _MICROSECOND)
        return count, (None if start is None else _UTC_EPOCH + timedelta(microseconds=instants[start]))


def busiest_events(events: Sequence[Mapping], days: int, instants: ReportInstants | None = None) -> list[int]:
    """Indices of the events whose incidents were first reported in the busiest ``days`` days
    (``instants``: the builder's parsed report times)."""
    first = None if instants is None else instants.first_reports(events)
    if first is None:
        times = incident_times(events)
        count, start = busiest_window(list(times.values()), days)
        begin = start.timestamp() if count else 0.0
        stamps = {k: t.timestamp() for k, t in times.items()}
    else:
        ordered = sorted(first.values())
        count, start = _densest(ordered, timedelta(days=days) // _MICROSECOND)
        # what datetime.timestamp() gives an aware time: its microseconds since the epoch / 10**6
        begin = ordered[start] / 10**6 if count else 0.0
        stamps = {k: t / 10**6 for k, t in first.items()}
    if not count:
        return []
    end = begin + days * 86400.0
    inside = {k for k, t in stamps.items() if begin <= t < end}
    return [i for i, e in enumerate(events) if (e["incident_id"] or e["event_id"]) in inside]


@dataclass(frozen=True)
class Evidence:
    """What a topic's own events say this month against its previous months. Each kind of evidence is
    a surprise (-log10 p) under the topic's own past, so a cluster of 14 fraud calls against 0–2 a
    month counts whatever its township × domain total does."""

    events: int
    history_mean: float  # a month's events in the history months the warehouse covers
    history_months: int
    expected: float  # that mean (at least ``prior_events``) times the county-wide seasonal factor
    season: float
    season_of: str | None  # the grievance phrase the seasonal factor measured, None for the whole domain
    burst: int  # most incidents within ``burst_days``
    burst_start: datetime | None
    burst_expected: float  # mean of the same in the previous months (none covered: ``even_burst``)
    signal_events: int
    signal_expected: float
    corroborated: int  # incidents seen by more than one feed
    corroborated_expected: float
    repeat_callers: int
    level: str
    region_share: float  # share of the township × domain's excess this topic makes
    # windows of ``burst_days`` the burst is the busiest of while ``burst_expected`` is one window's
    # mean (``even_burst``): 1 when it is the previous months' busiest days
    burst_windows: float = 1.0

    def surprises(self, params: TopicParams = TopicParams()) -> dict[str, float]:
        """The strengths its counts give, which ``scored_evidence`` leaves as they are. Without a
        covered history month a count measures no rise: like the batch scorer's (``models.risk_score``),
        it is compared with no expectation."""
        cap = params.evidence_cap
        return {
            "count": min(cap, surprise(self.events, self.expected, params.overdispersion)) if self.history_months else 0.0,
            # the busiest days of a month against those of the previous months: maxima vary less
            # than counts, hence Poisson; against one window's mean, the chance that any of the
            # month's windows is as busy (at most their number times one's)
            "burst": min(cap, max(0.0, surprise(self.burst, self.burst_expected) - math.log10(self.burst_windows))),
            "signals": min(cap, surprise(self.signal_events, self.signal_expected)),
            "corroboration": min(cap, surprise(self.corroborated, self.corroborated_expected)),
        }

    def strengths(self, params: TopicParams = TopicParams(), surprises: Mapping[str, float] | None = None
                  ) -> dict[str, float]:
        """``surprises``: its ``surprises``, known already (those of the evidence it was scored from)."""
        return {
            **(self.surprises(params) if surprises is None else surprises),
            "level": 2.0 * _LEVEL_WEIGHT.get(self.level, 0.0) * self.region_share,
            "repeat_callers": 0.5 * min(1.0, self.repeat_callers / 3.0),
        }

    def total(self, params: TopicParams = TopicParams(), surprises: Mapping[str, float] | None = None) -> float:
        """Sum of the independent kinds of evidence; a month's surge and a burst within it are one."""
        s = self.strengths(params, surprises)
        return max(s["count"], s["burst"]) + s["signals"] + s["corroboration"] + s["level"] + s["repeat_callers"]


def priority(evidence: Evidence, params: TopicParams = TopicParams(), surprises: Mapping[str, float] | None = None
             ) -> float:
    """0–100 rank of a topic for the task force: its total evidence E as 100·E/(E + priority_half).
    ``surprises``: as for ``Evidence.strengths``.

    With the defaults, 40 (研判选题) needs about a 1-in-10,000 surprise in all, 25 (观察清单) 1 in 100."""
    total = evidence.total(params, surprises)
    return 100.0 * total / (total + params.priority_half)


# --------------------------------------------------------------------------------------------
# Across months


def previous_topic_list(previous: Any) -> list[dict]:
    """Last month's topics from a topics.json document, its `topics` list, or None."""
    if not previous:
        return []
    if isinstance(previous, Mapping):
        return list(previous.get("topics") or [])
    return list(previous)


def _prev_region(topic: Mapping) -> str | None:
    region = topic.get("region") or {}
    # the abc, not typing's alias (a Python-level check): the Beam path asks this for every pair of
    # a month's event and last month's topic
    return region.get("code") if isinstance(region, abc.Mapping) else topic.get("township_code")


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def similarity(current: Topic, previous: Mapping) -> float:
    """How likely two topics of the same region and domain are the same matter (0–1)."""
    if current.township_code != _prev_region(previous) or current.domain != previous.get("domain"):
        return 0.0
    subject, prev_subject = current.subject, previous.get("subject")
    if subject and prev_subject:
        if subject == prev_subject:
            return 1.0
        a, b = _bigrams(subject), _bigrams(prev_subject)
        return 0.9 if (subject in prev_subject or prev_subject in subject) else 0.8 * len(a & b) / max(1, len(a | b))
    if not subject and not prev_subject and current.phrase and current.phrase == previous.get("phrase"):
        return 1.0
    words, prev_words = set(current.keywords), set(previous.get("keywords") or [])
    overlap = len(words & prev_words) / max(1, min(len(words), len(prev_words)))
    titles = _bigrams(current.title), _bigrams(previous.get("title") or "")
    title_sim = len(titles[0] & titles[1]) / max(1, len(titles[0] | titles[1]))
    return max(overlap * 0.8, title_sim)


MATCH_THRESHOLD = 0.5


def previous_topic_hits(event: Mapping, previous: Sequence[Mapping]) -> list[str]:
    """Ids of last month's topics an event of this month still speaks of (same region and domain,
    naming the subject, or two of the keywords)."""
    hits = []
    for p in previous:
        if event.get("township_code") != _prev_region(p) or event.get("domain") != p.get("domain"):
            continue
        text = event.get("text") or ""
        if p.get("subject"):
            if p["subject"] in text:
                hits.append(p["topic_id"])
        else:
            words = p.get("keywords") or []
            if words and sum(1 for w in words if w in text) >= min(2, len(words)):
                hits.append(p["topic_id"])
    return hits


def previous_by_group(previous: Sequence[Mapping]) -> dict[tuple[str | None, str | None], list[Mapping]]:
    """Last month's topics by (township_code, domain), in their order: an event can only speak of
    those of its own group (``previous_topic_hits``)."""
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for p in previous:
        groups[(_prev_region(p), p.get("domain"))].append(p)
    return dict(groups)


def list_topics(topics: Sequence[Topic | Weighed], params: TopicParams = TopicParams()) -> list:
    """The month's list by priority: up to ``max_study`` topics at ``study_priority`` or above for the
    task force to study (研判选题), then up to ``max_watch`` more at ``watch_priority`` or above to
    watch (观察清单), and last month's topics still seen (``followed``). The rest stay out of the report.
    Topics or ``Weighed`` ones alike; a list's own topics list the same again."""
    ranked = sorted((t for t in topics if t.priority >= params.watch_priority or t.followed),
                    key=lambda t: (-t.priority, -t.events, t.title, t.topic_id))
    cut = min(params.max_study, sum(1 for t in ranked if t.priority >= params.study_priority))
    study = ranked[:cut]
    watch = [t for i, t in enumerate(ranked[cut:]) if i < params.max_watch or t.followed]
    for t in study:
        t.list_name = "study"
    for t in watch:
        t.list_name = "watch"
    return study + watch


def listed_by_group(topics: Sequence[Topic], params: TopicParams = TopicParams()) -> dict[tuple[str, str], list[Topic]]:
    """The topics ``list_topics`` lists, by township × domain: those to ``present``. Presenting does
    not change the list: its order rests on priority, events, title and id, known before."""
    groups: dict[tuple[str, str], list[Topic]] = defaultdict(list)
    for topic in list_topics(topics, params):
        groups[(topic.township_code, topic.domain)].append(topic)
    return dict(groups)


def finalise(month: str, topics: Sequence[Topic], previous: Any = None,
             previous_hits: Mapping[str, int] | None = None, params: TopicParams = TopicParams()) -> TopicList:
    """Rank and list the topics (``list_topics``) and set their status against last month's list; last
    month's topics that are gone are closed as `resolved` (no event this month speaks of them) or
    `quiet` (a few still do)."""
    previous = previous_topic_list(previous)
    ranked = list_topics(topics, params)
    pairs = sorted(
        ((similarity(t, p), i, j) for i, t in enumerate(ranked) for j, p in enumerate(previous)),
        key=lambda x: (-x[0], x[1], x[2]),
    )
    matched_current, matched_previous = {}, set()
    for sim, i, j in pairs:
        if sim < MATCH_THRESHOLD:
            break
        if i in matched_current or j in matched_previous:
            continue
        matched_current[i] = j
        matched_previous.add(j)
    seen_ids = set()
    for i, topic in enumerate(ranked):
        topic.rank = i + 1
        if i in matched_current:
            prev = previous[matched_current[i]]
            before = int(prev.get("events") or 0)
            topic.topic_id = prev.get("topic_id") or topic.topic_id
            topic.previous = {"rank": prev.get("rank"), "title": prev.get("title"), "events": before}
            if topic.events >= max(before * 1.3, before + 2):
                topic.status = "rising"
            elif topic.events <= min(before * 0.7, before - 2):
                topic.status = "easing"
            else:
                topic.status = "continuing"
        else:
            topic.status = "new"
        if topic.topic_id in seen_ids:  # two new topics on one subject: keep ids unique
            topic.topic_id = f"{topic.topic_id}-{topic.rank}"
        seen_ids.add(topic.topic_id)
    hits = previous_hits or {}
    closed = []
    for j, prev in enumerate(previous):
        if j in matched_previous:
            continue
        still = int(hits.get(prev.get("topic_id"), 0))
        closed.append({
            "topic_id": prev.get("topic_id"),
            "title": prev.get("title"),
            "domain": prev.get("domain"),
            "domain_name": prev.get("domain_name"),
            "region": prev.get("region"),
            "previous_rank": prev.get("rank"),
            "previous_events": prev.get("events"),
            "events": still,
            "status": "quiet" if still else "resolved",
        })
    return TopicList(month=month, topics=ranked, closed=closed)


# --------------------------------------------------------------------------------------------
# In one process


def build_topics(events: Any, scores: Any, history: Any = None, previous_topics: Any = None,
                 taxonomy: Mapping | None = None, gazetteer: Any = None, month: str | None = None,
                 params: TopicParams = TopicParams(), builder: TopicBuilder | None = None) -> TopicList:
    """The month's topic list from its events (DataFrame or iterable of Event dicts), the score rows,
    the previous months' events and last month's topics.json (document or its `topics` list).

    ``scores`` may be a function giving the rows: it is called once the texts are read, so the
    month's scoring can still run meanwhile (``pipelines.month_report``).

    ``month`` defaults to the month most of the events fall in."""
    # events of every domain are read twice (the feeds' daily volume, then those a topic can hold): an
    # iterable as records once
    events, history = (e if e is None or _is_frame(e) else records(e) for e in (events, history))
    if month is None:
        every = records(events)
        if not every:
            raise ValueError("no events and no month given")
        month = Counter(e["month"] for e in every).most_common(1)[0][0]
    builder = builder or TopicBuilder(gazetteer, taxonomy, params)
    # events no topic can hold count nowhere here: not in groups, seasons or last month's topics
    month_events = topic_records(events, builder.instants)
    past = topic_records(history, builder.instants)
    month_events = [e for e in month_events if e["month"] == month]
    first = shift_month(month, -builder.params.history_months)
    # history months the feeds did not cover hold no events: they count as not held (``covered_months``)
    start = history_start(records_per_day(events) + records_per_day(history), month, builder.params)
    past = covered_history((e for e in past if first <= e["month"] < month), start)
    counts = domain_counts(builder.grievances, month_events + past)
    by_key: dict[tuple, list] = defaultdict(list)
    past_by_key: dict[tuple, list] = defaultdict(list)
    for e in month_events:
        by_key[group_key(e)].append(e)
    for e in past:
        past_by_key[group_key(e)].append(e)
    previous = previous_topic_list(previous_topics)
    drafts = {key: builder.draft_group(key, by_key[key], past_by_key.get(key, []), month, counts) for key in sorted(by_key)}
    regions = region_scores(scores() if callable(scores) else scores, month)
    weighed = []
    for key, draft in drafts.items():
        if draft:
            weighed.extend(builder.weigh_group(draft, regions.get(key), previous))
    # the list rests on what weighing tells (priority, events, title, id): only the listed are built
    topics = [builder.topic(one) for one in list_topics(weighed, builder.params)]
    for key, listed in listed_by_group(topics, builder.params).items():
        background = builder.background(by_key[key], past_by_key.get(key, []), month)
        for topic in listed:
            builder.present(topic, background)
    hits: Counter = Counter()
    for key, listed in previous_by_group(previous).items():  # the groups last month's topics are in
        for e in by_key.get(key, ()):
            hits.update(previous_topic_hits(e, listed))
    return finalise(month, topics, previous, hits, builder.params)

