"""`python -m benchmarks.engine_overhead`: what our training engine costs per step beyond stock Keras.

On the SAME tiny model (a registry model's ``tiny`` preset, where per-step host work and graph
bookkeeping show instead of arithmetic), interleaved in one process (engine, stock, engine, stock, ...):

* engine: ``seq2exp.engine.trainer.Trainer.run_steps`` fed by ``Trainer.distribute`` (the spec's loss,
  optimizer + schedule, in-graph input transform, finite-loss check), followed by the host reads that
  ``Trainer.fit`` does after every call (loss sum, non-finite count, steps done). One contestant per
  ``--steps-per-execution`` value; times are per step (call time / steps per call).
* stock: ``model.compile(optimizer, loss, jit_compile=False)`` + ``model.train_on_batch(x, y)`` on the same
  model configuration and initial weights, the same optimizer + schedule (``seq2exp.engine.optim``) and
  the spec's per-example loss (Keras averages it), with ``x`` = the spec's model inputs computed before the
  clock starts (for LegNet that leaves the in-graph orientation transform out of the stock side) and
  ``y`` = the spec's targets.

Reports median / IQR per contestant and the ratio engine / stock per batch size, with the load average
beside every step. XLA off on both sides.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from benchmarks.crmnet_step import summary
from benchmarks.env_info import environment
from benchmarks.step_engines import synthetic_records
from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule


class Engine:
    def __init__(self, spec, config, batch, data, spe, seed, work):
        import tensorflow as tf

        from seq2exp.engine.trainer import Trainer, TrainSettings

        self.kind, self.spe = "engine", spe
        self.name = f"engine, {spe} step{'s' if spe > 1 else ''}/call"
        settings = TrainSettings(epochs=1, batch_size=batch, steps_per_epoch=1000, steps_per_execution=spe,
                                 seed=seed, patience=None)
        self.trainer = Trainer(spec, config, tempfile.mkdtemp(dir=work), settings=settings)
        self.iterator = self.trainer.distribute(lambda ctx, s: tf.data.Dataset.from_tensor_slices(data).repeat(),
                                                seed)

    def step(self) -> float:
        t = time.perf_counter()
        total, bad, done = self.trainer.run_steps(self.iterator, self.spe)
        float(total), int(bad), int(done)  # what Trainer.fit reads after every call
        return (time.perf_counter() - t) / self.spe


class Stock:
    def __init__(self, spec, config, batch, data, seed):
        import keras
        import numpy as np

        from seq2exp.engine.optim import build_optimizer

        self.kind, self.spe, self.name = "stock", 1, "stock keras train_on_batch"
        keras.utils.set_random_seed(seed)
        self.model = spec.build(config)
        per_example = spec.loss
        self.model.compile(optimizer=build_optimizer(spec.optimizer, spec.schedule, 1000, 1), jit_compile=False,
                           loss=lambda y, p: per_example(y, p))
        batches = [{k: v[i] for k, v in data.items()} for i in range(len(data["label"]))]
        self.batches = [(np.asarray(keras.ops.convert_to_numpy(spec.inputs(b, True))),
                         np.asarray(keras.ops.convert_to_numpy(spec.targets(b)))) for b in batches]
        self.i = 0

    def step(self) -> float:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        t = time.perf_counter()
        self.model.train_on_batch(x, y)  # returns the loss as a Python float: waits for the step
        return time.perf_counter() - t


def run(model: str, batch: int, args, work: str) -> list:
    from seq2exp.engine.registry import get_model_spec

    spec = get_model_spec(model)
    config = spec.presets[args.preset]()
    from data_prep.layouts import LAYOUTS

    data = synthetic_records(LAYOUTS[spec.layout], args.n_batches, batch, args.seed)  # (n_batches, batch, ...)
    sides = [Engine(spec, config, batch, data, spe, args.seed, work) for spe in args.spe]
    sides.append(Stock(spec, config, batch, data, args.seed))
    for s in sides:
        s.times, s.load = [], []
    for i in range(args.warmup + args.steps):
        for s in sides:
            dt = s.step()
            if i >= args.warmup:
                s.times.append(dt)
                s.load.append(os.getloadavg()[0])
    rows = []
    for s in sides:
        rows.append({"model": model, "preset": args.preset, "batch": batch, "name": s.name, "kind": s.kind,
                     "steps_per_call": s.spe, "times_s": s.times, "load_1min": s.load, **summary(s.times, batch)})
        print(f"  {model} batch {batch} {s.name}: median {rows[-1]['median_s'] * 1e3:.2f} ms", file=sys.stderr)
    return rows


def markdown(rows: list) -> str:
    lines = ["| model (preset) | batch | step | ms/step median (IQR) | vs stock (ratio of medians) | timed | load |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        stock = next(s for s in rows if s["kind"] == "stock" and s["model"] == r["model"] and s["batch"] == r["batch"])
        lines.append(f"| {r['model']} ({r['preset']}) | {r['batch']} | {r['name']} | {r['median_s'] * 1e3:.2f} "
                     f"({r['q1_s'] * 1e3:.2f}-{r['q3_s'] * 1e3:.2f}) | {r['median_s'] / stock['median_s']:.3f} | "
                     f"{len(r['times_s'])} | {min(r['load_1min']):.1f}-{max(r['load_1min']):.1f} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.engine_overhead", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default="crmnet,legnet", help="comma-separated registry models")
    p.add_argument("--preset", default="tiny", help="the models' registry preset")
    p.add_argument("--batch-sizes", default="64,1024")
    p.add_argument("--steps-per-execution", default="1", help="comma-separated: one engine contestant each")
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    p.add_argument("--steps", type=int, default=40, help="timed rounds (each side once per round)")
    p.add_argument("--n-batches", type=int, default=4, help="distinct synthetic batches, cycled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="bench_out/engine_overhead")
    p.add_argument("--out", default=None, help="JSON results file (default: WORK/results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    return p


@one_line_errors("python -m benchmarks.engine_overhead")
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args.spe = [int(s) for s in args.steps_per_execution.split(",") if s.strip()]
    if args.warmup < 0 or args.steps < 1 or not args.spe or min(args.spe) < 1:
        raise SystemExit("--warmup must be >= 0, --steps >= 1 and every --steps-per-execution >= 1")
    os.makedirs(args.work, exist_ok=True)
    out = args.out or os.path.join(args.work, "results.json")
    rule = OutputRule(overwrite=args.overwrite)
    rule.check_file(out, "--out")  # before the long work
    env = environment(backend="tensorflow")
    load_before, t0 = os.getloadavg(), time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="runs_", dir=args.work) as work:
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            for batch in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
                rows.extend(run(model, batch, args, work))
    env.update(load_average_before=load_before, load_average_after=os.getloadavg(), wall_s=round(time.time() - t0, 1))
    table = markdown(rows)
    print(table)
    settings = {k: v for k, v in vars(args).items()}
    with rule.open(out, flag="--out") as fh:
        json.dump({"benchmark": "engine_overhead", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "settings": settings, "env": env, "results": rows, "markdown": table}, fh, indent=2)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
