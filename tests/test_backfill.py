"""A long run read in parts of whole months writes what one run over all its files writes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.backfill import named_month, plan_parts
from pipelines import batch, warehouse
from pipelines.batch import MonthRange, run_batch_pipeline
from pipelines.ingest import AccountingError
from pipelines.runners import run_to_completion
from pipelines.ledger import read_ledger
from pipelines.read import FeedFile, discover
from tests.conftest import INGEST_TIME, TEST_KEY
from tests.test_batch_dask import batch_outputs

months = st.tuples(st.integers(2000, 2099), st.integers(1, 12))


@given(months, st.sampled_from(["{y}-{m:02d}", "{y}_{m:02d}", "{y}.{m:02d}", "{y}{m:02d}", "{y}年{m}月",
                                "{y}年{m:02d}月", "{y}{m:02d}15", "{y}-{m:02d}-28", "{y}年{m}月3日"]),
       st.sampled_from(["12345工单_", "110警情", "网格事件 ", "export-", ""]), st.sampled_from([".xlsx", ".csv", "导出.jsonl"]))
def test_the_month_a_file_name_gives_is_found(month, pattern, prefix, suffix):
    year, number = month
    name = prefix + pattern.format(y=year, m=number) + suffix
    assert named_month(f"hotline_12345/{name}") == f"{year}-{number:02d}"


@given(st.integers(0, 10**12).map(str))
def test_long_numbers_name_no_month_unless_they_are_a_date(digits):
    found = named_month(f"grid/工单{digits}x.csv")
    if found is not None:
        year, month = found.split("-")
        assert digits.startswith(year) and len(digits) in (6, 8)


def test_a_file_name_with_a_folder_month_and_a_file_month_takes_the_files():
    assert named_month("police_110/2025-09/警情_2025-10.csv") == "2025-10"
    assert named_month("police_110/api/警情推送.jsonl") is None


def _file(relpath: str, size: int) -> FeedFile:
    return FeedFile(relpath.split("/")[0], f"/inbox/{relpath}", relpath, size, 0.0)


def _stored_series_tallies(out: Path, months: list[str]) -> None:
    for month in months:
        path = Path(warehouse.tally_path(str(out), month, warehouse.SERIES_TALLIES))
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")


def test_the_topics_take_a_process_of_their_own_once_enough_history_is_stored_or_about_to_be(tmp_path):
    month = MonthRange("2025-10", "2025-10")
    history = month.history_months
    assert not batch.topics_in_own_process(str(tmp_path), month)
    _stored_series_tallies(tmp_path, history[-(batch.TOPICS_PROCESS_HISTORY - 1):])
    assert not batch.topics_in_own_process(str(tmp_path), month)
    assert not batch.topics_in_own_process(str(tmp_path), month, [_file("grid/grid_2025-10.csv", 10)])
    # the files about to be read name a month of the history: it counts as stored
    assert batch.topics_in_own_process(str(tmp_path), month, [_file(f"grid/grid_{history[0]}.csv", 10)])
    # a file naming no month may hold any of them
    assert batch.topics_in_own_process(str(tmp_path), month, [_file("grid/推送.jsonl", 10)])
    _stored_series_tallies(tmp_path, history[:1])
    assert batch.topics_in_own_process(str(tmp_path), month)


def test_parts_are_whole_months_in_order_with_unnamed_files_last():
    files = [_file(f"{feed}/{feed}_2025-{m:02d}.csv", 10) for feed in ("grid", "police_110") for m in (3, 1, 2, 4)]
    files.append(_file("grid/推送.jsonl", 5))
    parts = plan_parts(files, 35)
    assert [[f.relpath for f in part] for part in parts] == [
        ["grid/grid_2025-01.csv", "police_110/police_110_2025-01.csv",
         "grid/grid_2025-02.csv", "police_110/police_110_2025-02.csv"],
        ["grid/grid_2025-03.csv", "police_110/police_110_2025-03.csv",
         "grid/grid_2025-04.csv", "police_110/police_110_2025-04.csv", "grid/推送.jsonl"],
    ]
    assert plan_parts(files, 85) == [files] and plan_parts(files, 0) == [files]


SEPTEMBER = "hotline_12345/城关片区工单_2026-09.csv"
TWO_MONTHS = MonthRange("2026-09", "2026-10")


def _two_months(fixture_inbox, tmp_path) -> Path:
    """The fixture inbox, a file named for September with its records, and a later file closing one of them."""
    inbox = tmp_path / "inbox"
    shutil.copytree(fixture_inbox, inbox)
    # a second named month: October's Chengguan export again as September's, and a file naming no month
    older = inbox / "hotline_12345" / "城关片区工单_2026-09.csv"
    text = (fixture_inbox / "hotline_12345" / "2026-10" / "城关片区工单.csv").read_text(encoding="utf-8")
    older.write_text(text.replace("2026-10-", "2026-09-").replace("GD202610", "GD202609"), encoding="utf-8")
    # October's later export closes a September record: the version read in the first part loses
    later = inbox / "hotline_12345" / "城关片区工单_更新_2026-10.csv"
    header, first_row = text.splitlines()[1:3]
    later.write_text("\n".join([header, first_row.replace("GD202610", "GD202609").replace("2026-10-", "2026-09-")
                                .replace("办理中,,", "已办结,2026-09-20 10:00:00,满意")]) + "\n", encoding="utf-8")
    newest = max(p.stat().st_mtime for p in inbox.rglob("*") if p.is_file()) + 60
    os.utime(later, (newest, newest))
    return inbox


def test_a_backfill_read_in_parts_writes_what_one_run_writes(fixture_inbox, gazetteer_path, tmp_path):
    inbox = _two_months(fixture_inbox, tmp_path)

    def run(out: Path, part_bytes: int) -> dict:
        _, manifest = run_batch_pipeline(str(inbox), gazetteer_path, str(out), TEST_KEY, TWO_MONTHS,
                                         ingest_time=INGEST_TIME, part_bytes=part_bytes)
        return manifest

    whole = run(tmp_path / "whole", 0)
    parted = run(tmp_path / "parted", 1)
    assert "parts" not in whole and parted["parts"] == 2  # 2026-09; 2026-10 with the unnamed files
    expected, got = batch_outputs(tmp_path / "whole", whole), batch_outputs(tmp_path / "parted", parted)
    assert got["events"] == expected["events"] and len(got["events"]) > 0
    assert got["scores"] == expected["scores"] and len(got["scores"]) > 0
    assert got["quarantine"] == expected["quarantine"]
    assert got["totals"] == expected["totals"]
    assert got["files"] == expected["files"]
    replaced = next(f for f in got["files"] if f["file"] == SEPTEMBER)
    assert replaced["superseded"] == 1
    assert read_ledger(str(tmp_path / "parted")).files == read_ledger(str(tmp_path / "whole")).files
    assert len(read_ledger(str(tmp_path / "parted")).files) == len(discover(str(inbox)))
    assert all((tmp_path / "parted" / w["path"]).exists() for w in parted["written"])


@pytest.mark.parametrize("part_bytes, damaged_run", [(0, 1), (1, 2)], ids=["one run", "last of two parts"])
def test_an_accepted_row_missing_from_the_warehouse_stops_the_run(fixture_inbox, gazetteer_path, tmp_path, monkeypatch,
                                                                   part_bytes, damaged_run):
    """A row lost between the pipeline and the warehouse is reported, not counted superseded."""
    inbox, out = _two_months(fixture_inbox, tmp_path), tmp_path / "out"
    runs = []

    def run_and_lose_a_september_row(pipeline):
        run_to_completion(pipeline)
        runs.append(pipeline)
        if len(runs) == damaged_run:
            for path in sorted((out / "warehouse" / "events").glob("month=*/events-batch-*.parquet")):
                table = pq.read_table(path)
                rows = pc.equal(table.column("feed_file"), SEPTEMBER).to_pylist()
                if any(rows):
                    pq.write_table(table.filter(pa.array([i != rows.index(True) for i in range(len(rows))])), path)
                    return

    monkeypatch.setattr(batch, "run_to_completion", run_and_lose_a_september_row)
    with pytest.raises(AccountingError) as raised:
        run_batch_pipeline(str(inbox), gazetteer_path, str(out), TEST_KEY, TWO_MONTHS,
                           ingest_time=INGEST_TIME, part_bytes=part_bytes)
    message = str(raised.value)
    # the record the October file closes is superseded within one run, replaced by the later part when parted
    accepted, replaced = (3, 0) if part_bytes == 0 else (4, 1)
    assert f"{SEPTEMBER}: {accepted} accepted, {replaced} replaced by later files, 2 held" in message
    assert "--full" in message and message.count(" accepted, ") == 1


def test_a_file_the_manifest_does_not_account_for_stops_the_run(fixture_inbox, gazetteer_path, tmp_path, monkeypatch):
    """A part's accounting entry lost on the way would hide that file's rows from the warehouse check."""
    inbox, out = _two_months(fixture_inbox, tmp_path), tmp_path / "out"

    def run_and_lose_an_entry(pipeline):
        run_to_completion(pipeline)
        [path] = (out / "manifests").glob("batch-*.json")
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if any(e["file"] == SEPTEMBER for e in manifest["files"]):
            manifest["files"] = [e for e in manifest["files"] if e["file"] != SEPTEMBER]
            path.write_text(json.dumps(manifest), encoding="utf-8")

    monkeypatch.setattr(batch, "run_to_completion", run_and_lose_an_entry)
    with pytest.raises(AccountingError, match=f"does not account for: {SEPTEMBER} "):
        run_batch_pipeline(str(inbox), gazetteer_path, str(out), TEST_KEY, TWO_MONTHS,
                           ingest_time=INGEST_TIME, part_bytes=1)
