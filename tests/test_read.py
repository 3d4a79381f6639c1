import csv
import io

import apache_beam as beam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from apache_beam.testing.util import assert_that, equal_to

from pipelines.options import beam_options
from pipelines.read import FILES_TAG, FileReader, ReadFeeds, decode, discover, sniff_format


def _read(fixture_inbox, relpath):
    feed = relpath.split("/")[0]
    return FileReader(feed).read(relpath, (fixture_inbox / relpath).read_bytes())


def _errors(rows):
    return [(r["line"], r["error"][0]) for r in rows if r["error"]]


def test_utf8_csv_with_title_and_totals_rows(fixture_inbox):
    rows, info = _read(fixture_inbox, "hotline_12345/2026-10/城关片区工单.csv")
    assert (info["format"], info["encoding"], info["header_line"], info["title_rows"]) == ("csv", "utf-8", 2, 1)
    assert info["header_mapping"]["来电时间"] == "reported_at"
    assert [r["line"] for r in rows] == list(range(3, 12))
    assert rows[0]["values"]["工单编号"] == "GD20261003001"
    assert _errors(rows) == [(11, "summary_row")]
    assert info["rows_read"] == 9


def test_gbk_csv_is_detected_not_assumed(fixture_inbox):
    rows, info = _read(fixture_inbox, "hotline_12345/2026-10/东湖导出(GBK).csv")
    assert info["encoding"] == "gb18030"
    assert info["header"][:3] == ["工单号", "受理时间", "联系电话"]
    assert rows[1]["values"]["问题描述"].startswith("举报东湖镇李庄村有人非法集资")


def test_utf8_bom_csv_with_english_headers(fixture_inbox):
    rows, info = _read(fixture_inbox, "hotline_12345/english_bom.csv")
    assert info["encoding"] == "utf-8-bom"
    assert info["header"][0] == "order_id"  # the BOM is not part of the first header
    assert _errors(rows) == [(4, "malformed_row")]
    assert "比表头多1列" in rows[2]["error"][1]


def test_file_named_xlsx_that_is_csv_is_read_as_csv(fixture_inbox):
    rows, info = _read(fixture_inbox, "hotline_12345/renamed_really_csv.xlsx")
    assert (info["declared_format"], info["format"]) == ("xlsx", "csv")
    assert len(rows) == 1 and rows[0]["error"] is None


def test_file_named_csv_that_is_xlsx_is_read_as_workbook(fixture_inbox):
    rows, info = _read(fixture_inbox, "hotline_12345/really_xlsx.csv")
    assert (info["declared_format"], info["format"], info["header_line"]) == ("csv", "xlsx", 3)
    assert rows[0]["values"]["来电号码"] == 15900002222.0
    assert _errors(rows) == [(5, "summary_row")]


def test_xlsx_keeps_cell_types_and_skips_the_statistics_sheet(fixture_inbox):
    rows, info = _read(fixture_inbox, "police_110/接处警_2026-10.xlsx")
    assert info["sheets"] == ["Sheet1"] and info["skipped_sheets"] == ["统计"]
    first = rows[0]
    assert first["sheet"] == "Sheet1" and first["line"] == 4
    assert first["values"]["报警时间"].hour == 22
    assert first["values"]["经度"] == pytest.approx(117.2345)
    assert _errors(rows) == [(9, "summary_row")]


def test_jsonl_with_a_broken_line(fixture_inbox):
    rows, info = _read(fixture_inbox, "police_110/api/警情推送.jsonl")
    assert info["format"] == "jsonl"
    assert rows[0]["values"]["incident_id"] == "P-0001"
    assert _errors(rows) == [(3, "malformed_row")]


def test_mixed_encoding_rows_are_read_line_by_line(fixture_inbox):
    rows, info = _read(fixture_inbox, "hotline_12345/mixed_encoding.csv")
    assert info["encoding"] == "gb18030(mixed)"
    assert rows[1]["values"]["诉求人"] == "沈五"  # the UTF-8 row pasted into a GBK file
    assert _errors(rows) == [(4, "encoding_error")]


def test_a_pdf_named_xlsx_is_one_quarantined_row(fixture_inbox):
    rows, info = _read(fixture_inbox, "hotline_12345/工单统计.xlsx")
    assert info["format"] == "pdf"
    assert _errors(rows) == [(0, "malformed_row")]
    assert "实为pdf格式" in rows[0]["error"][1]


def test_missing_required_column_quarantines_every_row_naming_it(fixture_inbox):
    rows, info = _read(fixture_inbox, "grid/缺列模板.csv")
    assert info["missing_required"] == ["text"]
    assert _errors(rows) == [(2, "missing_field"), (3, "missing_field")]
    assert "缺少必填列“事件描述”" in rows[0]["error"][1] and "找到的列为：事件编号" in rows[0]["error"][1]


def test_header_marks_width_and_case_are_ignored():
    text = "工单编号*,ＲＥＣＥＩＶＥＤ_ＡＴ, 诉求类型（必填）,CONTENT,备注\nA1,2026-10-03 14:05,咨询,问题,x\n\n"
    rows, info = FileReader("hotline_12345").read("hotline_12345/a.csv", text.encode("utf-8"))
    assert set(info["header_mapping"].values()) == {"source_id", "reported_at", "source_category", "text"}
    assert info["unmapped_columns"] == ["备注"] and info["blank_rows"] == 1
    assert rows[0]["error"] is None


def test_excel_unicode_text_export_is_utf16_tab_separated():
    text = "工单编号\t来电时间\t诉求类型\t诉求内容\r\nA1\t2026-10-03 14:05\t咨询\t问题\r\n"
    rows, info = FileReader("hotline_12345").read("hotline_12345/a.txt", text.encode("utf-16"))
    assert (info["encoding"], info["delimiter"]) == ("utf-16", "\t")
    assert rows[0]["values"]["诉求内容"] == "问题"


@pytest.mark.parametrize("head, kind", [(b"PK\x03\x04", "xlsx"), (b"\xef\xbb\xbf{\"a\": 1}", "jsonl"),
                                        (b"<html><table>", "html"), (b"a,b\n", "csv"), (b"\x89PNG\r\n", "png")])
def test_sniff_format_by_content(head, kind):
    assert sniff_format(head) == kind


def test_decode_prefers_strict_decodes():
    assert decode("城关镇".encode("gbk")) == ("城关镇", "gb18030")
    assert decode("城关镇".encode("utf-8")) == ("城关镇", "utf-8")


def test_read_feeds_is_a_beam_stage(fixture_inbox):
    files = [f for f in discover(str(fixture_inbox)) if f.feed == "grid"]
    assert [f.relpath for f in files] == ["grid/english.jsonl", "grid/缺列模板.csv", "grid/网格事件.xlsx"]
    with beam.Pipeline(options=beam_options([])) as p:
        read = p | ReadFeeds(files, chunk_rows=4)
        assert_that(read.chunks | beam.Map(lambda chunk: (chunk[0]["file"], len({r["file"] for r in chunk}), len(chunk))),
                    equal_to([("grid/english.jsonl", 1, 1), ("grid/网格事件.xlsx", 1, 4), ("grid/网格事件.xlsx", 1, 2),
                              ("grid/缺列模板.csv", 1, 2)]), label="chunks of one file")
        assert_that(read.chunks | beam.FlatMap(lambda chunk: [(r["file"], r["line"]) for r in chunk]),
                    equal_to([("grid/english.jsonl", 1)] + [("grid/网格事件.xlsx", n) for n in range(2, 8)]
                             + [("grid/缺列模板.csv", 2), ("grid/缺列模板.csv", 3)]), label="rows")
        assert_that(read[FILES_TAG] | beam.Map(lambda i: (i["file"], i["rows_read"])),
                    equal_to([("grid/english.jsonl", 1), ("grid/网格事件.xlsx", 6), ("grid/缺列模板.csv", 2)]), label="files")


def test_discover_skips_hidden_lock_and_done_marker_files(tmp_path):
    feed = tmp_path / "hotline_12345"
    feed.mkdir()
    for name in ["工单.csv", ".工单.csv.swp", "~$工单.xlsx", "工单.csv.done", "Thumbs.db"]:
        (feed / name).write_text("x", encoding="utf-8")
    assert [f.relpath for f in discover(str(tmp_path))] == ["hotline_12345/工单.csv"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["utf-8", "gbk", "junk"]), st.sampled_from(["城关镇", "沈五", "東關", "abc", "，", ""])),
                min_size=1, max_size=12))
def test_mixed_lines_are_each_decoded_majority_encoding_first(lines):
    encoded = [text.encode(encoding) if encoding != "junk" else b"\xff\xfe\x81" + text.encode("utf-8") for encoding, text in lines]
    text, encoding = decode(b"\n".join(encoded))
    if not encoding.endswith("(mixed)"):
        return  # the whole file decodes strictly in one encoding
    first = encoding.removesuffix("(mixed)")
    order = [first, "gb18030" if first == "utf-8" else "utf-8"]

    def one(line: bytes) -> str:
        for name in order:
            try:
                return line.decode(name)
            except UnicodeDecodeError:
                pass
        return line.decode(first, errors="replace")

    assert text.split("\n") == [one(line) for line in encoded]
    votes = {name: sum(_decodes(line, name) for line in encoded) for name in order}
    assert votes[first] >= votes[order[1]]


def _decodes(line: bytes, encoding: str) -> bool:
    try:
        line.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def test_spreadsheet_rows_keep_their_csv_line_as_raw(tmp_path):
    import xlsxwriter

    path = tmp_path / "orders.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("工单")
    rows = [["工单编号", "来电时间", "诉求内容", "事发地址"],
            ["GD1", "2026-10-03 14:05:00", '他说"楼上,很吵"\n第二行', "东关村"],
            ["GD2", 46298.5, "", "城关镇,3组"]]
    for r, cells in enumerate(rows):
        for c, value in enumerate(cells):
            sheet.write(r, c, value)
    book.close()
    read, _ = FileReader("hotline_12345").read("hotline_12345/orders.xlsx", path.read_bytes())

    def line(cells: list[str]) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(cells)
        return out.getvalue()

    # one writer serves the whole sheet: no row's text may leak into the next one's
    assert [r["raw"] for r in read] == [line(rows[1]), line(["GD2", "46298.5", "", "城关镇,3组"])]
    assert read[0]["raw"] == 'GD1,2026-10-03 14:05:00,"他说""楼上,很吵""\n第二行",东关村'
