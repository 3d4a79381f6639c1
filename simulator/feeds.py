"""Department exports: 12345 as XLSX, 110 as GBK CSV, grid as JSON lines, one file per month or day.

Each file is written in one of the department header sets of ``data/header_sets.yaml`` (the set
changes between months, as departments change systems). The writer returns the truth line of every
data row it wrote, with the row's place in the file.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import xlsxwriter
import yaml

import schemas
from simulator import mess
from simulator.county import County
from simulator.volumes import DAY, Calendar

DATA_DIR = Path(__file__).resolve().parent / "data"
FILE_NAMES = {"hotline_12345": "12345工单_{key}.xlsx", "police_110": "110警情_{key}.csv", "grid": "网格事件_{key}.jsonl"}
CSV_ENCODING = "gbk"
# Files carry no creation time of their own: a fixed one keeps runs byte-identical.
XLSX_CREATED = dt.datetime(2020, 1, 1)
EXCEL_EPOCH_DAYS = 25569  # 1970-01-01 as an Excel serial date
SHANGHAI_OFFSET = 8 * 3600
DISPOSITIONS = ["已处理", "当场调解", "现场警告", "移交相关部门", "受理为治安案件", "立为刑事案件", "已救助", "无效警情", "已疏导", "告知当事人诉讼途径"]


@lru_cache(maxsize=None)
def header_sets() -> dict:
    with open(DATA_DIR / "header_sets.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def _normal_header(h: str) -> str:
    return h.strip().lower()


@lru_cache(maxsize=None)
def header_fields(feed: str) -> dict[str, str]:
    """Header → contract field name, from the contract's aliases (the ingest's own mapping)."""
    return {_normal_header(a): f["name"] for f in schemas.feed_contract(feed)["fields"] for a in f["aliases"]}


@lru_cache(maxsize=None)
def contract_value(feed: str, field_name: str, key: str, vocab: str) -> str:
    """The word a system of the given vocabulary writes for a canonical value (e.g. status closed)."""
    field = next(f for f in schemas.feed_contract(feed)["fields"] if f["name"] == field_name)
    words = field["values"][key]
    if vocab == "en":
        return next(w for w in words if w.isascii())
    zh = [w for w in words if not w.isascii()]
    return zh[1] if vocab == "zh_alt" and len(zh) > 1 else zh[0]


def header_schedule(months: int, rng: np.random.Generator) -> dict[str, list[int]]:
    """Per feed, the header set of each month: a department changes system once, sometimes twice."""
    out = {}
    for feed in schemas.FEEDS:
        n_sets = len(header_sets()[feed])
        current = int(rng.integers(n_sets))
        switches = set()
        if months >= 2:
            switches.add(int(rng.integers(1, months)))
            if months >= 8 and rng.random() < 0.5:
                switches.add(int(rng.integers(1, months)))
        plan = []
        for m in range(months):
            if m in switches:
                current = (current + 1 + int(rng.integers(n_sets - 1))) % n_sets
            plan.append(current)
        out[feed] = plan
    return out


@dataclass
class FileSpec:
    """One export file: its rows (record, kind: 0 original / 1 re-export in the next file / 2 again
    in the same file, planted reason) and layout."""

    feed: str
    rel: str
    header_set: dict
    title: list[str]
    totals: bool
    export: int
    records: list[int]
    kinds: list[int]
    reasons: list[str]
    first_line: int


@dataclass
class FeedTable:
    """Per record values that do not depend on the file a record lands in."""

    source_id: list[str]
    iso: np.ndarray  # 'YYYY-MM-DD HH:MM:SS' wall clock
    ts: np.ndarray
    closed_ts: np.ndarray
    closed_iso: list[str]
    arrival: np.ndarray
    phone: list[str]
    caller_name: list[str]
    category: list[str]
    text: list[str]
    address: list[str]
    township_field: list[str]
    handling_unit: list[str]
    lon: np.ndarray
    lat: np.ndarray
    grid_code: list[str]
    reporter: list[str]
    reporter_id: list[str]
    people: np.ndarray
    satisfaction: list[str]
    disposition: list[str]
    truth_base: list[tuple]  # feed, source_id, domain, episode_id, incident_key, township_code, village_code, reported_at


def format_time(iso: str, ts: int, style: str):
    """A wall-clock time in a department's style (excel: an Excel serial number for a date cell)."""
    if style == "iso":
        return iso
    y, mo, d, h, mi, s = iso[:4], int(iso[5:7]), int(iso[8:10]), iso[11:13], iso[14:16], iso[17:19]
    if style == "slash":
        return f"{y}/{mo}/{d} {h}:{mi}"
    if style == "cn":
        return f"{y}年{mo}月{d}日{h}时{mi}分"
    if style == "compact":
        return f"{y}{mo:02d}{d:02d}{h}{mi}{s}"
    if style == "epoch_ms":
        return (ts - SHANGHAI_OFFSET) * 1000
    if style == "excel":
        return EXCEL_EPOCH_DAYS + ts / DAY
    raise ValueError(f"unknown time style {style!r}")


def iso_times(ts: np.ndarray) -> np.ndarray:
    return np.char.replace(np.datetime_as_string(ts.astype("datetime64[s]")), "T", " ")


class FeedWriter:
    """Plans and writes one feed's files for a run, and gives their truth lines."""

    def __init__(self, feed: str, county: County, cal: Calendar, table: FeedTable, files: str, schedule: list[int]):
        self.feed, self.county, self.cal, self.t, self.files, self.schedule = feed, county, cal, table, files, schedule
        self.fields = header_fields(feed)
        self._columns: dict[tuple, list[str]] = {}

    # -- which file, which export time -------------------------------------------------------
    def _period(self, seconds: np.ndarray) -> np.ndarray:
        days = seconds // DAY - self.cal.epoch_day0
        if self.files == "daily":
            return days
        month_index = np.array([(d.year - self.cal.first.year) * 12 + d.month - self.cal.first.month for d in self.cal.dates()])
        return month_index[days]

    def _period_info(self, period: int) -> tuple[str, int, int]:
        """File key, export time (seconds) and month index of a period."""
        if self.files == "daily":
            day = self.cal.first + dt.timedelta(days=int(period))
            key, end = day.isoformat(), day + dt.timedelta(days=1)
        else:
            y, m = divmod(self.cal.first.month - 1 + int(period), 12)
            key = f"{self.cal.first.year + y}-{m + 1:02d}"
            end = dt.date(self.cal.first.year + (m + 1 == 12) + y, (m + 1) % 12 + 1, 1)
        export = (end - dt.date(1970, 1, 1)).days * DAY + 8 * 3600
        month_index = (int(key[:4]) - self.cal.first.year) * 12 + int(key[5:7]) - self.cal.first.month
        return key, export, month_index

    # -- values ---------------------------------------------------------------------------
    def _status(self, i: int, export: int) -> str:
        closed = self.t.closed_ts[i]
        if closed <= export:
            return "returned" if (self.t.ts[i] % 53) == 0 else "closed"
        return "in_progress" if self.t.ts[i] + 7200 <= export else "open"

    def values(self, i: int, export: int, header_set: dict) -> dict:
        """Contract field → cell value of record i as the header set's system exports it."""
        t, style, vocab = self.t, header_set["time"], header_set["vocab"]
        status = self._status(i, export)
        closed = status in ("closed", "returned")
        v = {
            "source_id": t.source_id[i],
            "reported_at": format_time(t.iso[i], int(t.ts[i]), style),
            "text": t.text[i],
        }
        if self.feed == "hotline_12345":
            v.update(
                caller_phone=t.phone[i], caller_name=t.caller_name[i], source_category=t.category[i],
                address=t.address[i], township=t.township_field[i], handling_unit=t.handling_unit[i],
                status=contract_value(self.feed, "status", status, vocab),
                closed_at=format_time(*self._closed(i), style) if closed else "",
                satisfaction=contract_value(self.feed, "satisfaction", t.satisfaction[i] if closed else "unrated", vocab),
            )
        elif self.feed == "police_110":
            big, _, small = t.category[i].partition("/")
            v.update(
                caller_phone=t.phone[i], caller_name=t.caller_name[i], source_category=big,
                source_subcategory=small, address=t.address[i], lon=f"{t.lon[i]:.6f}", lat=f"{t.lat[i]:.6f}",
                handling_unit=t.handling_unit[i], disposition=t.disposition[i],
            )
        else:
            big, _, small = t.category[i].partition("/")
            v.update(
                grid_code=t.grid_code[i], reporter_id=t.reporter_id[i] if vocab == "en" else t.reporter[i],
                source_category=big, source_subcategory=small, people_involved=int(t.people[i]),
                status=contract_value(self.feed, "status", status, vocab),
                closed_at=format_time(*self._closed(i), style) if closed else "",
            )
        return v

    def _closed(self, i: int) -> tuple[str, int]:
        return self.t.closed_iso[i], int(self.t.closed_ts[i])

    def _break(self, v: dict, reason: str, k: int, header_set: dict) -> dict:
        """Damage that makes the row fail validation with exactly `reason` (value-level reasons;
        byte- and line-level ones are applied by the format writers)."""
        if reason == "bad_time":
            v["reported_at"] = mess.bad_time_value(str(self.t.iso[v["_i"]]), k)
        elif reason == "future_time":
            year = int(self._year_of(v))
            v["reported_at"] = self._with_year(v["reported_at"], year, mess.future_year(year), header_set["time"])
            if "closed_at" in v:
                v["closed_at"] = ""
        elif reason == "missing_field":
            field = mess.MISSING_FIELDS[self.feed][k % len(mess.MISSING_FIELDS[self.feed])]
            v[field] = None if (self.feed == "grid" and k % 2) else ""
        elif reason == "unknown_value":
            field = "satisfaction" if (self.feed == "hotline_12345" and k % 3 == 2) else "status"
            v[field] = mess.UNKNOWN_STATUS[k % len(mess.UNKNOWN_STATUS)] if field == "status" else "一般般"
        return v

    def _year_of(self, v: dict) -> int:
        return int(self.t.iso[v["_i"]][:4])

    @staticmethod
    def _with_year(value, year: int, new_year: int, style: str):
        if style == "epoch_ms":
            return value + int((dt.datetime(new_year, 1, 1) - dt.datetime(year, 1, 1)).total_seconds() * 1000)
        if style == "excel":
            return value + (dt.date(new_year, 1, 1) - dt.date(year, 1, 1)).days
        return value.replace(str(year), str(new_year), 1)

    # -- files ----------------------------------------------------------------------------
    def plan(self, index: np.ndarray, broken: np.ndarray, dup_index: np.ndarray, dup_next: np.ndarray,
             rng: np.random.Generator) -> list["FileSpec"]:
        """The feed's files for records `index`: which rows go where, in which order and line.

        Repeated exports go into the next file (with the status they have by then) or again at the
        end of the same file. Line numbers are fixed here, so the truth needs no written file."""
        period = self._period(self.t.arrival[index])
        n_periods = int(period.max()) + 1 if len(index) else 0
        per_file: dict[int, list[tuple[int, int]]] = {}  # period → (record, kind); kind 0 original, 1 next file, 2 same file
        for rec, p in zip(index.tolist(), period.tolist()):
            per_file.setdefault(p, []).append((rec, 0))
        rec_period = dict(zip(index.tolist(), period.tolist()))
        same_file: dict[int, list[int]] = {}
        for rec, nxt in zip(dup_index.tolist(), dup_next.tolist()):
            p = rec_period[rec]
            if nxt and p + 1 < n_periods:
                per_file.setdefault(p + 1, []).append((rec, 1))
            else:
                same_file.setdefault(p, []).append(rec)
        specs = []
        for p in sorted(set(per_file) | set(same_file)):
            entries = sorted(per_file.get(p, []), key=lambda e: (self.t.ts[e[0]], e[0]))
            entries += [(rec, 2) for rec in same_file.get(p, [])]
            key, export, month_index = self._period_info(p)
            hs = header_sets()[self.feed][self.schedule[min(month_index, len(self.schedule) - 1)]]
            title = [line.format(county=self.county.name, exported=_iso(export)) for line in hs["title"]]
            specs.append(FileSpec(
                feed=self.feed, rel=f"{self.feed}/{FILE_NAMES[self.feed].format(key=key)}", header_set=hs,
                title=title, totals=bool(rng.random() < hs["totals"]), export=export,
                records=[rec for rec, _ in entries], kinds=[kind for _, kind in entries],
                reasons=[broken[rec] if kind == 0 else "" for rec, kind in entries],
                first_line=1 if self.feed == "grid" else len(title) + 2,
            ))
        return specs

    def truth(self, specs: list["FileSpec"]) -> list[tuple]:
        """Truth rows (TRUTH_COLUMNS order) of the planned files."""
        located: dict[int, str] = {}
        rows = []
        for spec in specs:
            for k, (rec, kind, reason) in enumerate(zip(spec.records, spec.kinds, spec.reasons)):
                feed, source_id, domain, episode, incident, town, village, reported = self.t.truth_base[rec]
                line = spec.first_line + k
                if kind == 0:
                    located[rec] = f"{spec.rel}:{line}"
                rows.append((feed, source_id, spec.rel, line, domain, episode, incident, town, village, reported,
                             reason, "" if kind == 0 else located[rec]))
        return rows

    def write_file(self, inbox: Path, spec: "FileSpec") -> None:
        (inbox / spec.rel).parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for rec, reason in zip(spec.records, spec.reasons):
            v = self.values(rec, spec.export, spec.header_set)
            v["_i"] = rec
            if reason:
                v = self._break(v, reason, rec, spec.header_set)
            rows.append((v, reason))
        writer = {"hotline_12345": self._write_xlsx, "police_110": self._write_csv, "grid": self._write_jsonl}[self.feed]
        writer(inbox / spec.rel, spec, rows)

    def _cells(self, hs: dict, v: dict) -> list:
        headers = tuple(hs["headers"])
        columns = self._columns.get(headers)
        if columns is None:
            columns = self._columns[headers] = [self.fields[_normal_header(h)] for h in headers]
        return [v.get(f, "") for f in columns]

    def _write_xlsx(self, path: Path, spec: "FileSpec", rows: list) -> None:
        hs = spec.header_set
        wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                             "strings_to_formulas": False, "strings_to_urls": False})
        wb.set_properties({"created": XLSX_CREATED, "author": f"{self.county.name}12345热线"})
        date_format = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        ws = wb.add_worksheet("工单明细")
        r = 0
        for line in spec.title:
            ws.write_string(r, 0, line)
            r += 1
        for c, h in enumerate(hs["headers"]):
            ws.write_string(r, c, h)
        r += 1
        write_string, write_number = ws.write_string, ws.write_number
        for v, _reason in rows:
            for c, cell in enumerate(self._cells(hs, v)):
                if isinstance(cell, float):
                    write_number(r, c, cell, date_format)
                elif cell:
                    write_string(r, c, str(cell))
            r += 1
        if spec.totals:
            ws.write_string(r, 0, "合计")
            ws.write_string(r, 1, f"共{len(rows)}条")
        wb.close()

    def _write_csv(self, path: Path, spec: "FileSpec", rows: list) -> None:
        hs = spec.header_set
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        text_col = [self.fields[_normal_header(h)] for h in hs["headers"]].index("text")
        out = [line.encode(CSV_ENCODING) for line in spec.title]
        out.append(",".join(hs["headers"]).encode(CSV_ENCODING))
        for v, reason in rows:
            cells = ["" if c is None else str(c) for c in self._cells(hs, v)]
            if reason == "malformed_row":  # the export cut the line short
                cells = cells[: max(2, text_col)]
            writer.writerow(cells)
            line = buf.getvalue()[:-2]
            buf.seek(0)
            buf.truncate()
            if reason == "encoding_error":
                out.append(_truncated_char_line(cells, text_col, writer, buf))
            else:
                out.append(line.encode(CSV_ENCODING))
        path.write_bytes(b"\r\n".join(out) + b"\r\n")

    def _write_jsonl(self, path: Path, spec: "FileSpec", rows: list) -> None:
        hs = spec.header_set
        out = []
        for v, reason in rows:
            obj = dict(zip(hs["headers"], self._cells(hs, v)))
            line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            if reason == "malformed_row":  # a line cut off mid-record
                out.append(line[: len(line) // 2].encode("utf-8"))
            elif reason == "encoding_error":
                out.append(_damaged_utf8_line(line, str(v.get("text") or "")))
            else:
                out.append(line.encode("utf-8"))
        path.write_bytes(b"\n".join(out) + b"\n")


def _truncated_char_line(cells: list[str], text_col: int, writer, buf: io.StringIO) -> bytes:
    """A CSV line whose text field was cut in the middle of a two-byte GBK character."""

    def csv_part(values: list[str]) -> str:
        writer.writerow(values)
        s = buf.getvalue()[:-2]
        buf.seek(0)
        buf.truncate()
        return s

    safe = cells[text_col].split(",")[0].split('"')[0]
    wide = [k for k, ch in enumerate(safe) if not ch.isascii()]
    if not wide:
        safe, wide = "无法识别", [0, 1, 2, 3]
    cut = wide[min(6, len(wide) - 1)]
    head = safe[:cut].encode(CSV_ENCODING) + safe[cut].encode(CSV_ENCODING)[:1]
    before = (csv_part(cells[:text_col]) + ",").encode(CSV_ENCODING) if text_col else b""
    after = ("," + csv_part(cells[text_col + 1 :])).encode(CSV_ENCODING) if text_col + 1 < len(cells) else b""
    return before + head + after


def _damaged_utf8_line(line: str, text: str) -> bytes:
    """A line damaged in transfer: a character of its text cut short and a stray 0xFF byte, which
    neither UTF-8 nor GB18030 can decode (a line merely in GBK would be recovered, rightly)."""
    at = line.find(text) if text else -1
    wide = next((at + k for k, ch in enumerate(text) if ord(ch) >= 0x800), -1) if at >= 0 else -1
    if wide < 0:
        return line.encode("utf-8") + b"\xff"
    offset = len(line[:wide].encode("utf-8"))
    raw = line.encode("utf-8")
    return raw[: offset + 2] + b"\xff" + raw[offset + 3 :]


def _iso(seconds: int) -> str:
    return str(iso_times(np.array([seconds]))[0])
