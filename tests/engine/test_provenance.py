"""The provenance record every run folder and result file carries: code, software, machine, command, data."""
import json
import subprocess

from seq2exp.engine import provenance as prov


def _git(cwd, *args):
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    assert prov.git_state(str(tmp_path)) is None  # not a checkout: no commit is claimed
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    assert prov.git_state(str(tmp_path)) == {"commit": _git(tmp_path, "rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "b.txt").write_text("untracked output does not make the code dirty\n")
    assert prov.git_state(str(tmp_path))["dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert prov.git_state(str(tmp_path))["dirty"] is True


def test_record_holds_versions_machine_command_and_dataset_hashes(tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"records": 3}))
    record = prov.provenance(["seq2exp-train", "--data", "x.tsv"], datasets=[str(data), str(tmp_path / "gone")])
    assert record["command"] == "seq2exp-train --data x.tsv"
    assert record["datasets"][0]["manifest_sha256"] == prov.file_sha256(str(data / "manifest.json"))
    assert record["datasets"][1]["manifest_sha256"] is None
    import keras

    assert record["keras"] == keras.__version__ and record["keras_backend"] == keras.backend.backend()
    assert record["tensorflow"]  # the active backend's version (this suite runs TensorFlow)
    with open("/proc/cpuinfo") as fh:
        flags = next(line for line in fh if line.startswith("flags")).split(":", 1)[1].split()
    assert record["cpu_flags"] == [f for f in prov.CPU_FLAGS if f in flags]
    assert json.loads(json.dumps(record)) == record  # plain JSON
    assert record["date"].endswith("+00:00")
