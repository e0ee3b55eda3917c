"""Issue 23 items 1 and 5 for the converters: a file that is not a checkpoint is one line (no UnpicklingError
advising weights_only=False, no "not an sstable" traceback), and --out follows the output rule (never an input or
a run's own file, an existing file only with --overwrite, written whole)."""
import json
import os

import numpy as np
import pytest

from legnet_tf import convert as legnet_convert


def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "error: " in err[0], err
    return err[0]


@pytest.mark.parametrize("content,needle", [
    (b"hello, not a checkpoint\n", "not a PyTorch state_dict file"),
    (bytes(range(256)) * 8, "not a PyTorch state_dict file"),
])
def test_legnet_convert_on_a_file_that_is_not_a_pth(tmp_path, capsys, content, needle):
    pytest.importorskip("torch")
    src = tmp_path / "weights.pth"
    src.write_bytes(content)
    assert legnet_convert.main([str(src), "--out", str(tmp_path / "m.keras")]) == 2
    line = _one_line(capsys)
    assert needle in line and str(src) in line and "weights_only" not in line and "Traceback" not in line
    assert sorted(os.listdir(tmp_path)) == ["weights.pth"]


def test_legnet_convert_on_an_npz_with_objects(tmp_path, capsys):
    src = tmp_path / "w.npz"
    np.savez(src, a=np.array([{"x": 1}], dtype=object))
    assert legnet_convert.main([str(src), "--out", str(tmp_path / "m.keras")]) == 2
    assert "not an .npz of numeric arrays" in _one_line(capsys)


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    from legnet_tf.model import LegNetConfig, build_legnet

    d = tmp_path_factory.mktemp("legnet")
    config = LegNetConfig.tiny()
    np.savez(d / "w.npz", **legnet_convert.to_state_dict(build_legnet(config)))
    (d / "config.json").write_text(json.dumps(config.to_dict()))
    return d


def test_legnet_convert_out_follows_the_output_rule(tiny_npz, tmp_path, capsys):
    args = [str(tiny_npz / "w.npz"), "--config", str(tiny_npz / "config.json")]
    before = (tiny_npz / "w.npz").read_bytes()
    out = tmp_path / "m.keras"
    cfg = tmp_path / "cfg.keras"  # a config file whose name passes the .keras check: still an input
    cfg.write_text((tiny_npz / "config.json").read_text())
    assert legnet_convert.main([str(tiny_npz / "w.npz"), "--config", str(cfg), "--out", str(cfg), "--overwrite"]) == 2
    assert "is the input" in _one_line(capsys)
    cfg.unlink()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: legnet\n")
    (run / ".seq2exp.lock").write_text("")
    assert legnet_convert.main(args + ["--out", str(run / "model.keras"), "--overwrite"]) == 2
    assert "belongs to the run folder" in _one_line(capsys)
    assert sorted(os.listdir(run)) == [".seq2exp.lock", "config.yaml"]
    assert legnet_convert.main(args + ["--out", str(out)]) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert legnet_convert.main(args + ["--out", str(out)]) == 2
    assert "exists; pass --overwrite" in _one_line(capsys) and out.read_bytes() == first
    assert legnet_convert.main(args + ["--out", str(out), "--overwrite"]) == 0
    assert (tiny_npz / "w.npz").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "run"]  # no temporary file left


def test_crmnet_convert_on_files_that_are_not_checkpoints(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from crmnet import convert as crmnet_convert

    fake = tmp_path / "saved" / "variables"
    fake.mkdir(parents=True)
    (fake / "variables.index").write_bytes(bytes(range(256)) * 2)
    out = tmp_path / "m.keras"
    assert crmnet_convert.main([str(tmp_path / "saved"), "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert f"{tmp_path / 'saved'}: not a Keras-2 checkpoint (not an sstable" in line and "SavedModel folder" in line
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    assert crmnet_convert.main([str(other), "--out", str(out)]) == 2
    assert "no TF checkpoint found" in _one_line(capsys)
    # the output is checked before any work: an existing --out without --overwrite
    out.write_text("keep\n")
    assert crmnet_convert.main([str(tmp_path / "saved"), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in _one_line(capsys) and out.read_text() == "keep\n"


@pytest.mark.parametrize("flag,hint", [("--ou", "--out"), ("--overwrit", "--overwrite"), ("--seqsiz", "--seqsize")])
def test_converter_flags_are_never_guessed(tmp_path, capsys, flag, hint):
    with pytest.raises(SystemExit) as stop:
        legnet_convert.main([str(tmp_path / "w.pth"), flag, "x"])
    assert stop.value.code == 2
    assert f"{flag}: unknown flag; did you mean {hint}?" in _one_line(capsys)


def test_converter_help_prints_no_tensorflow_lines():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=root, KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "-m", "legnet_tf.convert", "--help"], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "--overwrite" in proc.stdout and "--verbose" in proc.stdout
    assert proc.stderr == ""
