"""Each quality check catches its planted fault on small realistic batches; a clean month passes.

One month carries every fault, each in its own file (or feed), so one run checks them all and each
test asserts that its fault is found where it was planted — and that nothing else is."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import yaml

from quality import scorecard
from quality.monthly import check_month
from quality.policy import BUNDLED_POLICY, load_policy
from tests.quality_events import make_month

MONTH = "2026-10"
NAMES = {"police_110": "police_110/110警情_{:%Y%m%d}.csv", "hotline_12345": "hotline_12345/12345工单_{:%Y%m%d}.xlsx",
         "grid": "grid/网格事件_{:%Y%m%d}.jsonl"}
MISSING = NAMES["police_110"].format(dt.date(2026, 10, 3))
TOO_FEW = NAMES["hotline_12345"].format(dt.date(2026, 10, 14))
DUPLICATED = NAMES["police_110"].format(dt.date(2026, 10, 15))
EMPTIED = NAMES["hotline_12345"].format(dt.date(2026, 10, 10))
VANISHED = NAMES["police_110"].format(dt.date(2026, 10, 20))
REJECTS = NAMES["hotline_12345"].format(dt.date(2026, 10, 9))


@pytest.fixture(scope="module")
def clean():
    # Two months of history before October, at a volume where daily batches carry the share and
    # profile checks (a small county's feeds).
    return make_month(dt.date(2026, 8, 1), 92, seed=7, scale=5.0)


@pytest.fixture(scope="module")
def faulty(clean):
    events = clean[clean["feed_file"] != MISSING]
    events = pd.concat([events[events["feed_file"] != TOO_FEW], events[events["feed_file"] == TOO_FEW].head(20)])
    events = pd.concat([events, events[events["feed_file"] == DUPLICATED]], ignore_index=True)
    events.loc[events["feed_file"] == EMPTIED, "handling_unit"] = None
    events.loc[(events["feed_file"] == VANISHED) & (events["source_category"] == "刑事"), "source_category"] = "治安"
    # The grid platform exported October in UTC read as local time: every record 8 hours late.
    october_grid = (events["source"] == "grid") & (events["reported_at"] >= pd.Timestamp("2026-10-01", tz="Asia/Shanghai"))
    events.loc[october_grid, "reported_at"] = events.loc[october_grid, "reported_at"] + pd.Timedelta(hours=8)
    return events


@pytest.fixture(scope="module")
def quarantine():
    return [{"feed": "hotline_12345", "file": REJECTS, "line": 10 + i, "field": "reported_at", "reason": "bad_time",
             "message": f"第{10 + i}行“来电时间”无法识别", "raw": "13812345678,张三"} for i in range(40)]


@pytest.fixture(scope="module")
def report(faulty, quarantine):
    return check_month(faulty, MONTH, load_policy(), quarantine=quarantine)


def found(report, check):
    return [f for f in report.findings if f["check"] == check]


def test_clean_month_passes(clean):
    report = check_month(clean, MONTH, load_policy())
    assert report.findings == [] and report.gaps == []
    assert report.exit_code == 0
    assert report.rows["police_110"] > 5000


def test_missing_day_and_far_too_little_are_gaps(report):
    gaps = sorted(found(report, "data_gap"), key=lambda f: f["details"]["date"])
    assert [(f["feed"], f["details"]["township_code"], f["details"]["date"]) for f in gaps] == [
        ("police_110", None, "2026-10-03"), ("hotline_12345", None, "2026-10-14")]
    # The missing file's day still has a few late records delivered in the next days' files.
    assert gaps[0]["observed"] < 0.1 * gaps[0]["expected"] and gaps[0]["expected"] > 150
    assert 20 <= gaps[1]["observed"] < 0.2 * gaps[1]["expected"]
    sentence = scorecard.describe(gaps[0])
    assert sentence.startswith("110接处警记录：10月3日仅有") and sentence.endswith("疑似数据断供")
    banner = scorecard.gap_banner(report.gaps)
    assert banner.startswith("数据缺口：") and "110接处警记录10月3日" in banner and "评分标记为不完整" in banner


def test_far_too_little_is_caught_by_row_count(report):
    [finding] = found(report, "row_count")
    assert finding["batch"] == TOO_FEW and finding["observed"] == 20 and finding["expected"] > 150
    assert "仅有20条记录" in scorecard.describe(finding)


def test_duplicated_export(report, faulty):
    per_file = [f for f in found(report, "id_unique") if f["batch"] == DUPLICATED]
    assert per_file[0]["count"] == (faulty["feed_file"] == DUPLICATED).sum()
    month_wide = [f for f in found(report, "id_unique") if f["batch"] is None]
    assert [f["feed"] for f in month_wide] == ["police_110"]
    assert "疑似重复导出" in scorecard.describe(per_file[0])
    assert report.exit_code == 1          # id_unique is critical in the bundled policy


def test_column_that_went_empty(report, faulty):
    [finding] = found(report, "key_field_empty")
    assert (finding["field"], finding["batch"]) == ("handling_unit", EMPTIED)
    assert finding["count"] == (faulty["feed_file"] == EMPTIED).sum()
    assert len(finding["examples"]) == 3 and all(e["file"] == EMPTIED for e in finding["examples"])
    assert "‘承办单位’" in scorecard.describe(finding)


def test_category_that_vanished(report):
    vanished = found(report, "category_vanished")
    assert [(f["batch"], list(f["details"]["missing"])) for f in vanished] == [(VANISHED, ["刑事"])]
    assert "“刑事”" in scorecard.describe(vanished[0])


def test_feed_shifted_by_eight_hours(report, faulty):
    grid_files = set(faulty.loc[(faulty["source"] == "grid") & (faulty["feed_file"] >= "grid/网格事件_20261001"), "feed_file"])
    for check in ("period", "hour_profile"):
        flagged = {f["batch"] for f in found(report, check)}
        assert flagged <= grid_files and len(flagged) >= 0.8 * len(grid_files), check
    shifts = [f["details"]["shift_hours"] for f in found(report, "hour_profile")]
    assert sorted(shifts)[len(shifts) // 2] == 8        # ~70 grid records a day: single days are noisy
    finding = next(f for f in found(report, "hour_profile") if f["details"]["shift_hours"] == 8)
    assert "偏移约8小时" in scorecard.describe(finding)


def test_quarantine_share_names_reasons_not_raw_rows(report):
    [finding] = found(report, "quarantine_share")
    assert (finding["batch"], finding["count"], finding["details"]["reasons"]) == (REJECTS, 40, {"bad_time": 40})
    assert "时间无法识别40条" in scorecard.describe(finding)
    assert "13812345678" not in str(finding) and "张三" not in str(finding)


def test_nothing_else_is_flagged(report):
    expected = {"data_gap", "row_count", "id_unique", "key_field_empty", "category_vanished", "period", "hour_profile", "quarantine_share"}
    assert {f["check"] for f in report.findings} == expected


def test_policy_off_silences_a_check(faulty, tmp_path):
    data = yaml.safe_load(BUNDLED_POLICY.read_text(encoding="utf-8"))
    data["severity"].update(id_unique="off", period="warn", hour_profile="warn")
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    report = check_month(faulty, MONTH, load_policy(path))
    assert not found(report, "id_unique")
    assert report.exit_code == 0          # what remains only warns


def test_every_file_with_rejected_rows_reaches_the_scorecard(report):
    [entry] = report.rejected["hotline_12345"]
    assert (entry["file"], entry["quarantined"], entry["reasons"]) == (REJECTS, 40, {"bad_time": 40})
    page = scorecard.html_fragment(report.findings, report.rows, rejected=report.rejected)
    assert "共 40 条记录被退回" in page and "时间无法识别40条" in page
    assert "13812345678" not in page and "张三" not in page


def test_a_first_month_is_not_measured_against_its_own_late_records():
    """A county's first monthly files carry a few late records of the weeks before: those are no usual
    volume or hour profile (every monthly file would read as far too many records)."""
    monthly = {"police_110": "police_110/110警情_2026-10.csv", "hotline_12345": "hotline_12345/12345工单_2026-10.xlsx",
               "grid": "grid/网格事件_2026-10.jsonl"}
    events = make_month(dt.date(2026, 10, 1), 31, seed=3, scale=5.0)
    events["feed_file"] = events["source"].map(monthly)
    late = events.groupby("source").head(12).copy()
    late["event_id"] = late["event_id"] + "-late"
    late["reported_at"] = late["reported_at"] - pd.to_timedelta([3 + 2 * (i % 10) for i in range(len(late))], unit="D")
    # and, as a grid platform's reports do, a tenth of a usual day each of the last six days before
    usual = int(events[events["source"] == "grid"].groupby(events["reported_at"].dt.date).size().median())
    thick = pd.concat([events[events["source"] == "grid"].head(usual // 10).assign(
        event_id=lambda f, k=k: f["event_id"] + f"-thick{k}", reported_at=lambda f, k=k: f["reported_at"] - pd.Timedelta(days=k))
        for k in range(1, 7)])
    report = check_month(pd.concat([events, late, thick], ignore_index=True), MONTH, load_policy())
    assert report.findings == []
    # the same files a month later, the first month now the usual volume, still check the count
    november = make_month(dt.date(2026, 10, 1), 61, seed=3, scale=5.0)
    november["feed_file"] = november["source"].map(monthly)
    halved = pd.concat([november[november["reported_at"] < pd.Timestamp("2026-11-01", tz="Asia/Shanghai")],
                        november[november["reported_at"] >= pd.Timestamp("2026-11-01", tz="Asia/Shanghai")]
                        .iloc[::3].assign(feed_file=lambda f: f["source"] + "/2026-11")])
    assert {f["feed"] for f in found(check_month(halved, "2026-11", load_policy()), "row_count")} == set(monthly)
