"""`riskwatch quality` on a real warehouse directory: data docs that render offline in a real
headless Chromium (no request leaves the machine), the scorecard as HTML and XLSX, the exit code."""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.cli import main
from quality import docs
from tests.quality_events import make_month

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


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


def _high(fd: int) -> int:
    """The same pipe end on a descriptor above 19, clear of the 3 and 4 Chromium wants."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 20)
    os.close(fd)
    return moved


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out): no port, no extra package."""

    def __init__(self, user_data_dir: Path):
        # Chromium expects the pipe on fds 3 and 4; /usr/bin/chromium is a shell wrapper, so the
        # fds are moved there by bash's redirections right before it execs.
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _high(to_chrome_r), _high(from_chrome_w)
        command = " ".join(shlex.quote(a) for a in [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={user_data_dir}",
            "--remote-debugging-pipe", "about:blank"])
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command} 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-"],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._id, self.events = b"", 0, []

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.events.append(self._read())

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        self.proc.wait(timeout=20)


def test_data_docs_render_offline_in_chromium(quality_out, tmp_path):
    _, out = quality_out
    page = next((out / "data_docs" / "validations" / "police_110" / "batch").rglob("*.html"))
    browser = DevTools(tmp_path / "chromium-profile")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=page.as_uri())
        browser.wait_for("Page.loadEventFired", timeout=60)
        rendered = browser.call("Runtime.evaluate", session, returnByValue=True, expression=(
            "JSON.stringify({jquery: typeof jQuery, table: typeof jQuery !== 'undefined' && typeof jQuery.fn.bootstrapTable,"
            " vega: typeof vegaEmbed, wrapped: document.querySelectorAll('.bootstrap-table').length,"
            " text: document.body.innerText})"))["result"]["value"]
    finally:
        browser.close()
    state = json.loads(rendered)
    urls = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    url_of = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in browser.events
              if e.get("method") == "Network.requestWillBeSent"}
    # The browser asks for a favicon on its own, at a time of its choosing; the page never does.
    failed = [(url_of.get(e["params"]["requestId"]), e["params"]["errorText"]) for e in browser.events
              if e.get("method") == "Network.loadingFailed"
              and not (url_of.get(e["params"]["requestId"]) or "").endswith("/favicon.ico")]
    errors = [e["params"] for e in browser.events if e.get("method") in ("Runtime.exceptionThrown",)
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), [u for u in urls if not u.startswith("file://")]
    assert failed == [] and errors == []
    assert state["jquery"] == "function" and state["table"] == "function" and state["vega"] == "function"
    assert state["wrapped"] >= 1                      # bootstrap-table ran and wrapped the result tables
    assert "expect_column_values_to_be_between" in state["text"] or "duplicate_ids" in state["text"]
