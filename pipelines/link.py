"""Link records that describe one happening into an incident (``incident_id``).

The same fight reaches 110, 12345 and a grid worker; the same caller rings twice. Records are
linked when they are close in time (within ``max_span_hours`` of the incident's first record),
in the same region (same township; same village, or a stricter text match across villages;
within ``max_km`` when both have coordinates) and their texts are similar (idf-weighted overlap of
character n-grams, boilerplate phrases and masked tokens such as ``[手机号]`` removed). The incident id is the
event_id of the incident's first record, so it is stable across re-runs.

Beam layout (portable: ParDo, GroupByKey, CoGroupByKey; no side input):
1. key by (township, month) and ``GroupByKey``; records from the first ``max_span_hours`` of a
   month also go to the previous month's group as *guests*, so an incident that starts on the
   31st can take records of the 1st. Inside a group, records are visited in time order, each
   compared with at most ``max_candidates`` earlier ones (O(n·k)). The idf weights come from the
   month's own records (guests are weighed as their host month would weigh them), so a month's
   links never change when the next month arrives: only which of its incidents take the next
   month's first-hours records. That lets the batch job's monthly run link the new month and only
   the last hours of the month before (``link_group``'s ``keep`` and ``frequencies``).
2. a guest taken by an incident of the previous month yields a *claim*; the claims re-map the
   guest's own incident in its home month (a join with the records of the incidents that have a
   record in their month's first hours, the only ones that can be claimed) — an incident never
   spans more than two months, so one re-mapping step is enough.
Events of domain ``none`` (and unclassified ones) are not linked: incident_id = event_id.
The batch job takes each group's linked records (all but those of claimable incidents) as one
Arrow table (``LinkIncidentsInParts(grouped=True)``): its writers and counters take the table
whole, so those Events cross no more boundaries one by one; the stream takes them one by one.
The batch job's Events also arrive as tables (``packed_events.is_event_table``: a supersede shard's
new Events, a stored township-month's): they are keyed per township-month in Arrow and their
unlinked rows leave as one table.
"""
from __future__ import annotations

import datetime as dt
import itertools
import math
import operator
import re
from collections import defaultdict
from typing import Iterable, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse

import schemas
from pipelines.runners import ParDoWithOutputs
from pipelines.packed_events import EventTables, FlattenEvents, PackedEvent, PackedRows, apply_each, flatten, is_event_table

# Masking upstream leaves tokens like [手机号], [身份证号], [姓名], 【地址】; they say nothing about
# the happening and are shared by unrelated records.
_MASKED = re.compile(r"[\[【<＜(（][^\]】>＞)）]{1,8}[\]】>＞)）]|\*{2,}")
_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)
_SKIP = "none"
# Set on a record that keeps its stored incident_id through LinkIncidents (see LinkIncidents).
KEEP_INCIDENT = "_keep_incident"
_FREQUENCIES = "frequencies"
# Roles of a link group's values: one packed Event, or many as one table (KeyRowsByTownshipMonth).
_HOME, _GUEST = "home", "guest"
_ROWS = {"home_rows": _HOME, "guest_rows": _GUEST}


def link_config() -> dict:
    return schemas.load("scoring.yaml")["linking"]


def _boilerplate(cfg: Mapping) -> list:
    return sorted(cfg.get("boilerplate", ()), key=len, reverse=True)


def _ranks(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(distinct values, each value's rank among them, a position of each distinct value): what
    ``np.unique(..., return_index=True, return_inverse=True)`` gives, without its stable sort."""
    order = np.argsort(values)
    ordered = values[order]
    new = np.ones(len(values), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.cumsum(new) - 1
    return int(new.sum()), ranks, order[new]


def _distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by a sort (NumPy 2's hash-based unique took 15× longer on n-gram codes)."""
    ordered = np.sort(values)
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    return ordered[new]


def _cleaned(texts: list, boilerplate: Iterable[str]) -> tuple[str, str]:
    """(the texts without masked tokens and boilerplate phrases, joined by a separator; the
    separator): a character none of the texts or phrases holds, so no phrase matches across two
    texts and each text is cleaned as it would be alone."""
    masked = [_MASKED.sub(" ", t or "") for t in texts]
    phrases = list(boilerplate)
    every = "".join(masked) + "".join(phrases)
    separator = next(c for c in map(chr, itertools.count()) if c not in every)
    joined = separator.join(masked)
    for phrase in phrases:
        joined = joined.replace(phrase, " ")
    return joined, separator


class Ngrams:
    """The character n-grams of a group's texts, without masked tokens, punctuation and boilerplate
    phrases: each run of word characters gives its n-grams, a run shorter than n itself.

    Held as sorted (text, n-gram) pairs over a vocabulary in string order — not a set's order,
    which follows the process's hash seed: the similarities are float sums in this order, and
    summed in another a tie or threshold could flip between runs. Computed for all texts at once
    on their code points, so no per-n-gram Python string is made; the vocabulary's strings are
    made only when asked for (``vocabulary``).
    """

    def __init__(self, texts: list, n: int, boilerplate: Iterable[str] = ()):
        joined, separator = _cleaned(texts, boilerplate)
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        # Each code point's rank among the texts' code points, from 1, through a table over them.
        present = np.zeros(int(points.max(initial=0)) + 1, dtype=bool)
        present[points] = True
        chars = np.flatnonzero(present)
        rank = np.cumsum(present)[points]
        word = np.array([False] + [c != separator and _NOISE.match(c) is None for c in map(chr, chars.tolist())])[rank]
        text_of = np.cumsum(points == ord(separator))
        runs = np.diff(np.concatenate(([0], word.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
        lengths = ends - starts
        inside = np.flatnonzero(word)
        whole = inside + n <= np.repeat(ends, lengths)
        short = lengths < n
        first = np.concatenate((inside[whole], starts[short]))
        size = np.concatenate((np.full(int(whole.sum()), n), lengths[short]))
        # 0 past a short n-gram's end: with code points ranked from 1, integer order is string order.
        rank = np.concatenate((rank, np.zeros(n, dtype=np.int64)))
        code = np.zeros(len(first), dtype=np.int64)
        for k in range(n):
            code = code * (len(chars) + 1) + np.where(k < size, rank[first + k], 0)
            if k < n - 1:  # renumbered densely, so the next step cannot overflow
                code = _ranks(code)[1]
        self.size, gram, where = _ranks(code)
        self.texts = len(texts)
        width = max(self.size, 1)
        pairs = _distinct(text_of[first] * width + gram)
        self.rows, self.columns = pairs // width, pairs % width
        self._joined, self._first, self._length = joined, first[where].tolist(), size[where].tolist()

    def vocabulary(self) -> list[str]:
        """The n-grams, in column order (string order)."""
        return [self._joined[f:f + k] for f, k in zip(self._first, self._length)]

    def counts(self, texts: np.ndarray | None = None) -> np.ndarray:
        """Per n-gram: how many of the texts (all, or where ``texts`` is True) hold it."""
        columns = self.columns if texts is None else self.columns[texts[self.rows]]
        return np.bincount(columns, minlength=self.size)

    def weighted(self, documents: int, counts: np.ndarray, prior_documents: int) -> sparse.csr_matrix:
        """texts × n-grams: the idf weight of each n-gram a text holds, the idf of ``documents``
        texts of which ``counts`` hold each n-gram (``weighted_ngrams``)."""
        values, which = np.unique(counts, return_inverse=True)
        # One math.log per distinct count, in Python ints as before: the same floats on any machine.
        idf = np.array([math.log((prior_documents + documents) / (1 + c)) for c in values.tolist()], dtype=np.float64)
        indptr = np.zeros(self.texts + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.bincount(self.rows, minlength=self.texts))
        return sparse.csr_matrix((idf[which][self.columns], self.columns, indptr), shape=(self.texts, self.size))


def weighted_ngrams(texts: list, n: int, boilerplate: Iterable[str] = (), prior_documents: int = 20) -> list[dict]:
    """Per text: n-gram → idf weight, with idf from the texts themselves (one township-month), in
    n-gram order (``similarity`` sums in that order).

    Common words of the month ("小区", "打架") weigh less than a place or company name that
    only the records of one happening share. ``prior_documents`` keeps the weights nearly flat
    in small groups, where document frequencies say little.
    """
    grams = Ngrams(texts, n, sorted(boilerplate, key=len, reverse=True))
    weighted = grams.weighted(len(texts), grams.counts(), prior_documents)
    vocabulary, columns, weights = grams.vocabulary(), weighted.indices.tolist(), weighted.data.tolist()
    bounds = weighted.indptr.tolist()
    return [{vocabulary[c]: w for c, w in zip(columns[a:b], weights[a:b])} for a, b in zip(bounds, bounds[1:])]


def group_key(event: Mapping) -> tuple[str, str]:
    """The (township, month) group a linkable record is linked in."""
    return event.get("township_code") or "", _month_key(event["reported_at"])


def month_frequencies(events: Iterable[Mapping], cfg: Mapping | None = None) -> dict[tuple, tuple[int, dict]]:
    """(township, month) → (records, n-gram → records holding it) of its linkable records: the idf
    ``link_group`` needs to link part of a month exactly as with the whole month present."""
    texts = defaultdict(list)
    for e in events:
        if needs_link(e):
            texts[group_key(e)].append(e.get("text"))
    return _frequencies(texts, cfg or link_config())


def table_frequencies(table: pa.Table, cfg: Mapping | None = None) -> dict[tuple, tuple[int, dict]]:
    """``month_frequencies`` of a table of Events (the warehouse's columns; ``township_code``,
    ``domain``, ``text`` and ``reported_at`` suffice), read column by column: no Event is made."""
    table = table.filter(linkable_rows(table))
    townships, months, _ = _group_columns(table)
    texts = defaultdict(list)
    for key, text in zip(zip(townships.to_pylist(), months.to_pylist()), table.column("text").to_pylist()):
        texts[key].append(text)
    return _frequencies({(township, _month_text(month)): group for (township, month), group in texts.items()},
                        cfg or link_config())


def _frequencies(texts: Mapping[tuple, list], cfg: Mapping) -> dict[tuple, tuple[int, dict]]:
    boilerplate, frequencies = _boilerplate(cfg), {}
    for key, group in texts.items():
        grams = Ngrams(group, cfg["ngram"], boilerplate)
        frequencies[key] = len(group), dict(zip(grams.vocabulary(), grams.counts().tolist()))
    return frequencies


def similarity(a: Mapping, b: Mapping) -> float:
    """Weighted overlap coefficient: shared weight over the smaller text's weight.

    A grid worker's one-line note and a caller's long complaint about the same fight share
    most of the short text; cosine or Jaccard would punish the length difference.
    """
    if len(a) > len(b):
        a, b = b, a
    shared = sum(w for k, w in a.items() if k in b)
    smaller = min(sum(a.values()), sum(b.values()))
    return shared / smaller if smaller else 0.0


def _km(e1: Mapping, e2: Mapping) -> float | None:
    if None in (e1.get("lon"), e1.get("lat"), e2.get("lon"), e2.get("lat")):
        return None
    lat = math.radians((e1["lat"] + e2["lat"]) / 2)
    dx = math.radians(e1["lon"] - e2["lon"]) * math.cos(lat)
    dy = math.radians(e1["lat"] - e2["lat"])
    return 6371.0 * math.hypot(dx, dy)


def _required_similarity(e1: Mapping, e2: Mapping, cfg: Mapping) -> float | None:
    """The similarity two records need to be linked, or None when their places rule it out."""
    km = _km(e1, e2)
    if km is not None and km > cfg["max_km"]:
        return None
    if km is None and (e1.get("township_code") is None or e1.get("township_code") != e2.get("township_code")):
        return None
    if e1.get("caller_key") and e1.get("caller_key") == e2.get("caller_key"):
        return cfg["same_caller_similarity"]
    v1, v2 = e1.get("village_code"), e2.get("village_code")
    if km is None and v1 and v2 and v1 != v2:
        return cfg["other_village_similarity"]
    return cfg["min_similarity"]


def needs_link(event: Mapping) -> bool:
    return bool(event.get("domain")) and event["domain"] != _SKIP


def link_group(home: Iterable[Mapping], cfg: Mapping | None = None, *, guests: Iterable[Mapping] = (),
               keep: Mapping[str, str] | None = None,
               frequencies: tuple[int, Mapping] | None = None) -> dict[str, str]:
    """event_id → incident_id for the records of one township-month (``home``) and the next
    month's first ``max_span_hours`` (``guests``), greedy in time order.

    Each record joins the incident of its most similar earlier record when that incident began
    no more than ``max_span_hours`` earlier; otherwise it starts a new incident. The similarities
    of each record to its candidates (the ``max_candidates`` records before it within the span)
    are computed before the greedy pass (``candidate_similarities``); only the pairs similar
    enough for some threshold reach it.

    The idf is the home month's (``frequencies``, ``month_frequencies`` of all its records, when
    ``home`` holds only part of it); guests come after every home record, so the home records'
    links do not depend on them. ``keep``: event_id → incident_id of home records that keep their
    stored link, so a month that is not relinked can still decide which of its incidents take the
    guests: it needs only its records from one span before its end, and the idf.
    """
    cfg = cfg or link_config()
    keep = keep or {}
    home, guests = list(home), list(guests)
    ordered = sorted(home + guests, key=operator.itemgetter("reported_at", "event_id"))
    grams = Ngrams([e.get("text") for e in ordered], cfg["ngram"], _boilerplate(cfg))
    if frequencies is None:
        guest_ids = {e["event_id"] for e in guests}
        at_home = np.array([e["event_id"] not in guest_ids for e in ordered], dtype=bool)
        documents, counts = int(at_home.sum()), grams.counts(at_home)
    else:
        documents, month_counts = frequencies
        counts = np.array([month_counts.get(g, 0) for g in grams.vocabulary()], dtype=np.int64)
    weighted = grams.weighted(documents, counts, cfg["idf_prior_documents"])
    span = dt.timedelta(hours=cfg["max_span_hours"])
    cutoffs, oldest = [], 0  # earlier records within the span are oldest..i-1
    for i, e in enumerate(ordered):
        while oldest < i and e["reported_at"] - ordered[oldest]["reported_at"] > span:
            oldest += 1
        cutoffs.append(max(oldest, i - cfg["max_candidates"]))
    floor = min(cfg["min_similarity"], cfg["other_village_similarity"], cfg["same_caller_similarity"])
    candidates = _linkable_candidates(ordered, candidate_similarities(weighted, cutoffs, floor), cfg)
    incident_of: dict[str, str] = {}
    incident_start: dict[str, dt.datetime] = {}
    for i, e in enumerate(ordered):
        t = e["reported_at"]
        best = keep.get(e["event_id"])
        if best is None and candidates[i]:
            best = _most_similar_incident(e, candidates[i], ordered, incident_of, incident_start, span, cfg)
        if best is None:
            best = e["event_id"]
        if best == e["event_id"]:
            incident_start[best] = t
        incident_of[e["event_id"]] = best
    return incident_of


# Rows per sparse product: each product also covers pairs outside the candidate window (the block's
# later records and the window of its first); 128–384 measured alike on the county month.
_BLOCK_ROWS = 256


def candidate_similarities(weighted: sparse.csr_matrix, cutoffs: list[int],
                           floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, similarity) arrays of the pairs of a record i (row of ``weighted``,
    ``Ngrams.weighted``) and an earlier record j in ``cutoffs[i]``..i-1 that share an n-gram and
    have a similarity ≥ ``floor``; i ascending.

    The shared weights are one sparse product per block of records (weights × which n-grams the
    candidates hold); its sums add each pair's shared weights in n-gram order, and the totals add
    each record's weights in that order, as ``similarity`` does, so the similarities are the same
    floats and the links the same.
    """
    holds = sparse.csr_matrix((np.ones_like(weighted.data), weighted.indices, weighted.indptr), shape=weighted.shape)
    # csr_matvec sums each row left to right, as sum() over an n-gram-ordered dict.
    totals = weighted @ np.ones(weighted.shape[1])
    lows = np.asarray(cutoffs, dtype=np.int64)
    found = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))]
    for first in range(0, weighted.shape[0], _BLOCK_ROWS):
        last = min(first + _BLOCK_ROWS, weighted.shape[0])
        reach = int(lows[first:last].min())
        shared = (weighted[first:last] @ holds[reach:last].T).tocoo()
        i, j = shared.row + first, shared.col + reach
        keep = (j >= lows[i]) & (j < i)
        i, j, value = i[keep], j[keep], shared.data[keep]
        sim = value / np.minimum(totals[i], totals[j])
        keep = sim >= floor
        found.append((i[keep], j[keep], sim[keep]))
    i, j, sim = (np.concatenate(parts) for parts in zip(*found))
    return i, j, sim


def _linkable_candidates(ordered: list, pairs: tuple, cfg: Mapping) -> list[list[tuple[int, float]]]:
    """Per record: [(j, similarity)] of its pairs (``candidate_similarities``) that can reach their
    threshold, the most similar first (ties: the earlier record first)."""
    i, j, sim = pairs
    codes: dict = {}
    callers = np.array([codes.setdefault(e["caller_key"], len(codes)) if e.get("caller_key") else -1 for e in ordered],
                       dtype=np.int64)
    # Below both text thresholds only the same caller's records can be linked (_required_similarity).
    same_caller = (callers[i] >= 0) & (callers[i] == callers[j])
    keep = (sim >= min(cfg["min_similarity"], cfg["other_village_similarity"])) | same_caller
    i, j, sim = i[keep], j[keep], sim[keep]
    order = np.lexsort((j, -sim, i))
    ends = np.searchsorted(i[order], np.arange(len(ordered) + 1)).tolist()
    linkable = list(zip(j[order].tolist(), sim[order].tolist()))
    return [linkable[a:b] for a, b in zip(ends, ends[1:])]


def _most_similar_incident(e: Mapping, candidates: list, ordered: list, incident_of: Mapping,
                           incident_start: Mapping, span: dt.timedelta, cfg: Mapping) -> str | None:
    """The incident of the candidate (``_linkable_candidates``, most similar first) most similar to
    record ``e`` that is close enough in place and whose incident began within the span, or None."""
    t = e["reported_at"]
    for j, sim in candidates:
        other = ordered[j]
        incident = incident_of[other["event_id"]]
        start = incident_start.get(incident)
        # No start: a kept record whose incident began before the records at hand, long ago.
        if start is None or t - start > span:
            continue
        need = _required_similarity(e, other, cfg)
        if need is not None and sim >= need:
            return incident
    return None


# --------------------------------------------------------------------------------------------
# Beam
# --------------------------------------------------------------------------------------------

def _month_key(t: dt.datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def _previous_month_key(t: dt.datetime) -> str:
    first = t.replace(day=1)
    return _month_key(first - dt.timedelta(days=1))


class _KeyByTownshipMonth(beam.DoFn):
    """Event that needs linking → ((township, month), (role, packed Event)): Events cross the
    shuffle packed (``PackedEvent``: the caller's annotations survive linking). A table of Events
    (``packed_events.is_event_table``) → its rows that need linking, keyed in tables
    (``KeyRowsByTownshipMonth``)."""

    def __init__(self, span_hours: float):
        self._span = dt.timedelta(hours=span_hours)
        self._span_hours = span_hours

    def setup(self):
        self._packed = PackedEvent()
        self._rows = KeyRowsByTownshipMonth(self._span_hours)

    def process(self, event):
        if is_event_table(event):
            annotations, data = event
            table = EventTables.from_bytes(data)
            yield from self._rows.keyed(table.filter(linkable_rows(table)), annotations)
            return
        if not needs_link(event):
            return
        t = event["reported_at"]
        township, month = group_key(event)
        value = self._packed.pack(event)
        yield (township, month), (_HOME, value)
        if _in_first_hours(t, self._span):
            yield (township, _previous_month_key(t)), (_GUEST, value)


def _in_first_hours(t: dt.datetime, span: dt.timedelta) -> bool:
    # Past day span.days + 1 a record is more than the span into its month: no datetime arithmetic.
    return t.day <= span.days + 1 and t - t.replace(day=1, hour=0, minute=0, second=0, microsecond=0) <= span


def linkable_rows(table: pa.Table) -> pa.ChunkedArray:
    """Per row of a table of Events: whether it needs linking (``needs_link``)."""
    domain = table.column("domain")
    return pc.fill_null(pc.and_(pc.not_equal(domain, ""), pc.not_equal(domain, _SKIP)), False)


def _group_columns(table: pa.Table) -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray]:
    """Per row of a table of Events: its group's township and month (``group_key``; the month as
    year * 100 + month, ``_month_text``) and how far into the month it was reported (as
    ``_in_first_hours`` measures it)."""
    # The wall clock in the Events' zone, as their datetimes' fields read.
    local = pc.local_timestamp(table.column("reported_at")).cast(pa.timestamp("ms"))
    month_start = pc.floor_temporal(local, unit="month")
    # Numbers, not pc.strftime: formatting every row took 100 times longer.
    months = pc.add(pc.multiply(pc.year(month_start), 100), pc.month(month_start))
    return pc.fill_null(table.column("township_code"), ""), months, pc.subtract(local, month_start)


def _month_text(month: int) -> str:
    return f"{month // 100:04d}-{month % 100:02d}"


def table_months(table: pa.Table) -> list[str]:
    """The county months (``YYYY-MM``, as ``sinks.month_of``) a table of Events' rows fall in."""
    return [_month_text(month) for month in pc.unique(_group_columns(table)[1]).to_pylist()]


class KeyRowsByTownshipMonth:
    """A table of Events that need linking (the warehouse's layout) → what ``_KeyByTownshipMonth``
    gives for them, one element per township-month and role: ((township, month), (role, rows
    packed with ``PackedRows``, each row taking ``annotations``)). Stored Events reach their link
    group a few thousand at a time, new ones a supersede shard's at a time, instead of crossing
    one by one."""

    def __init__(self, span_hours: float):
        self._span = pa.scalar(dt.timedelta(hours=span_hours), pa.duration("ms"))

    def keyed(self, table: pa.Table, annotations: tuple = ()):
        townships, months, into_month = _group_columns(table)
        # Sorted once by group, a group's first hours first: each group and its guests are slices.
        # Filtering the table per group cost ~0.2-0.5 ms a group, paid by each supersede shard's table.
        keys = pa.table({"township": townships, "month": months, "first": pc.less_equal(into_month, self._span)})
        order = pc.sort_indices(keys, sort_keys=[("township", "ascending"), ("month", "ascending"), ("first", "descending")])
        table, keys = table.take(order), keys.take(order)
        rows = zip(*(keys.column(name).to_pylist() for name in ("township", "month", "first")))
        start = 0
        for (township, month), group in itertools.groupby(rows, key=operator.itemgetter(0, 1)):
            first = [row[2] for row in group]
            home = table.slice(start, len(first))
            yield (township, _month_text(month)), ("home_rows", PackedRows.pack(home, annotations))
            guests = sum(first)
            if guests:
                previous = _previous_month_key(dt.date(month // 100, month % 100, 1))
                yield (township, previous), ("guest_rows", PackedRows.pack(home.slice(0, guests), annotations))
            start += len(first)


class _LinkGroup(beam.DoFn):
    """((township, month), tagged records) → the home records linked (main output), the records of
    incidents the previous month may claim (``CLAIMABLE``) and the claims on guests (``CLAIMS``).

    ``grouped``: the main output is the group's linked records as Arrow tables (their bytes,
    ``packed_events.EventTables``), one per set of annotations its records carry: (annotations,
    table), the annotations as ((key, value), …). The records must then be whole Events."""

    CLAIMS = "claims"
    CLAIMABLE = "claimable"

    def __init__(self, cfg: Mapping, grouped: bool = False):
        self._cfg = dict(cfg)
        self._grouped = grouped
        self._span = dt.timedelta(hours=self._cfg["max_span_hours"])
        self._linked = beam.metrics.Metrics.counter("link", "records_linked")
        self._incidents = beam.metrics.Metrics.counter("link", "incidents")

    def setup(self):
        self._packed = PackedEvent()
        self._tables = EventTables()
        self._rows = PackedRows()

    def process(self, element):
        _, tagged = element
        home, guests, frequencies = [], [], None
        members = {_HOME: home, _GUEST: guests}
        tables = {_HOME: [], _GUEST: []}
        for role, value in tagged:
            if role == _FREQUENCIES:
                frequencies = value
            elif role in _ROWS:
                tables[_ROWS[role]].append(value)
            else:
                members[role].append(self._packed.unpack(value))
        for role, values in tables.items():
            members[role].extend(self._rows.unpack_all(values))
        keep = {e["event_id"]: e["incident_id"] for e in home if e.get(KEEP_INCIDENT)}
        incident_of = link_group(home, self._cfg, guests=guests, keep=keep, frequencies=frequencies)
        home_ids = {e["event_id"] for e in home}
        # Only an incident with a record in its month's first hours can be claimed by the previous month.
        claimable = {incident_of[e["event_id"]] for e in home if _in_first_hours(e["reported_at"], self._span)}
        incidents = linked = 0
        rows = defaultdict(list)  # grouped: annotations → the packed records that carry them
        for e in home:
            incident = incident_of[e["event_id"]]
            if e["event_id"] not in keep:
                incidents += incident == e["event_id"]
                linked += incident != e["event_id"]
            record = {**e, "incident_id": incident}
            if incident in claimable:
                yield beam.pvalue.TaggedOutput(self.CLAIMABLE, record)
            elif self._grouped:
                packed, others = self._packed.pack(record)
                if packed is None:
                    raise ValueError(f"record {e['event_id']} is not a whole Event: it cannot be linked grouped")
                rows[others].append(packed)
            else:
                yield record
        for others, packed in rows.items():
            yield others, self._tables.to_bytes(self._tables.table(packed))
        # Once per group: an inc per record (2.5 µs each) was a tenth of linking the county month.
        self._incidents.inc(incidents)
        self._linked.inc(linked)
        for e in guests:
            incident = incident_of[e["event_id"]]
            if incident in home_ids:
                # An incident of this month took a record of the next month's first hours.
                yield beam.pvalue.TaggedOutput(self.CLAIMS, (e["event_id"], incident))


def own_incidents(table: pa.Table) -> pa.Table:
    """A table of Events that need no linking, as linking leaves them: each its own incident."""
    index = table.schema.get_field_index("incident_id")
    return table.set_column(index, table.schema.field(index), table.column("event_id"))


def _own_incident(element) -> list:
    """An Event linking leaves alone (not ``needs_link``) → [it, its own incident]; one that needs
    linking → []. A table of Events (``packed_events.is_event_table``) → a table per county month of
    those of its rows linking leaves alone, each its own incident ([] when there are none)."""
    if not is_event_table(element):
        return [] if needs_link(element) else [{**element, "incident_id": element["event_id"]}]
    annotations, data = element
    table = EventTables.from_bytes(data)
    alone = own_incidents(table.filter(pc.invert(linkable_rows(table))))
    # Per month, as the link groups' tables are: the events writer takes a one-month table whole,
    # and splits any other row by row.
    months = _group_columns(alone)[1]
    return [(annotations, EventTables.to_bytes(alone.filter(pc.equal(months, month))))
            for month in pc.unique(months).to_pylist()]


def _remap_pairs(element):
    """(taken record, {'own': [its home-month incident], 'claim': [incidents]}) → (own, claim)."""
    _, joined = element
    if joined["claim"]:
        for own in joined["own"]:
            yield own, min(joined["claim"])


def _apply_claims(element):
    """(incident, {'events': its records, 'claims': incidents that took one of them}) → the records,
    in the earliest claiming incident if any."""
    incident, joined = element
    final = min(joined["claims"]) if joined["claims"] else incident
    for event in joined["events"]:
        yield {**event, "incident_id": final}


class LinkIncidentsInParts(beam.PTransform):
    """``LinkIncidents`` without its last Flatten: the linked Events as a tuple of PCollections, for
    consumers that take several (``packed_events.apply_each``), so the Events do not cross a
    Flatten on the way to them.

    ``grouped``: the first PCollection holds each township-month's linked Events (all but the
    records of incidents the previous month may claim) as (annotations, Arrow table) elements
    (``_LinkGroup``), so they reach the writers and counters as one element per group, not one per
    Event; the records must be whole Events. The others hold Events.

    An element of ``events`` may be many Events as a table (``packed_events.is_event_table``, e.g.
    ``IngestFeeds(tables=True)``'s): its rows reach their link groups in tables per township-month,
    and those linking leaves alone (domain ``none``) leave as one table, so its consumers must take
    tables (as the writers and counters do)."""

    def __init__(self, config: Mapping | None = None, frequencies: beam.PCollection | None = None,
                 groups: beam.PCollection | None = None, grouped: bool = False):
        super().__init__()
        self._cfg = dict(config or link_config())
        self._frequencies = frequencies
        self._groups = groups
        self._grouped = grouped

    def expand(self, events):
        span = dt.timedelta(hours=self._cfg["max_span_hours"])
        # Two steps, not beam.Partition: some runners (DaskRunner) send every element to every part.
        unlinked = apply_each(events, "OwnIncident", lambda: beam.FlatMap(_own_incident))
        keyed = apply_each(events, "KeyByTownshipMonth", lambda: beam.ParDo(_KeyByTownshipMonth(self._cfg["max_span_hours"])))
        if self._frequencies is not None:
            keyed.append(self._frequencies | "TagFrequencies" >> beam.MapTuple(lambda key, f: (key, (_FREQUENCIES, f))))
        if self._groups is not None:
            keyed.append(self._groups)
        linked = (
            flatten(keyed, "WithFrequencies")
            | "GroupByTownshipMonth" >> beam.GroupByKey()
            | "LinkInGroup" >> ParDoWithOutputs(_LinkGroup(self._cfg, self._grouped), _LinkGroup.CLAIMS, _LinkGroup.CLAIMABLE,
                                                main="events")
        )
        claimable = linked[_LinkGroup.CLAIMABLE]
        own = claimable | "FirstHoursIncidents" >> beam.FlatMap(
            lambda e: [(e["event_id"], e["incident_id"])] if _in_first_hours(e["reported_at"], span) else [])
        claims = (
            {"own": own, "claim": linked[_LinkGroup.CLAIMS]}
            | "JoinClaims" >> beam.CoGroupByKey()
            | "ClaimedIncidents" >> beam.FlatMap(_remap_pairs)
        )
        # A join, not a side input: the DaskRunner recomputes a side input's whole upstream for
        # every partition that reads it. Only the records of claimable incidents take part.
        resolved = (
            {"events": claimable | "ByIncident" >> beam.Map(lambda e: (e["incident_id"], e)), "claims": claims}
            | "JoinIncidentClaims" >> beam.CoGroupByKey()
            | "ApplyClaims" >> beam.FlatMap(_apply_claims)
        )
        return (linked.events, resolved, *unlinked)


class LinkIncidents(LinkIncidentsInParts):
    """Events (one PCollection, or several: ``packed_events.apply_each``) → the same Events with
    ``incident_id`` set (see the module doc for the layout). Keys that are not Event fields are kept.

    A record marked ``KEEP_INCIDENT`` keeps its ``incident_id`` (its month is not relinked; it is
    there to decide which of its month's incidents take the next month's first hours).
    ``frequencies``: ((township, month), (records, n-gram → records holding it)) for months
    present only in part (``month_frequencies`` of the whole month). ``groups``: more Events to
    link, already keyed in tables (``KeyRowsByTownshipMonth``, e.g. read back by
    ``warehouse.ReadStoredMonths(linked=…)``); linked, they come out as Events like the others.
    """

    def expand(self, events):
        return super().expand(events) | "AllEvents" >> FlattenEvents()


# --------------------------------------------------------------------------------------------
# Linking quality against the simulator's truth
# --------------------------------------------------------------------------------------------

def pairwise_quality(predicted: Mapping[str, str], truth: Mapping[str, str | None]) -> dict:
    """Pairwise precision / recall / F1 of incident clusters over the records in both maps.

    Records without a truth incident are singletons in the truth.
    """
    ids = [i for i in predicted if i in truth]

    def pairs(assign):
        groups = defaultdict(list)
        for i in ids:
            groups[assign(i)].append(i)
        return {(a, b) for g in groups.values() for k, a in enumerate(sorted(g)) for b in sorted(g)[k + 1:]}

    pred = pairs(lambda i: predicted[i])
    true = pairs(lambda i: truth[i] if truth[i] else ("single", i))
    tp = len(pred & true)
    precision = tp / len(pred) if pred else 1.0
    recall = tp / len(true) if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"records": len(ids), "predicted_pairs": len(pred), "true_pairs": len(true),
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
