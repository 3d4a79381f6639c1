"""An incremental monthly run (only the inbox files not yet in the warehouse, see
pipelines/ledger.py) must leave the warehouse as a run over the whole inbox would, and a re-run
with nothing new must change nothing."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipelines.batch import MonthRange, run_batch_pipeline
from pipelines.ledger import read_ledger
from tests.conftest import INGEST_TIME, TEST_KEY
from tests.test_batch_dask import batch_outputs

MONTH = MonthRange("2026-10", "2026-10")
# A later export from the hotline: a record of the fixture's 城关片区工单.csv now closed (it must
# replace the stored version), and a record of the previous month.
UPDATE_RELPATH = "hotline_12345/2026-10/城关片区工单_更新.csv"
UPDATE = (
    "工单编号,来电时间,来电号码,诉求人,诉求类型,诉求内容,事发地址,所属镇街,承办单位,办理状态,办结时间,满意度评价\n"
    "GD20261003007,2026年10月6日 10:15,0551-62345678,周九,投訴,報警人稱樓上鄰居長期噪音擾民，車牌皖A12345的車輛佔用消防通道,"
    "李庄村,,,已办结,2026-10-08 09:00:00,满意\n"
    "GD20260930001,2026-09-30 22:00:00,13800009999,吴十,投诉,菜市场门口夜间烧烤油烟扰民,城关镇新华社区,城关镇,"
    "市场监管局,办理中,,\n"
)
UPDATE_MTIME = 1_790_000_000  # after the fixture files: the later export


def _add_update(inbox: Path) -> None:
    path = inbox / UPDATE_RELPATH
    path.write_text(UPDATE, encoding="utf-8")
    os.utime(path, (UPDATE_MTIME, UPDATE_MTIME))


def _run(inbox: Path, out: Path, gazetteer_path: str, **kwargs) -> dict:
    _, manifest = run_batch_pipeline(str(inbox), gazetteer_path, str(out), TEST_KEY, MONTH,
                                     ingest_time=INGEST_TIME, **kwargs)
    return manifest


def _event_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "warehouse" / "events").rglob("*.parquet"))}


def test_incremental_run_equals_a_run_over_the_whole_inbox(fixture_inbox, gazetteer_path, tmp_path):
    whole = tmp_path / "whole"
    shutil.copytree(fixture_inbox, whole)
    _add_update(whole)
    expected = batch_outputs(tmp_path / "out_whole", _run(whole, tmp_path / "out_whole", gazetteer_path))

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    shutil.copytree(fixture_inbox, inbox)
    first = _run(inbox, out, gazetteer_path)
    _add_update(inbox)
    second = _run(inbox, out, gazetteer_path)
    got = batch_outputs(out, second)

    assert first["read"] == "all_files" and second["read"] == "new_files"
    assert [e["file"] for e in second["files"]] == [UPDATE_RELPATH]
    assert second["totals"]["accepted"] == 2 and second["totals"]["superseded"] == 0
    assert got["events"] == expected["events"]
    assert got["scores"] == expected["scores"]
    quarantine = [json.loads(line) for p in sorted((out / "quarantine").glob("*.jsonl"))
                  for line in p.read_text(encoding="utf-8").splitlines()]
    assert sorted(map(json.dumps, quarantine)) == sorted(map(json.dumps, expected["quarantine"]))
    closed = next(e for e in got["events"] if e["event_id"] == "hotline_12345:GD20261003007")
    assert closed["status"] == "closed" and closed["feed_file"] == UPDATE_RELPATH
    assert {p.name for p in (out / "warehouse" / "events").iterdir()} == {"month=2026-09", "month=2026-10"}
    assert sorted(read_ledger(str(out)).files) == sorted(e["file"] for e in expected["files"])

    # Nothing new: no file read, no event partition rewritten, the same scores.
    before = _event_files(out)
    third = _run(inbox, out, gazetteer_path)
    assert third["read"] == "new_files" and third["files"] == []
    assert not [w for w in third["written"] if w["path"].startswith("warehouse/events/")]
    assert _event_files(out) == before
    assert batch_outputs(out, third)["scores"] == expected["scores"]


def test_changed_file_or_new_key_reads_the_whole_inbox_again(fixture_inbox, gazetteer_path, tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    shutil.copytree(fixture_inbox, inbox)
    _run(inbox, out, gazetteer_path)
    assert _run(inbox, out, gazetteer_path, incremental=False)["read"] == "all_files"
    changed = inbox / "grid" / "english.jsonl"
    changed.write_text(changed.read_text(encoding="utf-8").replace("12", "13"), encoding="utf-8")
    manifest = _run(inbox, out, gazetteer_path)
    assert manifest["read"] == "all_files" and len(manifest["files"]) == len(read_ledger(str(out)).files)
