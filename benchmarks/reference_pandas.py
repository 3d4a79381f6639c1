"""The month's core computation as plain pandas + scikit-learn: the yardstick for RiskWatch's speed.

read the inbox (XLSX, GBK/UTF-8 CSV, JSON lines) → map columns by the feed contracts' aliases →
normalise (time, text, personal data, region) → keep the latest version of each record →
classify with the saved model → daily counts per township × domain → score the target month
against its twelve months of history with ``models.risk_score``.

What it leaves out on purpose (so the ratio is against a lower bound, not a straw man): per-row
quarantine records with Chinese reasons, the run manifest, incident linking across feeds (it
counts records, not incidents), signal extraction, village series and the report. Rows that fail
a required field or the time parse are dropped and counted.

    PYTHONPATH=. python benchmarks/reference_pandas.py --inbox SIM/inbox --gazetteer SIM/gazetteer.csv \
        --month 2025-10 [--out scores.parquet]
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import time
from pathlib import Path

import pandas as pd

import schemas
from models import risk_score
from models.domain_classifier import DomainClassifier
from pipelines import pii
from models.topics import shift_month
from pipelines.batch import HISTORY_MONTHS
from pipelines.gazetteer import Gazetteer
from pipelines.normalise import TextNormaliser, parse_time

CLASSIFY_CHUNK = 20_000


def _alias_map(feed: str) -> dict[str, str]:
    """Every header a department may use → the contract's field name."""
    out = {}
    for field in schemas.feed_contract(feed)["fields"]:
        for alias in [field["name"], *(field.get("aliases") or [])]:
            out[str(alias).strip()] = field["name"]
    return out


def _decode(data: bytes) -> str:
    """UTF-8 unless that breaks on more than a few bytes (then GBK): one bad row must not sink a file."""
    text = data.decode("utf-8-sig", errors="replace")
    if text.count("\ufffd") <= max(10, len(data) // 10_000):
        return text
    return data.decode("gb18030", errors="replace")


def _json_lines(text: str) -> list[dict]:
    """Objects of a JSON-lines file; a malformed line is dropped (read_json would reject the file)."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _with_header(table: pd.DataFrame, aliases: dict[str, str]) -> pd.DataFrame:
    """The table under its header row: exports often put a title row or two above it."""
    scan = table.head(10)
    matches = [sum(str(v).strip() in aliases for v in row) for row in scan.itertuples(index=False)]
    at = max(range(len(matches)), key=matches.__getitem__) if matches else 0
    body = table.iloc[at + 1:].reset_index(drop=True)
    body.columns = [aliases.get(str(c).strip(), str(c).strip()) for c in table.iloc[at]] if len(table) else []
    return body.loc[:, ~body.columns.duplicated()]


def read_file(path: Path, feed: str) -> pd.DataFrame:
    aliases = _alias_map(feed)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        frame = pd.DataFrame.from_records(_json_lines(_decode(path.read_bytes())))
        frame = frame.rename(columns=lambda c: aliases.get(str(c).strip(), str(c).strip()))
    elif suffix in (".xlsx", ".xlsm", ".xls"):
        frame = _with_header(pd.read_excel(path, header=None, dtype=object, engine="calamine"), aliases)
    else:
        # csv.reader, not read_csv: a title line above the header would fix the column count at 1
        rows = list(csv.reader(io.StringIO(_decode(path.read_bytes()))))
        frame = _with_header(pd.DataFrame(rows, dtype=object), aliases)
    frame["source"] = feed
    frame["file"] = str(path)
    frame["file_mtime"] = path.stat().st_mtime
    return frame


def read_inbox(inbox: Path) -> pd.DataFrame:
    frames = [read_file(path, feed) for feed in schemas.FEEDS
              for path in sorted((inbox / feed).glob("*")) if path.is_file()]
    return pd.concat(frames, ignore_index=True, sort=False)


def _map_unique(series: pd.Series, fn) -> pd.Series:
    """``series.map(fn)`` computing ``fn`` once per distinct value (feeds repeat a lot)."""
    uniques = series.dropna().unique()
    return series.map(dict(zip(uniques, map(fn, uniques))))


def normalise(frame: pd.DataFrame, gazetteer: Gazetteer) -> tuple[pd.DataFrame, int]:
    """Events with the columns the classifier and scorer need; and the number of rows dropped."""
    frame = frame.reindex(columns=sorted(set(frame.columns) | {"source_id", "reported_at", "text", "source_category",
                                                                 "address", "handling_unit", "township", "grid_code",
                                                                 "status", "satisfaction"}))
    frame["reported_at"] = _map_unique(frame["reported_at"].astype(object), parse_time)
    text_normaliser = TextNormaliser()
    for column in ("text", "address", "handling_unit", "township", "source_category"):
        as_text = frame[column].where(frame[column].notna() & (frame[column].astype(str).str.strip() != ""))
        frame[column] = _map_unique(as_text.astype(object), lambda v: text_normaliser(str(v)))
    frame["text"] = _map_unique(frame["text"], pii.mask)
    frame["address"] = _map_unique(frame["address"], pii.mask)
    frame["source_id"] = frame["source_id"].astype(str).str.strip().replace({"": None, "nan": None, "None": None})
    ok = frame[["source_id", "reported_at", "text", "source_category"]].notna().all(axis=1)
    dropped = int((~ok).sum())
    frame = frame[ok]
    # one event per record: the latest file's version (overlapping exports, status updates)
    frame = frame.sort_values(["file_mtime", "file"]).drop_duplicates(["source", "source_id"], keep="last").copy()

    hints = frame[["grid_code", "township", "address", "handling_unit", "text"]].astype(object)
    hints = hints.where(hints.notna(), None)
    keys = list(hints.itertuples(index=False, name=None))
    resolved = {}
    for key in dict.fromkeys(keys):
        grid, township, address, unit, text = key
        resolved[key] = gazetteer.resolve(codes=[grid] if grid else [], names=[township] if township else [],
                                          texts=[(address, "address"), (unit, "handling_unit"), (text, "text")])
    frame["township_code"] = [resolved[k].township_code for k in keys]
    frame["date"] = frame["reported_at"].map(lambda t: t.date())
    return frame, dropped


def classify(frame: pd.DataFrame, classifier: DomainClassifier) -> pd.Series:
    domains = []
    columns = frame[["text", "source", "source_category"]]
    for start in range(0, len(columns), CLASSIFY_CHUNK):
        domains += [p.domain for p in classifier.predict_frame(columns.iloc[start:start + CLASSIFY_CHUNK])]
    return pd.Series(domains, index=frame.index)


def _month_bounds(month: str) -> tuple[dt.date, dt.date, dt.date]:
    first = lambda m: dt.date.fromisoformat(f"{m}-01")  # noqa: E731
    return first(month), first(shift_month(month, 1)) - dt.timedelta(days=1), first(shift_month(month, -HISTORY_MONTHS))


def daily_counts(frame: pd.DataFrame) -> pd.DataFrame:
    scored = frame[(frame["domain"] != "none") & frame["township_code"].notna()].copy()
    scored["bad"] = (scored["source"] == "hotline_12345") & (
        (scored["status"] != "closed") | (scored["satisfaction"] == "dissatisfied"))
    scored["hotline"] = scored["source"] == "hotline_12345"
    per_feed = scored.groupby(["township_code", "domain", "date", "source"]).size().unstack(fill_value=0)
    totals = scored.groupby(["township_code", "domain", "date"]).agg(
        records=("source", "size"), hotline=("hotline", "sum"), hotline_bad=("bad", "sum"))
    return totals.join(per_feed)


def score(counts: pd.DataFrame, month: str) -> pd.DataFrame:
    target_start, target_end, history_start = _month_bounds(month)
    cfg = risk_score.config()
    feeds = [f for f in schemas.FEEDS if f in counts.columns]
    counts = counts[(counts.index.get_level_values("date") >= history_start)
                    & (counts.index.get_level_values("date") <= target_end)]
    parent = counts["records"].groupby(level=["domain", "date"]).sum()
    siblings = counts.reset_index().groupby("domain")["township_code"].nunique()
    rows = []
    for (township, domain), series in counts.groupby(level=["township_code", "domain"]):
        daily = {}
        for (_, _, day), r in series.iterrows():
            tally = risk_score.empty_tally()
            n = int(r["records"])
            tally.update(incidents=n, records=n, hotline=int(r["hotline"]), hotline_bad=int(r["hotline_bad"]),
                         feeds={f: int(r[f]) for f in feeds if r[f]})
            daily[day] = tally
        parent_daily = {d: float(v) for d, v in parent.loc[domain].items()}
        rows += risk_score.score_series(daily, target_start=target_start, target_end=target_end,
                                        history_start=history_start, township_code=township, village_code=None,
                                        domain=domain, parent_daily_counts=parent_daily,
                                        n_siblings=int(siblings[domain]), day_rows="all", cfg=cfg)
    return pd.DataFrame(rows)


def run(inbox: Path, gazetteer_path: Path, month: str, model_dir: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Scores of ``month`` and the figures (rows, seconds per stage)."""
    figures: dict = {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        figures[f"{name}_s"] = round(now - clock, 2)
        clock = now

    raw = read_inbox(inbox)
    lap("read")
    events, dropped = normalise(raw, Gazetteer.from_csv(str(gazetteer_path)))
    lap("normalise")
    events["domain"] = classify(events, DomainClassifier.load(model_dir))
    lap("classify")
    counts = daily_counts(events)
    lap("count")
    scores = score(counts, month)
    lap("score")
    figures.update(rows_read=len(raw), events=len(events), dropped=dropped, score_rows=len(scores),
                   seconds=round(sum(v for k, v in figures.items() if k.endswith("_s")), 2))
    return scores, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inbox", required=True, type=Path)
    parser.add_argument("--gazetteer", required=True, type=Path)
    parser.add_argument("--month", required=True, help="target month YYYY-MM (scored against 12 months before)")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the score rows here (Parquet)")
    args = parser.parse_args(argv)
    scores, figures = run(args.inbox, args.gazetteer, args.month, args.model_dir)
    if args.out is not None:
        scores.assign(reasons=scores["reasons"].map(list)).to_parquet(args.out)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    print(f"events_per_s={figures['events'] / max(figures['seconds'], 1e-9):.0f}")
    levels = scores[scores["period"] == "month"]["level"].value_counts().to_dict() if len(scores) else {}
    print("month_levels=" + ",".join(f"{k}:{v}" for k, v in sorted(levels.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
