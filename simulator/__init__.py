"""The county simulator: department feeds with ground truth (``riskwatch simulate``).

``simulate(out, start, months, seed, ...)`` writes ``gazetteer.csv``, ``inbox/<feed>/`` files as the
departments export them, and ``truth/`` (records.csv, episodes.json, outages.json); see
docs/simulator.md for the truth format. The same arguments always give byte-identical files.
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import schemas
from simulator import mess
from simulator.county import build_county, place_parts
from simulator.episodes import episode_records, plan_episodes
from simulator.feeds import DISPOSITIONS, FeedTable, FeedWriter, header_schedule, iso_times
from simulator.records import Records
from simulator.text import TextComposer
from simulator.volumes import DAY, Calendar, baseline_records, mobile_numbers, situations

TRUTH_COLUMNS = ["feed", "source_id", "file", "line", "domain", "episode_id", "incident_key", "township_code",
                 "village_code", "reported_at", "broken_reason", "duplicate_of"]
ID_PREFIX = {"hotline_12345": "GD", "police_110": "JJ", "grid": "SJ"}
LANDLINE_SHARE = 0.08


@dataclass
class Summary:
    out: Path
    rows: int
    per_feed: dict[str, int]
    per_domain: dict[str, int]
    broken: int
    duplicates: int
    episodes: int
    outages: int


def simulate(out: str | Path, start: str, months: int, seed: int, population: int = 200_000,
             broken_share: float = 0.005, files: str = "monthly", workers: int | None = None) -> Summary:
    """Write a simulated county to `out`; `workers` processes write the files (default: the CPUs, at most 4)."""
    if files not in ("monthly", "daily"):
        raise ValueError(f"files must be 'monthly' or 'daily', not {files!r}")
    if not 0 <= broken_share < 0.5:
        raise ValueError(f"broken share must be in [0, 0.5), not {broken_share}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    county = build_county(population, rng)
    cal = Calendar.from_month(start, months)

    base = baseline_records(county, cal, rng)
    episodes = plan_episodes(county, cal, rng)
    ep_recs = episode_records(episodes, county, cal, rng, first_incident=int(base.incident.max(initial=-1)) + 1)
    records = Records.concat([base, ep_recs])
    outages = mess.plan_outages(county, cal, rng)
    records = records.take(np.flatnonzero(~mess.silenced(records, outages, cal)))
    records = records.take(np.lexsort((records.incident, records.ts, records.feed)))

    table = _feed_table(records, county, cal, episodes, outages, rng)
    dup_index, dup_next = mess.duplicate_plan(len(records), rng)
    origin = np.zeros(len(records), dtype=bool)
    origin[dup_index] = True
    broken = mess.broken_plan(records.feed, origin, broken_share, rng)
    schedule = header_schedule(months, rng)

    (out / "truth").mkdir(parents=True, exist_ok=True)
    county.write_gazetteer(out / "gazetteer.csv")
    truth: list[tuple] = []
    jobs = []
    for fi, feed in enumerate(schemas.FEEDS):
        in_feed = records.feed[dup_index] == fi
        writer = FeedWriter(feed, county, cal, table, files, schedule[feed])
        specs = writer.plan(np.flatnonzero(records.feed == fi), broken, dup_index[in_feed], dup_next[in_feed], rng)
        truth += writer.truth(specs)
        jobs += [(writer, spec) for spec in specs]
    _write_files(out / "inbox", jobs, workers)

    col = {c: k for k, c in enumerate(TRUTH_COLUMNS)}
    magnitude: dict[str, int] = {}
    for row in truth:
        if row[col["episode_id"]] and not row[col["duplicate_of"]]:
            magnitude[row[col["episode_id"]]] = magnitude.get(row[col["episode_id"]], 0) + 1
    for e in episodes:
        e.magnitude = magnitude.get(e.episode_id, 0)
    _write_truth(out / "truth", truth, [e.truth(county, cal) for e in episodes], [o.truth(county, cal) for o in outages])
    originals = [r for r in truth if not r[col["duplicate_of"]]]
    return Summary(
        out=out, rows=len(truth),
        per_feed=_counts((r[col["feed"]] for r in truth), schemas.FEEDS),
        per_domain=_counts((r[col["domain"]] for r in originals), schemas.domain_codes()),
        broken=sum(1 for r in truth if r[col["broken_reason"]]), duplicates=len(truth) - len(originals),
        episodes=len(episodes), outages=len(outages),
    )


def _counts(values, keys) -> dict[str, int]:
    counts = Counter(values)
    return {k: counts.get(k, 0) for k in keys}


# The files to write, set before the worker processes fork so that they share the record table.
_JOBS: list = []


def _write_one(k: int) -> None:
    inbox, (writer, spec) = _JOBS[0], _JOBS[1][k]
    writer.write_file(inbox, spec)


def _write_files(inbox: Path, jobs: list, workers: int | None) -> None:
    """Write every planned file; XLSX writing dominates, so files go to forked workers, biggest first.
    Contents never depend on which process writes a file."""
    workers = workers or min(4, os.cpu_count() or 1)
    order = sorted(range(len(jobs)), key=lambda k: -len(jobs[k][1].records) * (3 if jobs[k][1].rel.endswith(".xlsx") else 1))
    _JOBS[:] = [inbox, jobs]
    try:
        # Forking a process that runs other threads (a Dask client, a gRPC server) can deadlock
        # the child on a lock held at fork time: write in this process then.
        forkable = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
        if workers > 1 and len(jobs) > 1 and forkable:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                pool.map(_write_one, order, chunksize=1)
        else:
            for k in order:
                _write_one(k)
    finally:
        _JOBS.clear()


def _feed_table(records: Records, county, cal: Calendar, episodes, outages, rng: np.random.Generator) -> FeedTable:
    n = len(records)
    feeds = schemas.FEEDS
    domains = schemas.domain_codes()
    sits = situations()
    # Ids number each feed's records per day, in time order, as dispatch systems do.
    day = records.ts // DAY
    group = records.feed.astype(np.int64) * 10**7 + day
    _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    seq = np.arange(n) - first[inverse] + 1
    iso = iso_times(records.ts).tolist()
    source_id = [f"{ID_PREFIX[feeds[f]]}{s[:4]}{s[5:7]}{s[8:10]}{q:05d}" for f, s, q in zip(records.feed, iso, seq)]

    fresh = mobile_numbers(n, rng)
    landline = rng.random(n) < LANDLINE_SHARE
    area = rng.integers(300, 999, size=n)
    local = rng.integers(2_000_000, 9_000_000, size=n)
    phone = [str(c) if c else (f"0{a}-{b}" if ll else str(m))
             for c, m, ll, a, b in zip(records.caller, fresh, landline, area, local)]

    composed = TextComposer(county, episodes).compose(records, phone, rng)
    traditional = mess.traditional_mask(records, county, rng)
    text = mess.to_traditional(composed["text"], traditional)
    address = mess.to_traditional(composed["address"], traditional)

    towns = county.townships
    gov = [t.name + ("办事处" if t.kind == "street" else "人民政府") for t in towns]
    u = rng.random(n)
    handling, township_field, disposition = [], [], []
    for i in range(n):
        t = towns[records.township[i]]
        feed = feeds[records.feed[i]]
        if feed == "police_110":
            handling.append(t.station)
        else:
            src = episodes[records.episode[i]].template if records.episode[i] >= 0 else sits[records.situation[i]]
            handling.append(gov[records.township[i]] if u[i] < 0.3 or "dept" not in src else src["dept"])
        township_field.append(t.name if u[i] < 0.8 else (t.aliases[0] if u[i] < 0.9 else ""))
        disposition.append(DISPOSITIONS[int(u[i] * 997) % len(DISPOSITIONS)])

    hours = rng.lognormal(np.log(np.where(records.feed == feeds.index("grid"), 20, 40)), 1.0)
    closed_ts = records.ts + (hours * 3600).astype(np.int64) + 600
    sat_u = rng.random(n)
    dissatisfied = np.where(records.episode >= 0, 0.35, 0.08)
    satisfaction = np.where(sat_u < dissatisfied, "dissatisfied",
                            np.where(sat_u < dissatisfied + 0.2, "basically_satisfied",
                                     np.where(sat_u > 0.95, "unrated", "satisfied")))
    lon = np.array([towns[k].lon for k in records.township]) + rng.normal(0, 0.015, n)
    lat = np.array([towns[k].lat for k in records.township]) + rng.normal(0, 0.012, n)

    parts = place_parts()
    s_names, g_names = parts["surnames"], parts["given_names"]
    reporter = [s_names[g * 7 % len(s_names)] + g_names[g * 13 % len(g_names)] for g in records.grid]

    ep_ids = [e.episode_id for e in episodes]
    truth_base = [
        (feeds[f], sid, domains[d], ep_ids[e] if e >= 0 else "", f"INC{inc:08d}", towns[t].code,
         county.village_code[v], s.replace(" ", "T") + "+08:00")
        for f, sid, d, e, inc, t, v, s in zip(records.feed, source_id, records.domain, records.episode,
                                              records.incident, records.township, records.village, iso)
    ]
    return FeedTable(
        source_id=source_id, iso=iso, ts=records.ts, closed_ts=closed_ts, closed_iso=list(iso_times(closed_ts)),
        arrival=mess.arrival_times(records, outages, cal, rng), phone=phone, caller_name=composed["caller_name"],
        category=composed["category"], text=text, address=address, township_field=township_field,
        handling_unit=handling, lon=lon, lat=lat, grid_code=[county.grid_code[g] for g in records.grid],
        reporter=reporter, reporter_id=[f"wg{g:05d}" for g in records.grid], people=records.people,
        satisfaction=list(satisfaction), disposition=disposition, truth_base=truth_base,
    )


def _write_truth(folder: Path, truth: list[tuple], episodes: list[dict], outages: list[dict]) -> None:
    with open(folder / "records.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        writer.writerows(truth)
    (folder / "episodes.json").write_text(json.dumps(episodes, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (folder / "outages.json").write_text(json.dumps(outages, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


__all__ = ["simulate", "Summary", "TRUTH_COLUMNS"]
