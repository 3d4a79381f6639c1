"""Small, realistic Event tables for the quality tests and benchmark: daily export files per feed,
weekday rhythm, each feed's hour-of-day profile, categories from the contracts, a few late records
and unresolved regions, as the ingest writes them to warehouse/events/."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

import schemas

TZ = ZoneInfo(schemas.TIMEZONE)
TOWNSHIPS = [f"3310820{i:02d}000" for i in range(1, 7)]
DAILY_MEAN = {"hotline_12345": 40, "police_110": 45, "grid": 15}
FILE_NAMES = {"hotline_12345": "hotline_12345/12345工单_{:%Y%m%d}.xlsx", "police_110": "police_110/110警情_{:%Y%m%d}.csv",
              "grid": "grid/网格事件_{:%Y%m%d}.jsonl"}
# Relative hourly intensity: 110 peaks in the evening and at night, 12345 and grid in office hours.
HOUR_WEIGHTS = {
    "police_110": [6, 5, 4, 3, 2, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 7, 7, 8, 9, 10, 11, 11, 10, 8],
    "hotline_12345": [1, 1, 1, 1, 1, 1, 2, 5, 12, 16, 16, 14, 8, 9, 14, 15, 14, 12, 6, 4, 3, 2, 2, 1],
    "grid": [0, 0, 0, 0, 0, 0, 1, 3, 10, 14, 14, 10, 4, 6, 12, 14, 12, 8, 2, 1, 0, 0, 0, 0],
}
TEXTS = ["小区楼下烧烤摊油烟很大，影响居民休息", "邻居装修噪音扰民，协商未果", "工地拖欠工资三个月，联系电话13812345678",
         "路口红绿灯损坏，车辆拥堵", "村民因宅基地边界发生争吵", "网购被骗2000元，对方让下载APP", "学校门口摊贩占道经营"]


def _category_values(feed: str, name: str):
    for field in schemas.feed_contract(feed)["fields"]:
        if field["name"] == name:
            return field.get("values")
    return None


def make_events(feed: str, start: dt.date, days: int, seed: int = 0, daily_mean: float | None = None,
                late_share: float = 0.03, unresolved_share: float = 0.04) -> pd.DataFrame:
    """Events of one feed for ``days`` days from ``start``, one export file per day."""
    rng = np.random.default_rng(seed)
    mean = daily_mean or DAILY_MEAN[feed]
    hours = np.array(HOUR_WEIGHTS[feed], float)
    hours /= hours.sum()
    categories = _category_values(feed, "source_category")
    cat_weights = np.linspace(2.0, 0.2, len(categories))
    cat_weights /= cat_weights.sum()
    status = _category_values(feed, "status")
    satisfaction = _category_values(feed, "satisfaction")
    rows = []
    for d in range(days):
        day = start + dt.timedelta(days=d)
        weekend = day.weekday() >= 5
        n = rng.poisson(mean * (1.25 if weekend and feed == "police_110" else 0.7 if weekend else 1.0))
        ingested = dt.datetime(day.year, day.month, day.day, tzinfo=TZ) + dt.timedelta(days=1, hours=2)
        file = FILE_NAMES[feed].format(day)
        for i in range(n):
            t = dt.datetime(day.year, day.month, day.day, tzinfo=TZ) + dt.timedelta(
                hours=int(rng.choice(24, p=hours)), minutes=int(rng.integers(60)), seconds=int(rng.integers(60)))
            if rng.random() < late_share:
                t -= dt.timedelta(hours=int(rng.integers(24, 60)))
            source_id = f"{day:%Y%m%d}{i:05d}"
            unresolved = rng.random() < unresolved_share
            township = None if unresolved else TOWNSHIPS[int(rng.integers(len(TOWNSHIPS)))]
            rows.append({
                "event_id": f"{feed}:{source_id}", "source": feed, "source_id": source_id,
                "source_category": categories[int(rng.choice(len(categories), p=cat_weights))],
                "source_subcategory": None,
                "reported_at": t, "ingested_at": ingested, "batch_id": f"b{day:%Y%m%d}", "feed_file": file, "feed_line": i + 2,
                "county_code": "331082000000", "township_code": township,
                "village_code": None if unresolved else township[:9] + f"{int(rng.integers(1, 20)):03d}",
                "grid_code": (township[:9] + "001001") if feed == "grid" and township else None,
                "region_resolved_by": "unresolved" if unresolved else ("code" if feed == "grid" else "name"),
                "lon": float(rng.uniform(121.0, 121.5)) if feed == "police_110" else None,
                "lat": float(rng.uniform(28.5, 28.9)) if feed == "police_110" else None,
                "address": "XX镇XX村" if feed != "grid" else None,
                "text": TEXTS[int(rng.integers(len(TEXTS)))],
                "caller_key": f"{int(rng.integers(1 << 60)):016x}" if feed != "grid" else None,
                "people_involved": int(rng.integers(1, 6)) if feed == "grid" else None,
                "handling_unit": "XX派出所" if feed != "grid" else None,
                "status": sorted(status)[int(rng.integers(len(status)))] if status else None,
                "disposition": "已处理" if feed == "police_110" else None,
                "closed_at": None,
                "satisfaction": sorted(satisfaction)[int(rng.integers(len(satisfaction)))] if satisfaction else None,
                "domain": None, "domain_confidence": None, "domain_by": None, "signals": [], "incident_id": None,
            })
    frame = pd.DataFrame(rows, columns=[f.name for f in schemas.event_arrow_schema()])
    return frame_like_parquet(frame)


def frame_like_parquet(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as it comes back from warehouse/events/ Parquet (Arrow types → pandas)."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=schemas.event_arrow_schema(), preserve_index=False).to_pandas()


def make_month(start: dt.date, days: int, seed: int = 0, scale: float = 1.0) -> pd.DataFrame:
    frames = [make_events(feed, start, days, seed=seed + k, daily_mean=DAILY_MEAN[feed] * scale)
              for k, feed in enumerate(schemas.FEEDS)]
    return pd.concat(frames, ignore_index=True)
