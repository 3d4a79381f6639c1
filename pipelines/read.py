"""Inbox files → raw rows (shape: docs/architecture.md), as a Beam stage that runs on any runner.

``Create(feed files) | ParDo(ReadFeedFile())``: one file per element, read whole by one worker.
The format is sniffed from the content (a ``.xlsx`` that is really CSV is read as CSV), the text
encoding is decoded strictly (UTF-8, then GB18030) before any statistical guess, the header is
the first row that maps enough contract columns (title rows above it are skipped), and totals
and signature rows below the data are emitted as ``summary_row`` errors so that every row is
accounted for. Blank rows and title rows carry nothing and are counted in the file info only.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import re
import sys
from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.normalise import clean_text
from pipelines.runners import ParDoWithOutputs
from schemas import FEEDS, feed_contract

FILES_TAG = "files"
# Raw rows per element after reading: enough that per-element costs vanish, and no more: Beam's
# output counters estimate sizes by encoding the first ~10·ln(n) elements of a bundle, so chunks
# of thousands of rows were each encoded several times (docs/notes/performance.md, Session 2).
CHUNK_ROWS = 200
# Rows searched for the header; exports rarely carry more than a few title rows.
HEADER_SEARCH_ROWS = 30
MIN_HEADER_FIELDS = 2
CSV_DELIMITERS = (",", "\t", ";", "|")
# Rows after the data that are not records: totals, "共123条", signatures and export stamps.
SUMMARY_ROW_RE = re.compile(
    r"^(合计|总计|共计|小计|累计|汇总|本页合计|制表|审核|填报|填表|导出|打印|统计时间|统计日期|负责人|共\d+条)"
)
# Hidden and editor lock files, and the ".done" markers with which a sender says a file is complete.
_IGNORED_FILES_RE = re.compile(r"^(\.|~\$|Thumbs\.db$|desktop\.ini$)|\.done$", re.IGNORECASE)
_HEADER_DECORATION_RE = re.compile(r"(\*|[(（]必填[)）]|[(（]选填[)）])")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclasses.dataclass(frozen=True)
class FeedFile:
    """One input file: which feed it belongs to and where it is (``relpath`` relative to the inbox)."""

    feed: str
    path: str
    relpath: str
    size: int
    mtime: float


def discover(inbox: str) -> list[FeedFile]:
    """Every file under ``<inbox>/<feed>/`` at any depth, in a deterministic order.

    Paths are absolute: they are opened by workers whose working directory is not the driver's.
    """
    inbox = os.path.abspath(inbox)
    found = []
    for feed in FEEDS:
        root = os.path.join(inbox, feed)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if _IGNORED_FILES_RE.search(name):
                    continue
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                rel = os.path.relpath(path, inbox).replace(os.sep, "/")
                found.append(FeedFile(feed, path, rel, st.st_size, st.st_mtime))
    return sorted(found, key=lambda f: f.relpath)


def inbox_digest(files: list[FeedFile]) -> str:
    """A stable id for an inbox's content listing: same files, same digest, same output names."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relpath}\0{f.size}\0{int(f.mtime)}\n".encode("utf-8"))
    return h.hexdigest()


def normalise_header(name) -> str:
    """Headers match ignoring spaces, width, case and template marks such as ``*`` or ``（必填）``."""
    text = clean_text(str(name if name is not None else "")).lower()
    return _HEADER_DECORATION_RE.sub("", text).replace(" ", "")


class HeaderMap:
    """Contract aliases of one feed, matched against a file's header row."""

    def __init__(self, contract: dict):
        self.contract = contract
        self.alias_to_field = {}
        for field in contract["fields"]:
            for alias in [field["name"], *field.get("aliases", [])]:
                self.alias_to_field.setdefault(normalise_header(alias), field["name"])
        self.required = [f["name"] for f in contract["fields"] if f.get("required")]
        self.labels = {f["name"]: (f.get("aliases") or [f["name"]])[0] for f in contract["fields"]}
        self.aliases = {f["name"]: f.get("aliases", []) for f in contract["fields"]}

    def map(self, header: list[str]) -> dict[str, str]:
        """Original header → contract field; the first column wins when two map to one field."""
        mapping, taken = {}, set()
        for name in header:
            field = self.alias_to_field.get(normalise_header(name))
            if field and field not in taken:
                mapping[name] = field
                taken.add(field)
        return mapping

    def score(self, cells: list) -> int:
        return len({self.alias_to_field[k] for c in cells if (k := normalise_header(c)) in self.alias_to_field})


def sniff_format(head: bytes) -> str:
    """``xlsx``, ``xls``, ``jsonl``, ``json``, ``csv``, or what the bytes really are (``pdf``…)."""
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "xls"
    for magic, kind in ((b"%PDF", "pdf"), (b"\x89PNG", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"),
                        (b"Rar!", "rar"), (b"7z\xbc\xaf", "7z"), (b"\x1f\x8b", "gzip")):
        if head.startswith(magic):
            return kind
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "csv"  # Excel's "Unicode text": UTF-16, tab-separated
    if b"\x00" in head:
        return "binary"
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if text[:1] == "{":
        return "jsonl"
    if text[:1] == "[":
        return "json"
    if text[:200].lower().startswith(("<html", "<!doctype", "<table", "<?xml")):
        return "html"
    return "csv"


def decode(data: bytes) -> tuple[str, str]:
    """Text and the encoding used. Strict UTF-8 then GB18030 (GBK's superset) before guessing:
    statistical detection misreads short Chinese files; strict decodes almost never succeed wrongly."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), "utf-16"
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            name = "utf-8-bom" if encoding == "utf-8-sig" and data.startswith(b"\xef\xbb\xbf") else encoding
            return text, name.replace("utf-8-sig", "utf-8")
        except UnicodeDecodeError:
            continue
    # Neither decodes the whole file: rows pasted from another system mix encodings. Lines are
    # decoded one by one (a newline byte never occurs inside a UTF-8 or GB18030 character), the
    # majority encoding first; a line neither decodes keeps replacement characters and becomes an
    # encoding_error row.
    lines = data.split(b"\n")
    # Each line decoded once per encoding: the counts choose the order, the results are reused.
    decoded = {encoding: [_decoded(line, encoding) for line in lines] for encoding in ("utf-8", "gb18030")}
    order = sorted(decoded, key=lambda e: -sum(text is not None for text in decoded[e]))
    first, second = (decoded[e] for e in order)
    text = "\n".join(
        a if a is not None else b if b is not None else line.decode(order[0], errors="replace")
        for line, a, b in zip(lines, first, second)
    )
    return text, f"{order[0]}(mixed)"


def _decoded(line: bytes, encoding: str) -> str | None:
    try:
        return line.decode(encoding)
    except UnicodeDecodeError:
        return None


def cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def stripped_cell_text(value) -> str:
    """``cell_text(value).strip()``, without the call for the common case of a text cell."""
    return value.strip() if type(value) is str else cell_text(value).strip()


def _is_blank(cells: list) -> bool:
    return not any(map(stripped_cell_text, cells))


class _CsvLines:
    """Cells → their CSV line (the ``raw`` text of a spreadsheet row), one writer for a whole sheet."""

    def __init__(self):
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="")

    def __call__(self, cells: list) -> str:
        self._out.seek(0)
        self._out.truncate()
        self._writer.writerow([c if type(c) is str else cell_text(c) for c in cells])
        return self._out.getvalue()


def _unique_header(cells: list) -> list[str]:
    header, seen = [], {}
    for i, cell in enumerate(cells):
        name = cell_text(cell).strip() or f"列{i + 1}"
        seen[name] = seen.get(name, 0) + 1
        header.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return header


@dataclasses.dataclass
class _Table:
    """One sheet or CSV body as (line number, cells, raw text) rows."""

    rows: list[tuple[int, list, str]]
    sheet: str | None = None
    records: bool = False  # JSON: each row is an object keyed by its own field names


class FileReader:
    """Reads one file's bytes into raw rows plus a file-info record (no Beam here: testable)."""

    def __init__(self, feed: str):
        self.feed = feed
        self.headers = HeaderMap(feed_contract(feed))

    def read(self, relpath: str, data: bytes, mtime: float = 0.0) -> tuple[list[dict], dict]:
        sha = hashlib.sha256(data).hexdigest()
        info = {
            "feed": self.feed, "file": relpath, "sha256": sha, "batch_id": sha[:16], "bytes": len(data),
            "mtime": mtime, "declared_format": os.path.splitext(relpath)[1].lstrip(".").lower(),
            "format": sniff_format(data[:4096]), "encoding": None, "sheets": [], "header_line": None,
            "header": [], "header_mapping": {}, "unmapped_columns": [], "missing_required": [],
            "title_rows": 0, "blank_rows": 0, "error": None,
        }
        rows: list[dict] = []
        try:
            tables = self._tables(data, info)
        except Exception as exc:  # a corrupt workbook or an unparseable file is quarantined, not a crash
            tables = None
            info["error"] = f"{type(exc).__name__}: {exc}"
        if tables is None:
            rows.append(self._file_error_row(relpath, info))
        else:
            for table in tables:
                rows.extend(self._table_rows(relpath, table, info))
        info["rows_read"] = len(rows)
        for row in rows:
            row["batch_id"] = info["batch_id"]
        return rows, info

    # -- formats -------------------------------------------------------------------------------
    def _tables(self, data: bytes, info: dict) -> list[_Table] | None:
        fmt = info["format"]
        if fmt in ("xlsx", "xls"):
            return self._workbook_tables(data, info)
        if fmt not in ("csv", "jsonl", "json"):
            return None
        text, info["encoding"] = decode(data)
        text = text.lstrip("\ufeff").replace("\x00", "")
        if fmt == "csv":
            return [self._csv_table(text, info)]
        return [self._json_table(text, fmt)]

    def _workbook_tables(self, data: bytes, info: dict) -> list[_Table]:
        from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        tables = []
        for meta in book.sheets_metadata:
            if meta.visible != SheetVisibleEnum.Visible or meta.typ != SheetTypeEnum.WorkSheet:
                continue
            cells = book.get_sheet_by_name(meta.name).to_python(skip_empty_area=False)
            csv_line = _CsvLines()
            rows = [(i + 1, list(r), csv_line(r)) for i, r in enumerate(cells)]
            tables.append(_Table(rows, meta.name))
        # Only sheets with a recognisable header hold records; a statistics sheet beside them is
        # skipped (listed in the manifest). With none recognisable, the first sheet is read so
        # that its rows are quarantined with the header problem rather than silently dropped.
        useful = [t for t in tables if self._find_header(t.rows)[1] >= MIN_HEADER_FIELDS]
        info["sheets"] = [t.sheet for t in (useful or tables[:1])]
        info["skipped_sheets"] = [t.sheet for t in tables if t not in (useful or tables[:1])]
        return useful or tables[:1]

    def _csv_table(self, text: str, info: dict) -> _Table:
        lines = text.split("\n")
        sample = "\n".join(lines[:HEADER_SEARCH_ROWS])
        best = max(
            CSV_DELIMITERS,
            key=lambda d: (self._find_header(self._parse_csv(sample, d, lines))[1], d == ","),
        )
        info["delimiter"] = best
        return _Table(self._parse_csv(text, best, lines))

    @staticmethod
    def _parse_csv(text: str, delimiter: str, lines: list[str]) -> list[tuple[int, list, str]]:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows, start = [], 1
        try:
            for cells in reader:
                end = reader.line_num
                rows.append((start, cells, "\n".join(l.rstrip("\r") for l in lines[start - 1:end])))
                start = end + 1
        except csv.Error as exc:
            # An unterminated quote swallows the rest of the file: one malformed row, not a crash.
            rows.append((start, None, f"csv: {exc}"))
        return rows

    @staticmethod
    def _json_table(text: str, fmt: str) -> _Table:
        if fmt == "json":
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            if isinstance(items, list):
                return _Table([(i + 1, item, json.dumps(item, ensure_ascii=False)) for i, item in enumerate(items)],
                              records=True)
        rows = []
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            rows.append((number, item, line.rstrip("\r")))
        return _Table(rows, records=True)

    # -- rows ----------------------------------------------------------------------------------
    def _find_header(self, rows: list[tuple[int, list, str]]) -> tuple[int | None, int]:
        best, best_score = None, 0
        for index, (_, cells, _) in enumerate(rows[:HEADER_SEARCH_ROWS]):
            if not isinstance(cells, list):
                continue
            score = self.headers.score(cells)
            if score > best_score:
                best, best_score = index, score
        return best, best_score

    def _table_rows(self, relpath: str, table: _Table, info: dict) -> Iterator[dict]:
        if table.records:
            yield from self._record_rows(relpath, table, info)
            return
        header_index, score = self._find_header(table.rows)
        if header_index is None or score < MIN_HEADER_FIELDS:
            # No recognisable header: take the first non-blank row so the problem is reported
            # against the headers the clerk actually wrote.
            header_index = next((i for i, (_, c, _) in enumerate(table.rows) if c and not _is_blank(c)), None)
            if header_index is None:
                return
        line, header_cells, _ = table.rows[header_index]
        header = _unique_header(header_cells)
        while header and header[-1].startswith("列") and cell_text(header_cells[len(header) - 1]).strip() == "":
            header.pop()  # trailing empty header cells: Excel's formatted-but-empty columns
        file_error = self._header_problem(header, info, line, table.sheet)
        info["title_rows"] += sum(1 for _, c, _ in table.rows[:header_index] if c and not _is_blank(c))
        for number, cells, raw in table.rows[header_index + 1:]:
            if cells is not None and _is_blank(cells):
                info["blank_rows"] += 1
                continue
            row = self._row(relpath, number, header, raw, table.sheet)
            if cells is None:
                row["error"] = ("malformed_row", f"{_where(number, table.sheet)}无法按CSV解析（引号不配对），请检查该行及其后内容")
                yield row
                continue
            # a short row's missing cells are None
            row["values"] = dict(zip(header, itertools.chain(cells, itertools.repeat(None))))
            extra = [c for c in cells[len(header):] if cell_text(c).strip()]
            if file_error:
                row["error"] = file_error
            elif self._is_summary(cells, header, info["header_mapping"]):
                row["error"] = ("summary_row", f"{_where(number, table.sheet)}是合计/统计行，不是一条记录，已跳过")
            elif extra:
                row["error"] = ("malformed_row", f"{_where(number, table.sheet)}有{len(cells)}列，比表头多{len(cells) - len(header)}列，"
                                "可能是内容中含有未加引号的逗号，请检查该行")
            elif len(cells) < len(header) and info["format"] == "csv":
                row["error"] = ("malformed_row", f"{_where(number, table.sheet)}只有{len(cells)}列，表头有{len(header)}列，"
                                "可能是内容中的换行把一条记录截断了，请检查该行")
            elif any(isinstance(c, str) and "\ufffd" in c for c in cells):
                row["error"] = ("encoding_error", f"{_where(number, table.sheet)}含有无法识别的字符（文件编码按{info['encoding']}读取），"
                                "请将文件另存为UTF-8编码后重新提交")
            yield row

    def _record_rows(self, relpath: str, table: _Table, info: dict) -> Iterator[dict]:
        # every field name of the file, in order of first appearance
        header = list(dict.fromkeys(k for _, item, _ in table.rows if isinstance(item, dict) for k in item))
        file_error = self._header_problem(header, info, None, None)
        for number, item, raw in table.rows:
            row = self._row(relpath, number, header, raw, None)
            if not isinstance(item, dict):
                row["error"] = ("malformed_row", f"第{number}行不是一个JSON对象（{{\"字段\": 值}}），请检查该行的括号和引号")
            else:
                row["values"] = dict(zip(header, map(item.get, header)))
                if file_error:
                    row["error"] = file_error
                elif "\ufffd" in raw:
                    row["error"] = ("encoding_error", f"第{number}行含有无法识别的字符，请将文件另存为UTF-8编码后重新提交")
            yield row

    def _header_problem(self, header: list[str], info: dict, line: int | None, sheet: str | None):
        mapping = self.headers.map(header)
        if not info["header"]:
            info.update(header=header, header_line=line, header_mapping=mapping,
                        unmapped_columns=[h for h in header if h not in mapping])
        missing = [f for f in self.headers.required if f not in mapping.values()]
        if not missing:
            return None
        info["missing_required"] = sorted(set(info["missing_required"]) | set(missing))
        wanted = "；".join(f"“{self.headers.labels[f]}”（可用列名：{'/'.join(self.headers.aliases[f])}）" for f in missing)
        found = "、".join(header) if header else "（无）"
        where = f"工作表“{sheet}”" if sheet else "文件"
        return ("missing_field", f"{where}缺少必填列{wanted}；找到的列为：{found}。请按模板补齐列名后重新提交")

    def _is_summary(self, cells: list, header: list[str], mapping: dict) -> bool:
        first = next(filter(None, map(stripped_cell_text, cells)), "")
        if not SUMMARY_ROW_RE.match(first.replace(" ", "").replace("\u3000", "")):
            return False
        id_header = next((h for h, f in mapping.items() if f == self.headers.contract["id_field"]), None)
        if id_header is None or id_header not in header:
            return True
        id_value = cell_text(cells[header.index(id_header)] if header.index(id_header) < len(cells) else "").strip()
        return id_value in ("", first)

    def _row(self, relpath: str, number: int, header: list[str], raw: str, sheet: str | None) -> dict:
        return {"feed": self.feed, "file": relpath, "line": number, "sheet": sheet, "header": header,
                "values": None, "raw": raw, "error": None}

    def _file_error_row(self, relpath: str, info: dict) -> dict:
        fmt, declared = info["format"], info["declared_format"] or "无扩展名"
        if info["error"]:
            message = f"文件“{relpath}”无法读取（识别为{fmt}格式，{info['error']}），请重新导出为xlsx、csv或jsonl"
        elif fmt == "html":
            message = f"文件“{relpath}”实为网页（HTML）格式而非{declared}，请在Excel中打开后另存为xlsx或csv再提交"
        else:
            message = f"文件“{relpath}”实为{fmt}格式，不是可识别的表格（xlsx、csv、jsonl），请重新导出后提交"
        row = self._row(relpath, 0, [], f"<{fmt} file, {info['bytes']} bytes>", None)
        row["error"] = ("malformed_row", message)
        return row


def _where(line: int, sheet: str | None) -> str:
    return f"工作表“{sheet}”第{line}行" if sheet else f"第{line}行"


class ReadFeedFile(beam.DoFn):
    """(feed file) → lists of at most ``chunk_rows`` raw rows; a file-info record on ``files``.

    Rows travel in chunks: every later per-row stage then costs one element per chunk, not per
    row, on every runner (the per-element overhead dominated ingest, docs/notes/performance.md).
    """

    def __init__(self, chunk_rows: int = CHUNK_ROWS):
        super().__init__()
        self._chunk_rows = chunk_rows

    def setup(self):
        self._readers = {feed: FileReader(feed) for feed in FEEDS}

    def process(self, feed_file: FeedFile):
        with FileSystems.open(feed_file.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            data = f.read()
        rows, info = self._readers[feed_file.feed].read(feed_file.relpath, data, feed_file.mtime)
        beam.metrics.Metrics.counter("ingest", "files_read").inc()
        beam.metrics.Metrics.counter("ingest", "rows_read").inc(len(rows))
        yield beam.pvalue.TaggedOutput(FILES_TAG, info)
        for start in range(0, len(rows), self._chunk_rows):
            yield rows[start:start + self._chunk_rows]


class ReadFeeds(beam.PTransform):
    """Feed files → chunks of raw rows (main output ``chunks``: lists of rows of one file) and
    file infos (``files``)."""

    def __init__(self, files: list[FeedFile], chunk_rows: int = CHUNK_ROWS):
        super().__init__()
        self._files = files
        self._chunk_rows = chunk_rows

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._files)
            # Reshuffle-free on purpose: Create already spreads files; DaskRunner lacks Reshuffle.
            | "ReadFile" >> ParDoWithOutputs(ReadFeedFile(self._chunk_rows), FILES_TAG, main="chunks")
        )
