"""Every runnable code block of the docs and the README runs, so the docs cannot drift from the code.

One test per document: its blocks run in order in a fresh temporary folder (python blocks share one
interpreter per document, like a notebook; bash blocks run with `bash -eo pipefail`). A comment right before
a block adjusts it (several separated by ';'):

    <!-- test: skip REASON -->          not run; the reason is required and reported
    <!-- test: train-args FLAGS -->    FLAGS appended to every training command of the block (a tiny budget)
    <!-- test: needs demo -->          a tiny demo run is placed at runs/demo first

Set-up steps (`python3 -m venv`, activating a venv, `pip install`) are not run; `text` blocks are output and
data blocks (`yaml`, `json`, ...) are not commands. A block in any other language, or without one, fails.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
NOT_RUN = {"text", "yaml", "json", "toml", "tsv", "csv"}
#: the tiny budget of the shared demo run (and of every doc's demo block through its train-args)
DEMO_ARGS = ["--epochs", "1", "--demo-size", "1500"]
FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)[^\n]*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*test:\s*(.*?)\s*-->\s*$")
TRAIN = re.compile(r"python3? -m (seq2exp|crmnet|legnet_tf)\.train\b")
SETUP = re.compile(r"^\s*(python3? -m venv\b|\. \S*activate\b|source \S*activate\b|pip3? install\b|"
                   r"python3? -m pip install\b)")
#: a hang, not slowness, fails the test: the tiny trainings take well under this on a loaded 2-core machine
HANG_S = 1800


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    train_args: list[str] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def documents() -> list[pathlib.Path]:
    """README first: its demo run is reused by the documents that need one."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(path: pathlib.Path) -> list[Block]:
    rel = str(path.relative_to(ROOT))
    lines = path.read_text().splitlines()
    blocks, pending, i = [], None, 0
    while i < len(lines):
        d = DIRECTIVE.match(lines[i])
        f = FENCE.match(lines[i])
        if d:
            pending = (i + 1, d.group(1))
        elif f:
            indent, ticks, lang = f.groups()
            end = next((j for j in range(i + 1, len(lines))
                        if lines[j].strip().startswith(ticks) and not lines[j].strip().strip("`")), None)
            if end is None:
                raise AssertionError(f"{rel}:{i + 1}: code block never closed")
            code = textwrap.dedent("\n".join(line[len(indent):] for line in lines[i + 1:end]))
            block = Block(rel, i + 1, lang.lower(), code)
            if pending is not None:
                apply_directive(block, *pending)
            blocks.append(block)
            pending, i = None, end
        elif lines[i].strip():
            pending = None  # a directive applies to the block right after it (blank lines allowed)
        i += 1
    return blocks


def apply_directive(block: Block, line: int, text: str) -> None:
    parts = [text] if text.startswith("skip") else text.split(";")  # a reason may hold ';'
    for part in filter(None, (p.strip() for p in parts)):
        word, _, rest = part.partition(" ")
        if word == "skip":
            if not rest.strip():
                raise AssertionError(f"{block.doc}:{line}: 'skip' needs a reason")
            block.skip = rest.strip()
        elif word == "train-args":
            block.train_args += rest.split()
        elif word == "needs" and rest.strip() == "demo":
            block.needs.add("demo")
        else:
            raise AssertionError(f"{block.doc}:{line}: unknown test directive {part!r}")


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (outside quotes), so appended flags reach the command."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line


def shell_script(block: Block) -> str:
    """The block as it runs: continuation lines joined, set-up steps dropped, train-args appended."""
    out = []
    for line in re.sub(r"\s*\\\n\s*", " ", block.code).splitlines():
        line = _strip_comment(line)
        parts = [p for p in line.split(" && ") if not SETUP.match(p)]
        if block.train_args:
            parts = [p + " " + " ".join(block.train_args) if TRAIN.search(p) else p for p in parts]
        if parts and any(p.strip() for p in parts):
            out.append(" && ".join(parts))
    return "\n".join(out)


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


KERNEL = r"""
import json, sys, traceback
namespace = {"__name__": "__main__"}
control = sys.stdout
for request in sys.stdin:
    code = json.loads(request)["code"]
    sys.stdout = sys.stderr  # the block's own output goes to the log
    try:
        exec(compile(code, "<doc block>", "exec"), namespace)
        reply = {"ok": True}
    except BaseException:
        reply = {"ok": False, "error": traceback.format_exc(limit=-8)}
    sys.stdout = control
    control.write(json.dumps(reply) + "\n")
    control.flush()
"""


class Kernel:
    """One python interpreter per document: blocks run in it one after another, sharing their names."""

    def __init__(self, cwd: pathlib.Path, log: pathlib.Path):
        self.log = open(log, "a")
        self.proc = subprocess.Popen([sys.executable, "-c", KERNEL], cwd=cwd, env=environment(), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

    def run(self, code: str) -> str | None:
        self.proc.stdin.write(json.dumps({"code": code}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            return f"the interpreter exited (status {self.proc.wait()})"
        reply = json.loads(reply)
        return None if reply["ok"] else reply["error"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _tail(path: pathlib.Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


_demo_source: dict[str, pathlib.Path] = {}


def demo_run(factory) -> pathlib.Path:
    """A tiny demo run folder, trained once per session (or taken from the README's own demo block)."""
    if "demo" not in _demo_source:
        d = factory.mktemp("demo")
        log = d / "train.log"
        with open(log, "w") as fh:
            rc = subprocess.run([sys.executable, "-m", "crmnet.train", "--run-dir", "runs/demo", *DEMO_ARGS], cwd=d,
                                env=environment(), stdout=fh, stderr=subprocess.STDOUT, timeout=HANG_S).returncode
        assert rc == 0, f"the shared demo run failed (exit {rc}):\n{_tail(log)}"
        _demo_source["demo"] = d / "runs" / "demo"
    return _demo_source["demo"]


def run_document(doc: pathlib.Path, work: pathlib.Path, factory) -> tuple[list[str], list[str]]:
    """Runs a document's blocks in order; returns (failures, skipped with reasons)."""
    failures, skipped, kernel = [], [], None
    log = work / "blocks.log"
    try:
        for block in parse(doc):
            if block.lang in NOT_RUN:
                continue
            if block.lang not in RUN:
                failures.append(f"{block.where()}: a code block needs a language (python, bash, text, ...); "
                                f"got {block.lang!r}")
                continue
            if block.skip:
                skipped.append(f"{block.where()}: {block.skip}")
                continue
            if "demo" in block.needs and not (work / "runs" / "demo" / "model.keras").exists():
                shutil.copytree(demo_run(factory), work / "runs" / "demo", dirs_exist_ok=True)
            with open(log, "a") as fh:
                fh.write(f"\n===== {block.where()} ({block.lang})\n")
            if RUN[block.lang] == "python":
                kernel = kernel or Kernel(work, log)
                error = kernel.run(block.code)
            else:
                with open(log, "a") as fh:
                    proc = subprocess.run(["bash", "-eo", "pipefail", "-c", shell_script(block)], cwd=work,
                                          env=environment(), stdout=fh, stderr=subprocess.STDOUT, timeout=HANG_S)
                error = None if proc.returncode == 0 else f"exit status {proc.returncode}"
            if error:
                failures.append(f"{block.where()} ({block.lang}) failed: {error}\n--- its output (end):\n"
                                f"{_tail(log)}")
            if "demo" not in _demo_source and (work / "runs" / "demo" / "model.keras").exists():
                _demo_source["demo"] = work / "runs" / "demo"  # a demo block's run, reused by later documents
    finally:
        if kernel is not None:
            kernel.close()
    return failures, skipped


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(doc, tmp_path_factory):
    work = tmp_path_factory.mktemp(re.sub(r"\W+", "_", str(doc.relative_to(ROOT))))
    failures, skipped = run_document(doc, work, tmp_path_factory)
    for s in skipped:
        print(f"not run: {s}")
    assert not failures, ("\n\n".join(failures) + "\n(later failures of a document may follow from the first)")


def test_every_skip_has_a_reason_and_every_block_a_language():
    for doc in documents():
        for block in parse(doc):  # parse raises on a skip without a reason or an unknown directive
            assert block.lang, f"{block.where()}: a code block needs a language"


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "load average" not in text.lower(), "measurements and their load belong in the docs' benchmarks"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_shell_blocks_are_prepared_as_documented():
    block = Block("x.md", 1, "bash", "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[tf]' && "
                                      "python -m crmnet.train --run-dir runs/demo   # the demo\n"
                                      "python -m seq2exp.evaluate runs/demo t.tsv \\\n    --report r\n",
                  train_args=["--epochs", "1"])
    assert shell_script(block) == ("python -m crmnet.train --run-dir runs/demo --epochs 1\n"
                                   "python -m seq2exp.evaluate runs/demo t.tsv --report r")
