"""Alert sinks: the durable JSONL set, Parquet, and the group-robot webhook against a local server."""
from __future__ import annotations

import http.server
import json
import threading

import pyarrow.parquet as pq
import pytest

from pipelines.alert_sinks import AlertStore, WebhookNotifier, deliver_pending, markdown
from tests.warn_fixtures import TOWNSHIP, at


def alert(n: int, level: str = "orange") -> dict:
    return {"alert_id": f"a{n}", "raised_at": at(30), "level": level, "township_code": TOWNSHIP,
            "domain": "land_demolition", "window_start": at(0), "window_end": at(24), "observed": 6,
            "expected": 1.25, "reasons": ["近24小时6起，预期约1.2起"], "event_ids": [f"grid:{i}" for i in range(7)],
            "rule": "window_24h", "score": 72.0}


@pytest.fixture()
def robot():
    """A local robot endpoint: answers each POST with the next scripted (status, errcode)."""
    received, script = [], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status, errcode = script.pop(0) if script else (200, 0)
            body = json.dumps({"errcode": errcode, "errmsg": "ok" if errcode == 0 else "bad"}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/robot/send", received, script
    server.shutdown()


def test_store_records_each_alert_once_and_survives_a_torn_line(tmp_path):
    store = AlertStore(tmp_path)
    assert [a["alert_id"] for a in store.append([alert(1), alert(2)])] == ["a1", "a2"]
    assert store.append([alert(2), alert(3)])[0]["alert_id"] == "a3"
    with open(store.jsonl, "a", encoding="utf-8") as f:
        f.write('{"alert_id": "a4", "raised')  # killed while writing
    assert [a["alert_id"] for a in store.raised()] == ["a1", "a2", "a3"]
    assert [a["alert_id"] for a in store.append([alert(4)])] == ["a4"]
    assert [a["alert_id"] for a in store.raised()] == ["a1", "a2", "a3", "a4"]
    assert store.raised()[0]["window_end"] == at(24)


def test_parquet_partitioned_by_month_of_window_end(tmp_path):
    store = AlertStore(tmp_path)
    (path,) = store.write_parquet([alert(1), alert(2, "red")], "run-1")
    assert path.parent.name == "month=2026-03"
    table = pq.read_table(path)
    assert table.column("level").to_pylist() == ["orange", "red"]
    assert table.column("event_ids").to_pylist()[0][:2] == ["grid:0", "grid:1"]


def test_markdown_is_chinese_and_names_the_domain():
    text = markdown(alert(1))
    assert "橙色预警" in text and "征地拆迁" in text and "预期 1.2" in text and "等7条" in text


def test_an_immediate_warning_claims_no_expected_count(tmp_path):
    immediate = {**alert(1), "rule": "immediate", "observed": 1, "expected": None, "score": None,
                 "reasons": ["单条记录出现聚集，涉及约40人，即时预警"], "event_ids": ["grid:1"]}
    text = markdown(immediate)
    assert "事件数：1" in text and "预期" not in text
    (path,) = AlertStore(tmp_path).write_parquet([immediate], "run-1")
    assert pq.read_table(path).column("expected").to_pylist() == [None]


def test_webhook_retries_then_delivers(robot, tmp_path):
    url, received, script = robot
    script += [(500, 0), (200, 93000)]  # a server error, then a robot refusal, then success
    notifier = WebhookNotifier(url, tmp_path / "dead.jsonl", retries=4, sleep=lambda s: None)
    assert notifier.deliver(alert(1))
    assert len(received) == 3
    assert received[-1]["msgtype"] == "markdown"
    assert "征地拆迁" in received[-1]["markdown"]["content"]
    assert not (tmp_path / "dead.jsonl").exists()


def test_undeliverable_goes_to_dead_letter_and_outbox_sends_each_once(robot, tmp_path):
    url, received, script = robot
    store = AlertStore(tmp_path)
    store.append([alert(1), alert(2)])
    script += [(200, 0)] + [(503, 0)] * 3  # a1 delivered, a2 fails every attempt
    notifier = WebhookNotifier(url, tmp_path / "dead.jsonl", retries=3, sleep=lambda s: None)
    assert deliver_pending(store, notifier) == (1, 1)
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [d["alert_id"] for d in dead] == ["a2"] and "503" in dead[0]["error"]
    assert deliver_pending(store, notifier) == (0, 0)  # neither sent again
    assert len(received) == 4


def test_unreachable_webhook_is_dead_lettered(tmp_path):
    notifier = WebhookNotifier("http://127.0.0.1:9/none", tmp_path / "dead.jsonl", retries=2, sleep=lambda s: None,
                               timeout_s=1)
    assert not notifier.deliver(alert(1))
    assert "a1" in (tmp_path / "dead.jsonl").read_text(encoding="utf-8")
