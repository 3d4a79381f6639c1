"""The monthly report directory ``reports/YYYY-MM/``: report.html, topics.xlsx, topics.json.

Written into a temporary sibling directory and swapped in by rename, so a re-run replaces the
month's outputs whole and a crash never leaves a half-written report behind."""
from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

import schemas
from models.topics import RegionNames, TopicList, shift_month
from reports import charts, summary
from reports.labels import (LEVEL_COLOURS, LEVEL_ORDER, NO_BASELINE, STATUS_NAMES, SUBJECT_KINDS, TREND_NAMES,
                            history_counts, level_name)
from reports.topics_json import write_topics_json
from reports.workbook import format_dates, write_workbook

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _feed_names() -> dict[str, str]:
    names = {}
    for feed in schemas.FEEDS:
        names[feed] = schemas.feed_contract(feed).get("name_zh", feed)
    return names


def _month_title(month: str) -> str:
    return f"{month[:4]}年{int(month[5:7])}月"


def render_html(month: str, topic_list: TopicList, scores: Any, alerts: Any, quality_summary: Sequence[Mapping],
                domain_trend: Mapping | None, township_domain_levels: Mapping | None, headline: Mapping,
                region_names: Mapping[str, str], county_name: str, generated_at: datetime,
                scorecard_html: str | None = None) -> str:
    domain_names = schemas.domain_names_zh()
    domains = schemas.domain_codes(include_none=False)
    feed_names = _feed_names()
    signal_names = {s["code"]: s["name_zh"] for s in schemas.signals()["signals"]}
    trend = domain_trend if domain_trend is not None else summary.domain_trend(scores, month)
    levels = township_domain_levels if township_domain_levels is not None else summary.township_domain_levels(scores, month)
    trend_panels = []
    for code in domains:
        series = list(trend.get(code) or [])
        months = [p["month"] for p in series]
        observed = [float(p.get("observed") or 0) for p in series]
        expected = [None if p.get("expected") is None else float(p["expected"]) for p in series]
        trend_panels.append({
            "name": domain_names.get(code, code),
            "total": observed[-1] if observed else 0,
            "svg": charts.monthly_bars(months, observed, expected, label=f"{domain_names.get(code, code)}近12个月事件数"),
        })
    table_rows = []
    for township in sorted(levels, key=lambda c: (-max([v["score"] for v in levels[c].values()] or [0]), c)):
        cells = []
        for code in domains:
            cell = levels[township].get(code)
            level = (cell or {}).get("level") or "none"
            cells.append({"level": level, "score": None if cell is None else cell["score"],
                          "observed": None if cell is None else cell.get("observed"),
                          "title": f"{domain_names.get(code, code)}：{level_name(level)}"})
        table_rows.append({"code": township, "name": region_names.get(township, township), "cells": cells})
    cards, watch = [], []
    first_card_of: dict[tuple[str, str], int] = {}  # a township × domain's score reasons go on its first card
    for t in topic_list.topics:
        if t.list_name == "watch":
            watch.append({
                "t": t,
                "status_name": STATUS_NAMES.get(t.status, t.status),
                "history": history_counts(t.monthly_events),
                "level_name": level_name(t.level),
            })
            continue
        months = [m["month"] for m in t.monthly_events]
        group = (t.township_code, t.domain)
        seen_at = first_card_of.setdefault(group, t.rank)
        cards.append({
            "t": t,
            "region_reasons": t.region_reasons if seen_at == t.rank else [],
            "region_seen_at": None if seen_at == t.rank else seen_at,
            "status_name": STATUS_NAMES.get(t.status, t.status),
            "trend_name": TREND_NAMES.get(t.trend, t.trend),
            "level_name": level_name(t.level),
            "kind_name": SUBJECT_KINDS.get(t.subject_kind or "", ""),
            "history": history_counts(t.monthly_events),
            "sources": [(feed_names.get(k, k), v) for k, v in t.sources.items()],
            "signals": [(signal_names.get(k, k), v) for k, v in t.signals.items()],
            "svg": charts.monthly_bars(months, [m["events"] for m in t.monthly_events], width=150, height=60,
                                       label=f"{t.title}近{len(months)}个月事件数"),
        })
    alerts_rows = [
        {
            "level": a.get("level") or "none",
            "level_name": level_name(a.get("level")),
            "raised_at": str(a["raised_at"]).replace("T", " ")[:16],
            "township": region_names.get(a.get("township_code"), a.get("township_code") or "未定位"),
            "domain": domain_names.get(a.get("domain"), a.get("domain") or ""),
            "observed": a.get("observed"),
            "expected": NO_BASELINE if a.get("expected") is None else f"{float(a['expected']):.1f}",
            "reasons": list(a.get("reasons") or []),
            "events": len(a.get("event_ids") or []),
        }
        for a in summary.alerts_of_month(alerts, month)
    ]
    quality = [
        {
            "feed": feed_names.get(q.get("feed"), q.get("feed") or "全部数据源"),
            "township": region_names.get(q.get("township"), q.get("township") or "全县"),
            "dates": format_dates(q.get("dates")),
            "message": q.get("message") or "",
        }
        for q in quality_summary or []
    ]
    closed = [
        {**c, "status_name": STATUS_NAMES.get(c["status"], c["status"]),
         "region_name": (c.get("region") or {}).get("name", "")}
        for c in topic_list.closed
    ]
    return _ENV.get_template("report.html.j2").render(
        month=month,
        month_title=_month_title(month),
        previous_month_title=_month_title(shift_month(month, -1)),
        county_name=county_name,
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M"),
        headline=headline,
        cards=cards,
        watch=watch,
        closed=closed,
        trend_panels=trend_panels,
        domain_headers=[domain_names.get(c, c) for c in domains],
        table_rows=table_rows,
        alerts=alerts_rows,
        quality=quality,
        # quality.scorecard builds the fragment and escapes every value it puts in
        scorecard=Markup(scorecard_html) if scorecard_html else None,
        level_colours=LEVEL_COLOURS,
        level_legend=[(lv, level_name(lv)) for lv in LEVEL_ORDER],
    )


def write_report(out_dir: str | Path, month: str, topics: TopicList, scores: Any = None, alerts: Any = None,
                 quality_summary: Sequence[Mapping] | None = None, domain_trend: Mapping | None = None,
                 township_domain_levels: Mapping | None = None, headline: Mapping | None = None,
                 gazetteer: Any = None, events: Any = None, county_name: str | None = None,
                 generated_at: datetime | None = None, scorecard_html: str | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/reports/<month>/`` and return the paths of its files.

    ``topics``: a ``TopicList`` (``models.topics.build_topics`` or ``pipelines.topics.BuildTopics``);
    ``scores``/``alerts``: score rows and alerts (lists of dicts or DataFrames); ``quality_summary``:
    [{feed, township, dates, message}]; ``domain_trend``, ``township_domain_levels`` and ``headline``
    are derived from scores/alerts/events (see ``reports.summary``) when not given; ``gazetteer``
    (rows or CSV path) names the regions."""
    generated_at = generated_at or datetime.now(ZoneInfo(schemas.TIMEZONE))
    regions = RegionNames.load(gazetteer)
    region_names = dict(regions.names)
    for t in topics.topics:
        region_names.setdefault(t.township_code, t.township_name)
    if county_name is None:
        counties = [r["name"] for r in regions.rows.values() if r.get("level") == "county"]
        county_name = counties[0] if len(counties) == 1 else "本县"
    if headline is None:
        headline = summary.headline_figures(events, alerts, scores, month)
    html = render_html(month, topics, scores, alerts, quality_summary or [], domain_trend, township_domain_levels,
                       headline, region_names, county_name, generated_at, scorecard_html)
    reports_dir = Path(out_dir) / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    final = reports_dir / month
    staging = Path(tempfile.mkdtemp(prefix=f".{month}.tmp-", dir=reports_dir))
    try:
        (staging / "report.html").write_text(html, encoding="utf-8")
        write_workbook(staging / "topics.xlsx", topics, scores, quality_summary or [], region_names, _feed_names(),
                       {s["code"]: s["name_zh"] for s in schemas.signals()["signals"]})
        write_topics_json(staging / "topics.json", topics, generated_at)
        os.chmod(staging, 0o755)
        _swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: final / name for name in ("report.html", "topics.xlsx", "topics.json")}


def _swap_in(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging``: two renames, so readers see the old or the new report whole."""
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, retired / final.name)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)
