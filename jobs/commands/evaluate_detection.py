"""``riskwatch evaluate-detection``: RiskWatch's day levels and EARS C2/C3 against the simulator's episodes.

Runs the production transforms on a simulated county (``riskwatch simulate``): ingest (unless
``--events`` gives already ingested events), domains from the classifier (end to end) or from
the truth (``--use-true-domains``: detection alone), ``LinkIncidents``, ``DailyCounts``,
``ScoreTallies`` at township level (with the feed gaps, the history beginning where the feeds'
coverage does, as in the batch job), walk-forward (each month scored with a model fitted on the days
before it). The driver then compares the day scores and EARS on the same
daily incident counts with ``truth/episodes.json`` (``models.detection_eval``) and the linking
with ``truth/records.csv`` (``pipelines.link.pairwise_quality``).

Writes under ``--out DIR/<mode>/``: ``evaluation.json`` (everything), ``evaluation.md`` (the
table), ``curve.svg`` (sensitivity against false alarms), ``episodes.csv`` (per episode), and the
pipeline's intermediate files ``day_scores.jsonl``, ``daily_counts.jsonl``, ``incidents.csv``.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import statistics
import sys
from collections import Counter
from pathlib import Path

NAME = "evaluate-detection"
HELP = "measure detection (sensitivity, delay, false alarms; EARS C2/C3 baselines) and linking on simulated truth"
log = logging.getLogger(__name__)
# Simulated phones are not personal data; a fixed key keeps repeat callers recognisable across runs.
EVALUATION_KEY = b"riskwatch-evaluation-only"
MODES = {True: "true-domains", False: "classifier"}


def add_arguments(parser) -> None:
    parser.add_argument("--truth", required=True, type=Path,
                        help="simulator output folder (truth/, inbox/, gazetteer.csv)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--events", type=Path,
                        help="already ingested events (an ingest --out folder or its warehouse/events); "
                        "default: ingest TRUTH/inbox into OUT/ingest")
    parser.add_argument("--use-true-domains", action="store_true",
                        help="take each record's domain from the truth (detection alone) instead of the classifier")
    parser.add_argument("--model", type=Path, help="classifier artifact folder (default: the shipped model)")
    parser.add_argument("--history-months", type=int, default=2,
                        help="months at the start used as history only (default 2)")
    parser.add_argument("--margin-days", type=int, default=3,
                        help="alarms this close to an episode are not false alarms (default 3)")


def events_glob(path: Path) -> str:
    for candidate in (path / "warehouse" / "events", path):
        if any(candidate.glob("month=*/*.parquet")):
            return str(candidate / "month=*" / "*.parquet")
    if any(path.glob("*.parquet")):
        return str(path / "*.parquet")
    raise FileNotFoundError(f"no event Parquet files under {path} (expected warehouse/events/month=*/…)")


def truth_period(records_csv: Path) -> tuple[dt.date, dt.date]:
    """First and last full day of the simulated records (a few late echoes spill past the end)."""
    per_day: Counter = Counter()
    with open(records_csv, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            per_day[row["reported_at"][:10]] += 1
    if not per_day:
        raise ValueError(f"{records_csv} has no records")
    usual = statistics.median(per_day.values())
    full = [d for d, n in per_day.items() if n >= 0.5 * usual]
    return dt.date.fromisoformat(min(per_day)), dt.date.fromisoformat(max(full))


def add_months(day: dt.date, months: int) -> dt.date:
    m = day.month - 1 + months
    return dt.date(day.year + m // 12, m % 12 + 1, 1)


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------

def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate(work: Path, truth_dir: Path, history_start: dt.date, start: dt.date, end: dt.date,
             margin_days: int) -> dict:
    import schemas
    from models import detection_eval as de
    from models.risk_score import config as scoring_config
    from pipelines.link import pairwise_quality

    episodes = de.load_episodes(truth_dir / "truth" / "episodes.json")
    truth = de.load_truth_records(truth_dir / "truth" / "records.csv")
    townships = {r["code"] for r in _gazetteer_townships(truth_dir / "gazetteer.csv")}
    domains = schemas.domain_codes(include_none=False)
    n_series = len(townships) * len(domains)

    scores: dict = {}
    for r in _read_jsonl(work / "day_scores.jsonl"):
        scores.setdefault((r["township_code"], r["domain"]), {})[dt.date.fromisoformat(r["date"])] = r["score"]
    counts: dict = {}
    for r in _read_jsonl(work / "daily_counts.jsonl"):
        counts.setdefault((r["township_code"], r["domain"]), {})[dt.date.fromisoformat(r["date"])] = r["incidents"]
    yellow = float(scoring_config()["levels"]["yellow"])
    methods = [de.DayStatistic("RiskWatch", scores, yellow),
               de.ears_statistic(counts, "C2", history_start, start, end),
               de.ears_statistic(counts, "C3", history_start, start, end)]
    thresholds = {"RiskWatch": [float(t) for t in range(20, 101, 2)],
                  "EARS C2": [x / 4 for x in range(2, 61)], "EARS C3": [x / 4 for x in range(1, 81)]}
    in_period = de.episodes_in_period(episodes, start, end)
    result = {"period": {"history_start": history_start.isoformat(), "start": start.isoformat(),
                         "end": end.isoformat()},
              "series": n_series, "townships": len(townships), "domains": len(domains),
              "margin_days": margin_days, "methods": {}, "curves": {}}
    for m in methods:
        operating = de.evaluate_alarms(m.alarms(m.operating_threshold), episodes, n_series, start, end, margin_days)
        result["methods"][m.name] = {"threshold": m.operating_threshold, **operating.summary()}
        result["curves"][m.name] = de.curve(m, thresholds[m.name], episodes, n_series, start, end, margin_days)
        if m.name == "RiskWatch":
            per_episode = operating.episodes
    rw_rate = result["methods"]["RiskWatch"]["false_alarms_per_series_year"]
    result["same_false_alarm_rate"] = {
        name: de.at_false_alarm_rate(rows, rw_rate) for name, rows in result["curves"].items()}
    result["at_one_false_alarm_per_series_year"] = {
        name: de.at_false_alarm_rate(rows, 1.0) for name, rows in result["curves"].items()}
    result["episodes"] = [{"episode_id": r.episode.episode_id, "township_code": r.episode.township_code,
                           "domain": r.episode.domain, "start": r.episode.start.isoformat(),
                           "end": r.episode.end.isoformat(), "shape": r.episode.shape,
                           "magnitude": r.episode.magnitude, "detected": r.detected, "delay_days": r.delay_days}
                          for r in per_episode]
    result["episodes_in_period"] = len(in_period)
    result["riskwatch_by_shape"] = {
        shape: de.Evaluation([r for r in per_episode if r.episode.shape == shape], 0, 0.0).summary()
        for shape in sorted({r.episode.shape for r in per_episode})}

    predicted, linked_domain = {}, {}
    with open(work / "incidents.csv", encoding="utf-8") as f:
        for line in f:
            event_id, incident_id, domain = line.rstrip("\n").split(",")
            predicted[event_id], linked_domain[event_id] = incident_id, domain
    linkable = {i: p for i, p in predicted.items() if linked_domain[i] != "none"}
    keys = {i: t.incident_key for i, t in truth.items()}
    result["linking"] = {
        "all_scored_records": pairwise_quality(linkable, keys),
        "episode_records": pairwise_quality({i: p for i, p in linkable.items() if truth.get(i) and truth[i].episode_id},
                                            keys),
        "background_records": pairwise_quality(
            {i: p for i, p in linkable.items() if truth.get(i) and not truth[i].episode_id}, keys),
    }
    result["linking"]["records_per_incident"] = round(len(linkable) / max(len(set(linkable.values())), 1), 3)
    result["linking"]["true_records_per_incident"] = round(
        len([i for i in linkable if i in keys]) / max(len({keys[i] for i in linkable if i in keys}), 1), 3)
    return result


def _gazetteer_townships(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("level") == "township"]


def _fmt_delay(value) -> str:
    return "–" if value is None else f"{value:g}"


def _fmt_rate(value) -> str:
    """A false-alarm rate as the evaluation computed it (``summary`` keeps three decimals): two decimals
    would print the stored 0.475 as "0.47", below the 0.475 the JSON and the curve hold."""
    return f"{value:.3f}"


def markdown_table(result: dict, mode: str) -> str:
    """The evaluation as a Markdown table (operating points, equal false-alarm comparison, linking)."""
    lines = [f"Detection, {mode}: {result['period']['start']} – {result['period']['end']}, "
             f"{result['townships']} townships × {result['domains']} domains = {result['series']} series, "
             f"{result['episodes_in_period']} episodes, margin ±{result['margin_days']} days.", "",
             "| method | threshold | detected | sensitivity | median delay (days) | false alarms / series-year |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} (operating point) | {m['threshold']:g} | {m['detected']}/{m['episodes']} | "
                     f"{m['sensitivity']:.0%} | {_fmt_delay(m['median_delay_days'])} | "
                     f"{_fmt_rate(m['false_alarms_per_series_year'])} |")
    for label, key in (("same false-alarm rate as RiskWatch", "same_false_alarm_rate"),
                       ("≤ 1 false alarm / series-year", "at_one_false_alarm_per_series_year")):
        for name, r in result[key].items():
            if r is None:
                lines.append(f"| {name} ({label}) | – | – | – | – | – |")
                continue
            lines.append(f"| {name} ({label}) | {r['threshold']:g} | {r['detected']}/{r['episodes']} | "
                         f"{r['sensitivity']:.0%} | {_fmt_delay(r['median_delay_days'])} | "
                         f"{_fmt_rate(r['false_alarms_per_series_year'])} |")
    lines += ["", "| RiskWatch by episode shape | detected | median delay (days) |", "| --- | --- | --- |"]
    for shape, r in result["riskwatch_by_shape"].items():
        lines.append(f"| {shape} | {r['detected']}/{r['episodes']} | {_fmt_delay(r['median_delay_days'])} |")
    link = result["linking"]
    lines += ["", "| linking (pairwise vs truth incident_key) | precision | recall | F1 |", "| --- | --- | --- | --- |"]
    for name in ("all_scored_records", "episode_records", "background_records"):
        q = link[name]
        lines.append(f"| {name.replace('_', ' ')} ({q['records']} records) | {q['precision']:.3f} | "
                     f"{q['recall']:.3f} | {q['f1']:.3f} |")
    lines.append(f"\nRecords per incident: linked {link['records_per_incident']}, "
                 f"truth {link['true_records_per_incident']}.")
    return "\n".join(lines) + "\n"


def run(args, beam_args) -> int:
    from models import detection_eval as de

    truth_dir: Path = args.truth
    for needed in ("truth/records.csv", "truth/episodes.json", "gazetteer.csv"):
        if not (truth_dir / needed).is_file():
            print(f"riskwatch evaluate-detection: {truth_dir / needed} not found "
                  "(run `riskwatch simulate --out DIR` first)", file=sys.stderr)
            return 2
    mode = MODES[args.use_true_domains]
    work = args.out / mode
    work.mkdir(parents=True, exist_ok=True)
    first, last = truth_period(truth_dir / "truth" / "records.csv")
    history_start = first.replace(day=1)
    start = add_months(history_start, args.history_months)
    if start > last:
        print(f"riskwatch evaluate-detection: the data ({first} – {last}) is shorter than "
              f"{args.history_months} history months", file=sys.stderr)
        return 2
    events_dir = args.events
    if events_dir is None:
        from pipelines.ingest import run_ingest

        events_dir = args.out / "ingest"
        log.info("ingesting %s into %s", truth_dir / "inbox", events_dir)
        run_ingest(str(truth_dir / "inbox"), str(truth_dir / "gazetteer.csv"), str(events_dir), EVALUATION_KEY,
                   beam_args=beam_args)
    try:
        pattern = events_glob(events_dir)
    except FileNotFoundError as exc:
        print(f"riskwatch evaluate-detection: {exc}", file=sys.stderr)
        return 2
    log.info("scoring %s (%s), evaluating %s – %s", pattern, mode, start, last)
    from pipelines.evaluation import run_detection_pipeline

    run_detection_pipeline(pattern, str(truth_dir / "truth" / "records.csv"), str(work), args.use_true_domains,
                           args.model, history_start, start, last, beam_args)
    result = evaluate(work, truth_dir, history_start, start, last, args.margin_days)
    result["mode"] = mode
    (work / "evaluation.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    table = markdown_table(result, mode)
    (work / "evaluation.md").write_text(table, encoding="utf-8")
    (work / "curve.svg").write_text(de.curve_svg(result["curves"], title=f"RiskWatch vs EARS ({mode})") + "\n",
                                    encoding="utf-8")
    with open(work / "episodes.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result["episodes"][0]) if result["episodes"] else ["episode_id"])
        writer.writeheader()
        writer.writerows(result["episodes"])
    print(table)
    print(f"written: {work}")
    return 0
