"""Results of ``benchmarks.step_time`` as CSV, JSON, Markdown (a table shaped like the CRMnet paper's
Table 1 plus a detailed one) and a plot of time per step and sequences/s against batch size.

``python -m benchmarks.report RUN.json [RUN2.json ...] --out-dir DIR`` re-renders, e.g. to put a
TensorFlow and a JAX run, or two machines, into one table and one plot.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys

from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule
from seq2exp.engine.settings import PRECISIONS as PRECISION_ORDER

CSV_FIELDS = (
    "model", "preset", "params", "backend", "framework", "keras", "hardware", "accelerator", "accelerator_count",
    "cpu_model", "hostname", "strategy", "strategy_class", "replicas", "devices", "input", "precision", "jit",
    "steps_per_execution", "batch_per_replica", "global_batch", "status", "oom_reason", "error", "timed_steps",
    "median_s", "p25_s", "p75_s", "min_s", "max_s", "mean_s", "stdev_s", "iqr_rel", "first_step_s", "seq_per_s",
    "flops_fwd_per_seq", "flops_per_step", "flops_uncounted_layers", "tflops_achieved", "peak_tflops", "utilisation",
    "memory_kind",
    "memory_gb", "device_peak_gb", "host_rss_delta_gb", "estimated_memory_gb", "dataset_size", "steps_per_epoch",
    "epoch_s", "epochs", "train_s", "bad_steps", "stopped_by_time_limit", "loss_first", "loss_last",
    "load_average_before", "load_average_after", "warmup_s", "times_s",
)
GROUP_KEYS = ("model", "preset", "backend", "hardware", "strategy", "replicas", "jit", "input")


def _cell(v):
    if isinstance(v, (list, tuple)):
        return ";".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def write_csv(rows: list, path: str, rule: OutputRule | None = None) -> str:
    with (rule or OutputRule(overwrite=True)).open(path) as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_FIELDS), extrasaction="ignore", restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in CSV_FIELDS})
    return path


def write_json(payload: dict, path: str, rule: OutputRule | None = None) -> str:
    with (rule or OutputRule(overwrite=True)).open(path) as fh:
        json.dump(payload, fh, indent=1, default=str)
    return path


def duration(seconds) -> str:
    """12.3 s / 4:05 / 1:02:03 / 3 d 04:05:06."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.3g} s"
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    text = f"{h}:{m:02d}:{s:02d}" if h or d else f"{m}:{s:02d}"
    return f"{d} d {h:02d}:{m:02d}:{s:02d}" if d else text


def _num(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"


def _status_text(r: dict) -> str:
    return {"oom": "OOM", "skipped": "(> OOM)", "error": "error"}.get(r["status"], r["status"])


def _groups(rows: list) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
    return out


def _precisions(rows: list) -> list:
    present = {r["precision"] for r in rows}
    return [p for p in PRECISION_ORDER if p in present] + sorted(present - set(PRECISION_ORDER))


def table1_markdown(rows: list) -> str:
    """Per model/hardware/strategy/XLA/input: one row per local batch size, the precisions side by side
    (time per step with its interquartile range, sequences/s, projected epoch and N-epoch time)."""
    parts = []
    for key, group in _groups(rows).items():
        g = dict(zip(GROUP_KEYS, key))
        first = group[0]
        epochs = first.get("epochs", 20)
        params = f"{first['params']:,} params, " if first.get("params") else ""
        parts.append(f"#### {g['model']} ({g['preset']}, {params}{g['backend']} {first.get('framework', '')}) on "
                     f"{g['hardware']}: strategy {g['strategy']} x{g['replicas']}, XLA {'on' if g['jit'] else 'off'}, "
                     f"{g['input']} input; epoch = {first.get('dataset_size', 0):,} sequences")
        precisions = _precisions(group)
        head = ["local batch", "global batch"]
        for p in precisions:
            head += [f"{p} s/step (IQR)", f"{p} seq/s", f"{p} epoch", f"{p} {epochs} epochs"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for batch in sorted({r["batch_per_replica"] for r in group}):
            cells = [f"{batch:,}", ""]
            for p in precisions:
                r = next((x for x in group if x["batch_per_replica"] == batch and x["precision"] == p), None)
                if r is None:
                    cells += ["", "", "", ""]
                    continue
                cells[1] = f"{r['global_batch']:,}"
                if r["status"] != "ok":
                    cells += [_status_text(r), "", "", ""]
                    continue
                cells += [f"{_num(r['median_s'], 4)} ({_num(r['p25_s'], 3)}-{_num(r['p75_s'], 3)})",
                          _num(r["seq_per_s"], 4), duration(r["epoch_s"]), duration(r["train_s"])]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def details_markdown(rows: list) -> str:
    head = ("model", "precision", "XLA", "strategy", "batch/replica", "status", "median s/step", "min-max",
            "timed", "seq/s", "TFLOP/step", "TFLOP/s", "util.", "memory (GB, kind)", "1st step s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 5 + "---:|" * (len(head) - 5)]
    for r in rows:
        ok = r["status"] == "ok"
        mem = f"{_num(r.get('memory_gb'))} {r.get('memory_kind', '')}" if r.get("memory_gb") is not None else "-"
        lines.append("| " + " | ".join([
            f"{r['model']}/{r['preset']}", r["precision"], "on" if r["jit"] else "off",
            f"{r['strategy']} x{r['replicas']}", f"{r['batch_per_replica']:,}",
            "ok" if ok else f"{_status_text(r)}: {r.get('oom_reason') or r.get('error') or ''}"[:90],
            _num(r.get("median_s"), 4) if ok else "-",
            f"{_num(r['min_s'])}-{_num(r['max_s'])}" if ok else "-", str(r.get("timed_steps", "-")),
            _num(r.get("seq_per_s"), 4) if ok else "-",
            _num(r["flops_per_step"] / 1e12) if r.get("flops_per_step") else "-",
            _num(r.get("tflops_achieved")) if ok else "-",
            f"{100 * r['utilisation']:.2g}%" if r.get("utilisation") is not None else "-",
            mem if ok or r.get("memory_gb") else "-", _num(r.get("first_step_s")),
        ]) + " |")
    return "\n".join(lines)


def _label(r: dict, keys) -> str:
    parts = {"model": f"{r['model']}/{r['preset']}", "precision": r["precision"],
             "strategy": f"{r['strategy']}x{r['replicas']}", "jit": f"XLA {'on' if r['jit'] else 'off'}",
             "backend": r["backend"], "input": r["input"], "hardware": r.get("hardware", "")}
    return " ".join(parts[k] for k in keys)


def plot(rows: list, path: str) -> str | None:
    """Time per step and sequences/s vs per-replica batch size; one line per configuration, a dotted
    vertical line at the batch that ran out of memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config_keys = ("model", "precision", "strategy", "jit", "backend", "input", "hardware")
    varying = [k for k in config_keys if len({_label(r, [k]) for r in rows}) > 1] or ["model", "precision"]
    lines: dict = {}
    for r in rows:
        lines.setdefault(_label(r, varying), []).append(r)
    batches = sorted({r["batch_per_replica"] for r in rows})
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, (label, group) in enumerate(sorted(lines.items())):
        color = f"C{i % 10}"
        ok = sorted((r for r in group if r["status"] == "ok"), key=lambda r: r["batch_per_replica"])
        xs = [r["batch_per_replica"] for r in ok]
        if ok:
            ax_t.errorbar(xs, [r["median_s"] for r in ok], fmt="o-", color=color, label=label, capsize=3,
                          yerr=[[r["median_s"] - r["p25_s"] for r in ok], [r["p75_s"] - r["median_s"] for r in ok]])
            ax_s.plot(xs, [r["seq_per_s"] for r in ok], "o-", color=color, label=label)
        for r in group:
            if r["status"] == "oom":
                for ax in (ax_t, ax_s):
                    ax.axvline(r["batch_per_replica"], color=color, ls=":", lw=1.2)
    for ax, title in ((ax_t, "time per step (s), median with IQR"), (ax_s, "sequences / s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batches, [f"{b:,}" for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("per-replica batch size (dotted: out of memory)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax_s.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
    hw = sorted({r.get("hardware", "") for r in rows})
    fig.suptitle("; ".join(hw)[:140], fontsize=9)
    fig.tight_layout(rect=(0, 0.08 + 0.03 * ((len(labels) - 1) // 3 if handles else 0), 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown_document(payload: dict) -> str:
    env, rows = payload.get("env", {}), payload["results"]
    fw = f"TensorFlow {env['tensorflow']}" if env.get("tensorflow") else f"JAX {env.get('jax', '?')}"
    accel = (f"{env['accelerator_count']} x {env['accelerator']}" if env.get("accelerator_count")
             else "no accelerator")
    return "\n".join([
        f"## step_time results ({payload.get('time', '')})", "",
        f"`{payload.get('command', '')}`", "",
        f"Environment: {env.get('cpu_model')} ({env.get('os_cpu_count')} cores), "
        f"{accel}; {fw}, Keras {env.get('keras')} "
        f"(backend {env.get('keras_backend')}); load average {env.get('load_average')} at the start, "
        f"{env.get('load_average_end')} at the end.", "",
        f"FLOPs: {payload.get('flops_convention', '')}. Memory: device_peak = allocator peak per configuration; "
        "device_peak_process = process peak so far (JAX); host_rss_delta = process RSS increase during the "
        "configuration (CPU; memory the allocator kept from earlier configurations is not counted).", "",
        table1_markdown(rows), "", "Details:", "", details_markdown(rows), ""])


def result_paths(out_dir: str, name: str) -> list[str]:
    """The files `write_all` writes (checked by the commands before their long work)."""
    stem = os.path.join(out_dir, name)
    return [stem + ext for ext in (".csv", ".json", ".md", ".png")]


def write_all(payload: dict, out_dir: str, name: str, with_plot: bool = True, rule: OutputRule | None = None) -> list:
    """CSV + JSON + Markdown (+ PNG) into out_dir, each whole or not at all; returns the paths. `rule`
    (data_prep.outputs) says what may be replaced; without one an existing file is replaced."""
    rule = rule or OutputRule(overwrite=True)
    os.makedirs(out_dir, exist_ok=True)
    csv_path, json_path, md_path, png_path = result_paths(out_dir, name)
    paths = [write_csv(payload["results"], csv_path, rule), write_json(payload, json_path, rule)]
    with rule.open(md_path) as fh:
        fh.write(markdown_document(payload))
    paths.append(md_path)
    if with_plot and payload["results"]:
        with rule.staged(png_path) as tmp:
            plot(payload["results"], tmp)
        paths.append(png_path)
    return paths


@one_line_errors("python -m benchmarks.report")
def main(argv=None) -> int:
    p = Parser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="step_time JSON files")
    p.add_argument("--out-dir", default="bench_out/step_time")
    p.add_argument("--name", default="combined")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    args = p.parse_args(argv)
    rule = OutputRule(args.results, overwrite=args.overwrite)
    os.makedirs(args.out_dir, exist_ok=True)
    for path in result_paths(args.out_dir, args.name):
        rule.check_file(path, "--out-dir/--name")
    payloads = []
    for path in args.results:
        with open(path) as fh:
            payloads.append(json.load(fh))
    merged = {**payloads[0], "command": " + ".join(x.get("command", "") for x in payloads),
              "results": [r for x in payloads for r in x["results"]]}
    for path in write_all(merged, args.out_dir, args.name, rule=rule):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
