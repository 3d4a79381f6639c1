"""A window's sum tested with its own dispersion (``expected.window_dispersion``): a series whose level
wanders from month to month (spells 8% above and below) raises no alarm for a fortnight 20% above its
usual level, a series that
has been steady still does for the same rise, a one-day burst still does on either; a window is never
held steadier than its days; the stream tests its window as the batch does."""
import copy
import datetime as dt
import pickle

import apache_beam as beam
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models import baselines, risk_score
from pipelines import score
from pipelines.options import beam_options

CFG = risk_score.config()
OFF = copy.deepcopy(CFG)
del OFF["expected"]["window_dispersion"]
WINDOWS = tuple(CFG["anomaly"]["windows"])
D0, TARGET, TARGET_END = dt.date(2025, 1, 1), dt.date(2025, 4, 1), dt.date(2025, 4, 30)
TOWN, DOMAIN = "330100001000", "civil_dispute"
RISE = (dt.date(2025, 4, 8), dt.date(2025, 4, 21))  # a fortnight 20% above the usual level
BURST, BURST_SIZE = dt.date(2025, 4, 27), 100


def all_days(start, end):
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def daily_means(wanders: bool, mean: float = 100.0, swing: float = 0.08) -> dict:
    """Mean incidents per day: January–March in four-week spells (counted back from April) alternately
    ``swing`` above and below ``mean`` (a series that wanders) or at ``mean`` (a steady one); April at
    ``mean`` but for the rise."""
    out = {}
    for d in all_days(D0, TARGET_END):
        spell = (TARGET - d).days // 28
        level = mean * (1.0 + (-swing if spell % 2 else swing)) if wanders and d < TARGET else mean
        out[d] = mean * 1.2 if RISE[0] <= d <= RISE[1] else level
    return out


def tallies(seed: int, wanders: bool, burst: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for d, m in daily_means(wanders).items():
        n = int(rng.poisson(m)) + (burst if d == BURST else 0)
        out[d] = {**risk_score.empty_tally(), "incidents": n, "records": n}
    return out


def day_scores(daily, cfg) -> dict:
    rows = risk_score.score_series(daily, target_start=TARGET, target_end=TARGET_END, history_start=D0,
                                   township_code=TOWN, village_code=None, domain=DOMAIN, cfg=cfg)
    return {r["period_start"]: r for r in rows if r["period"] == "day"}


def rise_alarms(rows, cfg) -> list:
    """Alarm days from the rise's first day to the day before the burst."""
    return [d for d, r in rows.items() if RISE[0] <= d < BURST and r["score"] >= cfg["levels"]["yellow"]]


def test_a_fortnight_within_the_series_wander_is_no_alarm(tmp_path):
    """Beam (DomainBatches → ScoreSeries) on a wandering series: the fortnight's rise raises no yellow
    (with the daily φ alone it does, on this draw five days of it); the one-day burst still does."""
    daily = tallies(5, wanders=True, burst=BURST_SIZE)
    items = [(((TOWN[:6], TOWN, None, DOMAIN), d.isoformat()), t) for d, t in daily.items()]
    with beam.Pipeline(options=beam_options([])) as p:
        (p | beam.Create(items) | score.DomainBatches() | score.ScoreSeries(TARGET, TARGET_END, D0, villages=False)
         | beam.combiners.ToList()
         | beam.Map(lambda rows: (tmp_path / "rows").write_bytes(pickle.dumps(rows))))
    rows = {r["period_start"]: r for r in pickle.loads((tmp_path / "rows").read_bytes()) if r["period"] == "day"}
    assert rows == day_scores(daily, CFG)  # the pipeline scores as score_series does
    assert rise_alarms(rows, CFG) == []
    assert len(rise_alarms(day_scores(daily, OFF), OFF)) >= 3
    assert rows[BURST]["level"] in risk_score.ALERT_LEVELS


def test_the_rule_widens_only_what_the_history_shows():
    wandering, wandering_off, steady, steady_off = [], [], [], []
    for seed in range(6):
        for wanders, on, off in ((True, wandering, wandering_off), (False, steady, steady_off)):
            daily = tallies(seed, wanders)
            on.append(len(rise_alarms(day_scores(daily, CFG), CFG)))
            off.append(len(rise_alarms(day_scores(daily, OFF), OFF)))
        # a burst of one day is tested with the daily φ, whatever the series' fortnights did
        burst = day_scores(tallies(seed, wanders=True, burst=BURST_SIZE), CFG)[BURST]
        assert burst["level"] in risk_score.ALERT_LEVELS
    assert sum(wandering) == 0 and sum(wandering_off) >= 5
    # the same rise on a series that has been steady is an episode, with the rule as without it
    assert sum(steady) >= 40 and sum(steady) >= 0.9 * sum(steady_off)


def history(counts):
    dates = all_days(D0, D0 + dt.timedelta(days=len(counts) - 1))
    counts = np.asarray(counts, dtype=float)
    return dates, counts, baselines.expected_model(dates, counts, CFG["expected"])


def test_window_dispersion_of_a_wandering_and_a_steady_series_and_a_past_episode():
    rng = np.random.default_rng(3)
    means = np.array(list(daily_means(True).values()))[:90]
    dates, counts, model = history(rng.poisson(means))
    phi = baselines.window_dispersions(model, dates, counts, WINDOWS, CFG["expected"])
    assert phi[0] == model.dispersion and phi[-1] > 3.0 * model.dispersion
    dates, counts, model = history(rng.poisson(100.0, 180))
    assert baselines.window_dispersions(model, dates, counts, WINDOWS, CFG["expected"])[-1] < 1.6
    # a fortnight far above the fit is a past episode, not the series' wander: it is down-weighted
    counts = rng.poisson(100.0, 180).astype(float)
    counts[100:114] *= 2.0
    dates, counts, model = history(counts)
    assert baselines.window_dispersions(model, dates, counts, WINDOWS, CFG["expected"])[-1] < 3.0
    assert list(baselines.window_dispersions(model, dates, counts, WINDOWS, OFF["expected"])) == [model.dispersion] * 4


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.2, 60.0), st.floats(1.0, 4.0), st.integers(20, 400))
def test_a_window_is_never_held_steadier_than_its_days(seed, mean, dispersion, n):
    rng = np.random.default_rng(seed)
    size = mean / (dispersion - 1.0) if dispersion > 1.0 else None
    counts = rng.negative_binomial(size, size / (size + mean), n) if size else rng.poisson(mean, n)
    dates, counts, model = history(counts)
    phi = baselines.window_dispersions(model, dates, counts, WINDOWS, CFG["expected"])
    assert phi[0] == model.dispersion
    assert np.all(np.isfinite(phi)) and np.all(phi >= model.dispersion)


def test_the_stream_tests_its_window_with_the_batchs_dispersion():
    """The stream's 14-day window ending on the rise's last day, against the history before it: the same
    rule, so on the wandering series it stays below yellow as the batch's day does, and not without it."""
    daily = tallies(5, wanders=True)
    first = RISE[0]
    window = [first + dt.timedelta(days=k) for k in range(14)]
    observed = sum(daily[d]["incidents"] for d in window)
    past = {d: t for d, t in daily.items() if d < first}
    on = risk_score.score_window(observed, past, 14, risk_score.merge_tallies([daily[d] for d in window]),
                                 window_end=window[-1], history_start=D0, cfg=CFG)
    off = risk_score.score_window(observed, past, 14, risk_score.merge_tallies([daily[d] for d in window]),
                                  window_end=window[-1], history_start=D0, cfg=OFF)
    assert on["score"] < CFG["levels"]["yellow"] <= off["score"]
