import filecmp
import hashlib
import json
import re

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from jobs import cli
from pipelines import ingest
from pipelines.ingest import AccountingError, run_ingest, unbalanced_files
from pipelines.runners import run_to_completion
from schemas import event_arrow_schema
from tests.conftest import INGEST_TIME, TEST_KEY

EXPECTED = {
    # file: (rows_read, accepted, superseded, quarantined by reason, unresolved regions)
    "grid/english.jsonl": (1, 1, 0, {}, 0),
    "grid/缺列模板.csv": (2, 0, 0, {"missing_field": 2}, 0),
    "grid/网格事件.xlsx": (6, 3, 0, {"bad_type": 1, "out_of_range": 1, "summary_row": 1}, 1),
    "hotline_12345/2026-10/东湖导出(GBK).csv": (3, 3, 0, {}, 0),
    "hotline_12345/2026-10/城关片区工单.csv": (
        9, 3, 1, {"bad_time": 1, "future_time": 1, "missing_field": 1, "summary_row": 1, "unknown_value": 1}, 2),
    "hotline_12345/english_bom.csv": (3, 2, 0, {"malformed_row": 1}, 0),
    "hotline_12345/mixed_encoding.csv": (3, 2, 0, {"encoding_error": 1}, 0),
    "hotline_12345/really_xlsx.csv": (2, 1, 0, {"summary_row": 1}, 0),
    "hotline_12345/renamed_really_csv.xlsx": (1, 1, 0, {}, 0),
    "hotline_12345/工单统计.xlsx": (1, 0, 0, {"malformed_row": 1}, 0),
    "police_110/api/警情推送.jsonl": (3, 2, 0, {"malformed_row": 1}, 0),
    "police_110/接处警_2026-10.xlsx": (6, 3, 0, {"bad_type": 1, "out_of_range": 1, "summary_row": 1}, 1),
}


@pytest.fixture(scope="module")
def run(ingest_run):
    return ingest_run


@pytest.fixture(scope="module")
def events(run):
    _, out, _ = run
    table = ds.dataset(str(out / "warehouse" / "events"), format="parquet", partitioning="hive").to_table()
    return {e["event_id"]: e for e in table.to_pylist()}


@pytest.fixture(scope="module")
def quarantine(run):
    _, out, _ = run
    return [json.loads(line) for path in sorted((out / "quarantine").glob("*.jsonl")) for line in path.read_text("utf-8").splitlines()]


def test_every_row_of_every_file_is_accounted_for(run):
    result, _, _ = run
    got = {e["file"]: (e["rows_read"], e["accepted"], e["superseded"], e["quarantined"], e["unresolved_regions"])
           for e in result.manifest["files"]}
    assert got == EXPECTED
    assert all(e["balanced"] for e in result.manifest["files"])
    totals = result.manifest["totals"]
    assert totals["rows_read"] == totals["accepted"] + totals["superseded"] + totals["quarantined"] == 40


def test_manifest_describes_each_input(run):
    result, _, inbox = run
    entry = next(e for e in result.manifest["files"] if e["file"] == "hotline_12345/2026-10/东湖导出(GBK).csv")
    assert entry["sha256"] == hashlib.sha256((inbox / entry["file"]).read_bytes()).hexdigest()
    assert (entry["format"], entry["encoding"]) == ("csv", "gb18030")
    assert entry["header_mapping"]["问题描述"] == "text"
    assert result.manifest["ingest_time"] == INGEST_TIME.isoformat()


def test_events_are_parquet_by_month_with_the_event_schema(run, events):
    _, out, _ = run
    files = sorted((out / "warehouse" / "events").rglob("*.parquet"))
    assert [f.parent.name for f in files] == ["month=2026-10"]
    assert pq.read_schema(files[0]).remove_metadata() == event_arrow_schema().remove_metadata()
    assert len(events) == 21


def test_latest_version_of_a_work_order_wins(events):
    order = events["hotline_12345:GD20261003001"]
    assert (order["status"], order["satisfaction"], order["feed_file"]) == (
        "closed", "basically_satisfied", "hotline_12345/2026-10/东湖导出(GBK).csv")
    assert order["closed_at"].strftime("%Y-%m-%d %H:%M") == "2026-10-08 17:00"


def test_events_are_normalised_masked_and_located(events):
    trad = events["hotline_12345:GD20261003007"]
    assert trad["text"] == "报警人称楼上邻居长期噪音扰民，车牌[车牌号]的车辆占用消防通道"
    assert trad["source_category"] == "投诉" and trad["region_resolved_by"] == "unresolved"
    assert events["hotline_12345:GD20261003001"]["township_code"] == "341122100000"
    assert events["police_110:J2026100300001"]["village_code"] == "341122100002"
    assert events["police_110:P-0002"]["region_resolved_by"] == "handling_unit"
    assert events["grid:WG001"]["people_involved"] == 3
    assert events["hotline_12345:HL-2026-0002"]["reported_at"].strftime("%H:%M") == "08:30"
    assert events["hotline_12345:GD20261003002"]["text"] == "本人身份证号[身份证号]丢失，银行卡[银行卡号]被盗刷"
    assert all(e["ingested_at"] == INGEST_TIME for e in events.values())


def test_quarantine_tells_the_clerk_what_to_fix(quarantine):
    by_reason = {}
    for record in quarantine:
        assert set(record) >= {"feed", "file", "line", "field", "reason", "message", "raw"}
        by_reason.setdefault(record["reason"], []).append(record)
    [bad_time] = by_reason["bad_time"]
    assert bad_time["message"] == "第5行“来电时间”为“2026-13-45”，无法识别为日期时间，请按“2026-10-03 14:05:00”格式填写"
    assert bad_time["raw"].startswith("GD20261003003,2026-13-45,13800002222")  # raw kept for replay
    assert "晚于数据接收时间（2026-11-01 00:00）" in by_reason["future_time"][0]["message"]
    assert "“办理状态”为“挂起”" in by_reason["unknown_value"][0]["message"]
    messages = {r["field"]: r["message"] for r in by_reason["out_of_range"] + by_reason["bad_type"]}
    assert messages["lat"] == "工作表“Sheet1”第7行“纬度”为“123”，超出允许范围（-90～90），请核对"
    assert messages["people_involved"] == "工作表“Sheet1”第4行“涉及人数”为“许多”，应为整数，请填写数字"
    assert "“经度”为“东经117度”，应为数字" in messages["lon"]


_PHONE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_ID_RE = re.compile(r"(?<!\d)\d{17}[\dX](?!\d)")
_CLEAR_VALUES = ["13912345678", "13812345678", "340123199001011234", "6222021234567890123", "62345678", "王小明", "张三", "刘一"]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_no_output_outside_the_quarantine_holds_personal_data(run):
    _, out, _ = run
    texts = []
    for path in out.rglob("*"):
        if path.is_file() and "quarantine" not in path.parts:
            if path.suffix == ".parquet":
                texts.extend(s for row in pq.read_table(path).to_pylist() for s in _strings(row))
            else:
                texts.append(path.read_text("utf-8"))
    assert texts
    for text in texts:
        assert not _PHONE_RE.search(text) and not _ID_RE.search(text), text
        assert not any(value in text for value in _CLEAR_VALUES), text


def test_rerun_on_the_same_inbox_gives_the_same_outputs(run, gazetteer_path, tmp_path):
    _, out, inbox = run
    again = tmp_path / "out"
    run_ingest(str(inbox), gazetteer_path, str(again), TEST_KEY, INGEST_TIME)
    first = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    assert all(filecmp.cmp(out / p, again / p, shallow=False) for p in first)


def test_unbalanced_files_are_named():
    manifest = {"files": [{"file": "a.csv", "balanced": True}, {"file": "b.csv", "balanced": False}]}
    assert [e["file"] for e in unbalanced_files(manifest)] == ["b.csv"]
    assert issubclass(AccountingError, RuntimeError)


def test_cli_ingest_prints_the_accounting_table(write_feed, gazetteer_path, tmp_path, capsys):
    inbox = write_feed("police_110/calls.csv", "报警时间,警情编号,警情类别,简要警情,派出所\n"
                       "2026-10-03 14:05,J1,求助,求助开锁,城关派出所\n2026-10-03 15:05,J2,求助,,东湖派出所\n", "gbk")
    key = tmp_path / "k.key"
    key.write_text("cli-key")
    code = cli.main(["ingest", "--inbox", str(inbox), "--gazetteer", gazetteer_path, "--out", str(tmp_path / "out"),
                     "--key-file", str(key), "--ingest-time", "2026-11-01T00:00:00+08:00"])
    printed = capsys.readouterr().out
    assert code == 0
    assert re.search(r"police_110/calls\.csv\s+2\s+1\s+0\s+1\s+missing_field=1", printed)
    assert "manifest:" in printed


def test_cli_without_a_key_refuses_to_run(write_feed, gazetteer_path, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RISKWATCH_HMAC_KEY", raising=False)
    inbox = write_feed("grid/a.csv", "事件编号\n1\n")
    code = cli.main(["ingest", "--inbox", str(inbox), "--gazetteer", gazetteer_path, "--out", str(tmp_path / "out")])
    assert code == 2
    assert "RISKWATCH_HMAC_KEY" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_accepted_row_missing_from_the_written_events_stops_the_run(fixture_inbox, gazetteer_path, tmp_path,
                                                                      monkeypatch):
    """A row lost between the pipeline and its Event files is reported, naming the file."""
    out = tmp_path / "out"

    def run_and_lose_a_row(pipeline):
        run_to_completion(pipeline)
        path = sorted((out / "warehouse" / "events").glob("month=*/events-*.parquet"))[0]
        table = pq.read_table(path)
        pq.write_table(table.slice(1), path)
        lost_from.append(table.column("feed_file")[0].as_py())

    lost_from = []
    monkeypatch.setattr(ingest, "run_to_completion", run_and_lose_a_row)
    with pytest.raises(AccountingError) as raised:
        run_ingest(str(fixture_inbox), gazetteer_path, str(out), TEST_KEY, INGEST_TIME)
    message = str(raised.value)
    assert f"{lost_from[0]}: " in message and " accepted, " in message and message.count(" accepted, ") == 1


def test_names_in_free_text_are_masked_at_ingest(write_feed, gazetteer_path, tmp_path):
    # a caller who says their own name, and the names grid workers write into their reports
    write_feed("hotline_12345/names.csv", "工单号,受理时间,联系电话,姓名,问题分类,问题描述,区域\n"
               "N1,2026-10-03 14:05,13812345678,王建国,投诉,王建国来电反映：王建国家门口下水道堵了,城关镇\n"
               "N2,2026-10-03 15:05,13812345679,匿名,投诉,匿名来电反映市民广场路灯不亮,城关镇\n", "gbk")
    inbox = write_feed("grid/names.jsonl", json.dumps(
        {"event_id": "N3", "reported_at": "2026-10-06 08:00:00", "grid_code": "341122100001001", "reporter_id": "赵德华",
         "category": "特殊人群", "subcategory": "走访", "description": "网格员赵德华走访独居老人孙秀英，身体状况良好；东关村曹国强家老房子墙体开裂",
         "people_involved": 1, "status": "处置中", "closed_at": None}, ensure_ascii=False) + "\n")
    out = tmp_path / "out"
    run_ingest(str(inbox), gazetteer_path, str(out), TEST_KEY, INGEST_TIME)
    table = ds.dataset(str(out / "warehouse" / "events"), format="parquet", partitioning="hive").to_table()
    texts = {e["event_id"]: e["text"] for e in table.to_pylist()}
    assert texts == {"hotline_12345:N1": "[姓名]来电反映：[姓名]家门口下水道堵了",
                     "hotline_12345:N2": "匿名来电反映市民广场路灯不亮",
                     "grid:N3": "网格员[姓名]走访独居老人[姓名]，身体状况良好；东关村[姓名]家老房子墙体开裂"}
    for path in out.rglob("*"):
        if path.is_file() and "quarantine" not in path.parts:
            content = "\n".join(s for row in pq.read_table(path).to_pylist() for s in _strings(row)) \
                if path.suffix == ".parquet" else path.read_text("utf-8")
            assert not any(name in content for name in ("王建国", "赵德华", "孙秀英", "曹国强")), path
