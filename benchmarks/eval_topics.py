"""How well a month's topic list finds the simulator's injected episodes.

    PYTHONPATH=. python benchmarks/eval_topics.py --county DIR --out DIR --month 2026-10 [--rebuild]

``--county`` is a ``riskwatch simulate`` folder (truth/episodes.json, truth/records.csv,
gazetteer.csv), ``--out`` the batch job's output root (warehouse/, reports/). With ``--rebuild`` the
month's report is first re-made from the warehouse (``pipelines.monthly.report_month``), so a
change to topics or ranking can be measured without re-running the Beam pipeline.

A topic matches an episode when it is in the same township and domain and at least one of its
evidence events (``<feed>:<source_id>``) is one of the episode's records. Printed: each top-N topic
with the episode it matches and its purity (the share of its evidence that belongs to the episode),
then the share of the month's episodes (those with at least 3 records reported in the month) found in the top N (and
in the study list, 研判选题, which may be shorter), the number of top-N topics that match no episode,
and with ``--rebuild`` the report step's time. Several ``--month`` give the totals too.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path


def month_episodes(county: Path, month: str, min_records: int = 3) -> tuple[list[dict], dict[str, set[str]]]:
    """The episodes with at least ``min_records`` records reported in the month (an episode's first
    or last stray record is no topic of that month), and episode_id → event ids
    (``<feed>:<source_id>``) of those records."""
    episodes = {e["episode_id"]: e for e in json.loads((county / "truth" / "episodes.json").read_text(encoding="utf-8"))}
    records: dict[str, set[str]] = defaultdict(set)
    with open(county / "truth" / "records.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["episode_id"] and row["reported_at"][:7] == month and not row["broken_reason"]:
                records[row["episode_id"]].add(f"{row['feed']}:{row['source_id']}")
    kept = sorted(k for k, ids in records.items() if len(ids) >= min_records)
    return [episodes[k] for k in kept], {k: records[k] for k in kept}


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
    episodes, records = month_episodes(county, month)
    rows, found, found_study = [], set(), set()
    for topic in document["topics"][:top]:
        episode, purity = match(topic, episodes, records)
        if episode:
            found.add(episode["episode_id"])
            if topic.get("list", "study") == "study":
                found_study.add(episode["episode_id"])
        rows.append({"rank": topic["rank"], "title": topic["title"], "level": topic["level"],
                     "list": topic.get("list", "study"), "priority": topic.get("priority", 0.0),
                     "events": topic["events"], "episode": episode["episode_id"] if episode else "",
                     "purity": purity})
    missed = []
    for e in episodes:
        if e["episode_id"] in found:
            continue
        ranks = [t["rank"] for t in document["topics"] if match(t, [e], records)[0]]
        missed.append({**e, "found_at": ranks[:3]})
    study = [r for r in rows if r["list"] == "study"]
    return {"month": month, "rows": rows, "episodes": len(episodes), "found": len(found),
            "unmatched": sum(1 for r in rows if not r["episode"]), "missed": missed,
            "topics": len(document["topics"]), "found_study": len(found_study), "study": len(study),
            "unmatched_study": sum(1 for r in study if not r["episode"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--county", required=True, help="simulator folder (truth/, gazetteer.csv)")
    parser.add_argument("--out", required=True, help="batch output root (warehouse/, reports/)")
    parser.add_argument("--month", required=True, action="append", help="YYYY-MM (repeatable)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--rebuild", action="store_true", help="re-make the month's report from the warehouse first")
    args = parser.parse_args(argv)
    county, out = Path(args.county), Path(args.out)
    keys = ("episodes", "found", "unmatched", "shown", "found_study", "study", "unmatched_study", "seconds",
            "quality_seconds")
    totals = dict.fromkeys(keys, 0)
    for month in args.month:
        seconds = quality_seconds = 0.0
        if args.rebuild:
            from pipelines.monthly import report_month

            started = time.monotonic()
            _, summary = report_month(str(out), month, str(county / "gazetteer.csv"))
            seconds = time.monotonic() - started
            quality_seconds = summary["quality_seconds"]
        result = evaluate(county, out, month, args.top)
        print(f"== {month}: {result['topics']} topics listed, {result['study']} of the top {args.top} to study; "
              f"top {args.top}:")
        for r in result["rows"]:
            episode = f"{r['episode']} ({r['purity']:.0%})" if r["episode"] else "-"
            print(f"{r['rank']:>3} {r['list']:<5} {r['priority']:>5.1f} {r['level']:<6} {r['events']:>4}  "
                  f"{episode:<20} {r['title']}")
        for e in result["missed"]:
            where = f"ranks {e['found_at']}" if e["found_at"] else "no topic"
            print(f"    missed {e['episode_id']} {e['domain']} {e['subject']} magnitude {e['magnitude']}: {where}")
        print(f"   episodes found in top {args.top}: {result['found']}/{result['episodes']} "
              f"(in the study list: {result['found_study']}); top-{args.top} topics matching no episode: "
              f"{result['unmatched']}/{len(result['rows'])} (study list: {result['unmatched_study']}/{result['study']})"
              + (f"; report step {seconds:.1f} s (quality {quality_seconds:.1f} s)" if args.rebuild else ""))
        result.update(shown=len(result["rows"]), seconds=seconds, quality_seconds=quality_seconds)
        for k in keys:
            totals[k] += result[k]
    if len(args.month) > 1:
        n = len(args.month)
        share = totals["found"] / totals["episodes"] if totals["episodes"] else 0.0
        print(f"== all {n} months: episodes found in top {args.top} {totals['found']}/{totals['episodes']} ({share:.0%}), "
              f"in the study list {totals['found_study']}; top-{args.top} topics matching no episode "
              f"{totals['unmatched']}/{totals['shown']} ({totals['unmatched'] / n:.1f} a month); study-list topics "
              f"{totals['study']} ({totals['study'] / n:.1f} a month), matching no episode {totals['unmatched_study']}"
              + (f"; report step {totals['seconds'] / n:.1f} s a month (quality {totals['quality_seconds'] / n:.1f} s)"
                 if args.rebuild else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
