"""topics.xlsx: the topic list, the evidence of each topic, the scores and the data-quality notes,
with Chinese headers, set column widths and a frozen header row."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import xlsxwriter

import schemas
from models.topics import TopicList, score_month, score_rows
from reports.labels import LEVEL_COLOURS, LIST_NAMES, NO_BASELINE, STATUS_NAMES, TREND_NAMES, level_name, month_count

# (header, width) per column; widths in Excel character units (a CJK character counts ~2)
TOPIC_COLUMNS = [("排名", 6), ("选题标题", 44), ("状态", 9), ("风险领域", 12), ("乡镇（街道）", 12),
                 ("区划代码", 14), ("预警等级", 9), ("风险评分", 9), ("本月事件数", 10), ("前三月事件数", 16),
                 ("趋势", 8), ("关联事件（去重）", 10), ("重复来电人", 10), ("来源渠道", 30), ("预警信号", 24),
                 ("研判理由", 60), ("建议牵头部门", 16), ("典型诉求摘录", 80), ("选题编号", 14), ("清单", 10),
                 ("优先度", 8), ("乡镇领域评分理由", 50)]
EVIDENCE_COLUMNS = [("排名", 6), ("选题标题", 40), ("事件编号", 26), ("来源", 24), ("上报时间", 20),
                    ("村（社区）", 14), ("事件内容（已脱敏）", 80), ("预警信号", 18), ("关联事件编号", 24)]
SCORE_COLUMNS = [("月份", 9), ("乡镇（街道）", 12), ("区划代码", 14), ("村（社区）", 12), ("风险领域", 12),
                 ("实际数", 8), ("预期数", 8), ("风险评分", 9), ("预警等级", 9), ("评分理由", 60), ("数据完整", 9)]
QUALITY_COLUMNS = [("数据源", 28), ("乡镇（街道）", 14), ("日期", 26), ("说明", 80)]


def _sheet(book, name: str, columns: Sequence[tuple[str, int]], header_format):
    sheet = book.add_worksheet(name)
    for i, (title, width) in enumerate(columns):
        sheet.set_column(i, i, width)
        sheet.write(0, i, title, header_format)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, 0, len(columns) - 1)
    return sheet


def _join(mapping: dict, names: dict) -> str:
    return "；".join(f"{names.get(k, k)} {v}件" for k, v in mapping.items())


def write_workbook(path: str | Path, topic_list: TopicList, scores: Any, quality_summary: Sequence[dict],
                   region_names: dict[str, str] | None = None, feed_names: dict[str, str] | None = None,
                   signal_names: dict[str, str] | None = None) -> Path:
    path = Path(path)
    region_names = region_names or {}
    feed_names = feed_names or {}
    signal_names = signal_names or {}
    domain_names = schemas.domain_names_zh()
    book = xlsxwriter.Workbook(str(path))
    header = book.add_format({"bold": True, "bg_color": "#1f3a5f", "font_color": "#ffffff", "border": 1,
                              "text_wrap": True, "valign": "vcenter"})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})
    level_formats = {lv: book.add_format({"bg_color": bg, "font_color": fg, "align": "center", "valign": "top"})
                     for lv, (bg, fg) in LEVEL_COLOURS.items()}

    sheet = _sheet(book, "研判选题清单", TOPIC_COLUMNS, header)
    for r, t in enumerate(topic_list.topics, start=1):
        history = "、".join(f"{m['month']}：{month_count(m['events'])}" for m in t.monthly_events[:-1])
        excerpts = "\n".join(f"{i + 1}. {e['text']}" for i, e in enumerate(t.excerpts))
        values = [t.rank, t.title, STATUS_NAMES.get(t.status, t.status), t.domain_name, t.township_name,
                  t.township_code, level_name(t.level), round(t.score, 1), t.events, history,
                  TREND_NAMES.get(t.trend, t.trend), t.incidents, t.repeat_callers, _join(t.sources, feed_names),
                  _join(t.signals, signal_names), "\n".join(t.reasons), t.lead_department, excerpts, t.topic_id,
                  LIST_NAMES.get(t.list_name, t.list_name), round(t.priority, 1), "\n".join(t.region_reasons)]
        for c, v in enumerate(values):
            sheet.write(r, c, v, level_formats.get(t.level) if c == 6 else wrap)
    # last month's topics that no longer appear close the loop under the list
    for r, closed in enumerate(topic_list.closed, start=len(topic_list.topics) + 1):
        region = closed.get("region") or {}
        sheet.write_row(r, 0, [
            "", closed.get("title") or "", STATUS_NAMES.get(closed["status"], closed["status"]),
            closed.get("domain_name") or domain_names.get(closed.get("domain"), ""), region.get("name", ""),
            region.get("code", ""), "", "", closed.get("events", 0), f"上月{closed.get('previous_events') or 0}件",
        ], wrap)

    sheet = _sheet(book, "选题证据", EVIDENCE_COLUMNS, header)
    r = 0
    for t in topic_list.topics:
        for e in t.evidence:
            r += 1
            sheet.write_row(r, 0, [t.rank, t.title, e["event_id"], feed_names.get(e["source"], e["source"]),
                                   (e["reported_at"] or "").replace("T", " ")[:19],
                                   region_names.get(e["village_code"], e["village_code"] or ""), e["text"],
                                   "、".join(signal_names.get(s, s) for s in e["signals"]), e["incident_id"] or ""],
                            wrap)

    sheet = _sheet(book, "风险评分", SCORE_COLUMNS, header)
    rows = [s for s in score_rows(scores) if s.get("period") == "month"]
    rows.sort(key=lambda s: -float(s.get("score") or 0))
    rows.sort(key=score_month, reverse=True)  # stable: latest month first, highest score first within it
    for r, s in enumerate(rows, start=1):
        sheet.write_row(r, 0, [score_month(s), region_names.get(s["township_code"], s["township_code"] or ""),
                               s["township_code"] or "", region_names.get(s.get("village_code"), s.get("village_code") or ""),
                               domain_names.get(s["domain"], s["domain"]), float(s.get("observed") or 0),
                               NO_BASELINE if s.get("expected") is None else round(float(s["expected"]), 2),
                               round(float(s.get("score") or 0), 1)], wrap)
        level = s.get("level") or "none"
        sheet.write(r, 8, level_name(level), level_formats.get(level))
        sheet.write(r, 9, "\n".join(s["reasons"]), wrap)
        sheet.write(r, 10, "是" if s.get("complete") else "否", wrap)

    sheet = _sheet(book, "数据质量", QUALITY_COLUMNS, header)
    if quality_summary:
        for r, q in enumerate(quality_summary, start=1):
            sheet.write_row(r, 0, [feed_names.get(q.get("feed"), q.get("feed") or "全部数据源"),
                                   region_names.get(q.get("township"), q.get("township") or "全县"),
                                   format_dates(q.get("dates")), q.get("message") or ""], wrap)
    else:
        sheet.write_row(1, 0, ["全部数据源", "全县", "", "本月各数据源未报告缺口或接入失败。"], wrap)
    book.close()
    return path


def format_dates(dates: Any) -> str:
    """A quality entry's dates as text: a list of days, a (start, end) pair or a string."""
    if not dates:
        return ""
    if isinstance(dates, str):
        return dates
    dates = [str(d) for d in dates]
    return "、".join(dates) if len(dates) <= 6 else f"{dates[0]} 至 {dates[-1]}（{len(dates)}天）"
