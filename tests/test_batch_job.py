"""The monthly job as a scheduler runs it: exit codes, messages, outputs, and the demo end to end."""
from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest

from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from jobs.cli import main, parse
from pipelines.options import beam_options

DATA = Path(__file__).parent / "data"
INBOX, GAZETTEER = DATA / "inbox", DATA / "gazetteer.csv"


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "hmac.key"
    path.write_text("a-county-secret\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("argv, message", [
    (["--inbox", str(INBOX), "--gazetteer", str(GAZETTEER)], "which month?"),
    (["--inbox", str(INBOX), "--gazetteer", str(GAZETTEER), "--month", "2026-13"], "is not of the form YYYY-MM"),
    (["--inbox", str(INBOX), "--gazetteer", str(GAZETTEER), "--from", "2026-10", "--to", "2026-08"], "is before --from"),
    (["--inbox", "/nonexistent/inbox", "--gazetteer", str(GAZETTEER), "--month", "2026-10"], "is not a folder"),
    (["--inbox", str(INBOX), "--gazetteer", "/nonexistent.csv", "--month", "2026-10"], "does not exist"),
])
def test_it_cannot_start_exits_2_and_says_why(argv, message, tmp_path, key_file, capsys):
    code = main(["batch", *argv, "--out", str(tmp_path / "out"), "--key-file", str(key_file)])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("separator", [[], ["--"]])
def test_runner_options_reach_beam_with_or_without_a_separator(separator):
    _, _, args, beam_args = parse(["batch", "--inbox", str(INBOX), "--gazetteer", str(GAZETTEER), "--out", "out",
                                   "--month", "2026-10", *separator,
                                   "--runner=FlinkRunner", "--direct_num_workers=2"])
    options = beam_options(beam_args)
    assert args.month == "2026-10"
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.view_as(DirectOptions).direct_num_workers == 2


def test_no_key_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RISKWATCH_HMAC_KEY", raising=False)
    code = main(["batch", "--inbox", str(INBOX), "--gazetteer", str(GAZETTEER), "--month", "2026-10",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "No HMAC key" in capsys.readouterr().err


def test_a_month_writes_report_scores_and_a_balanced_manifest(tmp_path, key_file, capsys):
    out = tmp_path / "out"
    argv = ["batch", "--inbox", str(INBOX), "--gazetteer", str(GAZETTEER), "--month", "2026-10",
            "--out", str(out), "--key-file", str(key_file)]
    assert main(argv) == 0
    report = out / "reports" / "2026-10"
    assert {p.name for p in report.iterdir()} == {"report.html", "topics.xlsx", "topics.json"}
    assert (out / "warehouse" / "scores" / "month=2026-10" / "scores.parquet").exists()
    [manifest_path] = (out / "manifests").glob("batch-*.json")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["totals"]["rows_read"] == 40
    assert all(f["balanced"] for f in manifest["files"])
    assert manifest["model"]["model_version"] and manifest["months_done"][0]["month"] == "2026-10"
    # the scores, written by a pipeline of their own after the Events, are listed with the rest
    [scores] = [w for w in manifest["written"] if w["path"] == "warehouse/scores/month=2026-10/scores.parquet"]
    assert scores["rows"] == pq.read_metadata(out / scores["path"]).num_rows > 0
    # a first month holds no history to expect from: no expected count, in the scores or the workbook
    assert pq.read_table(out / scores["path"]).column("expected").null_count == scores["rows"]
    sheet = openpyxl.load_workbook(report / "topics.xlsx")["风险评分"]
    assert {row[6] for row in sheet.iter_rows(min_row=2, values_only=True)} == {"—"}
    assert any(w["path"].startswith("warehouse/events/") for w in manifest["written"])
    first = json.loads((report / "topics.json").read_text(encoding="utf-8"))
    assert main([*argv, "--full"]) == 0  # a re-run replaces the month
    again = json.loads((report / "topics.json").read_text(encoding="utf-8"))
    assert [t["title"] for t in again["topics"]] == [t["title"] for t in first["topics"]]
    assert str(report / "report.html") in capsys.readouterr().out


def test_demo_simulates_runs_the_month_and_prints_topics(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--start", "2026-07", "--months", "3",
                 "--population", "20000", "--top", "5"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "接入对账" in printed and "2026-09 月度研判选题清单" in printed
    assert "优先度" in printed  # the list (研判选题 / 观察清单) and the topic's own priority are shown
    assert (tmp_path / "demo" / "out" / "reports" / "2026-09" / "report.html").exists()
    assert (tmp_path / "demo" / "hmac.key").stat().st_mode & 0o077 == 0
