"""Where a series' history begins: the days before the feeds' coverage are unknown, not quiet.

A first run (a month's files and the few late records they carry of the months before) and a warehouse
younger than the scorer's twelve months of history must not read the empty months as a calm baseline.
"""
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from models import gaps
from tests.test_score import TARGET, TARGET_END, TOWN, build_events, run_rows

CFG = gaps.gap_config()


def test_coverage_starts_where_the_feeds_send_their_usual_volume():
    dense = {TARGET + dt.timedelta(days=k): 300 + 7 * (k % 5) for k in range(30)}
    # late records of the month before, and a stray one long before
    late = {TARGET - dt.timedelta(days=k): 4 for k in range(1, 20)} | {dt.date(2024, 12, 2): 1}
    assert gaps.coverage_start(dense | late, TARGET_END) == TARGET
    assert gaps.coverage_start(dense, TARGET_END) == TARGET
    # a feed joining later raises the volume, but the months before it were covered by the others
    joined = {TARGET - dt.timedelta(days=k): 150 for k in range(1, 60)}
    assert gaps.coverage_start(dense | joined, TARGET_END) == TARGET - dt.timedelta(days=59)
    assert gaps.coverage_start({}, TARGET_END) is None
    assert gaps.coverage_start({TARGET_END + dt.timedelta(days=1): 50}, TARGET_END) is None


@settings(max_examples=60, deadline=None)
@given(usual=st.integers(20, 5000), days=st.integers(28, 120),
       sparse=st.lists(st.tuples(st.integers(1, 300), st.floats(0.0, 0.049)), max_size=40))
def test_sparse_days_before_the_data_never_move_its_start(usual, days, sparse):
    end = dt.date(2025, 6, 30)
    first = end - dt.timedelta(days=days - 1)
    daily = {first + dt.timedelta(days=k): usual for k in range(days)}
    for before, share in sparse:
        daily[first - dt.timedelta(days=before)] = int(share * usual)
    assert gaps.coverage_start(daily, end, CFG) == first


def _township_rows(rows):
    return {(r["period"], r["period_start"], r["domain"]): r for r in rows
            if r["township_code"] == TOWN and r["village_code"] is None}


def test_months_before_the_data_change_no_score(tmp_path):
    """A warehouse whose data begin in mid-February scores April exactly as if its history began there,
    whatever months before it the scorer's history would reach."""
    start = dt.date(2025, 2, 15)
    events = [e for e in build_events() if e["reported_at"].date() >= start]
    # a few late records of January in the feeds' files, one a day (the usual day holds ~40)
    events += [dict(e, event_id=f"late-{k}", reported_at=e["reported_at"] - dt.timedelta(days=40 + k))
               for k, e in enumerate(events[:6])]
    from_history_start = run_rows(events, tmp_path / "a.pickle")
    from_data = run_rows(events, tmp_path / "b.pickle", history_start=start)
    assert from_history_start == from_data
    month = _township_rows(from_data)[("month", TARGET, "labor_wage")]
    assert month["reasons"][0].startswith(f"本月{month['observed']}起，较近") and month["expected"] > 0
    assert month["complete"] is True


def test_a_first_run_compares_no_count_with_an_expectation(tmp_path):
    events = [e for e in build_events() if e["reported_at"].date() >= TARGET]
    events += [dict(e, event_id=f"late-{k}", reported_at=e["reported_at"] - dt.timedelta(days=3 + k))
               for k, e in enumerate(events[:5])]
    rows = run_rows(events, tmp_path / "rows.pickle")
    assert rows
    for r in rows:
        assert not any("预期约" in reason for reason in r["reasons"]), r["reasons"]
    township = _township_rows(rows)
    month = township[("month", TARGET, "labor_wage")]
    assert month["reasons"][0] == f"本月{month['observed']}起，此前无历史数据，不足以估计预期"
    # the episode's signals still speak: gathering, three feeds, a repeat caller
    assert any("涉及聚集" in r for r in month["reasons"])
    assert "1名来电人重复来电" in month["reasons"]
    day = township[("day", TARGET + dt.timedelta(days=10), "labor_wage")]
    assert day["reasons"][0].startswith("当日") and day["reasons"][0].endswith("此前无历史数据，不足以估计预期")
    # no expected count either: a number there would read as "none expected" (or a guess from a day's history)
    assert [r for r in rows if r["expected"] is not None] == []


def test_a_young_warehouse_says_how_much_history_it_holds(tmp_path):
    start = TARGET - dt.timedelta(days=12)
    events = [e for e in build_events() if e["reported_at"].date() >= start]
    month = _township_rows(run_rows(events, tmp_path / "rows.pickle"))[("month", TARGET, "labor_wage")]
    assert month["reasons"][0] == f"本月{month['observed']}起，历史数据仅12天，不足以估计预期"
    assert month["expected"] is None
    # the data are complete: only the history is short
    assert month["complete"] is True
