"""The embedded demo's metrics over several seeds on one backend, with what produced them.

The demo's test r depends on the initial weights (each backend has its own RNG), so the docs show it per
seed and backend from these files, never as one "exact" output. Each seed runs the demo command itself
(`python -m seq2exp.train --model crmnet --seed N`, the demo defaults) in its own temporary run folder.

    KERAS_BACKEND=jax python -m benchmarks.demo_seeds --seeds 0,1,2 --out benchmarks/results/demo_seeds_jax.json

The result carries the date, commit (and whether the checkout was dirty), Python / Keras / backend versions,
CPU model and its bf16/AMX flags from lscpu, and the `uptime` load before and after each seed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

from benchmarks.env_info import cpu_model, load_average

#: the packages whose versions decide the demo's numbers (the backend's, Keras', numpy's RNG and kernels)
VERSIONED = ("keras", "tensorflow", "jax", "jaxlib", "numpy")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_flags() -> list[str]:
    """The CPU flags that change float32/bfloat16 kernels (lscpu's Flags line: bf16, AMX, AVX-512)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags:")), [])
    return sorted(f for f in flags if re.search(r"bf16|amx|avx512", f))


def uptime() -> str | None:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(backend: str) -> dict:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
        "keras_backend": backend,
        "versions": {p: v for p in VERSIONED if (v := _version(p))},
    }


def run_seed(seed: int, model: str, extra: list[str], verbose: bool) -> dict:
    """One demo run; its metrics.json read back (the numbers the command printed)."""
    with tempfile.TemporaryDirectory(prefix="demo_seed_") as tmp:
        run_dir = os.path.join(tmp, "run")
        cmd = [sys.executable, "-m", "seq2exp.train", "--model", model, "--run-dir", run_dir,
               "--seed", str(seed), *extra]
        load_before, t0 = uptime(), time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - t0
        if verbose or proc.returncode:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        if proc.returncode:
            raise SystemExit(f"demo_seeds: seed {seed} failed (exit {proc.returncode}): {' '.join(cmd)}")
        with open(os.path.join(run_dir, "metrics.json")) as fh:
            metrics = json.load(fh)
    test = {name: {"model": {k: r["model"][k] for k in ("n", "pearson", "spearman", "r2")},
                   "ridge_6mer": {k: r["ridge_6mer"][k] for k in ("pearson", "spearman", "r2")}}
            for name, r in metrics["test"].items()}
    val = {k: metrics["val"][k] for k in ("pearson", "spearman", "r2") if k in metrics.get("val", {})}
    return {"seed": seed, "test": test, "val": val, "wall_s": round(wall, 1),
            "load_before": load_before, "load_after": uptime(), "command": " ".join(cmd[1:])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.demo_seeds", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    p.add_argument("--model", default="crmnet", help="registered model (default: %(default)s)")
    p.add_argument("--out", required=True, help="the JSON result file to write (refused if it exists)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--verbose", action="store_true", help="echo each demo's output")
    p.add_argument("extra", nargs="*", help="flags passed on to the train command (after --)")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers; got {args.seeds!r}")
    if os.path.exists(args.out) and not args.overwrite:
        p.error(f"--out {args.out} exists; pass --overwrite to replace it")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    result = {"kind": "demo_seeds", "title": f"The demo ({args.model}) over seeds, {backend} backend",
              "source": "measured by benchmarks/demo_seeds.py", "model": args.model,
              "provenance": provenance(backend), "load_at_start": load_average(), "runs": []}
    for seed in seeds:
        result["runs"].append(run_seed(seed, args.model, args.extra, args.verbose))
        print(f"seed {seed}: " + ", ".join(f"{n} r {r['model']['pearson']:.3f}"
                                           for n, r in result["runs"][-1]["test"].items()), flush=True)
        tmp = args.out + ".partial"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=1)
        os.replace(tmp, args.out)  # a killed sweep keeps the seeds it finished
    return 0


if __name__ == "__main__":
    sys.exit(main())
