"""Early warnings: windowed series scoring, immediate rules, and suppression of repeats.

``WarnOnSeries`` is the one alert logic: the streaming pipeline applies it to an unbounded
collection with early/on-time/late panes, the embedded runner applies it to a bounded collection
(each window fires once). Both decide per series (township × domain) in event-time order, with
state seeded from the warnings already raised, so a restart never raises a warning twice.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import logging
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import TimestampedValue
from apache_beam.typehints import KV

import schemas
from pipelines.element_coder import crosses_by_fields
from pipelines.normalise import TZ
from pipelines.score import DataStart
from pipelines.windows import (
    DAY,
    SERIES_WINDOWS,
    FiringPolicy,
    SeriesWindow,
    decision_windowing,
    series_windowing,
    to_local,
    to_timestamp,
)

LOG = logging.getLogger(__name__)
IMMEDIATE_RULE = "immediate"
NO_LEVEL = "none"
LEVEL_NAMES_ZH = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色", NO_LEVEL: "无"}


@functools.lru_cache(maxsize=None)
def _level_ranks() -> dict[str, int]:
    thresholds = schemas.load("scoring.yaml")["levels"]
    ranked = sorted(thresholds, key=thresholds.get)
    return {NO_LEVEL: 0, **{level: i + 1 for i, level in enumerate(ranked)}}


def level_rank(level: str | None) -> int:
    return _level_ranks()[level or NO_LEVEL]


def series_key(township_code: str | None, domain: str | None) -> str:
    return f"{township_code or ''}|{domain or schemas.taxonomy()['none']['code']}"


def split_series_key(key: str) -> tuple[str | None, str]:
    township, domain = key.split("|", 1)
    return township or None, domain


def alert_id(rule: str, key: str, window_start: dt.datetime, window_end: dt.datetime, level: str) -> str:
    """Deterministic: the same warning computed again (restart, late re-run) has the same id."""
    text = "|".join((rule, key, window_start.isoformat(), window_end.isoformat(), level))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def incident_key(event: dict) -> str:
    return event.get("incident_id") or event["event_id"]


@dataclasses.dataclass(frozen=True)
class WarnPolicy:
    firing: FiringPolicy
    cooldown_s: int = 24 * 3600
    # Fresh batches: a bounded run only decides windows holding at least one record of these
    # batches (the files it just ingested); None decides every window (streaming).
    fresh_batches: frozenset[str] | None = None


# ---------------------------------------------------------------------------------------------
# Windowed counts per series


@crosses_by_fields  # once per sliding window it falls in
@dataclasses.dataclass(frozen=True)
class SeriesRecord:
    """What the scorer may need of one record, without carrying the whole Event through state."""

    event_id: str
    incident: str
    reported_at: dt.datetime
    source: str
    caller_key: str | None
    status: str | None
    signals: tuple[str, ...]
    people_involved: int | None
    satisfaction: str | None
    fresh: bool
    subjects: tuple[str, ...] = ()  # what its text names (``models.subjects``), as the batch counts them
    village_code: str | None = None  # for the village scan, as the batch's tallies carry it

    @classmethod
    def of(cls, event: dict, fresh_batches: frozenset[str] | None, namer=None) -> "SeriesRecord":
        return cls(
            event_id=event["event_id"],
            incident=incident_key(event),
            reported_at=event["reported_at"],
            source=event.get("source") or "",
            caller_key=event.get("caller_key"),
            status=event.get("status"),
            signals=tuple(sorted(event.get("signals") or ())),
            people_involved=event.get("people_involved"),
            satisfaction=event.get("satisfaction"),
            fresh=fresh_batches is None or event.get("batch_id") in fresh_batches,
            subjects=namer.names(event.get("text")) if namer is not None else (),
            village_code=event.get("village_code"),
        )

    def as_event(self) -> dict:
        return {"reported_at": self.reported_at, "source": self.source, "signals": self.signals,
                "people_involved": self.people_involved, "caller_key": self.caller_key,
                "status": self.status, "satisfaction": self.satisfaction, "subjects": self.subjects,
                "village_code": self.village_code}


class _SeriesRecords(beam.DoFn):
    """Event → (series key, its ``SeriesRecord``); the subject lexicon is compiled once per worker."""

    def __init__(self, fresh_batches: frozenset[str] | None):
        self._fresh = fresh_batches

    def setup(self):
        from models.subjects import SubjectNamer

        self._namer = SubjectNamer()

    def process(self, e):
        yield series_key(e.get("township_code"), e["domain"]), SeriesRecord.of(e, self._fresh, self._namer)


class CollectSeriesRecords(beam.CombineFn):
    """Records of a window keyed by event id: a record read twice counts once."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, record):
        previous = acc.get(record.event_id)
        # A record read from both the warehouse and the fresh files stays fresh.
        acc[record.event_id] = record if previous is None or not previous.fresh else previous
        return acc

    def merge_accumulators(self, accs):
        merged = {}
        for acc in accs:
            for record in acc.values():
                self.add_input(merged, record)
        return merged

    def extract_output(self, acc):
        return tuple(acc[k] for k in sorted(acc))


def is_scored(event: dict) -> bool:
    """Windows count classified events of a known township, as the batch scores do."""
    domain = event.get("domain")
    return bool(domain) and domain != schemas.taxonomy()["none"]["code"] and bool(event.get("township_code"))


class _WindowCandidate(beam.DoFn):
    """One window's records → a candidate carrying the window bounds."""

    def __init__(self, spec: SeriesWindow):
        self.spec = spec

    def process(self, kv, win=beam.DoFn.WindowParam):
        key, records = kv
        if not any(r.fresh for r in records):
            return
        township, domain = split_series_key(key)
        yield {
            "rule": self.spec.rule,
            "series": key,
            "township_code": township,
            "domain": domain,
            "window_start": to_local(win.start),
            "window_end": to_local(win.end),
            "records": records,
        }


class CountSeriesWindows(beam.PTransform):
    """Events (scored domains only) → one candidate per series × sliding window pane."""

    def __init__(self, spec: SeriesWindow, policy: WarnPolicy):
        super().__init__(label=f"Count{spec.rule}")
        self.spec = spec
        self.policy = policy

    def expand(self, events):
        fresh = self.policy.fresh_batches
        return (
            events
            | "Key" >> beam.ParDo(_SeriesRecords(fresh))
            | "Timestamp" >> beam.Map(lambda kv: TimestampedValue(kv, to_timestamp(kv[1].reported_at)))
            | "Window" >> series_windowing(self.spec, self.policy.firing)
            | "Collect" >> beam.CombinePerKey(CollectSeriesRecords())
            | "Candidate" >> beam.ParDo(_WindowCandidate(self.spec))
        )


# ---------------------------------------------------------------------------------------------
# Scoring (history side input; the scorer shared with the batch job)


def _incident_summary(many_people_at_least: int, records) -> dict:
    """One incident's records → its date and history tally, as the batch's ``IncidentCombineFn``
    makes it (dated by its first record; signals and feeds of the whole incident)."""
    from pipelines.score import IncidentCombineFn

    combine = IncidentCombineFn(many_people_at_least)
    acc = combine.create_accumulator()
    for record in records:
        acc = combine.add_input(acc, record)
    return combine.extract_output(acc)


def _history_tally(tallies) -> dict:
    """Incident tallies of one series × day → what ``score_window`` reads of a history day: the
    volume's counts, the signal fields ``usual_counts`` needs, the subjects named and the villages (no callers:
    they would only swell the side input)."""
    from models.risk_score import add_villages, signal_history
    from models.subjects import sum_subjects

    tallies = list(tallies)
    history = signal_history(tallies)
    return {"incidents": history["incidents"], "records": sum(t["records"] for t in tallies),
            "signals": dict(history["signals"]), "feeds_2": history["feeds_2"], "feeds_3": history["feeds_3"],
            "subjects": dict(sum_subjects(tallies)), "villages": functools.reduce(add_villages, tallies, {})}


class DailyIncidentCounts(beam.PTransform):
    """Events → (series key, {date: tally}): the history side input. Each day's tally carries what
    the batch job's daily tallies (``pipelines.score.DailyCounts``) carry for the score: distinct
    incidents, their records, incidents per signal and incidents seen by two / three feeds, so the
    stream counts a signal only above the series' usual level, as the batch does.

    GroupByKey rather than CombinePerKey: the streaming direct runner fails to substitute the
    combiner lifting of a globally windowed side input next to a TestStream.
    """

    def expand(self, events):
        many_people_at_least = ImmediateRule.from_schema().many_people_at_least
        return (
            events
            | "Scored" >> beam.Filter(is_scored)
            | "Records" >> beam.ParDo(_SeriesRecords(None))
            | "SeriesIncident" >> beam.MapTuple(lambda key, r: ((key, r.incident), r.as_event()))
            | "GroupIncident" >> beam.GroupByKey()
            | "Incident" >> beam.MapTuple(
                lambda key, records: (key[0], _incident_summary(many_people_at_least, records)))
            | "SeriesDay" >> beam.MapTuple(
                # dates are not deterministically encodable as keys; ISO strings are
                lambda key, incident: ((key, incident["date"]), incident["tally"]))
            | "GroupDay" >> beam.GroupByKey()
            | "DayTally" >> beam.MapTuple(
                lambda key, tallies: (key[0], (dt.date.fromisoformat(key[1]), _history_tally(tallies))))
            | "Group" >> beam.GroupByKey()
            | "AsDict" >> beam.MapTuple(lambda key, days: (key, dict(days)))
        )


def history_start(first_day: dt.date | None, window_start: dt.date, max_days: int) -> dt.date | None:
    """Where a window's history begins: days before the warehouse's first day are unknown, not zero."""
    if first_day is None or window_start <= first_day:
        return None
    return max(first_day, window_start - dt.timedelta(days=max_days))


def window_tally(records, many_people_at_least: int) -> dict:
    """A window's records as the tally ``models.risk_score`` scores, built as the batch job builds it."""
    from models.risk_score import merge_tallies

    by_incident: dict[str, list[dict]] = {}
    for r in records:
        by_incident.setdefault(r.incident, []).append(r.as_event())
    return merge_tallies(_incident_summary(many_people_at_least, incident)["tally"]
                         for incident in by_incident.values())


class RiskScorer:
    """The batch job's scorer (``models.risk_score.score_window``) applied to one window.
    ``village_names``: code → the gazetteer's name, for the reasons."""

    def __init__(self, village_names: dict[str, str] | None = None):
        self.village_names = village_names

    def setup(self):
        from models import risk_score

        self.risk_score = risk_score
        self.config = risk_score.config()
        self.many_people_at_least = ImmediateRule.from_schema().many_people_at_least
        self.min_history_days = int(self.config["expected"]["warn_min_history_days"])

    def assess(self, candidate: dict, history: dict[dt.date, dict], start: dt.date | None) -> dict:
        # Against a warehouse only days old every count looks unexpected: no window warning until
        # there is history to expect from (the immediate rule still applies).
        if start is None or (candidate["window_start"].date() - start).days < self.min_history_days:
            return {"level": "none", "score": 0.0, "expected": 0.0, "reasons": []}
        records = candidate["records"]
        tally = window_tally(records, self.many_people_at_least)
        days = max(1, round((candidate["window_end"] - candidate["window_start"]) / dt.timedelta(days=1)))
        first_day = candidate["window_start"].date()
        repeat = sum(1 for n in tally["callers"].values() if n >= 2)
        return self.risk_score.score_window(
            tally["incidents"], history if start else {}, days, tally,
            window_end=first_day + dt.timedelta(days=days - 1), history_start=start,
            n_repeat_callers=repeat, cfg=self.config, village_names=self.village_names,
        )


class _ScoreCandidate(beam.DoFn):
    def __init__(self, scorer):
        self.scorer = scorer

    def setup(self):
        self.scorer.setup()
        self.max_days = int(schemas.load("scoring.yaml")["expected"]["max_history_days"])

    def process(self, candidate, history, first_day):
        start = history_start(first_day, candidate["window_start"].date(), self.max_days)
        assessment = self.scorer.assess(candidate, history.get(candidate["series"]) or {}, start)
        if level_rank(assessment["level"]) == 0:
            return
        records = candidate.pop("records")
        candidate.update(
            observed=len({r.incident for r in records}),
            expected=float(assessment["expected"]),
            score=float(assessment["score"]),
            level=assessment["level"],
            reasons=list(assessment["reasons"]),
            event_ids=[r.event_id for r in records],
        )
        yield candidate


# ---------------------------------------------------------------------------------------------
# Immediate rules


@dataclasses.dataclass(frozen=True)
class ImmediateRule:
    any_of: tuple[str, ...]
    level: str
    all_of_level: str
    many_people_signal: str
    many_people_at_least: int

    @classmethod
    def from_schema(cls) -> "ImmediateRule":
        config = schemas.signals()
        by_code = {s["code"]: s for s in config["signals"]}
        rule = config["immediate_warning"]
        many = next(s for s in config["signals"] if "people_involved_at_least" in s)
        unknown = [code for code in rule["any_of"] if code not in by_code]
        if unknown:
            raise ValueError(f"immediate_warning names unknown signals: {unknown}")
        return cls(tuple(rule["any_of"]), rule["level"], rule["all_of_level"], many["code"],
                   int(many["people_involved_at_least"]))

    def level_for(self, event: dict) -> str | None:
        signals = set(event.get("signals") or ())
        hit = [code for code in self.any_of if code in signals]
        if not hit:
            return None
        people = event.get("people_involved") or 0
        if people < self.many_people_at_least and self.many_people_signal not in signals:
            return None
        return self.all_of_level if len(hit) == len(self.any_of) else self.level


class ApplyImmediateRule(beam.DoFn):
    def setup(self):
        self.rule = ImmediateRule.from_schema()
        self.names = {s["code"]: s["name_zh"] for s in schemas.signals()["signals"]}

    def process(self, event):
        level = self.rule.level_for(event)
        if level is None:
            return
        at = event["reported_at"].astimezone(TZ)
        signals = [self.names.get(code, code) for code in event.get("signals") or ()]
        people = event.get("people_involved")
        reason = "单条记录出现" + "、".join(signals)
        if people:
            reason += f"，涉及约{people}人"
        yield {
            "rule": IMMEDIATE_RULE,
            "series": series_key(event.get("township_code"), event.get("domain")),
            "township_code": event.get("township_code"),
            "domain": event.get("domain") or schemas.taxonomy()["none"]["code"],
            "window_start": at,
            "window_end": at,
            "observed": 1,
            "expected": None,  # one record's signals, no count compared with an expectation
            "score": None,
            "level": level,
            "reasons": [reason + "，即时预警"],
            "event_ids": [event["event_id"]],
        }


# ---------------------------------------------------------------------------------------------
# Suppression (stateful, keyed by series)


def gap(a: dict, b: dict) -> dt.timedelta:
    """Event time between two warnings' windows; zero when they overlap (they share records)."""
    return max(a["window_start"] - b["window_end"], b["window_start"] - a["window_end"], dt.timedelta(0))


def decide(raised: list[dict], candidate: dict, cooldown: dt.timedelta) -> str | None:
    """Why a candidate is suppressed given the warnings already raised for its series, or None.

    Not again within the cooldown of a raised window (in event time, either side, since late
    records reopen past windows) unless the level rises above every warning raised within it.
    """
    rank = level_rank(candidate["level"])
    for previous in raised:
        if previous["alert_id"] == candidate["alert_id"]:
            return "duplicate"
        if gap(previous, candidate) < cooldown and level_rank(previous["level"]) >= rank:
            return "cooldown"
    return None


def decision_order(candidate: dict):
    return (candidate["window_end"], candidate["window_start"], -level_rank(candidate["level"]),
            candidate["rule"])


class SuppressRepeats(beam.DoFn):
    """(series key, candidates) → warnings, remembering per series what was raised.

    State holds the raised warnings still within reach of a cooldown; an event-time timer clears
    it once the series has been quiet for longer than the cooldown plus the allowed lateness.
    """

    RAISED = userstate.ReadModifyWriteStateSpec("raised", PickleCoder())
    EXPIRY = userstate.TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, policy: WarnPolicy):
        self.policy = policy
        self.raised_counter = Metrics.counter("warn", "raised")
        self.suppressed_counter = Metrics.counter("warn", "suppressed")

    def process(self, kv, prior, raised_state=beam.DoFn.StateParam(RAISED),
                expiry=beam.DoFn.TimerParam(EXPIRY)):
        key, candidates = kv
        cooldown = dt.timedelta(seconds=self.policy.cooldown_s)
        reach = cooldown + dt.timedelta(seconds=self.policy.firing.allowed_lateness_s + 7 * DAY)
        raised = {a["alert_id"]: a for a in prior.get(key, ())}
        raised.update({a["alert_id"]: a for a in raised_state.read() or ()})
        history = list(raised.values())
        now = dt.datetime.now(TZ)
        for candidate in sorted(candidates, key=decision_order):
            candidate = dict(candidate)
            candidate["alert_id"] = alert_id(candidate["rule"], key, candidate["window_start"],
                                             candidate["window_end"], candidate["level"])
            why = decide(history, candidate, cooldown)
            if why:
                self.suppressed_counter.inc()
                continue
            rises = [p for p in history if gap(p, candidate) < cooldown]
            if rises:
                was = max(rises, key=lambda p: level_rank(p["level"]))["level"]
                candidate["reasons"] = candidate["reasons"] + [
                    f"级别由{LEVEL_NAMES_ZH[was]}升至{LEVEL_NAMES_ZH[candidate['level']]}"]
            history.append({k: candidate[k] for k in ("alert_id", "window_start", "window_end", "level")})
            self.raised_counter.inc()
            candidate.pop("series")
            candidate["raised_at"] = now
            yield candidate
        if history:
            latest = max(p["window_end"] for p in history)
            raised_state.write([p for p in history if latest - p["window_end"] < reach])
            expiry.set(to_timestamp(latest + reach))

    @userstate.on_timer(EXPIRY)
    def expire(self, raised_state=beam.DoFn.StateParam(RAISED)):
        raised_state.clear()


def prior_by_series(alerts):
    """Alerts already raised (from the warehouse) → (series key, [their id, window and level])."""
    return alerts | "PriorBySeries" >> beam.Map(
        lambda a: (series_key(a.get("township_code"), a.get("domain")),
                   {k: a[k] for k in ("alert_id", "window_start", "window_end", "level")})
    ) | "GroupPrior" >> beam.GroupByKey()


class WarnOnSeries(beam.PTransform):
    """Events → warnings: sliding-window scores and immediate rules, repeats suppressed.

    ``history``: bounded Events from the warehouse for the expected counts; ``prior_alerts``:
    warnings already raised (their ids and levels seed the suppression state).
    """

    def __init__(self, history, prior_alerts, policy: WarnPolicy, scorer, windows=SERIES_WINDOWS):
        super().__init__()
        self.history = history
        self.prior_alerts = prior_alerts
        self.policy = policy
        self.scorer = scorer
        self.windows = windows

    def expand(self, events):
        daily = self.history | "DailyCounts" >> DailyIncidentCounts()
        # where the warehouse's coverage begins, not its first record: a month's files carry a few late
        # records of the months before, which are no history to expect from
        first_day = (
            daily
            | "RecordsByDay" >> beam.FlatMap(lambda kv: [(d.isoformat(), t["records"]) for d, t in kv[1].items()])
            | "DataStart" >> DataStart()
        )
        history_side = beam.pvalue.AsDict(daily)
        first_day_side = beam.pvalue.AsSingleton(first_day, default_value=None)
        scored = events | "Scored" >> beam.Filter(is_scored)
        candidates = [
            scored
            | spec.rule >> CountSeriesWindows(spec, self.policy)
            | f"Score{spec.rule}" >> beam.ParDo(_ScoreCandidate(self.scorer), history_side, first_day_side)
            for spec in self.windows
        ]
        candidates.append(events | "Immediate" >> beam.ParDo(ApplyImmediateRule()))
        prior = beam.pvalue.AsDict(prior_by_series(self.prior_alerts))
        return (
            [c | f"Decide{i}" >> decision_windowing(self.policy.firing) for i, c in enumerate(candidates)]
            | "AllCandidates" >> beam.Flatten()
            | "BySeries" >> beam.Map(lambda c: (c["series"], c)).with_output_types(KV[str, Any])
            | "Together" >> beam.GroupByKey()
            | "Suppress" >> beam.ParDo(SuppressRepeats(self.policy), prior)
        )
