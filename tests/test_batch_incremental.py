"""An incremental monthly run (only the inbox files not yet in the warehouse, see
pipelines/ledger.py) must leave the warehouse — events, tallies, scores — as a run over the whole
inbox would, touch only the months its new records fall in (± their neighbours), and a re-run
with nothing new must change nothing."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

from pipelines import score, sinks, warehouse
from pipelines.batch import MonthRange, run_batch_pipeline
from pipelines.ledger import read_ledger
from pipelines.options import beam_options
from pipelines.warehouse import FEED_DAYS, SERIES_TALLIES, read_month_tallies
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


# Earlier records of the same hotline: closed in March (2026-03), open in June, quiet in January.
OLDER_RELPATH = "hotline_12345/2026-older/上半年工单.csv"
OLDER = (
    "工单编号,来电时间,来电号码,诉求人,诉求类型,诉求内容,事发地址,所属镇街,承办单位,办理状态,办结时间,满意度评价\n"
    "GD20260120001,2026-01-20 09:00:00,13800003333,陈一,咨询,咨询居住证办理流程,城关镇新华社区,城关镇,公安局,已办结,2026-01-21 10:00:00,满意\n"
    "GD20260310001,2026-03-10 08:30:00,13800004444,陈二,投诉,小区门口垃圾堆放多日无人清运,城关镇东关村3组,城关镇,城管局,已办结,2026-03-12 17:00:00,满意\n"
    "GD20260615001,2026-06-15 21:40:00,13800005555,陈三,投诉,楼下烧烤店油烟噪音扰民到深夜,城关镇新华社区,城关镇,市场监管局,办理中,,\n"
)
# A later export: the June order is now closed; the March order appears again from an export made
# before it was closed (the stored, closed version must stay).
LATER_RELPATH = "hotline_12345/2026-older/上半年工单_更新.csv"
LATER = (
    "工单编号,来电时间,来电号码,诉求人,诉求类型,诉求内容,事发地址,所属镇街,承办单位,办理状态,办结时间,满意度评价\n"
    "GD20260615001,2026-06-15 21:40:00,13800005555,陈三,投诉,楼下烧烤店油烟噪音扰民到深夜,城关镇新华社区,城关镇,市场监管局,已办结,2026-06-18 11:00:00,满意\n"
    "GD20260310001,2026-03-10 08:30:00,13800004444,陈二,投诉,小区门口垃圾堆放多日无人清运,城关镇东关村3组,城关镇,城管局,办理中,,\n"
)


def _write(inbox: Path, relpath: str, text: str, mtime: int) -> None:
    path = inbox / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))


def _whole_and_second_run(fixture_inbox: Path, gazetteer_path: str, tmp_path: Path, first: tuple[str, str],
                          later: tuple[str, str]) -> tuple[dict, dict[str, bytes], dict, Path]:
    """The fixture with ``first`` and ``later`` (relpath, text) files: the outputs of one run over all
    of it; then, in ``tmp_path/out``, a run with ``first`` (its warehouse also copied to
    ``tmp_path/first``), its event files, and the manifest of the incremental run that ``later`` then
    brings."""
    whole = tmp_path / "whole"
    shutil.copytree(fixture_inbox, whole)
    _write(whole, *first, UPDATE_MTIME)
    _write(whole, *later, UPDATE_MTIME + 60)
    expected = batch_outputs(tmp_path / "out_whole", _run(whole, tmp_path / "out_whole", gazetteer_path))

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    shutil.copytree(fixture_inbox, inbox)
    _write(inbox, *first, UPDATE_MTIME)
    _run(inbox, out, gazetteer_path)
    shutil.copytree(out, tmp_path / "first")
    before = _event_files(out)
    _write(inbox, *later, UPDATE_MTIME + 60)
    return expected, before, _run(inbox, out, gazetteer_path), out


def test_status_update_of_an_older_month_rewrites_only_its_months(fixture_inbox, gazetteer_path, tmp_path):
    expected, before, second, out = _whole_and_second_run(fixture_inbox, gazetteer_path, tmp_path,
                                                          (OLDER_RELPATH, OLDER), (LATER_RELPATH, LATER))
    got = batch_outputs(out, second)

    assert got["events"] == expected["events"]
    assert got["scores"] == expected["scores"]
    june = [e for e in got["events"] if e["event_id"] == "hotline_12345:GD20260615001"]
    assert [(e["status"], e["feed_file"]) for e in june] == [("closed", LATER_RELPATH)]
    march = next(e for e in got["events"] if e["event_id"] == "hotline_12345:GD20260310001")
    assert march["status"] == "closed" and march["feed_file"] == OLDER_RELPATH
    # The late export's March row lost to the stored version: superseded, not accepted.
    [entry] = second["files"]
    assert (entry["rows_read"], entry["accepted"], entry["superseded"], entry["balanced"]) == (2, 1, 1, True)
    # Only June, where a record changed, was rewritten (with its neighbours, which hold no events):
    # the March copy lost to its stored version, so March, like January and October, was left alone.
    rewritten = {w["path"].split("/")[2] for w in second["written"] if w["path"].startswith("warehouse/events/")}
    assert rewritten == {"month=2026-06"}
    after = _event_files(out)
    for path, data in before.items():
        if any(f"month=2026-{m}" in path for m in ("01", "03", "10")):
            assert after[path] == data, path
    june_file = out / "warehouse" / "events" / "month=2026-06" / "events-batch-000.parquet"
    assert [r["status"] for r in pq.read_table(june_file).to_pylist()] == ["closed"]
    # The tallies kept month by month are those of the events now stored, counted from scratch.
    stored = _tallies(out)
    assert any(SERIES_TALLIES in t for t in stored) and any(FEED_DAYS in t for t in stored)
    _assert_tallies_of_stored_events(out, stored)
    assert stored == _tallies(tmp_path / "out_whole")


def _tallies(out: Path) -> list[str]:
    """Every stored tally, as read back for scoring."""
    return sorted(
        json.dumps(element, sort_keys=True, ensure_ascii=False) for p in sorted((out / "warehouse" / "tallies").iterdir())
        for element in read_month_tallies(str(out), p.name.split("=", 1)[1]))


def _assert_tallies_of_stored_events(out: Path, expected: list[str]) -> None:
    with beam.Pipeline(options=beam_options([])) as p:
        tallies = p | warehouse.ReadEvents(warehouse.batch_event_files(str(out))) | score.DailyTallies()
        found = ((tallies[SERIES_TALLIES] | "S" >> beam.Map(lambda kv: (SERIES_TALLIES, kv)),
                  tallies[FEED_DAYS] | "F" >> beam.Map(lambda kv: (FEED_DAYS, kv)))
                 | beam.Flatten()
                 | beam.Map(lambda element: json.dumps(element, sort_keys=True, ensure_ascii=False)))
        assert_that(found, equal_to(expected))


HEADER = "工单编号,来电时间,来电号码,诉求人,诉求类型,诉求内容,事发地址,所属镇街,承办单位,办理状态,办结时间,满意度评价\n"
# April, stored before May arrives: a fight on the evening of the 30th, and other orders.
APRIL_RELPATH = "hotline_12345/2026-04/城关4月工单.csv"
APRIL = HEADER + (
    "GD20260410001,2026-04-10 09:00:00,13800006666,刘一,投诉,幸福里小区门口垃圾堆放多日无人清运,城关镇新华社区,城关镇,城管局,已办结,2026-04-12 10:00:00,满意\n"
    "GD20260430001,2026-04-30 20:00:00,13800007777,刘二,投诉,幸福里小区门口有人打架斗殴，一人头部受伤流血,城关镇新华社区,城关镇,公安局,办理中,,\n"
    "GD20260430002,2026-04-30 21:30:00,13800008888,刘三,投诉,锦绣花园小区电梯坏了一周没人修,城关镇新华社区,城关镇,住建局,办理中,,\n"
)
# May's first export: two more calls about the fight in its first hours, and a later order.
MAY_RELPATH = "hotline_12345/2026-05/城关5月工单.csv"
MAY = HEADER + (
    "GD20260501001,2026-05-01 01:30:00,13800009990,刘四,投诉,幸福里小区门口昨晚有人打架斗殴，一人头部受伤，很吵,城关镇新华社区,城关镇,公安局,办理中,,\n"
    "GD20260501002,2026-05-01 02:10:00,13800009990,刘四,投诉,再次反映幸福里小区门口打架斗殴的事,城关镇新华社区,城关镇,公安局,办理中,,\n"
    "GD20260515001,2026-05-15 10:00:00,13800005551,刘五,投诉,锦绣花园小区门口夜间烧烤油烟扰民,城关镇新华社区,城关镇,市场监管局,办理中,,\n"
)


def test_a_new_month_keeps_the_previous_months_links_and_takes_its_first_hours(fixture_inbox, gazetteer_path,
                                                                                tmp_path):
    expected, before, second, out = _whole_and_second_run(fixture_inbox, gazetteer_path, tmp_path,
                                                          (APRIL_RELPATH, APRIL), (MAY_RELPATH, MAY))
    got = batch_outputs(out, second)

    assert got["events"] == expected["events"]
    assert got["scores"] == expected["scores"]
    # May's first-hours calls joined the fight of April 30th...
    incident = {e["event_id"]: e["incident_id"] for e in got["events"]}
    fight = "hotline_12345:GD20260430001"
    assert incident["hotline_12345:GD20260501001"] == incident["hotline_12345:GD20260501002"] == fight
    assert incident["hotline_12345:GD20260515001"] == "hotline_12345:GD20260515001"
    # ...while April itself was neither relinked nor rewritten.
    rewritten = {w["path"].split("/")[2] for w in second["written"] if w["path"].startswith("warehouse/events/")}
    assert rewritten == {"month=2026-05"}
    after = _event_files(out)
    assert {p: d for p, d in after.items() if "month=2026-05" not in p} == before
    # April's tallies now count the fight with its May calls, as from scratch.
    stored = _tallies(out)
    _assert_tallies_of_stored_events(out, stored)
    assert stored == _tallies(tmp_path / "out_whole")


# Two townships in June and July (城关镇 and 东湖镇), each with incidents across a month's end.
TOWNSHIPS_RELPATH = "hotline_12345/2026-06/两镇工单.csv"
TOWNSHIPS = HEADER + (
    "GD20260531001,2026-05-31 21:00:00,13800001001,赵一,投诉,新华社区门口有人打架斗殴，一人受伤,城关镇新华社区,城关镇,公安局,办理中,,\n"
    "GD20260601001,2026-06-01 01:00:00,13800001002,赵二,投诉,新华社区门口昨晚有人打架斗殴，一人受伤,城关镇新华社区,城关镇,公安局,办理中,,\n"
    "GD20260610001,2026-06-10 09:00:00,13800001003,赵三,投诉,东关村垃圾堆放多日无人清运，臭味很大,城关镇东关村,城关镇,城管局,办理中,,\n"
    "GD20260610002,2026-06-10 11:00:00,13800001004,赵四,投诉,东关村垃圾堆放多日无人清运,城关镇东关村,城关镇,城管局,办理中,,\n"
    "GD20260612001,2026-06-12 22:00:00,13800001005,钱一,投诉,李庄村养殖场夜间噪音扰民,东湖镇李庄村,东湖镇,生态环境局,办理中,,\n"
    "GD20260612002,2026-06-12 23:00:00,13800001006,钱二,投诉,李庄村养殖场夜间噪音扰民严重,东湖镇李庄村,东湖镇,生态环境局,办理中,,\n"
    "GD20260630001,2026-06-30 23:00:00,13800001007,钱三,投诉,李庄村有人在河边打架斗殴,东湖镇李庄村,东湖镇,公安局,办理中,,\n"
    "GD20260701001,2026-07-01 02:00:00,13800001008,钱四,投诉,李庄村河边有人打架斗殴还没散,东湖镇李庄村,东湖镇,公安局,办理中,,\n"
    "GD20260702001,2026-07-02 10:00:00,13800001009,赵五,投诉,新华社区电梯坏了一周没人修,城关镇新华社区,城关镇,住建局,办理中,,\n"
    "GD20260715001,2026-07-15 10:00:00,13800001010,钱五,投诉,李庄村自来水停水三天,东湖镇李庄村,东湖镇,水务局,办理中,,\n"
)
# A later export: one 城关镇 order of June now closed.
CLOSED_RELPATH = "hotline_12345/2026-06/两镇工单_更新.csv"
CLOSED = HEADER + (
    "GD20260610001,2026-06-10 09:00:00,13800001003,赵三,投诉,东关村垃圾堆放多日无人清运，臭味很大,城关镇东关村,城关镇,城管局,已办结,2026-06-11 10:00:00,满意\n"
)
CHENGGUAN, DONGHU = "341122100000", "341122101000"


def _township_rows(out: Path, months: tuple[str, ...], township: str) -> tuple[list, list]:
    """A township's stored Events (every column) and tallies of these months, as rows."""
    events = sorted(repr(sorted(row.items())) for path in sorted((out / "warehouse" / "events").rglob("*.parquet"))
                    if path.parent.name.split("=")[1] in months
                    for row in pq.read_table(path).to_pylist() if row["township_code"] == township)
    tallies = sorted(json.dumps(element, sort_keys=True, ensure_ascii=False) for month in months
                     for table, element in read_month_tallies(str(out), month)
                     if (element[0][0][1] if table == SERIES_TALLIES else element[0][1]) == township)
    return events, tallies


def test_a_late_version_relinks_only_its_townships_months(fixture_inbox, gazetteer_path, tmp_path):
    """A change in one township of June relinks and counts again only that township's June and July
    (and May's last hours): the other township's Events and tallies of those months are written back as
    stored, and all is as a run over the whole inbox would leave it."""
    expected, _, second, out = _whole_and_second_run(fixture_inbox, gazetteer_path, tmp_path,
                                                     (TOWNSHIPS_RELPATH, TOWNSHIPS), (CLOSED_RELPATH, CLOSED))
    got = batch_outputs(out, second)
    months = ("2026-05", "2026-06", "2026-07")

    assert got["events"] == expected["events"]
    assert got["scores"] == expected["scores"]
    assert _tallies(out) == _tallies(tmp_path / "out_whole")
    incident = {e["event_id"]: e["incident_id"] for e in got["events"]}
    assert incident["hotline_12345:GD20260601001"] == "hotline_12345:GD20260531001"
    assert incident["hotline_12345:GD20260701001"] == "hotline_12345:GD20260630001"
    # The work done: 城关镇's June and July linked again, 东湖镇's kept; both months' files written again.
    assert second[sinks.RELINKED_TOWNSHIPS] == {"2026-06": [CHENGGUAN], "2026-07": [CHENGGUAN]}
    rewritten = {w["path"].split("/")[2] for w in second["written"] if w["path"].startswith("warehouse/events/")}
    assert rewritten == {"month=2026-06", "month=2026-07"}
    donghu = _township_rows(out, months, DONGHU)
    assert donghu == _township_rows(tmp_path / "first", months, DONGHU) == _township_rows(tmp_path / "out_whole",
                                                                                          months, DONGHU)
    assert all(donghu)
    assert _township_rows(out, months, CHENGGUAN) == _township_rows(tmp_path / "out_whole", months, CHENGGUAN)



# A later export: 东湖镇's first noise complaint of June was placed wrongly: it is 城关镇's.
MOVED_RELPATH = "hotline_12345/2026-06/两镇工单_更正.csv"
MOVED = HEADER + (
    "GD20260612001,2026-06-12 22:00:00,13800001005,钱一,投诉,李庄村养殖场夜间噪音扰民,城关镇东关村,城关镇,生态环境局,办理中,,\n"
)


def test_a_record_moved_to_another_township_relinks_both(fixture_inbox, gazetteer_path, tmp_path):
    """The township a record's stored version left is touched as well as the one its new version is in:
    the complaint that stays in 东湖镇 is no longer linked to the one that moved."""
    expected, _, second, out = _whole_and_second_run(fixture_inbox, gazetteer_path, tmp_path,
                                                     (TOWNSHIPS_RELPATH, TOWNSHIPS), (MOVED_RELPATH, MOVED))
    got = batch_outputs(out, second)

    assert got["events"] == expected["events"]
    assert got["scores"] == expected["scores"]
    assert _tallies(out) == _tallies(tmp_path / "out_whole")
    before = {e["event_id"]: e["incident_id"] for e in batch_outputs(tmp_path / "first", second)["events"]}
    assert before["hotline_12345:GD20260612002"] == "hotline_12345:GD20260612001"
    stays = next(e for e in got["events"] if e["event_id"] == "hotline_12345:GD20260612002")
    assert stays["incident_id"] == "hotline_12345:GD20260612002"
    assert second[sinks.RELINKED_TOWNSHIPS] == {"2026-06": [CHENGGUAN, DONGHU], "2026-07": [CHENGGUAN, DONGHU]}


# A later export: the June order of the earlier records was dated wrongly; it came in July. June had
# no other record.
REDATED_RELPATH = "hotline_12345/2026-older/上半年工单_更正.csv"
REDATED = HEADER + (
    "GD20260615001,2026-07-15 21:40:00,13800005555,陈三,投诉,楼下烧烤店油烟噪音扰民到深夜,城关镇新华社区,城关镇,市场监管局,办理中,,\n"
)


def test_a_record_moved_out_of_its_month_leaves_the_month_empty(fixture_inbox, gazetteer_path, tmp_path):
    """The stored version of a month's only record moves to another month: the month is written again
    with no rows, so the record is read once, in its new month, as a run over the whole inbox reads it."""
    expected, _, second, out = _whole_and_second_run(fixture_inbox, gazetteer_path, tmp_path,
                                                     (OLDER_RELPATH, OLDER), (REDATED_RELPATH, REDATED))
    got = batch_outputs(out, second)

    moved = [(e["reported_at"].month, e["feed_file"]) for e in got["events"]
             if e["event_id"] == "hotline_12345:GD20260615001"]
    assert moved == [(7, REDATED_RELPATH)]
    assert got["events"] == expected["events"]
    assert got["scores"] == expected["scores"]
    june = [w for w in second["written"] if w["path"].startswith("warehouse/events/month=2026-06/")]
    assert june == [{"path": "warehouse/events/month=2026-06/events-batch-000.parquet", "rows": 0}]
    assert warehouse.read_events(str(out), ["2026-06"]).empty
    # The accounting balances: the new version accepted, the stored one it replaced counted against its file.
    [entry] = second["files"]
    assert (entry["rows_read"], entry["accepted"], entry["superseded"], entry["balanced"]) == (1, 1, 0, True)
    assert second[sinks.REPLACED_IN_WAREHOUSE] == {OLDER_RELPATH: 1}
    assert _tallies(out) == _tallies(tmp_path / "out_whole")


def test_a_scored_month_left_without_rows_keeps_no_stale_scores(gazetteer_path, tmp_path):
    """August's only record turns out to be of September: a run scoring August again finds no series in
    its reach, and writes its score file empty, as its Event file."""
    august = MonthRange("2026-08", "2026-08")
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    _write(inbox, "hotline_12345/2026-08/8月工单.csv", HEADER + (
        "GD20260810001,2026-08-10 09:00:00,13800006666,刘一,投诉,幸福里小区门口有人打架斗殴，一人受伤,城关镇新华社区,"
        "城关镇,公安局,办理中,,\n"), UPDATE_MTIME)
    run_batch_pipeline(str(inbox), gazetteer_path, str(out), TEST_KEY, august, ingest_time=INGEST_TIME)
    scores = out / "warehouse" / "scores" / "month=2026-08" / "scores.parquet"
    assert pq.read_metadata(scores).num_rows > 0
    _write(inbox, "hotline_12345/2026-08/8月工单_更正.csv", HEADER + (
        "GD20260810001,2026-09-10 09:00:00,13800006666,刘一,投诉,幸福里小区门口有人打架斗殴，一人受伤,城关镇新华社区,"
        "城关镇,公安局,办理中,,\n"), UPDATE_MTIME + 60)
    _, second = run_batch_pipeline(str(inbox), gazetteer_path, str(out), TEST_KEY, august, ingest_time=INGEST_TIME)

    assert second["read"] == "new_files"
    written = {w["path"]: w["rows"] for w in second["written"] if "month=2026-08" in w["path"]}
    assert written == {"warehouse/events/month=2026-08/events-batch-000.parquet": 0,
                       "warehouse/tallies/month=2026-08/series.parquet": 0,
                       "warehouse/tallies/month=2026-08/feed_days.parquet": 0,
                       "warehouse/scores/month=2026-08/scores.parquet": 0}
    assert warehouse.read_scores(str(out), ["2026-08"]).empty
