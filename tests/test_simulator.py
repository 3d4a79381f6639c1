"""The county simulator on a small county: volumes, rhythm, episodes, mess, truth, determinism."""
from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from python_calamine import CalamineWorkbook

import schemas
from jobs import cli
from simulator import TRUTH_COLUMNS, simulate
from simulator.county import build_county, police_station_name
from simulator.feeds import header_fields, header_sets
from simulator.mess import BROKEN_REASONS
from simulator.text import id_number
from simulator.volumes import Calendar, expected_daily, situations

POPULATION = 40_000
# Three months around the 2026 Spring Festival (17 February): wage arrears, holidays, term breaks.
START, MONTHS = "2025-12", 3


@pytest.fixture(scope="module")
def county_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("county")
    simulate(out, START, MONTHS, seed=11, population=POPULATION, broken_share=0.01)
    return out


@pytest.fixture(scope="module")
def truth(county_dir) -> list[dict]:
    with open(county_dir / "truth" / "records.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def originals(truth) -> list[dict]:
    return [r for r in truth if not r["duplicate_of"]]


@pytest.fixture(scope="module")
def episodes(county_dir) -> list[dict]:
    return json.loads((county_dir / "truth" / "episodes.json").read_text(encoding="utf-8"))


def _time(row: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(row["reported_at"])


def read_file_rows(path: Path) -> tuple[list[str], dict[int, list]]:
    """Header and data rows by line number, as in the truth (sheet row, CSV line, JSON line)."""
    if path.suffix == ".xlsx":
        rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python(skip_empty_area=False)
        head = next(i for i, r in enumerate(rows) if sum(1 for c in r if c != "") > 5)
        data = {i + 1: r for i, r in enumerate(rows) if i > head and r[0] != "合计"}
        return [str(c) for c in rows[head]], data
    if path.suffix == ".csv":
        lines = path.read_bytes().split(b"\r\n")[:-1]
        head = next(i for i, line in enumerate(lines) if line.count(b",") > 5)
        data = {i + 1: line for i, line in enumerate(lines) if i > head}
        return lines[head].decode("gbk").split(","), data
    lines = path.read_bytes().split(b"\n")[:-1]
    first = json.loads(lines[0]) if lines else {}
    return list(first), {i + 1: line for i, line in enumerate(lines)}


def test_truth_has_the_documented_columns(county_dir):
    with open(county_dir / "truth" / "records.csv", encoding="utf-8") as f:
        assert f.readline().strip().split(",") == TRUTH_COLUMNS
    outages = json.loads((county_dir / "truth" / "outages.json").read_text(encoding="utf-8"))
    assert outages and all(set(o) == {"feed", "township_code", "start", "end"} for o in outages)


def test_about_one_event_per_person_year_split_as_the_feeds_carry_them(originals):
    days = (dt.date(2026, 3, 1) - dt.date(2025, 12, 1)).days
    per_person_year = len(originals) / POPULATION * 365 / days
    assert 0.85 < per_person_year < 1.3
    share = Counter(r["feed"] for r in originals)
    assert abs(share["hotline_12345"] / len(originals) - 0.40) < 0.04
    assert abs(share["police_110"] / len(originals) - 0.45) < 0.04
    assert abs(share["grid"] / len(originals) - 0.15) < 0.03


def test_most_hotline_orders_are_ordinary_requests(originals):
    hotline = [r["domain"] for r in originals if r["feed"] == "hotline_12345"]
    assert Counter(hotline)["none"] / len(hotline) > 0.6
    police = Counter(r["domain"] for r in originals if r["feed"] == "police_110")
    assert police.most_common(1)[0][0] in ("public_order", "civil_dispute")
    assert set(r["domain"] for r in originals) == set(schemas.domain_codes())


def test_public_order_peaks_at_night_and_at_weekends(originals):
    rows = [_time(r) for r in originals if r["feed"] == "police_110" and r["domain"] == "public_order"]
    night = sum(1 for t in rows if t.hour >= 20 or t.hour < 2)
    morning = sum(1 for t in rows if 6 <= t.hour < 12)
    assert night > 1.5 * morning
    per_day = Counter(t.date() for t in rows)
    weekend = np.mean([c for d, c in per_day.items() if d.weekday() >= 5])
    weekday = np.mean([c for d, c in per_day.items() if d.weekday() < 5])
    assert weekend > 1.15 * weekday
    hotline = [_time(r) for r in originals if r["feed"] == "hotline_12345"]
    assert sum(1 for t in hotline if 9 <= t.hour < 17) > 3 * sum(1 for t in hotline if t.hour < 7)


def test_seasons_and_holidays_shape_the_expected_counts():
    year = Calendar.from_month("2026-01", 12)
    lam = expected_daily(1_000_000, year)
    codes = [s["code"] for s in situations()]
    dates = year.dates()
    flood = lam["police_110"][:, codes.index("flood_drowning")]
    july = np.mean([flood[i] for i, d in enumerate(dates) if d.month == 7])
    january = np.mean([flood[i] for i, d in enumerate(dates) if d.month == 1])
    assert july > 10 * january
    school = lam["hotline_12345"][:, codes.index("school_surroundings")]
    term = np.mean([school[i] for i, d in enumerate(dates) if d.month == 5 and d.weekday() < 5])
    summer = np.mean([school[i] for i, d in enumerate(dates) if d.month == 8 and d.weekday() < 5])
    assert term > 4 * summer
    wages = lam["hotline_12345"][:, codes.index("wage_arrears")]
    before = np.mean(wages[(dt.date(2026, 1, 20) - year.first).days:(dt.date(2026, 2, 10) - year.first).days])
    spring = np.mean(wages[(dt.date(2026, 4, 1) - year.first).days:(dt.date(2026, 4, 30) - year.first).days])
    assert before > 3 * spring


def test_wage_arrears_rise_before_the_spring_festival_in_the_files(originals):
    per_day = Counter(_time(r).date() for r in originals if r["domain"] == "labor_wage")
    before = np.mean([per_day.get(dt.date(2026, 1, 20) + dt.timedelta(days=k), 0) for k in range(20)])
    december = np.mean([per_day.get(dt.date(2025, 12, 1) + dt.timedelta(days=k), 0) for k in range(20)])
    assert before > 1.5 * december


def test_each_episode_stands_out_from_its_township_baseline(originals, episodes):
    assert len(episodes) >= MONTHS
    series = defaultdict(Counter)
    for r in originals:
        series[(r["township_code"], r["domain"])][_time(r).date()] += 1
    all_days = [dt.date(2025, 12, 1) + dt.timedelta(days=k) for k in range(90)]
    for e in episodes:
        assert e["shape"] in ("sudden", "gradual", "wave") and e["subject"] and e["description"]
        start, end = dt.date.fromisoformat(e["start"]), dt.date.fromisoformat(e["end"])
        counts = series[(e["township_code"], e["domain"])]
        inside = [counts[d] for d in all_days if start <= d <= end]
        outside = [counts[d] for d in all_days if not start <= d <= end]
        assert e["magnitude"] == sum(1 for r in originals if r["episode_id"] == e["episode_id"])
        assert max(inside) >= max(3, 2 * (np.mean(outside) + 1)), e


def test_episodes_are_echoed_across_feeds_with_repeat_callers(county_dir, originals, episodes):
    feeds_of_incident = defaultdict(set)
    for r in originals:
        if r["episode_id"]:
            feeds_of_incident[r["incident_key"]].add(r["feed"])
    assert sum(1 for f in feeds_of_incident.values() if len(f) >= 2) >= 5
    phones = Counter()
    episode_lines = {(r["file"], int(r["line"])) for r in originals if r["episode_id"] and r["feed"] == "hotline_12345"}
    for path in sorted((county_dir / "inbox" / "hotline_12345").iterdir()):
        header, rows = read_file_rows(path)
        column = next(i for i, h in enumerate(header) if header_fields("hotline_12345")[h.lower()] == "caller_phone")
        for line, row in rows.items():
            if (f"hotline_12345/{path.name}", line) in episode_lines:
                phones[row[column]] += 1
    assert phones.most_common(1)[0][1] >= 3


def test_every_file_row_has_exactly_one_truth_line(county_dir, truth):
    lines_by_file = defaultdict(set)
    for r in truth:
        lines_by_file[r["file"]].add(int(r["line"]))
    assert len(lines_by_file) == 3 * MONTHS
    ids_checked = 0
    by_place = {(r["file"], int(r["line"])): r for r in truth}
    for feed in schemas.FEEDS:
        for path in sorted((county_dir / "inbox" / feed).iterdir()):
            rel = f"{feed}/{path.name}"
            _, rows = read_file_rows(path)
            assert set(rows) == lines_by_file[rel], rel
            for line, row in rows.items():
                r = by_place[(rel, line)]
                if not r["broken_reason"]:
                    raw = row[0] if isinstance(row, list) else row.decode("gbk" if feed == "police_110" else "utf-8")
                    assert r["source_id"] in str(raw)
                    ids_checked += 1
    assert ids_checked > 0.95 * len(truth)


def test_header_sets_change_between_months_and_map_to_the_contract(county_dir):
    for feed in schemas.FEEDS:
        seen = set()
        for path in sorted((county_dir / "inbox" / feed).iterdir()):
            header, _ = read_file_rows(path)
            assert all(h.lower() in header_fields(feed) for h in header), header
            seen.add(tuple(header))
        assert len(seen) >= 2, feed
    for feed, sets in header_sets().items():
        for hs in sets:
            assert all(h.lower() in header_fields(feed) for h in hs["headers"])


def test_broken_rows_late_rows_and_repeated_exports(truth, originals):
    broken = [r for r in truth if r["broken_reason"]]
    assert 0.005 < len(broken) / len(truth) < 0.02
    for r in broken:
        assert r["broken_reason"] in BROKEN_REASONS[r["feed"]] and not r["duplicate_of"]
    by_place = {f"{r['file']}:{r['line']}": r for r in truth}
    duplicates = [r for r in truth if r["duplicate_of"]]
    assert duplicates
    for r in duplicates:
        original = by_place[r["duplicate_of"]]
        assert (original["feed"], original["source_id"], original["broken_reason"]) == (r["feed"], r["source_id"], "")
    late = [r for r in originals if r["file"][-12:-5] != r["reported_at"][:7] and r["file"].endswith((".xlsx", ".jsonl"))
            or r["file"].endswith(".csv") and r["file"][-11:-4] != r["reported_at"][:7]]
    assert late, "some records arrive in the next month's file"


def test_outages_silence_their_feed(truth, county_dir):
    outages = json.loads((county_dir / "truth" / "outages.json").read_text(encoding="utf-8"))
    for o in outages:
        start, end = dt.date.fromisoformat(o["start"]), dt.date.fromisoformat(o["end"])
        hits = [r for r in truth if r["feed"] == o["feed"] and start <= _time(r).date() <= end
                and (o["township_code"] is None or r["township_code"] == o["township_code"])]
        assert hits == [], o


def test_texts_are_varied_and_carry_what_callers_give(county_dir):
    texts, grid_texts = [], []
    for path in sorted((county_dir / "inbox" / "grid").iterdir()):
        for line in path.read_bytes().split(b"\n")[:-1]:
            try:
                obj = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            grid_texts.append(str(obj.get("事件描述") or obj.get("description") or ""))
    for path in sorted((county_dir / "inbox" / "hotline_12345").iterdir()):
        header, rows = read_file_rows(path)
        column = next(i for i, h in enumerate(header) if header_fields("hotline_12345")[h.lower()] == "text")
        texts += [str(r[column]) for r in rows.values()]
    assert len(set(texts)) > 0.97 * len(texts)
    lengths = [len(t) for t in texts]
    assert np.percentile(lengths, 90) > 1.8 * np.percentile(lengths, 10)
    joined = "\n".join(texts)
    assert any(ch in "".join(grid_texts) for ch in "這們說與過還裡") or any(ch in joined for ch in "這們說與過還裡")
    import re
    assert len(re.findall(r"1[3-9]\d{9}", joined)) > 10
    assert re.search(r"\d{17}[\dX]", joined)
    assert any(w in joined for w in ("聚集", "拉横幅", "堵", "扬言", "曝光"))


def test_gazetteer_is_a_plausible_county(county_dir):
    with open(county_dir / "gazetteer.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == schemas.load("gazetteer.yaml")["columns"]
    by_level = defaultdict(list)
    for r in rows:
        by_level[r["level"]].append(r)
    assert len(by_level["county"]) == 1 and 12 <= len(by_level["township"]) <= 20
    codes = {r["code"]: r for r in rows}
    for r in rows:
        assert len(r["code"]) == (15 if r["level"] == "grid" else 12)
        if r["level"] != "county":
            assert codes[r["parent_code"]]["code"] == r["parent_code"]
    assert any(r["name"] == "城关镇" and "城关" in r["aliases"].split("|") for r in by_level["township"])
    assert police_station_name("城关镇") == "城关派出所" and police_station_name("东城街道") == "东城派出所"
    assert build_county(1_000_000, np.random.default_rng(0)).townships.__len__() == 20


def test_id_numbers_carry_a_valid_check_digit():
    assert id_number("110105", "19491231", 2) == "11010519491231002X"


def test_same_seed_same_bytes_other_seed_other_files(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        simulate(tmp_path / name, "2025-03", 2, seed=seed, population=5000, workers=1 if name == "a" else 2)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 1 + 3 + 6
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a" / "truth" / "records.csv").read_bytes() != (tmp_path / "c" / "truth" / "records.csv").read_bytes()


def test_daily_files(tmp_path):
    simulate(tmp_path, "2025-03", 1, seed=2, population=3000, files="daily")
    outages = json.loads((tmp_path / "truth" / "outages.json").read_text(encoding="utf-8"))
    silent = set()
    for o in outages:
        if o["feed"] == "police_110" and o["township_code"] is None:
            first, last = dt.date.fromisoformat(o["start"]), dt.date.fromisoformat(o["end"])
            silent |= {first + dt.timedelta(days=k) for k in range((last - first).days + 1)}
    names = sorted(p.name for p in (tmp_path / "inbox" / "police_110").iterdir())
    expected = [f"110警情_{dt.date(2025, 3, d)}.csv" for d in range(1, 32) if dt.date(2025, 3, d) not in silent]
    assert names == expected


def test_cli_simulate(tmp_path, capsys):
    assert cli.main(["simulate", "--out", str(tmp_path), "--start", "2025-05", "--months", "1",
                     "--population", "3000", "--seed", "1"]) == 0
    assert (tmp_path / "truth" / "records.csv").exists()
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "--out", str(tmp_path), "--start", "2025-13"])
    assert exc.value.code == 2
    assert "YYYY-MM" in capsys.readouterr().err
