"""``riskwatch quality``: feed-quality checks on already-ingested data of one month."""
from __future__ import annotations

import logging
from pathlib import Path

import schemas

NAME = "quality"
HELP = ("Check one month of ingested feeds with great-expectations: data docs, per-department scorecard and data gaps "
        "in OUT/quality/YYYY-MM/. Exits 1 when a critical check (quality/policy.yaml) fails, 2 when there is no data.")
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--warehouse", required=True, help="output directory of the ingest (holds warehouse/, quarantine/, manifests/)")
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--out", help="where quality/YYYY-MM/ goes (default: --warehouse)")
    parser.add_argument("--policy", help="quality policy YAML (default: the bundled quality/policy.yaml)")
    parser.add_argument("--gazetteer", help="gazetteer CSV, to name townships in the scorecard")


def run(args, beam_args) -> int:
    from pipelines.quality import run_quality

    month_dir = Path(args.warehouse) / "warehouse" / "events" / f"month={args.month}"
    if not any(month_dir.glob("*.parquet")):
        log.error("没有找到 %s 的事件数据：%s", args.month, month_dir)
        return 2
    report, paths = run_quality(args.warehouse, args.month, args.policy, args.gazetteer, args.out)
    by_feed = {schemas.feed_contract(f)["name_zh"]: sum(x["feed"] == f for x in report.findings) for f in schemas.FEEDS}
    print(f"数据质量 {args.month}：记录 {report.rows}；问题 {by_feed}；严重 {len(report.critical)} 项；"
          f"数据缺口 {len(report.gaps)} 处；检查用时 {report.seconds:.1f} 秒")
    print(f"记分卡：{paths['scorecard_html']}  {paths['scorecard_xlsx']}\n数据文档：{paths['data_docs']}")
    return report.exit_code
