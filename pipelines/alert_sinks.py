"""Where warnings go: JSON lines and Parquet under warehouse/alerts/, and a group-robot webhook.

``alerts.jsonl`` is the durable set of raised warnings: an alert id found there is never written
or sent again, whichever process raised it. The webhook posts WeCom/DingTalk group-robot markdown
(``{"msgtype": "markdown", "markdown": {...}}``), retries with backoff, and appends what it could
not deliver to a dead-letter file for a person to resend.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

import schemas
from pipelines.normalise import TZ

LOG = logging.getLogger(__name__)
_TS = pa.timestamp("ms", tz=schemas.TIMEZONE)
ALERT_SCHEMA = pa.schema([
    pa.field("alert_id", pa.string(), nullable=False),
    pa.field("raised_at", _TS, nullable=False),
    pa.field("level", pa.string(), nullable=False),
    pa.field("township_code", pa.string()),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("window_start", _TS, nullable=False),
    pa.field("window_end", _TS, nullable=False),
    pa.field("observed", pa.int64()),
    pa.field("expected", pa.float64()),
    pa.field("reasons", pa.list_(pa.string())),
    pa.field("event_ids", pa.list_(pa.string())),
    pa.field("rule", pa.string()),
    pa.field("score", pa.float64()),
])
_TIME_FIELDS = ("raised_at", "window_start", "window_end")
LEVEL_TITLES_ZH = {"red": "红色预警（I级）", "orange": "橙色预警（II级）", "yellow": "黄色预警（III级）",
                   "blue": "蓝色预警（IV级）"}
LEVEL_COLOURS = {"red": "#d9001b", "orange": "#f59a23", "yellow": "#c9a100", "blue": "#1e6fd9"}


def alerts_dir(out_dir) -> Path:
    return Path(out_dir) / "warehouse" / "alerts"


def to_record(alert: dict) -> dict:
    """Only the alert fields, in schema order (candidates carry working fields too)."""
    return {name: alert.get(name) for name in ALERT_SCHEMA.names}


def to_json_line(alert: dict) -> str:
    record = to_record(alert)
    for name in _TIME_FIELDS:
        record[name] = record[name].isoformat()
    return json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n"


def from_json_line(line: str) -> dict:
    record = json.loads(line)
    for name in _TIME_FIELDS:
        record[name] = dt.datetime.fromisoformat(record[name]).astimezone(TZ)
    return record


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it, also after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class AlertStore:
    """The durable set of raised warnings under ``<out>/warehouse/alerts/``."""

    def __init__(self, out_dir):
        self.dir = alerts_dir(out_dir)
        self.jsonl = self.dir / "alerts.jsonl"

    def raised(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        alerts = []
        with open(self.jsonl, encoding="utf-8") as f:
            for line in f:
                # A crash can leave a torn last line: that alert was not recorded, so it is raised again.
                if line.endswith("\n"):
                    alerts.append(from_json_line(line))
        return alerts

    def _repair_torn_tail(self) -> None:
        if not self.jsonl.exists() or self.jsonl.stat().st_size == 0:
            return
        with open(self.jsonl, "rb+") as f:
            data = f.read()
            if not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, alerts: list[dict], known_ids: set[str] | None = None) -> list[dict]:
        """Record warnings not recorded before; returns those (the ones to publish)."""
        known = known_ids if known_ids is not None else {a["alert_id"] for a in self.raised()}
        new = []
        for alert in alerts:
            if alert["alert_id"] not in known:
                known.add(alert["alert_id"])
                new.append(alert)
        if not new:
            return []
        self.dir.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write("".join(to_json_line(a) for a in new))
            f.flush()
            os.fsync(f.fileno())
        return new

    def write_parquet(self, alerts: list[dict], name: str) -> list[Path]:
        """One Parquet file per month of window end, named ``name`` (re-writing it is harmless)."""
        by_month: dict[str, list[dict]] = {}
        for alert in alerts:
            by_month.setdefault(alert["window_end"].strftime("%Y-%m"), []).append(to_record(alert))
        paths = []
        for month, records in sorted(by_month.items()):
            table = pa.Table.from_pylist(records, schema=ALERT_SCHEMA)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            path = self.dir / f"month={month}" / f"{name}.parquet"
            write_atomic(path, sink.getvalue().to_pybytes())
            paths.append(path)
        return paths


# ---------------------------------------------------------------------------------------------
# Group-robot webhook


def markdown(alert: dict) -> str:
    """The message a task force reads in its WeCom/DingTalk group."""
    domain = schemas.domain_names_zh().get(alert["domain"], alert["domain"])
    level = alert["level"]
    title = LEVEL_TITLES_ZH.get(level, level)
    start = alert["window_start"].astimezone(TZ)
    end = alert["window_end"].astimezone(TZ)
    period = (f"{start:%m月%d日 %H:%M}" if start == end else f"{start:%m月%d日 %H:%M} 至 {end:%m月%d日 %H:%M}")
    lines = [
        f'### <font color="{LEVEL_COLOURS.get(level, "#333333")}">{title}</font> {domain}',
        f"> 乡镇（街道）：{alert.get('township_code') or '未解析'}",
        f"> 时段：{period}",
        f"> 事件数：{alert['observed']}" + ("" if alert.get("expected") is None else f"（预期 {alert['expected']:.1f}）"),
    ]
    lines += [f"- {reason}" for reason in alert.get("reasons") or ()]
    ids = alert.get("event_ids") or []
    shown = "、".join(ids[:5]) + (f" 等{len(ids)}条" if len(ids) > 5 else "")
    lines.append(f"相关记录：{shown}")
    lines.append(f"预警编号：{alert['alert_id']}")
    return "\n".join(lines)


def robot_message(alert: dict) -> dict:
    title = f"{LEVEL_TITLES_ZH.get(alert['level'], alert['level'])} {alert['domain']}"
    # WeCom reads markdown.content, DingTalk markdown.title + markdown.text: one body serves both.
    text = markdown(alert)
    return {"msgtype": "markdown", "markdown": {"title": title, "content": text, "text": text}}


class WebhookNotifier:
    """POSTs each warning; after ``retries`` failed attempts the warning goes to the dead letter."""

    def __init__(self, url: str, dead_letter: Path, retries: int = 4, backoff_s: float = 0.5,
                 timeout_s: float = 5.0, sleep=time.sleep):
        self.url = url
        self.dead_letter = Path(dead_letter)
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.sleep = sleep

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = response.read()
        # The robots answer HTTP 200 with {"errcode": N} when they refuse a message.
        try:
            answer = json.loads(payload or b"{}")
        except ValueError:
            return
        if isinstance(answer, dict) and answer.get("errcode", 0) != 0:
            raise RuntimeError(f"robot refused: errcode={answer.get('errcode')} {answer.get('errmsg', '')}")

    def deliver(self, alert: dict) -> bool:
        body = json.dumps(robot_message(alert), ensure_ascii=False).encode("utf-8")
        error = None
        for attempt in range(self.retries):
            try:
                self._post(body)
                return True
            except (OSError, urllib.error.URLError, RuntimeError) as exc:
                error = exc
                LOG.warning("webhook attempt %d/%d for %s failed: %s", attempt + 1, self.retries,
                            alert["alert_id"], exc)
                if attempt + 1 < self.retries:
                    self.sleep(self.backoff_s * 2 ** attempt)
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letter, "a", encoding="utf-8") as f:
            entry = json.loads(to_json_line(alert))
            entry["error"] = f"{type(error).__name__}: {error}"
            entry["url"] = self.url
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return False


def dead_letter_path(out_dir) -> Path:
    return alerts_dir(out_dir) / "undelivered.jsonl"


def _ids_in(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with open(path, encoding="utf-8") as f:
        return {json.loads(line)["alert_id"] for line in f if line.endswith("\n")}


def deliver_pending(store: AlertStore, notifier: WebhookNotifier) -> tuple[int, int]:
    """Send every recorded warning not yet sent nor dead-lettered (an outbox: a crash between
    recording and sending delays the message, never loses it). Returns (sent, undelivered)."""
    delivered = store.dir / "delivered.jsonl"
    done = _ids_in(delivered) | _ids_in(notifier.dead_letter)
    sent = failed = 0
    for alert in store.raised():
        if alert["alert_id"] in done:
            continue
        if notifier.deliver(alert):
            with open(delivered, "a", encoding="utf-8") as f:
                f.write(json.dumps({"alert_id": alert["alert_id"]}) + "\n")
            sent += 1
        else:
            failed += 1
    return sent, failed


class PublishAlerts(beam.DoFn):
    """Records each new warning (JSON lines at once, Parquet per bundle) and sends it.

    For the streaming pipeline; the embedded runner calls ``AlertStore`` itself after each run.
    """

    def __init__(self, out_dir: str, webhook_url: str | None = None):
        self.out_dir = out_dir
        self.webhook_url = webhook_url
        self.published = Metrics.counter("alerts", "published")
        self.undelivered = Metrics.counter("alerts", "undelivered")

    def setup(self):
        self.store = AlertStore(self.out_dir)
        self.known = {a["alert_id"] for a in self.store.raised()}
        self.notifier = (WebhookNotifier(self.webhook_url, dead_letter_path(self.out_dir))
                         if self.webhook_url else None)

    def start_bundle(self):
        self.bundle = []

    def process(self, alert):
        for new in self.store.append([alert], self.known):
            self.bundle.append(new)
            self.published.inc()
            if self.notifier and not self.notifier.deliver(new):
                self.undelivered.inc()
            yield new

    def finish_bundle(self):
        if self.bundle:
            self.store.write_parquet(self.bundle, f"stream-{self.bundle[0]['alert_id']}")
