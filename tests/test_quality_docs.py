"""`riskwatch quality` on a real warehouse directory: data docs that render offline in a real
headless Chromium (no request leaves the machine), the scorecard as HTML and XLSX, the exit code."""
from __future__ import annotations

import datetime as dt
import json

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.cli import main
from quality import docs
from tests.chromium import Chromium
from tests.quality_events import make_month

@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """An ingest output directory: two months of Parquet events, one duplicated export in October."""
    root = tmp_path_factory.mktemp("out")
    events = make_month(dt.date(2026, 9, 1), 61, seed=3, scale=2.0)
    dup = events[events["feed_file"] == "police_110/110警情_20261012.csv"]
    events = pd.concat([events, dup], ignore_index=True)
    for month, part in events.groupby(events["reported_at"].dt.strftime("%Y-%m")):
        target = root / "warehouse" / "events" / f"month={month}"
        target.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, schema=schemas.event_arrow_schema(), preserve_index=False), target / "part-0.parquet")
    (root / "quarantine").mkdir()
    with open(root / "quarantine" / "ingest.jsonl", "w", encoding="utf-8") as f:
        for i in range(12):
            f.write(json.dumps({"feed": "grid", "file": "grid/网格事件_20261005.jsonl", "line": i + 2, "field": "status",
                                "reason": "unknown_value", "message": f"第{i + 2}行“处置状态”为“已阅”，不是可识别的取值",
                                "raw": "13900001111"}, ensure_ascii=False) + "\n")
    return root


@pytest.fixture(scope="module")
def quality_out(ingested):
    code = main(["quality", "--warehouse", str(ingested), "--month", "2026-10"])
    return code, ingested / "quality" / "2026-10"


def test_command_writes_outputs_and_fails_on_critical(quality_out):
    code, out = quality_out
    assert code == 1                       # the duplicated export is critical
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    checks = {(f["feed"], f["check"]) for f in summary["findings"]}
    assert ("police_110", "id_unique") in checks and ("grid", "quarantine_share") in checks
    html = (out / "scorecard.html").read_text(encoding="utf-8")
    assert html.startswith('<section class="rw-quality">') and "110接处警记录" in html and "疑似重复导出" in html
    assert "13900001111" not in html
    sheet = openpyxl.load_workbook(out / "scorecard.xlsx")["数据质量"]
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["部门数据", "级别", "检查项", "问题说明"]
    assert any("编号重复" in (row[2] or "") for row in sheet.iter_rows(min_row=2, values_only=True))


def test_data_docs_reference_no_external_asset(quality_out):
    _, out = quality_out
    site = out / "data_docs"
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 10
    assert docs.external_urls(site) == []
    for asset in docs.vendor_manifest()["assets"]:
        assert (site / "static" / "vendor" / asset["path"]).is_file(), asset["path"]


def test_data_docs_render_offline_in_chromium(quality_out):
    _, out = quality_out
    path = next((out / "data_docs" / "validations" / "police_110" / "batch").rglob("*.html"))
    with Chromium() as browser:
        page = browser.open(path.as_uri())
        state = json.loads(page.evaluate(
            "JSON.stringify({jquery: typeof jQuery, table: typeof jQuery !== 'undefined' && typeof jQuery.fn.bootstrapTable,"
            " vega: typeof vegaEmbed, wrapped: document.querySelectorAll('.bootstrap-table').length,"
            " text: document.body.innerText})"))
        urls = page.requested_urls()
        url_of = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in page.events
                  if e["method"] == "Network.requestWillBeSent"}
        # The browser asks for a favicon on its own, at a time of its choosing; the page never does.
        failed = [(url_of.get(e["params"]["requestId"]), e["params"]["errorText"]) for e in page.events
                  if e["method"] == "Network.loadingFailed"
                  and not (url_of.get(e["params"]["requestId"]) or "").endswith("/favicon.ico")]
        errors = [e for e in page.console_errors() if "favicon.ico" not in e]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), [u for u in urls if not u.startswith("file://")]
    assert failed == [] and errors == []
    assert state["jquery"] == "function" and state["table"] == "function" and state["vega"] == "function"
    assert state["wrapped"] >= 1                      # bootstrap-table ran and wrapped the result tables
    assert "expect_column_values_to_be_between" in state["text"] or "duplicate_ids" in state["text"]
