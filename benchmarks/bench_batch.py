"""Wall time, events per second and peak memory of `riskwatch batch`, next to the pandas reference.

Both run as child processes on the same files; peak memory is the largest resident set of the
child's whole process tree (Beam and Dask start helpers), sampled every 0.2 s with psutil.

    riskwatch simulate --out SIM --start 2024-10 --months 13 --population 1000000 --seed 11
    PYTHONPATH=. python benchmarks/bench_batch.py --sim SIM --month 2025-10             # county month
    PYTHONPATH=. python benchmarks/bench_batch.py --sim SIM --from 2024-11 --to 2025-10 --no-reference  # year
    PYTHONPATH=. python benchmarks/bench_batch.py --sim SIM --month 2025-10 -- --runner=...  # other runner
    PYTHONPATH=. python benchmarks/bench_batch.py --sim SIM --month 2025-10 --with-history --no-reference

``--with-history``: the monthly cron case. The inbox is copied without the target month's files
(those whose name holds ``YYYY-MM``); a first run over it (the previous month, i.e. the history
backfilled in one run) builds the warehouse; then the month's files arrive and ``riskwatch batch
--month`` runs incrementally. Both runs are measured. ``--check`` adds a ``--full`` run of the
month over the whole inbox and prints whether events, tallies and the month's scores are equal.

Prints one ``key=value`` line per run (``pipeline_s``: the Beam pipeline; ``report_s``: quality,
topics and report after it) and the ratio RiskWatch / reference.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCH_KEY = "riskwatch-benchmark-key"


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd`; wall seconds, CPU seconds (user + system, its process tree), peak RSS of its
    process tree (MiB), exit code and output tail. CPU seconds are the figure to compare when other
    jobs share the machine."""
    started, cpu_before = time.perf_counter(), _children_cpu()
    process = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        root = psutil.Process(process.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0].decode("utf-8", errors="replace")
    stop.set()
    sampler.join()
    return {"wall_s": round(time.perf_counter() - started, 2), "cpu_s": round(_children_cpu() - cpu_before, 2),
            "peak_mib": round(peak / 2**20), "exit": process.returncode, "output": output}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env() -> dict:
    env = dict(os.environ, RISKWATCH_HMAC_KEY=BENCH_KEY)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_batch(sim: Path, out: Path, months: list[str], beam_args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "jobs.cli", "batch", "--inbox", str(sim / "inbox"),
           "--gazetteer", str(sim / "gazetteer.csv"), "--out", str(out), *months, *beam_args]
    figures = run_measured(cmd, _env())
    manifests = sorted((out / "manifests").glob("batch-*.json"), key=lambda p: p.stat().st_mtime)
    if figures["exit"] == 0 and manifests:
        manifest = json.loads(manifests[-1].read_text(encoding="utf-8"))
        totals = manifest["totals"]
        figures.update(rows_read=totals["rows_read"], accepted=totals["accepted"], read=manifest.get("read"),
                       pipeline_s=manifest.get("pipeline_seconds"),
                       report_s=round(sum(m["seconds"] for m in manifest.get("months_done", [])), 2))
        figures["events_per_s"] = round(totals["accepted"] / figures["wall_s"])
    return figures


def run_reference(sim: Path, month: str, out: Path) -> dict:
    cmd = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "reference_pandas.py"), "--inbox", str(sim / "inbox"),
           "--gazetteer", str(sim / "gazetteer.csv"), "--month", month, "--out", str(out / "reference_scores.parquet")]
    figures = run_measured(cmd, _env())
    for line in figures["output"].splitlines():
        if line.startswith("read_s="):
            figures.update(dict(kv.split("=", 1) for kv in line.split()))
    if "events" in figures:
        figures["events_per_s"] = round(int(figures["events"]) / figures["wall_s"])
    return figures


def previous_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def copy_inbox(source: Path, target: Path, keep) -> int:
    """Copy the inbox files for which ``keep(path)`` holds, modification times included."""
    copied = 0
    for path in sorted(source.rglob("*")):
        if path.is_file() and keep(path):
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.relative_to(source))
            copied += 1
    return copied


def run_with_history(sim: Path, month: str, out: Path, beam_args: list[str]) -> tuple[dict, dict]:
    """The history backfilled in one run without ``month``'s files, then ``month`` incrementally."""
    inbox = out / "sim"
    copy_inbox(sim / "inbox", inbox / "inbox", lambda p: month not in p.name)
    shutil.copy2(sim / "gazetteer.csv", inbox / "gazetteer.csv")
    history = run_batch(inbox, out / "riskwatch", ["--month", previous_month(month)], beam_args)
    copy_inbox(sim / "inbox", inbox / "inbox", lambda p: month in p.name)
    monthly = run_batch(inbox, out / "riskwatch", ["--month", month], beam_args)
    return history, monthly


def same_warehouse(a: Path, b: Path, month: str) -> dict:
    """Do two runs' warehouses hold the same events and tallies, and the same scores for ``month``
    (as rows, not bytes)?"""
    import pyarrow.parquet as pq

    def rows(root: Path, folder: str) -> list:
        found = [json.dumps(r, sort_keys=True, default=str, ensure_ascii=False)
                 for path in sorted((root / "warehouse" / folder).rglob("*.parquet")) for r in pq.read_table(path).to_pylist()]
        return sorted(found)

    folders = {"events": "events", "tallies": "tallies", "scores": f"scores/month={month}"}
    return {f"same_{name}": rows(a, folder) == rows(b, folder) for name, folder in folders.items()}


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _print(name: str, figures: dict) -> None:
    shown = {k: v for k, v in figures.items() if k != "output"}
    shown["load_average"] = load_average()
    print(name, " ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
    if figures.get("exit"):
        print(figures["output"][-3000:], file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", required=True, type=Path, help="a `riskwatch simulate` output folder")
    parser.add_argument("--month", help="target month (history: the 12 months before, read from the same inbox)")
    parser.add_argument("--from", dest="first")
    parser.add_argument("--to", dest="last")
    parser.add_argument("--out", type=Path, default=None, help="output root (default: a temporary folder)")
    parser.add_argument("--no-reference", action="store_true", help="skip the pandas reference")
    parser.add_argument("--with-history", action="store_true",
                        help="build the warehouse without --month's files first, then run --month incrementally")
    parser.add_argument("--check", action="store_true",
                        help="with --with-history: also run --month over the whole inbox into another folder "
                        "(--full) and compare events, tallies and scores")
    parser.add_argument("beam_args", nargs="*", help="after --: Beam options for riskwatch batch")
    args = parser.parse_args(argv)
    if bool(args.month) == bool(args.first and args.last):
        parser.error("give --month, or --from and --to")
    months = ["--month", args.month] if args.month else ["--from", args.first, "--to", args.last]
    with tempfile.TemporaryDirectory(prefix="riskwatch-bench-") as tmp:
        out = args.out or Path(tmp)
        if args.with_history:
            if not args.month:
                parser.error("--with-history needs --month")
            history, batch = run_with_history(args.sim, args.month, out, args.beam_args)
            _print("riskwatch_history_backfill", history)
            _print("riskwatch_month_with_history", batch)
            if args.check:
                whole = run_batch(out / "sim", out / "riskwatch_whole", ["--month", args.month, "--full"], args.beam_args)
                _print("riskwatch_whole_inbox", whole)
                print(" ".join(f"{k}={v}" for k, v in same_warehouse(out / "riskwatch", out / "riskwatch_whole", args.month).items()))
        else:
            batch = run_batch(args.sim, out / "riskwatch", months, args.beam_args)
            _print("riskwatch", batch)
        if args.month and not args.no_reference:
            reference = run_reference(args.sim, args.month, out)
            _print("reference", reference)
            if batch["exit"] == 0 and reference["exit"] == 0:
                print(f"ratio_wall={batch['wall_s'] / reference['wall_s']:.2f} "
                      f"ratio_peak_memory={batch['peak_mib'] / max(reference['peak_mib'], 1):.2f}")
        return 1 if batch["exit"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
