import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.gazetteer import Gazetteer, _key, read_gazetteer_rows

COUNTY, CHENGGUAN, DONGHU, XISHAN = "341122000000", "341122100000", "341122101000", "341122200000"
DONGGUAN, XINHUA, TAOYUAN = "341122100001", "341122100002", "341122200002"


@pytest.fixture(scope="module")
def gaz(gazetteer_path):
    return Gazetteer.from_csv(gazetteer_path)


def test_code_wins_and_fills_every_level(gaz):
    r = gaz.resolve(codes=["341122100001001"], names=["西山乡"])
    assert (r.county_code, r.township_code, r.village_code, r.grid_code, r.by) == (
        COUNTY, CHENGGUAN, DONGGUAN, "341122100001001", "code")


def test_unknown_grid_code_resolves_through_its_village_prefix(gaz):
    r = gaz.resolve(codes=["341122100001999"])
    assert (r.township_code, r.village_code, r.grid_code, r.by) == (CHENGGUAN, DONGGUAN, "341122100001999", "code")


def test_name_then_alias(gaz):
    assert gaz.resolve(names=["东湖镇"]).by == "name"
    alias = gaz.resolve(names=["东湖"])
    assert (alias.township_code, alias.by) == (DONGHU, "alias")


def test_name_cell_refined_by_a_village_in_the_address(gaz):
    r = gaz.resolve(names=["城关镇"], texts=[("城关镇新华社区5栋", "address")])
    assert (r.township_code, r.village_code, r.by) == (CHENGGUAN, XINHUA, "name")


def test_unambiguous_village_in_address_derives_its_township(gaz):
    r = gaz.resolve(texts=[("西山乡桃园村3组", "address")])
    assert (r.township_code, r.village_code, r.by) == (XISHAN, TAOYUAN, "address")
    r = gaz.resolve(texts=[("桃园村村委会旁", "address")])
    assert (r.township_code, r.village_code) == (XISHAN, TAOYUAN)


def test_village_shared_by_two_townships_is_not_guessed(gaz):
    r = gaz.resolve(texts=[("李庄村东头", "address")])
    assert (r.township_code, r.village_code, r.by) == (None, None, "unresolved")
    assert r.county_code == COUNTY  # the only county: certain


def test_township_in_the_text_disambiguates_the_shared_village(gaz):
    r = gaz.resolve(texts=[("东湖镇李庄村", "address")])
    assert (r.township_code, r.village_code) == (DONGHU, "341122101001")


def test_police_station_resolves_through_the_township_alias(gaz):
    r = gaz.resolve(texts=[(None, "address"), ("城关派出所", "handling_unit")])
    assert (r.township_code, r.by) == (CHENGGUAN, "handling_unit")


def test_address_is_tried_before_the_station(gaz):
    r = gaz.resolve(texts=[("西山乡桃园村", "address"), ("城关派出所", "handling_unit")])
    assert (r.township_code, r.by) == (XISHAN, "address")


def test_nothing_known_stays_unresolved(gaz):
    r = gaz.resolve(codes=["999999999999"], names=["火星镇"], texts=[("某某路12号", "address")])
    assert (r.township_code, r.village_code, r.by, r.grid_code) == (None, None, "unresolved", "999999999999")


def test_longest_term_wins(gaz):
    assert gaz.find_terms("城关街道东关村第一网格") == ["城关街道", "东关村第一网格"]


def test_gazetteer_with_missing_columns_is_rejected(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("code,name\n1,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns level, parent_code, aliases"):
        read_gazetteer_rows(str(path))


_PLACES = ["城关镇", "城关", "东关村", "新华村", "西山乡", "桃园村", "东湖镇", "东湖", "城关派出所", "李庄", "第一网格", "3组", "附近", " ", "　"]
_place_texts = st.lists(st.sampled_from(_PLACES), max_size=4).map("".join) | st.none()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(["341122100001001", "341122100001999", "341122", "", None]), max_size=1),
                          st.lists(_place_texts, max_size=1), st.lists(_place_texts, min_size=3, max_size=3)),
                min_size=1, max_size=30))
def test_memoised_resolution_equals_a_fresh_gazetteers(gazetteer_path, requests):
    rows = read_gazetteer_rows(gazetteer_path)
    warm = Gazetteer(rows)
    for codes, names, texts in requests + requests:
        labelled = list(zip(texts, ("address", "handling_unit", "text")))
        assert warm.resolve(codes, names, labelled) == Gazetteer(rows).resolve(codes, names, labelled)


@given(st.text())
def test_the_lookup_key_of_a_lookup_key_is_itself(text):
    # the code-lookup memo is keyed by the text as written and by already-keyed names alike
    assert _key(_key(text)) == _key(text)
