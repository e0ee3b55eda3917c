"""Markdown tables for the docs from the committed result files in `benchmarks/results/`.

The docs never type a measured number: `docs/hooks.py` replaces `<!-- table: NAME -->` with `render(NAME)`
at every build, so a page shows exactly what the result file holds, with when, where and at which commit it
was measured. Three formats are read:

- `"kind": "table"`: a table transcribed from an earlier record (columns, rows, provenance, notes);
- `"kind": "demo_seeds"`: written by `benchmarks/demo_seeds.py` (one backend, several seeds);
- the JSON the benchmark scripts write themselves (`"benchmark": "step_time"`, `"crmnet_step"`, ...: `env`,
  `results`, and for step_time the Table-1 layout of `benchmarks.report`).

`python -m benchmarks.tables [NAME ...]` prints the tables (all of them without a name).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class ResultError(ValueError):
    """A result file that is missing or lacks what a table needs (the docs build fails on it)."""


def path_of(name: str) -> str:
    path = name if name.endswith(".json") else os.path.join(RESULTS, name + ".json")
    if not os.path.isfile(path):
        known = ", ".join(sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(RESULTS, "*.json"))))
        raise ResultError(f"{path}: no such result file (known: {known})")
    return path


def load(name: str) -> dict:
    path = path_of(name)
    try:
        with open(path) as fh:
            data = json.load(fh)
    except ValueError as err:
        raise ResultError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object")
    return data


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: list, rows: list) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if len(row) != len(columns):
            raise ResultError(f"row {row!r} has {len(row)} cells for {len(columns)} columns")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def provenance_line(p: dict) -> str:
    """When, where and with what a result was measured, as one sentence under its table."""
    parts = []
    if p.get("date"):
        parts.append(f"measured {p['date']}")
    if p.get("commit"):
        parts.append(f"commit `{p['commit']}`" + (" (uncommitted changes)" if p.get("dirty") else ""))
    if p.get("machine"):
        parts.append(str(p["machine"]))
    if p.get("cpu_model"):
        flags = p.get("cpu_flags")
        parts.append(f"CPU {p['cpu_model']}" + (f" (flags: {', '.join(flags)})" if flags else ""))
    if p.get("load"):
        parts.append(f"`uptime` load {p['load']}")
    versions = p.get("versions")
    if isinstance(versions, dict):
        parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    elif versions:
        parts.append(str(versions))
    text = "; ".join(parts) or "provenance not recorded"
    if p.get("transcribed"):
        text += f". Transcribed {p['transcribed']}"
    return f"*{text}.*"


def _table_kind(data: dict) -> str:
    for key in ("columns", "rows", "provenance"):
        if key not in data:
            raise ResultError(f"table result lacks {key!r}")
    out = [markdown_table(data["columns"], data["rows"]), "", provenance_line(data["provenance"])]
    if data.get("command"):
        out += ["", f"Command: `{data['command']}`"]
    out += ["", *(f"- {n}" for n in data.get("notes", []))] if data.get("notes") else []
    return "\n".join(out)


def _seed_row(backend: str, run: dict) -> list:
    test = run["test"]
    main, truth = (next((r for n, r in test.items() if "truth" not in n), None),
                   next((r for n, r in test.items() if "truth" in n), None))
    if main is None:
        raise ResultError(f"seed {run.get('seed')}: no test set in the result")
    return [backend, run["seed"], f"{main['model']['pearson']:.3f}",
            f"{truth['model']['pearson']:.3f}" if truth else "",
            f"{main['ridge_6mer']['pearson']:.3f}", f"{run['val'].get('pearson', float('nan')):.3f}",
            f"{run['wall_s']:.0f} s"]


def render_demo_seeds(names: list[str]) -> str:
    """One table over several demo_seeds files (one per backend): per seed, then the mean per backend."""
    rows, provenance = [], []
    for name in names:
        data = load(name)
        if data.get("kind") != "demo_seeds":
            raise ResultError(f"{path_of(name)}: not a demo_seeds result")
        backend = data["provenance"]["keras_backend"]
        if not data["runs"]:
            raise ResultError(f"{path_of(name)}: no seeds recorded")
        seed_rows = [_seed_row(backend, run) for run in data["runs"]]
        rows += seed_rows
        if len(seed_rows) > 1:
            mean = [f"{statistics.mean(float(r[i]) for r in seed_rows):.3f}" if all(r[i] for r in seed_rows) else ""
                    for i in range(2, 6)]
            rows.append([f"**{backend}, mean**", f"{len(seed_rows)} seeds", *mean, ""])
        p = data["provenance"]
        loads = [run.get("load_before") for run in data["runs"] if run.get("load_before")]
        load_text = (loads[0].split("load average:")[-1].strip() + " ... " + data["runs"][-1]["load_after"]
                     .split("load average:")[-1].strip()) if loads and data["runs"][-1].get("load_after") else None
        provenance.append(f"- **{backend}**: " + provenance_line({**p, "load": load_text}).strip("*"))
    columns = ["backend", "seed", "test r", "test r vs noiseless truth", "6-mer ridge r", "validation r",
               "wall time (whole command)"]
    return "\n".join([markdown_table(columns, rows), "", *provenance])


def _script_kind(data: dict) -> str:
    """The JSON a benchmark script wrote itself (env + results)."""
    env = data.get("env", {})
    if data.get("benchmark") == "step_time":
        from benchmarks.report import table1_markdown

        body = table1_markdown(data["results"])
    elif data.get("markdown"):
        body = data["markdown"]
    elif data.get("results") and isinstance(data["results"], list) and isinstance(data["results"][0], dict):
        columns = list(data["results"][0])
        body = markdown_table(columns, [[r.get(c) for c in columns] for r in data["results"]])
    else:
        raise ResultError("a benchmark script's JSON without results")
    load = env.get("load_average")
    versions = {k: env[k] for k in ("tensorflow", "jax", "keras", "torch") if env.get(k)}
    p = {"date": data.get("time"), "machine": env.get("hostname"), "cpu_model": env.get("cpu_model"),
         "load": " ".join(map(str, load)) if load else None, "versions": versions or None,
         **data.get("provenance", {})}
    return "\n".join([body, "", provenance_line(p)] + ([f"\nCommand: `{data['command']}`"] if data.get("command")
                                                         else []))


def render(name: str) -> str:
    """The markdown for one result file (or several demo_seeds files joined with '+')."""
    if "+" in name:
        return render_demo_seeds(name.split("+"))
    data = load(name)
    try:
        if data.get("kind") == "table":
            return _table_kind(data)
        if data.get("kind") == "demo_seeds":
            return render_demo_seeds([name])
        if "results" in data:
            return _script_kind(data)
    except (KeyError, TypeError, IndexError) as err:
        raise ResultError(f"{path_of(name)}: {type(err).__name__}: {err}") from None
    except ResultError as err:
        raise ResultError(f"{path_of(name)}: {err}") from None
    raise ResultError(f"{path_of(name)}: unknown result format (no 'kind' and no 'results')")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="result names (files in benchmarks/results without .json, or paths); default: all")
    args = p.parse_args(argv)
    names = args.names or sorted(os.path.basename(f)[:-5] for f in glob.glob(os.path.join(RESULTS, "*.json")))
    try:
        for name in names:
            print(f"## {name}\n\n{render(name)}\n")
    except ResultError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
