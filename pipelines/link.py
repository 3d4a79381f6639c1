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
unlinked rows leave as one table. A group whose records all came so is linked from their columns
(``_link``) and its tables leave with ``incident_id`` set: no Event dict is made but of the records
of claimable incidents.
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
from pipelines.packed_events import (EventTables, FlattenEvents, PackedEvent, PackedRows, apply_each, flatten,
                                     is_event_table, table_events)

# Masking upstream leaves tokens like [手机号], [身份证号], [姓名], 【地址】; they say nothing about
# the happening and are shared by unrelated records.
_OPENING, _CLOSING = r"\[【<＜(（", r"\]】>＞)）"


def _masked_tokens(also_not: str = "") -> re.Pattern:
    """The masked tokens, none holding ``also_not``'s characters."""
    inside = "".join(f"\\U{ord(c):08x}" for c in also_not)
    return re.compile(f"[{_OPENING}][^{_CLOSING}{inside}]{{1,8}}[{_CLOSING}]|\\*{{2,}}")


_MASKED = _masked_tokens()
# The characters a masked token starts or ends with: a separator of texts (``_cleaned``) is none of them.
_MASK_EDGES = "[【<＜(（]】>＞)）*"
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
    texts = [t or "" for t in texts]
    phrases = list(boilerplate)
    every = "".join(texts) + "".join(phrases) + _MASK_EDGES
    separator = next(c for c in map(chr, itertools.count()) if c not in every)
    # Masked tokens in one pass over all texts: none can start, end or hold a separator, so none spans two.
    joined = _masked_tokens(separator).sub(" ", separator.join(texts))
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
        # Renumbered densely between steps (ranks keep the order) only where the codes could overflow.
        dense = (len(chars) + 1) ** n >= 2 ** 63
        for k in range(n):
            code = code * (len(chars) + 1) + np.where(k < size, rank[first + k], 0)
            if dense and k < n - 1:
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


def table_frequencies(table: pa.Table, cfg: Mapping | None = None) -> dict[tuple, tuple[int, dict]]:
    """(township, month) → (records, n-gram → records holding it) of the linkable records in a table
    of Events (the warehouse's columns; ``township_code``, ``domain``, ``text`` and ``reported_at``
    suffice), read column by column: no Event is made. The idf ``link_group`` needs to link part of
    a month exactly as with the whole month present."""
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


def _km(lon1: float | None, lat1: float | None, lon2: float | None, lat2: float | None) -> float | None:
    if None in (lon1, lat1, lon2, lat2):
        return None
    lat = math.radians((lat1 + lat2) / 2)
    dx = math.radians(lon1 - lon2) * math.cos(lat)
    dy = math.radians(lat1 - lat2)
    return 6371.0 * math.hypot(dx, dy)


def _required_similarity(records: Mapping[str, list], i: int, j: int, cfg: Mapping) -> float | None:
    """The similarity records i and j (positions in ``records``' columns, ``_LINK_FIELDS``) need to be
    linked, or None when their places rule it out."""
    lon, lat = records["lon"], records["lat"]
    km = _km(lon[i], lat[i], lon[j], lat[j])
    if km is not None and km > cfg["max_km"]:
        return None
    township = records["township_code"]
    if km is None and (township[i] is None or township[i] != township[j]):
        return None
    caller = records["caller_key"]
    if caller[i] and caller[i] == caller[j]:
        return cfg["same_caller_similarity"]
    v1, v2 = records["village_code"][i], records["village_code"][j]
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

    The idf is the home month's (``frequencies``, ``table_frequencies`` of all its records, when
    ``home`` holds only part of it); guests come after every home record, so the home records'
    links do not depend on them. ``keep``: event_id → incident_id of home records that keep their
    stored link, so a month that is not relinked can still decide which of its incidents take the
    guests: it needs only its records from one span before its end, and the idf.
    """
    keep = keep or {}
    home, guests = list(home), list(guests)
    records = home + guests
    columns = {name: [e.get(name) for e in records] for name in _LINK_FIELDS}
    micros = np.array([(e["reported_at"] - _EPOCH) // _MICROSECOND for e in records], dtype=np.int64)
    at_home = np.arange(len(records)) < len(home)
    incidents = _link(columns, micros, at_home, [keep.get(i) for i in columns["event_id"]], cfg or link_config(),
                      frequencies)
    return dict(zip(columns["event_id"], incidents))


# What linking reads of a record, besides its time (``_link``).
_LINK_FIELDS = ("event_id", "text", "caller_key", "township_code", "village_code", "lon", "lat")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


def _link(columns: Mapping[str, list], micros: np.ndarray, at_home: np.ndarray, keep: list, cfg: Mapping,
          frequencies: tuple[int, Mapping] | None) -> list[str]:
    """Per record, its incident id by ``link_group``'s rule, the records given as columns: ``_LINK_FIELDS``,
    reported_at as integer epoch microseconds (datetimes' resolution, so the same order and spans),
    whether each is a home record, and the incident each keeps (None: linked here). Read from Event
    dicts (``link_group``) or from Arrow tables (``_LinkGroup``), no Event dict is needed."""
    ids = columns["event_id"]
    # Time order, ties by event_id (code point order, as Python compares strings).
    order = np.lexsort((np.array(ids, dtype=str), micros)) if ids else np.zeros(0, dtype=np.int64)
    position = order.tolist()
    records = {name: [values[k] for k in position] for name, values in columns.items()}
    kept = [keep[k] for k in position]
    times = micros[order]
    grams = Ngrams(records["text"], cfg["ngram"], _boilerplate(cfg))
    if frequencies is None:
        documents, counts = int(at_home.sum()), grams.counts(at_home[order])
    else:
        documents, month_counts = frequencies
        counts = np.array([month_counts.get(g, 0) for g in grams.vocabulary()], dtype=np.int64)
    weighted = grams.weighted(documents, counts, cfg["idf_prior_documents"])
    span = dt.timedelta(hours=cfg["max_span_hours"]) // _MICROSECOND
    # A record's candidates: the earlier records within the span, at most max_candidates of them.
    cutoffs = np.maximum(np.searchsorted(times, times - span), np.arange(len(times)) - cfg["max_candidates"])
    floor = min(cfg["min_similarity"], cfg["other_village_similarity"], cfg["same_caller_similarity"])
    ends, others, similarities = _linkable_candidates(records["caller_key"],
                                                      candidate_similarities(weighted, cutoffs, floor), cfg)
    times = times.tolist()
    incident_of: list[str] = []
    incident_start: dict[str, int] = {}
    for i, (event_id, best, first, last) in enumerate(zip(records["event_id"], kept, ends, ends[1:])):
        if best is None and first < last:
            best = _most_similar_incident(i, zip(others[first:last], similarities[first:last]), records, times,
                                          incident_of, incident_start, span, cfg)
        if best is None:
            best = event_id
        if best == event_id:
            incident_start[best] = times[i]
        incident_of.append(best)
    incidents = [""] * len(position)
    for k, incident in zip(position, incident_of):
        incidents[k] = incident
    return incidents


# Rows per block of records that share a window of candidates (``candidate_similarities``): a block's
# pairs outside the window (its later records, the window of its first) are computed for nothing,
# and a smaller block copies more rows of candidates.
_BLOCK_ROWS = 32


def candidate_similarities(weighted: sparse.csr_matrix, cutoffs: list[int] | np.ndarray,
                           floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, similarity) arrays of the pairs of a record i (row of ``weighted``,
    ``Ngrams.weighted``) and an earlier record j in ``cutoffs[i]``..i-1 that share an n-gram and
    have a similarity ≥ ``floor``; i ascending.

    The shared weights are one sparse product, weights × which n-grams the candidates hold, with
    each block of ``_BLOCK_ROWS`` records and the rows of its candidates on a copy of the n-gram
    columns of its own, so that the product holds only pairs within a block's reach (one product per
    block cost more in scipy's overhead than in sums). Its sums add each pair's shared weights in
    n-gram order, and the totals add each record's weights in that order, as ``similarity`` does, so
    the similarities are the same floats and the links the same.
    """
    records, width = weighted.shape
    if not records:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    holds = sparse.csr_matrix((np.ones_like(weighted.data), weighted.indices, weighted.indptr), shape=weighted.shape)
    # csr_matvec sums each row left to right, as sum() over an n-gram-ordered dict.
    totals = weighted @ np.ones(width)
    lows = np.asarray(cutoffs, dtype=np.int64)
    firsts = np.arange(0, records, _BLOCK_ROWS)
    reaches = np.minimum.reduceat(lows, firsts)
    # Block b's candidates, the records reaches[b]..its last, as rows of their own.
    sizes = np.minimum(firsts + _BLOCK_ROWS, records) - reaches
    candidate = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes - reaches, sizes)
    blocks = len(firsts)
    shifted = _shifted_columns(weighted, np.arange(records) // _BLOCK_ROWS, width, blocks)
    shifted_copies = _shifted_columns(holds[candidate], np.repeat(np.arange(blocks), sizes), width, blocks)
    shared = (shifted @ shifted_copies.T).tocoo()
    i, j = shared.row.astype(np.int64), candidate[shared.col]
    keep = (j >= lows[i]) & (j < i)
    i, j, value = i[keep], j[keep], shared.data[keep]
    sim = value / np.minimum(totals[i], totals[j])
    keep = sim >= floor
    return i[keep], j[keep], sim[keep]


def _shifted_columns(matrix: sparse.csr_matrix, block: np.ndarray, width: int, blocks: int) -> sparse.csr_matrix:
    """``matrix`` with each row's columns moved to its block's copy of the ``width`` columns."""
    shift = np.repeat(block.astype(np.int64) * width, np.diff(matrix.indptr))
    return sparse.csr_matrix((matrix.data, matrix.indices + shift, matrix.indptr),
                             shape=(matrix.shape[0], width * blocks))


def _linkable_candidates(callers: list, pairs: tuple, cfg: Mapping) -> tuple[list[int], list[int], list[float]]:
    """(ends, j, similarity) of the pairs (``candidate_similarities``) that can reach their threshold:
    record i's are at ends[i]..ends[i+1]-1, the most similar first (ties: the earlier record first)."""
    i, j, sim = pairs
    codes: dict = {}
    caller = np.array([codes.setdefault(c, len(codes)) if c else -1 for c in callers], dtype=np.int64)
    # Below both text thresholds only the same caller's records can be linked (_required_similarity).
    same_caller = (caller[i] >= 0) & (caller[i] == caller[j])
    keep = (sim >= min(cfg["min_similarity"], cfg["other_village_similarity"])) | same_caller
    i, j, sim = i[keep], j[keep], sim[keep]
    order = np.lexsort((j, -sim, i))
    ends = np.searchsorted(i[order], np.arange(len(callers) + 1)).tolist()
    return ends, j[order].tolist(), sim[order].tolist()


def _most_similar_incident(i: int, candidates: Iterable[tuple[int, float]], records: Mapping[str, list], times: list,
                           incident_of: list, incident_start: Mapping, span: int, cfg: Mapping) -> str | None:
    """The incident of the candidate (``_linkable_candidates``, most similar first) most similar to
    record i that is close enough in place and whose incident began within the span, or None."""
    t = times[i]
    for j, sim in candidates:
        incident = incident_of[j]
        start = incident_start.get(incident)
        # No start: a kept record whose incident began before the records at hand, long ago.
        if start is None or t - start > span:
            continue
        need = _required_similarity(records, i, j, cfg)
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


def table_groups(table: pa.Table) -> list[tuple[str, str]]:
    """The (township, county month) groups (``group_key``'s, of every row: those that need no linking
    too) a table of Events' rows fall in."""
    townships, months, _ = _group_columns(table)
    groups = pa.table({"township": townships, "month": months}).group_by(["township", "month"]).aggregate([])
    return [(township, _month_text(month))
            for township, month in zip(groups.column("township").to_pylist(), groups.column("month").to_pylist())]


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
        self._first_hours = pa.scalar(self._span, pa.duration("ms"))

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
        if self._grouped and not home and not guests:
            # The batch job's groups: every record came in a table, and the linked ones leave in tables.
            yield from self._link_tables(tables[_HOME], tables[_GUEST], frequencies)
            return
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
        self._count(incidents, linked)
        for e in guests:
            incident = incident_of[e["event_id"]]
            if incident in home_ids:
                # An incident of this month took a record of the next month's first hours.
                yield beam.pvalue.TaggedOutput(self.CLAIMS, (e["event_id"], incident))

    def _count(self, incidents: int, linked: int):
        # Once per group: an inc per record (2.5 µs each) was a tenth of linking the county month.
        self._incidents.inc(incidents)
        self._linked.inc(linked)

    def _link_tables(self, home: list, guests: list, frequencies):
        """``process`` for a group whose records all came as tables (``PackedRows``), read column by
        column: Event dicts are made only of the records of claimable incidents. The same outputs,
        in the same order, as the records made Events (tests/test_linked_groups.py)."""
        home, guests = self._rows.tables(home), self._rows.tables(guests)
        parts = [table for _, table in home + guests]
        if not parts:  # only the frequencies of a month that keeps its links: nothing to link
            return
        together = pa.concat_tables([table.select(_LINK_FIELDS + ("reported_at", "incident_id")) for table in parts])
        columns = {name: together.column(name).to_pylist() for name in _LINK_FIELDS}
        micros = together.column("reported_at").cast(pa.int64()).to_numpy() * 1000
        at_home = np.arange(together.num_rows) < sum(table.num_rows for _, table in home)
        kept = np.repeat([bool(dict(marks).get(KEEP_INCIDENT)) for marks, _ in home] + [False] * len(guests),
                         [table.num_rows for table in parts])
        stored = together.column("incident_id").to_pylist()
        keep = [incident if k else None for incident, k in zip(stored, kept.tolist())]
        incident_of = _link(columns, micros, at_home, keep, self._cfg, frequencies)
        ids, home_count = columns["event_id"], int(at_home.sum())
        own = np.array([incident == i for incident, i in zip(incident_of, ids)], dtype=bool)[:home_count]
        relinked = ~kept[:home_count]
        self._count(int((own & relinked).sum()), int((~own & relinked).sum()))
        # Only an incident with a record in its month's first hours can be claimed by the previous month.
        incidents = pa.array(incident_of[:home_count], pa.string())
        first_hours = pc.less_equal(_group_columns(together.slice(0, home_count))[2], self._first_hours)
        claimable = pc.is_in(incidents, value_set=pc.unique(pc.filter(incidents, first_hours)))
        claimable = claimable.to_numpy(zero_copy_only=False)
        start = 0
        for marks, table in home:
            index = table.schema.get_field_index("incident_id")
            part = table.set_column(index, table.schema.field(index), incidents.slice(start, table.num_rows))
            taken = claimable[start:start + table.num_rows]
            start += table.num_rows
            for e in table_events(part.take(np.flatnonzero(taken)), self._tables.schema, self._tables.packer):
                e.update(marks)
                yield beam.pvalue.TaggedOutput(self.CLAIMABLE, e)
            rest = part.take(np.flatnonzero(~taken))
            if rest.num_rows:
                yield marks, self._tables.to_bytes(rest)
        home_ids = set(ids[:home_count])
        for i, incident in zip(ids[home_count:], incident_of[home_count:]):
            if incident in home_ids:
                # An incident of this month took a record of the next month's first hours.
                yield beam.pvalue.TaggedOutput(self.CLAIMS, (i, incident))


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
    present only in part (``table_frequencies`` of the whole month). ``groups``: more Events to
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
