"""Wall time, events per second and peak memory of `riskwatch batch`, next to the pandas reference.

Both run as child processes on the same files; peak memory is the largest resident set of the
child's whole process tree (Beam and Dask start helpers), sampled every 0.2 s with psutil.

    riskwatch simulate --out SIM --start 2024-10 --months 13 --population 1000000 --seed 11
    PYTHONPATH=. python benchmarks/bench_batch.py --sim SIM --month 2025-10             # county month
    PYTHONPATH=. python benchmarks/bench_batch.py --sim SIM --from 2024-11 --to 2025-10 --no-reference  # year
    PYTHONPATH=. python benchmarks/bench_batch.py --sim SIM --month 2025-10 -- --runner=...  # other runner

Prints one ``key=value`` line per run and the ratio RiskWatch / reference.
"""
from __future__ import annotations

import argparse
import json
import os
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
    """Run `cmd`; wall seconds, peak RSS of its process tree (MiB), exit code and output tail."""
    started = time.perf_counter()
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
    return {"wall_s": round(time.perf_counter() - started, 2), "peak_mib": round(peak / 2**20),
            "exit": process.returncode, "output": output}


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
        figures.update(rows_read=totals["rows_read"], accepted=totals["accepted"],
                       pipeline_s=manifest.get("pipeline_seconds"))
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


def _print(name: str, figures: dict) -> None:
    shown = {k: v for k, v in figures.items() if k != "output"}
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
    parser.add_argument("beam_args", nargs="*", help="after --: Beam options for riskwatch batch")
    args = parser.parse_args(argv)
    if bool(args.month) == bool(args.first and args.last):
        parser.error("give --month, or --from and --to")
    months = ["--month", args.month] if args.month else ["--from", args.first, "--to", args.last]
    with tempfile.TemporaryDirectory(prefix="riskwatch-bench-") as tmp:
        out = args.out or Path(tmp)
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
