"""benchmarks/tables.py: every committed result renders with its provenance, and the docs name only results
that exist (the docs build fails otherwise; this finds it in seconds)."""
from __future__ import annotations

import glob
import json
import os
import pathlib
import re

import pytest

from benchmarks import tables

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = sorted(os.path.basename(p)[:-5] for p in glob.glob(str(ROOT / "benchmarks" / "results" / "*.json")))


@pytest.mark.parametrize("name", RESULTS)
def test_every_result_file_renders_with_where_and_when(name):
    data = tables.load(name)
    text = tables.render(name)
    assert text.count("\n|") >= 2, "a table with a header and at least one row"
    p = data.get("provenance", {})
    if data.get("kind") == "table" and p.get("date"):  # the published paper table has no date of ours
        assert p["date"] in text and p["commit"] in text and p.get("load") and p["load"] in text
    if data.get("kind") == "demo_seeds":
        assert p["commit"] in text and p["versions"]["keras"] in text and p["cpu_model"] in text


def test_docs_name_only_existing_results():
    names = set()
    for page in (ROOT / "docs").rglob("*.md"):
        for m in re.finditer(r"<!--\s*table:\s*(\S+)\s*-->", page.read_text()):
            names.update(m.group(1).split("+"))
    assert names, "the benchmark pages use result tables"
    assert not names - set(RESULTS), f"docs name result files that do not exist: {sorted(names - set(RESULTS))}"


def test_demo_seeds_mean_and_both_backends(tmp_path):
    def result(backend, rs):
        runs = [{"seed": s, "wall_s": 100.0, "load_before": "up 1 min,  load average: 1.00, 1.00, 1.00",
                 "load_after": "up 2 min,  load average: 2.00, 2.00, 2.00", "val": {"pearson": 0.5},
                 "test": {"test.crmnet": {"model": {"pearson": r}, "ridge_6mer": {"pearson": 0.7}},
                          "test_truth.crmnet": {"model": {"pearson": r + 0.1}, "ridge_6mer": {"pearson": 0.8}}}}
                for s, r in enumerate(rs)]
        path = tmp_path / f"{backend}.json"
        path.write_text(json.dumps({"kind": "demo_seeds", "runs": runs, "provenance": {
            "keras_backend": backend, "date": "D", "commit": "abc1234", "cpu_model": "CPU X",
            "versions": {"keras": "3.0"}}}))
        return str(path)

    text = tables.render(result("jax", [0.7, 0.8]) + "+" + result("tensorflow", [0.6]))
    assert "| **jax, mean** | 2 seeds | 0.750 | 0.850 | 0.700 | 0.500 |  |" in text
    assert "tensorflow, mean" not in text  # one seed has no mean row
    assert "load 1.00, 1.00, 1.00 ... 2.00, 2.00, 2.00" in text


def test_a_benchmark_scripts_own_json_renders(tmp_path):
    path = tmp_path / "engine_overhead.json"
    path.write_text(json.dumps({"benchmark": "engine_overhead", "time": "2026-12-06T01:35:00+0000",
                                "env": {"cpu_model": "CPU X", "load_average": [1.0, 1.1, 1.2], "keras": "3.15.1",
                                        "hostname": "h"},
                                "results": [{"model": "crmnet", "batch": 64, "ms": 29.0}]}))
    text = tables.render(str(path))
    assert "| crmnet | 64 | 29 |" in text and "2026-12-06T01:35:00+0000" in text and "load 1.0 1.1 1.2" in text


def test_a_result_missing_what_a_table_needs_is_an_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"kind": "table", "columns": ["a"], "rows": [[1]]}))
    with pytest.raises(tables.ResultError, match="provenance"):
        tables.render(str(path))
    with pytest.raises(tables.ResultError, match="no such result file"):
        tables.render("no_such_result")
