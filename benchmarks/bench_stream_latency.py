"""Latency from a file landing in the inbox to its warning being written (embedded stream job).

A county's day of records (~1M people send ~2,700 events a day; the default puts the whole day in
one 12345 file) lands with a ``.done`` marker after a first day is already in the warehouse; the
script times one cycle: ingest, classify, link, windows, scoring, suppression, alerts.jsonl.

    PYTHONPATH=. python benchmarks/bench_stream_latency.py [--records 2700]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from pipelines.alert_sinks import AlertStore
from pipelines.stream import EmbeddedConfig, EmbeddedStream
from pipelines.warn import WarnPolicy
from pipelines.windows import FiringPolicy

HEADER = "工单编号,来电时间,来电号码,诉求人,诉求类型,诉求内容,事发地址,所属镇街,承办单位,办理状态,办结时间,满意度评价"
TEXTS = ["咨询社保缴费基数{n}", "小区路灯损坏{n}号楼", "楼上噪音扰民{n}室", "拖欠工资{n}个月未发", "拆迁补偿款未到位{n}户",
         "物业不作为{n}栋电梯坏", "门口垃圾堆放{n}天", "被电信诈骗{n}千元"]
TOWNS = ["城关镇", "东湖镇", "西山乡"]
GAZETTEER = Path(__file__).resolve().parent.parent / "tests" / "data" / "gazetteer.csv"


def day_file(path: Path, day: int, records: int, rng: random.Random) -> None:
    lines = [HEADER]
    for n in range(records):
        text = rng.choice(TEXTS).format(n=rng.randint(1, 99)) + f"（工单{day}-{n}）"
        lines.append(f"GD{day:02d}{n:05d},2026-10-{day:02d} {n * 86399 // records // 3600:02d}:"
                     f"{n * 86399 // records % 3600 // 60:02d}:00,138{rng.randint(0, 10**8):08d},某,投诉,{text},"
                     f"某地,{rng.choice(TOWNS)},某单位,办理中,,")
    lines.append(f"GD{day:02d}99999,2026-10-{day:02d} 20:00:00,13800009999,李四,投诉,"
                 f"三十多名工人因工资拖欠在工地门口聚集拉横幅,工地,城关镇,某单位,办理中,,")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    Path(str(path) + ".done").write_text("")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2700)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        inbox, out = Path(tmp) / "inbox", Path(tmp) / "out"
        policy = WarnPolicy(FiringPolicy(streaming=False))
        job = EmbeddedStream(EmbeddedConfig(str(inbox), str(GAZETTEER), str(out), b"bench-key", policy,
                                            stable_seconds=5))
        day_file(inbox / "hotline_12345" / "day01.csv", 1, args.records, rng)
        t0 = time.perf_counter()
        job.cycle()
        print(f"day 1 (empty warehouse): {args.records + 1} records, {time.perf_counter() - t0:.1f} s")
        landed = time.perf_counter()
        day_file(inbox / "hotline_12345" / "day02.csv", 2, args.records, rng)
        result = job.cycle()
        latency = time.perf_counter() - landed
        raised = AlertStore(out).raised()
        print(f"day 2: {result.events} events, {len(result.alerts)} new warnings "
              f"({len(raised)} in total); landing → warning written: {latency:.1f} s (target < 60 s)")


if __name__ == "__main__":
    main()
