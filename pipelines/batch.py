"""The monthly batch job: a Beam pipeline from inbox to warehouse, a second one from the warehouse's
tallies to scores, and the month's topics and report.

Whole inbox (first run, ``incremental=False``, or the ledger does not match):

    inbox ─ IngestFeeds ─ LinkIncidents ─────────────────┬─ WriteEvents ─────────────── (warehouse/events/) ──┐
             │  │                                         └─ tallies ─ StoreTallies ──── (warehouse/tallies/) ─┤
             │  └─ quarantine ─ WriteQuarantine ─────────────────────────────────────── (quarantine/) ─────────┤
             └─ accounting ──────────────────────────────────────────────────────────────── WriteManifest (manifests/)

Incremental (only inbox files the ledger, ``pipelines.ledger``, does not list):

    new files ─ IngestFeeds ──────── MergeWithWarehouse ─ LinkIncidents ─────────┬─ WriteEvents (months with a
                (+ the stored versions   (touched township-months │               │   relinked township)
                 of their records, by    and the edges around     └─ their other ─┤
                 id, in one supersede)   them read back)             townships    └─ tallies ─ StoreTallies (the
                                                                     as stored         township-months it recounts)

Then, either way (``build_scoring_pipeline``):

    months scored and their history ─ ReadScoredTallies ─ ScoreMonths ─ WriteScores (scores/) ─ AddToManifest

The incremental run's cost follows the new data, not the warehouse: the stored versions of the
records the new files carry are found by event_id (reading only that column of the stored
partitions), only the township-months where a record changes and the same townships' next month
are relinked; the township-month before keeps its links and only its last hours are read, to
decide which of its incidents take the touched month's first hours (see ``MONTH_ROLES``). A month
with a relinked township is written again, its other townships' Events as stored and their tallies
kept (the manifest lists the relinked townships per month, ``sinks.RELINKED_TOWNSHIPS``). Scores come from
per-month daily tallies (``pipelines.score.DailyCounts`` and ``FeedDayCounts``, kept in
``warehouse/tallies/``) instead of the history's events. It writes what a run over the whole inbox
would (tests/test_batch_incremental.py).

Every sink yields what it wrote into the manifest step, the one terminal transform (the DaskRunner
computes only the last transform's branch; see docs/notes/performance.md, "Rules for portable
transforms"). The scores come from the tallies as stored, so they take a pipeline of their own: the
month's report step (``pipelines.monthly.MonthReport``) begins between the two, its topics reading
the month's Events in a second process while this one scores, when a core is idle. For a large
month those second processes start with the first pipeline, importing and setting up on the core it
leaves idle, and wait for its Events. The month as a
whole (topics, report) is read back from the warehouse, so every step after the pipelines sees
exactly what was written.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from models import risk_score
from models.baselines import festival_years_missing
from models.topics import shift_month
from pipelines import sinks, warehouse
from pipelines.backfill import DEFAULT_PART_MB, named_month, plan_parts
from pipelines.gazetteer import UNRESOLVED
from pipelines.ingest import AccountingError, IngestFeeds, default_ingest_time, unbalanced_files
from pipelines.ledger import Ledger, file_sha256, read_ledger, run_fingerprint, write_ledger
from pipelines.link import KEEP_INCIDENT, LinkIncidentsInParts, link_config, table_frequencies, table_groups
from pipelines.normalise import TZ
from pipelines.options import beam_options
from pipelines.packed_events import EventTables, apply_each, is_event_table
from pipelines.read import FeedFile, discover, inbox_digest
from pipelines.runners import run_to_completion
from pipelines.score import DailyTallies, ScoreTallies
from pipelines.warehouse import month_of_date

log = logging.getLogger(__name__)
HISTORY_MONTHS = 12
# the month of a warehouse events file, from its path
_EVENT_MONTH = re.compile(r"warehouse/events/month=(\d{4}-\d{2})/")


# stored months of history before the scored ones for the topics to start in a process of their own
# (else the checks' second process builds them after its checks)
TOPICS_PROCESS_HISTORY = 6


class BatchJobError(RuntimeError):
    """The job cannot do its work; the message says why and what to do."""


def parse_month(text: str) -> str:
    try:
        parsed = dt.datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise BatchJobError(f"month {text!r} is not of the form YYYY-MM (e.g. 2026-10)") from None
    return parsed.strftime("%Y-%m")


@dataclasses.dataclass(frozen=True)
class MonthRange:
    """The months a run reports on (``--month``, or ``--from``/``--to`` for a backfill)."""

    first: str
    last: str

    def __post_init__(self):
        if self.last < self.first:
            raise BatchJobError(f"--to {self.last} is before --from {self.first}")

    @property
    def months(self) -> list[str]:
        out, month = [], self.first
        while month <= self.last:
            out.append(month)
            month = shift_month(month, 1)
        return out

    @property
    def target_start(self) -> dt.date:
        return dt.date.fromisoformat(f"{self.first}-01")

    @property
    def target_end(self) -> dt.date:
        return dt.date.fromisoformat(f"{shift_month(self.last, 1)}-01") - dt.timedelta(days=1)

    @property
    def history_start(self) -> dt.date:
        return dt.date.fromisoformat(f"{shift_month(self.first, -HISTORY_MONTHS)}-01")

    @property
    def history_months(self) -> list[str]:
        """The months before ``first`` its series are scored against."""
        return [shift_month(self.first, -k) for k in range(HISTORY_MONTHS, 0, -1)]


# How an incremental run reads the township-months around a touched one (township, c): one its
# records fall in. Linking (pipelines.link) groups records by (township, month), weighs a group's texts
# with the group's own idf and lets its incidents take the first ``max_span_hours`` of the same
# township's next month (whole incidents of its first two spans); townships never meet. So, per township:
#   c, c+1  relinked and rewritten (c+1: which of its first hours c's incidents take may change);
#   c-1     keeps its links: its records from one span before its last day with a change (``_tail_cut``)
#           decide, with the group's stored idf, which of its incidents take c's first hours, and its
#           tallies are counted again from that day on;
#   c+2     its first two spans (what c+1's incidents may have taken), for c+1's tallies.
# Every other township of a month keeps its links, Events and tallies as stored; a month file with a
# relinked township is written again, its other townships' Events carried as read (``CARRY``).
RELINK, TAIL, HEAD, CARRY = "relink", "tail", "head", "carry"
MONTH_ROLES = ((-1, TAIL), (0, RELINK), (1, RELINK), (2, HEAD))


class ScoreMonths(beam.PTransform):
    """The tallies of ``tally_months`` (``{"series", "feed_days"}`` as ``warehouse.ReadScoredTallies``
    gives them) → score rows of the months in range, each series scored against its own twelve
    months of history."""

    def __init__(self, months: MonthRange, village_names: dict[str, str]):
        super().__init__()
        self._months, self._village_names = months, village_names

    def expand(self, tallies):
        return tallies | "Score" >> ScoreTallies(self._months.target_start, self._months.target_end,
                                                 self._months.history_start, self._village_names)

    @property
    def tally_months(self) -> list[str]:
        return MonthRange(month_of_date(self._months.history_start), self._months.last).months


def _month_start(month: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{month}-01").replace(tzinfo=TZ)


def _millis(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _tail_cut(month: str, span: dt.timedelta) -> dt.date:
    """The first day of ``month`` whose tallies the next month's records can change: the day an
    incident that takes the next month's first hours may start on."""
    return (_month_start(shift_month(month, 1)) - span).date()


def _read_windows(keyed, span: dt.timedelta):
    """((township, month), its roles around touched township-months) → (month, (role, since, until,
    township)): what to read of it (epoch ms, None: open). Relinking the whole township-month covers
    every other role."""
    (township, month), roles = keyed
    roles = set(roles)
    if RELINK in roles:
        yield month, (RELINK, None, None, township)
        return
    if TAIL in roles:
        # An incident counted on the cut day may have started one span before it.
        cut = dt.datetime.combine(_tail_cut(month, span), dt.time(), TZ)
        yield month, (TAIL, _millis(cut - span), None, township)
    if HEAD in roles:
        yield month, (HEAD, None, _millis(_month_start(month) + 2 * span), township)


def _month_windows(keyed):
    """(month, [(role, since, until, township)]) → (month, window of ``warehouse.ReadStoredMonths``):
    one per role, of the townships read so; and, for a month with relinked townships (its file is
    written again), all the others as stored (``CARRY``)."""
    month, windows = keyed
    townships = defaultdict(set)
    for role, since, until, township in windows:
        townships[(role, since, until)].add(township)
    for (role, since, until), names in sorted(townships.items(), key=repr):
        yield month, (role, since, until, tuple(sorted(names)), ())
    relinked = townships.get((RELINK, None, None))
    if relinked:
        yield month, (CARRY, None, None, None, tuple(sorted(relinked)))


def _rewritten_tallies(window, span: dt.timedelta):
    """(month, window) → (month, township, first day counted again, None: all) for each township whose
    tallies of the month the run writes again."""
    month, (role, _, _, townships, _) = window
    if role in (RELINK, TAIL):
        first = _tail_cut(month, span).isoformat() if role == TAIL else None
        for township in townships:
            yield month, township, first


class _MonthFrequencies(beam.DoFn):
    """(month, townships) that keep their links → ((township, month), idf document frequencies) of
    their stored linkable records, which ``LinkIncidents`` needs to link their last hours as the whole
    township-month would be."""

    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def setup(self):
        self._cfg = link_config()

    def process(self, keyed):
        month, townships = keyed
        # A township-month that keeps its links has no record this run replaces (it would be touched),
        # so its stored records are the township-month.
        table = warehouse.read_stored_columns(self._out, month, ["township_code", "domain", "text", "reported_at"])
        table = table.filter(pc.is_in(pc.fill_null(table.column("township_code"), ""),
                                      value_set=pa.array(townships, pa.string())))
        yield from table_frequencies(table, self._cfg).items()


def _touched(event: dict) -> tuple[str, str]:
    """A replaced stored Event → the (township, month) of its link group (``link.group_key``)."""
    return event.get("township_code") or "", sinks.month_of(event)


class MergeWithWarehouse(beam.PTransform):
    """An incremental run's ingest (new files only, superseded together with the warehouse's
    stored versions of their records: ``IngestFeeds(stored_versions=LookupStoredVersions)``; its
    Events as tables, ``tables=True``) + the warehouse → the Events to relink.

    The township-months (link groups, ``link.group_key``) the new winning versions and the stored
    versions they replace fall in are *touched* (a resent copy that loses to its stored version
    touches nothing); around each, the same township's months are read back as ``MONTH_ROLES``
    says (``ReadStoredMonths``, without the replaced versions): whole for the township-months to
    relink, the last or first hours of their neighbours; the other townships of a month with a
    relinked one whole, as stored, for its file to be written again.

    Returns ``{"events": the new versions, to link, "groups": the stored records that need linking
    of the relinked township-months and of those that keep their links (marked ``KEEP_INCIDENT``),
    keyed for ``LinkIncidentsInParts(groups=…)``, "stored": the stored records of both kinds that
    need no linking, as linking leaves them, as tables (``packed_events.is_event_table``),
    "frequencies": the idf statistics of the township-months that keep their links for
    ``LinkIncidents``, "head": stored Events of the first hours after the relinked township-months as
    tables (tallies only), "carried": the stored Events of the other townships of the months to
    rewrite, as tables (to write only: their tallies are kept as stored), "rewrite": the months to
    rewrite, "tally_months": (month, township, first day its tallies change or None: all),
    "relinked": (month, its relinked townships)}``. The untouched warehouse is never shuffled, so the
    run's cost follows the new data, not the warehouse.
    """

    def __init__(self, out: str):
        super().__init__()
        self._out = out

    def expand(self, ingested):
        span = dt.timedelta(hours=link_config()["max_span_hours"])
        won, replaced = ingested["events"], ingested["replaced"]
        windows = (
            (won | "FreshGroups" >> beam.FlatMap(lambda element: table_groups(EventTables.from_bytes(element[1]))),
             replaced | "ReplacedGroup" >> beam.Map(_touched))
            | "TouchedGroups" >> beam.Flatten()
            | "DistinctTouched" >> beam.Distinct()
            | "Roles" >> beam.FlatMapTuple(lambda township, month: [
                ((township, shift_month(month, step)), role) for step, role in MONTH_ROLES])
            | "RolesByGroup" >> beam.GroupByKey()
            | "GroupWindows" >> beam.FlatMap(_read_windows, span)
            | "ByMonth" >> beam.GroupByKey()
            | "Windows" >> beam.FlatMap(_month_windows)
        )
        drop = replaced | "DropReplaced" >> beam.Map(lambda e: (sinks.month_of(e), e["event_id"]))
        # Stored Events come in tables, not one by one: those that need linking reach their link
        # groups one element per township-month, the others (each its own incident) the writers and
        # counters one element per month file; those of a township-month that keeps its links are marked.
        around = {"reach": windows, "drop": drop} | "ReadAround" >> warehouse.ReadStoredMonths(
            self._out, linked={RELINK: (), TAIL: ((KEEP_INCIDENT, True),)})

        def read_as(role):
            return around | f"{role.title()}Read" >> beam.Filter(lambda kv: kv[0] == role) | f"{role.title()}Event" >> beam.Values()

        def townships_of(role):
            return windows | f"{role.title()}Townships" >> beam.FlatMapTuple(
                lambda month, window: [(month, window[3])] if window[0] == role else [])

        frequencies = townships_of(TAIL) | "MonthFrequencies" >> beam.ParDo(_MonthFrequencies(self._out))
        relinked = townships_of(RELINK)
        stored = (around | "StoredRead" >> beam.Filter(lambda kv: kv[0] in (RELINK, TAIL))
                  | "StoredTable" >> beam.Values())
        return {"events": won, "groups": read_as(warehouse.LINKED), "stored": stored, "frequencies": frequencies,
                "head": read_as(HEAD), "carried": read_as(CARRY), "relinked": relinked,
                "rewrite": relinked | "RelinkedMonths" >> beam.Keys(),
                "tally_months": windows | "TallyMonths" >> beam.FlatMap(_rewritten_tallies, span)}


def _relinked(linked) -> bool:
    """Whether a linked Event, or a group's Events as a table (``packed_events.is_event_table``), was
    relinked, not only there to link the next month's first hours (``KEEP_INCIDENT``)."""
    marks = dict(linked[0]) if is_event_table(linked) else linked
    return not marks.get(KEEP_INCIDENT)


def build_pipeline(pipeline: beam.Pipeline, *, ingest: IngestFeeds, out: str, manifest_path: str,
                   manifest_header: dict) -> None:
    """Inbox → warehouse (events, tallies), quarantine, manifest. ``ingest`` classifies and gives its
    Events as tables (``IngestFeeds(classify=True, tables=True)``: they reach linking, and those it
    leaves alone the writers and counters, as tables); the warehouse's Events keep their domains. An ``ingest`` with
    the warehouse's stored versions (``stored_versions``) reads only the new files and the
    warehouse stands in for the others (``MergeWithWarehouse``). The scores follow in a pipeline of
    their own (``build_scoring_pipeline``)."""
    digest = inbox_digest(ingest.files)[:12]
    ingested = pipeline | "Ingest" >> ingest
    if ingested["replaced"] is not None:
        merged = ingested | "MergeWithWarehouse" >> MergeWithWarehouse(out)
        # Linked Events stay in parts up to the writers' and counters' shuffles (packed_events.apply_each).
        relinked = merged["events"] | "Link" >> LinkIncidentsInParts(frequencies=merged["frequencies"],
                                                                     groups=merged["groups"], grouped=True)
        linked = (*relinked, merged["stored"])
        # The other townships of a rewritten month go to its file as stored; their tallies stay stored.
        events = (*apply_each(linked, "Relinked", lambda: beam.Filter(_relinked)), merged["carried"])
        tallies = (*linked, merged["head"]) | "Tallies" >> DailyTallies(by_month=True)
        rewrite, tally_months, relinked_groups = merged["rewrite"], merged["tally_months"], merged["relinked"]
    else:
        events = ingested["events"] | "Link" >> LinkIncidentsInParts(grouped=True)
        tallies = events | "Tallies" >> DailyTallies(by_month=True)
        rewrite, tally_months, relinked_groups = None, None, None
    written = [
        events | "WriteEvents" >> sinks.WriteEvents(out, "batch", months=rewrite),
        tallies | "StoreTallies" >> warehouse.StoreTallies(out, rewrite=tally_months),
        ingested["quarantine"] | "WriteQuarantine" >> sinks.WriteQuarantine(out, digest),
    ]
    # Last, and fed by every sink: some runners compute only the last transform's branch.
    _ = ingested["accounting"] | "WriteManifest" >> sinks.WriteManifest(manifest_path, manifest_header, written, out,
                                                                         replaced=ingested["replaced"],
                                                                         relinked=relinked_groups)


def build_scoring_pipeline(pipeline: beam.Pipeline, *, out: str, months: MonthRange, village_names: dict[str, str],
                           manifest_path: str) -> None:
    """The warehouse's tallies → the scores of ``months`` (each series against its own twelve
    months of history), listed in the run's manifest. A pipeline of its own after
    ``build_pipeline``'s, so the month's report can start reading the Events it wrote meanwhile."""
    score = ScoreMonths(months, village_names)
    _ = (pipeline
         | "TallyMonths" >> beam.Create(score.tally_months)
         | "ReadTallies" >> warehouse.ReadScoredTallies(out)
         | "ScoreMonths" >> score
         | "WriteScores" >> warehouse.WriteScores(out, months.months)
         | "AddToManifest" >> sinks.AddToManifest(manifest_path, out))


@dataclasses.dataclass
class BatchResult:
    manifest_path: str
    manifest: dict
    reports: dict[str, dict[str, Path]]


Progress = Callable[[str], None]


def run_batch_pipeline(inbox: str, gazetteer: str, out: str, key: bytes, months: MonthRange, *,
                       beam_args: list[str] | None = None, ingest_time: dt.datetime | None = None,
                       model_dir: str | None = None, progress: Progress = log.info,
                       incremental: bool = True, part_bytes: int = DEFAULT_PART_MB * 2**20,
                       before_reading: Callable[[list], object] | None = None,
                       before_scoring: Callable[[], object] | None = None) -> tuple[str, dict]:
    """The Beam part of the batch job (inbox → warehouse, quarantine, manifest, then the scores) on
    the runner that ``beam_args`` name; returns the manifest's path and content. Raises
    BatchJobError or AccountingError when it cannot do its work. ``before_reading`` is called with
    the inbox files the run reads, before it reads them; ``before_scoring`` once the Events are
    written and before the months are scored.

    With ``incremental`` and a matching ledger (``pipelines.ledger``), only inbox files not yet in
    the warehouse are read; the warehouse's Events stand in for the others, and only the months
    that change are rewritten. The manifest accounts for the files this run read.

    More than ``part_bytes`` of files to read (a backfill) are read in parts of whole months
    (``pipelines.backfill``), each part a pipeline run of its own that leaves the warehouse and the
    ledger as if its files were all there was, scores written by the last. A whole-inbox run over a
    warehouse that already holds events (``--full``, a changed model or gazetteer) stays one run:
    its parts would meet the old events as stored versions.
    """
    if not Path(inbox).is_dir():
        raise BatchJobError(f"inbox {inbox} is not a folder (expected hotline_12345/, police_110/, grid/ inside)")
    if not Path(gazetteer).is_file():
        raise BatchJobError(f"gazetteer {gazetteer} does not exist (CSV with code,name,level,parent_code,aliases)")
    files = discover(inbox)
    if not files:
        raise BatchJobError(f"no feed files under {inbox}/hotline_12345, police_110 or grid")
    sha256 = {f.relpath: file_sha256(f.path) for f in files}
    fingerprint = run_fingerprint(gazetteer, key, _model_version(model_dir))
    known = read_ledger(out) if incremental else None
    new_files = known.new_files(files, sha256, fingerprint) if known else None
    ingest_time = (ingest_time or default_ingest_time(files)).astimezone(TZ)
    to_read = files if new_files is None else new_files
    rebuild = new_files is None and bool(warehouse.batch_event_files(out))
    parts = [to_read] if rebuild else plan_parts(to_read, part_bytes)
    run_id = f"{months.first}_{months.last}-{inbox_digest(to_read)[:12]}"
    path = sinks.manifest_path(out, "batch", run_id)
    header = {"job": "batch", "run_id": run_id, "months": months.months, "inbox": str(inbox),
              "gazetteer": str(gazetteer), "ingest_time": ingest_time.isoformat(),
              "read": "all_files" if new_files is None else "new_files", "files_in_inbox": len(files)}
    if len(parts) > 1:
        header["parts"] = len(parts)
    started = time.monotonic()
    missing = festival_years_missing(risk_score.config()["expected"], months.history_start, months.target_end)
    if missing:
        log.warning("schemas/scoring.yaml lists no Spring Festival date for %s: those festival seasons are "
                    "scored as ordinary days; add the dates under expected.festival.dates",
                    ", ".join(map(str, missing)))
    progress(f"读取与处理 {len(to_read)} 个文件（共 {len(files)} 个；接入、校验、分类、关联、评分）…")
    if before_reading:
        before_reading(to_read)
    ledger = dict(known.files) if new_files is not None else {}
    read, written, replaced, relinked = [], [], Counter(), defaultdict(set)
    for number, part in enumerate(parts, 1):
        if len(parts) > 1:
            progress(f"第 {number}/{len(parts)} 批：{len(part)} 个文件（{_named_months(part)}）…")
        # A run over new files, or a later part, meets the warehouse's versions of its records.
        stored = warehouse.LookupStoredVersions(out) if new_files is not None or number > 1 else None
        ingest = IngestFeeds(inbox, gazetteer, key, ingest_time, part, order_files=files,
                             classify=True, model_dir=model_dir, stored_versions=stored, tables=True)
        pipeline = beam.Pipeline(options=beam_options(beam_args))
        build_pipeline(pipeline, ingest=ingest, out=out, manifest_path=path, manifest_header=header)
        run_to_completion(pipeline)
        manifest = sinks.read_manifest(path)
        broken = unbalanced_files(manifest)
        if broken:
            raise AccountingError("rows do not add up in: " + "; ".join(e["file"] for e in broken) + f" (manifest {path})")
        # A file without its entry would escape the checks of its rows (``_as_held``).
        unaccounted = sorted({f.relpath for f in part} - {e["file"] for e in manifest["files"]})
        if unaccounted:
            raise AccountingError("the manifest does not account for: " + "; ".join(unaccounted) + f" (manifest {path})")
        read += manifest["files"]
        written += manifest.get("written", [])
        replaced.update(manifest.get(sinks.REPLACED_IN_WAREHOUSE, {}))
        for month, townships in manifest.get(sinks.RELINKED_TOWNSHIPS, {}).items():
            relinked[month].update(townships)
        accounted = _as_held(out, read, written, replaced, path)
        ledger.update({f.relpath: sha256[f.relpath] for f in part})
        write_ledger(out, Ledger(fingerprint, ledger))
    if len(parts) > 1:
        manifest = _whole_run_manifest(out, manifest, accounted, written, replaced, relinked)
        sinks.write_atomically(path, sinks.to_json(manifest, indent=2).encode("utf-8"))
    if before_scoring:
        before_scoring()
    pipeline = beam.Pipeline(options=beam_options(beam_args))
    build_scoring_pipeline(pipeline, out=out, months=months, village_names=ingest.region_names, manifest_path=path)
    run_to_completion(pipeline)
    manifest = sinks.read_manifest(path)
    totals = manifest["totals"]
    progress(f"接入完成：读取 {totals['rows_read']} 行，入库 {totals['accepted']}，"
             f"覆盖 {totals['superseded']}，隔离 {totals['quarantined']}（{time.monotonic() - started:.1f} 秒）")
    return path, manifest


def _named_months(files: list) -> str:
    named = sorted({m for m in map(named_month, (f.relpath for f in files)) if m})
    return f"{named[0]}…{named[-1]}" if len(named) > 1 else (named[0] if named else "文件名未标明月份")


def _whole_run_manifest(out: str, last: dict, files: list[dict], written: list[dict], replaced: Counter,
                        relinked: dict[str, set]) -> dict:
    """The parts' manifests as one: every file read, accounted as one run would (``_as_held``), the
    stored rows of earlier runs' files replaced, the townships relinked by any part, and what the run
    wrote that is still there (a later part rewrites the months it relinks)."""
    prefix = out.rstrip("/") + "/"
    kept = {w["path"]: w for w in written if FileSystems.exists(prefix + w["path"])}
    read = {e["file"] for e in files}
    earlier = {file: n for file, n in sorted(replaced.items()) if file not in read}
    manifest = dict(last, files=sorted(files, key=lambda e: e["file"]), totals=sinks.manifest_totals(files),
                    written=sorted(kept.values(), key=lambda w: w["path"]))
    manifest.pop(sinks.REPLACED_IN_WAREHOUSE, None)
    if relinked:
        manifest[sinks.RELINKED_TOWNSHIPS] = {month: sorted(relinked[month]) for month in sorted(relinked)}
    return dict(manifest, **{sinks.REPLACED_IN_WAREHOUSE: earlier}) if earlier else manifest


def _as_held(out: str, files: list[dict], written: list[dict], replaced: Counter, manifest_path: str) -> list[dict]:
    """The accounting of the files read so far, checked against what the warehouse holds of them.

    A part accounts a row accepted when it stores it; a later part's file may then replace it (a
    newer version of the record, counted in that part's manifest, ``sinks.REPLACED_IN_WAREHOUSE``).
    One run would count that row superseded, and so does this. Every other accepted row must still
    be in the warehouse: one that is neither there nor replaced was lost on the way, and the run
    stops with AccountingError instead of calling it superseded.
    """
    months = sorted({m for w in written for m in _EVENT_MONTH.findall(w["path"])})
    rows, unresolved = Counter(), Counter()
    for month in months:
        held = warehouse.read_stored_columns(out, month, ["feed_file", "region_resolved_by"])
        rows.update(sinks.rows_per_feed_file(held))
        unresolved.update(sinks.rows_per_feed_file(held.filter(pc.equal(held.column("region_resolved_by"), UNRESOLVED))))
    fixed, lost = [], []
    for entry in files:
        file, later = entry["file"], replaced.get(entry["file"], 0)
        kept = int(rows.get(file, 0))
        if kept != entry["accepted"] - later:
            lost.append(f"{file}: {entry['accepted']} accepted, {later} replaced by later files, {kept} held")
        elif later:
            entry = dict(entry, accepted=kept, superseded=entry["superseded"] + later,
                         unresolved_regions=int(unresolved.get(file, 0)))
        fixed.append(entry)
    if lost:
        raise AccountingError("the warehouse does not hold the rows accepted from " + "; ".join(lost)
                              + f" (manifest {manifest_path}); rebuild it from the inbox with --full")
    return fixed


def topics_in_own_process(out: str, months: MonthRange, reading: Sequence[FeedFile] = ()) -> bool:
    """Whether the month's topics take a second process of their own (else the checks' builds them).

    That process is hidden behind the scoring of the months' history; with little history stored the
    scoring is short, and a third interpreter beside the checks' slows it as much as it hides. Before
    the run reads its files (``reading``), the months they name count as stored, and a file naming
    none as all of them: a guess that errs towards starting the process.
    """
    named = {named_month(f.relpath) for f in reading}
    if None in named:
        return True
    stored = sum(m in named or FileSystems.exists(warehouse.tally_path(out, m, warehouse.SERIES_TALLIES))
                 for m in months.history_months)
    return stored >= TOPICS_PROCESS_HISTORY


def run_batch(inbox: str, gazetteer: str, out: str, key: bytes, months: MonthRange, *,
              beam_args: list[str] | None = None, ingest_time: dt.datetime | None = None,
              model_dir: str | None = None, progress: Progress = log.info, incremental: bool = True,
              part_bytes: int = DEFAULT_PART_MB * 2**20) -> BatchResult:
    """Run the whole chain for ``months``; raise BatchJobError or AccountingError when it cannot.
    ``incremental=False`` re-reads the whole inbox; ``part_bytes``: see ``run_batch_pipeline``."""
    from pipelines.monthly import MonthReport, large_month_ahead

    begun: dict[str, MonthReport] = {}

    def begin_early(files: list) -> None:
        # The monthly run of a large month: its report step's second processes import and set up on
        # the core the first pipeline leaves idle, the topics' own one only if the history may prove
        # long enough (known for sure once this run wrote it: ``begin_reports``).
        month = months.first
        if len(months.months) == 1 and large_month_ahead(out, month, sum(f.size for f in files)):
            begun[month] = MonthReport(out, month, gazetteer, events_written=False,
                                       topics_process=topics_in_own_process(out, months, files))

    def begin_reports():
        # Second processes for one month at most: they pay only on a core nothing else uses.
        with_history = topics_in_own_process(out, months)
        for month in months.months:
            if month in begun:
                begun[month].events_written(topics_process=with_history)
                continue
            taken = any(report.processes for report in begun.values())
            begun[month] = MonthReport(out, month, gazetteer, processes=False if taken else None,
                                       topics_process=with_history)

    started = time.monotonic()
    try:
        path, manifest = run_batch_pipeline(inbox, gazetteer, out, key, months, beam_args=beam_args,
                                            ingest_time=ingest_time, model_dir=model_dir, progress=progress,
                                            incremental=incremental, part_bytes=part_bytes,
                                            before_reading=begin_early, before_scoring=begin_reports)
        pipeline_seconds = time.monotonic() - started
        reports, stages = {}, []
        for month in months.months:
            month_started = time.monotonic()
            progress(f"{month}：数据质量、研判选题与报告…")
            reports[month], summary = begun.pop(month).write()
            stages.append({"month": month, "seconds": round(time.monotonic() - month_started, 2), **summary})
            progress(f"{month}：{summary['topics']} 个选题，报告 {reports[month]['report.html']}")
    finally:
        for report in begun.values():
            report.close()
    manifest.update(
        pipeline_seconds=round(pipeline_seconds, 2),
        seconds=round(time.monotonic() - started, 2),
        model=_model_version(model_dir),
        months_done=stages,
        outputs={m: {k: str(v) for k, v in r.items()} for m, r in reports.items()},
    )
    sinks.write_atomically(path, sinks.to_json(manifest, indent=2).encode("utf-8"))
    return BatchResult(path, manifest, reports)


def critical_findings(result: BatchResult) -> list[str]:
    """The data problems the quality policy marks critical, per month, as the report words them."""
    return [f"{s['month']}：{text}" for s in result.manifest["months_done"] for text in s["quality_critical"]]


def _model_version(model_dir: str | None) -> dict:
    from models.domain_classifier import DEFAULT_ARTIFACTS, ARTIFACT_NAME

    meta = Path(model_dir or DEFAULT_ARTIFACTS) / f"{ARTIFACT_NAME}.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    return {k: data.get(k) for k in ("model_version", "sklearn_version", "taxonomy_version", "training_data_sha256")}
