"""`python -m benchmarks.data_prep_build`: end-to-end throughput, bytes/record and peak memory of
`python -m data_prep.build` on simulated GPRA data (the input TSV is made first and not timed).

Each configuration runs the real CLI in a fresh process; peak memory is the largest resident set
of any process of the build (main or worker), read from the OS after it exits; the CPU seconds of
the workers (summed over chunks) and of the main process come from the manifest (less sensitive
to a busy machine than wall time). `--compare
NAME=DIR` runs the same CLI from another source tree (e.g. an older commit unpacked with
`git archive`) in the same rounds, interleaved, so that ratios hold on a busy machine; the load
average (`os.getloadavg`) is recorded next to every run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_build(tsv: str, out: str, layout: str, workers: int, tree: str = HERE) -> dict:
    """One build with the data_prep package of source tree `tree`."""
    cmd = [sys.executable, "-m", "data_prep.build", tsv, "--out", out, "--layout", layout, "--quiet",
           "--workers", str(workers)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    # a fresh interpreter per run: its children's peak RSS is what this build used
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = {**os.environ, "PYTHONPATH": tree}
    res = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True, env=env,
                         cwd=tree)
    seconds = time.perf_counter() - start
    with open(os.path.join(out, "manifest.json")) as fh:
        m = json.load(fh)
    n = m["counts"]["records_in"]
    cpu = m["build"].get("cpu_seconds", {})  # earlier versions did not record it
    return {"layout": layout, "workers": workers, "records": n, "seconds": round(seconds, 2),
            "sequences_per_s": round(n / seconds), "worker_cpu_s": cpu.get("workers"), "main_cpu_s": cpu.get("main"),
            "bytes_per_record": round(m["bytes_per_record"], 2), "compression": m.get("compression"),
            "peak_rss_mb": round(int(res.stdout.split()[-1]) / 1024), "load_1min": round(load, 2)}


@one_line_errors("python -m benchmarks.data_prep_build")
def main(argv=None) -> int:
    p = Parser(prog="python -m benchmarks.data_prep_build", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3_000_000)
    p.add_argument("--workers", default="2", help="comma-separated worker counts")
    p.add_argument("--layouts", default="crmnet,legnet")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="another source tree to time side by side (repeatable)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of every configuration")
    p.add_argument("--memory-sizes", default="", help="extra input sizes for the memory-scaling check, e.g. 250000")
    p.add_argument("--work", default="bench_out/data_prep")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    args = p.parse_args(argv)
    rule = OutputRule(overwrite=args.overwrite)
    os.makedirs(args.work, exist_ok=True)
    rule.check_file(os.path.join(args.work, "results.json"), "--work")  # before the long work
    from data_prep.simulate import simulate, write_tsv

    trees = [("current", HERE)] + [tuple(c.split("=", 1)) for c in args.compare]
    os.makedirs(args.work, exist_ok=True)
    rows = []
    sizes = [args.n] + [int(s) for s in args.memory_sizes.split(",") if s]
    for n in sizes:
        tsv = os.path.abspath(os.path.join(args.work, f"sim_{n}.tsv"))
        if not os.path.exists(tsv):
            write_tsv(simulate(n, seed=0), tsv)
        configs = [(lay, int(w), t) for lay in args.layouts.split(",") for w in args.workers.split(",")
                   for t in trees] if n == args.n else [("crmnet", int(args.workers.split(",")[-1]), trees[0])]
        for rnd in range(args.rounds if n == args.n else 1):
            for layout, workers, (name, tree) in configs[rnd % len(configs):] + configs[:rnd % len(configs)]:
                r = run_build(tsv, os.path.abspath(os.path.join(args.work, "out")), layout, workers, tree)
                r.update(code=name, round=rnd, input_mb=round(os.path.getsize(tsv) / 2**20, 1))
                rows.append(r)
                print(f"n={r['records']:>9,} {layout:7s} workers={workers} {name:10s}: {r['sequences_per_s']:>9,} "
                      f"seq/s, CPU s workers {r['worker_cpu_s']} main {r['main_cpu_s']}, "
                      f"{r['bytes_per_record']:6.2f} B/record ({r['compression']})  peak RSS "
                      f"{r['peak_rss_mb']} MB  ({r['seconds']} s, load {r['load_1min']})", flush=True)
    with rule.open(os.path.join(args.work, "results.json"), flag="--work") as fh:
        json.dump({"cores": os.cpu_count(), "trees": dict(trees), "results": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
