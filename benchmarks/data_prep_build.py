"""`python -m benchmarks.data_prep_build`: end-to-end throughput, bytes/record and peak memory of
`python -m data_prep.build` on simulated GPRA data (the input TSV is made first and not timed).

Each configuration runs the real CLI in a fresh process; peak memory is the largest resident set
of any process of the build (main or worker), read from the OS after it exits.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def run_build(tsv: str, out: str, layout: str, workers: int, deflate: str) -> dict:
    """deflate: "numpy" (the default encoder) or "zlib-N" (zlib at level N)."""
    level = deflate.split("-")[1] if deflate.startswith("zlib") else "6"
    cmd = [sys.executable, "-m", "data_prep.build", tsv, "--out", out, "--layout", layout, "--quiet",
           "--workers", str(workers), "--deflate", deflate.split("-")[0], "--compression-level", level]
    start = time.perf_counter()
    # a fresh interpreter per run: its children's peak RSS is what this build used
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    m = json.load(open(os.path.join(out, "manifest.json")))
    n = m["counts"]["records_in"]
    return {"layout": layout, "workers": workers, "deflate": deflate, "records": n,
            "seconds": round(seconds, 2), "sequences_per_s": round(n / seconds),
            "bytes_per_record": round(m["bytes_per_record"], 2),
            "peak_rss_mb": round(int(res.stdout.split()[-1]) / 1024)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.data_prep_build", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--workers", default="2", help="comma-separated worker counts")
    p.add_argument("--layouts", default="crmnet,legnet")
    p.add_argument("--deflate", default="numpy,zlib-6,zlib-1", help="encoders: numpy (default) and/or zlib-LEVEL")
    p.add_argument("--memory-sizes", default="", help="extra input sizes for the memory-scaling check, e.g. 250000")
    p.add_argument("--work", default="bench_out/data_prep")
    args = p.parse_args(argv)
    from data_prep.simulate import simulate, write_tsv

    os.makedirs(args.work, exist_ok=True)
    rows = []
    sizes = [args.n] + [int(s) for s in args.memory_sizes.split(",") if s]
    for n in sizes:
        tsv = os.path.join(args.work, f"sim_{n}.tsv")
        if not os.path.exists(tsv):
            write_tsv(simulate(n, seed=0), tsv)
        configs = [(lay, int(w), d) for lay in args.layouts.split(",") for w in args.workers.split(",")
                   for d in args.deflate.split(",")] if n == args.n else \
            [("crmnet", int(args.workers.split(",")[-1]), "numpy")]
        for layout, workers, deflate in configs:
            r = run_build(tsv, os.path.join(args.work, "out"), layout, workers, deflate)
            rows.append(r)
            print(f"n={r['records']:>9,} {layout:7s} workers={workers} {deflate:7s}: {r['sequences_per_s']:>9,} seq/s "
                  f"{r['bytes_per_record']:6.2f} B/record  peak RSS {r['peak_rss_mb']} MB  ({r['seconds']} s)")
    with open(os.path.join(args.work, "results.json"), "w") as fh:
        json.dump({"cores": os.cpu_count(), "results": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
