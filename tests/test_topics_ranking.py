"""Ranking topics by their own evidence: every township × domain is looked at, so a small concentrated
matter in a quiet group outranks the routine business of a busy one; a wave of mixed cases in a few
days is a topic; a county-wide seasonal rise is not. Hand-written, field-style texts."""
from __future__ import annotations

import datetime as dt
import math
import re

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import nbinom, poisson

from models import topics as model
from pipelines.gazetteer import read_gazetteer_rows
from pipelines.options import beam_options
from pipelines.topics import BuildTopics
from tests.topic_fixtures import CHENGGUAN, GAZETTEER, MONTH, QINGSHI, TZ, score_row

HISTORY = ("2025-03", "2025-04", "2025-05")

QUARRELS = ["和老公吵架，他喝了酒砸东西", "丈夫经常打人，这次把脸打肿了", "夫妻两个因为孩子上学的事吵得很厉害",
            "儿媳和婆婆吵起来了，双方不让", "妻子要离婚，男方不同意，在家里闹", "报警人称老婆回娘家不回来，双方家人吵架"]
# everyday fraud reports of every kind, a few a month
FRAUD_BACKGROUND = ["网上刷单被骗了两千多，对方把我拉黑了", "接到电话说快递丢了要理赔，转了一千二",
                    "有人加微信冒充我们单位领导让转账", "在一个投资平台充了钱，现在提不了现",
                    "网上贷款说要先交解冻费，交完贷款也没下来", "游戏账号交易被骗了八百块"]
# one scheme, told in as many ways as callers tell it
IMPERSONATION = ["接到自称公安局的电话，说我涉嫌洗钱，让把钱转到安全账户", "对方说是检察院的，说我名下银行卡涉案，要我配合调查转账",
                 "有人冒充警察打视频电话，出示了通缉令，我转了三万多", "称我的身份证被人冒用涉嫌洗钱，要求把存款转到所谓的安全账户",
                 "老人接到冒充公安的电话，差点把养老钱转出去，被银行拦下", "自称法院工作人员，说我有案子要冻结账户，让我先转钱核查",
                 "冒充公检法的骗子让我下载会议软件开屏幕共享", "说是公安局民警，说我涉嫌洗钱案，让我转钱到安全账户配合调查",
                 "报警称被冒充公安的人骗了五万元", "一个自称刑警的人打电话说我卷入洗钱案，要我保密并转账",
                 "母亲接到自称检察官的电话，说她涉嫌洗钱，已经转了两万", "对方冒充公安说我的快递里有违禁品，要交保证金到安全账户"]


def _events(township, domain, month, texts, source="police_110", signals=(), first_day=1, every=1, tag=""):
    year, mon = (int(p) for p in month.split("-"))
    return [{"event_id": f"{source}:{tag}{domain}-{month}-{i}", "source": source, "township_code": township,
             "village_code": None, "domain": domain, "text": text, "signals": list(signals), "caller_key": None,
             "incident_id": None,
             "reported_at": dt.datetime(year, mon, first_day + (i * every) % 28, 9 + i % 10, 15, tzinfo=TZ)}
            for i, text in enumerate(texts)]


def test_a_concentrated_matter_in_a_quiet_group_outranks_a_busy_groups_routine():
    """Fourteen impersonation-scam calls in Qingshi against 0–2 a month, in a fraud total that barely
    moves (level none), come first; Chengguan's quarrels, yellow but at their usual count, are not listed."""
    history, month = [], []
    for k, m in enumerate(HISTORY):
        history += _events(QINGSHI, "financial_fraud", m, FRAUD_BACKGROUND * 4, every=1, tag="bg")
        history += _events(QINGSHI, "financial_fraud", m, IMPERSONATION[:k % 3], first_day=5, tag="imp")
        history += _events(CHENGGUAN, "civil_dispute", m, QUARRELS * 5)
    month += _events(QINGSHI, "financial_fraud", MONTH, FRAUD_BACKGROUND * 3, tag="bg")
    month += _events(QINGSHI, "financial_fraud", MONTH, IMPERSONATION + IMPERSONATION[:2], first_day=8, tag="imp")
    month += _events(CHENGGUAN, "civil_dispute", MONTH, QUARRELS * 6)
    scores = [score_row(QINGSHI, "financial_fraud", MONTH, 32, 25, 20, "none"),
              score_row(CHENGGUAN, "civil_dispute", MONTH, 36, 30, 60, "yellow", ["本月36件，为预期的1.2倍"])]
    result = model.build_topics(month, scores, history, gazetteer=str(GAZETTEER), month=MONTH)
    top = result.topics[0]
    assert top.title == "青石镇·冒充公检法诈骗警情多发"
    assert (top.level, top.list_name, top.events) == ("none", "study", 14)
    assert [m["events"] for m in top.monthly_events] == [0, 1, 2, 14]
    assert top.strength["count"] > 4
    assert all(t.domain != "civil_dispute" for t in result.topics)


def test_a_wave_of_mixed_cases_in_a_few_days_is_a_topic():
    """Twelve fraud reports of every kind within two days, in a group that sees six or so in its
    busiest days, make one topic of those days even though no one kind of fraud rises."""
    history = [e for m in HISTORY for e in _events(QINGSHI, "financial_fraud", m, FRAUD_BACKGROUND * 5, tag=m)]
    month = _events(QINGSHI, "financial_fraud", MONTH, FRAUD_BACKGROUND * 4, tag="bg")
    wave = _events(QINGSHI, "financial_fraud", MONTH, FRAUD_BACKGROUND * 2, tag="wave")
    for i, e in enumerate(wave):
        e["reported_at"] = dt.datetime(2025, 6, 18, 8, 0, tzinfo=TZ) + dt.timedelta(hours=3 * i)
    scores = [score_row(QINGSHI, "financial_fraud", MONTH, 36, 30, 25, "none")]
    result = model.build_topics(month + wave, scores, history, gazetteer=str(GAZETTEER), month=MONTH)
    bursts = [t for t in result.topics if re.fullmatch(r"青石镇·6月1[78]日起金融风险事件集中发生", t.title)]
    assert len(bursts) == 1
    burst = bursts[0]
    assert {e["event_id"] for e in wave} <= set(burst.evidence_event_ids)
    assert burst.subject is None and burst.strength["count"] > 2
    assert re.match(r"6月1[78]日起3天内", burst.reasons[0])
    # the same month without the wave: nothing to list
    assert model.build_topics(month, scores, history, gazetteer=str(GAZETTEER), month=MONTH).topics == []


def test_a_score_that_lifts_topics_onto_the_watch_list_takes_their_events_from_the_wave():
    """The wave is drafted before the group's score is known, from the topics their own evidence
    lists; a red score that lifts the six kinds of fraud onto the watch list explains the burst's
    events, and no wave is left of them. Without the score the kinds stay below and the burst is
    the topic."""
    history = [e for m in HISTORY for e in _events(QINGSHI, "financial_fraud", m, FRAUD_BACKGROUND * 5, tag=m)]
    month = _events(QINGSHI, "financial_fraud", MONTH, FRAUD_BACKGROUND * 4 + IMPERSONATION[:4], tag="bg")
    wave = _events(QINGSHI, "financial_fraud", MONTH, FRAUD_BACKGROUND * 2, tag="wave")
    for i, e in enumerate(wave):
        e["reported_at"] = dt.datetime(2025, 6, 18, 8, 0, tzinfo=TZ) + dt.timedelta(hours=3 * i)
    red = score_row(QINGSHI, "financial_fraud", MONTH, 60, 10, 90, "red")
    # the watch list's bar between the kinds' priorities without the score and with it
    builder = model.TopicBuilder(str(GAZETTEER))
    events, past = model.records(month + wave), model.records(history)
    draft = builder.draft_group((QINGSHI, "financial_fraud"), events, past, MONTH,
                                model.domain_counts(builder.grievances, events + past))
    kinds = [own for (k, _, _), own in zip(draft.candidates, draft.evidence) if k[1] != "冒充公检法诈骗"]
    low = max(model.priority(model.scored_evidence(own, None)) for own in kinds)
    high = min(model.priority(model.scored_evidence(own, red)) for own in kinds)
    assert len(kinds) == 6 and low < high
    params = model.TopicParams(watch_priority=(low + high) / 2)

    def titles(scores):
        return sorted(t.title for t in model.build_topics(month + wave, scores, history, gazetteer=str(GAZETTEER),
                                                          month=MONTH, params=params).topics)

    lifted = titles([red])
    assert len(lifted) == 7 and not any("集中发生" in t for t in lifted)
    quiet = titles([score_row(QINGSHI, "financial_fraud", MONTH, 60, 10, 90, "none")])
    assert quiet == ["青石镇·6月17日起金融风险事件集中发生", "青石镇·冒充公检法诈骗警情多发"]


def test_a_county_wide_seasonal_rise_is_watched_not_studied():
    """School-gate traffic complaints rise fourfold in both townships when term starts: the orange
    levels put them on the watch list, not among the topics to study. The same rise in one township
    alone is a topic to study."""
    texts = ["第一小学门口上下学时段车辆乱停，接送孩子很危险", "放学时第一小学门口堵得走不动，希望安排交警疏导",
             "第一小学上下学接送车辆占道，学生过马路危险"]
    towns = [CHENGGUAN, QINGSHI]
    history = [e for m in HISTORY for t in towns for e in _events(t, "campus_safety", m, texts[:2], tag=t)]
    rising = {t: _events(t, "campus_safety", MONTH, texts * 3, tag=t) for t in towns}
    scores = [score_row(t, "campus_safety", MONTH, 9, 2, 50, "orange") for t in towns]
    county = model.build_topics(rising[CHENGGUAN] + rising[QINGSHI], scores, history, gazetteer=str(GAZETTEER),
                                month=MONTH)
    assert len(county.topics) == 2 and {t.list_name for t in county.topics} == {"watch"}
    assert any(r.startswith("全县其他乡镇上下学交通事件本月为前3个月的") for r in county.topics[0].reasons)
    usual = _events(QINGSHI, "campus_safety", MONTH, texts[:2], tag=QINGSHI)
    alone = model.build_topics(rising[CHENGGUAN] + usual, scores, history, gazetteer=str(GAZETTEER), month=MONTH)
    assert [(t.title, t.list_name) for t in alone.topics][:1] == [("城关镇·第一小学上下学交通警情多发", "study")]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30 * 24), max_size=25), st.integers(min_value=1, max_value=5))
def test_busiest_window_counts_the_most_events_within_the_days(hours, days):
    start = dt.datetime(2025, 6, 1, tzinfo=TZ)
    times = [start + dt.timedelta(hours=h) for h in hours]
    count, first = model.busiest_window(times, days)
    brute = max((sum(1 for u in times if t <= u < t + dt.timedelta(days=days)) for t in times), default=0)
    assert count == brute
    if times:
        assert sum(1 for u in times if first <= u < first + dt.timedelta(days=days)) == count


def _sorted_window(times, days):
    """busiest_window as datetimes sorted and subtracted directly (the reference for its integers)."""
    times = sorted(times)
    best, start, j = 0, None, 0
    for i, t in enumerate(times):
        while t - times[j] >= dt.timedelta(days=days):
            j += 1
        if i - j + 1 > best:
            best, start = i - j + 1, times[j]
    return best, start


_OFFSETS = [dt.timezone(dt.timedelta(hours=8)), dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5, minutes=-30)), TZ]
_moments = st.tuples(st.integers(min_value=0, max_value=20 * 86400), st.sampled_from([0, 0, 1, 999_999]),
                     st.integers(min_value=0, max_value=len(_OFFSETS) - 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(_moments, max_size=30), st.sampled_from([1, 3, 2.5]), st.booleans())
def test_busiest_window_in_integers_is_the_datetimes_own(moments, days, naive):
    # times of several offsets (and equal instants told in two offsets), or naive ones
    base = dt.datetime(2025, 10, 1)
    times = [base + dt.timedelta(seconds=s, microseconds=us) if naive else
             (base + dt.timedelta(seconds=s, microseconds=us)).replace(tzinfo=_OFFSETS[o]) for s, us, o in moments]
    count, start = model.busiest_window(times, days)
    assert (count, start) == _sorted_window(times, days)
    assert start is None or any(start is t for t in times)  # one of the given times, not a copy


def test_busiest_window_refuses_naive_and_aware_times_together():
    with pytest.raises(TypeError):
        model.busiest_window([dt.datetime(2025, 10, 1), dt.datetime(2025, 10, 2, tzinfo=TZ)], 3)


def _timed_events(moments, offsets, incidents):
    events = []
    for k, ((s, _, o), incident) in enumerate(zip(moments, incidents)):
        at = (dt.datetime(2025, 10, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=s)).astimezone(offsets[o % len(offsets)])
        events.append({"event_id": f"e{k}", "incident_id": incident, "reported_at": at.isoformat(timespec="seconds")})
    return events


@settings(max_examples=150, deadline=None)
@given(st.lists(_moments, max_size=30), st.lists(st.sampled_from([None, "", "i1", "i2", "i3"]), min_size=30),
       st.sampled_from([1, 3]))
def test_parsed_report_times_give_the_same_windows_and_events(moments, incidents, days):
    events = _timed_events(moments, _OFFSETS[:3], incidents)
    instants = model.ReportInstants()
    count, start = instants.busiest(events, days)
    expected = model.busiest_window(list(model.incident_times(events).values()), days)
    assert count == expected[0] and start == expected[1]  # the same instant (told in UTC)
    assert start is None or start.astimezone(TZ) == expected[1].astimezone(TZ)
    assert model.busiest_events(events, days, instants) == model.busiest_events(events, days)
    # times without an offset are weighed as datetimes
    naive = [{**e, "reported_at": e["reported_at"][:19]} for e in events]
    assert instants.busiest(naive, days) == model.busiest_window(list(model.incident_times(naive).values()), days)
    assert model.busiest_events(naive, days, instants) == model.busiest_events(naive, days)


@pytest.mark.parametrize("count, expected, at_least", [(14, 1.0, 8), (3, 0.5, 1.5), (36, 30.0, 0.0)])
def test_surprise_grows_with_the_count_against_its_expectation(count, expected, at_least):
    value = model.surprise(count, expected, 0.3)
    assert value >= at_least
    assert model.surprise(count + 1, expected, 0.3) > value
    assert model.surprise(count, expected * 2, 0.3) < value


def test_poisson_surprise_is_the_tail_probability():
    # P(X >= 1 | 1) = 1 - e^-1; P(X >= 3 | 0.5) = 1 - e^-0.5 (1 + 0.5 + 0.125)
    assert model.surprise(1, 1.0) == pytest.approx(-math.log10(1 - math.exp(-1)), rel=1e-12)
    assert model.surprise(3, 0.5) == pytest.approx(-math.log10(1 - math.exp(-0.5) * 1.625), rel=1e-12)
    assert model.surprise(0, 5.0) == 0.0 and model.surprise(4, 400.0) == 0.0
    # beyond double precision the tail is 0: an infinite surprise, which the strengths cap
    assert model.surprise(400, 1e-6) == math.inf
    evidence = model.Evidence(events=1, history_mean=0, history_months=3, expected=1, season=1, season_of=None,
                              burst=400, burst_start=None, burst_expected=1e-6, signal_events=0, signal_expected=1,
                              corroborated=0, corroborated_expected=1, repeat_callers=0, level="none", region_share=0)
    assert evidence.strengths()["burst"] == model.TopicParams().evidence_cap


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=400), st.floats(min_value=1e-6, max_value=500))
def test_poisson_surprise_equals_scipy_stats(count, expected):
    assert model.surprise(count, expected) == max(0.0, -float(poisson.logsf(count - 1, expected)) / math.log(10.0))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(min_value=0, max_value=3000), st.floats(min_value=0, max_value=40)),
       st.floats(min_value=0, max_value=3000), st.sampled_from([0.1, 0.3, 1.0]))
def test_overdispersed_surprise_equals_scipy_stats(count, expected, overdispersion):
    size = 1.0 / overdispersion**2
    tail = nbinom.logsf(count - 1, size, size / (size + max(expected, 1e-6)))
    assert model.surprise(count, expected, overdispersion) == (0.0 if count <= 0 else max(0.0, -float(tail) / math.log(10.0)))


def test_no_two_topics_of_a_group_share_a_title():
    """Complaints about a compound whose name the lexicon does not know ("碧桂一品") come from one
    community; the grid reports that name the community and those that do not are one topic."""
    grid = ["幸福里社区第1网格网格员上报：碧桂一品停工好几个月了，现场一个人都没有",
            "幸福里社区第1网格网格员上报：碧桂一品停工半年，业主担心烂尾", "幸福里社区网格员上报：碧桂一品停工，业主聚集讨说法"]
    calls = ["碧桂一品停工好几个月了，问问还能不能复工", "买的碧桂一品一直停工，开发商说资金链断了，会不会烂尾",
             "碧桂一品停工快半年，售楼处也关门了", "反映碧桂一品停工，希望政府介入"]
    month = (_events(CHENGGUAN, "housing_construction", MONTH, grid, source="grid")
             + _events(CHENGGUAN, "housing_construction", MONTH, calls, source="hotline_12345"))
    for e in month:
        e["village_code"] = "341122100201"
    result = model.build_topics(month, [], [], gazetteer=str(GAZETTEER), month=MONTH)
    assert [(t.title, t.events) for t in result.topics] == [("城关镇·幸福里社区楼盘烂尾集中反映", 7)]


# one land matter, told by the villagers who gathered over it
DONGFENG = ["东风村村民反映征地补偿款至今未发放，二十多人聚在村委会门口", "东风村征地补偿标准不公开，村民聚集要说法",
            "东风村几十名村民到镇政府反映征地补偿款被截留", "东风村村民称土地征收后补偿款迟迟不到位",
            "东风村部分村民聚集在工地阻止施工，要求先发征地补偿", "东风村村民反映征地补偿款分配不公，情绪激动",
            "东风村村民多次反映征地补偿问题无人处理", "东风村村民聚集村委会，要求公开征地补偿款去向"]


def _first_month() -> tuple[list, list]:
    """A county's first month, no history: Chengguan's quarrels, 120 of them spread over the month, a third
    of them also reported to the hotline and a few with a warning signal, as every month (a county's
    routine); eight Dongfeng land calls within three days, half of them gatherings, three also by hotline."""
    quarrels = _events(CHENGGUAN, "civil_dispute", MONTH, QUARRELS * 20)
    for i, e in enumerate(quarrels):
        e["signals"] = ["extreme_act"] if i % 16 == 0 else []
    echoes = [{**e, "event_id": f"hotline_12345:{e['event_id']}", "source": "hotline_12345"} for e in quarrels[::3]]
    land = _events(QINGSHI, "land_demolition", MONTH, DONGFENG, first_day=10)
    for i, e in enumerate(land):
        e["reported_at"] = dt.datetime(2025, 6, 10, 8, tzinfo=TZ) + dt.timedelta(hours=8 * i)
        e["signals"] = ["gathering"] if i % 2 else []
    land_echoes = [{**e, "event_id": f"hotline_12345:{e['event_id']}", "source": "hotline_12345"} for e in land[:3]]
    for e in echoes + land_echoes:  # the two feeds' reports of one incident
        e["incident_id"] = e["event_id"].split(":", 1)[1]
    originals = {e["incident_id"] for e in echoes + land_echoes}
    month = quarrels + echoes + land + land_echoes
    for e in month:
        if e["event_id"] in originals:
            e["incident_id"] = e["event_id"]
    scores = [score_row(CHENGGUAN, "civil_dispute", MONTH, len(quarrels) + len(echoes), 0, 0, "none"),
              score_row(QINGSHI, "land_demolition", MONTH, len(land) + len(land_echoes), 0, 0, "none")]
    return month, scores


def test_a_first_month_studies_what_stands_out_within_it_not_the_biggest_groups():
    """With no history a count measures no rise: the routine quarrels, the biggest group, are at most watched;
    the Dongfeng land matter — three days, gatherings, two feeds — comes first, in one process and in Beam."""
    month, scores = _first_month()
    result = model.build_topics(month, scores, [], gazetteer=str(GAZETTEER), month=MONTH)
    top = result.topics[0]
    assert (top.title, top.list_name, top.events) == ("青石镇·东风村补偿款发放警情多发", "study", 11)
    assert top.strength["count"] == 0 and top.strength["burst"] > 3 and top.strength["signals"] > 2
    assert top.reasons[:2] == ["本月11件（此前月份尚无数据）", "6月10日起3天内集中发生8起"]
    assert all(t.list_name == "watch" for t in result.topics if t.domain == "civil_dispute")
    assert [m["events"] for m in top.monthly_events] == [None, None, None, 11] and top.trend == "unknown"

    with beam.Pipeline(options=beam_options([])) as p:
        inputs = {"events": p | "Events" >> beam.Create(month), "history": p | "History" >> beam.Create([]),
                  "scores": p | "Scores" >> beam.Create(scores)}
        got = inputs | BuildTopics(MONTH, None, read_gazetteer_rows(str(GAZETTEER)))
        assert_that(got | beam.Map(lambda lst: [(t.rank, t.title, t.priority, t.reasons, t.monthly_events)
                                                for t in lst.topics]),
                    equal_to([[(t.rank, t.title, t.priority, t.reasons, t.monthly_events) for t in result.topics]]))


# a grievance told with a threat wherever it is told, and one whose threats come from one township
LEGACY = ["反映村里历史遗留问题多年没有解决，情绪激动说要做极端的事", "老问题一直没人管，来电人扬言不解决就喝农药",
          "当年修路占地的遗留问题至今没说法，扬言要去跳河", "厂子改制的历史遗留问题，老职工说再不管就去跳楼",
          "集体林地的老问题拖了多年，来电人称要以死相逼", "历史遗留的占地补偿没有落实，扬言要拿汽油去镇里"]
SKIPPING = ["说要进京反映家里的事，已经买好了车票", "准备到省里去反映问题，不让去就闹",
            "来电人称要去北京反映拆迁的事", "几个人商量越级去市里反映问题",
            "称县里不处理就去省里找领导", "说已经联系好人，下个月进京"]


def _first_month_of_threats() -> list:
    """A first month: in both townships every legacy grievance comes with a threat of an extreme act (how
    it is told in this county), while the threats of skipping levels come from Qingshi alone."""
    month = []
    for township in (CHENGGUAN, QINGSHI):
        month += _events(township, "petition_stability", MONTH, LEGACY, signals=["extreme_act"], every=4, tag="legacy")
        month += _events(township, "petition_stability", MONTH, SKIPPING, every=4, first_day=2, tag="skip",
                         signals=["extreme_act"] if township == QINGSHI else [])
    return month


def test_a_first_month_weighs_a_grievances_signals_against_the_other_townships():
    """With no history a grievance whose events carry a signal in every township is routine, not a surprise in
    each: Qingshi's threats to skip levels, which Chengguan's do not carry, come first, in one process and in Beam."""
    month = _first_month_of_threats()
    result = model.build_topics(month, [], [], gazetteer=str(GAZETTEER), month=MONTH)
    ranked = [(t.title, t.phrase) for t in result.topics]
    assert ranked[0][1] == "越级上访" and ranked[0][0].startswith("青石镇")
    assert {phrase for _, phrase in ranked[1:]} <= {"历史遗留问题", "越级上访"}

    with beam.Pipeline(options=beam_options([])) as p:
        inputs = {"events": p | "Events" >> beam.Create(month), "history": p | "History" >> beam.Create([]),
                  "scores": p | "Scores" >> beam.Create([])}
        got = inputs | BuildTopics(MONTH, None, read_gazetteer_rows(str(GAZETTEER)))
        assert_that(got | beam.Map(lambda lst: [(t.rank, t.title, t.priority, t.reasons) for t in lst.topics]),
                    equal_to([[(t.rank, t.title, t.priority, t.reasons) for t in result.topics]]))
