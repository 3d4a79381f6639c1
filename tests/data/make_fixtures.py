"""Writes the small department files under tests/data/inbox/ (run once; the files are committed).

Each file imitates a real export: title rows, totals rows, GBK, BOM, Excel date cells, a file
whose extension lies, and one broken row per quarantine reason. Tests assert on these rows, so
change a row here and in the test together.

    cd /work/main && PYTHONPATH=. python tests/data/make_fixtures.py
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import xlsxwriter

INBOX = Path(__file__).resolve().parent / "inbox"

HOTLINE_1 = ["工单编号", "来电时间", "来电号码", "诉求人", "诉求类型", "诉求内容", "事发地址", "所属镇街", "承办单位", "办理状态", "办结时间", "满意度评价"]
HOTLINE_2 = ["工单号", "受理时间", "联系电话", "姓名", "问题分类", "问题描述", "地址", "区域", "处理部门", "状态", "完成时间", "回访满意度"]
HOTLINE_EN = ["order_id", "received_at", "caller_phone", "caller_name", "request_type", "content", "address", "township", "handling_unit", "status", "closed_at", "satisfaction"]
POLICE_1 = ["警情编号", "报警时间", "报警电话", "报警人", "警情类别", "警情细类", "简要警情", "发案地点", "经度", "纬度", "管辖单位", "处警结果"]
POLICE_EN = ["incident_id", "reported_at", "caller_phone", "caller_name", "category", "subcategory", "description", "address", "lon", "lat", "station", "disposition"]
GRID_1 = ["事件编号", "上报时间", "网格编码", "网格员", "事件大类", "事件小类", "事件描述", "涉及人数", "处置状态", "办结时间"]
GRID_EN = ["event_id", "reported_at", "grid_code", "reporter_id", "category", "subcategory", "description", "people_involved", "status", "closed_at"]


def _csv(rows: list[list]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def _write(path: str, data: bytes) -> None:
    target = INBOX / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _xlsx(rows: list[list], title: str | None, totals: list | None, sheet: str = "Sheet1", extra_sheet: list[list] | None = None) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    ws = book.add_worksheet(sheet)
    r = 0
    if title:
        ws.merge_range(0, 0, 0, len(rows[0]) - 1, title)
        r = 2  # title, then an empty row, as exports do
    for cells in rows:
        for c, value in enumerate(cells):
            if isinstance(value, dt.datetime):
                ws.write_datetime(r, c, value, when)
            elif value is not None:
                ws.write(r, c, value)
        r += 1
    if totals:
        ws.write_row(r, 0, totals)
    if extra_sheet:
        stats = book.add_worksheet("统计")
        for i, cells in enumerate(extra_sheet):
            stats.write_row(i, 0, cells)
    book.close()
    return buffer.getvalue()


def hotline() -> None:
    # UTF-8, header set 1, a title row, a totals row and one row per typical problem.
    rows = [
        ["示范县12345热线工单明细表（2026年10月）"] + [""] * 11,
        HOTLINE_1,
        ["GD20261003001", "2026-10-03 14:05:00", "138-1234-5678", "张三", "投诉", "楼上住户夜间噪音扰民，联系人王小明电话13912345678", "城关镇东关村3组", "城关镇", "城关镇人民政府", "办理中", "", ""],
        ["GD20261003002", "2026/10/3 9:30", "+86 13800001111", "李四", "求助", "本人身份证号340123199001011234丢失，银行卡6222021234567890123被盗刷", "新华小区5栋", "", "公安局", "已办结", "2026年10月4日16时20分", "满意"],
        ["GD20261003003", "2026-13-45", "13800002222", "王五", "咨询", "咨询社保缴费", "", "东湖镇", "人社局", "已办结", "", ""],
        ["GD20261003004", "2027-01-05 10:00:00", "13800003333", "赵六", "投诉", "道路破损", "西山乡桃园村", "西山乡", "交通局", "待办理", "", ""],
        ["GD20261003005", "2026-10-05 08:00:00", "13800004444", "钱七", "投诉", "小区物业不作为", "城关镇新华社区", "城关镇", "住建局", "挂起", "", ""],
        ["GD20261003006", "2026-10-05 09:00:00", "13800005555", "孙八", "建议", "", "", "城关镇", "", "待办理", "", ""],
        ["GD20261003007", "2026年10月6日 10:15", "0551-62345678", "周九", "投訴", "報警人稱樓上鄰居長期噪音擾民，車牌皖A12345的車輛佔用消防通道", "李庄村", "", "", "办理中", "", ""],
        ["GD20261003008", "20261007143000", "", "", "咨询", "咨询办证流程", "某某路12号", "", "", "待受理", "", "未评价"],
        ["合计", "8", "", "", "", "", "", "", "", "", "", ""],
    ]
    _write("hotline_12345/2026-10/城关片区工单.csv", _csv(rows).encode("utf-8"))

    # GBK, header set 2: a later export that closes GD20261003001 (same id → supersedes).
    rows = [
        HOTLINE_2,
        ["GD20261003001", "2026-10-03 14:05", "13812345678", "张三", "投诉", "楼上住户夜间噪音扰民", "城关镇东关村3组", "城关镇", "城关镇人民政府", "已办结", "2026-10-08 17:00", "基本满意"],
        ["GD20261009001", "2026-10-09 11:11:11", "13600001234", "吴十", "举报", "举报东湖镇李庄村有人非法集资，联系电话 0551 6234 5678", "", "东湖镇", "金融办", "已受理", "", ""],
        ["GD20261009002", "1791532800000", "13600005678", "郑一", "咨询", "咨询公积金提取", "", "东湖", "公积金中心", "待受理", "", ""],
    ]
    _write("hotline_12345/2026-10/东湖导出(GBK).csv", _csv(rows).encode("gbk"))

    # UTF-8 with BOM, English headers, tab-free; one row with an unquoted comma (extra column).
    rows = [
        HOTLINE_EN,
        ["HL-2026-0001", "2026-10-10T08:00:00+08:00", "13700001111", "Chen", "咨询", "咨询户口迁移", "城关镇", "城关镇", "公安局", "processing", "", ""],
        ["HL-2026-0002", "2026-10-10T00:30:00Z", "13700002222", "Lin", "投诉", "餐馆油烟扰民", "西山乡桃园村", "西山乡", "生态环境局", "done", "2026-10-12T10:00:00Z", "satisfied"],
        ["HL-2026-0003", "2026-10-11 10:00:00", "13700003333", "Xu", "投诉", "工资被拖欠", "东湖镇", "东湖镇", "人社局", "open", "", "", "多出来的一列"],
    ]
    _write("hotline_12345/english_bom.csv", b"\xef\xbb\xbf" + _csv(rows).encode("utf-8"))

    # Named .xlsx but really a UTF-8 CSV (a clerk renamed it).
    rows = [HOTLINE_1, ["GD20261012001", "2026-10-12 12:00:00", "15900001111", "冯二", "求助", "老人走失求助", "城关镇", "城关镇", "民政局", "已办结", "2026-10-12 18:00:00", "满意"]]
    _write("hotline_12345/renamed_really_csv.xlsx", _csv(rows).encode("utf-8"))

    # Named .csv but really a workbook, with a title row and a totals row.
    data = _xlsx(
        [HOTLINE_1, ["GD20261013001", dt.datetime(2026, 10, 13, 9, 0), 15900002222.0, "陈三", "咨询", "咨询医保报销", "东湖镇李庄村", "东湖镇", "医保局", "已办结", dt.datetime(2026, 10, 13, 15, 0), "满意"]],
        title="示范县12345热线工单明细表", totals=["合计", 1],
    )
    _write("hotline_12345/really_xlsx.csv", data)

    # GBK export with one row pasted from a UTF-8 system (still readable line by line) and one
    # row cut in the middle of a GBK character (readable in no encoding).
    good = _csv([HOTLINE_1, ["GD20261014001", "2026-10-14 10:00:00", "13300001111", "蒋四", "咨询", "咨询学校招生", "城关镇", "城关镇", "教育局", "待受理", "", ""]]).encode("gbk")
    pasted = _csv([["GD20261014002", "2026-10-14 11:00:00", "13300002222", "沈五", "投诉", "噪音扰民", "城关镇", "城关镇", "", "待受理", "", ""]]).encode("utf-8")
    cut = "GD20261014003,2026-10-14 12:00:00,13300003333,韩六,投诉,".encode("gbk") + "噪音".encode("gbk")[:3] + ",城关镇,城关镇,,待受理,,\r\n".encode("gbk")
    _write("hotline_12345/mixed_encoding.csv", good + pasted + cut)

    # Not a table at all: a PDF a department uploaded by mistake.
    _write("hotline_12345/工单统计.xlsx", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


def police() -> None:
    rows = [
        POLICE_1,
        ["J2026100300001", dt.datetime(2026, 10, 3, 22, 15), "13512345678", "刘一", "治安", "打架斗殴", "城关镇新华社区门口两人打架，报警人刘一称被打伤", "城关镇新华社区", 117.2345, 31.8612, "城关派出所", "已处理"],
        ["J2026100300002", 46299.5, "13512340000", "刘二", "求助", "求助", "群众求助开锁", "", "", "", "东湖派出所", "已处理"],
        ["J2026100300003", "2026-10-04 01:00:00", "110", "", "纠纷", "邻里纠纷", "邻里因停车发生纠纷", "", "东经117度", 31.5, "西山派出所", "调解"],
        ["J2026100300004", "2026-10-04 02:00:00", "13512341111", "刘四", "交通", "交通事故", "两车追尾", "", 117.1, 123.0, "交警大队", "已处理"],
        ["J2026100300005", "2026-10-04 03:00:00", "13512342222", "刘五", "刑事", "盗窃", "電動車被盜", "某小区", 117.1, 31.2, "", "立案"],
    ]
    data = _xlsx(rows, title="示范县110接处警记录", totals=["合计：5起"],
                 extra_sheet=[["派出所", "警情数"], ["城关派出所", 1]])
    _write("police_110/接处警_2026-10.xlsx", data)

    lines = [
        {"incident_id": "P-0001", "reported_at": 1791036000000, "caller_phone": "13522223333", "caller_name": "黄一",
         "category": "火灾", "subcategory": "居民楼火灾", "description": "西山乡桃园村民房起火", "address": "西山乡桃园村",
         "lon": 117.3, "lat": 31.7, "station": "西山派出所", "disposition": "已扑灭"},
        {"incident_id": "P-0002", "reported_at": "2026-10-05T10:00:00+08:00", "caller_phone": None, "caller_name": None,
         "category": "求助", "subcategory": None, "description": "老人摔倒求助", "address": None,
         "lon": None, "lat": None, "station": "城关派出所", "disposition": "已送医"},
    ]
    text = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines)
    text += '\n{"incident_id": "P-0003", "reported_at": "2026-10-05 11:00", "description": "半截记录\n'
    _write("police_110/api/警情推送.jsonl", text.encode("utf-8"))


def grid() -> None:
    rows = [
        GRID_1,
        ["WG001", dt.datetime(2026, 10, 2, 9, 0), "341122100001001", "网格员甲", "矛盾纠纷", "邻里纠纷", "东关村两户因宅基地边界发生争执", "3人", "调解中", ""],
        ["WG002", dt.datetime(2026, 10, 2, 10, 0), "341122200002", "网格员乙", "安全隐患", "消防", "桃园村仓库堆放易燃物", 0, "已处置", dt.datetime(2026, 10, 3, 10, 0)],
        ["WG003", dt.datetime(2026, 10, 2, 11, 0), "999999999999", "网格员丙", "环境卫生", "垃圾", "路边垃圾堆积", "许多", "待处置", ""],
        ["WG004", dt.datetime(2026, 10, 2, 12, 0), "341122100001999", "网格员丁", "民生服务", "", "独居老人需要帮扶", 200000, "待处置", ""],
        ["WG005", dt.datetime(2026, 10, 2, 13, 0), "999999999999", "网格员戊", "其他", "", "情况不明的记录", 1, "待处置", ""],
    ]
    _write("grid/网格事件.xlsx", _xlsx(rows, title=None, totals=["总计", "", "", "", "", "", "", 3]))

    lines = [
        {"event_id": "G-0001", "reported_at": "2026-10-06 08:00:00", "grid_code": "341122100001001", "reporter_id": "R1",
         "category": "信访问题", "subcategory": "重复信访", "description": "村民反映征地补偿未到位，扬言到县里上访", "people_involved": 12,
         "status": "处置中", "closed_at": None},
    ]
    _write("grid/english.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines).encode("utf-8"))

    # A department template without the description column: every row is quarantined.
    rows = [["事件编号", "上报时间", "网格编码", "事件大类", "处置状态"],
            ["WG101", "2026-10-07 09:00", "341122100001001", "矛盾纠纷", "待处置"],
            ["WG102", "2026-10-07 10:00", "341122100001001", "矛盾纠纷", "待处置"]]
    _write("grid/缺列模板.csv", _csv(rows).encode("gbk"))


if __name__ == "__main__":
    hotline()
    police()
    grid()
    for path in sorted(INBOX.rglob("*")):
        if path.is_file():
            print(path.relative_to(INBOX), path.stat().st_size)
