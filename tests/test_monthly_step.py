"""The monthly report step's readers and shortcuts give what the slower paths gave: each month read
once (``MonthEvents``), a year of incidents counted in Arrow, last month's topics looked up by
group, the checks in a second process; and subjects unify to the first head."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from models import topics as model
from pipelines import warehouse
from pipelines.month_checks import ChecksProcess, check_month
from pipelines.month_events import MonthEvents
from pipelines.month_topics import TopicsProcess, month_scores, topics_of_month
from pipelines.monthly import MonthReport, report_month
from pipelines.options import beam_options
from pipelines.second_process import SecondProcess
from pipelines.sinks import events_dir
from reports.summary import domain_trend
from tests.topic_fixtures import GAZETTEER, MONTH, TZ, history_events, month_events
from tests.topic_fixtures import month_scores as fixture_scores

DATA = Path(__file__).parent / "data"
CST = dt.timezone(dt.timedelta(hours=8))


def _event(event_id, reported_at, ingested_at, domain, incident_id=None, text="反映情况"):
    return {"event_id": event_id, "source": "police_110", "source_id": event_id, "reported_at": reported_at,
            "ingested_at": ingested_at, "batch_id": "b", "text": text, "township_code": "t1", "domain": domain,
            "incident_id": incident_id, "signals": []}


def _store(out: Path, month: str, name: str, rows: list[dict]) -> None:
    folder = Path(events_dir(str(out))) / f"month={month}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.arrow_schema("event")), folder / name)


@pytest.fixture()
def small_warehouse(tmp_path):
    first, later = dt.datetime(2026, 10, 5, tzinfo=CST), dt.datetime(2026, 11, 2, tzinfo=CST)
    oct_ = dt.datetime(2026, 10, 10, 9, tzinfo=CST)
    _store(tmp_path, "2026-09", "events-a.parquet", [
        _event("e:sep", dt.datetime(2026, 9, 3, tzinfo=CST), first, "labor_wage", "i9"),
        # 01:00 on 1 October in county time: an October event, whatever partition holds it
        _event("e:edge", dt.datetime(2026, 9, 30, 17, tzinfo=dt.timezone.utc), first, "public_order"),
        # an older version of e:a, stored under September before its time was corrected
        _event("e:a", dt.datetime(2026, 9, 28, tzinfo=CST), first, "public_order", "i1"),
    ])
    _store(tmp_path, "2026-10", "events-a.parquet", [
        _event("e:c", oct_, first, "labor_wage", ""),
        _event("e:b", oct_, first, "labor_wage", "i1"),
        _event("e:a", oct_, first, "labor_wage", "i1", text="第一版"),
        _event("e:d", oct_, first, "none", "i4"),
        _event("e:e", oct_, first, None, "i5"),
    ])
    # a later run stores e:a again: its version wins
    _store(tmp_path, "2026-10", "events-b.parquet", [_event("e:a", oct_, later, "labor_wage", "i1", text="第二版")])
    return tmp_path


def test_latest_versions_as_the_warehouse_reads_them(small_warehouse):
    out, store = str(small_warehouse), MonthEvents(str(small_warehouse))
    october = store.latest(["2026-10"], columns=["text", "domain"])
    assert october["event_id"].tolist() == ["e:a", "e:b", "e:c", "e:d", "e:e"]
    assert october.loc[0, "text"] == "第二版"
    both = ["2026-09", "2026-10"]
    assert store.latest(both)["event_id"].tolist() == ["e:a", "e:b", "e:c", "e:d", "e:e", "e:edge", "e:sep"]
    assert store.latest(both).equals(warehouse.read_events(out, both))
    # every stored version for the quality checks; a month read whole serves the narrower reads too
    assert store.all_versions(both).equals(warehouse.read_events(out, both, latest_only=False))
    assert len(store.all_versions(both)) == 9
    assert store.latest(both, columns=model.RECORD_COLUMNS).equals(
        warehouse.read_events(out, both, columns=model.RECORD_COLUMNS))
    assert store.latest(["2026-08"]).empty


def test_incidents_by_domain_count_latest_versions_by_county_month(small_warehouse):
    out = str(small_warehouse)
    months = ["2026-09", "2026-10"]
    incidents = MonthEvents(out).incidents_by_domain(months)
    # October labour: e:a and e:b share i1, e:c (empty incident) is its own; e:a's September
    # version is superseded; none and missing domains count nowhere
    assert incidents == {("labor_wage", "2026-10"): 2, ("public_order", "2026-10"): 1, ("labor_wage", "2026-09"): 1}
    events = warehouse.read_events(out, months, columns=["incident_id", "domain", "reported_at"])
    assert domain_trend([], "2026-10", 2, incidents=incidents) == domain_trend([], "2026-10", 2, events=events)


def test_events_still_speaking_of_last_months_topics_are_counted_per_group():
    previous = [
        {"topic_id": "p1", "region": {"code": "t1"}, "domain": "labor_wage", "subject": "宏达公司"},
        {"topic_id": "p2", "region": {"code": "t2"}, "domain": "labor_wage", "subject": "宏达公司"},
        {"topic_id": "p3", "region": {"code": "t1"}, "domain": "labor_wage", "keywords": ["欠薪", "工资", "老板"]},
        {"topic_id": "p4", "region": {"code": "t1"}, "domain": "public_order", "subject": "宏达公司"},
    ]
    texts = ["宏达公司欠薪三个月", "老板拖欠工资", "宏达公司门口有人打架"]
    events = [_event(f"e:{i}", dt.datetime(2026, 10, 10, tzinfo=CST), dt.datetime(2026, 11, 1, tzinfo=CST),
                     "labor_wage", text=text) for i, text in enumerate(texts)]
    month = model.build_topics(events, [], previous_topics=previous, gazetteer=[], month="2026-10")
    # p1: its subject in two events of its group; p3: two of its keywords in one ("老板", "工资"; the
    # first event has one); p2 and p4 belong to other groups (another township, another domain)
    assert {c["topic_id"]: c["events"] for c in month.closed} == {"p1": 2, "p2": 0, "p3": 1, "p4": 0}


def test_subjects_unify_to_the_first_head_never_to_an_alias():
    builder = model.TopicBuilder([])
    named = (["锦绣花园小区"] * 3 + ["锦绣花园"] * 2 + ["宏达建筑工程有限公司"] * 2
             + ["锦绣花园公寓", "锦绣建材有限公司", "宏达建筑工地"])
    kinds = {"锦绣建材有限公司": "company", "宏达建筑工程有限公司": "company", "宏达建筑工地": "site"}
    subjects = [[(n, kinds.get(n, "residential"))] for n in named] + [[]]
    texts = [f"{n}的事" for n in named] + ["宏达建筑老板跑路了"]
    unified = model.unify_subjects(subjects, texts, builder.suffixes, kind_of=builder.finder.kind_of)
    assert [u[0][0] if u else None for u in unified] == (
        ["锦绣花园小区"] * 5 + ["宏达建筑工程有限公司"] * 2
        # "锦绣花园公寓" begins with "锦绣花园", which is itself another name's alias: its own place;
        # a company and a site whose cores begin with a place's or company's core of another kind join it
        + ["锦绣花园公寓", "锦绣花园小区", "宏达建筑工程有限公司"]
        + ["宏达建筑工程有限公司"])  # the bare name in a text names the company


@pytest.fixture(scope="module")
def topic_warehouse(tmp_path_factory):
    """The topic fixtures' month and history months stored as the batch job stores Events."""
    out = tmp_path_factory.mktemp("topic_warehouse")
    by_month: dict[str, list] = {}
    for e in month_events() + history_events():
        e = dict(e, ingested_at=dt.datetime(2025, 7, 1, tzinfo=TZ), batch_id="b",
                 source_id=e["event_id"].split(":")[1], feed_file=f"{e['source']}.csv")
        by_month.setdefault(e["reported_at"].strftime("%Y-%m"), []).append(e)
    for month, rows in by_month.items():
        _store(out, month, "events-batch-000.parquet", rows)
    return out


def _report(warehouse_dir: Path, target: Path, **kwargs) -> tuple[dict, dict, dict, bytes]:
    shutil.copytree(warehouse_dir, target)
    _, summary = MonthReport(str(target), MONTH, str(GAZETTEER), **kwargs).write()
    topics = json.loads((target / "reports" / MONTH / "topics.json").read_text(encoding="utf-8"))
    findings = json.loads((target / "quality" / MONTH / "findings.json").read_text(encoding="utf-8"))
    for volatile in (topics, findings, summary):
        for key in ("generated_at", "seconds", "quality_seconds", "second_processes"):
            volatile.pop(key, None)
    return topics, findings, summary, (target / "quality" / MONTH / "scorecard.html").read_bytes()


def test_checks_in_a_second_process_give_what_one_process_gives(topic_warehouse, tmp_path):
    one = _report(topic_warehouse, tmp_path / "one", processes=False)
    two = _report(topic_warehouse, tmp_path / "two", processes=True)
    assert one == two
    # the topics in the checks' process after its checks (a month with little history to score)
    assert _report(topic_warehouse, tmp_path / "checks", processes=True, topics_process=False) == one
    # a month this small is checked in one process whatever the machine
    assert report_month(str(tmp_path / "one"), MONTH, str(GAZETTEER))[1]["second_processes"] == []
    topics, findings, summary, _ = two
    assert summary["topics"] == len(topics["topics"]) > 0
    assert summary["quality_findings"] == len(findings["findings"]) > 0  # the fixtures leave fields empty


def test_second_processes_begun_before_the_events_are_written_read_them_once_told(topic_warehouse, tmp_path):
    one = _report(topic_warehouse, tmp_path / "one", processes=False)
    early = tmp_path / "early"
    early.mkdir()
    # begun on an empty output folder: the children import and wait, reading nothing yet
    report = MonthReport(str(early), MONTH, str(GAZETTEER), processes=True, events_written=False)
    shutil.copytree(topic_warehouse, early, dirs_exist_ok=True)
    report.events_written()
    _, summary = report.write()
    assert summary["second_processes"] == ["checks", "topics"]
    # a topics process begun early and no longer wanted once the Events are written stops: the
    # checks' process builds the topics after its checks
    shutil.copytree(topic_warehouse, tmp_path / "one_child")
    one_child = MonthReport(str(tmp_path / "one_child"), MONTH, str(GAZETTEER), processes=True,
                            events_written=False)
    one_child.events_written(topics_process=False)
    assert one_child.write()[1]["second_processes"] == ["checks", "topics"]
    assert json.loads((tmp_path / "one_child" / "reports" / MONTH / "topics.json").read_text(encoding="utf-8"))[
        "topics"] == one[0]["topics"]
    assert json.loads((early / "reports" / MONTH / "topics.json").read_text(encoding="utf-8"))["topics"] == one[0]["topics"]
    assert json.loads((early / "quality" / MONTH / "findings.json").read_text(encoding="utf-8"))["findings"] == one[1][
        "findings"]
    # a month that proves too small for them stops them and is reported in this process
    shutil.copytree(topic_warehouse, tmp_path / "small")
    small = MonthReport(str(tmp_path / "small"), MONTH, str(GAZETTEER), processes=None, events_written=False)
    small.events_written()
    assert small.write()[1]["second_processes"] == []


def test_a_check_that_fails_in_the_second_process_fails_as_in_one(topic_warehouse, tmp_path, monkeypatch):
    policy = tmp_path / "policy.yaml"
    policy.write_text("severity: {required_field: fatal}\n", encoding="utf-8")
    monkeypatch.setenv("RISKWATCH_QUALITY_POLICY", str(policy))
    errors = []
    for checks_process in (False, True):
        shutil.copytree(topic_warehouse, tmp_path / str(checks_process))
        with pytest.raises(ValueError) as raised:
            report_month(str(tmp_path / str(checks_process)), MONTH, str(GAZETTEER), processes=checks_process)
        errors.append(str(raised.value))
    assert errors[0] == errors[1] and "severities must be one of" in errors[0]


def _interpreter(tmp_path: Path, python: str) -> Path:
    """A Python that dies at once ("dies") or is not there ("missing")."""
    interpreter = tmp_path / "python"
    if python == "dies":
        interpreter.write_text("#!/bin/sh\nkill -9 $$\n", encoding="utf-8")
        interpreter.chmod(interpreter.stat().st_mode | stat.S_IEXEC)
    return interpreter


TREND = [model.shift_month(MONTH, -k) for k in range(3, -1, -1)]


def _same_checks(checks, out: Path) -> None:
    alone = check_month(str(out), MONTH, str(GAZETTEER), TREND)
    assert checks.quality.findings == alone.quality.findings and checks.incidents == alone.incidents
    assert checks.incidents[("labor_wage", MONTH)] > 0


@pytest.mark.parametrize("topics", [False, True])
@pytest.mark.parametrize("python", ["dies", "missing"])
def test_a_second_process_that_dies_or_never_starts_leaves_the_checks_to_this_one(topic_warehouse, tmp_path,
                                                                                    python, topics):
    interpreter = _interpreter(tmp_path, python)
    out = tmp_path / "w"
    shutil.copytree(topic_warehouse, out)
    _write_scores(out, fixture_scores())
    with ChecksProcess(str(out), MONTH, str(GAZETTEER), TREND, python=str(interpreter), topics=topics) as child:
        child.scores_written()
        checks, built = child.result(), child.topics(month_scores(str(out), MONTH))
    _same_checks(checks, out)
    # and the topics, whether the process was to build them or not
    assert built == topics_of_month(str(out), MONTH, str(GAZETTEER), month_scores(str(out), MONTH))


def test_a_second_process_result_is_read_once_written_while_the_process_still_exits(tmp_path):
    release = tmp_path / "release"
    child = SecondProcess("tests.lingering_child", ["its value", str(release)], "a lingering child")
    try:
        assert child.result() == "its value"
        # read before the process ended, and not stopped by the caller's close(): it exits on its own
        assert child._process.poll() is None
        child.close()
        assert child._process.poll() is None
    finally:
        release.touch()
    assert child._process.wait(timeout=60) == 0


def _write_scores(out: Path, rows: list[dict]) -> None:
    with beam.Pipeline(options=beam_options([])) as pipeline:
        _ = pipeline | beam.Create(rows) | warehouse.WriteScores(str(out))


def _levels(topics) -> dict:
    return {(t.township_code, t.domain): (t.level, tuple(t.region_reasons)) for t in topics.topics}


def test_the_topics_process_reads_the_scores_once_told_they_are_written(topic_warehouse, tmp_path):
    out = tmp_path / "w"
    shutil.copytree(topic_warehouse, out)
    child = TopicsProcess(str(out), MONTH, str(GAZETTEER))  # starts reading the texts before any score exists
    _write_scores(out, fixture_scores())
    child.scores_written()
    topics = child.result(month_scores(str(out), MONTH))
    alone = topics_of_month(str(out), MONTH, str(GAZETTEER), month_scores(str(out), MONTH))
    assert topics == alone
    # the scores reached the topics: the orange group's topics carry its level and reasons
    assert ("orange", ("本月20件，为预期的3.3倍",)) in _levels(topics).values()


@pytest.mark.parametrize("python", ["dies", "missing"])
def test_a_topics_process_that_dies_or_never_starts_leaves_the_topics_to_this_one(topic_warehouse, tmp_path, python):
    interpreter = _interpreter(tmp_path, python)
    out = tmp_path / "w"
    shutil.copytree(topic_warehouse, out)
    _write_scores(out, fixture_scores())
    child = TopicsProcess(str(out), MONTH, str(GAZETTEER), python=str(interpreter))
    child.scores_written()
    topics = child.result(month_scores(str(out), MONTH))
    assert topics == topics_of_month(str(out), MONTH, str(GAZETTEER), month_scores(str(out), MONTH))
    assert topics.topics


def test_the_checks_process_builds_the_topics_after_its_checks_reading_the_scores_once_told(topic_warehouse, tmp_path,
                                                                                           caplog):
    out = tmp_path / "w"
    shutil.copytree(topic_warehouse, out)
    # begun before the Events are written, then told to build the topics too, before any score exists
    with ChecksProcess(str(out), MONTH, str(GAZETTEER), TREND, events_written=False) as child:
        child.events_written(topics=True)
        _write_scores(out, fixture_scores())
        child.scores_written()
        checks, topics = child.result(), child.topics(month_scores(str(out), MONTH))
    assert "doing it in this one" not in caplog.text  # both came from the second process
    _same_checks(checks, out)
    assert topics == topics_of_month(str(out), MONTH, str(GAZETTEER), month_scores(str(out), MONTH))
    assert ("orange", ("本月20件，为预期的3.3倍",)) in _levels(topics).values()


def test_a_checks_process_never_told_of_the_scores_leaves_checks_and_topics_to_this_one(topic_warehouse, tmp_path,
                                                                                        caplog):
    out = tmp_path / "w"
    shutil.copytree(topic_warehouse, out)
    _write_scores(out, fixture_scores())
    # the job failed before its scores: the child checks, hears nothing more and exits unfinished
    with ChecksProcess(str(out), MONTH, str(GAZETTEER), TREND, topics=True) as child:
        topics, checks = child.topics(month_scores(str(out), MONTH)), child.result()
    assert "the month's checks failed in a second process" in caplog.text
    assert topics == topics_of_month(str(out), MONTH, str(GAZETTEER), month_scores(str(out), MONTH))
    _same_checks(checks, out)


def test_a_topics_process_never_told_of_the_scores_stops_and_the_topics_are_built_here(topic_warehouse, tmp_path):
    out = tmp_path / "w"
    shutil.copytree(topic_warehouse, out)
    _write_scores(out, fixture_scores())
    # the job failed before its scores: the child hears nothing, exits, and its caller builds the topics itself
    topics = TopicsProcess(str(out), MONTH, str(GAZETTEER)).result(month_scores(str(out), MONTH))
    assert topics == topics_of_month(str(out), MONTH, str(GAZETTEER), month_scores(str(out), MONTH))
