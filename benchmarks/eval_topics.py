"""How well a month's topic list finds the simulator's injected episodes.

    PYTHONPATH=. python benchmarks/eval_topics.py --county DIR --out DIR --month 2026-10 [--rebuild]

``--county`` is a ``riskwatch simulate`` folder (truth/episodes.json, truth/records.csv,
gazetteer.csv), ``--out`` the batch job's output root (warehouse/, reports/). With ``--rebuild`` the
month's report is first re-made from the warehouse (``pipelines.monthly.report_month``), so a
change to topics or ranking can be measured without re-running the Beam pipeline.

A topic matches an episode when it is in the same township and domain and at least one of its
evidence events (``<feed>:<source_id>``) is one of the episode's records. Printed: each top-N topic
with the episode it matches and its purity (the share of its evidence that belongs to the episode),
then the share of the month's episodes (those whose dates overlap the month) found in the top N and
the number of top-N topics that match no episode.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path


def month_bounds(month: str) -> tuple[date, date]:
    year, mon = (int(p) for p in month.split("-"))
    first = date(year, mon, 1)
    following = date(year + (mon == 12), mon % 12 + 1, 1)
    return first, date.fromordinal(following.toordinal() - 1)


def month_episodes(county: Path, month: str) -> list[dict]:
    first, last = month_bounds(month)
    episodes = json.loads((county / "truth" / "episodes.json").read_text(encoding="utf-8"))
    return [e for e in episodes
            if date.fromisoformat(e["start"]) <= last and date.fromisoformat(e["end"]) >= first]


def episode_records(county: Path, wanted: set[str]) -> dict[str, set[str]]:
    """episode_id → event ids (``<feed>:<source_id>``) of its records."""
    out: dict[str, set[str]] = defaultdict(set)
    with open(county / "truth" / "records.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["episode_id"] in wanted:
                out[row["episode_id"]].add(f"{row['feed']}:{row['source_id']}")
    return out


def match(topic: dict, episodes: list[dict], records: dict[str, set[str]]) -> tuple[dict | None, float]:
    """The episode a topic is about (most shared evidence) and the share of its evidence in it."""
    evidence = set(topic.get("evidence_event_ids") or [])
    best, best_shared = None, 0
    for e in episodes:
        if e["township_code"] != topic["region"]["code"] or e["domain"] != topic["domain"]:
            continue
        shared = len(evidence & records.get(e["episode_id"], set()))
        if shared > best_shared:
            best, best_shared = e, shared
    return best, (best_shared / len(evidence) if evidence else 0.0)


def evaluate(county: Path, out: Path, month: str, top: int) -> dict:
    document = json.loads((out / "reports" / month / "topics.json").read_text(encoding="utf-8"))
    episodes = month_episodes(county, month)
    records = episode_records(county, {e["episode_id"] for e in episodes})
    rows, found = [], set()
    for topic in document["topics"][:top]:
        episode, purity = match(topic, episodes, records)
        if episode:
            found.add(episode["episode_id"])
        rows.append({"rank": topic["rank"], "title": topic["title"], "level": topic["level"],
                     "events": topic["events"], "episode": episode["episode_id"] if episode else "",
                     "purity": purity})
    missed = []
    for e in episodes:
        if e["episode_id"] in found:
            continue
        ranks = [t["rank"] for t in document["topics"] if match(t, [e], records)[0]]
        missed.append({**e, "found_at": ranks[:3]})
    return {"month": month, "rows": rows, "episodes": len(episodes), "found": len(found),
            "unmatched": sum(1 for r in rows if not r["episode"]), "missed": missed,
            "topics": len(document["topics"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--county", required=True, help="simulator folder (truth/, gazetteer.csv)")
    parser.add_argument("--out", required=True, help="batch output root (warehouse/, reports/)")
    parser.add_argument("--month", required=True, action="append", help="YYYY-MM (repeatable)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--rebuild", action="store_true", help="re-make the month's report from the warehouse first")
    args = parser.parse_args(argv)
    county, out = Path(args.county), Path(args.out)
    totals = {"episodes": 0, "found": 0, "unmatched": 0, "shown": 0}
    for month in args.month:
        if args.rebuild:
            from pipelines.monthly import report_month

            report_month(str(out), month, str(county / "gazetteer.csv"))
        result = evaluate(county, out, month, args.top)
        print(f"== {month}: {result['topics']} topics; top {args.top}:")
        for r in result["rows"]:
            episode = f"{r['episode']} ({r['purity']:.0%})" if r["episode"] else "-"
            print(f"{r['rank']:>3} {r['level']:<6} {r['events']:>4}  {episode:<20} {r['title']}")
        for e in result["missed"]:
            where = f"ranks {e['found_at']}" if e["found_at"] else "no topic"
            print(f"    missed {e['episode_id']} {e['domain']} {e['subject']} magnitude {e['magnitude']}: {where}")
        print(f"   episodes found in top {args.top}: {result['found']}/{result['episodes']}; "
              f"top-{args.top} topics matching no episode: {result['unmatched']}/{len(result['rows'])}")
        for k in ("episodes", "found", "unmatched"):
            totals[k] += result[k]
        totals["shown"] += len(result["rows"])
    if len(args.month) > 1:
        share = totals["found"] / totals["episodes"] if totals["episodes"] else 0.0
        print(f"== all: episodes found {totals['found']}/{totals['episodes']} ({share:.0%}); "
              f"unmatched topics {totals['unmatched']}/{totals['shown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
