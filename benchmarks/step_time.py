"""`python -m benchmarks.step_time`: time per training step across models, batch sizes, precisions,
strategies and XLA, as in the CRMnet paper's Table 1, on whatever machine this runs on.

For every registry model x strategy x precision x jit x per-replica batch size (ascending):

* the step is the package's real one (``benchmarks.step_engines``): the ``seq2exp.engine.trainer.Trainer``
  step of the active Keras backend (TensorFlow: ``strategy.run``; ``KERAS_BACKEND=jax``: the engine's
  ``jax.jit`` stateless step over keras.distribution, TensorFlow never imported), fed by the engine's reader
  (default; tf.data or the numpy reader; a small simulated dataset is built with ``data_prep`` unless
  ``--data`` is given) or by fixed synthetic batches (``--synthetic-input``, to isolate the model from the
  input pipeline);
* ``--warmup`` untimed steps first (tracing, XLA compilation, allocator and pipeline warm-up; with
  ``--warmup-epochs N`` also N passes over the dataset), then ``--steps`` timed steps, each ended by
  fetching the loss value (device synchronisation) before the clock is read; median, quartiles,
  min/max, standard deviation;
* sequences/s, analytic FLOPs per step (``benchmarks.flops``: 3 x forward), achieved TFLOP/s and the
  utilisation against ``--peak-tflops`` (per device), projected epoch and ``--epochs``-epoch times
  for ``--dataset-size`` sequences;
* peak memory: the device allocator's peak on GPU/TPU (TF: reset per configuration; JAX: the
  process's peak so far), and on every machine the process RSS increase during the configuration
  (sampled every 5 ms; on CPU the only figure, labelled ``host_rss_delta``);
* the out-of-memory boundary: a batch whose step fails with ResourceExhaustedError / XLA
  RESOURCE_EXHAUSTED / MemoryError, or that exceeds ``--max-memory-gb`` (estimated beforehand from
  the layers' activation sizes, or measured while running), is recorded as ``oom`` and the larger
  batches of that configuration as ``skipped``.

Writes CSV, JSON (with the environment: versions, devices, CPU, load), a Markdown table shaped like
the paper's Table 1 and a plot into ``--out-dir`` (``benchmarks.report``).
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import traceback

from benchmarks.env_info import environment, load_average, summary_line
from benchmarks.step_engines import RSSSampler, oom_reason, synthetic_records
from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule
from seq2exp.engine.settings import PRECISIONS

#: the CRMnet paper's complex-medium training set (~30.7 M sequences), the size its epoch times are for
PAPER_DATASET_SIZE = 30_700_000


class MemoryGuard(Exception):
    """--max-memory-gb exceeded (recorded as OOM, not raised to the user)."""


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.step_time", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to time")
    g.add_argument("--models", default="all", help="comma-separated registry model names, or 'all'")
    g.add_argument("--preset", default="paper", help="model size: 'paper' (the published configuration) or a "
                   "preset of the model's registry entry (small, tiny)")
    g.add_argument("--batch-sizes", default="1024,2048,4096,8192,16384",
                   help="comma-separated PER-REPLICA batch sizes (the paper's 'local batch size')")
    g.add_argument("--precisions", default="float32", help=f"comma-separated, of {', '.join(PRECISIONS)}")
    g.add_argument("--strategies", default="default", help="comma-separated: default, mirrored, auto, "
                   "multiworker, tpu (multiworker/tpu only alone: they must be created first)")
    g.add_argument("--jit", action=argparse.BooleanOptionalAction, default=False,
                   help="XLA-compile the step (as the train command's --jit; default: off)")
    g.add_argument("--jit-both", action="store_true", help="time every configuration without and with XLA")
    g.add_argument("--steps-per-execution", type=int, default=1, help="TF: steps per compiled call")
    g = p.add_argument_group("how")
    g.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    g.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="also skip this many passes over the (real) dataset before timing")
    g.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    g.add_argument("--time-limit", type=float, default=None,
                   help="seconds of timed steps per configuration; at least 2 timed steps always run")
    g.add_argument("--budget-s", type=float, default=None,
                   help="wall seconds for the whole sweep, shared evenly by the models still to run: a configuration "
                        "is only started inside its model's share (the rest are recorded as not_run); the tables "
                        "are rewritten after every configuration, so a killed sweep leaves what it measured")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("input")
    g.add_argument("--synthetic-input", action="store_true",
                   help="fixed synthetic batches instead of the engine's reader of the TFRecord shards")
    g.add_argument("--data", action="append", default=[],
                   help="a data_prep.build dataset folder (repeat for several layouts); default: simulated")
    g.add_argument("--data-split", default="auto", help="split to read; auto = 'train' if present, else 'all'")
    g.add_argument("--sim-sequences", type=int, default=20000, help="size of the simulated dataset")
    g.add_argument("--shuffle-buffer", type=int, default=100_000)
    g.add_argument("--n-batches", type=int, default=4, help="distinct synthetic batches, cycled")
    g = p.add_argument_group("derived figures and limits")
    g.add_argument("--dataset-size", type=int, default=PAPER_DATASET_SIZE,
                   help="sequences per epoch for the projected epoch times (default: CRMnet paper, ~30.7 M)")
    g.add_argument("--epochs", type=int, default=20, help="epochs of the projected training time (paper: 20)")
    g.add_argument("--peak-tflops", default=None,
                   help="peak TFLOP/s of ONE device, for the utilisation column: one number for every precision, "
                        "or per precision, e.g. float32=495,mixed_float16=989,mixed_bfloat16=989")
    g.add_argument("--max-memory-gb", type=float, default=None,
                   help="treat a configuration estimated or measured above this as out of memory (a guard for "
                        "CPU hosts, where running out means swapping or being killed, not an error). Default: on "
                        "hosts without an accelerator, configurations ESTIMATED above the physical memory are "
                        "recorded as out of memory without running; 0 turns every guard off")
    g = p.add_argument_group("output")
    g.add_argument("--out-dir", default="bench_out/step_time")
    g.add_argument("--name", default="step_time", help="file stem of the CSV/JSON/MD/PNG")
    g.add_argument("--no-plot", action="store_true")
    g.add_argument("--overwrite", action="store_true", help="replace existing result files of this --name")
    return p


def _split_list(text: str, cast=str) -> list:
    return [cast(x.strip()) for x in str(text).split(",") if x.strip()]


def _check_args(args, backend: str) -> tuple[list, list, list, list, list]:
    from seq2exp.engine.registry import model_names

    known = model_names()
    models = known if args.models == "all" else _split_list(args.models)
    for m in models:
        if m not in known:
            raise SystemExit(f"--models: unknown model {m!r}; known: {', '.join(known)}")
    if args.models == "all" and args.preset != "paper":  # 'all' = every model that has this preset
        from seq2exp.engine.registry import get_model_spec

        lacking = [m for m in models if args.preset not in get_model_spec(m).presets]
        if lacking:
            print(f"--models all: skipping {', '.join(lacking)} (no preset {args.preset!r})", file=sys.stderr)
        models = [m for m in models if m not in lacking]
    batches = sorted(set(_split_list(args.batch_sizes, int)))
    if not batches or batches[0] < 1:
        raise SystemExit("--batch-sizes: give positive integers, e.g. 1024,2048")
    precisions = _split_list(args.precisions)
    for pr in precisions:
        if pr not in PRECISIONS:
            raise SystemExit(f"--precisions: unknown {pr!r}; choose from {', '.join(PRECISIONS)}")
    strategies = _split_list(args.strategies)
    if args.warmup < 0 or args.steps < 1 or args.steps_per_execution < 1:
        raise SystemExit("--warmup must be >= 0, --steps and --steps-per-execution >= 1")
    if args.budget_s is not None and args.budget_s <= 0:
        raise SystemExit(f"--budget-s must be positive seconds, got {args.budget_s}")
    jits = [False, True] if args.jit_both else [args.jit]
    return models, batches, precisions, strategies, jits


def _peak_tflops(text: str | None, precisions: list) -> dict:
    """'989' -> that for every precision; 'float32=495,mixed_bfloat16=989' -> per precision."""
    if not text:
        return {}
    try:
        if "=" not in text:
            return {p: float(text) for p in precisions}
        pairs = dict(item.split("=", 1) for item in _split_list(text))
        out = {k.strip(): float(v) for k, v in pairs.items()}
    except ValueError:
        raise SystemExit(f"--peak-tflops {text!r}: give a number or precision=number pairs") from None
    unknown = set(out) - set(PRECISIONS)
    if unknown:
        raise SystemExit(f"--peak-tflops: unknown precision(s) {sorted(unknown)}; use {', '.join(PRECISIONS)}")
    return out


def _model_config(spec, preset: str) -> dict:
    if preset == "paper":
        return spec.default_config()
    if preset not in spec.presets:
        raise SystemExit(f"--preset {preset!r}: model {spec.name!r} has presets {sorted(spec.presets)} (or 'paper')")
    return spec.presets[preset]()


def _count_flops(spec, config: dict, layout):
    """FLOPs and activation sizes per example, from one float32 forward call at batch 1; trainable params."""
    import numpy as np

    from benchmarks.flops import model_flops
    from benchmarks.step_engines import build_under_precision

    model = build_under_precision("float32", lambda: spec.build(config))
    batch = {k: v[0] for k, v in synthetic_records(layout, 1, 1, 0).items()}
    report = model_flops(spec, model, batch)
    params = int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))
    del model
    gc.collect()
    return report, params


def _datasets(args, layouts: set, out_dir: str) -> dict:
    """layout -> (manifest, split) for the reader."""
    from benchmarks.input_pipeline import ensure_dataset
    from data_prep.manifest import load_manifest

    given = {}
    for path in args.data:
        m = load_manifest(path)
        given.setdefault(m.layout, m)
    out = {}
    for layout in sorted(layouts):
        m = given.get(layout)
        if m is None:
            folder = ensure_dataset(os.path.join(out_dir, "data"), args.sim_sequences, layout)
            m = load_manifest(folder, layout=layout)
            print(f"reader input for layout {layout}: simulated dataset {folder} ({m.records('all'):,} records)",
                  file=sys.stderr)
        split = args.data_split if args.data_split != "auto" else ("train" if "train" in m.splits else "all")
        if split not in m.splits:
            raise SystemExit(f"--data-split {split!r}: {m.path} has splits {m.splits}")
        out[layout] = (m, split)
    return out


def _summary(times: list) -> dict:
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    med = statistics.median(times)
    return {"median_s": med, "p25_s": q[0], "p75_s": q[2], "min_s": min(times), "max_s": max(times),
            "mean_s": statistics.fmean(times), "stdev_s": statistics.stdev(times) if len(times) > 1 else 0.0,
            "iqr_rel": (q[2] - q[0]) / med if med > 0 else None}


def _derived(row: dict, args, flops) -> None:
    med, gb = row["median_s"], row["global_batch"]
    row["seq_per_s"] = gb / med if med > 0 else None
    row["tflops_achieved"] = row["flops_per_step"] / med / 1e12 if med > 0 else None
    if row["peak_tflops"] and row["tflops_achieved"] is not None:
        row["utilisation"] = row["tflops_achieved"] / (row["peak_tflops"] * row["devices"])
    row["steps_per_epoch"] = max(args.dataset_size // gb, 1)
    row["epoch_s"] = med * row["steps_per_epoch"]
    row["train_s"] = row["epoch_s"] * args.epochs


def run_config(args, ctx: dict, precision: str, jit: bool, batch: int) -> dict:
    """One configuration: build, warm up, time; an out-of-memory failure becomes an 'oom' row."""
    flops = ctx["flops"]
    replicas = ctx["replicas"]
    gb = batch * replicas
    row = {**ctx["row"], "precision": precision, "jit": jit, "batch_per_replica": batch, "global_batch": gb,
           "flops_fwd_per_seq": flops.forward_per_example, "flops_per_step": flops.train_per_step(gb),
           "flops_uncounted_layers": ",".join(flops.uncounted),
           "peak_tflops": ctx["peak_tflops"].get(precision), "dataset_size": args.dataset_size,
           "epochs": args.epochs, "load_average_before": load_average(), "status": "ok"}
    act_bytes = 2 if precision.startswith("mixed") else 4
    row["estimated_memory_gb"] = (flops.activation_elements * batch * act_bytes + 16 * ctx["params"]) / 1e9
    limit, source = args.max_memory_gb, "--max-memory-gb"
    if limit is None and ctx["host_memory_gb"]:  # CPU host: running out would swap or get the process killed
        limit, source = ctx["host_memory_gb"], "this host's physical memory"
    if limit and row["estimated_memory_gb"] > limit:
        row.update(status="oom", oom_reason=f"guard: estimated {row['estimated_memory_gb']:.3g} GB (activations + "
                   f"weights/grads/Adam) > {source} {limit:g} GB")
        return row
    sampler, step, warm, times, losses = RSSSampler().start(), None, [], [], []

    def check_memory():
        used = step.peak_memory() if step is not None else None
        used = sampler.delta if used is None else used
        if args.max_memory_gb and used / 1e9 > args.max_memory_gb:
            raise MemoryGuard(f"guard: measured {used / 1e9:.3g} GB > --max-memory-gb {args.max_memory_gb}")

    try:
        step = _make_step(args, ctx, precision, jit, batch)
        step.reset_memory()
        n_warm = args.warmup
        if args.warmup_epochs and not args.synthetic_input and ctx["records"]:
            n_warm += int(args.warmup_epochs * ctx["records"] / gb / args.steps_per_execution + 0.999)
        for _ in range(n_warm):
            t0 = time.perf_counter()
            losses.append(step.step())
            warm.append(time.perf_counter() - t0)
            check_memory()
        deadline = time.perf_counter() + args.time_limit if args.time_limit else None
        for i in range(args.steps):
            if deadline is not None and i >= 2 and time.perf_counter() + (times[-1] if times else 0) > deadline:
                row["stopped_by_time_limit"] = True
                break
            t0 = time.perf_counter()
            losses.append(step.step())
            times.append((time.perf_counter() - t0) / step.steps_per_call)
            check_memory()
        row["params"] = step.params
        row["bad_steps"] = step.bad_steps
        peak = step.peak_memory()
        row["device_peak_gb"] = peak / 1e9 if peak is not None else None
    except MemoryGuard as err:
        row.update(status="oom", oom_reason=str(err))
    except Exception as err:  # noqa: BLE001 - anything else is recorded with its traceback, then re-checked
        reason = oom_reason(err)
        if reason is None:
            traceback.print_exc()
            row.update(status="error", error=f"{type(err).__name__}: {str(err)[:500]}")
        else:
            row.update(status="oom", oom_reason=reason)
    finally:
        row["host_rss_delta_gb"] = sampler.stop() / 1e9
        if step is not None:
            row["memory_kind"] = step.memory_kind
            step.close()
        step = None  # the step and its model can be collected before the next configuration
        gc.collect()
    row["memory_gb"] = row.get("device_peak_gb") if row.get("device_peak_gb") is not None else row["host_rss_delta_gb"]
    row.setdefault("memory_kind", "host_rss_delta")
    row.update(warmup_s=warm, first_step_s=warm[0] if warm else None, times_s=times, timed_steps=len(times),
               loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
               load_average_after=load_average())
    if row["status"] == "ok":
        row.update(_summary(times))
        _derived(row, args, flops)
    return row


def _make_step(args, ctx, precision, jit, batch):
    from benchmarks.step_engines import EngineStep, reader_train_fn, synthetic_train_fn

    spec = ctx["spec"]
    if args.synthetic_input:
        rows = batch  # TF: tf.data yields per-replica batches; JAX: this process's rows of the global batch
        if ctx["backend"] == "jax":
            from seq2exp.engine.data import process_input

            rows = process_input().get_per_replica_batch_size(batch * ctx["replicas"])
        train_fn = synthetic_train_fn(synthetic_records(ctx["layout"], args.n_batches, rows, args.seed + batch))
    else:
        manifest, split = ctx["data"]
        train_fn = reader_train_fn(manifest, split, batch * ctx["replicas"], args.shuffle_buffer)
    run_dir = tempfile.mkdtemp(prefix=f"{spec.name}_b{batch}_", dir=ctx["runs"])
    return EngineStep(spec, ctx["config"], ctx["strategy"], precision, batch, jit, args.seed, run_dir, train_fn,
                      steps_per_execution=args.steps_per_execution)


def _describe(line: dict) -> str:
    base = (f"{line['model']}/{line['preset']} {line['strategy']}x{line['replicas']} {line['precision']} "
            f"jit={'on' if line['jit'] else 'off'} batch {line['batch_per_replica']}")
    if line["status"] == "not_run":
        return f"{base}: not run ({line['reason']})"
    if line["status"] == "ok":
        return (f"{base}: median {line['median_s']:.4g} s/step [{line['p25_s']:.4g}-{line['p75_s']:.4g}], "
                f"{line['seq_per_s']:,.0f} seq/s, {line['tflops_achieved']:.3g} TFLOP/s, "
                f"{line['memory_kind']} {line['memory_gb']:.3g} GB")
    return f"{base}: {line['status'].upper()} {line.get('oom_reason') or line.get('error') or ''}"


def _strategy_fields(args, env: dict, model: str, sname: str, strategy, params: int) -> dict:
    """The strategy and the columns every row of this model x strategy carries (its environment included)."""
    from seq2exp.engine.backend import describe

    info = describe(strategy)
    replicas = int(info["replicas"])
    hardware = (f"{env['accelerator_count']} x {env['accelerator']}" if env.get("accelerator_count")
                else f"CPU: {env['cpu_model']} ({env['os_cpu_count']} cores)")
    return {"strategy": strategy, "replicas": replicas, "row": {
        "model": model, "preset": args.preset, "params": params, "backend": env["keras_backend"],
        "framework": env.get("tensorflow") or env.get("jax"), "keras": env["keras"], "hardware": hardware,
        "accelerator": env.get("accelerator"), "accelerator_count": env.get("accelerator_count"),
        "cpu_model": env["cpu_model"], "hostname": env["hostname"], "strategy": sname, "strategy_class": info["name"],
        "replicas": replicas, "devices": replicas if env.get("accelerator_count") else 1,
        "input": "synthetic" if args.synthetic_input else "tfrecord", "steps_per_execution": args.steps_per_execution}}


def _sweep(args, ctx: dict, precisions: list, jits: list, batches: list, done=lambda row: None) -> list:
    """Every precision x jit, batches ascending; after an out-of-memory batch the larger ones are skipped.

    Past `ctx["deadline"]` (a time.time() value, or None) nothing more is started: those rows are
    `not_run`. `done(row)` runs after every row (the caller rewrites its tables)."""
    rows = []
    for precision in precisions:
        for jit in jits:
            oom_at = None
            for batch in batches:
                base = {**ctx["row"], "precision": precision, "jit": jit, "batch_per_replica": batch,
                        "global_batch": batch * ctx["replicas"]}
                if oom_at is not None:
                    row = {**base, "status": "skipped", "oom_reason": f"larger than the out-of-memory batch {oom_at}"}
                elif ctx.get("deadline") is not None and time.time() >= ctx["deadline"]:
                    row = {**base, "status": "not_run", "reason": "--budget-s spent before this configuration"}
                else:
                    row = run_config(args, ctx, precision, jit, batch)
                    if row["status"] == "oom":
                        oom_at = batch
                rows.append(row)
                print(_describe(row), file=sys.stderr, flush=True)
                done(row)
    return rows


@one_line_errors("python -m benchmarks.step_time")
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from benchmarks import report
    from data_prep.layouts import get_layout
    from seq2exp.engine.registry import get_model_spec

    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise SystemExit(f"KERAS_BACKEND={backend!r}: step_time runs under tensorflow or jax")
    models, batches, precisions, strategy_names, jits = _check_args(args, backend)
    peaks = _peak_tflops(args.peak_tflops, precisions)
    from seq2exp.engine.backend import resolve_strategy

    # first: TF multi-worker/TPU strategies (and JAX's multi-process runtime) must exist before other work
    strategies = {name: resolve_strategy(name) for name in strategy_names}
    env = environment(backend)
    print(summary_line(env), file=sys.stderr)
    os.makedirs(args.out_dir, exist_ok=True)
    rule = OutputRule(overwrite=args.overwrite)
    for path in report.result_paths(args.out_dir, args.name):
        rule.check_file(path, "--out-dir/--name")  # before the long work
    specs = {m: get_model_spec(m) for m in models}
    data = {} if args.synthetic_input else _datasets(args, {s.layout for s in specs.values()}, args.out_dir)
    rows, t_start = [], time.time()
    command = "python -m benchmarks.step_time " + " ".join(argv if argv is not None else sys.argv[1:])

    def payload() -> dict:
        return {"benchmark": "step_time", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
                "settings": vars(args), "env": env,
                "flops_convention": "2 FLOP per multiply-accumulate of conv/dense/attention/RNN layers; "
                                    "train step = 3 x forward (benchmarks/flops.py)",
                "results": rows}

    def partial(row) -> None:  # after every configuration: a killed sweep keeps what it measured
        report.write_all({**payload(), "partial": True}, args.out_dir, args.name, with_plot=False, rule=rule)

    with tempfile.TemporaryDirectory(prefix="trainer_runs_", dir=args.out_dir) as runs:
        for k, (name, spec) in enumerate(specs.items()):
            deadline = None
            if args.budget_s is not None:  # this model's even share of what is left
                left = t_start + args.budget_s - time.time()
                deadline = time.time() + max(left, 0) / (len(specs) - k)
            config = _model_config(spec, args.preset)
            layout = get_layout(spec.layout)
            flops, params = _count_flops(spec, config, layout)
            for sname in strategy_names:
                ctx = {"spec": spec, "config": config, "layout": layout, "flops": flops, "params": params,
                       "peak_tflops": peaks, "backend": backend, "runs": runs, "data": data.get(spec.layout),
                       "records": data[spec.layout][0].records(data[spec.layout][1]) if spec.layout in data else None,
                       "host_memory_gb": None if env.get("accelerator_count") else env.get("mem_total_gb"),
                       "deadline": deadline}
                ctx.update(_strategy_fields(args, env, name, sname, strategies.get(sname), params))
                _sweep(args, ctx, precisions, jits, batches, done=lambda row: (rows.append(row), partial(row)))
    env.update(load_average_end=load_average(), wall_s=round(time.time() - t_start, 1))
    paths = report.write_all(payload(), args.out_dir, args.name, with_plot=not args.no_plot, rule=rule)
    print(report.table1_markdown(rows))
    for p in paths:
        print(f"wrote {p}", file=sys.stderr)
    return 1 if any(r["status"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
