"""The month as a whole, read back from the warehouse: data quality, topics and the report."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd

import schemas
from models.topics import RECORD_COLUMNS, build_topics, shift_month
from pipelines import warehouse
from pipelines.alert_sinks import AlertStore
from pipelines.gazetteer import read_gazetteer_rows
from pipelines.month_checks import ChecksProcess, check_month, worth_a_process
from pipelines.month_events import MonthEvents
from pipelines.normalise import TZ
from quality.scorecard import describe
from reports.render import write_report
from reports.summary import domain_trend
from reports.topics_json import read_topics_json

TOPIC_HISTORY_MONTHS = 3
TREND_MONTHS = 12


def quality_summary(findings: list[dict], township_names: dict) -> list[dict]:
    """Quality findings as the report's banner and 数据质量 sheet show them: feed, place, day, words."""
    summary = []
    for f in findings:
        details = f.get("details") or {}
        day = details.get("date") or (f.get("period_start") or "")[:10] or None
        summary.append({"feed": f["feed"], "township": details.get("township_code"), "dates": [day] if day else [],
                        "severity": f["severity"], "message": describe(f, township_names)})
    return summary


_WARNING_LEVELS = {"red": 3, "orange": 2, "yellow": 1}


def daily_warnings(scores: pd.DataFrame) -> list[dict]:
    """Township series' runs of consecutive yellow-or-higher days as warnings, in the alert shape:
    what the day scores would have raised, one warning per run at its highest level."""
    days = scores[(scores["period"] == "day") & scores["village_code"].isna() & scores["level"].isin(_WARNING_LEVELS)]
    warnings = []
    for (township, domain), series in days.sort_values("period_start").groupby(["township_code", "domain"]):
        run: list = []
        for row in [*series.itertuples(index=False), None]:
            if run and (row is None or row.period_start - run[-1].period_start > dt.timedelta(days=1)):
                peak = max(run, key=lambda r: (_WARNING_LEVELS[r.level], r.score))
                start = dt.datetime.combine(run[0].period_start, dt.time(), TZ)
                end = dt.datetime.combine(run[-1].period_start + dt.timedelta(days=1), dt.time(), TZ)
                key = f"daily_score|{township}|{domain}|{start.isoformat()}"
                warnings.append({
                    "alert_id": hashlib.sha256(key.encode()).hexdigest()[:16], "rule": "daily_score",
                    "raised_at": start + dt.timedelta(days=1), "level": peak.level, "township_code": township,
                    "domain": domain, "window_start": start, "window_end": end,
                    "observed": int(sum(r.observed for r in run)), "expected": float(sum(r.expected for r in run)),
                    "score": float(peak.score), "reasons": list(peak.reasons), "event_ids": [],
                })
                run = []
            if row is not None:
                run.append(row)
    return warnings


def report_month(out: str, month: str, gazetteer: str, checks_process: bool | None = None
                 ) -> tuple[dict[str, Path], dict]:
    """Check the month's feeds, build ``<out>/reports/<month>/`` from the warehouse; return the
    report's paths and a run summary (with the quality findings marked critical by the policy).
    Each month's Events are read once per process (``MonthEvents``). The checks and the trend's
    counts run in a second process while this one builds the topics (``pipelines.month_checks``)
    when ``checks_process`` says so, by default when the month is large and a core is idle."""
    trend_months = [shift_month(month, -k) for k in range(TREND_MONTHS - 1, -1, -1)]
    if checks_process is None:
        checks_process = worth_a_process(out, month)
    with (ChecksProcess(out, month, gazetteer, trend_months) if checks_process else contextlib.nullcontext()) as child:
        gazetteer_rows = read_gazetteer_rows(gazetteer)
        names = {r["code"]: r["name"] for r in gazetteer_rows}
        store = MonthEvents(out)
        checks = None if child else check_month(out, month, gazetteer, trend_months, store)
        # DataFrames: topics convert only the events a topic can hold, the headline figures count columns
        events = store.latest([month], columns=RECORD_COLUMNS)
        history = store.latest([shift_month(month, -k) for k in range(1, TOPIC_HISTORY_MONTHS + 1)],
                               columns=RECORD_COLUMNS)
        scores = warehouse.read_scores(out, [month])
        # topics, report and workbook read the month's rows only, the warnings the day rows
        month_scores = scores[scores["period"] == "month"] if "period" in scores.columns else scores
        previous = read_topics_json(Path(out) / "reports" / shift_month(month, -1) / "topics.json")
        topics = build_topics(events, month_scores, history, previous, schemas.taxonomy(), gazetteer_rows, month)
        checks = checks or child.result(store)
    quality, quality_paths = checks.quality, checks.quality_paths
    paths = write_report(
        out, month, topics, scores=month_scores, alerts=[*daily_warnings(scores), *AlertStore(out).raised()],
        quality_summary=quality_summary(quality.findings, names),
        domain_trend=domain_trend(month_scores, month, TREND_MONTHS, incidents=checks.incidents),
        gazetteer=gazetteer_rows, events=events,
        scorecard_html=Path(quality_paths["scorecard_html"]).read_text(encoding="utf-8"),
    )
    paths.update({f"quality_{k}": Path(v) for k, v in quality_paths.items()})
    return paths, {
        "events": len(events), "topics": len(topics.topics), "closed_topics": len(topics.closed),
        "quality_seconds": round(quality.seconds, 2), "checks_process": checks_process,
        "quality_findings": len(quality.findings),
        "quality_critical": [describe(f, names) for f in quality.critical],
    }
