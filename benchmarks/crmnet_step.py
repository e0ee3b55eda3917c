"""`python -m benchmarks.crmnet_step`: one CRMnet training step, our engine vs the published code under Keras 2.

Times forward + backward + Adam update with the Huber loss in ONE run on the same machine and batches:

* ours: the package's real engine step. A ``seq2exp.engine.trainer.Trainer`` is built with the ``crmnet``
  model spec (Huber, Adam + warm-up/cosine schedule, the in-graph uint8 -> one-hot input layer) and its
  compiled train function (``Trainer.run_steps``, ``--steps-per-execution`` steps per call, reported per
  step) is fed synthetic uint8 batches ``{"seq": (B, 112), "label": (B,)}`` through ``Trainer.distribute``,
  exactly as ``Trainer.fit`` feeds it (so it also includes the finite-loss check).
* keras2: the published architecture built under Keras 2 (``tf-keras``; ``TF_USE_LEGACY_KERAS=1``) by
  ``benchmarks.crmnet_keras2_reference`` (``build_reference_model(config, batch_size)`` +
  ``compile_published``: Adam + Huber), ``model.train_on_batch`` on the same sequences as float32
  one-hot (what the published code feeds; the encoding is not timed). It runs in a subprocess (Keras 2
  and Keras 3 do not share one process) that times its own step and answers over a pipe.

Both sides use the same configuration dict (``--preset published``: 34,170,289 parameters; ``small``: the
reference's width-reduced preset, for quick iterations; ``tiny``: the README demo's 24,683-parameter model).
Warm-up steps (tracing, allocator warm-up) are
reported but excluded; the timed steps are interleaved (ours, keras2, ours, keras2, ...) so that
background load affects both alike; the parent waits on the pipe (no CPU) while the subprocess works.
After every step, outside the timed region, each side hands its freed activation memory back to the
OS (glibc ``malloc_trim``): at batch 1024 each side peaks at ~10 GB, and two processes that both keep
their peak would not fit a 23 GB machine; both sides then pay the same page faults inside their steps.
Prints a Markdown table with the ratio and writes JSON (``--out``) with every step time and the load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.env_info import environment
from benchmarks.legnet_step import synthetic_batches
from benchmarks.step_engines import current_rss
from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule

SEQ_LEN = 112
MARK = "@@crmnet_step "  # protocol lines of the Keras-2 worker start with this (its stdout also gets logs)
ONE_HOT_ROWS = [1, 2, 3, 4, 0]  # storage code A0 C1 G2 T3 N4 -> published channel (N, A, C, G, T)


def records(n_batches: int, batch: int, seed: int) -> dict:
    """uint8 code batches (A0 C1 G2 T3 N4, a few N) and float32 labels, as the crmnet layout stores them."""
    out = synthetic_batches(n_batches, batch, SEQ_LEN, seed)
    out.pop("is_singleton")
    return out


def release_memory() -> float:
    """Return freed heap pages to the OS (glibc; a no-op elsewhere); the process RSS in GB afterwards."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return current_rss() / 2**30


def preset_config(preset: str) -> dict:
    """The reference's ``published`` / ``small`` configuration, or ``tiny``: the registry's (the README demo's)."""
    from benchmarks.crmnet_keras2_reference import PRESETS

    if preset == "tiny":
        from crmnet.model import CRMnetConfig

        return {k: v for k, v in CRMnetConfig.tiny(seq_len=SEQ_LEN).to_dict().items() if k in PRESETS["published"]}
    return dict(PRESETS[preset])


# ----------------------------------------------------------------------------- the two steps (in workers)

class OursStep:
    """``Trainer.run_steps`` of a crmnet ``Trainer`` on synthetic batches (``spe`` steps per call)."""

    def __init__(self, config: dict, batch: int, n_batches: int, seed: int, jit: bool, spe: int):
        import keras
        import tensorflow as tf

        from seq2exp.engine.registry import get_model_spec
        from seq2exp.engine.trainer import Trainer, TrainSettings

        self.spe = spe
        self.name = f"ours (Keras {keras.__version__} engine step, jit {'on' if jit else 'off'}" + (
            f", {spe} steps/call)" if spe > 1 else ")")
        settings = TrainSettings(epochs=1, batch_size=batch, steps_per_epoch=1000, jit=jit, seed=seed, patience=None,
                                 nan_policy="stop", steps_per_execution=spe)
        self.run_dir = tempfile.TemporaryDirectory(prefix="crmnet_step_")  # the Trainer's (unused) run folder
        self.trainer = Trainer(get_model_spec("crmnet"), config, self.run_dir.name, settings=settings)
        self.params = int(self.trainer.model.count_params())
        data = records(n_batches, batch, seed)
        self.iterator = self.trainer.distribute(
            lambda ctx, seed_: tf.data.Dataset.from_tensor_slices(data).repeat(), seed)

    def step(self) -> tuple:
        t = time.perf_counter()
        total, bad, done = self.trainer.run_steps(self.iterator, self.spe)
        loss = float(total) / self.spe  # waits for the steps
        dt = (time.perf_counter() - t) / self.spe
        if int(bad) or int(done) != self.spe:
            raise RuntimeError(f"engine step: non-finite loss or steps missing (bad={int(bad)}, done={int(done)})")
        return dt, loss


class Keras2Step:
    """The published architecture under Keras 2: ``train_on_batch`` on float32 one-hot batches."""

    def __init__(self, config: dict, batch: int, n_batches: int, seed: int):
        import numpy as np

        from benchmarks import crmnet_keras2_reference as ref

        k = ref.keras2()
        k.utils.set_random_seed(seed)
        data = records(n_batches, batch, seed)
        eye = np.eye(5, dtype="float32")[ONE_HOT_ROWS]
        self.xs = [eye[codes] for codes in data["seq"]]  # (B, 112, 5) [N, A, C, G, T]
        self.ys = [labels.reshape(-1, 1) for labels in data["label"]]
        self.model = ref.compile_published(ref.build_reference_model(config, batch))
        self.params = int(self.model.count_params())
        self.name = f"Keras {k.__version__} published code, train_on_batch"
        if getattr(self.model, "jit_compile", False):
            self.name += " (XLA)"
        self.i = 0

    def step(self) -> tuple:
        x, y = self.xs[self.i % len(self.xs)], self.ys[self.i % len(self.ys)]
        self.i += 1
        t = time.perf_counter()
        loss = float(self.model.train_on_batch(x, y))
        return time.perf_counter() - t, loss


def serve(side: str, args) -> int:
    """Worker process: builds one side, then one step per ``step`` line on stdin, answering on stdout."""
    def say(**kw):
        print(MARK + json.dumps(kw), flush=True)

    t0 = time.perf_counter()
    batch, config = int(args.batch_sizes), json.loads(args.worker_config)
    step = (OursStep(config, batch, args.n_batches, args.seed, args.jit == "on", args.steps_per_execution)
            if side == "ours" else Keras2Step(config, batch, args.n_batches, args.seed))
    say(name=step.name, params=step.params, build_s=time.perf_counter() - t0, rss_gb=release_memory())
    for line in sys.stdin:
        if line.strip() != "step":
            break
        dt, loss = step.step()
        say(dt=dt, loss=loss, rss_gb=release_memory())
    return 0


class Worker:
    """A side's worker process (Keras 2 needs its own: ``TF_USE_LEGACY_KERAS=1``); ``step()`` -> its own timing."""

    def __init__(self, side: str, batch: int, args):
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1") if side == "keras2" else dict(os.environ)
        cmd = [sys.executable, "-m", "benchmarks.crmnet_step", "--worker", side, "--worker-config", args.config,
               "--batch-sizes", str(batch), "--n-batches", str(args.n_batches), "--seed", str(args.seed),
               "--jit", args.jit, "--steps-per-execution", str(args.steps_per_execution)]
        self.side, self.batch = side, batch
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        hello = self._read()
        self.name, self.params, self.build_s = hello["name"], hello["params"], hello["build_s"]

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"the {self.side} worker exited (status {self.proc.wait()}); see its stderr above")

    def step(self) -> tuple:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        reply = self._read()
        return reply["dt"], reply["loss"], reply["rss_gb"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=300)


# ----------------------------------------------------------------------------- driver

def summary(times: list, batch: int) -> dict:
    med = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [med, med, med]
    return {"median_s": med, "q1_s": q[0], "q3_s": q[2], "min_s": min(times), "max_s": max(times),
            "seq_per_s": batch / med if med > 0 else float("nan")}


class Record:
    def __init__(self):
        self.name, self.params, self.build_s = None, None, []
        self.warmup_s, self.times, self.losses, self.load, self.rss = [], [], [], [], []

    def add(self, worker, i, warmup, batch, dt, loss, rss):
        (self.warmup_s if i < warmup else self.times).append(dt)
        self.losses.append(loss)
        self.rss.append(rss)
        self.load.append(os.getloadavg()[0])
        print(f"  batch {batch} step {i + 1} ({'warm-up' if i < warmup else 'timed'}) {worker.name}: {dt:.3f} s, "
              f"loss {loss:.4f}, load {self.load[-1]:.1f}, RSS after {rss:.1f} GB", file=sys.stderr, flush=True)


def run_batch(batch: int, args) -> list:
    """Interleaved steps of the sides; with ``--one-at-a-time``, alternating blocks of worker processes."""
    sides = args.frameworks
    rec = {side: Record() for side in sides}
    blocks = args.blocks if args.one_at_a_time else 1
    per_block = -(-args.steps // blocks)
    deadline = time.time() + args.time_limit if args.time_limit else None
    for _ in range(blocks):
        groups = [[side] for side in sides] if args.one_at_a_time else [sides]
        for group in groups:  # processes alive together: all sides, or one side at a time
            workers = []
            try:
                for side in group:
                    workers.append(Worker(side, batch, args))
                    rec[side].name, rec[side].params = workers[-1].name, workers[-1].params
                    rec[side].build_s.append(workers[-1].build_s)
                last_round = 0.0
                for i in range(args.warmup + per_block):
                    if deadline is not None and i > args.warmup and time.time() + last_round > deadline:
                        print(f"  batch {batch}: --time-limit reached", file=sys.stderr)
                        break
                    t_round = time.perf_counter()
                    for side, worker in zip(group, workers):  # interleaved: ours, keras2, ours, keras2, ...
                        rec[side].add(worker, i, args.warmup, batch, *worker.step())
                    last_round = time.perf_counter() - t_round
            finally:
                for worker in workers:
                    worker.close()
    return [{"framework": side, "name": r.name, "batch": batch, "params": r.params, "build_s": r.build_s,
             "mode": f"one at a time, {blocks} blocks" if args.one_at_a_time else "interleaved per step",
             "warmup_s": r.warmup_s, "times_s": r.times, "losses": r.losses, "load_1min": r.load,
             "rss_gb_after_step": r.rss, **summary(r.times, batch)} for side, r in rec.items()]


def markdown(rows: list) -> str:
    lines = ["| step | batch | params | median s/step (IQR) | min-max | seq/s | timed steps | load (1 min) | mode |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['batch']} | {r['params']:,} | {r['median_s']:.3f} ({r['q1_s']:.3f}-"
                     f"{r['q3_s']:.3f}) | {r['min_s']:.3f}-{r['max_s']:.3f} | {r['seq_per_s']:.1f} | "
                     f"{len(r['times_s'])} | {min(r['load_1min']):.1f}-{max(r['load_1min']):.1f} | {r['mode']} |")
    ratios = []
    for batch in sorted({r["batch"] for r in rows}):
        mine = [r for r in rows if r["batch"] == batch and r["framework"] == "ours"]
        ref = [r for r in rows if r["batch"] == batch and r["framework"] == "keras2"]
        if mine and ref:
            paired = [a / b for a, b in zip(mine[0]["times_s"], ref[0]["times_s"])]
            ratios.append(f"batch {batch}: ours / Keras 2 = {mine[0]['median_s'] / ref[0]['median_s']:.2f}x "
                          f"(ratio of medians; step-by-step ratios {min(paired):.2f}-{max(paired):.2f}, median "
                          f"{statistics.median(paired):.2f})")
    return "\n".join(lines + ([""] + ratios if ratios else []))


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.crmnet_step", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", default="256,1024", help="comma-separated batch sizes")
    p.add_argument("--preset", choices=("published", "small", "tiny"), default="published",
                   help="configuration of both models (crmnet_keras2_reference.PRESETS; tiny: the README demo's "
                        "24,683 parameters); small and tiny for quick runs")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (tracing, allocator)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per side")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds per batch size: start no further timed round that would end after it")
    p.add_argument("--frameworks", default="ours,keras2", help="which steps to time: ours and/or keras2")
    p.add_argument("--jit", choices=("off", "on"), default="off", help="XLA-compile our step (TrainSettings.jit)")
    p.add_argument("--steps-per-execution", type=int, default=1, help="our steps per compiled call")
    p.add_argument("--n-batches", type=int, default=4, help="distinct synthetic batches, cycled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="bench_out/crmnet_step", help="output folder")
    p.add_argument("--out", default=None, help="JSON results file (default: WORK/results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    p.add_argument("--one-at-a-time", action="store_true",
                   help="never run both sides' processes at once (each peaks at ~10 GB at batch 1024 for the "
                        "published model): alternate --blocks blocks of one worker process each, every block with "
                        "its own --warmup steps")
    p.add_argument("--blocks", type=int, default=2, help="with --one-at-a-time: blocks per side (A, B, A, B, ...)")
    p.add_argument("--worker", choices=("ours", "keras2"), help=argparse.SUPPRESS)
    p.add_argument("--worker-config", help=argparse.SUPPRESS)
    return p


@one_line_errors("python -m benchmarks.crmnet_step")
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.warmup < 0 or args.steps < 1 or args.steps_per_execution < 1:
        raise SystemExit("--warmup must be >= 0, --steps and --steps-per-execution >= 1")
    if args.worker:
        return serve(args.worker, args)
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    if not args.frameworks or set(args.frameworks) - {"ours", "keras2"}:
        raise SystemExit(f"--frameworks: use ours and/or keras2, got {args.frameworks}")
    if args.blocks < 1:
        raise SystemExit("--blocks must be >= 1")
    args.config = json.dumps(preset_config(args.preset))
    os.makedirs(args.work, exist_ok=True)
    out = args.out or os.path.join(args.work, "results.json")
    rule = OutputRule(overwrite=args.overwrite)
    rule.check_file(out, "--out")  # before the long work
    env = environment(backend="tensorflow")
    load_before, t_start = os.getloadavg(), time.time()
    print(f"{env['cpu_model']}, {env['os_cpu_count']} cores; TF {env['tensorflow']} / Keras {env['keras']}; "
          f"load average {load_before}", file=sys.stderr)
    rows = []
    for batch in batches:
        rows.extend(run_batch(batch, args))
    env.update(load_average_before=load_before, load_average_after=os.getloadavg(),
               wall_s=round(time.time() - t_start, 1),
               peak_rss_gb_workers=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2))
    table = markdown(rows)
    print(table)
    with rule.open(out, flag="--out") as fh:
        json.dump({"benchmark": "crmnet_step", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
                   "env": env, "results": rows, "markdown": table}, fh, indent=2)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
