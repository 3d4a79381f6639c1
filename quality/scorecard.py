"""The per-department scorecard: each finding in words a clerk understands, with counts and up to
three masked example rows; as an HTML fragment (a section of the monthly report) and a sheet."""
from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict

import pandas as pd

import schemas
from quality import suites

SEVERITY_ZH = {"critical": "严重", "warn": "提示"}
CHECK_ZH = {
    "required_field": "必填项为空", "canonical_value": "取值不规范", "value_range": "数值超出范围", "source_matches": "来源不符",
    "id_unique": "编号重复", "unknown_category": "目录外类别", "row_count": "记录数量异常", "key_field_empty": "整列缺失",
    "period": "时间超出所属日期", "late_records": "迟报记录偏多", "region_resolution": "区域无法匹配", "category_vanished": "常见类别缺失",
    "category_drift": "类别构成异常", "hour_profile": "时段分布偏移", "quarantine_share": "退回记录偏多", "superseded_share": "重复导出",
    "data_gap": "数据断供",
}
REASON_ZH = {
    "missing_field": "缺少必填项", "bad_type": "格式错误", "bad_time": "时间无法识别", "future_time": "时间晚于当前",
    "unknown_value": "取值无法识别", "malformed_row": "行格式损坏", "encoding_error": "文字编码错误", "unknown_header": "表头无法识别",
    "out_of_range": "超出合理范围",
}
# Event columns a feed contract does not name.
EVENT_FIELD_ZH = {"event_id": "事件编号", "source": "数据来源", "ingested_at": "接入时间", "batch_id": "批次", "township_code": "所属镇街",
                  "village_code": "所属村社区", "region_resolved_by": "区域匹配", "reported_at": "时间"}
EXAMPLE_HEADERS = {"file": "文件", "line": "行号", "source_id": "编号", "reported_at": "时间", "value": "该项取值", "text": "内容摘要",
                   "field": "字段", "message": "原因"}


def feed_name(feed: str) -> str:
    return schemas.feed_contract(feed).get("name_zh", feed)


def field_name(feed: str, column: str | None) -> str:
    for field, col in suites.mapped_fields(feed):
        if col == column:
            return next((a for a in field.get("aliases", []) if not a.isascii()), column)
    return EVENT_FIELD_ZH.get(column, column or "")


def _day(value: str | None) -> str:
    if not value:
        return ""
    d = dt.date.fromisoformat(value[:10])
    return f"{d.month}月{d.day}日"


def _pct(x) -> str:
    return f"{float(x) * 100:.0f}%"


def _where(f: dict) -> str:
    """A daily file is named by its day, other batches by their file."""
    if f.get("batch") and f.get("period_start") and f.get("period_end"):
        start, end = dt.date.fromisoformat(f["period_start"][:10]), dt.date.fromisoformat(f["period_end"][:10])
        if (end - start).days == 1:
            return f"{_day(f['period_start'])}的数据（{f['batch']}）"
    return f"文件{f['batch']}" if f.get("batch") else ""


def describe(f: dict, township_names: dict | None = None) -> str:
    """One finding as a sentence for the department's clerk."""
    feed, check, d = f["feed"], f["check"], f.get("details") or {}
    name, where, n = field_name(feed, f.get("field")), _where(f), f.get("count")
    values = "、".join(str(v) for v in d.get("values", []) if v is not None)
    if check == "required_field":
        return f"‘{name}’有{n}条为空（必填项）"
    if check == "canonical_value":
        return f"‘{name}’有{n}条取值不在规定范围内" + (f"（如：{values}）" if values else "")
    if check == "value_range":
        return f"‘{name}’有{n}条超出合理范围" + (f"（如：{values}）" if values else "")
    if check == "source_matches":
        return f"有{n}条记录的来源与本部门数据不符"
    if check == "unknown_category":
        return f"‘{name}’有{n}条为目录外的新类别" + (f"（如：{values}）" if values else "") + "，请确认是否新增类别"
    if check == "id_unique":
        return f"{where or '本月数据'}有{n}条记录编号重复，疑似重复导出"
    if check == "row_count":
        obs, exp = f["observed"], f["expected"]
        trend = "明显偏少" if obs < exp else "明显偏多"
        return f"{where}仅有{obs}条记录（同期平均约{exp:.0f}条），{trend}" if obs < exp else f"{where}有{obs}条记录（同期平均约{exp:.0f}条），{trend}"
    if check == "key_field_empty":
        return f"{where}中‘{name}’有{n}条为空（以往填写率约{_pct(f['expected'])}），疑似该列未导出或未填写"
    if check == "period":
        return f"{where}中有{n}条记录的时间晚于所属日期，疑似时间整体偏移（如时区设置错误）"
    if check == "late_records":
        return f"{where}中有{n}条记录是早于所属日期的迟报记录，请及时报送"
    if check == "region_resolution":
        return f"{where}中有{n}条记录无法匹配到镇街/村社区（匹配率{_pct(f['observed'])}，以往约{_pct(f['expected'])}），请核对地址或区划编码"
    if check == "category_vanished":
        missing = "、".join(f"“{v}”（按以往比例应有约{e:.0f}条）" for v, e in (d.get("missing") or {}).items())
        return f"{where}中没有以往常见的类别{missing}，疑似该类别未导出或分类口径变化"
    if check == "category_drift":
        changes = "；".join(f"“{v}”由{_pct(a)}变为{_pct(b)}" for v, (a, b) in (d.get("changes") or {}).items())
        return f"{where}的类别构成与以往差异明显：{changes}"
    if check == "hour_profile":
        shift = d.get("shift_hours", 0)
        return f"{where}中记录的时段分布与以往相比" + (f"整体偏移约{abs(shift)}小时，疑似时间字段时区错误" if shift else "明显不同，请核对时间字段")
    if check == "quarantine_share":
        reasons = "、".join(f"{REASON_ZH.get(r, r)}{c}条" for r, c in (d.get("reasons") or {}).items())
        return f"文件{f['batch']}有{n}条记录被退回（占{_pct(f['observed'])}）" + (f"，主要原因：{reasons}" if reasons else "")
    if check == "superseded_share":
        return f"文件{f['batch']}有{n}条记录与已收到的记录重复（占{_pct(f['observed'])}），疑似重复导出"
    if check == "data_gap":
        town = d.get("township_code")
        who = (township_names or {}).get(town, town) if town else ""
        obs, exp = f["observed"], f["expected"]
        got = "无任何记录" if not obs else f"仅有{obs}条记录"
        return f"{feed_name(feed)}{('（' + who + '）') if who else ''}：{_day(d.get('date'))}{got}（同期平均每日约{exp:.0f}条），疑似数据断供"
    return f"{CHECK_ZH.get(check, check)}：{n}条"


def _example_text(example: dict) -> str:
    return "，".join(f"{EXAMPLE_HEADERS.get(k, k)}：{v}" for k, v in example.items() if v not in (None, ""))


def scorecard_frame(findings: list[dict], township_names: dict | None = None) -> pd.DataFrame:
    """One row per finding, critical first: the scorecard sheet of the monthly XLSX."""
    rows = []
    for f in sorted(findings, key=lambda f: (f["feed"], f["severity"] != "critical", f["check"], f.get("batch") or "")):
        examples = [_example_text(e) for e in f.get("examples", [])[:3]]
        rows.append({"部门数据": feed_name(f["feed"]), "级别": SEVERITY_ZH.get(f["severity"], f["severity"]),
                     "检查项": CHECK_ZH.get(f["check"], f["check"]), "问题说明": describe(f, township_names),
                     "数量": f.get("count"), "文件/批次": f.get("batch") or "",
                     **{f"示例{i + 1}": examples[i] if i < len(examples) else "" for i in range(3)}})
    return pd.DataFrame(rows, columns=["部门数据", "级别", "检查项", "问题说明", "数量", "文件/批次", "示例1", "示例2", "示例3"])


def write_xlsx(path, findings: list[dict], township_names: dict | None = None, sheet_name: str = "数据质量") -> None:
    with pd.ExcelWriter(path, engine="xlsxwriter") as writer:
        scorecard_frame(findings, township_names).to_excel(writer, sheet_name=sheet_name, index=False)
        sheet = writer.sheets[sheet_name]
        sheet.set_column(0, 2, 16)
        sheet.set_column(3, 3, 70)
        sheet.set_column(5, 8, 40)


def _rejected_table(files: list[dict]) -> str:
    e = html.escape
    parts = ["<table><tr><th>文件</th><th>读取</th><th>入库</th><th>重复覆盖</th><th>退回</th><th>退回原因</th></tr>"]
    for f in files:
        reasons = "、".join(f"{REASON_ZH.get(r, r)}{n}条" for r, n in f["reasons"].items())
        parts.append(f"<tr><td>{e(f['file'])}</td><td>{f['rows_read']}</td><td>{f['accepted']}</td>"
                     f"<td>{f['superseded']}</td><td>{f['quarantined']}</td><td>{e(reasons)}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


def html_fragment(findings: list[dict], rows: dict[str, int], township_names: dict | None = None,
                  rejected: dict[str, list[dict]] | None = None) -> str:
    """A <section> per department: counts, files with rejected rows (each row is in quarantine/
    with its line and reason), then each finding with up to three masked examples."""
    by_feed = defaultdict(list)
    for f in findings:
        by_feed[f["feed"]].append(f)
    e = html.escape
    parts = ['<section class="rw-quality"><h2>数据质量记分卡</h2>']
    for feed in schemas.FEEDS:
        items = sorted(by_feed.get(feed, []), key=lambda f: (f["severity"] != "critical", f["check"], f.get("batch") or ""))
        critical = sum(f["severity"] == "critical" for f in items)
        parts.append(f'<div class="rw-feed"><h3>{e(feed_name(feed))}</h3>'
                     f'<p>本月接收记录 {rows.get(feed, 0)} 条；发现问题 {len(items)} 项（严重 {critical} 项，提示 {len(items) - critical} 项）。</p>')
        files = (rejected or {}).get(feed) or []
        if files:
            parts.append(f'<p>以下文件共 {sum(f["quarantined"] for f in files)} 条记录被退回，'
                         '请按隔离清单（quarantine）中的行号和原因更正后重新报送：</p>' + _rejected_table(files))
        if not items:
            parts.append('<p class="rw-ok">未发现问题。</p></div>')
            continue
        parts.append("<ol>")
        for f in items:
            parts.append(f'<li class="rw-{e(f["severity"])}"><span class="rw-badge">{e(SEVERITY_ZH.get(f["severity"], f["severity"]))}</span> '
                         f'{e(describe(f, township_names))}')
            examples = f.get("examples", [])[:3]
            if examples:
                keys = [k for k in examples[0] if any(x.get(k) not in (None, "") for x in examples)]
                parts.append("<table><tr>" + "".join(f"<th>{e(EXAMPLE_HEADERS.get(k, k))}</th>" for k in keys) + "</tr>")
                for x in examples:
                    parts.append("<tr>" + "".join(f"<td>{e('' if x.get(k) is None else str(x.get(k)))}</td>" for k in keys) + "</tr>")
                parts.append("</table>")
            parts.append("</li>")
        parts.append("</ol></div>")
    parts.append("</section>")
    return "\n".join(parts)


def gap_banner(gaps) -> str | None:
    """The report banner naming the data gaps (models.gaps.Gap rows), or None without gaps."""
    feed_days = defaultdict(list)
    for g in gaps:
        if g.township_code is None:
            feed_days[g.feed].append(g.date)
    towns = sum(1 for g in gaps if g.township_code is not None and g.date not in feed_days.get(g.feed, []))
    if not feed_days and not towns:
        return None
    items = ["{}{}".format(feed_name(feed), "、".join(f"{d.month}月{d.day}日" for d in sorted(days))) for feed, days in feed_days.items()]
    text = "数据缺口：" + "；".join(items) if items else "数据缺口："
    if towns:
        text += ("；" if items else "") + f"另有{towns}个镇街·日数据明显偏少"
    return text + "。相关地区和领域的评分标记为不完整，不代表风险低。"
