"""How a long run is cut into consecutive pipeline runs, so memory follows a few months, not the inbox.

The local runner holds a pipeline's intermediate data in one process: a county-year in one pipeline
peaked at 7 GiB. The incremental run writes what a whole-inbox run would for *any* split of the
files (tests/test_batch_incremental.py), so a backfill can read its files a few months at a time:
the first part as a first run, the others incrementally, scoring once at the end.

What a split costs depends on how many months each part touches (each part relinks its months and
the next, see ``pipelines.batch``). Departments name their periodic exports by period
("12345工单_2025-10.xlsx", "110警情202510.csv", "网格事件2025年10月.jsonl"), so files are grouped by
the month their path names and parts are cut between months, about ``part_bytes`` each. Files
whose path names no month are read in the last part: still exact, only less of a saving.
"""
from __future__ import annotations

import re

from pipelines.read import FeedFile

DEFAULT_PART_MB = 48  # ≈ three months of a 1,000,000-people county's three feeds

# 2025-10, 2025_10, 2025.10, 202510, 2025年10月, 2025年1月, 20251015, 2025-10-15: a year 2000–2099,
# a month, maybe a day, not inside a longer number
_PERIOD_RE = re.compile(r"(?<!\d)(20\d{2})(?:[-_.]|年)?(0[1-9]|1[0-2]|(?<=年)[1-9])"
                        r"(?:月|(?:[-_.]?(?:0[1-9]|[12]\d|3[01])日?)?(?!\d))")


def named_month(relpath: str) -> str | None:
    """The month a file's path names (the last one, the file name before its folders), as YYYY-MM."""
    found = _PERIOD_RE.findall(relpath)
    if not found:
        return None
    year, month = found[-1]
    return f"{year}-{int(month):02d}"


def plan_parts(files: list[FeedFile], part_bytes: int) -> list[list[FeedFile]]:
    """``files`` → consecutive parts: whole named months in order, each part ≥ one month and cut
    once it holds ``part_bytes``; files naming no month last. One part when all fit in one, or
    when ``part_bytes`` is 0."""
    if part_bytes <= 0 or sum(f.size for f in files) <= part_bytes:
        return [list(files)]
    by_month: dict[str, list[FeedFile]] = {}
    unnamed: list[FeedFile] = []
    for f in files:
        month = named_month(f.relpath)
        (by_month.setdefault(month, []) if month else unnamed).append(f)
    parts: list[list[FeedFile]] = []
    current: list[FeedFile] = []
    for month in sorted(by_month):
        if current and sum(f.size for f in current) >= part_bytes:
            parts.append(current)
            current = []
        current = current + by_month[month]
    if unnamed:
        current = current + unnamed
    if current:
        parts.append(current)
    return parts
