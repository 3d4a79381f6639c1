"""Baselines and outbreak statistics on series whose answer is known."""
import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import baselines

START = dt.date(2024, 1, 1)


def days(n, start=START):
    return [start + dt.timedelta(days=i) for i in range(n)]


def first_alarm(surprisal, threshold, start):
    hits = np.nonzero(surprisal[start:] > threshold)[0]
    return None if len(hits) == 0 else int(hits[0])


def test_constant_series_raises_no_alarm():
    y = np.full(200, 4.0)
    mu, phi = baselines.walk_forward_expected(days(200), y)
    s, _ = baselines.window_surprisal(y, mu, phi)
    assert np.allclose(mu[30:], 4.0, rtol=0.05)
    assert s[30:].max() < 1.0
    for method in ("C1", "C2", "C3"):
        stat = baselines.ears(y, method)
        assert np.nanmax(stat) <= 0.0


def test_step_up_is_detected_within_three_days():
    rng = np.random.default_rng(7)
    y = rng.poisson(3.0, 400).astype(float)
    y[350:] += rng.poisson(6.0, 50)
    mu, phi = baselines.walk_forward_expected(days(400), y)
    s, _ = baselines.window_surprisal(y, mu, phi)
    delay = first_alarm(s, 3.5, 350)
    assert delay is not None and delay <= 3
    assert first_alarm(baselines.ears(y, "C2"), 3.0, 350) is not None


def test_overdispersed_noise_gives_few_false_alarms():
    rng = np.random.default_rng(11)
    n = 3 * 365
    dates = days(n)
    weekly = np.where(np.array([d.weekday() for d in dates]) >= 5, 1.6, 1.0)
    lam = 2.5 * weekly * rng.gamma(4.0, 0.25, n)  # variance ≈ 1.6 × mean
    y = rng.poisson(lam).astype(float)
    mu, phi = baselines.walk_forward_expected(dates, y)
    s, _ = baselines.window_surprisal(y, mu, phi)
    alarm_days = int((s[365:] > 3.5).sum())
    assert alarm_days <= 2, alarm_days
    assert phi[-1] > 1.2  # the over-dispersion was seen
    c2_days = int((baselines.ears(y, "C2")[365:] > 3.0).sum())
    assert c2_days > alarm_days  # EARS C2 ignores over-dispersion and weekends


def test_regression_learns_weekday_pattern_and_season():
    rng = np.random.default_rng(3)
    n = 2 * 365
    dates = days(n)
    weekend = np.array([d.weekday() >= 5 for d in dates])
    season = 1 + 0.5 * np.sin(2 * np.pi * np.array([d.timetuple().tm_yday for d in dates]) / 365.25)
    lam = 4 * season * np.where(weekend, 2.0, 1.0)
    y = rng.poisson(lam).astype(float)
    model = baselines.fit_expected(dates[:-28], y[:-28])
    predicted = model.predict(dates[-28:])
    assert model.day_of_week and model.harmonics == 1
    assert np.mean(np.abs(predicted - lam[-28:]) / lam[-28:]) < 0.15


def test_past_outbreak_is_down_weighted():
    rng = np.random.default_rng(5)
    y = rng.poisson(2.0, 300).astype(float)
    y[250:265] += 15  # last month's episode
    dates = days(300)
    model = baselines.fit_expected(dates, y)
    assert model.predict(dates[-1:])[0] < 3.0  # unweighted, the episode lifts the level and the trend


def test_sparse_series_pools_from_parent():
    rng = np.random.default_rng(9)
    dates = days(365)
    parent = rng.poisson(5.0, 365).astype(float)
    village = np.zeros(365)
    village[[40, 200]] = 1  # two events a year
    own = baselines.expected_model(dates, village)
    pooled = baselines.expected_model(dates, village, parent_counts=parent, n_siblings=20)
    share = baselines.pooled_share(2, parent.sum(), 20, 10)
    assert pooled.predict([dates[-1] + dt.timedelta(days=1)])[0] == pytest.approx(5.0 * share, rel=0.15)
    # a single event is rare for such a village, but one or two events never make a volume signal
    counts = np.array([0, 0, 1, 0, 0], dtype=float)
    s, _ = baselines.window_surprisal(counts, pooled.predict(dates[:5]), pooled.dispersion, min_observed=3)
    assert s.max() == 0.0
    assert baselines.surprisal(1, pooled.predict(dates[:1])[0], pooled.dispersion)[()] > 1.0
    assert own.history_total == 2


def test_nb_cusum_rises_in_outbreak_and_is_capped():
    y = np.array([2.0] * 30 + [8.0] * 10 + [2.0] * 30)
    stat = baselines.nb_cusum(y, np.full(70, 2.0), 1.5, ratio=2.0, ceiling=10.0)
    assert stat[:30].max() == 0.0
    assert stat[35] > 5.0
    assert stat.max() <= 10.0
    assert stat[-1] < stat[40]


def test_ears_c1_matches_hand_computation():
    y = np.array([1, 2, 3, 4, 5, 6, 7, 20], dtype=float)
    base = y[:7]
    expected = (20 - base.mean()) / base.std(ddof=1)
    assert baselines.ears(y, "C1")[7] == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown EARS method"):
        baselines.ears(y, "C4")


def test_upper_tail_matches_poisson_and_negative_binomial():
    assert baselines.upper_tail(0, 3.0, 1.0) == 1.0
    assert baselines.upper_tail(10, 3.0, 1.0) == pytest.approx(0.0011024881, rel=1e-6)
    assert baselines.upper_tail(10, 3.0, 2.0) > baselines.upper_tail(10, 3.0, 1.0)


def test_ewma_surprisal_stays_low_on_expected_counts_and_builds_on_a_shift():
    rng = np.random.default_rng(3)
    mu = np.full(120, 4.0)
    calm = baselines.ewma_surprisal(rng.poisson(4.0, 120), mu, 1.0)
    assert np.mean(calm > 2.0) < 0.02  # a normal tail of 10^-2, a little over a day in a hundred
    shifted = np.concatenate([rng.poisson(4.0, 60), rng.poisson(8.0, 10)]).astype(float)
    s = baselines.ewma_surprisal(shifted, np.full(70, 4.0), 1.0)
    assert s[61:].max() > 4.0 and s[62] > s[59]
    # over-dispersion makes the same excess less surprising
    assert baselines.ewma_surprisal(shifted, np.full(70, 4.0), 3.0)[65] < s[65]


FESTIVALS = (dt.date(2025, 1, 29), dt.date(2026, 2, 17))


def festival_rate(day, base=5.0, before=1.8, holiday=0.4):
    """A county's volume around the Spring Festival: up in the month before, down in the holiday."""
    for festival in FESTIVALS:
        offset = (day - festival).days
        if -1 <= offset <= 6:
            return base * holiday
        if -30 <= offset <= -2:
            return base * before
    return base


def test_festival_periods_learnt_from_last_year_move_with_the_date():
    """2025's festival (29 January) teaches the model what 2026's (17 February) does, 19 days later."""
    rng = np.random.default_rng(1)
    history = days(365, dt.date(2025, 1, 1))
    y = np.array([rng.poisson(festival_rate(d)) for d in history], dtype=float)
    cfg = baselines.expected_config()
    model = baselines.fit_expected(history, y, cfg)
    plain = baselines.fit_expected(history, y, {k: v for k, v in cfg.items() if k != "festival"})
    assert model.festival_periods == ((-30, -2), (-1, 6))
    ahead = days(70, dt.date(2026, 1, 1))
    truth = np.array([festival_rate(d) for d in ahead])
    with_festival, without = model.predict(ahead), plain.predict(ahead)
    assert np.abs(with_festival - truth).mean() < 0.5 * np.abs(without - truth).mean()
    holiday = [i for i, d in enumerate(ahead) if -1 <= (d - FESTIVALS[1]).days <= 6]
    assert with_festival[holiday].mean() < 3.0 < without[holiday].mean()


def test_festival_term_has_no_effect_without_a_festival_in_the_history():
    rng = np.random.default_rng(2)
    history = days(200, dt.date(2025, 3, 1))
    y = rng.poisson(4.0, 200).astype(float)
    cfg = baselines.expected_config()
    model = baselines.fit_expected(history, y, cfg)
    plain = baselines.fit_expected(history, y, {k: v for k, v in cfg.items() if k != "festival"})
    assert model.festival_periods == ()
    ahead = days(90, dt.date(2026, 1, 1))
    assert np.allclose(model.predict(ahead), plain.predict(ahead))


def test_a_sparse_series_festival_is_shrunk_towards_no_effect():
    """Two incidents in last year's pre-festival month are no reason to expect none this year, nor
    four times as many: the prior keeps the term near its usual level where the data are few."""
    history = days(365, dt.date(2025, 1, 1))
    y = np.zeros(365)
    y[::9] = 1.0  # ~40 incidents a year, spread evenly: the pre-festival month sees 3
    pre = [i for i, d in enumerate(history) if -30 <= (d - FESTIVALS[0]).days <= -2]
    y[pre] = 0.0
    y[pre[:2]] = 1.0
    model = baselines.fit_expected(history, y, baselines.expected_config())
    ahead = days(60, dt.date(2026, 1, 15))
    ratio = model.predict(ahead).max() / model.predict(ahead).min()
    assert ratio < 2.5


def test_years_without_a_festival_date_are_named():
    cfg = {"festival": {"dates": ["2025-01-29", "2026-02-17"], "periods": {"holiday": [-1, 6]}}}
    assert baselines.festival_years_missing(cfg, dt.date(2025, 3, 1), dt.date(2026, 12, 31)) == []
    assert baselines.festival_years_missing(cfg, dt.date(2026, 3, 1), dt.date(2028, 1, 31)) == [2027, 2028]
    assert baselines.festival_years_missing({}, dt.date(2031, 1, 1), dt.date(2031, 12, 31)) == []


def test_uncertain_rate_tail_is_the_negative_binomial_and_widens_with_little_evidence():
    from scipy import stats

    # dispersion 1, gamma rate worth `shape` events: the gamma-Poisson, NB(shape, shape / (shape + mean))
    for count, mean, shape in ((3, 0.5, 2.0), (7, 2.0, 40.0), (1, 0.1, 0.5)):
        expected = stats.nbinom.sf(count - 1, shape, shape / (shape + mean))
        assert baselines.uncertain_rate_tail(count, mean, 1.0, shape) == pytest.approx(expected, rel=1e-9)
    well_known = baselines.uncertain_rate_tail(6, 1.0, 1.0, 1e6)
    assert well_known == pytest.approx(stats.poisson.sf(5, 1.0), rel=1e-4)
    assert baselines.uncertain_rate_tail(6, 1.0, 1.0, 2.0) > 10 * well_known
    assert baselines.uncertain_rate_tail(6, 1.0, 3.0, 1e6) > 10 * well_known
    assert baselines.uncertain_rate_tail(0, 1.0, 1.0, 2.0) == 1.0


def village_days(rng, days, weights, per_day, burst=None):
    """(k, days) counts of k villages sharing `per_day` a day by `weights`; `burst`: (village, day, extra)."""
    counts = np.stack([rng.multinomial(n, weights) for n in rng.poisson(per_day, days)], axis=1).astype(float)
    if burst:
        village, day, extra = burst
        counts[village, day] += extra
    return counts


def test_subregion_surprisal_finds_the_village_and_pays_for_looking_at_many():
    rng = np.random.default_rng(3)
    weights = np.full(10, 0.1)
    counts = village_days(rng, 120, weights, 4.0, burst=(7, 110, 5))
    history = slice(0, 100)
    past = counts[:, history].sum(axis=1)
    shares = past / counts[:, history].sum()
    expected = np.full(20, 4.0)
    s, w, r = baselines.subregion_surprisal(counts[:, 100:], shares, past, expected, 1.0, (1, 3), past > 0, 3)
    assert r[10] == 7 and w[10] == 1 and s[10] > 2
    assert np.all(s[:10] < 2)  # before the burst: nothing stands out after the correction
    # the same township with 30 more quiet villages: four times as many looks, log10(4) less surprise
    quiet = np.zeros((30, 20))
    s40, _, r40 = baselines.subregion_surprisal(np.vstack([counts[:, 100:], quiet]),
                                                np.concatenate([shares, [0.1] * 30]),
                                                np.concatenate([past, [40.0] * 30]), expected, 1.0, (1, 3),
                                                np.ones(40, dtype=bool), 3)
    assert r40[10] == 7 and s40[10] == pytest.approx(s[10] - np.log10(4), abs=1e-9)
    # a village new in the window is counted among the looks, and a lone incident is no burst
    s_new, _, r_new = baselines.subregion_surprisal(np.array([[0, 0, 1.0]]), [0.01], [0.5], [1, 1, 1], 1.0, (1,),
                                                    [False], 3)
    assert s_new[2] == 0 and r_new[2] == -1


def test_share_dispersion_is_one_for_a_fair_split_and_more_for_villages_with_bad_days():
    rng = np.random.default_rng(4)
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    fair = village_days(rng, 200, weights, 8.0)
    assert baselines.share_dispersion(fair, fair.sum(axis=0), weights) == pytest.approx(1.0, abs=0.25)
    # each day one village's weight is drawn anew (gamma, mean 1): its share varies beyond chance
    bad_days = np.stack([rng.multinomial(int(n), w / w.sum()) for n, w in
                         zip(rng.poisson(8.0, 200), weights * rng.gamma(1.0, 1.0, (200, 4)))], axis=1).astype(float)
    phi = baselines.share_dispersion(bad_days, bad_days.sum(axis=0), weights)
    assert np.all(phi > 1.5)
    # a village with little history leans on the pooled value
    short = baselines.share_dispersion(bad_days[:, :3], bad_days[:, :3].sum(axis=0), weights, prior_days=28)
    assert np.ptp(short) < np.ptp(phi) + 1e-9


def test_upper_tail_is_scipys_tail_for_counts_and_weighted_volumes():
    """The tail through the distributions' own functions gives scipy.stats' values bit for bit, for
    weighted volumes (2.5 is "3 or more") and below one event (no evidence: 1)."""
    from scipy import stats
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 7.5, 12.0, 40.0] * 3)
    mu = np.repeat([0.01, 2.0, 15.0], 10)
    for phi in (1.0, 1.0 + 1e-7, 1.3, 4.0, 60.0):
        if phi <= 1.0 + 1e-6:
            expected = stats.poisson.sf(x - 1, mu)
        else:
            size = mu / (phi - 1.0)
            expected = stats.nbinom.sf(x - 1, size, size / (size + mu))
        assert np.array_equal(baselines.upper_tail(x, mu, phi), np.where(x <= 0, 1.0, expected))
    assert baselines.upper_tail(0.5, 3.0, 2.0) == 1.0


def test_siblings_pooling_from_one_parent_fit_it_once():
    rng = np.random.default_rng(11)
    dates = days(365)
    parent = rng.poisson(6.0, 365).astype(float)
    villages = [np.zeros(365) for _ in range(3)]
    villages[0][[30, 90]] = 1
    villages[1][[10, 11, 200, 300]] = 1
    fits = {}
    shared = [baselines.expected_model(dates, v, parent_counts=parent, n_siblings=3, parent_fits=fits)
              for v in villages]
    alone = [baselines.expected_model(dates, v, parent_counts=parent, n_siblings=3) for v in villages]
    assert len(fits) == 1
    assert shared == alone  # the memo changes nothing but the work
    assert shared[1].predict(dates[-7:]).sum() > shared[2].predict(dates[-7:]).sum()
    # the parent's own series (a township scored before its villages) finds its fit in the memo
    assert baselines.expected_model(dates, parent, parent_fits=fits) is next(iter(fits.values()))
    other_parent = parent[::-1].copy()
    baselines.expected_model(dates, villages[0], parent_counts=other_parent, n_siblings=3, parent_fits=fits)
    assert len(fits) == 2
    # a series with enough events of its own gets its own fit, as without the memo
    busy = rng.poisson(2.0, 365).astype(float)
    pooled_or_own = baselines.expected_model(dates, busy, parent_counts=parent, parent_fits=fits)
    assert pooled_or_own == baselines.expected_model(dates, busy)
    assert len(fits) == 3


def test_design_follows_the_calendar_across_a_leap_year():
    """Day-of-week and season columns from numpy's calendar are the dates' own weekday and day of year."""
    dates = days(800, dt.date(2023, 12, 20))
    X = baselines._design(dates, dates[-1], day_of_week=True, harmonics=1, trend=True)
    weekday = np.array([d.weekday() for d in dates])
    for k in range(1, 7):
        assert np.array_equal(X[:, 1 + k], (weekday == k).astype(float))
    day_of_year = np.array([d.timetuple().tm_yday for d in dates], dtype=float)
    assert np.array_equal(X[:, 8], np.sin(2.0 * np.pi * (day_of_year / 365.25)))
    assert day_of_year[dates.index(dt.date(2024, 12, 31))] == 366
    ordinals = np.array([d.toordinal() for d in dates], dtype=float)
    assert np.array_equal(X[:, 1], (ordinals - dates[-1].toordinal()) / 365.25)


def test_solve_is_numpys_solve_and_raises_as_it_does_on_a_singular_system():
    rng = np.random.default_rng(5)
    for p in (1, 4, 12):
        a = rng.random((p, p))
        a = a @ a.T + np.eye(p)
        b = rng.random(p)
        assert np.array_equal(baselines._solve(a, b), np.linalg.solve(a, b))
    with pytest.warns(RuntimeWarning), pytest.raises(np.linalg.LinAlgError):
        baselines._solve(np.zeros((3, 3)), np.ones(3))
    # stacked systems: each one's solution, and a singular one among them raises as alone
    a, b = rng.random((4, 12, 12)) + 12 * np.eye(12), rng.random((4, 12))
    assert all(np.array_equal(x, np.linalg.solve(a[k], b[k])) for k, x in enumerate(baselines._solve(a, b)))
    a[2] = 0.0
    with pytest.warns(RuntimeWarning), pytest.raises(np.linalg.LinAlgError):
        baselines._solve(a, b)


def test_rolling_sums_are_each_windows_rolling_sum_for_a_series_or_one_per_row():
    rng = np.random.default_rng(8)
    x = rng.poisson(3.0, (4, 40)).astype(float) * 0.5
    windows = (1, 3, 7, 14, 60)
    for row in x:
        for w, sums in zip(windows, baselines.rolling_sums(row, windows)):
            assert np.array_equal(sums, [row[max(0, i - w + 1):i + 1].sum() for i in range(len(row))])
    for w, sums in zip(windows, baselines.rolling_sums(x, windows)):
        assert np.array_equal(sums, np.stack([baselines.rolling_sum(row, w) for row in x]))


def test_models_with_other_terms_on_the_same_days_predict_from_their_own_design():
    """Designs are kept per days and terms: a short history (no weekday terms) and a long one ending on
    the same day predict the same days each from its own terms, in whichever order they are asked."""
    rng = np.random.default_rng(3)
    weekly = np.tile([9.0, 9, 9, 9, 9, 2, 2], 60)
    long_model = baselines.fit_expected(days(420), rng.poisson(weekly))
    short_model = baselines.fit_expected(days(40, days(420)[-40]), rng.poisson(weekly[-40:]))
    ahead = days(14, days(421)[-1])
    kept = [model.predict(ahead) for model in (long_model, short_model)]
    baselines._shared_design.cache_clear()
    fresh = [model.predict(ahead) for model in (short_model, long_model)][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(kept, fresh))
    assert long_model.day_of_week and not short_model.day_of_week
    assert kept[0].std() > 1.0 and kept[1].std() < 0.5


def test_a_warm_started_fit_reaches_the_cold_starts_solution_in_fewer_steps():
    """Reweighting refits from the previous β (``start``): the same fixed point, to ~1e-12, not bit for bit."""
    rng = np.random.default_rng(11)
    dates = days(365)
    counts = rng.poisson(np.tile([6.0, 6, 6, 6, 6, 2, 2], 53)[:365]).astype(float)
    counts[200:206] += 25  # a past outbreak: the reweighted fit differs from the first
    X = baselines._design(dates, dates[-1], True, 1, True)
    w = np.ones(365)
    first = baselines._poisson_irls(X, counts, w)
    w[200:206] = 0.05
    steps = {}
    for name, start in (("cold", None), ("warm", first)):
        calls = []
        solve = baselines._solve
        baselines._solve = lambda a, b: calls.append(1) or solve(a, b)
        try:
            steps[name] = (baselines._poisson_irls(X, counts, w, start=start), len(calls))
        finally:
            baselines._solve = solve
    np.testing.assert_allclose(steps["warm"][0], steps["cold"][0], rtol=0, atol=1e-10)
    assert steps["warm"][1] < steps["cold"][1]


def _tails_everywhere_window_surprisal(counts, expected, dispersion, windows, min_observed):
    """``window_surprisal`` as it was before it skipped the windows that do not count."""
    observed = np.stack(baselines.rolling_sums(counts, windows))
    tails = baselines.surprisal(observed, np.stack(baselines.rolling_sums(expected, windows)),
                                np.broadcast_to(dispersion, observed.shape))
    best, best_w = np.zeros(len(counts)), np.full(len(counts), windows[0])
    for w, obs, s in zip(windows, observed, tails):
        s = np.where(obs >= min_observed, s - baselines.window_correction(windows), 0.0)
        best_w, best = np.where(s > best, w, best_w), np.maximum(s, best)
    return np.maximum(best, 0.0), best_w


@pytest.mark.parametrize("rate, dispersion", [(0.05, 1.0), (0.4, 1.8), (3.0, 2.5)])
def test_window_surprisal_skips_only_windows_that_do_not_count(rate, dispersion):
    rng = np.random.default_rng(int(rate * 100))
    counts = rng.poisson(rate, 60).astype(float) * 1.25
    counts[40:43] += 4
    expected = np.full(60, rate) * rng.uniform(0.5, 1.5, 60)
    for min_observed in (0, 3):
        s, w = baselines.window_surprisal(counts, expected, dispersion, (1, 3, 7, 14), min_observed)
        ref_s, ref_w = _tails_everywhere_window_surprisal(counts, expected, dispersion, (1, 3, 7, 14), min_observed)
        assert np.array_equal(s, ref_s) and np.array_equal(w, ref_w)
    assert baselines.window_surprisal(np.zeros(10), np.full(10, 0.1), 1.0, (1, 3), 3)[0].tolist() == [0.0] * 10


def test_subregion_surprisal_scores_sparse_villages_as_every_village_day_scored():
    """Tails only where a village's window counts: the same surprisal, window and village as tails
    computed for every village × day (a dispersion per village, and one for all)."""
    rng = np.random.default_rng(12)
    counts = rng.poisson(0.15, (6, 40)).astype(float)
    counts[2, 30:32] += 3
    shares, shapes = np.full(6, 1 / 6), np.array([20.0, 5, 40, 1, 0.5, 10])
    expected = np.full(40, 0.9)
    for dispersion in (1.3, np.array([1.0, 1.2, 2.0, 1.0, 1.1, 3.0])):
        s, w, r = baselines.subregion_surprisal(counts, shares, shapes, expected, dispersion, (1, 3, 7),
                                                shapes > 1, 3)
        for j, (sj, wj, rj) in enumerate(zip(s, w, r)):
            best = (0.0, 1, -1)
            for win in (1, 3, 7):
                obs = counts[:, max(0, j - win + 1):j + 1].sum(axis=1)
                n_regions = (shapes > 1).sum() + ((obs > 0) & ~(shapes > 1)).sum()
                disp = np.broadcast_to(dispersion, 6)
                for k in range(6):
                    if obs[k] < 3:
                        continue
                    tail = baselines.uncertain_rate_tail(obs[k], shares[k] * expected[max(0, j - win + 1):j + 1].sum(),
                                                         disp[k], shapes[k])
                    value = -np.log10(np.clip(tail, 1e-300, 1.0)) - np.log10(3) - np.log10(max(n_regions, 1))
                    if value > best[0]:
                        best = (value, win, k)
            assert sj == pytest.approx(best[0], rel=1e-12, abs=1e-12) and (wj, rj) == best[1:], j


def _histories(rng):
    """Year-long histories of every kind a county month fits: busy with a past outbreak (reweighted,
    weak trend dropped), weekly, sparse, a short one, an empty one, and two identical."""
    weekly = np.tile([8.0, 8, 8, 8, 8, 2, 2], 53)[:365]
    busy = rng.poisson(5.0, 365).astype(float)
    busy[100:106] += 30
    sparse = np.zeros(365)
    sparse[rng.choice(365, 40, replace=False)] = 1.0
    return [(days(365), busy), (days(365), rng.poisson(weekly).astype(float)), (days(365), sparse),
            (days(365), rng.poisson(0.3, 365) * 1.5), (days(40), rng.poisson(3.0, 40).astype(float)),
            (days(365), np.zeros(365)), (days(365), busy.copy()),
            (days(400, dt.date(2023, 9, 1)), rng.poisson(np.tile([9.0, 9, 9, 9, 9, 3, 3], 58)[:400]).astype(float))]


@pytest.mark.parametrize("stacked", [256, 3])
def test_fits_made_together_are_each_the_fit_made_alone_bit_for_bit(stacked, monkeypatch):
    """``fit_expected_many`` solves the fits' IRLS steps and Wald tests stacked (``stacked`` series at a
    time): each model is still the one ``fit_expected`` gives alone, every β and dispersion equal to the
    last bit (rows must not move)."""
    monkeypatch.setattr(baselines, "_STACKED", stacked)
    histories = _histories(np.random.default_rng(21))
    festival = baselines.expected_config()
    for cfg in (festival, {k: v for k, v in festival.items() if k != "festival"}):
        together = baselines.fit_expected_many(histories, cfg)
        alone = [baselines.fit_expected(d, y, cfg) for d, y in histories]
        assert [repr(m) for m in together] == [repr(m) for m in alone]
        assert together[0].beta is not None and together[5].beta is None
        assert together[0] == together[6]
        assert any(m.festival_periods for m in together) == (cfg is festival)


def test_stacked_irls_is_each_series_irls_alone_from_its_own_start_bit_for_bit():
    rng = np.random.default_rng(4)
    dates = days(365)
    X = baselines._design(dates, dates[-1], True, 1, True)
    Y = rng.poisson(rng.uniform(0.05, 12.0, (7, 1)), (7, 365)).astype(float)
    Y[6] = 0.0
    W = rng.uniform(0.3, 1.0, (7, 365))
    penalty = np.zeros(X.shape[1])
    penalty[-2:] = 5.0
    first = baselines._poisson_irls(X, Y[0], np.ones(365), penalty=penalty)
    starts = [None, first, None, first, None, None, None]
    stacked = baselines._poisson_irls_stacked(X, Y, W, starts, penalty=penalty)
    alone = [baselines._poisson_irls(X, Y[k], W[k], penalty=penalty, start=starts[k]) for k in range(7)]
    assert all(np.array_equal(a, b) for a, b in zip(stacked, alone))
    assert not np.array_equal(alone[0], alone[2])


def test_fitting_ahead_fills_the_memo_with_the_fits_expected_model_makes():
    """``fit_ahead`` puts the own or pooled fit of each series in the memo: ``expected_model`` then fits
    nothing more, and gives what it gives without the memo."""
    rng = np.random.default_rng(9)
    dates = days(365)
    parent = rng.poisson(6.0, 365).astype(float)
    sparse = np.zeros(365)
    sparse[[20, 80, 300]] = 1.0
    busy = rng.poisson(2.0, 365).astype(float)
    series = [(sparse, parent), (busy, parent), (parent, None), (sparse * 2, parent)]
    fits = {}
    baselines.fit_ahead(dates, series, baselines.expected_config(), fits)
    assert len(fits) == 2  # the parent (for itself and its sparse children) and the busy series
    made = len(fits)
    models = [baselines.expected_model(dates, y, parent_counts=p, n_siblings=2, parent_fits=fits) for y, p in series]
    assert len(fits) == made
    assert models == [baselines.expected_model(dates, y, parent_counts=p, n_siblings=2) for y, p in series]


def _indexed_rolling_sums(x, windows):
    """``rolling_sums`` as written before it took slices: each day's running total less the one ``w`` days before."""
    x = np.asarray(x, dtype=float)
    c = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    idx = np.arange(1, c.shape[-1])
    return [c[..., idx] - c[..., np.maximum(idx - w, 0)] for w in windows]


@pytest.mark.parametrize("shape", [(0,), (1,), (6,), (14,), (15,), (400,), (3, 44), (2, 0), (4, 1)])
def test_rolling_sums_are_the_running_totals_differences_bit_for_bit(shape):
    x = np.random.default_rng(len(shape) * 100 + shape[-1]).gamma(0.5, 1.3, shape)
    windows = (1, 2, 3, 7, 14, 30)
    for got, want in zip(baselines.rolling_sums(x, windows), _indexed_rolling_sums(x, windows)):
        assert got.shape == want.shape and got.tobytes() == want.tobytes()


def test_upper_tail_of_alike_shapes_equals_the_broadcast_one():
    """Arguments of one shape skip broadcasting; the tails are those the broadcasting path gives, bit for bit."""
    rng = np.random.default_rng(4)
    x, mu = rng.poisson(2.0, 50) * 1.25, rng.uniform(0.1, 4.0, 50)
    phi = rng.choice([1.0, 1.000001, 1.5, 3.0], 50)
    alike = baselines.upper_tail(x, mu, phi)
    assert all(np.array_equal(alike, row) for row in baselines.upper_tail(np.stack([x, x]), np.stack([mu, mu]), phi))
    assert np.array_equal(baselines.upper_tail(x, np.full(50, 1.5), np.full(50, 2.0)), baselines.upper_tail(x, 1.5, 2.0))
    one = baselines.upper_tail(x[3], mu[3], phi[3])
    assert one.shape == () and baselines.upper_tail(np.full(2, x[3]), mu[3], phi[3]).tolist() == [float(one)] * 2


def _series_and_models(seed: int, n: int, k: int):
    """``k`` series of volumes on ``n`` days (levels from 0 to busy, some with a burst, weighted reports) and a
    model of each as the scorer has them: its own fit on all or only its last days (fewer history days), a flat
    rate, or a pooled parent's fit scaled."""
    rng = np.random.default_rng(seed)
    dates = [dt.date(2024, 10, 1) + dt.timedelta(days=i) for i in range(n)]
    cfg = baselines.expected_config()
    series, models = [], []
    for _ in range(k):
        y = rng.poisson(rng.choice([0.0, 0.3, 3.0, 40.0]) * rng.uniform(0.7, 1.3, n)) * rng.choice([1.0, 1.25])
        if n and rng.random() < 0.5:
            y[rng.integers(n):][:rng.integers(1, 15)] += rng.integers(5, 60)
        kept = int(rng.choice([n, max(n - 100, 0), min(n, 40)]))
        model = baselines.fit_expected(dates[n - kept:], y[n - kept:], cfg)
        series.append(y)
        models.append(model.scaled(float(rng.uniform(0.05, 1.5))) if rng.random() < 0.3 else model)
    return dates, series, models, cfg


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 10, 70, 200, 365]), st.integers(1, 6))
def test_window_dispersions_and_recent_levels_stacked_are_each_series_alone_bit_for_bit(seed, n, k):
    """A domain's series go through ``window_dispersions_many`` and ``at_recent_levels`` together (stacked rows);
    each row is what the series gets alone, bit for bit."""
    dates, series, models, cfg = _series_and_models(seed, n, k)
    windows = (1, 3, 7, 14)
    together = baselines.window_dispersions_many(models, dates, series, windows, cfg)
    assert together.shape == (k, len(windows))
    for row, model, y in zip(together, models, series):
        alone = baselines.window_dispersions_many([model], dates, [y], windows, cfg)[0]
        assert row.tobytes() == alone.tobytes()
    raised = baselines.at_recent_levels(models, dates, series, cfg)
    assert raised == [baselines.at_recent_levels([model], dates, [y], cfg)[0] for model, y in zip(models, series)]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 14, 44, 120]), st.integers(1, 6),
       st.sampled_from([0, 1, 3]))
def test_window_surprisal_of_stacked_series_is_each_series_alone_bit_for_bit(seed, n, k, min_observed):
    """``window_surprisal`` of series stacked in rows (each with its windows' dispersions) gives each row what the
    series gives alone, bit for bit: surprisals and best windows."""
    rng = np.random.default_rng(seed)
    windows = (1, 3, 7, 14)
    mu = rng.choice([0.05, 0.5, 4.0, 60.0], (k, 1)) * rng.uniform(0.5, 1.5, (k, n))
    counts = rng.poisson(mu * rng.choice([1.0, 3.0], (k, n))) * rng.choice([1.0, 1.25], (k, 1))
    dispersions = np.maximum(1.0, rng.choice([1.0, 1.0000001, 1.4, 6.0], (k, len(windows))))
    s, w = baselines.window_surprisal(counts, mu, dispersions[:, :, None], windows, min_observed)
    assert s.shape == w.shape == (k, n)
    for row in range(k):
        s1, w1 = baselines.window_surprisal(counts[row], mu[row], dispersions[row][:, None], windows, min_observed)
        assert s[row].tobytes() == s1.tobytes() and w[row].tobytes() == w1.tobytes()
