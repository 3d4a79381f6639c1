"""Expected counts and outbreak statistics over daily count series (pure numpy/scipy).

What RiskWatch uses (chosen on measured results, see docs/notes/scoring.md):
- ``fit_expected``: a Farrington-like quasi-Poisson log-linear regression with day-of-week,
  annual harmonics and a guarded trend, fitted by IRLS; past outbreak days are down-weighted
  by their Anscombe residual and the fit repeated, so last month's episode does not become this
  month's normal. The dispersion φ (variance = φ·mean) carries the over-dispersion.
  Moving holidays (the Spring Festival, dates as data in schemas/scoring.yaml) enter as one
  indicator per period around them (``festival_periods``), fitted only when the history holds
  that period, and shrunk towards no effect by a prior worth a few incidents.
- ``window_surprisal``: -log10 of the negative-binomial upper tail of the count summed over
  several windows ending at each day (1, 3, 7, 14 days), Bonferroni-corrected over the windows:
  sudden onsets show in the short windows, gradual ones in the long. Each window's sum has its
  own dispersion (``window_dispersions``: how much the history's w-day sums vary around the fit,
  never less than its days do), so a series' ordinary wander over a fortnight is no episode.

The classic methods are here too, for the comparison and as baselines in evaluate-detection:
CDC EARS C1, C2, C3 and the negative-binomial CUSUM.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import numpy as np
from numpy.linalg import _umath_linalg
from scipy import special, stats

import schemas

EARS_THRESHOLDS = {"C1": 3.0, "C2": 3.0, "C3": 2.0}
_EARS_LAG = {"C1": 0, "C2": 2, "C3": 2}
_EARS_BASELINE_DAYS = 7
_TWO_PI = 2.0 * np.pi


def expected_config() -> dict:
    return schemas.load("scoring.yaml")["expected"]


# --------------------------------------------------------------------------------------------
# EARS and CUSUM: the classic statistics
# --------------------------------------------------------------------------------------------

def ears(counts, method: str = "C2", sd_floor: float = 0.5) -> np.ndarray:
    """EARS C1/C2/C3 statistic per day (NaN while the 7-day baseline is not yet available).

    C1 compares a day with the mean and standard deviation of the 7 days before it, C2 with the
    7 days before a 2-day guard band; C3 sums max(0, C2 − 1) over the day and the two before it.
    A floor on the standard deviation keeps constant baselines (all zeros) from giving infinite
    statistics; alarms are ``stat > EARS_THRESHOLDS[method]``.
    """
    if method not in EARS_THRESHOLDS:
        raise ValueError(f"unknown EARS method {method!r}; expected C1, C2 or C3")
    x = np.asarray(counts, dtype=float)
    lag = _EARS_LAG[method]
    n = len(x)
    out = np.full(n, np.nan)
    first = _EARS_BASELINE_DAYS + lag
    if n <= first:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(x, _EARS_BASELINE_DAYS)
    # baseline for day t is x[t - lag - 7 : t - lag] = windows[t - lag - 7]
    base = windows[: n - first]
    mean = base.mean(axis=1)
    sd = np.maximum(base.std(axis=1, ddof=1), sd_floor)
    out[first:] = (x[first:] - mean) / sd
    if method == "C3":
        excess = np.where(np.isnan(out), np.nan, np.maximum(out - 1.0, 0.0))
        c3 = np.full(n, np.nan)
        c3[first + 2:] = excess[first + 2:] + excess[first + 1:-1] + excess[first:-2]
        return c3
    return out


def _nb_size(mu, phi):
    """NB size parameter for mean mu and variance phi·mu (None: Poisson)."""
    return None if phi <= 1.0 + 1e-6 else np.asarray(mu, dtype=float) / (phi - 1.0)


def nb_logpmf(x, mu, phi):
    """NB (or Poisson) log-likelihood of x, through log-gamma so that weighted volumes
    (incidents + 0.5 × further reports: 2.5, 3.5 …) are scored as counts are."""
    x = np.asarray(x, dtype=float)
    mu = np.maximum(np.asarray(mu, dtype=float), 1e-12)
    size = _nb_size(mu, phi)
    if size is None:
        return x * np.log(mu) - mu - special.gammaln(x + 1.0)
    return (special.gammaln(x + size) - special.gammaln(size) - special.gammaln(x + 1.0)
            + size * np.log(size / (size + mu)) + x * np.log(mu / (size + mu)))


def nb_cusum(counts, expected, dispersion: float, ratio: float = 2.0, ceiling: float | None = 10.0) -> np.ndarray:
    """Negative-binomial CUSUM of the log-likelihood ratio 'mean × ratio' against 'mean'.

    The ceiling bounds how long the statistic stays high after an outbreak ends (an
    uncapped CUSUM keeps alarming for weeks after a large episode).
    """
    x = np.asarray(counts, dtype=float)
    mu0 = np.asarray(expected, dtype=float)
    llr = nb_logpmf(x, ratio * mu0, dispersion) - nb_logpmf(x, mu0, dispersion)
    out = np.empty_like(x)
    s = 0.0
    for i, step in enumerate(llr):
        s = max(0.0, s + step)
        if ceiling is not None:
            s = min(s, ceiling)
        out[i] = s
    return out


# --------------------------------------------------------------------------------------------
# Expected counts: quasi-Poisson regression with outbreak down-weighting
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ExpectedModel:
    """A fitted expected-count model; ``predict`` gives the expected count for any dates."""

    origin: dt.date  # the first day after the fitted history
    beta: tuple | None  # None: a flat rate
    day_of_week: bool
    harmonics: int
    trend: bool
    rate: float  # flat rate (fallback) or the recent level used to guard the trend
    dispersion: float
    trend_max_ratio: float
    min_rate: float
    history_days: int
    history_total: float
    # (first, last) days relative to a festival date, one indicator each; and the festival dates
    festival_periods: tuple = ()
    festival_dates: tuple = ()

    def predict(self, dates) -> np.ndarray:
        dates = list(dates)
        if self.beta is None:
            return np.full(len(dates), max(self.rate, self.min_rate))
        X = _shared_design(tuple(dates), self.origin, self.day_of_week, self.harmonics, self.trend,
                           self.festival_periods, self.festival_dates)
        mu = np.exp(X @ np.array(self.beta))
        if self.trend:
            # A trend fitted on the past must not run away in the future: keep the predicted level
            # within ×/÷ trend_max_ratio of the recent observed level.
            level = mu.mean()
            lo, hi = self.rate / self.trend_max_ratio, self.rate * self.trend_max_ratio
            if level > 0 and not lo <= level <= hi:
                mu = mu * (min(max(level, lo), hi) / level)
        return np.maximum(mu, self.min_rate)

    def scaled(self, factor: float) -> "ExpectedModel":
        """The same model for a part of the series (a village's share of its township)."""
        beta = None
        if self.beta is not None:
            beta = (self.beta[0] + float(np.log(max(factor, 1e-12))),) + tuple(self.beta[1:])
        return dataclasses.replace(self, beta=beta, rate=self.rate * factor,
                                   history_total=self.history_total * factor)


def festival_periods(config: dict) -> tuple[tuple[tuple[int, int], ...], tuple[dt.date, ...]]:
    """The configured periods around the festival (``(first, last)`` days relative to it) and its dates."""
    festival = config.get("festival") or {}
    periods = tuple((int(lo), int(hi)) for lo, hi in (festival.get("periods") or {}).values())
    return periods, tuple(sorted(dt.date.fromisoformat(str(d)) for d in festival.get("dates") or ()))


def festival_years_missing(config: dict, first: dt.date, last: dt.date) -> list[int]:
    """Years of first..last without a configured festival date (their festival season would be
    scored as ordinary days: the county should add the date to schemas/scoring.yaml)."""
    _, dates = festival_periods(config)
    if not dates:
        return []  # no festival term configured at all: nothing is missing
    listed = {d.year for d in dates}
    return [y for y in range(first.year, last.year + 1) if y not in listed]


_ORDINAL_1970 = dt.date(1970, 1, 1).toordinal()


def _ordinals(dates) -> np.ndarray:
    """``date.toordinal`` of each date (numpy converts date objects to datetime64 far more slowly)."""
    return np.fromiter((d.toordinal() for d in dates), dtype=np.int64, count=len(dates))


def festival_indicators(dates, periods, festival_dates, ordinals: np.ndarray | None = None) -> list[np.ndarray]:
    """Per period, 1.0 on the dates that fall in it around any festival date (``ordinals``: the
    dates' ``_ordinals``, when already at hand)."""
    if not periods or not festival_dates:
        return []
    ordinals = _ordinals(dates) if ordinals is None else ordinals
    anchors = np.sort(np.array([d.toordinal() for d in festival_dates], dtype=np.int64))
    # a date is in the period when some festival date lies within [date − last, date − first]:
    # counted by binary search, not through a date × festival table
    return [(np.searchsorted(anchors, ordinals - lo, side="right")
             > np.searchsorted(anchors, ordinals - hi, side="left")).astype(float) for lo, hi in periods]


def _design(dates, origin: dt.date, day_of_week: bool, harmonics: int, trend: bool,
            festivals: tuple = (), festival_dates: tuple = ()) -> np.ndarray:
    ordinals = _ordinals(dates)
    cols = [np.ones(len(dates))]
    if trend:
        cols.append((ordinals.astype(float) - origin.toordinal()) / 365.25)
    if day_of_week:
        weekday = (ordinals + 6) % 7  # date.weekday(): ordinal 1 (0001-01-01) was a Monday
        cols.extend((weekday == k).astype(float) for k in range(1, 7))
    if harmonics:
        days = (ordinals - _ORDINAL_1970).astype("datetime64[D]")
        day_of_year = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1
        year_fraction = day_of_year.astype(float) / 365.25
        for k in range(1, harmonics + 1):
            cols.append(np.sin(_TWO_PI * k * year_fraction))
            cols.append(np.cos(_TWO_PI * k * year_fraction))
    cols.extend(festival_indicators(dates, festivals, festival_dates, ordinals))
    return np.column_stack(cols)


@functools.lru_cache(maxsize=64)
def _kept_festival_periods(dates: tuple, periods: tuple, festival_dates: tuple, min_days: int) -> tuple:
    """The festival periods with at least ``min_days`` of their days among ``dates``."""
    present = [indicator.sum() for indicator in festival_indicators(dates, periods, festival_dates)]
    return tuple(p for p, days in zip(periods, present) if days >= min_days)


@functools.lru_cache(maxsize=64)
def _shared_design(dates: tuple, origin: dt.date, day_of_week: bool, harmonics: int, trend: bool,
                   festivals: tuple, festival_dates: tuple) -> np.ndarray:
    """``_design``, kept: every series of a scoring run is fitted on the same history days and
    predicted on the same month's days, with one of a few term sets. Read-only (it is shared)."""
    X = _design(dates, origin, day_of_week, harmonics, trend, festivals, festival_dates)
    X.flags.writeable = False
    return X


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve(a, b)`` for float matrices and vectors (one, or stacked: ``(S, p, p)`` and ``(S, p)``):
    the LAPACK call it makes, without its per-call argument handling (more than the solve itself on an
    IRLS step's small system). A singular system (NaNs, with numpy's "invalid value" warning) goes through
    ``np.linalg.solve`` again, to raise as it does."""
    x = _umath_linalg.solve1(a, b, signature="dd->d")
    if np.isfinite(x).all():
        return x
    return np.linalg.solve(a, b) if b.ndim == 1 else np.linalg.solve(a, b[..., None])[..., 0]


def _poisson_irls(X: np.ndarray, y: np.ndarray, w: np.ndarray, iterations: int = 30,
                  penalty: np.ndarray | None = None, start: np.ndarray | None = None) -> np.ndarray:
    """Penalised Poisson regression by iteratively reweighted least squares. ``start``: the β of a fit
    on nearly the same problem (other weights, or a term fewer): it starts near the solution and
    reaches the same fixed point in fewer steps (equal to ~1e-14, not bit for bit). Not for a β far from
    the solution: from a far too high level the log link comes down about one unit per step.
    ``_poisson_irls_stacked`` fits many series at once, each to this β bit for bit; this one is for a
    series fitted alone (the stream's windows, evaluation), where stacking would only add calls."""
    p = X.shape[1]
    ridge = _ridge(p, penalty)
    if start is None:
        mu = np.full_like(y, max(y.mean(), 0.1))
        eta = np.log(mu)
        beta = np.zeros(p)
    else:
        beta = start
        eta = np.maximum(np.minimum(X @ beta, 30.0), -30.0)
        mu = np.exp(eta)
    for _ in range(iterations):
        z = eta + (y - mu) / mu
        xtw = X.T * (w * mu)
        new_beta = _solve(xtw @ X + ridge, xtw @ z)
        # np.clip and np.max as the bare ufuncs: their wrappers cost more than these small arrays
        eta = np.maximum(np.minimum(X @ new_beta, 30.0), -30.0)
        mu = np.exp(eta)
        if np.abs(new_beta - beta).max() < 1e-7:
            return new_beta
        beta = new_beta
    return beta


def _ridge(p: int, penalty: np.ndarray | None) -> np.ndarray:
    # A light ridge keeps all-zero day-of-week cells (a feed that never reports on Sundays) finite;
    # ``penalty`` adds a heavier one where a term must earn its effect (the festival periods).
    ridge = 1e-3 * np.eye(p)
    ridge[0, 0] = 0.0
    if penalty is not None:
        ridge += np.diag(penalty)
    return ridge


def _weighted_transpose(X: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """``X.T * wm`` for each row of ``wm``, laid out as that product is for one series (column-major), so
    that products with it make the same BLAS calls as for one series; einsum's product is the same
    multiplication, faster than broadcasting's with its inner loops over the few terms."""
    return np.einsum("np,sn->snp", X, wm).transpose(0, 2, 1)


def _poisson_irls_stacked(X: np.ndarray, Y: np.ndarray, W: np.ndarray, starts: list, iterations: int = 30,
                          penalty: np.ndarray | None = None) -> list[np.ndarray]:
    """``_poisson_irls`` of each row of ``Y`` with its row of weights ``W`` and its start (None: cold), all
    on the design ``X``, in lockstep: one numpy call per step for all of them instead of one per series
    (the per-call cost is about as large as a series' arithmetic). Each series' arithmetic is the single fit's,
    matrix by matrix (the stacked products and solves call BLAS and LAPACK once per matrix with the same
    layout), so each β is bit for bit the one ``_poisson_irls`` gives it alone; a series stops at its own
    convergence, as alone."""
    p = X.shape[1]
    ridge = _ridge(p, penalty)
    beta, eta, mu = np.zeros((len(Y), p)), np.empty(Y.shape), np.empty(Y.shape)
    for k, start in enumerate(starts):
        if start is None:
            mu[k] = max(Y[k].mean(), 0.1)
            eta[k] = np.log(mu[k])
        else:
            beta[k] = start
            eta[k] = np.maximum(np.minimum(X @ beta[k], 30.0), -30.0)
            mu[k] = np.exp(eta[k])
    done = [None] * len(Y)
    active = np.arange(len(Y))
    for _ in range(iterations):
        z = eta + (Y - mu) / mu
        wm = W * mu
        xtw = _weighted_transpose(X, wm)
        new_beta = _solve(xtw @ X + ridge, (xtw @ z[:, :, None])[:, :, 0])
        # np.clip and np.max as the bare ufuncs: their wrappers cost more than these small arrays
        eta = np.maximum(np.minimum((X @ new_beta[:, :, None])[:, :, 0], 30.0), -30.0)
        mu = np.exp(eta)
        converged = np.abs(new_beta - beta).max(axis=1) < 1e-7
        beta = new_beta
        if converged.any():
            for k in np.flatnonzero(converged):
                done[active[k]] = beta[k]
            going = ~converged
            active, beta, eta, mu, Y, W = active[going], beta[going], eta[going], mu[going], Y[going], W[going]
            if not len(active):
                break
    for k, index in enumerate(active):
        done[index] = beta[k]
    return done


def anscombe_residuals(y, mu, phi: float) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    mu = np.maximum(np.asarray(mu, dtype=float), 1e-9)
    return 1.5 * (np.cbrt(y) ** 2 - np.cbrt(mu) ** 2) / (np.sqrt(phi) * mu ** (1.0 / 6.0))


def outbreak_weights(y, mu, phi: float, cut: float) -> np.ndarray:
    """Farrington's weights (Noufaily et al. 2013): residual⁻² for counts far above ``mu`` (Anscombe
    residual above ``cut``: past outbreaks), 1 for the others."""
    resid = anscombe_residuals(y, mu, phi)
    return np.where(resid > cut, 1.0 / np.maximum(resid, cut) ** 2, 1.0)


def _dispersion(y, mu, w, n_params: int) -> float:
    dof = max(float(np.sum(w > 0)) - n_params, 1.0)
    return max(1.0, float(np.sum(w * (y - mu) ** 2 / np.maximum(mu, 1e-9)) / dof))


def fit_expected(dates, counts, config: dict | None = None) -> ExpectedModel:
    """Fit an expected-count model on a dense daily history (consecutive dates, oldest first)."""
    fit, answer = _fit_steps(dates, counts, config or expected_config()), None
    while True:
        try:
            answer = fit.send(answer).answer()
        except StopIteration as finished:
            return finished.value


def _design_key(X: np.ndarray):
    """A kept design (read-only, ``_shared_design``) by identity; one without its weak terms is a new array
    each time, by content."""
    return id(X) if not X.flags.writeable else (X.shape, X.tobytes())


@dataclasses.dataclass(frozen=True)
class _Irls:
    """One IRLS problem of a fit (``_poisson_irls``' arguments), solved together with the other fits'
    problems on the same design and penalty."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    penalty: np.ndarray
    start: np.ndarray | None = None

    def group(self) -> tuple:
        return _Irls, _design_key(self.X), self.penalty.tobytes()

    def answer(self) -> np.ndarray:
        return _poisson_irls(self.X, self.y, self.w, penalty=self.penalty, start=self.start)

    @staticmethod
    def answers(problems: list["_Irls"]) -> list[np.ndarray]:
        first = problems[0]
        return _poisson_irls_stacked(first.X, np.stack([q.y for q in problems]), np.stack([q.w for q in problems]),
                                     [q.start for q in problems], penalty=first.penalty)


@dataclasses.dataclass(frozen=True)
class _Covariance:
    """The pseudo-inverse of a fit's penalised information matrix ``X.T·diag(wm)·X + diag(penalty)`` (its
    Wald tests), made together with the other fits' on the same design and penalty: stacked products and
    pseudo-inverses are each matrix's own, bit for bit (see ``_poisson_irls_stacked``)."""

    X: np.ndarray
    wm: np.ndarray
    penalty: np.ndarray

    def group(self) -> tuple:
        return _Covariance, _design_key(self.X), self.penalty.tobytes()

    def answer(self) -> np.ndarray:
        return np.linalg.pinv((self.X.T * self.wm) @ self.X + np.diag(self.penalty))

    @staticmethod
    def answers(problems: list["_Covariance"]) -> list[np.ndarray]:
        first = problems[0]
        xtw = _weighted_transpose(first.X, np.stack([q.wm for q in problems]))
        return list(np.linalg.pinv(xtw @ first.X + np.diag(first.penalty)))


_STACKED = 256  # series per stacked solve: ~9 MB per (series, days, terms) array on a year of history


def fit_expected_many(histories, config: dict | None = None) -> list[ExpectedModel]:
    """``fit_expected`` of each (dates, counts) in ``histories``, each model bit for bit the one it gives
    alone. The fits run in lockstep (``_fit_steps``): their problems of a round that share a design are
    solved together (``_poisson_irls_stacked``, ``_Covariance``): one series at a time, each of a fit's ~15
    IRLS steps on 365 × 12 arrays costs about as much in numpy's per-call work as in arithmetic."""
    cfg = config or expected_config()
    fits = [_fit_steps(dates, counts, cfg) for dates, counts in histories]
    models, asked = [None] * len(fits), {}
    for k, fit in enumerate(fits):
        _advance(fit, k, None, models, asked)
    while asked:
        groups: dict[tuple, list[int]] = {}
        for k, problem in asked.items():
            groups.setdefault(problem.group(), []).append(k)
        asking, asked = asked, {}
        for members in groups.values():
            # in slices, so that the stacked arrays stay small whatever the number of series
            for chunk in (members[i:i + _STACKED] for i in range(0, len(members), _STACKED)):
                answers = ([asking[chunk[0]].answer()] if len(chunk) == 1 else
                           asking[chunk[0]].answers([asking[k] for k in chunk]))
                for k, answer in zip(chunk, answers):
                    _advance(fits[k], k, answer, models, asked)
    return models


def _advance(fit, k: int, answer, models: list, asked: dict) -> None:
    """Run fit ``k`` (``_fit_steps``) to its next problem (``_Irls`` or ``_Covariance``, into ``asked``) or to
    its model."""
    try:
        asked[k] = fit.send(answer)
    except StopIteration as finished:
        models[k] = finished.value


def _fit_steps(dates, counts, cfg: dict):
    """``fit_expected`` as a generator: it yields each IRLS problem (``_Irls``) and its Wald tests'
    covariance (``_Covariance``), is sent their answers, and returns the model."""
    dates = list(dates)
    y = np.asarray(counts, dtype=float)
    if len(dates) != len(y):
        raise ValueError("dates and counts differ in length")
    if len(dates) > cfg["max_history_days"]:
        dates, y = dates[-cfg["max_history_days"]:], y[-cfg["max_history_days"]:]
    origin = (dates[-1] + dt.timedelta(days=1)) if dates else dt.date.today()
    n = len(y)
    total = float(y.sum())
    common = dict(origin=origin, trend_max_ratio=float(cfg["trend_max_ratio"]),
                  min_rate=float(cfg["min_daily_rate"]), history_days=n, history_total=total)
    if n < cfg["min_history_days"] or total == 0:
        rate = total / n if n else 0.0
        phi = max(1.0, float(y.var(ddof=1)) / rate) if n > 1 and rate > 0 else 1.0
        return ExpectedModel(beta=None, day_of_week=False, harmonics=0, trend=False, rate=rate,
                             dispersion=phi, **common)
    day_of_week = n >= cfg["day_of_week_min_days"] and total >= 50
    harmonics = 1 if n >= cfg["season_min_days"] and total >= 50 else 0
    trend = n >= cfg["trend_min_days"] and total >= 30
    periods, anchors = festival_periods(cfg)
    festival = cfg.get("festival") or {}
    # A period's term only where the history holds enough of its days: otherwise there is nothing
    # to learn it from and it has no effect.
    days = tuple(dates)
    periods = _kept_festival_periods(days, periods, anchors, int(festival.get("min_days", 1)))
    X = _shared_design(days, origin, day_of_week, harmonics, trend, periods, anchors)
    # Gaussian prior on each festival log-ratio, worth ``prior_incidents`` at the usual level: a
    # period seen once with a handful of incidents moves the expectation little, a busy one fully.
    penalty = np.zeros(X.shape[1])
    if periods:
        penalty[-len(periods):] = float(festival.get("prior_incidents", 0.0))
    w = np.ones(n)
    beta = yield _Irls(X, y, w, penalty)
    mu = np.exp(np.clip(X @ beta, -30, 30))
    phi = _dispersion(y, mu, w, X.shape[1])
    # Farrington's re-weighting (Noufaily et al. 2013): days far above the fit (past outbreaks)
    # get weight residual⁻², then the model is refitted; twice, since the first fit is pulled up
    # by the very outbreak it should discount.
    cut = float(cfg["outbreak_residual"])
    for _ in range(2):
        reweighted = outbreak_weights(y, mu, phi, cut)
        reweighted *= n / reweighted.sum()
        if np.array_equal(reweighted, w):
            break  # the same weights refit the same model (a tenth of the fits: no day far above it)
        w = reweighted
        beta = yield _Irls(X, y, w, penalty, start=beta)
        mu = np.exp(np.clip(X @ beta, -30, 30))
        phi = _dispersion(y, mu, w, X.shape[1])
    # Keep the trend and each festival period only where the data support it (Wald z ≥ 2 from the
    # weighted fit): a term fitted on noise shifts the level it shares days with (the season).
    optional = ([1] if trend else []) + list(range(X.shape[1] - len(periods), X.shape[1]))
    if optional:
        cov = (yield _Covariance(X, w * mu, penalty)) * phi
        weak = [j for j in optional if abs(beta[j]) < 2.0 * np.sqrt(max(cov[j, j], 1e-12))]
        if weak:
            trend = trend and 1 not in weak
            first_festival = X.shape[1] - len(periods)
            periods = tuple(p for k, p in enumerate(periods) if first_festival + k not in weak)
            X, penalty = np.delete(X, weak, axis=1), np.delete(penalty, weak)
            beta = yield _Irls(X, y, w, penalty)
            mu = np.exp(np.clip(X @ beta, -30, 30))
            phi = _dispersion(y, mu, w, X.shape[1])
    recent = slice(max(0, n - 56), n)
    recent_level = float(np.sum(w[recent] * y[recent]) / max(np.sum(w[recent]), 1e-9))
    return ExpectedModel(beta=tuple(float(b) for b in beta), day_of_week=day_of_week, harmonics=harmonics,
                         trend=trend, rate=max(recent_level, float(cfg["min_daily_rate"])), dispersion=phi,
                         festival_periods=periods, festival_dates=anchors, **common)


def pooled_share(series_total: float, parent_total: float, n_siblings: int, pseudo_events: float) -> float:
    """A sparse series' share of its parent region's count, shrunk towards an even share."""
    n_siblings = max(int(n_siblings), 1)
    return (series_total + pseudo_events / n_siblings) / (parent_total + pseudo_events)


def walk_forward_expected(dates, counts, refit_every: int = 7, config: dict | None = None,
                          parent_counts=None, n_siblings: int = 1):
    """Expected count and dispersion for every day, each from a model fitted on earlier days only.

    With ``parent_counts`` (the parent region's series on the same dates) a sparse series uses
    the parent's model scaled by its pooled share. Used by evaluation; the batch job fits once
    per series and month (see ``models.risk_score``).
    """
    cfg = config or expected_config()
    dates = list(dates)
    y = np.asarray(counts, dtype=float)
    n = len(y)
    mu = np.full(n, np.nan)
    phi = np.full(n, np.nan)
    for start in range(0, n, refit_every):
        stop = min(n, start + refit_every)
        model = expected_model(dates[:start], y[:start], cfg, None if parent_counts is None else
                               np.asarray(parent_counts, dtype=float)[:start], n_siblings)
        mu[start:stop] = model.predict(dates[start:stop])
        phi[start:stop] = model.dispersion
    return mu, phi


def expected_model(dates, counts, config: dict | None = None, parent_counts=None, n_siblings: int = 1,
                   parent_fits: dict | None = None) -> ExpectedModel:
    """The series' own model, or its parent's scaled by a pooled share when the series is sparse.

    ``parent_fits``: a memo of fits shared by the series scored together, keyed by the dates and
    counts fitted, so it holds only for one ``config``: the series that pool from one parent fit it
    once, and a township's own fit is the one its sparse villages pool from.
    """
    cfg = config or expected_config()
    y = np.asarray(counts, dtype=float)
    fitted, pooled = _fitted_counts(y, cfg, parent_counts)
    if pooled:
        horizon = slice(max(0, len(y) - cfg["max_history_days"]), len(y))
        share = pooled_share(y[horizon].sum(), fitted[horizon].sum(), n_siblings, cfg["pooling_pseudo_events"])
        return _memo_fit(dates, fitted, cfg, parent_fits).scaled(share)
    return _memo_fit(dates, y, cfg, parent_fits)


def _fitted_counts(y: np.ndarray, cfg: dict, parent_counts) -> tuple[np.ndarray, bool]:
    """The counts ``expected_model`` fits for the series ``y``, and whether they are its parent's (a
    sparse series pools) rather than its own."""
    horizon = slice(max(0, len(y) - cfg["max_history_days"]), len(y))
    if parent_counts is not None and y[horizon].sum() < cfg["sparse_history_events"]:
        return np.asarray(parent_counts, dtype=float), True
    return y, False


def fit_ahead(dates, series, config: dict, parent_fits: dict) -> None:
    """Put into the memo ``parent_fits`` the fits ``expected_model`` will need for each (counts,
    parent counts or None) of ``series`` on ``dates``, fitted together (``fit_expected_many``)."""
    if not dates:
        return
    needed = {}
    for counts, parent_counts in series:
        fitted = _fitted_counts(np.asarray(counts, dtype=float), config, parent_counts)[0]
        key = _memo_key(dates, fitted)
        if key not in parent_fits:
            needed.setdefault(key, fitted)
    for key, model in zip(needed, fit_expected_many([(dates, y) for y in needed.values()], config)):
        parent_fits[key] = model


def at_recent_level(model: ExpectedModel, dates, counts, config: dict) -> ExpectedModel:
    """``model`` raised to the series' recent level where the series has lately run above it (``at_recent_levels``
    of one series)."""
    return at_recent_levels([model], dates, [counts], config)[0]


def at_recent_levels(models: list, dates, counts: list, config: dict) -> list[ExpectedModel]:
    """Each of ``models`` raised to the recent level of its series (``counts``, each on ``dates``) where the
    series has lately run above it.

    A regression fitted on months of history misses a level the series moved to in the last weeks:
    a season in the first year (no seasonal term yet), a new estate's complaints. Each day above
    the old level then looks unusual, for weeks; ESSENCE switches to a 28-day-baseline method where
    its regression fits poorly for this reason. Here the ratio observed / predicted over the
    ``recent_level.days`` days before the last ``guard_days`` (ESSENCE's baseline and guard band:
    an episode's own first days must not raise its expectation) scales the model when above 1.
    Days far above the fit weigh less, as in the fit itself (Farrington): a past episode is no new
    level. ``prior_events`` at the predicted level shrink the ratio of a sparse series towards 1.
    Never lowered: a quiet spell is no reason to alarm sooner. Without ``recent_level``: ``models``.

    The series' steps run stacked, one row per series (a domain's series share their days): each row's
    arithmetic is the one series' own, element by element, and its sums are row sums of contiguous rows
    (numpy's pairwise sum of that row), so each model is the one it gets alone, bit for bit."""
    rule = config.get("recent_level")
    dates = list(dates)
    n = len(dates)
    out = list(models)
    raised = [k for k, model in enumerate(models) if model.beta is not None]
    if not rule or not raised or n < rule["days"] + rule["guard_days"] + config["min_history_days"]:
        return out
    recent = slice(n - rule["days"] - rule["guard_days"], n - rule["guard_days"])
    y = np.stack([np.asarray(counts[k], dtype=float)[recent] for k in raised])
    mu = np.stack([models[k].predict(dates[recent]) for k in raised])
    w = outbreak_weights(y, mu, np.array([[models[k].dispersion] for k in raised]), float(config["outbreak_residual"]))
    prior = float(rule["prior_events"])
    ratios = ((w * y).sum(axis=1) + prior) / ((w * mu).sum(axis=1) + prior)
    for k, ratio in zip(raised, ratios.tolist()):
        if ratio > 1.0:
            out[k] = models[k].scaled(ratio)
    return out


def window_dispersions(model: ExpectedModel, dates, counts, windows, config: dict) -> np.ndarray:
    """One dispersion per window for one series (``window_dispersions_many``)."""
    return window_dispersions_many([model], dates, [counts], windows, config)[0]


def window_dispersions_many(models: list, dates, counts: list, windows, config: dict) -> np.ndarray:
    """For each of ``models`` with its series' ``counts`` on ``dates``, one dispersion per window (a row of
    the result): how much more a ``w``-day sum varies around the model than ``w`` independent days would.

    The fit's φ is measured on single days; the tail of a 7- or 14-day sum taken as φ × its mean
    assumes the days vary independently. Real series wander: a level a little above the fit for a
    fortnight (a busy season, a news story, a first-year season the regression cannot know yet) is
    normal for them, and under φ alone a big series' 14 days at +20% look like an episode. So φ_w is
    the Pearson dispersion of the history's non-overlapping ``w``-day sums (ending on its last day)
    around the model's sums — the variance of aggregated counts, which takes their day-to-day
    correlation in. Blocks far above the model are down-weighted as days are in the fit (Farrington;
    a past episode is no wander), with the weights taken from φ_w once it is estimated. Shrunk
    towards φ by ``window_dispersion.prior_days`` days' worth of blocks, never below φ (a window is
    never held to be steadier than its days). The 1-day window keeps φ. Without
    ``window_dispersion``: φ for every window.

    Series with as many history days run stacked, one row each, as ``at_recent_levels`` runs them: each
    row is the one series' dispersions alone, bit for bit."""
    phi = np.array([float(model.dispersion) for model in models])
    out = np.repeat(phi[:, None], len(windows), axis=1)
    rule = config.get("window_dispersion")
    if not rule:
        return out
    dates = list(dates)
    cut, prior_days = float(config["outbreak_residual"]), float(rule["prior_days"])
    by_days: dict[int, list[int]] = {}
    for k, (model, series) in enumerate(zip(models, counts)):
        n = min(len(series), model.history_days)
        if n:
            by_days.setdefault(n, []).append(k)
    for n, members in by_days.items():
        y = np.stack([np.asarray(counts[k], dtype=float)[len(counts[k]) - n:] for k in members])
        mu = np.stack([models[k].predict(dates[len(dates) - n:]) for k in members])
        phi_k = phi[members][:, None]
        for j, w in enumerate(windows):
            blocks = n // w
            if w <= 1 or blocks == 0:
                continue
            sums = y[:, n - blocks * w:].reshape(len(members), blocks, w).sum(axis=2)
            means = np.maximum(mu[:, n - blocks * w:].reshape(len(members), blocks, w).sum(axis=2), 1e-9)
            prior = prior_days / w
            phi_w = phi_k
            for _ in range(2):
                weight = outbreak_weights(sums, means, phi_w, cut)
                pearson = (weight * (sums - means) ** 2 / means).sum(axis=1, keepdims=True)
                estimate = (pearson + prior * phi_k) / (weight.sum(axis=1, keepdims=True) + prior)
                phi_w = np.where(estimate > phi_k, estimate, phi_k)  # max(φ, estimate), NaN giving φ as max does
            out[members, j] = phi_w[:, 0]
    return out


def _memo_fit(dates, counts: np.ndarray, cfg: dict, fits: dict | None) -> ExpectedModel:
    """``fit_expected``, through the memo ``fits`` where one is given."""
    dates = list(dates)
    if fits is None or not dates:
        return fit_expected(dates, counts, cfg)
    key = _memo_key(dates, counts)
    model = fits.get(key)
    if model is None:
        model = fits[key] = fit_expected(dates, counts, cfg)
    return model


def _memo_key(dates: list, counts: np.ndarray) -> tuple:
    return dates[0], dates[-1], counts.tobytes()


# --------------------------------------------------------------------------------------------
# Surprise of an observed count
# --------------------------------------------------------------------------------------------

def upper_tail(observed, expected, dispersion) -> np.ndarray:
    """P(X ≥ observed) for X with the given mean and variance dispersion·mean."""
    x = np.asarray(observed, dtype=float)
    mu = np.maximum(np.asarray(expected, dtype=float), 1e-12)
    phi = np.asarray(dispersion, dtype=float)
    # broadcast only where the shapes differ: most calls (a series' windows, its month) pass alike shapes,
    # and broadcasting them cost more than their tails
    if not x.shape == mu.shape == phi.shape:
        shape = np.broadcast_shapes(x.shape, mu.shape)
        x, mu, phi = np.broadcast_to(x, shape), np.broadcast_to(mu, shape), np.broadcast_to(phi, shape)
    p = np.empty(x.shape)
    # P(X ≥ x) = P(X > k), k = ⌊x − 1⌋ (a weighted volume 2.5 is "3 or more"). The distributions'
    # own tails (``_sf``, what ``sf`` calls after its argument checks, which cost more per call than
    # the tail): the regularised beta function differs from scipy's negative binomial by up to 3e-10.
    k = np.floor(x - 1.0)
    poisson = phi <= 1.0 + 1e-6
    p[poisson] = special.pdtrc(k[poisson], mu[poisson])
    nb = ~poisson
    if nb.any():
        size = mu[nb] / (phi[nb] - 1.0)
        p[nb] = stats.nbinom._sf(np.maximum(k[nb], 0.0), size, size / (size + mu[nb]))
    return np.where(k < 0, 1.0, np.clip(p, 0.0, 1.0))  # NaN stays NaN, as scipy gives it


def uncertain_rate_tail(count, mean, dispersion, shape):
    """P(X ≥ count) for a count whose mean is itself uncertain: negative binomial with mean ``mean``
    and variance ``dispersion`` × mean + mean² / ``shape`` — the series' over-dispersion on top of a
    gamma-distributed rate worth ``shape`` events of evidence (few events: a wide rate). With
    dispersion 1 it is the gamma-Poisson predictive. Continuous in ``count`` (weighted volumes)."""
    count = np.asarray(count, dtype=float)
    mean = np.maximum(np.asarray(mean, dtype=float), 1e-12)
    size = mean / (np.maximum(np.asarray(dispersion, dtype=float), 1.0) - 1.0 + mean / np.asarray(shape, dtype=float))
    # P(X ≥ k) for NB(size, p) = I_{1-p}(k, size), p = size / (size + mean)
    tail = special.betainc(np.maximum(count, 1e-12), size, mean / (size + mean))
    return np.where(count <= 0, 1.0, tail)


def surprisal(observed, expected, dispersion) -> np.ndarray:
    """-log10 of the upper-tail probability: 2 means 'as high or higher once in 100'."""
    return -np.log10(np.clip(upper_tail(observed, expected, dispersion), 1e-300, 1.0))


def rolling_sum(x, window: int) -> np.ndarray:
    """Sum over the ``window`` days ending at each day (shorter at the start)."""
    return rolling_sums(x, (window,))[0]


def rolling_sums(x, windows) -> list[np.ndarray]:
    """``rolling_sum`` for each of ``windows``, from one running total; ``x`` 1-D, or 2-D with one
    series per row."""
    x = np.asarray(x, dtype=float)
    c = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    # day i's sum is c[i + 1] - c[max(i + 1 - w, 0)]: the first w days less c[0], the others a shifted slice
    return [np.concatenate([c[..., 1:w + 1] - c[..., :1], c[..., w + 1:] - c[..., 1:max(c.shape[-1] - w, 1)]], axis=-1)
            for w in windows]


def window_correction(windows) -> float:
    """Bonferroni in log10: looking at several windows per day, each one's surprisal is lowered by
    log10 of their number. The stream's windows are scored with the batch's correction, so that a
    window gives the score the batch gives the day where that window is the most surprising."""
    return float(np.log10(len(windows)))


def window_surprisal(counts, expected, dispersion, windows=(1, 3, 7, 14), min_observed: int = 0):
    """Per day: the most surprising of the windows ending there, Bonferroni-corrected.

    Returns (surprisal, best_window_days). Windows whose observed sum is below ``min_observed``
    do not count (one or two events never make a volume signal). ``dispersion``: scalar, or one per
    window as a column (``window_dispersions(...)[:, None]``). ``counts`` and ``expected`` may also hold
    one series per row (``dispersion`` then one column per series: ``window_dispersions_many(...)[:, :, None]``),
    for a row of results each: a series' windows are its own row's running sums and its tails element by element,
    so each row is the series' result alone, bit for bit.
    """
    x = np.asarray(counts, dtype=float)
    mu = np.asarray(expected, dtype=float)
    # all windows' tails in one call (one row per window): a call per window cost more than the tails
    observed = np.stack(rolling_sums(x, windows), axis=-2)
    # tails only where the window counts: most windows of a sparse series hold too few events
    counted = observed >= min_observed
    corrected = np.zeros(observed.shape)
    if counted.any():
        phi = np.broadcast_to(np.asarray(dispersion, dtype=float), observed.shape)
        corrected[counted] = (surprisal(observed[counted], np.stack(rolling_sums(mu, windows), axis=-2)[counted],
                                        phi[counted])
                              - window_correction(windows))
    # the first window with the day's highest positive surprisal (NaN and below 0 count as 0), else the first
    corrected[~(corrected > 0.0)] = 0.0
    first_best = corrected.argmax(axis=-2)
    best = np.take_along_axis(corrected, first_best[..., None, :], axis=-2)[..., 0, :]
    return best, np.where(best > 0.0, np.asarray(windows)[first_best], windows[0])


def subregion_surprisal(counts, shares, shapes, expected, dispersion, windows, known, min_observed: float = 0,
                        n_windows: int | None = None):
    """Per day: the most surprising sub-region (a township's villages) over the windows ending there.

    A burst confined to one village barely moves a township's count but is far outside that village's
    own share of it. ``counts``: (k, n) daily volumes of the k sub-regions; ``expected``: (n,) the
    region's expected volume; ``shares``: (k,) each sub-region's share of it and ``shapes``: (k,) the
    evidence behind that share (``uncertain_rate_tail``); ``dispersion``: scalar or (k,);
    ``known``: (k,) sub-regions seen in the history. Bonferroni over the windows (``n_windows``
    looked through, default ``len(windows)``) and the sub-regions: those of the history plus those
    new with volume in the window. A sub-region needs ``min_observed`` in the window to count.
    Returns (surprisal, window, sub-region index; −1 where none counts).
    """
    x = np.atleast_2d(np.asarray(counts, dtype=float))
    mu = np.asarray(expected, dtype=float)
    shares = np.asarray(shares, dtype=float)[:, None]
    shapes = np.asarray(shapes, dtype=float)[:, None]
    dispersion = np.asarray(dispersion, dtype=float)
    dispersion = dispersion[:, None] if dispersion.ndim == 1 else dispersion
    known = np.asarray(known, dtype=bool)
    n = x.shape[1]
    best, best_w, best_r = np.zeros(n), np.full(n, windows[0]), np.full(n, -1)
    if not x.size:
        return best, best_w, best_r
    correction = np.log10(n_windows or len(windows))
    for w, obs, expected_sum in zip(windows, rolling_sums(x, windows), rolling_sums(mu, windows)):
        n_regions = known.sum() + (obs[~known] > 0).sum(axis=0)
        # tails only where a sub-region's window counts (few of a township's villages × days)
        counted = obs >= max(min_observed, 1e-9)
        s = np.zeros(obs.shape)
        if counted.any():
            def at_counted(a):
                return np.broadcast_to(a, obs.shape)[counted]
            tail = uncertain_rate_tail(obs[counted], at_counted(shares * expected_sum[None, :]), at_counted(dispersion),
                                       at_counted(shapes))
            s[counted] = (-np.log10(np.clip(tail, 1e-300, 1.0)) - correction
                          - at_counted(np.log10(np.maximum(n_regions, 1))[None, :]))
        region = np.argmax(s, axis=0)
        top = s[region, np.arange(n)]
        better = top > best
        best, best_w = np.where(better, top, best), np.where(better, w, best_w)
        best_r = np.where(better, region, best_r)
    return best, best_w, best_r


def share_dispersion(sub_counts, counts, shares, prior_days: float = 28.0) -> np.ndarray:
    """How much more each sub-region's share of a region's daily count varies than chance does (≥ 1).

    Pearson statistic of a sub-region's daily count against its share of the day's count (the
    binomial variance), per day, shrunk towards the pooled value of all sub-regions by a prior worth
    ``prior_days`` days. Villages have bad days of their own (one compound's residents calling for a
    week) that the region's over-dispersion does not show, and a town-seat community has more of
    them than a hamlet.
    """
    y = np.asarray(sub_counts, dtype=float)
    total = np.asarray(counts, dtype=float)[None, :]
    s = np.clip(np.asarray(shares, dtype=float), 1e-9, 1 - 1e-9)[:, None]
    e = s * total
    used = np.broadcast_to(total > 0, y.shape)
    terms = np.where(used, (y - e) ** 2 / np.maximum(e * (1 - s), 1e-12), 0.0).sum(axis=1)
    days = used.sum(axis=1)
    df = int(days.sum()) - y.shape[0]
    pooled = max(1.0, float(terms.sum()) / df) if df > 0 else 1.0
    return np.maximum(1.0, (terms + prior_days * pooled) / (days + prior_days))


def ewma_surprisal(counts, expected, dispersion, smoothing: float = 0.3) -> np.ndarray:
    """ESSENCE-style EWMA of the standardised (Anscombe) residuals against the expected counts,
    as -log10 of its normal upper tail (the EWMA's null variance is λ/(2−λ)). Kept for the
    comparison in benchmarks/bench_detection.py: on the simulated counties it added nothing to the
    1/3/7/14-day windows (docs/notes/scoring.md, Session 2)."""
    resid = anscombe_residuals(counts, expected, np.asarray(dispersion, dtype=float))
    out = np.empty(len(resid))
    level = 0.0
    for i, r in enumerate(resid):
        level = smoothing * r + (1.0 - smoothing) * level
        out[i] = level
    z = out / np.sqrt(smoothing / (2.0 - smoothing))
    return -np.log10(np.clip(stats.norm.sf(z), 1e-300, 1.0))

