"""`python -m benchmarks.legnet_step`: one LegNet training step, Keras engine vs the PyTorch reference.

Times forward + backward + AdamW update of the paper configuration (1,852,846 parameters,
18-bin soft-label KL loss) in ONE process on the same machine and the same batch sizes:

* keras: the package's real engine step. A ``seq2exp.engine.trainer.Trainer`` is built with the
  ``legnet`` model spec (its loss, AdamW(weight_decay=0.01) + one-cycle schedule, its input
  transform) and its compiled train function (``Trainer.run_steps``, one step per call) is
  fed synthetic uint8 batches ``{"seq": (B, 150), "label": (B,), "is_singleton": (B,)}``
  through ``Trainer.distribute``, exactly as ``Trainer.fit`` feeds it. So the
  timed Keras step also includes the in-graph input transform (uint8 codes -> (B, 150, 6)
  channels-last one-hot with per-example orientation), the soft-label targets and the
  finite-loss check. ``--jit`` XLA-compiles the forward/backward pass (``TrainSettings.jit``).
* torch: ``benchmarks.legnet_torch_reference`` (the spec's PyTorch LegNet with the reference
  module names and init), ``train_step`` with KL to the soft labels and
  ``torch.optim.AdamW(weight_decay=0.01)``, on precomputed (B, 6, 150) channels-first inputs
  and soft labels made from the same synthetic batches (that preparation is not timed).

Warm-up steps (graph tracing / XLA compilation / allocator warm-up) are run and reported but
excluded; then the timed steps of the frameworks are interleaved (A, B, A, B, ...) so that
background load on a shared machine affects both alike. torch uses ``os.cpu_count()`` threads
(``--torch-threads``); TensorFlow keeps its default thread pools. Prints a Markdown table and
writes JSON (``--out``) with every step time and the environment.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time

from benchmarks.env_info import environment as _environment
from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule

PAPER_PARAMS = 1_852_846


# ----------------------------------------------------------------------------- environment

def environment(torch_threads: int) -> dict:
    env = _environment(backend="tensorflow", torch_threads=torch_threads)
    env["notes"] = ["legnet_tf's grouped convolutions run as a depthwise conv + per-group sum "
                    "(legnet_tf.layers.GroupedConv1D), not Keras' Conv1D(groups=...), which TF runs through "
                    "XLA on CPU (slow)"]
    return env


# ----------------------------------------------------------------------------- synthetic data

def synthetic_batches(n_batches: int, batch: int, length: int, seed: int) -> dict:
    """``n_batches`` uint8 record batches as the legnet layout stores them (codes A0 C1 G2 T3 N4)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    seq = rng.integers(0, 4, size=(n_batches, batch, length), dtype=np.uint8)
    seq[rng.random(seq.shape) < 0.001] = 4  # a few N
    label = rng.uniform(0.0, 17.0, size=(n_batches, batch)).astype(np.float32)
    integer = rng.random((n_batches, batch)) < 0.3  # measured expression that is a whole number
    label[integer] = np.round(label[integer])
    return {"seq": seq, "label": label, "is_singleton": integer.astype(np.uint8)}


def torch_batches(records: dict) -> list:
    """The same batches as the Keras step sees them, for torch: (B, 6, L) inputs and soft labels."""
    import keras
    import numpy as np
    import torch

    from legnet_tf.losses import soft_labels
    from legnet_tf.transforms import training_inputs

    out = []
    for i in range(records["seq"].shape[0]):
        batch = {k: v[i] for k, v in records.items()}
        x = np.asarray(keras.ops.convert_to_numpy(training_inputs(batch)), np.float32)  # (B, L, 6)
        t = np.asarray(keras.ops.convert_to_numpy(soft_labels(batch["label"])), np.float32)
        out.append((torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))), torch.from_numpy(t)))
    return out


# ----------------------------------------------------------------------------- the two steps

class KerasEngineStep:
    """``Trainer.run_steps`` (one step per call) of a legnet ``Trainer`` on synthetic batches."""

    def __init__(self, batch: int, records: dict, config, jit: bool, seed: int, total_steps: int, work: str):
        import tensorflow as tf

        from seq2exp.engine.registry import get_model_spec
        from seq2exp.engine.trainer import Trainer, TrainSettings

        self.name = f"keras (engine step, jit {'on' if jit else 'off'})"
        self.framework, self.batch, self.jit = "keras", batch, jit
        spec = get_model_spec("legnet")
        # One paper epoch (1000 steps) sizes the one-cycle schedule, so the few timed steps run at about
        # its starting rate (max_lr / 25), like the torch side, instead of racing through a whole cycle.
        settings = TrainSettings(epochs=1, batch_size=batch, steps_per_epoch=max(total_steps, 1000), jit=jit,
                                 seed=seed, patience=None, nan_policy="stop")
        run_dir = tempfile.mkdtemp(prefix=f"legnet_step_b{batch}_jit{int(jit)}_", dir=work)
        self.trainer = Trainer(spec, config, run_dir, settings=settings)
        self.params = int(sum(int(v.numpy().size) for v in self.trainer.model.trainable_variables))

        def train_fn(ctx, seed_):  # what Trainer.fit gets from data_prep: dict batches, static batch dim
            return tf.data.Dataset.from_tensor_slices(records).repeat()

        self.iterator = self.trainer.distribute(train_fn, seed)

    def step(self) -> float:
        total, bad, done = self.trainer.run_steps(self.iterator, 1)
        loss = float(total)  # waits for the step
        if int(bad) or int(done) != 1:
            raise RuntimeError(f"keras step: non-finite loss or no step done (bad={int(bad)}, done={int(done)})")
        return loss


class TorchReferenceStep:
    """``legnet_torch_reference.train_step`` with AdamW(weight_decay=0.01)."""

    def __init__(self, batch: int, records: dict, config, seed: int):
        from benchmarks import legnet_torch_reference as ref

        self.name, self.framework, self.batch, self.jit = "torch (reference)", "torch", batch, None
        self.ref = ref
        self.model = ref.build_reference(config, seed=seed).train()
        self.opt = ref.build_optimizer(self.model, weight_decay=0.01)
        self.params = ref.count_parameters(self.model)
        self.data = torch_batches(records)
        self.i = 0

    def step(self) -> float:
        x, t = self.data[self.i % len(self.data)]
        self.i += 1
        return self.ref.train_step(self.model, self.opt, x, t)


# ----------------------------------------------------------------------------- driver

def _summary(times: list, batch: int) -> dict:
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "max_s": max(times),
            "mean_s": statistics.fmean(times), "seq_per_s": batch / med if med > 0 else float("nan")}


def run_batch(batch: int, args, config, work: str) -> list:
    import torch

    records = synthetic_batches(args.n_batches, batch, 150, args.seed + batch)
    total = args.warmup + args.steps
    contestants = []
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    jits = [False, True] if args.jit_both else [args.jit]
    for fw in frameworks:
        if fw == "keras":
            for jit in jits:
                contestants.append(KerasEngineStep(batch, records, config, jit, args.seed, total, work))
        elif fw == "torch":
            torch.set_num_threads(args.torch_threads)
            contestants.append(TorchReferenceStep(batch, records, config, args.seed))
        else:
            raise SystemExit(f"unknown framework {fw!r}; use keras and/or torch")
    for c in contestants:
        c.warmup_s, c.times, c.losses = [], [], []
        if config is None and c.params != PAPER_PARAMS:
            print(f"WARNING: {c.name} has {c.params:,} trainable parameters, expected {PAPER_PARAMS:,}",
                  file=sys.stderr)

    deadline = time.time() + args.time_limit if args.time_limit else None
    stopped_at, last_round = None, 0.0
    for i in range(total):  # interleaved: A, B, A, B, ...
        if deadline is not None and i > args.warmup and time.time() + last_round > deadline:
            stopped_at = i - args.warmup  # timed rounds done; at least one always runs
            print(f"  batch {batch}: --time-limit reached after {stopped_at} timed round(s)", file=sys.stderr)
            break
        t_round = time.perf_counter()
        for c in contestants:
            t0 = time.perf_counter()
            loss = c.step()
            dt = time.perf_counter() - t0
            (c.warmup_s if i < args.warmup else c.times).append(dt)
            c.losses.append(loss)
            kind = "warm-up" if i < args.warmup else "timed"
            print(f"  batch {batch} step {i + 1}/{total} ({kind}) {c.name}: {dt:.2f} s, loss {loss:.4f}",
                  file=sys.stderr, flush=True)
        last_round = time.perf_counter() - t_round

    rows = []
    for c in contestants:
        rows.append({"framework": c.framework, "name": c.name, "batch": batch, "jit": c.jit,
                     "params": c.params, "stopped_by_time_limit": stopped_at is not None,
                     "warmup_s": c.warmup_s, "times_s": c.times, "losses": c.losses,
                     **_summary(c.times, batch)})
    del contestants
    gc.collect()
    return rows


def markdown(rows: list) -> str:
    lines = ["| framework / step | batch | params | warm-up (s) | median (s) | min (s) | max (s) | seq/s (median) "
             "| timed steps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        warm = ", ".join(f"{w:.1f}" for w in r["warmup_s"]) or "-"
        lines.append(f"| {r['name']} | {r['batch']} | {r['params']:,} | {warm} | {r['median_s']:.2f} | "
                     f"{r['min_s']:.2f} | {r['max_s']:.2f} | {r['seq_per_s']:.1f} | {len(r['times_s'])} |")
    ratios = []
    for batch in sorted({r["batch"] for r in rows}):
        torch_rows = [r for r in rows if r["batch"] == batch and r["framework"] == "torch"]
        for r in rows:
            if torch_rows and r["batch"] == batch and r["framework"] == "keras":
                ratios.append(f"batch {batch}: {r['name']} median / torch median = "
                              f"{r['median_s'] / torch_rows[0]['median_s']:.2f}x")
    return "\n".join(lines + ([""] + ratios if ratios else []))


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.legnet_step", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", default="1024", help="comma-separated batch sizes, e.g. 1024 or 128,1024")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per framework first (tracing, compiling)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per framework (interleaved)")
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=False,
                   help="XLA-compile the Keras forward/backward pass (TrainSettings.jit; default: off)")
    p.add_argument("--jit-both", action="store_true", help="time the Keras step without and with XLA")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds per batch size: start no further timed round (A, B) that would end after it; "
                        "at least one timed round always runs (a step in progress cannot be interrupted)")
    p.add_argument("--frameworks", default="keras,torch", help="which steps to time: keras and/or torch")
    p.add_argument("--preset", choices=("paper", "small", "tiny"), default="paper",
                   help="model size; only 'paper' is the benchmark, the others are for smoke tests")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--n-batches", type=int, default=4, help="distinct synthetic batches, cycled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="bench_out/legnet_step",
                   help="output folder; the Trainers' (unused) run dirs go to a temporary folder inside it")
    p.add_argument("--results-json", default=None, metavar="FILE",
                   help="write the results as JSON to this file (default: WORK/results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    return p


@one_line_errors("python -m benchmarks.legnet_step")
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.warmup < 0 or args.steps < 1:
        raise SystemExit("--warmup must be >= 0 and --steps >= 1")
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.makedirs(args.work, exist_ok=True)
    out = args.results_json or os.path.join(args.work, "results.json")
    rule = OutputRule(overwrite=args.overwrite)
    rule.check_file(out, "--results-json")  # before the long work
    import tensorflow as tf  # noqa: F401  (import before torch: its thread settings stay TF's defaults)
    import torch

    torch.set_num_threads(args.torch_threads)
    config = None
    if args.preset != "paper":
        from seq2exp.engine.registry import get_model_spec

        config = get_model_spec("legnet").presets[args.preset]()
    env = environment(args.torch_threads)
    print(f"{env['cpu_model']}, {env['os_cpu_count']} cores; TF {env['tensorflow']} / Keras {env['keras']}, "
          f"torch {env['torch']} ({args.torch_threads} threads); load average {os.getloadavg()}", file=sys.stderr)
    load_before, t_start = os.getloadavg(), time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainer_runs_", dir=args.work) as runs:  # the Trainers' run dirs
        for batch in batches:
            rows.extend(run_batch(batch, args, config, runs))
    env.update(load_average_before=load_before, load_average_after=os.getloadavg(),
               wall_s=round(time.time() - t_start, 1),
               peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2))
    table = markdown(rows)
    print(table)
    settings = {k: v for k, v in vars(args).items()}
    settings["model_config"] = config or "paper"
    with rule.open(out, flag="--results-json") as fh:
        json.dump({"benchmark": "legnet_step", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings,
                   "env": env, "results": rows, "markdown": table}, fh, indent=2)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
