"""Raw rows → Events or quarantine records, checked against the feed contract.

Normalising (time, text, region, personal data) happens here, a chunk of rows at a time and
column by column: each distinct value of a column is parsed once, free texts are normalised and
masked as one batch; the rules themselves live in normalise.py, pii.py and gazetteer.py.
Messages are written for the department clerk who has to fix the row.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import operator
import re
import zlib
from typing import Callable

import apache_beam as beam

from pipelines import pii
from pipelines.gazetteer import Gazetteer
from pipelines.normalise import TZ, TextNormaliser, clean_text, parse_time
from pipelines.read import HeaderMap, cell_text, stripped_cell_text
from schemas import FEEDS, event_fields, feed_contract

QUARANTINE_TAG = "quarantine"
REASONS = (
    "missing_field", "bad_type", "bad_time", "future_time", "unknown_value", "out_of_range",
    "malformed_row", "encoding_error", "unknown_header", "summary_row",
)
# An event cannot have happened after its data reached us; a little slack for clock skew.
FUTURE_TOLERANCE = dt.timedelta(minutes=15)
# Anything earlier is a typing or format error (1900-01-00 from an empty Excel date, 0 epoch).
EARLIEST_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))
TIME_EXAMPLE = "2026-10-03 14:05:00"
# Cells that mean "nothing here" in department exports.
_BLANKS = frozenset({"", "-", "--", "—", "——", "/", "null", "none", "nan", "#n/a", "n/a"})
_INTEGER_RE = re.compile(r"^(\d+)(?:\.0+)?\s*(?:人|名|个)?$")
_FLOAT_RE = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
# Which free texts may locate a record when no region column does, in order of trust.
_REGION_TEXTS = (("address", "address"), ("handling_unit", "handling_unit"), ("text", "text"))
# Event fields that may carry personal data written by a clerk: masked whatever their contract type.
_MASKED_FIELDS = ("address", "handling_unit", "disposition")
_STATUS_PROGRESS = {"open": 0, "returned": 1, "in_progress": 2, "closed": 3}
# Parsed cell values kept per column: short values only (addresses and unit names included,
# free texts not), and a bounded number, so a year's export cannot grow the memo without end.
_MEMO_TYPES = frozenset({str, int, float, bool, type(None), dt.datetime, dt.date})
_NUMBER_TYPES = frozenset({int, float, bool})
_MEMO_MAX_LENGTH = 64
_MEMO_MAX_ENTRIES = 50_000
# Values looked up before a column whose values hardly repeat (< 10 %) stops being memoised.
_MEMO_TRIAL = 1_000


# Longest value meaning "nothing here": a longer cell is never blank (lower-casing never shortens).
_BLANK_MAX_LENGTH = max(map(len, _BLANKS))


class _Problem(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _is_blank(text: str) -> bool:
    """Whether a stripped cell text means "nothing here" (also behind Excel's text-marking quote)."""
    if text[:1] == "'":
        text = text.lstrip("'").strip()
    return len(text) <= _BLANK_MAX_LENGTH and text.lower() in _BLANKS


def _outcome(parse: Callable[[object], object], value) -> tuple[bool, object]:
    """``(True, parse(value))`` or ``(False, _Problem)``."""
    try:
        return True, parse(value)
    except _Problem as problem:
        # kept without its traceback, which would hold this row's frame alive
        return False, problem.with_traceback(None)


def _one_by_one(parse: Callable[[object], object]) -> Callable[[list], list]:
    """A single-value parser as a parser of a list of values."""
    def parse_many(values: list) -> list[tuple[bool, object]]:
        return [_outcome(parse, value) for value in values]
    return parse_many


@dataclasses.dataclass
class _FieldPlan:
    """One contract field as one header carries it: the column (None when absent), the field's
    parser of a list of values (messages use the header's label) and the outcomes of the values
    already parsed."""

    name: str
    column: str | None
    parse_many: Callable[[list], list[tuple[bool, object]]]
    memo: dict | None = dataclasses.field(default_factory=dict)
    lookups: int = 0
    hits: int = 0

    def __post_init__(self):
        # An absent column is the same empty value in every row: parsed once.
        self.absent = self.parse_many([None])[0] if self.column is None else None

    def outcomes(self, cells: list) -> tuple[list, list[tuple[int, _Problem]]]:
        """A column's parsed values (None where a problem is) and its problems by position.

        Each distinct value is parsed once, the column's new values together (free texts are
        normalised and masked as one batch). Short values are also remembered across chunks
        (times to the minute, categories, units, addresses repeat), unless the column turns out
        to hold unique values (ids, times to the second, phones); long free texts are not kept.
        """
        kinds = set(map(type, cells))
        if not kinds <= _MEMO_TYPES:  # e.g. lists from JSON: unhashable, parsed one by one
            found = self.parse_many(cells)
            return [r if ok else None for ok, r in found], [(p, r) for p, (ok, r) in enumerate(found) if not ok]
        # 1, 1.0 and True are one dict key: typed keys when a column mixes number types
        typed = len(kinds & _NUMBER_TYPES) > 1
        keys = [(type(cell), cell) for cell in cells] if typed else cells
        distinct = dict.fromkeys(keys)
        known = {} if self.memo is None else self._remembered(distinct, typed)
        new = [key for key in distinct if key not in known] if known else list(distinct)
        found = self.parse_many([key[1] for key in new] if typed else new)
        if self.memo is not None:
            self._remember(new, found, typed)
        known.update(zip(new, found))
        values = {key: result if ok else None for key, (ok, result) in known.items()}
        parsed = list(map(values.__getitem__, keys))
        failed = {key: result for key, (ok, result) in known.items() if not ok}
        if not failed:
            return parsed, []
        return parsed, [(p, failed[key]) for p, key in enumerate(keys) if key in failed]

    def _remembered(self, distinct: dict, typed: bool) -> dict:
        """Outcomes of the distinct keys already parsed in earlier chunks."""
        memo, known = self.memo, {}
        for key in distinct:
            value = key[1] if typed else key
            if type(value) is str and len(value) > _MEMO_MAX_LENGTH:
                continue
            self.lookups += 1
            outcome = memo.get((type(value), value))
            if outcome is not None:
                self.hits += 1
                known[key] = outcome
        return known

    def _remember(self, keys: list, outcomes: list, typed: bool) -> None:
        """Keep new outcomes for later chunks, until the column proves to hold unique values."""
        for key, outcome in zip(keys, outcomes):
            value = key[1] if typed else key
            if type(value) is str and len(value) > _MEMO_MAX_LENGTH:
                continue
            if self.lookups >= _MEMO_TRIAL and self.hits < _MEMO_TRIAL // 10:
                self.memo = None  # a column of unique values
                return
            if len(self.memo) >= _MEMO_MAX_ENTRIES:
                self.memo.clear()
            self.memo[(type(value), value)] = outcome


def _display(value) -> str:
    text = cell_text(value).strip()
    return text if len(text) <= 40 else text[:40] + "…"


class RecordValidator:
    """One feed's contract as a row checker. Build once per worker (loads OpenCC, the gazetteer)."""

    def __init__(self, feed: str, gazetteer: Gazetteer, hmac_key: bytes, ingest_time: dt.datetime,
                 text_normaliser: TextNormaliser | None = None):
        self.feed = feed
        self.contract = feed_contract(feed)
        self.headers = HeaderMap(self.contract)
        self.fields = self.contract["fields"]
        self.gazetteer = gazetteer
        self.key = hmac_key
        self.ingest_time = ingest_time
        self.latest_allowed = ingest_time + FUTURE_TOLERANCE
        self.normalise_text = text_normaliser or TextNormaliser()
        self.event_names = [f["name"] for f in event_fields()]
        self._plans: dict[tuple, list[_FieldPlan]] = {}
        self._copies = self._event_copies()
        # names (``pii: name``) are dropped, and masked where the row's free texts repeat them
        self._name_fields = [f["name"] for f in self.fields if f.get("pii") == "name"]
        kinds = {f["name"]: f["type"] for f in self.fields}
        self._free_texts = sorted({target for name, target in self._copies if kinds[name] == "text"} | set(_MASKED_FIELDS))
        self._template = dict.fromkeys(self.event_names)
        self._template.update(source=feed, ingested_at=ingest_time)
        self._region_fields = [
            (f["name"], f["name"].endswith("code")) for f in self.fields if f["type"] == "region"
        ]
        self._categories = {
            f["name"]: {clean_text(alias).lower(): code for code, aliases in f["values"].items() for alias in aliases}
            for f in self.fields
            if f["type"] == "category" and isinstance(f.get("values"), dict)
        }

    def _plan(self, header: list[str]) -> list[_FieldPlan]:
        """Per contract field: its column in this header, its parser and a cache of parsed values.

        A field the Event drops (``pii: drop``, e.g. the caller's name) that is optional text has
        no plan: no value of it can be a problem and none is kept, so its column is not parsed."""
        key = tuple(header)
        plan = self._plans.get(key)
        if plan is None:
            mapping = {f: h for h, f in self.headers.map(list(header)).items()}
            plan = self._plans[key] = [
                _FieldPlan(field["name"], mapping.get(field["name"]),
                           self._parser(field, mapping.get(field["name"]) or self.headers.labels[field["name"]]))
                for field in self.fields
                if not (field.get("pii") == "drop" and not field.get("required") and field["type"] in ("string", "text"))
            ]
        return plan

    def validate(self, row: dict) -> tuple[bool, dict]:
        """``(True, event)`` or ``(False, quarantine record)``."""
        return self.validate_chunk([row])[0]

    def validate_chunk(self, rows: list[dict]) -> list[tuple[bool, dict]]:
        """``validate`` of each row, in order, checked column by column: a chunk's rows of one
        header share each field's parser, and a value repeated in a column is parsed once."""
        results: list = [None] * len(rows)
        by_header: dict[int, tuple[list, list[int]]] = {}
        for position, row in enumerate(rows):
            if row.get("error"):
                reason, message = row["error"]
                results[position] = (False, self._quarantine(row, None, reason, message))
            else:
                # rows of one file share their header list: grouped by identity, planned by content
                by_header.setdefault(id(row["header"]), (row["header"], []))[1].append(position)
        for header, positions in by_header.values():
            group = [rows[p] for p in positions]
            for position, result in zip(positions, self._validate_group(self._plan(header), group)):
                results[position] = result
        return results

    def _validate_group(self, plans: list[_FieldPlan], rows: list[dict]) -> list[tuple[bool, dict]]:
        """Rows of one header → their results: each field's column parsed at once, problems
        collected per row in the contract's field order."""
        values = [row["values"] for row in rows]
        parsed: dict[str, list] = {}
        problems: dict[int, list[tuple[str, _Problem]]] = {}
        for plan in plans:
            if plan.column is None:
                ok, result = plan.absent
                parsed[plan.name] = [result if ok else None] * len(rows)
                if not ok:
                    for position in range(len(rows)):
                        problems.setdefault(position, []).append((plan.name, result))
                continue
            column = plan.column
            parsed[plan.name], bad = plan.outcomes([v.get(column) for v in values])
            for position, problem in bad:
                problems.setdefault(position, []).append((plan.name, problem))
        if not problems:
            return [(True, event) for event in self._events(rows, parsed)]
        good = [p for p in range(len(rows)) if p not in problems]
        events = self._events([rows[p] for p in good], {name: [column[p] for p in good] for name, column in parsed.items()})
        results: list = [None] * len(rows)
        for position, event in zip(good, events):
            results[position] = (True, event)
        for position, found in problems.items():
            row = rows[position]
            where = f"工作表“{row['sheet']}”第{row['line']}行" if row.get("sheet") else f"第{row['line']}行"
            name, first = found[0]
            message = "；".join(where + p.message for _, p in found)
            results[position] = (False, self._quarantine(row, name, first.reason, message))
        return results

    def _parser(self, field: dict, label: str) -> Callable[[list], list[tuple[bool, object]]]:
        """The contract's rules for one field as one function: cell values → their outcomes,
        ``(True, parsed value)`` or ``(False, _Problem)``. Built once per header, so a row pays
        for its checks, not for choosing them."""
        kind, required = field["type"], bool(field.get("required"))

        def empty(_=None):
            if required:
                raise _Problem("missing_field", f"缺少必填项“{label}”，请补填后重新提交")
            return None

        if kind == "datetime":
            def parse(value):
                if not isinstance(value, (dt.datetime, dt.date)) and _is_blank(stripped_cell_text(value)):
                    return empty()
                return self._time(value, label)
            return _one_by_one(parse)
        if kind == "phone":
            key = self.key

            def parse(value):
                return empty() if _is_blank(stripped_cell_text(value)) else pii.caller_key(value, key)
            return _one_by_one(parse)
        if kind == "integer":
            def parse(value):
                text = stripped_cell_text(value)
                if _is_blank(text):
                    return empty()
                match = _INTEGER_RE.match(clean_text(text))
                if not match:
                    raise _Problem("bad_type", f"“{label}”为“{_display(value)}”，应为整数，请填写数字")
                return self._in_range(field, int(match.group(1)), label)
            return _one_by_one(parse)
        if kind == "float":
            def parse(value):
                text = stripped_cell_text(value)
                if _is_blank(text):
                    return empty()
                number = clean_text(text)
                if not _FLOAT_RE.match(number):
                    raise _Problem("bad_type", f"“{label}”为“{_display(value)}”，应为数字（如117.2345），请核对")
                return self._in_range(field, float(number), label)
            return _one_by_one(parse)
        return self._text_parser(field, label, _outcome(empty, None))

    def _text_parser(self, field: dict, label: str, blank: tuple[bool, object]) -> Callable[[list], list]:
        """Text-like fields (string, region, category, text): the values' texts normalised as one
        batch, free texts masked as one batch; ``blank`` is the outcome of an empty cell."""
        kind, required = field["type"], bool(field.get("required"))
        normalise, quoted = self.normalise_text.many, kind in ("string", "region")
        finish = None
        if kind == "category":
            finish = functools.partial(self._category, field, label=label)

        def parse_many(values: list) -> list[tuple[bool, object]]:
            texts = [stripped_cell_text(value) for value in values]
            filled = [i for i, text in enumerate(texts) if not _is_blank(text)]
            cleaned = normalise([texts[i].lstrip("'") if quoted else texts[i] for i in filled])
            finished = pii.mask_many(cleaned) if kind == "text" else cleaned
            outcomes = [blank] * len(values)
            for i, text, result in zip(filled, cleaned, finished):
                if required and not text:
                    outcomes[i] = blank  # a required field's blank: missing_field
                else:
                    outcomes[i] = _outcome(finish, result) if finish is not None else (True, result)
            return outcomes
        return parse_many

    def _time(self, value, label: str) -> dt.datetime:
        parsed = parse_time(value)
        if parsed is None or parsed < EARLIEST_TIME:
            raise _Problem("bad_time", f"“{label}”为“{_display(value)}”，无法识别为日期时间，"
                                       f"请按“{TIME_EXAMPLE}”格式填写")
        if parsed > self.latest_allowed:
            raise _Problem("future_time", f"“{label}”为“{_display(value)}”，晚于数据接收时间"
                                          f"（{self.ingest_time:%Y-%m-%d %H:%M}），请核对日期")
        return parsed

    def _in_range(self, field: dict, number, label: str):
        low, high = field.get("range") or (None, None)
        if (low is not None and number < low) or (high is not None and number > high):
            raise _Problem("out_of_range", f"“{label}”为“{number:g}”，超出允许范围（{low:g}～{high:g}），请核对")
        return number

    def _category(self, field: dict, cleaned: str, label: str) -> str:
        codes = self._categories.get(field["name"])
        if codes is None:
            allowed = field.get("values") or []
            if allowed and cleaned not in allowed and field.get("on_unknown") == "quarantine":
                raise _Problem("unknown_value", f"“{label}”为“{cleaned}”，不是可识别的取值，可填：{'、'.join(allowed)}")
            return cleaned
        code = codes.get(cleaned.lower())
        if code is not None:
            return code
        if field.get("on_unknown") == "quarantine":
            # One Chinese spelling per value keeps the message short; every listed alias is accepted.
            allowed = "、".join(next((a for a in aliases if not a.isascii()), aliases[0]) for aliases in field["values"].values())
            raise _Problem("unknown_value", f"“{label}”为“{cleaned}”，不是可识别的取值，可填：{allowed}")
        return cleaned

    def _event_copies(self) -> list[tuple[str, str]]:
        """(contract field, Event field) for the parsed values an Event keeps as they are."""
        names = set(self.event_names)
        copies = []
        for field in self.fields:
            name = field["name"]
            if field.get("pii") in ("drop", "name") or field["type"] == "region":
                continue
            if field.get("pii") == "caller_key":
                copies.append((name, "caller_key"))
            elif name in names:
                copies.append((name, name))
        return copies

    def _events(self, rows: list[dict], parsed: dict[str, list]) -> list[dict]:
        """Valid rows and their parsed columns → Events, built column by column."""
        if not rows:
            return []
        columns: dict[str, object] = dict.fromkeys(self.event_names)
        for name, target in self._copies:
            columns[target] = parsed[name]
        for name in _MASKED_FIELDS:
            column = columns.get(name)
            if column is not None:
                masked = {value: pii.mask(value) for value in set(column)}
                columns[name] = list(map(masked.__getitem__, column))
        own_names = [parsed[name] for name in self._name_fields if any(parsed[name])]
        if own_names:
            for target in self._free_texts:
                column = columns.get(target)
                if column is not None:
                    columns[target] = list(map(pii.mask_names, column, zip(*own_names)))
        codes = [parsed[name] for name, is_code in self._region_fields if is_code]
        region_names = [parsed[name] for name, is_code in self._region_fields if not is_code]
        # per row: its code cells, its name cells and its (text, how found) pairs, in resolve's order
        no_cells = itertools.repeat(())
        texts = zip(*(zip(columns.get(name) or itertools.repeat(None), itertools.repeat(how))
                      for name, how in _REGION_TEXTS))
        regions = list(map(self.gazetteer.resolve, zip(*codes) if codes else no_cells,
                           zip(*region_names) if region_names else no_cells, texts))
        columns.update(
            event_id=[f"{self.feed}:{source_id}" for source_id in parsed["source_id"]],
            batch_id=[row["batch_id"] for row in rows],
            feed_file=[row["file"] for row in rows],
            feed_line=[row["line"] for row in rows],
            county_code=[region.county_code for region in regions],
            township_code=[region.township_code for region in regions],
            village_code=[region.village_code for region in regions],
            grid_code=[region.grid_code for region in regions],
            region_resolved_by=[region.by for region in regions],
            signals=[[] for _ in rows],
        )
        # Copies of one Event holding what every row shares, then filled field by field (cheaper
        # than a dict from a zip per Event); keys in event_names order. A column of no values
        # (a field this feed lacks or leaves empty) keeps the copies' None.
        events = [self._template.copy() for _ in rows]
        for name, column in columns.items():
            if column is not None and column.count(None) != len(column):
                for event, value in zip(events, column):
                    event[name] = value
        return events

    def _quarantine(self, row: dict, field: str | None, reason: str, message: str) -> dict:
        return {
            "feed": row["feed"], "file": row["file"], "line": row["line"], "sheet": row.get("sheet"),
            "field": field, "reason": reason, "message": message, "raw": row["raw"], "batch_id": row.get("batch_id"),
        }


def validate_rows(validators: dict[str, RecordValidator], rows: list[dict]) -> list[tuple[bool, dict]]:
    """Each row's ``(ok, event or quarantine record)``, in order, by its feed's validator: the rows
    of one feed as one chunk (a chunk of one file is of one feed)."""
    feeds = {row["feed"] for row in rows}
    if len(feeds) == 1:
        return validators[feeds.pop()].validate_chunk(rows)
    results: list = [None] * len(rows)
    for feed in feeds:
        positions = [p for p, row in enumerate(rows) if row["feed"] == feed]
        for position, result in zip(positions, validators[feed].validate_chunk([rows[p] for p in positions])):
            results[position] = result
    return results


class ValidateRows(beam.DoFn):
    """A chunk of raw rows → the chunk's Events as one list (main output; omitted when empty) and
    its quarantine records (``quarantine`` tagged output, one element each)."""

    def __init__(self, gazetteer_rows: list[dict], hmac_key: bytes, ingest_time: dt.datetime):
        super().__init__()
        # The gazetteer travels inside the DoFn: workers need no access to the driver's files.
        self._gazetteer_rows = gazetteer_rows
        self._key = hmac_key
        self._ingest_time = ingest_time

    def setup(self):
        gazetteer = Gazetteer(self._gazetteer_rows)
        normaliser = TextNormaliser()
        self._validators = {
            feed: RecordValidator(feed, gazetteer, self._key, self._ingest_time, normaliser) for feed in FEEDS
        }
        self._accepted = beam.metrics.Metrics.counter("ingest", "rows_valid")
        self._quarantined = beam.metrics.Metrics.counter("ingest", "rows_quarantined")

    def process(self, rows: list[dict]):
        events = []
        for ok, record in validate_rows(self._validators, rows):
            if ok:
                events.append(record)
            else:
                yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, record)
        self._accepted.inc(len(events))
        self._quarantined.inc(len(rows) - len(events))
        if events:
            yield events


def version_rank(event: dict, file_order: dict[str, tuple]) -> tuple:
    """Sort key of one version of a record: the highest is the latest and wins.

    Status progress first (a closed order supersedes the open one whatever the file order), then
    the closing time, then the file (modification time, then name), then the line.
    """
    closed = event.get("closed_at")
    return (
        _STATUS_PROGRESS.get(event.get("status"), -1),
        closed.timestamp() if closed else float("-inf"),
        file_order.get(event["feed_file"], (0.0, event["feed_file"])),
        event["feed_line"] or 0,
    )


def event_shard(event_id: str, shards: int) -> int:
    """A stable shard number for a record: every version of it lands in the same shard."""
    return zlib.crc32(event_id.encode("utf-8")) % shards


class EventPacker:
    """Event dict ⇄ compact tuple for shuffles: timestamps as epoch milliseconds, fields by position.

    Beam encodes a dict of datetimes field by field through pickle (≈140 µs per event); the
    tuple of primitives costs ≈8 µs, and the Parquet writer takes its columns as they are.
    """

    def __init__(self):
        self.names = [f["name"] for f in event_fields()]
        self.time_positions = [i for i, f in enumerate(event_fields()) if f["type"].startswith("timestamp")]
        self._name_set = frozenset(self.names)
        self._values = operator.itemgetter(*self.names)
        # The last timestamp converted per position, either way: a run's Events share one
        # ``ingested_at``, so one of their three conversions is a lookup. One tuple per position,
        # replaced whole, so a packer shared by threads never pairs a value with another's result.
        self._last_packed = {i: (None, None) for i in self.time_positions}
        self._last_unpacked = {i: (None, None) for i in self.time_positions}

    def fits(self, record: dict) -> bool:
        """Whether ``record`` has exactly the Event fields, i.e. can cross a shuffle packed."""
        return len(record) == len(self.names) and record.keys() == self._name_set

    def pack(self, event: dict) -> tuple:
        values = list(self._values(event))
        for i in self.time_positions:
            value = values[i]
            if value is not None:
                last, millis = self._last_packed[i]
                if value is not last:
                    millis = int(value.timestamp() * 1000)
                    self._last_packed[i] = (value, millis)
                values[i] = millis
        return tuple(values)

    def unpack(self, packed: tuple) -> dict:
        values = list(packed)
        for i in self.time_positions:
            millis = values[i]
            if millis is not None:
                last, value = self._last_unpacked[i]
                if millis != last:
                    value = dt.datetime.fromtimestamp(millis / 1000, TZ)
                    self._last_unpacked[i] = (millis, value)
                values[i] = value
        return dict(zip(self.names, values))
