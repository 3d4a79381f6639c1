"""The monthly report: files, atomic re-runs, workbook, topics.json, and the page in real Chromium."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

import schemas
from models import topics as model
from pipelines.monthly import daily_warnings
from reports import render, summary
from reports.render import write_report
from reports.topics_json import read_topics_json
from tests.chromium import Chromium
from tests.topic_fixtures import (CHENGGUAN, GAZETTEER, MONTH, QINGSHI, TZ, history_events, month_events,
                                  month_scores, score_row)

import datetime as dt

QUALITY = [{"feed": "grid", "township": QINGSHI, "dates": ["2025-06-03", "2025-06-04"],
            "message": "网格事件文件缺失，两天无数据"},
           {"feed": "police_110", "township": None, "dates": "2025-06-18",
            "message": "110接处警文件编码错误，整批隔离"}]
ALERTS = [
    {"alert_id": "a1", "raised_at": dt.datetime(2025, 6, 12, 9, 30, tzinfo=TZ), "level": "orange",
     "township_code": CHENGGUAN, "domain": "housing_construction", "window_start": None, "window_end": None,
     "observed": 9, "expected": 2.1, "reasons": ["近7日9件，为预期的4.3倍"], "event_ids": ["x", "y"]},
    {"alert_id": "a2", "raised_at": dt.datetime(2025, 6, 20, 16, 0, tzinfo=TZ), "level": "red",
     "township_code": QINGSHI, "domain": "labor_wage", "window_start": None, "window_end": None,
     "observed": 5, "expected": 0.8, "reasons": ["扬言极端行为"], "event_ids": ["z"]},
    {"alert_id": "a0", "raised_at": dt.datetime(2025, 5, 30, 8, 0, tzinfo=TZ), "level": "red",
     "township_code": QINGSHI, "domain": "labor_wage", "window_start": None, "window_end": None,
     "observed": 3, "expected": 0.8, "reasons": [], "event_ids": []},
]


def year_of_scores() -> list[dict]:
    rows = month_scores()
    for k in range(1, 12):
        month = model.shift_month(MONTH, -k)
        rows.append(score_row(CHENGGUAN, "housing_construction", month, 4 + k % 3, 5, 20, "none"))
        rows.append(score_row(QINGSHI, "labor_wage", month, 2 + k % 2, 3, 10, "none"))
    return rows


@pytest.fixture(scope="module")
def topic_list():
    return model.build_topics(month_events(), month_scores(), history_events(), gazetteer=str(GAZETTEER),
                              month=MONTH)


@pytest.fixture()
def report(tmp_path, topic_list):
    paths = write_report(tmp_path, MONTH, topic_list, year_of_scores(), ALERTS, QUALITY, gazetteer=str(GAZETTEER),
                         events=month_events())
    return tmp_path, paths


def test_report_files_and_page_content(report, topic_list):
    out, paths = report
    assert {p.name for p in (out / "reports" / MONTH).iterdir()} == {"report.html", "topics.xlsx", "topics.json"}
    html = paths["report.html"].read_text(encoding="utf-8")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), "the page must not reference the web"
    assert "<script" not in html and "<link" not in html
    assert html.count('class="card topic-card"') == len(topic_list.topics)
    assert "城关镇·幸福里小区逾期交房集中投诉" in html and "住建局" in html
    # data-quality banner names the feeds with gaps; the headline counts this month's alerts only
    assert "综治网格事件 · 青石镇 · 2025-06-03、2025-06-04：网格事件文件缺失" in html
    assert "110接处警记录 · 全县 · 2025-06-18" in html
    headline = summary.headline_figures(month_events(), ALERTS, month_scores(), MONTH)
    assert (headline["alerts"], headline["red"], headline["orange"]) == (2, 1, 1)
    assert headline["completeness"] == 0.75
    assert html.count("<svg") == 10 + len(topic_list.topics)  # ten domain panels, one chart per card
    # the township × domain's score reasons once, on its first card; its other cards point there
    assert html.count("城关镇住房建设（橙色预警）：本月20件，为预期的3.3倍") == 1
    assert topic_list.topics[2].township_code == CHENGGUAN and "城关镇住房建设的区域情况见第1项。" in html
    assert 'id="watch-list"' not in html  # every topic of this month is one to study


def test_watch_list_is_a_compact_table_after_the_cards(tmp_path):
    topics = model.build_topics(month_events(), month_scores(), history_events(), gazetteer=str(GAZETTEER),
                                month=MONTH, params=model.TopicParams(max_study=1))
    paths = write_report(tmp_path, MONTH, topics, month_scores(), [], [], gazetteer=str(GAZETTEER))
    html = paths["report.html"].read_text(encoding="utf-8")
    assert html.count('class="card topic-card"') == 1
    assert "观察清单（2项）" in html and html.count('class="watch-item"') == 2
    assert html.index("城关镇·幸福里小区逾期交房集中投诉") < html.index('id="watch-list"') < html.index(
        "青石镇·宏达建筑工程有限公司拖欠工资集中投诉")
    sheet = openpyxl.load_workbook(paths["topics.xlsx"])["研判选题清单"]
    assert [sheet.cell(r, 20).value for r in (2, 3, 4)] == ["研判选题", "观察清单", "观察清单"]
    doc = json.loads(paths["topics.json"].read_text(encoding="utf-8"))
    assert [t["list"] for t in doc["topics"]] == ["study", "watch", "watch"]


def test_domain_trend_and_level_table():
    trend = summary.domain_trend(year_of_scores(), MONTH)
    housing = trend["housing_construction"]
    assert [p["month"] for p in housing][0] == "2024-07" and housing[-1] == {
        "month": MONTH, "observed": 20.0, "expected": 6.0}
    assert len(trend) == 10 and all(len(v) == 12 for v in trend.values())
    levels = summary.township_domain_levels(year_of_scores(), MONTH)
    assert levels[CHENGGUAN]["housing_construction"]["level"] == "orange"
    assert levels[QINGSHI]["labor_wage"] == {"level": "yellow", "score": 64.0, "observed": 8.0}


def test_months_no_job_scored_have_no_expected_count():
    june = [r for r in year_of_scores() if model.score_month(r) == MONTH]
    housing = summary.domain_trend(june, MONTH)["housing_construction"]
    assert housing[-1]["expected"] == 6.0
    assert [p["expected"] for p in housing[:-1]] == [None] * 11  # not 0: nothing was expected of them


def test_trend_and_headline_count_incidents_alike_from_a_warehouse_frame_and_from_events():
    import numpy as np
    import pandas as pd

    events = month_events() + history_events()
    # linked reports of one incident, events without an incident id (their own), no domain, and a
    # report at 01:00 county time on 1 July (30 June in UTC)
    extra = [{**events[0], "event_id": f"police_110:x{i}", "incident_id": incident, "domain": domain,
              "reported_at": when} for i, (incident, domain, when) in enumerate([
                  ("inc-1", "housing_construction", dt.datetime(2025, 6, 2, 8, tzinfo=TZ)),
                  ("inc-1", "housing_construction", dt.datetime(2025, 6, 3, 8, tzinfo=TZ)),
                  (None, "housing_construction", dt.datetime(2025, 6, 4, 8, tzinfo=TZ)),
                  ("", "housing_construction", dt.datetime(2025, 6, 5, 8, tzinfo=TZ)),
                  (None, "none", dt.datetime(2025, 6, 6, 8, tzinfo=TZ)),
                  ("inc-2", "public_order", dt.datetime(2025, 6, 30, 17, tzinfo=dt.timezone.utc))])]
    events += extra
    frame = pd.DataFrame(events)
    frame["reported_at"] = pd.to_datetime([e["reported_at"] for e in events], utc=True)
    frame["incident_id"] = frame["incident_id"].where(frame["incident_id"].notna(), np.nan)

    from_frame = summary.domain_trend(year_of_scores(), "2025-07", events=frame)
    assert from_frame == summary.domain_trend(year_of_scores(), "2025-07", events=events)
    june = {code: next(p["observed"] for p in series if p["month"] == MONTH) for code, series in from_frame.items()}
    housing = [e for e in events if e["domain"] == "housing_construction" and e["reported_at"].month == 6]
    # the two linked reports are one incident; the two without an id are one each
    assert june["housing_construction"] == len(housing) - 1
    assert from_frame["public_order"][-1]["observed"] == 1.0  # July's, in county time
    headline = summary.headline_figures(frame, ALERTS, year_of_scores(), MONTH)
    assert headline == summary.headline_figures(events, ALERTS, year_of_scores(), MONTH)
    june_events = [e for e in events if e["reported_at"].astimezone(TZ).month == 6 and e["reported_at"].year == 2025]
    assert (headline["events"], headline["risk_events"]) == (len(june_events), len(june_events) - 1)


def test_topics_json_round_trip_sets_next_months_status(report, topic_list):
    _, paths = report
    doc = json.loads(paths["topics.json"].read_text(encoding="utf-8"))
    assert doc["month"] == MONTH and doc["format_version"] == 2
    first = doc["topics"][0]
    for key in ("rank", "title", "domain", "domain_name", "region", "level", "score", "events", "monthly_events",
                "trend", "status", "reasons", "sources", "repeat_callers", "excerpts", "evidence_event_ids",
                "lead_department", "topic_id"):
        assert key in first, key
    assert first["title"] == "城关镇·幸福里小区逾期交房集中投诉"
    # next month: the compound is still complained about, the company is gone
    july = [{**e, "event_id": e["event_id"] + "-jul", "reported_at": e["reported_at"] + dt.timedelta(days=30)}
            for e in month_events() if "xingfuli" in e["event_id"]][:6]
    scores = [score_row(CHENGGUAN, "housing_construction", "2025-07", 6, 5, 45, "blue")]
    nxt = model.build_topics(july, scores, month_events(), read_topics_json(paths["topics.json"]),
                             gazetteer=str(GAZETTEER), month="2025-07")
    assert nxt.topics[0].topic_id == first["topic_id"] and nxt.topics[0].status == "easing"
    # 6 events after 12 is no surprise, but last month's topic is still seen: it stays on the watch list
    assert nxt.topics[0].list_name == "watch" and nxt.topics[0].reasons[-1] == "上月列入清单，本月仍有6件，继续观察"
    assert {c["title"]: c["status"] for c in nxt.closed}["青石镇·宏达建筑工程有限公司拖欠工资集中投诉"] == "resolved"
    # a document of format 1 (0 for a month without data) is last month's list all the same
    old = {**doc, "format_version": 1, "topics": [
        {**t, "monthly_events": [{**m, "events": m["events"] or 0} for m in t["monthly_events"]]} for t in doc["topics"]]}
    again = model.build_topics(july, scores, month_events(), old, gazetteer=str(GAZETTEER), month="2025-07")
    assert [(t.topic_id, t.status, t.previous) for t in again.topics] == [(t.topic_id, t.status, t.previous)
                                                                         for t in nxt.topics]
    assert again.closed == nxt.closed


def test_workbook_sheets(report, topic_list):
    _, paths = report
    book = openpyxl.load_workbook(paths["topics.xlsx"])
    assert book.sheetnames == ["研判选题清单", "选题证据", "风险评分", "数据质量"]
    topics = book["研判选题清单"]
    assert topics.freeze_panes == "A2"
    assert [c.value for c in topics[1]][:4] == ["排名", "选题标题", "状态", "风险领域"]
    assert topics["B2"].value == "城关镇·幸福里小区逾期交房集中投诉" and topics["Q2"].value == "住建局"
    assert topics.column_dimensions["B"].width > 40
    evidence = book["选题证据"]
    assert evidence.max_row - 1 == sum(t.events for t in topic_list.topics)
    scores = book["风险评分"]
    assert scores["A2"].value == MONTH and scores["I2"].value == "橙色"
    quality = book["数据质量"]
    assert [c.value for c in quality[2]] == ["综治网格事件", "青石镇", "2025-06-03、2025-06-04", "网格事件文件缺失，两天无数据"]
    assert quality.max_row == 3


def test_quality_sheet_without_issues_says_so(tmp_path, topic_list):
    paths = write_report(tmp_path, MONTH, topic_list, month_scores(), [], [], gazetteer=str(GAZETTEER))
    sheet = openpyxl.load_workbook(paths["topics.xlsx"])["数据质量"]
    assert sheet["D2"].value == "本月各数据源未报告缺口或接入失败。"
    assert "数据质量：本月各数据源未报告缺口或接入失败" in paths["report.html"].read_text(encoding="utf-8")


def test_rerun_replaces_the_month_whole(report, topic_list, monkeypatch):
    out, paths = report
    stale = paths["report.html"].parent / "stale.txt"
    stale.write_text("from an older run")
    fewer = model.TopicList(MONTH, topic_list.topics[:1], [])
    write_report(out, MONTH, fewer, month_scores(), ALERTS, [], gazetteer=str(GAZETTEER))
    assert not stale.exists()
    assert json.loads(paths["topics.json"].read_text(encoding="utf-8"))["topics"][0]["rank"] == 1
    assert len(json.loads(paths["topics.json"].read_text(encoding="utf-8"))["topics"]) == 1
    # a run that fails while writing leaves the previous report untouched and no debris
    before = paths["report.html"].read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(render, "write_topics_json", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(out, MONTH, topic_list, month_scores(), ALERTS, [], gazetteer=str(GAZETTEER))
    assert paths["report.html"].read_bytes() == before
    assert sorted(p.name for p in (out / "reports").iterdir()) == [MONTH]


def test_page_in_headless_chromium(topic_list, tmp_path):
    # two cards and a watch list
    listed = model.TopicList(MONTH, [*topic_list.topics[:-1], dataclasses.replace(topic_list.topics[-1],
                                                                                   list_name="watch")], [])
    paths = write_report(tmp_path / "out", MONTH, listed, year_of_scores(), ALERTS, QUALITY,
                         gazetteer=str(GAZETTEER), events=month_events())
    url = paths["report.html"].resolve().as_uri()
    with Chromium(width=1200, height=900) as browser:
        page = browser.open(url)
        assert page.console_errors() == []
        assert page.requested_urls() == [url]  # nothing fetched besides the page itself
        assert page.evaluate("document.querySelectorAll('article.topic-card').length") == len(topic_list.topics) - 1
        assert page.evaluate("document.querySelectorAll('#watch-list + p + table tr.watch-item').length") == 1
        assert page.evaluate("document.querySelector('#topic-1 h3').textContent") == topic_list.topics[0].title
        # the CJK title is laid out with a real font: about one em per character, on one line
        width = page.evaluate("document.querySelector('#topic-1 h3').getBoundingClientRect().width")
        height = page.evaluate("document.querySelector('#topic-1 h3').getBoundingClientRect().height")
        assert 17 * 14 < width and height < 40
        shot = page.screenshot(tmp_path / "report.png")
        pdf = page.pdf(tmp_path / "report.pdf")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert pdf.read_bytes()[:5] == b"%PDF-"
    artifacts = os.environ.get("RISKWATCH_TEST_ARTIFACTS")
    if artifacts:
        target = Path(artifacts if artifacts not in ("1", "true") else "test-artifacts")
        target.mkdir(parents=True, exist_ok=True)
        for f in (shot, pdf):
            shutil.copy(f, target / f.name)


def test_the_quality_scorecard_is_a_section_of_the_page(tmp_path, topic_list):
    card = '<section class="rw-quality"><h2>数据质量记分卡</h2><p>本月接收记录 12 条</p></section>'
    paths = write_report(tmp_path, MONTH, topic_list, month_scores(), [], [], gazetteer=str(GAZETTEER),
                         scorecard_html=card)
    assert card in paths["report.html"].read_text(encoding="utf-8")


def test_rows_without_a_baseline_show_no_expected_count(tmp_path, topic_list):
    """The month's scores have no expectation (``expected`` null, "不足以估计预期"): the workbook, the
    warnings drawn from the day scores and the trend show none, not 0."""
    unbaselined = "本月20件，历史数据仅12天，不足以估计预期"
    scores = [dict(row, expected=None, reasons=[unbaselined]) for row in month_scores()]
    earlier = [row for row in year_of_scores() if row["period_start"] < scores[0]["period_start"]]
    days = pd.DataFrame([dict(scores[0], period="day", period_start=dt.date(2025, 6, d), observed=3, level="yellow",
                              score=50.0, reasons=["当日3起，此前无历史数据，不足以估计预期；2起涉及聚集"])
                         for d in (11, 12)])
    warnings = daily_warnings(days)
    assert [w["expected"] for w in warnings] == [None]
    paths = write_report(tmp_path, MONTH, topic_list, pd.DataFrame(scores + earlier), warnings, [],
                         gazetteer=str(GAZETTEER))

    sheet = openpyxl.load_workbook(paths["topics.xlsx"])["风险评分"]
    assert sheet["G1"].value == "预期数"
    shown = {row[0]: row[6] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert shown[MONTH] == "—" and shown[model.shift_month(MONTH, -1)] in (5, 3)
    assert [row[6] for row in sheet.iter_rows(min_row=2, values_only=True) if row[0] == MONTH] == ["—"] * len(scores)
    page = paths["report.html"].read_text(encoding="utf-8")
    alerts = page.split('id="alerts"')[1].split("</section>")[0]
    assert "<td>6 / —</td>" in alerts and "/ 0.0" not in alerts
    # the trend's expected line runs through the eleven months that have one, not down to 0 in this one
    name = schemas.domain_names_zh()["housing_construction"]
    panel = page.split(f'aria-label="{name}近12个月事件数"')[1].split("</svg>")[0]
    assert len(re.search(r'<polyline points="([^"]*)"', panel).group(1).split()) == 11


def test_months_before_the_feeds_coverage_show_no_data(tmp_path):
    """A first run's topics have no count for the months before it: the card, the watch list, the chart, the
    workbook and topics.json say so rather than show 0; a month without data beside covered ones is "—"."""
    first = model.build_topics(month_events(), month_scores(), [], gazetteer=str(GAZETTEER), month=MONTH,
                               params=model.TopicParams(max_study=1))
    assert [m["events"] for m in first.topics[0].monthly_events][:3] == [None] * 3
    paths = write_report(tmp_path, MONTH, first, month_scores(), [], [], gazetteer=str(GAZETTEER))
    page = paths["report.html"].read_text(encoding="utf-8")
    card = page.split('class="card topic-card"')[1].split("</article>")[0]
    assert "<span>前三月 无数据</span>" in card and "<span>趋势：无历史数据</span>" in card
    assert card.count("<title>2025-0") == 4 and card.count("：无数据</title>") == 3  # marks, not bars of 0
    watch = page.split('class="watch-item"')[1:]
    assert watch and all("<td>无数据</td>" in row for row in watch)
    sheet = openpyxl.load_workbook(paths["topics.xlsx"])["研判选题清单"]
    assert sheet["J1"].value == "前三月事件数" and sheet["K1"].value == "趋势"
    assert sheet["J2"].value == "2025-03：无数据、2025-04：无数据、2025-05：无数据" and sheet["K2"].value == "无历史数据"
    doc = json.loads(paths["topics.json"].read_text(encoding="utf-8"))
    assert [m["events"] for m in doc["topics"][0]["monthly_events"]][:3] == [None] * 3
    assert doc["topics"][0]["trend"] == "unknown"

    top = first.topics[0]
    partly = model.TopicList(MONTH, [dataclasses.replace(top, monthly_events=[
        {"month": "2025-03", "events": None}, {"month": "2025-04", "events": 2}, {"month": "2025-05", "events": 3},
        {"month": MONTH, "events": top.events}], trend="rising")])
    paths = write_report(tmp_path / "partly", MONTH, partly, month_scores(), [], [], gazetteer=str(GAZETTEER))
    assert "<span>前三月 — / 2 / 3</span>" in paths["report.html"].read_text(encoding="utf-8")
    sheet = openpyxl.load_workbook(paths["topics.xlsx"])["研判选题清单"]
    assert sheet["J2"].value == "2025-03：无数据、2025-04：2、2025-05：3"
