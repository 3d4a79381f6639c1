"""Ingest throughput on a synthetic 12345 export (figures for docs/notes/ingest.md, not a test),
or on a real or simulated inbox (``--inbox``: rows/s of ``run_ingest`` alone, wall and CPU).

    cd /work/main && PYTHONPATH=. python benchmarks/ingest_throughput.py --rows 50000
    PYTHONPATH=. python benchmarks/ingest_throughput.py --inbox SIM/inbox --gazetteer SIM/gazetteer.csv [--classify]

With ``--inbox`` the run has the batch job's collector thresholds (``runners.fewer_collections``).
"""
from __future__ import annotations

import argparse
import csv
import os
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from pipelines.gazetteer import Gazetteer, read_gazetteer_rows
from pipelines.ingest import run_ingest
from pipelines.read import FileReader
from pipelines.runners import fewer_collections

GAZETTEER = Path(__file__).resolve().parents[1] / "tests" / "data" / "gazetteer.csv"
HEADER = ["工单编号", "来电时间", "来电号码", "诉求人", "诉求类型", "诉求内容", "事发地址", "所属镇街", "承办单位", "办理状态", "办结时间", "满意度评价"]
PLACES = ["城关镇东关村3组", "西山乡桃园村", "东湖镇李庄村", "新华小区5栋2单元", "李庄村东头", "某某路12号", ""]
TEXTS = ["楼上住户夜间噪音扰民，联系人王小明电话13912345678", "咨询社保缴费基数", "小区物业不作为，多次反映未解决",
         "報警人稱樓上鄰居長期噪音擾民", "工资被拖欠三个月，身份证号340123199001011234", "道路破损影响出行"]


def write_export(path: Path, rows: int, encoding: str) -> None:
    rng = random.Random(7)
    start = dt.datetime(2026, 10, 1)
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(["示范县12345热线工单明细表"] + [""] * 11)
        w.writerow(HEADER)
        for i in range(rows):
            t = start + dt.timedelta(seconds=rng.randrange(30 * 86400))
            w.writerow([f"GD{i:08d}", t.strftime("%Y-%m-%d %H:%M:%S"), f"13{rng.randrange(10**9):09d}", "张三",
                        rng.choice(["咨询", "投诉", "求助"]), rng.choice(TEXTS), rng.choice(PLACES),
                        rng.choice(["城关镇", "东湖", "", "西山乡"]), "住建局", rng.choice(["已办结", "办理中"]), "", "满意"])
        w.writerow(["合计", rows] + [""] * 10)


def measure_inbox(inbox: str, gazetteer: str, beam_args: list[str], classify: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp, fewer_collections():
        wall, cpu = time.perf_counter(), time.process_time()
        result = run_ingest(inbox, gazetteer, str(Path(tmp) / "out"), b"bench-key", beam_args=beam_args,
                            classify=classify)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    totals = result.manifest["totals"]
    print(f"run_ingest{' (classified)' if classify else ''} on {inbox}: {totals['rows_read']} rows in {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({totals['rows_read'] / wall:,.0f} rows/s; load average {os.getloadavg()[0]:.1f}); "
          f"accepted {totals['accepted']}, superseded {totals['superseded']}, quarantined {totals['quarantined']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--addresses", type=int, default=100000)
    parser.add_argument("--inbox", help="measure run_ingest on this inbox instead of a synthetic export")
    parser.add_argument("--gazetteer", default=str(GAZETTEER))
    parser.add_argument("--classify", action="store_true",
                        help="with --inbox: classify the Events as the batch job's ingest does (IngestFeeds(classify=True))")
    parser.add_argument("beam_args", nargs="*", help="after --: Beam options")
    args = parser.parse_args()
    if args.inbox:
        measure_inbox(args.inbox, args.gazetteer, args.beam_args, args.classify)
        return
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox" / "hotline_12345"
        inbox.mkdir(parents=True)
        export = inbox / "export.csv"
        write_export(export, args.rows, "gbk")

        t0 = time.perf_counter()
        rows, _ = FileReader("hotline_12345").read("hotline_12345/export.csv", export.read_bytes())
        t_read = time.perf_counter() - t0
        print(f"read only (GBK CSV, {len(rows)} rows): {t_read:.2f} s, {len(rows) / t_read:,.0f} rows/s")

        gaz = Gazetteer(read_gazetteer_rows(str(GAZETTEER)))
        addresses = [random.Random(i).choice(PLACES) + "附近" * (i % 5) for i in range(args.addresses)]
        t0 = time.perf_counter()
        for a in addresses:
            gaz.resolve(texts=[(a, "address")])
        t_gaz = time.perf_counter() - t0
        print(f"gazetteer: {args.addresses} addresses in {t_gaz:.2f} s ({args.addresses / t_gaz:,.0f}/s)")

        t0 = time.perf_counter()
        result = run_ingest(str(Path(tmp) / "inbox"), str(GAZETTEER), str(Path(tmp) / "out"), b"bench-key",
                            dt.datetime(2026, 11, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))))
        t_all = time.perf_counter() - t0
        totals = result.manifest["totals"]
        print(f"run_ingest on FnApiRunner: {totals['rows_read']} rows in {t_all:.1f} s "
              f"({totals['rows_read'] / t_all:,.0f} rows/s); accepted {totals['accepted']}, "
              f"quarantined {totals['quarantined_by_reason']}")


if __name__ == "__main__":
    main()
