"""``riskwatch stream`` on one machine: files land, warnings once, restarts lose and repeat nothing."""
from __future__ import annotations

import os
import time

import pyarrow.parquet as pq

from jobs.cli import main
from pipelines.alert_sinks import AlertStore
from pipelines.inbox_watch import Journal, LandingDetector, feed_files
from pipelines.read import inbox_digest
from pipelines.stream import EmbeddedConfig, EmbeddedStream
from pipelines.warn import WarnPolicy
from pipelines.windows import FiringPolicy

HEADER = "工单编号,来电时间,来电号码,诉求人,诉求类型,诉求内容,事发地址,所属镇街,承办单位,办理状态,办结时间,满意度评价"
GATHERING = "GD0099,2026-10-03 18:00:00,13800009999,李四,投诉,三十多名工人因工资拖欠半年在工地门口聚集拉横幅讨薪,城关镇工地,城关镇,城关镇人民政府,办理中,,"
ROUTINE = "GD00{n:02d},2026-10-03 {h:02d}:10:00,1390000{n:04d},王五,咨询,咨询第{n}号社保缴费基数怎么查询,新华小区,城关镇,人社局,已办结,2026-10-03 17:00:00,满意"


def write_file(inbox, name, lines):
    path = inbox / "hotline_12345" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    old = time.time() - 60  # landed a minute ago
    os.utime(path, (old, old))
    return path


def job(tmp_path, gazetteer_path, hmac_key):
    policy = WarnPolicy(FiringPolicy(streaming=False), cooldown_s=24 * 3600)
    return EmbeddedStream(EmbeddedConfig(str(tmp_path / "inbox"), gazetteer_path, str(tmp_path / "out"), hmac_key,
                                         policy, stable_seconds=5))


def event_rows(out):
    return sorted(r for p in (out / "warehouse" / "events").rglob("*.parquet")
                  for r in pq.read_table(p, columns=["event_id"]).column("event_id").to_pylist())


def test_file_still_being_written_waits_for_stability_or_done_marker(tmp_path):
    path = write_file(tmp_path / "inbox", "a.csv", [GATHERING])
    os.utime(path, None)  # just modified
    detector = LandingDetector(stable_seconds=5)
    assert detector.landed(feed_files(str(tmp_path / "inbox"))) == []
    (path.parent / "a.csv.done").write_text("")
    assert [f.relpath for f in detector.landed(feed_files(str(tmp_path / "inbox")))] == ["hotline_12345/a.csv"]


def test_each_file_once_and_warnings_survive_restarts(tmp_path, gazetteer_path, hmac_key):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_file(inbox, "day1.csv", [GATHERING] + [ROUTINE.format(n=n, h=8 + n) for n in range(1, 4)])
    first = job(tmp_path, gazetteer_path, hmac_key).cycle()
    assert (first.files, first.events) == (1, 4)
    assert [(a["rule"], a["level"]) for a in first.alerts] == [("immediate", "orange")]
    assert job(tmp_path, gazetteer_path, hmac_key).cycle().files == 0  # nothing new landed

    # killed after the journal said "begin" and the outputs were half moved: redone, nothing twice
    day2 = write_file(inbox, "day2.csv", [ROUTINE.format(n=n, h=9) for n in range(10, 12)])
    files = [f for f in feed_files(str(inbox)) if f.relpath.endswith("day2.csv")]
    journal = Journal.open(out)
    journal.begin("crashed-run", [f.relpath for f in files])
    recovered = job(tmp_path, gazetteer_path, hmac_key).recover()
    assert [(r.files, r.events, r.alerts) for r in recovered] == [(1, 2, [])]
    assert Journal.open(out).pending == {}
    assert job(tmp_path, gazetteer_path, hmac_key).cycle().files == 0
    ids = event_rows(out)
    assert len(ids) == len(set(ids)) == 6
    assert len(AlertStore(out).raised()) == 1
    assert inbox_digest(files)[:12] in " ".join(p.name for p in (out / "warehouse" / "events").rglob("*.parquet"))
    assert day2.exists()


def test_command_once_prints_the_warning_and_exits(tmp_path, gazetteer_path, monkeypatch, capsys):
    monkeypatch.setenv("RISKWATCH_HMAC_KEY", "test-key")
    write_file(tmp_path / "inbox", "day1.csv", [GATHERING])
    args = ["stream", "--inbox", str(tmp_path / "inbox"), "--gazetteer", gazetteer_path, "--out",
            str(tmp_path / "out"), "--once"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "orange" in printed and "聚集" in printed and "warnings raised: 1" in printed
    assert main(args) == 0
    assert "warnings raised: 0" in capsys.readouterr().out
    assert list((tmp_path / "out" / "warehouse" / "alerts").glob("month=2026-10/*.parquet"))
