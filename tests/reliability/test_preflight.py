"""Bad data, a model that does not fit the data, and an unusable output folder are caught before training
starts, with an error naming the file."""
import errno
import json
import shutil
from pathlib import Path

import pytest

from data_prep.manifest import ManifestError, load_manifest
from seq2exp.engine.preflight import (
    PreflightError,
    check_before_training,
    check_data,
    check_free_space,
    check_model_data,
    check_output_dir,
)
from tests.reliability.jobs import SMALL, build_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("preflight")
    return {"crmnet": build_dataset(tmp, 300, "crmnet"), "legnet": build_dataset(tmp, 300, "legnet"), "tmp": tmp}


@pytest.fixture()
def copy(datasets, tmp_path):
    """A private copy of the crmnet dataset to damage, and its train shard."""
    folder = tmp_path / "ds"
    shutil.copytree(datasets["crmnet"], folder)
    m = load_manifest(folder)
    return folder, Path(m.shard_paths("train")[0])


def _crmnet(config=None):
    from seq2exp.engine.registry import get_model_spec

    spec = get_model_spec("crmnet")
    return spec, spec.build({**SMALL, **(config or {})})


def test_truncated_shard_named(copy):
    folder, shard = copy
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size - 100)
    for mode in ("size", "sha256"):  # sizes are always checked: instant
        with pytest.raises(PreflightError, match=rf"{shard}: size \d+ differs from the manifest's \d+ \(truncated"):
            check_data([load_manifest(folder)], "crmnet", ["train", "val"], mode)


def test_corrupted_shard_of_the_same_size_named_by_sha256(copy):
    folder, shard = copy
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(PreflightError, match=rf"{shard}: SHA-256 differs from .*manifest.json \(corrupted"):
        check_data([load_manifest(folder)], "crmnet", ["train", "val"], "sha256")
    # the documented trade-off of verify_data="size": same-size damage is left to the reader's CRC checks
    assert check_data([load_manifest(folder)], "crmnet", ["train", "val"], "size")["bytes"] > 0


def test_manifest_checksum_disagreeing_with_shard_named(copy):
    folder, shard = copy
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text())
    data["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(PreflightError, match=rf"{shard}: SHA-256 differs"):
        check_data([load_manifest(folder)], "crmnet", None, "sha256")


def test_manifest_from_the_other_layout_named(datasets, tmp_path):
    from seq2exp.engine.data import prepare

    legnet = load_manifest(datasets["legnet"])
    with pytest.raises(PreflightError, match=rf"{legnet.path}: dataset has layout 'legnet' but the model needs"):
        check_data([load_manifest(datasets["crmnet"]), legnet], "crmnet")
    with pytest.raises(ManifestError, match=rf"{legnet.path}: dataset has layout 'legnet'"):  # the CLI's loader
        prepare([datasets["legnet"]], "crmnet", str(tmp_path))


def test_model_length_mismatch_named(datasets):
    spec, model = _crmnet({"seq_len": 128})
    m = load_manifest(datasets["crmnet"])
    with pytest.raises(PreflightError, match=rf"{m.path}: records are 112 nt .*\[\(112,\)\].*expects \[\(128,\)\] "
                                             r"\(seq_len=128\)"):
        check_model_data(model, spec, m, {"seq_len": 128})
    spec, model = _crmnet()
    check_model_data(model, spec, m)  # the matching model passes


def test_model_channel_mismatch_named(datasets):
    """A LegNet built for 5 input channels cannot take the 6 (one-hot, strand, singleton) its transform makes."""
    from legnet_tf.model import LegNetConfig, build_legnet
    from seq2exp.engine.registry import get_model_spec

    spec = get_model_spec("legnet")
    m = load_manifest(datasets["legnet"])
    model = build_legnet(LegNetConfig.from_dict({**LegNetConfig.tiny().to_dict(), "in_channels": 5}))
    with pytest.raises(PreflightError, match=rf"{m.path}: records are 150 nt .*\[\(150, 6\)\].*expects "
                                             r"\[\(150, 5\)\] \(in_channels=5"):
        check_model_data(model, spec, m, {"in_channels": 5, "seq_len": 150})
    check_model_data(spec.build(LegNetConfig.tiny().to_dict()), spec, m)


def test_unwritable_output_folder_named(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PreflightError, match=rf"{blocker}/run: the output folder is not writable"):
        check_output_dir(str(blocker / "run"))  # fails for root too, unlike chmod
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if "write-probe" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(PreflightError, match=rf"{tmp_path}/ro: the output folder is not writable \(Read-only file"):
        check_output_dir(str(tmp_path / "ro"))
    assert not list((tmp_path / "ro").iterdir())  # no probe left behind


def test_too_little_free_space_before_training(datasets, tmp_path, monkeypatch):
    import seq2exp.engine.preflight as preflight
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    spec = get_model_spec("crmnet")
    m = load_manifest(datasets["crmnet"])
    trainer = Trainer(spec, SMALL, str(tmp_path / "run"), settings=TrainSettings(epochs=1, batch_size=32),
                      train_examples=m.records("train"))
    said = []
    info = check_before_training(trainer, spec, [m], ["train", "val"], say=said.append)
    params = trainer.model.count_params()
    assert info["weights"] >= 4 * params and info["checkpoint"] > 2 * info["weights"]  # Adam: 2 slots per weight
    assert info["run"] > (trainer.settings.keep_checkpoints + 1) * info["checkpoint"]
    assert info["bytes"] == sum(Path(p).stat().st_size for s in ("train", "val") for p in m.shard_paths(s))
    assert "preflight:" in said[0] and "verified (sha256)" in said[0]

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage._replace(free=info["run"] // 2))
    with pytest.raises(PreflightError, match=rf"{tmp_path}/run: [\d.]+ MB free, but this run writes about [\d.]+ MB "
                                             r"\(3 checkpoints of [\d.]+ MB"):
        check_before_training(trainer, spec, [m], ["train", "val"], say=said.append)
    with pytest.raises(PreflightError, match="MB free"):
        check_free_space(str(tmp_path), info["run"])


def test_train_command_stops_before_training_naming_the_file(copy, tmp_path, capsys):
    """End to end: `train` with a truncated shard, or a model config that does not fit, exits 1 without a step."""
    from seq2exp.cli.commands import train_main

    folder, shard = copy
    common = ["--data", str(folder), "--preset", "tiny", "--epochs", "1", "--batch-size", "32", "--strategy",
              "default"]
    run = tmp_path / "run_cfg"
    assert train_main([*common, "--run-dir", str(run), "--model-config", '{"seq_len": 128}'], model="crmnet") == 1
    err = capsys.readouterr().err
    assert f"error: {folder}/manifest.json: records are 112 nt" in err and "(seq_len=128)" in err, err
    assert not (run / "checkpoints").exists() and "epoch 1" not in err

    with open(shard, "r+b") as fh:
        fh.truncate(10)
    run = tmp_path / "run_shard"
    assert train_main([*common, "--run-dir", str(run)], model="crmnet") == 1
    err = capsys.readouterr().err
    assert f"error: {shard}: size 10 differs" in err, err
    assert not (run / "checkpoints").exists() and "epoch 1" not in err
