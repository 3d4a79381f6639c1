"""The quality check of one month: contract and batch suites per feed, file accounting, data gaps."""
from __future__ import annotations

import datetime as dt
import time

import pandas as pd

import schemas
from models import gaps as gaps_model
from quality import accounting
from quality.batch import TZ, split_batches
from quality.history import DailyProfile
from quality.policy import Policy
from quality.report import QualityReport
from quality.validation import QualityRun, batch_findings, contract_findings


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=TZ)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def gap_findings(events: pd.DataFrame, start: dt.date, end: dt.date, policy: Policy) -> tuple[list, list[dict]]:
    """Gaps found by models.gaps (the scores use the same), as findings. A township's gap on a day
    the whole feed was silent is left out of the findings: the feed-wide gap already says it."""
    daily = events.groupby([events["source"], events["township_code"].astype(object), events["reported_at"].dt.date], dropna=False).size()
    rows = [(feed, None if pd.isna(town) else town, day, int(n)) for (feed, town, day), n in daily.items()]
    gaps = gaps_model.find_gaps(rows, start, end)
    feed_days = {(g.feed, g.date) for g in gaps if g.township_code is None}
    out = []
    for g in gaps:
        if g.township_code is not None and (g.feed, g.date) in feed_days:
            continue
        out.append({"feed": g.feed, "batch": None, "period_start": g.date.isoformat(), "period_end": None, "check": "data_gap",
                    "severity": policy.severity_of("data_gap"), "field": "township_code" if g.township_code else None,
                    "expectation": "models.gaps.find_gaps", "count": g.observed, "rows": g.observed, "observed": g.observed,
                    "expected": g.expected, "details": {"township_code": g.township_code, "date": g.date.isoformat()}, "examples": []})
    return gaps, out


def check_month(events: pd.DataFrame, month: str, policy: Policy, quarantine: list[dict] | None = None,
                manifest: dict | None = None, run: QualityRun | None = None) -> QualityReport:
    """``events``: the month's events plus earlier ones as history (the warehouse's Event frame)."""
    began = time.perf_counter()
    run = run or QualityRun(policy, month)
    quarantine, manifest = quarantine or [], manifest or {}
    start, end = month_bounds(month)
    in_month = events[(events["reported_at"] >= start) & (events["reported_at"] < end)]
    unresolved = policy.threshold("region_resolution").get("unresolved_value", "unresolved")
    report = QualityReport(month, [], [])
    for feed in schemas.FEEDS:
        feed_events = in_month[in_month["source"] == feed]
        report.rows[feed] = len(feed_events)
        period = (start.isoformat(), end.isoformat())
        if len(feed_events):
            report.findings += contract_findings(run, feed, feed_events, f"{feed}.{month}", period)
            profile = DailyProfile.from_events(feed, events, unresolved)
            found, table = batch_findings(run, feed, split_batches(feed_events, policy), profile, f"{feed}.{month}")
            report.findings += found
            report.batch_tables[feed] = table
        table = accounting.accounting_table(feed, feed_events, quarantine, manifest)
        report.accounting[feed] = table
        report.rejected[feed] = rejected_files(feed, table, set(feed_events["feed_file"].dropna()), quarantine)
        if len(table):
            result = run.validate(f"{feed}.accounting", f"{feed}.{month}", table, accounting.accounting_expectations(policy),
                                  accounting.FILE_COLUMN, complete=True)
            report.findings += _accounting_findings(feed, result, table, quarantine, policy)
    last_day = in_month["reported_at"].max().date() if len(in_month) else (end - dt.timedelta(days=1)).date()
    report.gaps, found = gap_findings(events[events["reported_at"] < end], start.date(), last_day, policy)
    if policy.enabled("data_gap"):
        report.findings += found
    report.seconds = time.perf_counter() - began
    return report


def rejected_files(feed: str, table: pd.DataFrame, month_files: set, quarantine: list[dict]) -> list[dict]:
    """The month's files of a feed that had rows quarantined, with counts by reason: every broken
    row reaches the department, also below the share that makes a finding."""
    rows = table[table[accounting.FILE_COLUMN].isin(month_files) & (table["quarantined"] > 0)]
    return [{**r, "reasons": accounting.quarantine_reasons(feed, r[accounting.FILE_COLUMN], quarantine, 0)["reasons"]}
            for r in rows.to_dict("records")]


def _accounting_findings(feed, result, table, quarantine, policy) -> list[dict]:
    rows = table.set_index(accounting.FILE_COLUMN)
    out = []
    for r in result.results:
        if r.success:
            continue
        check = r.expectation_config.meta["check"]
        for entry in r.result.get("unexpected_index_list") or []:
            name = entry[accounting.FILE_COLUMN]
            row = rows.loc[name]
            count = int(row["quarantined"] if check == "quarantine_share" else row["superseded"])
            details = accounting.quarantine_reasons(feed, name, quarantine, policy.examples_per_finding) if check == "quarantine_share" else {}
            out.append({"feed": feed, "batch": name, "period_start": None, "period_end": None, "check": check,
                        "severity": policy.severity_of(check), "field": None, "expectation": r.expectation_config.type,
                        "count": count, "rows": int(row["rows_read"]), "observed": round(float(row[check]), 4),
                        "expected": None, "details": {k: v for k, v in details.items() if k != "examples"},
                        "examples": details.get("examples", [])})
    return out


def write_outputs(report: QualityReport, run: QualityRun, out_dir, township_names: dict | None = None) -> dict:
    """``<out>/quality/YYYY-MM/``: data docs, scorecard (HTML fragment + XLSX), findings and gaps."""
    import json
    from pathlib import Path

    from quality import docs, scorecard

    target = Path(out_dir) / "quality" / report.month
    target.mkdir(parents=True, exist_ok=True)
    paths = {
        "data_docs": docs.build(run, target / "data_docs"),
        "scorecard_html": target / "scorecard.html",
        "scorecard_xlsx": target / "scorecard.xlsx",
        "findings": target / "findings.json",
    }
    paths["scorecard_html"].write_text(scorecard.html_fragment(report.findings, report.rows, township_names, report.rejected),
                                       encoding="utf-8")
    scorecard.write_xlsx(paths["scorecard_xlsx"], report.findings, township_names)
    summary = {
        "month": report.month, "rows": report.rows, "seconds": round(report.seconds, 2),
        "critical": len(report.critical), "findings": report.findings,
        "gaps": [{"feed": g.feed, "township_code": g.township_code, "date": g.date.isoformat(), "observed": g.observed,
                  "expected": g.expected} for g in report.gaps],
        "banner": scorecard.gap_banner(report.gaps),
    }
    paths["findings"].write_text(json.dumps(summary, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return paths
