"""The expected counts at the series' recent level (``expected.recent_level``): a level the series moved
to in the last weeks is no alarm for weeks, while an episode on top of it still is; the guard band,
past episodes and quiet spells leave the expectation alone; the stream expects what the batch does."""
import copy
import datetime as dt

import numpy as np

from models import baselines, risk_score

CFG = risk_score.config()
OFF = copy.deepcopy(CFG)
del OFF["expected"]["recent_level"]
# the regression's counts as fitted, and the recent level alone: a window's own dispersion
# (``expected.window_dispersion``) takes some of a new level's long-window alarms too
REGRESSION_ONLY = copy.deepcopy(OFF)
del REGRESSION_ONLY["expected"]["window_dispersion"]
LEVEL_ONLY = copy.deepcopy(CFG)
del LEVEL_ONLY["expected"]["window_dispersion"]
D0 = dt.date(2025, 1, 1)
TOWN = "330100001000"


def level_after(counts, cfg) -> float:
    """The expected daily count over the week after ``counts`` (one a day from D0)."""
    dates = [D0 + dt.timedelta(days=i) for i in range(len(counts))]
    counts = np.array(counts, dtype=float)
    model = baselines.at_recent_level(baselines.expected_model(dates, counts, cfg["expected"]), dates, counts,
                                      cfg["expected"])
    return float(model.predict([dates[-1] + dt.timedelta(days=k) for k in range(1, 8)]).mean())


def test_a_level_reached_in_the_last_weeks_is_expected():
    counts = [4.0] * 170 + [8.0] * 30
    assert level_after(counts, OFF) < 7.0  # the regression's trend follows the new level only part of the way
    assert level_after(counts, CFG) > 7.8


def test_the_guard_band_past_episodes_and_quiet_spells_leave_the_expectation_alone():
    # the last two days are the guard band: an episode's first days do not raise its own expectation
    first_days = [4.0] * 198 + [30.0, 30.0]
    assert level_after(first_days, CFG) == level_after(first_days, OFF)
    # five days far above the fit three weeks ago are a past episode, not a new level
    past_episode = [4.0] * 180 + [25.0] * 5 + [4.0] * 15
    assert level_after(past_episode, CFG) < 1.03 * level_after(past_episode, OFF)
    # a quiet spell never lowers it (nothing would alarm sooner)
    quiet = [4.0] * 170 + [1.0] * 30
    assert level_after(quiet, CFG) == level_after(quiet, OFF)


def first_year_tallies(seed: int, extra: dict | None = None) -> dict:
    """Poisson 3 a day until 9 June, then 6 (a summer in the first year: no seasonal term yet)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(212):
        d = D0 + dt.timedelta(days=i)
        n = int(rng.poisson(6.0 if d >= dt.date(2025, 6, 10) else 3.0)) + (extra or {}).get(d, 0)
        out[d] = {**risk_score.empty_tally(), "incidents": n, "records": n}
    return out


def july_rows(daily, cfg):
    rows = risk_score.score_series(daily, target_start=dt.date(2025, 7, 1), target_end=dt.date(2025, 7, 31),
                                   history_start=D0, township_code=TOWN, village_code=None,
                                   domain="public_order", cfg=cfg)
    return [r for r in rows if r["period"] == "day"]


def alarm_days(rows, cfg):
    return [r["period_start"].day for r in rows if r["score"] >= cfg["levels"]["yellow"]]


def test_a_new_level_raises_no_alarm_for_weeks_while_an_episode_on_top_of_it_does():
    episode = {dt.date(2025, 7, 15): 15, dt.date(2025, 7, 16): 15}
    with_rule, level_only, without = [], [], []
    for seed in range(6):
        with_rule += alarm_days(july_rows(first_year_tallies(seed), CFG), CFG)
        level_only += alarm_days(july_rows(first_year_tallies(seed), LEVEL_ONLY), LEVEL_ONLY)
        without += alarm_days(july_rows(first_year_tallies(seed), REGRESSION_ONLY), REGRESSION_ONLY)
        assert 15 in alarm_days(july_rows(first_year_tallies(seed, episode), CFG), CFG)
    assert len(without) >= 15
    assert len(level_only) <= 2 and len(with_rule) <= 2


def test_the_stream_expects_what_the_batch_expects():
    daily = first_year_tallies(0)
    first = dt.date(2025, 7, 1)
    batch = next(r for r in july_rows(daily, CFG) if r["period_start"] == first)
    history = {d: t for d, t in daily.items() if d < first}
    stream = risk_score.score_window(daily[first]["incidents"], history, 1, daily[first], window_end=first,
                                     history_start=D0, cfg=CFG)
    assert stream["expected"] == batch["expected"]
    off = risk_score.score_window(daily[first]["incidents"], history, 1, daily[first], window_end=first,
                                  history_start=D0, cfg=OFF)
    assert stream["expected"] > off["expected"] * 1.2  # the new level, which the regression alone misses
