"""Issue 17, case 5: the output folder. A trailing slash works; only a folder that really is an earlier
build (and holds nothing a build would not write) is replaced; an interrupted build leaves no temporary
folder behind."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data_prep.build import BuildError, main
from tests.data_prep.util import run_build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEQS = ["ACGTACGTACGTAAAC", "TTGACCATGCAAGTCA", "GGGCATCATCGATTTA", "CATTACGGACTTGACC"]


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("".join(f"{s}\t{i}\n" for i, s in enumerate(SEQS)))
    return path


def test_trailing_slash_builds_and_rebuilds(tmp_path, src, capsys):
    out = tmp_path / "out" / "base"
    for _ in range(2):  # fresh, then a rebuild over the earlier build
        assert main([str(src), "--out", f"{out}/", "--workers", "1"]) == 0
        assert sorted(os.listdir(out))[:1] == ["manifest.json"] or "manifest.json" in os.listdir(out)
    assert sorted(os.listdir(tmp_path / "out")) == ["base"]  # no .old-/.building- leftovers
    assert "error" not in capsys.readouterr().err


def test_folder_with_a_foreign_manifest_is_never_replaced(tmp_path, src):
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"name": "my web app", "version": 3}))
    (other / "index.html").write_text("<html>")
    with pytest.raises(BuildError, match="not a data_prep.build output"):
        run_build([src], other, "--workers", "1")
    assert sorted(os.listdir(other)) == ["index.html", "manifest.json"]


def test_earlier_build_holding_other_files_is_not_replaced(tmp_path, src):
    out = tmp_path / "out"
    run_build([src], out, "--workers", "1")
    (out / "raw_input.tsv").write_text("precious")
    (out / "notes").mkdir()
    with pytest.raises(BuildError, match=r"notes/?, raw_input.tsv"):
        run_build([src], out, "--workers", "1")
    assert (out / "raw_input.tsv").read_text() == "precious" and (out / "notes").is_dir()
    assert not [p for p in os.listdir(tmp_path) if ".building-" in p or ".old-" in p]


def test_input_inside_the_output_folder_is_refused(tmp_path, src):
    out = tmp_path / "out"
    run_build([src], out, "--workers", "1")
    inside = out / "in.tsv"
    inside.write_text(src.read_text())
    with pytest.raises(BuildError, match="inside the output folder"):
        run_build([inside], out, "--workers", "1")
    assert inside.exists()
    with pytest.raises(BuildError, match="not a folder|is an input"):
        run_build([src], src, "--workers", "1")
    assert src.read_text().startswith(SEQS[0])


def test_output_through_a_symlink_keeps_the_link(tmp_path, src):
    real = tmp_path / "real"
    run_build([src], real, "--workers", "1")
    link = tmp_path / "link"
    link.symlink_to(real)
    m = run_build([src], link, "--workers", "1", "--split", "none")
    assert link.is_symlink() and (real / "manifest.json").exists() and list(m["splits"]) == ["all"]


def test_stale_temporary_folders_of_dead_builds_are_removed(tmp_path, src):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f"out.building-{dead.stdout.strip()}"
    stale.mkdir()
    (stale / "train-00000.tfrecord").write_bytes(b"x" * 100)
    run_build([src], out, "--workers", "1")
    assert not stale.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_build_removes_the_temporary_folder(tmp_path, sig):
    big = tmp_path / "big.tsv"
    rng = np.random.default_rng(0)  # enough random sequences that one worker is still building when the signal comes
    rows = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (600_000, 112))]
    big.write_bytes(np.hstack([rows, np.frombuffer(b"\t1.5\n", np.uint8)[None].repeat(len(rows), 0)]).tobytes())
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "data_prep.build", str(big), "--out", str(out), "--workers", "1",
           "--chunk-bytes", "200000"]
    # Ctrl-C as a terminal sends it: a shell's background job (e.g. CI started with `&`) inherits SIGINT ignored,
    # and Python then leaves it ignored, which is right for such a job but not what this test is about
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list(tmp_path.glob("out.building-*/*.tfrecord*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "interrupted" in err and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["big.tsv"]
