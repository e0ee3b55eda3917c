"""The layering docs/development/architecture.md promises, checked on the source (every import, lazy ones too).

data_prep < seq2exp.layers < seq2exp.engine < model packages, seq2exp.analysis < seq2exp.api, seq2exp.cli; the
engine finds models through `seq2exp.models` entry points, never by importing them.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("data_prep", "seq2exp", "crmnet", "legnet_tf", "dream_peers", "benchmarks")
MODELS = ("crmnet", "legnet_tf", "dream_peers")
#: a module (prefix) -> the project modules (prefixes) it must never import
FORBIDDEN = {
    "data_prep": ("seq2exp", *MODELS, "benchmarks"),
    "seq2exp.layers": ("seq2exp.engine", "seq2exp.analysis", "seq2exp.cli", "seq2exp.api", *MODELS),
    "seq2exp.engine": ("seq2exp.analysis", "seq2exp.cli", "seq2exp.api", *MODELS, "benchmarks"),
    "seq2exp.analysis": ("seq2exp.cli", "seq2exp.api", *MODELS, "benchmarks"),
    # the public API sits on the engine, analysis and the commands' checks; the commands call it
    "seq2exp.api": (*MODELS, "benchmarks"),
    "seq2exp.cli": (*MODELS, "benchmarks"),
    **{m: ("seq2exp.analysis", "seq2exp.cli", "seq2exp.api", "benchmarks") for m in MODELS},
}
#: `python -m crmnet.train` and friends are command-line entry points that live in the model package
COMMAND_SHIMS = {f"{m}.{c}" for m in MODELS for c in ("train", "evaluate", "predict")}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: pathlib.Path, name: str, modules: dict) -> set[str]:
    """Project modules `path` imports anywhere (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_lower_layers_never_import_higher_ones(graph):
    bad = [f"{m} imports {t}" for m, targets in graph.items() if m not in COMMAND_SHIMS for t in targets
           for layer, banned in FORBIDDEN.items() if _under(m, layer) and any(_under(t, b) for b in banned)]
    assert not bad, "\n".join(sorted(bad))


def test_no_module_under_seq2exp_imports_a_model_package(graph):
    bad = [f"{m} imports {t}" for m, targets in graph.items() if _under(m, "seq2exp")
           for t in targets if any(_under(t, p) for p in MODELS)]
    assert not bad, "\n".join(sorted(bad))


def test_import_graph_has_no_cycles(graph):
    """Tarjan's strongly connected components over the module graph: every one must be a single module."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_models_are_declared_not_listed(graph):
    """The engine's registry reads `seq2exp.models` entry points (setup.cfg), and every one loads."""
    from seq2exp.engine.registry import declared_models, get_model_spec

    declared = declared_models()
    assert {"crmnet", "legnet", "cnn_bilstm", "macaron"} <= set(declared)
    for name in declared:
        assert get_model_spec(name).name == name
    source = (ROOT / "seq2exp" / "engine" / "registry.py").read_text()
    assert not any(f'"{m}' in source for m in MODELS + ("legnet", "cnn_bilstm", "macaron"))
