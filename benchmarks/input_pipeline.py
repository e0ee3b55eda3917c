"""`python -m benchmarks.input_pipeline`: sequences/s of the readers alone, per layout.

Builds (or reuses) a simulated dataset per layout, then times `data_prep.dataset.make_dataset`
(tf.data) into uint8 batches exactly as training uses it (permuted groups, batch, parse, prefetch),
and the TensorFlow-free `data_prep.numpy_reader.make_numpy_reader` into the same numpy batches,
after a warm-up, one after the other in the same run (`--readers`).
`benchmarks.step_time` builds its reader input with `ensure_dataset` from here. The JSON records
the environment (`benchmarks.env_info`).
"""
from __future__ import annotations

import json
import os
import sys
import time

from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule


def ensure_dataset(root: str, n: int, layout: str) -> str:
    from data_prep.build import build, parser
    from data_prep.simulate import simulate, write_tsv

    os.makedirs(root, exist_ok=True)
    tsv = os.path.join(root, f"sim_{n}.tsv")
    out = os.path.join(root, f"{layout}_{n}")
    if not os.path.exists(tsv):
        write_tsv(simulate(n, seed=0), tsv)
    if not os.path.exists(os.path.join(out, "manifest.json")):
        args = parser().parse_args([tsv, "--out", out, "--layout", layout, "--quiet", "--split", "none",
                                    "--records-per-shard", str(max(n // 8, 1))])
        build(args.inputs, args.out, args)
    return out


def time_reader(folder: str, batch: int, seconds: float, training: bool, shuffle_buffer: int,
                reader: str = "tf.data") -> dict:
    if reader == "numpy":
        from data_prep.numpy_reader import make_numpy_reader

        def batches():
            while True:  # evaluation reads one pass per iteration
                yield from make_numpy_reader(folder, "all", batch, training=training, repeat=True,
                                             drop_remainder=True, shuffle_buffer=shuffle_buffer)
        it = batches()
    else:
        from data_prep.dataset import make_dataset

        it = iter(make_dataset(folder, "all", batch, training=training, repeat=True, drop_remainder=True,
                               shuffle_buffer=shuffle_buffer))
    for _ in range(20):  # warm-up: fill the shuffle buffer and the prefetch queue
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        b = next(it)
        n += int(b["seq"].shape[0])
    dt = time.perf_counter() - start
    return {"sequences": n, "seconds": round(dt, 3), "sequences_per_s": round(n / dt)}


@one_line_errors("python -m benchmarks.input_pipeline")
def main(argv=None) -> int:
    p = Parser(prog="python -m benchmarks.input_pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="simulated sequences in the dataset")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=15.0, help="timed window per configuration")
    p.add_argument("--layouts", default="crmnet,legnet")
    p.add_argument("--readers", default="tf.data,numpy", help="tf.data and/or numpy")
    p.add_argument("--shuffle-buffer", type=int, default=100_000)
    p.add_argument("--work", default="bench_out/input_pipeline", help="where datasets are built and kept")
    p.add_argument("--results-json", default=None, metavar="FILE",
                   help="write the results as JSON to this file (default: WORK/results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    args = p.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    out = args.results_json or os.path.join(args.work, "results.json")
    rule = OutputRule(overwrite=args.overwrite)
    rule.check_file(out, "--results-json")  # before the long work
    from benchmarks.env_info import environment

    results = []
    for layout in args.layouts.split(","):
        folder = ensure_dataset(args.work, args.n, layout)
        for training in (True, False):
            for reader in args.readers.split(","):
                load = os.getloadavg()[0]
                r = time_reader(folder, args.batch, args.seconds, training, args.shuffle_buffer, reader)
                r.update(layout=layout, batch=args.batch, shuffle=training, n=args.n, reader=reader,
                         load_1min=round(load, 2))
                results.append(r)
                print(f"{layout:7s} {reader:7s} batch {args.batch} shuffle={training!s:5s} "
                      f"{r['sequences_per_s']:>10,} seq/s (load {load:.2f})", flush=True)
    env = environment("tensorflow" if "tf.data" in args.readers else "numpy")
    with rule.open(out, flag="--results-json") as fh:
        json.dump({"env": env, "results": results}, fh, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
