"""Which outbreak statistic detects the simulator's episodes best: the figures behind RiskWatch's choice.

On the township × domain daily series that ``riskwatch evaluate-detection`` wrote
(``daily_counts.jsonl``), each method is run walk-forward (expected counts from earlier days
only) and scored against ``truth/episodes.json`` with ``models.detection_eval``:
- ``regression+windows``: RiskWatch's statistic — quasi-Poisson regression expected count,
  NB surprisal over 1/3/7/14-day windows (the day score before contributions);
- ``regression+windows+EWMA``: the same, plus an ESSENCE-style EWMA (λ 0.3) of the standardised
  residuals as a fifth "window" (Bonferroni over five);
- ``regression+day``: the same expected count, the day alone;
- ``NB-CUSUM``: negative-binomial CUSUM (mean × 2 against mean) on the same expected count;
- ``EARS C1/C2/C3``.
For each: the most sensitive threshold with at most 1 false alarm per series-year, its median
delay, and the sensitivity at RiskWatch's rate; plus the time each statistic takes.
``--extra-report-weight W`` counts each linked incident as 1 + W per further report (0: incidents,
1: reports), the question of how linking should shape the volume signal.

``--contribution-events EVENTS --variants 0.667:0:all,1:1`` scores whole days (statistic and
contributions, ``risk_score.score_series``) on events linked in-process, per contribution weighting:
the question of how much the escalation signals should weigh against the counts.

Run: ``PYTHONPATH=. python benchmarks/bench_detection.py --truth /tmp/det/sim --work /tmp/det/eval/true-domains``
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

import schemas  # noqa: E402
from models import baselines  # noqa: E402
from models import detection_eval as de  # noqa: E402

EWMA_SMOOTHING = 0.3


def load_series(work: Path, extra_report_weight: float) -> dict:
    """Series → date → incidents + weight × (records − incidents): 0 counts incidents, 1 records."""
    series: dict = {}
    with open(work / "daily_counts.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            volume = r["incidents"] + extra_report_weight * (r["records"] - r["incidents"])
            series.setdefault((r["township_code"], r["domain"]), {})[dt.date.fromisoformat(r["date"])] = volume
    return series


def scoring_config(without_festival: bool = False) -> dict:
    """scoring.yaml, or without its festival periods (the expected counts before session 2b)."""
    cfg = schemas.load("scoring.yaml")
    if without_festival:
        cfg = {**cfg, "expected": {k: v for k, v in cfg["expected"].items() if k != "festival"}}
    return cfg


def statistics_for(series: dict, first: dt.date, start: dt.date, end: dt.date, refit_every: int,
                   cfg: dict | None = None) -> dict:
    """Method name → DayStatistic, and seconds spent per method."""
    cfg = cfg or scoring_config()
    windows = tuple(cfg["anomaly"]["windows"])
    dates = [first + dt.timedelta(days=i) for i in range((end - first).days + 1)]
    keep = [i for i, d in enumerate(dates) if d >= start]
    values = {name: {} for name in ("regression+windows", "regression+windows+EWMA", "regression+day", "NB-CUSUM")}
    seconds = dict.fromkeys(values, 0.0)
    for key, daily in series.items():
        y = np.array([float(daily.get(d, 0)) for d in dates])
        t0 = time.process_time()
        mu, phi = baselines.walk_forward_expected(dates, y, refit_every=refit_every, config=cfg["expected"])
        fit = time.process_time() - t0
        t0 = time.process_time()
        s, _ = baselines.window_surprisal(y, mu, phi, windows, cfg["anomaly"]["min_observed"])
        seconds["regression+windows"] += fit + time.process_time() - t0
        t0 = time.process_time()
        # the EWMA as one more "window" (Bonferroni over 5), counted where the last week had volume
        ewma = np.where(baselines.rolling_sum(y, 7) >= cfg["anomaly"]["min_observed"],
                        baselines.ewma_surprisal(y, mu, phi, EWMA_SMOOTHING), 0.0)
        correction = np.log10(len(windows) + 1) - np.log10(len(windows))
        s_ewma = np.maximum(np.maximum(s, ewma - np.log10(len(windows))) - correction, 0.0)
        seconds["regression+windows+EWMA"] += fit + time.process_time() - t0
        t0 = time.process_time()
        s1 = np.where(y >= cfg["anomaly"]["min_observed"], baselines.surprisal(y, mu, phi), 0.0)
        seconds["regression+day"] += fit + time.process_time() - t0
        t0 = time.process_time()
        cusum = np.zeros(len(y))
        for lo in range(0, len(y), 30):  # the dispersion changes with each refit
            hi = min(len(y), lo + 30)
            cusum[lo:hi] = baselines.nb_cusum(y[:hi], mu[:hi], float(np.nanmax(phi[lo:hi])))[lo:hi]
        seconds["NB-CUSUM"] += fit + time.process_time() - t0
        for name, stat in (("regression+windows", s), ("regression+windows+EWMA", s_ewma), ("regression+day", s1),
                           ("NB-CUSUM", cusum)):
            values[name][key] = {dates[i]: float(stat[i]) for i in keep if not np.isnan(stat[i])}
    out = {name: de.DayStatistic(name, v, 0.0) for name, v in values.items()}
    for method in ("C1", "C2", "C3"):
        t0 = time.process_time()
        out[f"EARS {method}"] = de.ears_statistic(series, method, first, start, end)
        seconds[f"EARS {method}"] = time.process_time() - t0
    return out, seconds


def township_months(events: Path, truth_rows: dict) -> dict:
    """Ingested events with their true domain (domain ``none`` left out) and their text's signals
    (as evaluate-detection's ``TruthDomains`` adds them), grouped by township × month as
    ``LinkIncidents`` groups them (without the month-boundary guests, which move a handful of pairs)."""
    import glob

    import pyarrow.parquet as pq

    from models.subjects import SubjectNamer
    from pipelines.signals import SignalLexicon

    lexicon = SignalLexicon.from_schema()
    namer = SubjectNamer()
    groups: dict = {}
    for path in sorted(glob.glob(str(events / "warehouse" / "events" / "month=*" / "*.parquet"))):
        for e in pq.read_table(path).to_pylist():
            t = truth_rows.get(e["event_id"])
            if t is None or t.domain == "none" or not e["township_code"]:
                continue
            e["domain"] = t.domain
            found = lexicon.extract(e.get("text"), e.get("people_involved"))
            e["signals"] = list(dict.fromkeys([*(e.get("signals") or ()), *found]))
            e["subjects"] = namer.names(e.get("text"))  # as pipelines.score.DailyCounts adds them
            groups.setdefault((e["township_code"], e["reported_at"].strftime("%Y-%m")), []).append(e)
    return groups


def link_all(groups: dict, setting: dict) -> dict:
    from pipelines.link import link_config, link_group

    cfg = {**link_config(), **setting}
    predicted = {}
    for records in groups.values():
        predicted.update(link_group(records, cfg))
    return predicted


def linking_sweep(events: Path, truth: Path, settings: list[dict]) -> None:
    """Pairwise precision / recall of ``link_group`` against truth incident_key, per setting."""
    from pipelines.link import pairwise_quality

    truth_rows = de.load_truth_records(truth / "truth" / "records.csv")
    groups = township_months(events, truth_rows)
    keys = {i: t.incident_key for i, t in truth_rows.items()}
    episode = {i for i, t in truth_rows.items() if t.episode_id}
    print(f"{sum(map(len, groups.values()))} linkable records in {len(groups)} township-months")
    for setting in settings:
        t0 = time.process_time()
        predicted = link_all(groups, setting)
        cpu = time.process_time() - t0
        everything = pairwise_quality(predicted, keys)
        ep = pairwise_quality({i: p for i, p in predicted.items() if i in episode}, keys)
        bg = pairwise_quality({i: p for i, p in predicted.items() if i not in episode}, keys)
        print(f"{json.dumps(setting, ensure_ascii=False):<70} all P {everything['precision']:.3f} "
              f"R {everything['recall']:.3f} | episodes P {ep['precision']:.3f} R {ep['recall']:.3f} | "
              f"background P {bg['precision']:.3f} R {bg['recall']:.3f} | records/incident "
              f"{len(predicted) / len(set(predicted.values())):.3f} | {cpu:.0f} s")


def township_tallies(groups: dict, predicted: dict) -> dict:
    """(township, domain) → date → tally, built with the batch job's ``IncidentCombineFn``."""
    from models.risk_score import merge_tallies
    from pipelines.score import IncidentCombineFn, _many_people_threshold

    combine = IncidentCombineFn(_many_people_threshold())
    incidents: dict = {}
    for records in groups.values():
        for e in records:
            key = (e["township_code"], e["domain"], predicted[e["event_id"]])
            incidents[key] = combine.add_input(incidents.get(key) or combine.create_accumulator(), e)
    per_day: dict = {}
    for (township, domain, _), acc in incidents.items():
        out = combine.extract_output(acc)
        per_day.setdefault((township, domain), {}).setdefault(dt.date.fromisoformat(out["date"]), []).append(out["tally"])
    return {s: {d: merge_tallies(ts) for d, ts in days.items()} for s, days in per_day.items()}


def evaluation_period(events: Path, truth: Path, history_months: int):
    """The truth's episodes, the history's first day, the evaluated period (after ``history_months``)
    and the events by township × month."""
    from jobs.commands.evaluate_detection import add_months, truth_period

    truth_rows = de.load_truth_records(truth / "truth" / "records.csv")
    first, end = truth_period(truth / "truth" / "records.csv")
    history_start = first.replace(day=1)
    start = add_months(history_start, history_months)
    episodes = de.load_episodes(truth / "truth" / "episodes.json")
    return episodes, history_start, start, end, township_months(events, truth_rows)


def detection_sweep(events: Path, truth: Path, link_settings: list[dict], weights: list[float],
                    history_months: int, margin_days: int, refit_every: int) -> None:
    """RiskWatch's statistic (regression + windows, before contributions) and EARS C3 per linking
    setting × extra report weight, on events linked in-process with the true domains."""
    from schemas import domain_codes

    episodes, history_start, start, end, groups = evaluation_period(events, truth, history_months)
    n_series = len({t for t, _ in groups}) * len(domain_codes(include_none=False))
    print(f"{n_series} series, {start} – {end}, {len(de.episodes_in_period(episodes, start, end))} episodes")
    for setting in link_settings:
        tallies = township_tallies(groups, link_all(groups, setting))
        for weight in weights:
            series = {k: {d: t["incidents"] + weight * (t["records"] - t["incidents"]) for d, t in daily.items()}
                      for k, daily in tallies.items()}
            stats, _ = statistics_for(series, history_start, start, end, refit_every)
            line = [f"{json.dumps(setting, ensure_ascii=False)} w={weight:g}:"]
            for name in ("regression+windows", "EARS C3"):
                stat = stats[name]
                rows = de.curve(stat, de.default_thresholds(v for d in stat.values.values() for v in d.values()),
                                episodes, n_series, start, end, margin_days)
                best = de.at_false_alarm_rate(rows, 1.0) or {}
                line.append(f"{name} ≤1FA/yr {best.get('detected')}/{best.get('episodes')} "
                            f"delay {best.get('median_delay_days')} FA {best.get('false_alarms_per_series_year')}")
            print(" | ".join(line), flush=True)


def scaled_contributions(cfg: dict, factor: float, above_usual: bool, margin_sd: float) -> dict:
    """scoring.yaml with every contribution weight and cap × factor, and the usual-level switch set."""
    rules = {}
    for name, rule in cfg["contributions"].items():
        if isinstance(rule, dict):
            rule = {k: (v * factor if k in _WEIGHTS else v) for k, v in rule.items()}
        rules[name] = rule
    rules.update(total_cap=cfg["contributions"]["total_cap"] * factor, above_usual=above_usual,
                 usual_margin_sd=margin_sd)
    return {**cfg, "contributions": rules}


_WEIGHTS = ("per_incident", "cap", "per_caller", "points_at_full_share", "per_incident_two_feeds",
            "per_incident_three_feeds")


def with_subjects(cfg: dict, variant: str) -> dict:
    """scoring.yaml with the subject evidence ``off`` or at ``PER_SURPRISAL:CAP[:MIN_INCIDENTS[:poisson]]``
    (``poisson``: without the series' over-dispersion)."""
    if variant == "off":
        return {k: v for k, v in cfg.items() if k != "subjects"}
    per, cap, *rest = variant.split(":")
    rules = {**cfg["subjects"], "per_surprisal": float(per), "cap": float(cap)}
    if rest:
        rules["min_incidents"] = int(rest[0])
    if rest[1:] == ["poisson"]:
        rules["series_dispersion"] = False
    return {**cfg, "subjects": rules}


def with_villages(cfg: dict, variant: str) -> dict:
    """scoring.yaml with the village scan ``off`` or ``on`` (as configured)."""
    if variant == "off":
        return {k: v for k, v in cfg.items() if k != "villages"}
    if variant != "on":
        raise ValueError(f"village variant {variant!r}: off or on")
    return cfg


def contribution_sweep(events: Path, truth: Path, variants: list[str], history_months: int, margin_days: int,
                       base: dict | None = None, subject_variants: tuple[str, ...] = ("",),
                       village_variants: tuple[str, ...] = ("",)) -> None:
    """The whole day score (statistic + contributions, ``risk_score.score_series``) per variant
    ``FACTOR:MARGIN_SD[:all]`` (contribution weights × FACTOR of scoring.yaml's; signals above the
    usual + MARGIN_SD Poisson sd, or ``:all`` counting every signal) × subject variant × village-scan
    variant, on events linked in-process with the true domains."""
    from models import risk_score
    from schemas import domain_codes

    episodes, history_start, start, end, groups = evaluation_period(events, truth, history_months)
    tallies = township_tallies(groups, link_all(groups, {}))
    n_series = len({t for t, _ in groups}) * len(domain_codes(include_none=False))
    base = base or risk_score.config()
    configs = []
    for variant in variants:
        factor, margin, *rest = variant.split(":")
        for subject_variant in subject_variants:
            for village_variant in village_variants:
                cfg = scaled_contributions(base, float(factor), rest != ["all"], float(margin))
                label = variant
                if subject_variant:
                    cfg, label = with_subjects(cfg, subject_variant), f"{label} subjects {subject_variant}"
                if village_variant:
                    cfg, label = with_villages(cfg, village_variant), f"{label} villages {village_variant}"
                configs.append((label, cfg))
    score_sweep(tallies, episodes, history_start, start, end, n_series, configs, margin_days)


def score_sweep(tallies: dict, episodes, history_start: dt.date, start: dt.date, end: dt.date, n_series: int,
                configs: list, margin_days: int) -> None:
    """Per (label, scoring config): day scores of every township series (``township_tallies``), alarms at
    yellow and the best threshold with ≤ 1 false alarm per series-year, by shape, and the curve 36–50."""
    from collections import Counter

    from models import risk_score

    print(f"{n_series} series, {start} – {end}, {len(de.episodes_in_period(episodes, start, end))} episodes")
    for variant, cfg in configs:
        parents: dict = {}
        for (township, domain), daily in tallies.items():
            for d, t in daily.items():
                parents.setdefault(domain, Counter())[d] += risk_score.volume(t, cfg)
        scores = {}
        for (township, domain), daily in tallies.items():
            rows = risk_score.score_series(daily, target_start=start, target_end=end, history_start=history_start,
                                           township_code=township, village_code=None, domain=domain,
                                           parent_daily_counts=dict(parents[domain]),
                                           n_siblings=len({t for t, _ in tallies}), day_rows="all", cfg=cfg)
            scores[(township, domain)] = {r["period_start"]: r["score"] for r in rows if r["period"] == "day"}
        stat = de.DayStatistic("RiskWatch", scores, float(cfg["levels"]["yellow"]))
        evaluation = de.evaluate_alarms(stat.alarms(stat.operating_threshold), episodes, n_series, start, end,
                                        margin_days)
        at_yellow = evaluation.summary()
        curve = de.curve(stat, [float(t) for t in range(30, 101, 2)], episodes, n_series, start, end, margin_days)
        best = de.at_false_alarm_rate(curve, 1.0) or {}
        print(f"{variant:<24} yellow: {at_yellow['detected']}/{at_yellow['episodes']} delay "
              f"{at_yellow['median_delay_days']} FA {at_yellow['false_alarms_per_series_year']} | ≤1FA/yr: "
              f"threshold {best.get('threshold')} {best.get('detected')}/{best.get('episodes')} delay "
              f"{best.get('median_delay_days')} FA {best.get('false_alarms_per_series_year')}", flush=True)
        shapes: dict = {}
        for r in evaluation.episodes:
            shapes.setdefault(r.episode.shape, []).append(r)
        print("    at yellow, by shape: " + "  ".join(
            f"{shape} {sum(r.detected for r in rs)}/{len(rs)} "
            f"{np.median([r.delay_days for r in rs if r.detected]) if any(r.detected for r in rs) else '–'} d"
            for shape, rs in sorted(shapes.items())), flush=True)
        # the yellow thresholds a county might choose instead of 50: detected / median delay / FA
        print("    " + "  ".join(f"{r['threshold']:g}: {r['detected']} {r['median_delay_days']} d {r['false_alarms_per_series_year']}"
                                 for r in curve if 36 <= r["threshold"] <= 50), flush=True)


def flat_series(rng, days, mean: float, signal_share: float, subject_dispersion: float,
                n_subjects: int = 200, named_share: float = 0.6, zipf: float = 1.1, n_villages: int = 15,
                village_rng=None) -> dict:
    """date → tally of a series with no episode: over-dispersed incidents (φ = subject_dispersion),
    ``signal_share`` of them gatherings heard by two feeds, and ``named_share`` of them naming one of
    ``n_subjects`` subjects of Zipf popularity — a few named often, most seldom or never before, each
    subject's daily rate gamma-distributed (shape 1 / (subject_dispersion − 1)): a compound or road
    named often is named in bursts.

    With ``village_rng`` the incidents also fall in ``n_villages`` villages (of Zipf(0.8) size): a
    subject's incidents in its own village (subject j in village j mod n_villages, so a popular
    compound's bursts are its village's), the unnamed ones spread by village weights that are
    themselves gamma-distributed per day (the same φ): villages have bad days too. A separate
    generator, so the township's counts are the same with and without villages."""
    from models import risk_score

    weights = 1.0 / np.arange(1, n_subjects + 1) ** zipf
    rates = mean * named_share * weights / weights.sum()
    size = 1.0 / (subject_dispersion - 1.0)
    village_size = 1.0 / np.arange(1, n_villages + 1) ** 0.8
    home = np.arange(n_subjects) % n_villages
    out = {}
    for day in days:
        per_subject = rng.negative_binomial(size, size / (size + rates))
        unnamed = int(rng.negative_binomial(mean * (1 - named_share) * size, 1.0 / subject_dispersion))
        n = int(per_subject.sum()) + unnamed
        k = int(rng.binomial(n, signal_share)) if signal_share else 0
        out[day] = {**risk_score.empty_tally(), "incidents": n, "records": n,
                    "signals": {"gathering": k} if k else {}, "feeds_2": k,
                    "subjects": {f"对象{j}": int(c) for j, c in enumerate(per_subject) if c}}
        if village_rng is not None:
            spread = village_size * village_rng.gamma(size, 1.0 / size, n_villages)
            per_village = (np.bincount(home, weights=per_subject, minlength=n_villages)
                           + village_rng.multinomial(unnamed, spread / spread.sum()))
            out[day]["villages"] = {f"3301000010{v + 1:02d}": [int(c), int(c)] for v, c in enumerate(per_village) if c}
    return out


def flat_check(base: dict, subject_variants: tuple[str, ...], village_variants: tuple[str, ...] = ("",),
               seeds: int = 6) -> None:
    """Alarm days (score ≥ yellow) over the 91 days April–June 2025 of series with no episode
    (``flat_series`` with villages; history from January), per subject-evidence × village-scan
    variant: the false alarms a rule would raise on a county whose background names subjects and
    spreads over villages the way real ones do."""
    from models import risk_score

    first, target, end = dt.date(2025, 1, 1), dt.date(2025, 4, 1), dt.date(2025, 6, 30)
    days = [first + dt.timedelta(days=i) for i in range((end - first).days + 1)]
    for variant, village_variant in [(v, vv) for v in subject_variants for vv in village_variants]:
        cfg = with_subjects(base, variant) if variant else base
        cfg = with_villages(cfg, village_variant) if village_variant else cfg
        total = 0
        for mean, share in ((8, 0.2), (4, 0.1), (2, 0.05)):
            for dispersion in (2.0, 4.0):
                alarms = []
                for seed in range(seeds):
                    daily = flat_series(np.random.default_rng(seed), days, mean, share, dispersion,
                                        village_rng=np.random.default_rng(1000 + seed))
                    rows = risk_score.score_series(daily, target_start=target, target_end=end, history_start=first,
                                                   township_code="330100001000", village_code=None,
                                                   domain="public_order", cfg=cfg)
                    alarms.append(sum(1 for r in rows if r["period"] == "day" and r["score"] >= cfg["levels"]["yellow"]))
                total += sum(alarms)
                print(f"subjects {variant or 'as configured':<12} villages {village_variant or 'as configured':<4} "
                      f"mean {mean} signals {share:.2f} φ {dispersion:g}: "
                      f"alarm days per 91 days {alarms} (worst {max(alarms)})", flush=True)
        print(f"subjects {variant or 'as configured'} villages {village_variant or 'as configured'}: "
              f"{total} alarm days in all", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, required=True, help="simulator output folder")
    parser.add_argument("--work", type=Path, help="an evaluate-detection output (e.g. OUT/true-domains)")
    parser.add_argument("--extra-report-weight", type=float, default=0.0)
    parser.add_argument("--refit-every", type=int, default=7, help="days between refits of the expected model")
    parser.add_argument("--margin-days", type=int, default=3)
    parser.add_argument("--linking-events", type=Path,
                        help="instead: sweep linking settings on these ingested events (an ingest --out folder)")
    parser.add_argument("--linking-settings", default='[{}]',
                        help="JSON list of overrides of scoring.yaml `linking`, e.g. '[{}, {\"max_span_hours\": 24}]'")
    parser.add_argument("--detection-events", type=Path,
                        help="instead: RiskWatch statistic and EARS C3 per linking setting × report weight on these events")
    parser.add_argument("--weights", default="0", help="comma-separated extra report weights for --detection-events")
    parser.add_argument("--contribution-events", type=Path,
                        help="instead: whole day scores per contribution variant on these events (true domains)")
    parser.add_argument("--variants", default="1:1",
                        help="comma-separated FACTOR:MARGIN_SD[:all] for --contribution-events, e.g. '0.667:0:all,1:1'")
    parser.add_argument("--subjects", default="",
                        help="comma-separated subject-evidence variants for --contribution-events: off or "
                             "PER_SURPRISAL:CAP[:MIN_INCIDENTS] (default: scoring.yaml as it is)")
    parser.add_argument("--villages", default="",
                        help="comma-separated village-scan variants for --contribution-events and --flat-check: "
                             "off or on")
    parser.add_argument("--without-festival", action="store_true",
                        help="expected counts without scoring.yaml's festival periods (for the before/after)")
    parser.add_argument("--flat-check", action="store_true",
                        help="instead: alarm days on synthetic series without episodes, per --subjects variant")
    args = parser.parse_args()
    cfg = scoring_config(args.without_festival)
    if args.flat_check:
        flat_check(cfg, tuple(args.subjects.split(",")), tuple(args.villages.split(",")))
        return
    if args.contribution_events:
        contribution_sweep(args.contribution_events, args.truth, args.variants.split(","), 2, args.margin_days, cfg,
                           tuple(args.subjects.split(",")), tuple(args.villages.split(",")))
        return
    if args.detection_events:
        detection_sweep(args.detection_events, args.truth, json.loads(args.linking_settings),
                        [float(w) for w in args.weights.split(",")], 2, args.margin_days, args.refit_every)
        return
    if args.linking_events:
        linking_sweep(args.linking_events, args.truth, json.loads(args.linking_settings))
        return

    period = json.loads((args.work / "evaluation.json").read_text(encoding="utf-8"))["period"]
    first, start, end = (dt.date.fromisoformat(period[k]) for k in ("history_start", "start", "end"))
    evaluation = json.loads((args.work / "evaluation.json").read_text(encoding="utf-8"))
    n_series = evaluation["series"]
    episodes = de.load_episodes(args.truth / "truth" / "episodes.json")
    series = load_series(args.work, args.extra_report_weight)
    stats, seconds = statistics_for(series, first, start, end, args.refit_every, cfg)
    curves = {name: de.curve(stat, de.default_thresholds(v for days in stat.values.values() for v in days.values()),
                             episodes, n_series, start, end, args.margin_days) for name, stat in stats.items()}
    reference = de.at_false_alarm_rate(curves["regression+windows"], 1.0)
    rate = reference["false_alarms_per_series_year"] if reference else 1.0
    print(f"{len(series)} non-empty series of {n_series}, {start} – {end}, extra report weight {args.extra_report_weight:g}, "
          f"refit every {args.refit_every} days")
    print(f"{'method':<26}{'threshold':>10}{'sens@≤1FA':>11}{'delay':>7}{'FA/yr':>7}{'sens@same FA':>14}{'cpu s':>8}")
    for name, rows in curves.items():
        best = de.at_false_alarm_rate(rows, 1.0)
        same = de.at_false_alarm_rate(rows, rate)
        if best is None:
            print(f"{name:<26}{'–':>10}")
            continue
        print(f"{name:<26}{best['threshold']:>10.3g}{best['sensitivity']:>11.0%}"
              f"{(best['median_delay_days'] if best['median_delay_days'] is not None else float('nan')):>7.1f}"
              f"{best['false_alarms_per_series_year']:>7.2f}{(same['sensitivity'] if same else 0):>14.0%}"
              f"{seconds[name]:>8.1f}")


if __name__ == "__main__":
    main()
