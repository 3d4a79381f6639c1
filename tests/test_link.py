"""Linking records of one happening into incidents, in a real Beam pipeline."""
import datetime as dt
import json
import math
import subprocess
import sys
import zoneinfo
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from pipelines import link
from pipelines.options import beam_options
from pipelines.packed_events import PackedEvent, PackedRows

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2025, 3, 31, 22, 0, tzinfo=TZ)


def event(i, source, hours, text, township="330100001000", village=None, domain="public_order", caller=None,
          lon=None, lat=None):
    return {"event_id": f"{source}:{i}", "source": source, "reported_at": T0 + dt.timedelta(hours=hours),
            "text": text, "township_code": township, "village_code": village, "domain": domain,
            "caller_key": caller, "lon": lon, "lat": lat}


FIGHT = [
    event(1, "police_110", 0, "幸福里小区门口有人打架，一人头部受伤，报警人[手机号]"),
    event(2, "hotline_12345", 3, "市民来电反映幸福里小区门口昨晚有人打架斗殴，很吵，请相关部门处理"),
    event(3, "grid", 12, "网格员巡查发现幸福里小区门口发生打架事件，已劝离"),
]
OTHER = [
    # same hour, same kind of text, another township
    event(4, "police_110", 0.1, "幸福里小区门口有人打架，多人围观", township="330100002000"),
    # same township and feed boilerplate, different happening
    event(5, "hotline_12345", 1, "市民来电反映锦绣花园小区物业不作为，请相关部门处理"),
    # same happening text but three days later: a new incident
    event(6, "police_110", 80, "幸福里小区门口有人打架，一人受伤"),
]


def test_cross_feed_records_of_one_fight_share_the_first_records_id_across_month_end():
    expected = [("police_110:1", "police_110:1"), ("hotline_12345:2", "police_110:1"), ("grid:3", "police_110:1"),
                ("police_110:4", "police_110:4"), ("hotline_12345:5", "hotline_12345:5"),
                ("police_110:6", "police_110:6"), ("hotline_12345:7", "hotline_12345:7")]
    none_domain = event(7, "hotline_12345", 1, "咨询幸福里小区门口打架的处理结果", domain="none")
    with beam.Pipeline(options=beam_options([])) as p:
        out = (p | beam.Create(FIGHT + OTHER + [none_domain]) | link.LinkIncidents()
               | beam.Map(lambda e: (e["event_id"], e["incident_id"])))
        assert_that(out, equal_to(expected))


def test_records_keep_their_fields_and_each_flows_through_once():
    with beam.Pipeline(options=beam_options([])) as p:
        out = p | beam.Create(FIGHT + OTHER) | link.LinkIncidents()
        assert_that(out | beam.Map(lambda e: (e["event_id"], e["text"])),
                    equal_to([(e["event_id"], e["text"]) for e in FIGHT + OTHER]))


def test_repeat_call_by_same_caller_links_with_a_looser_text_match():
    first = event(1, "hotline_12345", 0, "东风村张某家宅基地被邻居占了，要求村里处理", domain="civil_dispute", caller="k1")
    again = event(2, "hotline_12345", 20, "再次来电，宅基地被占的事还是没人管", domain="civil_dispute", caller="k1")
    stranger = event(3, "hotline_12345", 21, "再次来电，宅基地被占的事还是没人管", domain="civil_dispute", caller="k2")
    cfg = link.link_config()
    a, b = link.weighted_ngrams([first["text"], again["text"]], 2, cfg["boilerplate"])
    assert cfg["same_caller_similarity"] <= link.similarity(a, b) < cfg["min_similarity"]
    ids = link.link_group([first, again])
    assert ids["hotline_12345:2"] == "hotline_12345:1"
    ids = link.link_group([first, stranger])
    assert ids["hotline_12345:3"] == "hotline_12345:3"


def test_coordinates_far_apart_are_not_linked():
    a = event(1, "police_110", 0, "幸福里小区门口有人打架", lon=120.10, lat=30.20)
    b = event(2, "grid", 1, "幸福里小区门口有人打架", lon=120.20, lat=30.30)  # ~14 km away
    c = event(3, "grid", 2, "幸福里小区门口有人打架", lon=120.101, lat=30.201)
    ids = link.link_group([a, b, c])
    assert ids == {"police_110:1": "police_110:1", "grid:2": "grid:2", "grid:3": "police_110:1"}


def test_masked_tokens_and_boilerplate_do_not_make_records_similar():
    cfg = link.link_config()
    a, b = link.weighted_ngrams(["市民来电反映，[手机号]，[姓名]，请相关部门处理，路灯坏了",
                                 "市民来电反映，[手机号]，[姓名]，请相关部门处理，狗叫扰民"], 2, cfg["boilerplate"])
    assert link.similarity(a, b) < cfg["min_similarity"]
    assert "手机" not in a


def test_pairwise_quality_against_truth():
    predicted = {"a": "a", "b": "a", "c": "c", "d": "d"}
    truth = {"a": "k1", "b": "k1", "c": "k1", "d": None}
    q = link.pairwise_quality(predicted, truth)
    assert (q["precision"], q["recall"]) == (1.0, round(1 / 3, 4))


def _reference_ngrams(text, n, boilerplate):
    """The per-text definition of a text's n-grams (what ``link.Ngrams`` computes for all at once)."""
    cleaned = link._MASKED.sub(" ", text or "")
    for phrase in boilerplate:
        cleaned = cleaned.replace(phrase, " ")
    grams = set()
    for chunk in link._NOISE.sub(" ", cleaned).split():
        if len(chunk) < n:
            grams.add(chunk)
        grams.update(chunk[i:i + n] for i in range(len(chunk) - n + 1))
    return grams


_BOILERPLATE = ["市民来电反映", "来电反映", "请相关部门处理", "相关部门", "报警称"]
# Pieces real texts are made of: Chinese, masked tokens, boilerplate, ASCII, full-width and
# control characters, underscores, emoji, separators a joined text might use.
_PIECES = st.one_of(
    st.sampled_from(_BOILERPLATE + ["[手机号]", "【地址】", "（姓名）", "<身份证号>", "***", "_", "\x00", "\x01", "\n", "🔥"]),
    st.text(alphabet="幸福里小区门口打架吵闹路灯坏了东关村3组ＡＢ１２abcXYZ，。、！？ 　-_()（）[]【】", max_size=12),
)
_TEXTS = st.lists(st.one_of(st.none(), st.lists(_PIECES, max_size=6).map("".join)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(texts=_TEXTS, n=st.integers(1, 3))
def test_ngrams_of_all_texts_at_once_are_each_texts_own(texts, n):
    grams = link.Ngrams(texts, n, _BOILERPLATE)
    vocabulary = grams.vocabulary()
    held = [set() for _ in texts]
    for row, column in zip(grams.rows.tolist(), grams.columns.tolist()):
        held[row].add(vocabulary[column])
    expected = [_reference_ngrams(t, n, _BOILERPLATE) for t in texts]
    assert held == expected
    assert vocabulary == sorted(set().union(*expected))
    assert grams.counts().tolist() == [sum(g in e for e in expected) for g in vocabulary]


@settings(max_examples=100, deadline=None)
@given(texts=_TEXTS, reach=st.integers(1, 12), floor=st.sampled_from([0.0, 0.12, 0.5]))
def test_candidate_similarities_are_the_similarity_of_each_pair_in_reach(texts, reach, floor):
    sets = [_reference_ngrams(t, 2, _BOILERPLATE) for t in texts]
    vectors = [{g: math.log((20 + len(texts)) / (1 + sum(g in s for s in sets))) for g in sorted(grams)}
               for grams in sets]
    assert [list(v.items()) for v in link.weighted_ngrams(texts, 2, _BOILERPLATE)] == [list(v.items()) for v in vectors]
    grams = link.Ngrams(texts, 2, _BOILERPLATE)
    weighted = grams.weighted(len(texts), grams.counts(), 20)
    cutoffs = [max(0, i - reach) for i in range(len(texts))]
    i, j, sim = link.candidate_similarities(weighted, cutoffs, floor)
    got = sorted(zip(i.tolist(), j.tolist(), sim.tolist()))
    expected = [(a, b, s) for a in range(len(texts)) for b in range(cutoffs[a], a)
                for s in [link.similarity(vectors[a], vectors[b])] if s >= floor and set(vectors[a]) & set(vectors[b])]
    assert got == expected  # the same floats, not close ones: a threshold must not flip


def test_a_record_joins_its_most_similar_earlier_records_incident_not_the_first_similar_enough():
    a = event(1, "hotline_12345", 0, "甲乙丙丁戊己子丑", village="v1")
    b = event(2, "grid", 1, "丙丁戊己庚辛壬癸", village="v2")
    c = event(3, "police_110", 2, "丙丁戊己庚辛壬")
    cfg = link.link_config()
    va, vb, vc = link.weighted_ngrams([a["text"], b["text"], c["text"]], 2)
    assert link.similarity(va, vb) < cfg["other_village_similarity"]  # a and b: two incidents
    assert cfg["min_similarity"] <= link.similarity(vc, va) < link.similarity(vc, vb)
    assert link.link_group([a, b, c]) == {"hotline_12345:1": "hotline_12345:1", "grid:2": "grid:2",
                                          "police_110:3": "grid:2"}


def test_groups_without_texts_link_nothing():
    assert link.link_group([]) == {}
    blank = [event(1, "grid", 0, None), event(2, "grid", 1, "，。！"), event(3, "grid", 2, "[手机号]")]
    assert link.link_group(blank) == {e["event_id"]: e["event_id"] for e in blank}


_SIMILARITIES = """
import json
from pipelines import link
texts = json.loads(input())
vectors = link.weighted_ngrams(texts, 2)
print(json.dumps([repr(link.similarity(a, b)) for a in vectors for b in vectors]))
"""


def test_similarities_do_not_depend_on_the_processs_hash_seed():
    # Runs are separate processes (cron, backfill), each with its own string hash seed; a float sum
    # taken in set order differs in the last bits, enough to flip a tie or a threshold.
    texts = [f"城关镇新华社区{i}号楼下烧烤店油烟噪音扰民到深夜，多次投诉无人处理，第{i}次反映" for i in range(12)]
    texts += ["东关村3组两户村民因宅基地边界发生争执，双方推搡，现场有人受伤", "新华小区5栋电动车楼道充电起火隐患"]
    runs = {seed: subprocess.run([sys.executable, "-c", _SIMILARITIES], input=json.dumps(texts), text=True,
                                 capture_output=True, check=True, cwd=Path(__file__).parents[1],
                                 env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).parents[1])}).stdout
            for seed in ("1", "2", "3")}
    assert runs["1"] and runs["1"] == runs["2"] == runs["3"]


def _month_of_records():
    """A township's March: daily look-alike complaints, a fight on the evening of the 31st, and
    April's first hours with two more reports of that fight and an unrelated one."""
    places = ["锦绣花园", "东关村3组", "新华社区", "菜市场", "城关中学"]
    troubles = ["夜间烧烤油烟扰民", "门口垃圾堆放无人清运", "路灯坏了", "电动车楼道充电", "噪音扰民到深夜"]
    march = [{"event_id": f"hotline_12345:{d:02d}{k}", "source": "hotline_12345",
              "reported_at": dt.datetime(2025, 3, d, 8 + 3 * k, tzinfo=TZ), "text": places[(d + k) % 5] + troubles[(d * k) % 5],
              "township_code": "330100001000", "village_code": None, "domain": "public_order", "caller_key": None,
              "lon": None, "lat": None} for d in range(1, 32) for k in range(4)]
    march += FIGHT[:1]
    april = FIGHT[1:] + [event(8, "grid", 5, "锦绣花园电动车楼道充电隐患")]
    return march, april


def test_a_months_links_do_not_depend_on_the_next_months_first_hours():
    march, april = _month_of_records()
    # Two reports of one quarrel on the 31st; April's first hours bring other troubles of the same
    # building, whose words would weigh less in March's texts if April's records counted in its idf.
    quarrel = [event(20, "police_110", -3, "幸福里小区门口有人打架斗殴受"),
               event(21, "grid", -2, "幸福里小区门口两人吵架推搡，网格员到场劝离，已调解完毕")]
    same_building = [event(30 + k, "hotline_12345", 3 + k, "幸福里小区门口路灯坏了" if k % 2 else "幸福里小区门口停水")
                     for k in range(4)]
    alone = link.link_group(march + quarrel)
    with_guests = link.link_group(march + quarrel, guests=april + same_building)
    assert {i: with_guests[i] for i in alone} == alone
    assert with_guests["grid:21"] == "police_110:20"
    assert link.link_group(march + quarrel + same_building)["grid:21"] == "grid:21"  # April in the idf


def _month_with_a_common_building():
    """As ``_month_of_records``, with a building whose name is common in March but rare in its last
    two days: weighed by those days alone, a manhole report of the 31st and a water cut of April
    1st would look alike."""
    march, april = _month_of_records()
    building = [{**event(100 + k, "hotline_12345", 0, "幸福里小区门口" + trouble),
                 "reported_at": dt.datetime(2025, 3, 1 + k % 25, 15, tzinfo=TZ)}
                for k, trouble in enumerate(["垃圾成堆", "路面破损", "共享单车乱停", "广告乱贴", "积水"] * 10)]
    march += building + [event(40, "hotline_12345", -1, "幸福里小区门口井盖丢了")]
    april += [event(41, "grid", 4, "幸福里小区门口停水了")]
    return march, april


def test_the_last_hours_with_the_months_frequencies_take_the_same_guests_as_the_whole_month():
    march, april = _month_with_a_common_building()
    whole = link.link_group(march, guests=april)
    span = dt.timedelta(hours=link.link_config()["max_span_hours"])
    last_hours = [e for e in march if e["reported_at"] >= dt.datetime(2025, 4, 1, tzinfo=TZ) - 2 * span]
    keep = {e["event_id"]: whole[e["event_id"]] for e in last_hours}
    [frequencies] = _frequencies(march).values()
    part = link.link_group(last_hours, guests=april, keep=keep, frequencies=frequencies)
    assert part == {i: whole[i] for i in part} and len(part) == len(last_hours) + len(april)
    assert whole["grid:41"] == "grid:41"
    assert link.link_group(last_hours, guests=april, keep=keep)["grid:41"] == "hotline_12345:40"


def test_a_month_that_keeps_its_links_takes_the_next_months_first_hours_as_when_relinked():
    """What the batch job's monthly run does: March is stored, only its last two days are read
    (links kept) with March's frequencies; April's records end in the same incidents."""
    march, april = _month_with_a_common_building()
    span = dt.timedelta(hours=link.link_config()["max_span_hours"])
    cut = dt.datetime(2025, 4, 1, tzinfo=TZ) - 2 * span
    march_ids = {e["event_id"] for e in march}
    with beam.Pipeline(options=beam_options([])) as p:
        whole = p | "Whole" >> beam.Create(march + april) | "LinkWhole" >> link.LinkIncidents()
        stored = (whole | "StoredMarch" >> beam.Filter(lambda e: e["event_id"] in march_ids and e["reported_at"] >= cut)
                  | "Keep" >> beam.Map(lambda e: {**e, link.KEEP_INCIDENT: True}))
        frequencies = p | "Frequencies" >> beam.Create(list(_frequencies(march).items()))
        part = ((stored, p | "April" >> beam.Create(april)) | beam.Flatten()
                | "LinkPart" >> link.LinkIncidents(frequencies=frequencies))
        joined = ({"whole": whole | "W" >> beam.Map(lambda e: (e["event_id"], e["incident_id"])),
                   "part": part | "P" >> beam.Map(lambda e: (e["event_id"], e["incident_id"]))}
                  | beam.CoGroupByKey()
                  | beam.FlatMapTuple(lambda i, got: [(i, got["part"] == got["whole"])] if got["part"] else []))
        expected = [e["event_id"] for e in march if e["reported_at"] >= cut] + [e["event_id"] for e in april]
        assert_that(joined, equal_to([(i, True) for i in expected]))


def _frequencies(events: list[dict]) -> dict:
    """``link.table_frequencies`` of test records, as the batch job reads them from the warehouse."""
    return link.table_frequencies(pa.Table.from_pylist([_whole(e) for e in events], schema=schemas.event_arrow_schema()))


def _whole(e: dict) -> dict:
    """A test record as a whole Event (every field of the warehouse's layout)."""
    required = {"source_id": e["event_id"], "ingested_at": T0, "batch_id": "b"}
    return {f["name"]: e.get(f["name"], required.get(f["name"])) for f in schemas.event_fields()}


# Records around March's end, on the county clock: April's first hours (hours 2–12 after T0) also
# go to March's groups, as guests; a township-less record, one of domain none, and a UTC evening
# that is already April 1st in the county.
AROUND_MONTH_END = [_whole(e) for e in FIGHT + OTHER + [
    event(7, "hotline_12345", 1, "咨询幸福里小区门口打架的处理结果", domain="none"),
    event(8, "grid", 2.5, "幸福里小区门口有人打架", township=None),
    {**event(10, "hotline_12345", 0, "幸福里小区门口打架又来了"),
     "reported_at": dt.datetime(2025, 3, 31, 16, 30, tzinfo=dt.timezone.utc).astimezone(TZ)},
]]


def test_stored_rows_are_keyed_as_each_of_their_events_would_be():
    span = link.link_config()["max_span_hours"]
    keyer = link._KeyByTownshipMonth(span)
    keyer.setup()
    packed = PackedEvent()
    one_by_one = sorted((key, role, packed.unpack(value)["event_id"])
                        for e in AROUND_MONTH_END for key, (role, value) in keyer.process(e))
    table = pa.Table.from_pylist(AROUND_MONTH_END, schema=schemas.event_arrow_schema())
    rows, in_tables = PackedRows(), []
    for key, (role, value) in link.KeyRowsByTownshipMonth(span).keyed(table.filter(link.linkable_rows(table)),
                                                                      (("mark", 1),)):
        events = rows.unpack_all([value])
        assert all(e["mark"] == 1 for e in events)
        in_tables += [(key, role.replace("_rows", ""), e["event_id"]) for e in events]
    assert sorted(in_tables) == one_by_one
    assert ("330100001000", "2025-04") in {key for key, _, _ in one_by_one}
    assert (("", "2025-03"), "guest", "grid:8") in one_by_one


def test_events_linked_from_tables_end_as_when_linked_one_by_one():
    """What the batch job's monthly run does with the stored months: their Events that need linking
    reach the link groups as tables (``groups``), the others as Events."""
    table = pa.Table.from_pylist(AROUND_MONTH_END, schema=schemas.event_arrow_schema())
    linkable = link.linkable_rows(table)
    groups = list(link.KeyRowsByTownshipMonth(link.link_config()["max_span_hours"]).keyed(table.filter(linkable)))
    others = [e for e, needs in zip(AROUND_MONTH_END, linkable.to_pylist()) if not needs]
    assert [e["event_id"] for e in others] == ["hotline_12345:7"]
    with beam.Pipeline(options=beam_options([])) as p:
        each = p | "All" >> beam.Create(AROUND_MONTH_END) | "LinkEach" >> link.LinkIncidents()
        tables = (p | "Others" >> beam.Create(others)
                  | "LinkTables" >> link.LinkIncidents(groups=p | "Groups" >> beam.Create(groups)))
        joined = ({"each": each | "E" >> beam.Map(lambda e: (e["event_id"], sorted(e.items(), key=str))),
                   "tables": tables | "T" >> beam.Map(lambda e: (e["event_id"], sorted(e.items(), key=str)))}
                  | beam.CoGroupByKey()
                  | beam.MapTuple(lambda i, got: (i, len(got["tables"]) == 1 and got["tables"] == got["each"])))
        assert_that(joined, equal_to([(e["event_id"], True) for e in AROUND_MONTH_END]), label="Same")
        incidents = tables | "Incidents" >> beam.Map(lambda e: (e["event_id"], e["incident_id"]))
        # April's first-hours calls joined March 31st's fight (as guests of March's group).
        assert_that(incidents | beam.Filter(lambda kv: kv[0] in ("grid:3", "hotline_12345:2")),
                    equal_to([("grid:3", "police_110:1"), ("hotline_12345:2", "police_110:1")]), label="AcrossMonthEnd")


def test_a_months_frequencies_count_its_linkable_records_and_the_records_holding_each_ngram():
    march, april = _month_with_a_common_building()
    frequencies = _frequencies(march + april + [{**OTHER[0], "domain": "none"}])
    records, counts = frequencies[("330100001000", "2025-03")]
    assert records == len(march)
    # "幸福里小区门口": 50 building complaints, the lost manhole cover and the fight; in no other March text
    assert counts["幸福"] == counts["小区"] == 52
    assert counts["垃圾"] == sum("垃圾" in e["text"] for e in march)
    assert set(frequencies) == {("330100001000", "2025-03"), ("330100001000", "2025-04")}
    april_records, april_counts = frequencies[("330100001000", "2025-04")]
    assert april_records == len(april)
    # masked tokens and boilerplate ("市民来电反映…请相关部门处理") are not n-grams
    assert "手机" not in counts and "来电" not in april_counts and "部门" not in april_counts
    assert april_counts["打架"] == 2
