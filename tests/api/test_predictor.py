"""seq2exp.load_run / Predictor for every registered model (keras-hub style: one shared check, so a new model
in setup.cfg is covered without a new test), on TensorFlow in this process and on JAX in a child process
with TensorFlow blocked, and .keras files crossing between the two backends."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import textwrap

import numpy as np
import pandas as pd
import pytest

from data_prep.layouts import get_layout
from seq2exp.engine.registry import model_names

NAMES = model_names()
#: the same tiny presets every model has; a handful of valid sequences of the usual MPRA lengths
PRESET = "tiny"
_rng = np.random.default_rng(22)
#: one length and one count everywhere below (ISM of one position: 4 rows too), so JAX compiles each op once
SEQS = ["".join(_rng.choice(list("ACGT"), 110)) for _ in range(4)]


def _has_tensorflow() -> bool:
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except ImportError:  # blocked (tests/engine/test_tf_free.py's children)
        return False


HAS_TF = _has_tensorflow()


def _close(a, b, tol=1e-5):
    """Predictions of one model on one backend: equal up to batch-composition round-off."""
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


def save_models(folder: str, suffix: str) -> dict:
    """Each registered model's tiny preset saved as {name}{suffix}.keras (on the active backend)."""
    import seq2exp

    files = {}
    for name in NAMES:
        files[name] = os.path.join(folder, f"{name}{suffix}.keras")
        seq2exp.build_model(name, PRESET).save(files[name])
    return files


def check_predictor(path: str, name: str, folder: str, saliency: bool = True, save_as: str | None = None) -> list:
    """Everything a Predictor promises, for one saved model; returns its predictions of SEQS.

    Every prediction is of 4 sequences of 110 nt: eager JAX compiles each op per input shape, so after
    the first all cost little; the gradient of `saliency` is a second compile of every op (optional)."""
    import seq2exp
    from seq2exp.analysis.evaluation import encode_sequences, predict_sequences
    from seq2exp.analysis.interpret import onehot_adapter

    p = seq2exp.load_run(path)  # no model name given
    assert (p.name, p.spec.name) == (name, name)
    if save_as:
        p.model.save(save_as)
    pred = p.predict(SEQS)
    assert pred.shape == (len(SEQS),) and np.isfinite(pred).all()
    np.testing.assert_array_equal(pred, predict_sequences(p.model, p.spec, SEQS))
    np.testing.assert_array_equal(p.predict(pd.Series(SEQS, index=[5, 6, 7, 8])), pred)

    # a list: the first sequence predict would not score is an exception in predict's words, nothing predicted
    with pytest.raises(seq2exp.Seq2ExpError, match=r"^sequence 2 \('ACGTX'\): invalid_character: invalid character "
                                                   r"'X' at position 5 of the sequence \(and 1 more\)$"):
        p.predict(SEQS[:2] + ["ACGTX", ""])
    layout = get_layout(p.spec.layout)
    too_long = "ACGT" * 100 + "A" * (layout.length + layout.trim_5 + 1 - 400)
    with pytest.raises(seq2exp.Seq2ExpError, match=rf"^sequence 1 \('ACGT.*\.\.\.'\): truncated: {len(too_long)} nt, "
                                                   rf"longer than the {layout.length}-nt {layout.name} layout"):
        p.predict([SEQS[0], too_long])

    # a DataFrame: predict's rows and reasons, in the frame's index; the column found from its header
    frame = pd.DataFrame({"name": list("abcde"), "Sequence": SEQS[:2] + ["ACGNNZ"] + SEQS[2:]},
                         index=[10, 11, 12, 13, 14])
    out = p.predict(frame)
    assert list(out.index) == [10, 11, 12, 13, 14] and list(out.columns) == ["id", "prediction", "note"]
    _close(out["prediction"][[10, 11, 13, 14]], pred)
    assert np.isnan(out["prediction"][12]) and out["note"][12] == ("invalid_character: invalid character 'Z' at "
                                                                   "position 6 of the sequence")
    assert list(out["id"]) == list(frame["Sequence"]) and (out["note"][[10, 11, 13, 14]] == "").all()

    # a FASTA file with an invalid record: a row for every record, the reason on the invalid one
    fasta = os.path.join(folder, f"{name}.fa")
    with open(fasta, "w") as fh:
        fh.write(f">s0\n{SEQS[0]}\n>bad\nACGT-ACGT\n>s1\n{SEQS[1][:50]}\n{SEQS[1][50:]}\n"
                 + "".join(f">s{i}\n{s}\n" for i, s in enumerate(SEQS[2:], 2)))
    rows = p.predict(fasta)
    assert list(rows.columns) == ["file", "line", "id", "prediction", "note"]
    assert list(rows["line"]) == [1, 3, 5, 8, 10] and list(rows["id"][[0, 2, 3, 4]]) == ["s0", "s1", "s2", "s3"]
    assert np.isnan(rows["prediction"][1]) and rows["note"][1] == ("invalid_character: invalid character '-' at "
                                                                   "position 5 of the sequence")
    _close(rows["prediction"][[0, 2, 3, 4]], pred)

    # ISM: three variants a position, effect = variant - reference, 0 at the reference base
    ism = p.ism(SEQS[0], start=40, end=41)
    assert ism.shape == (3, 5) and set(ism["position"]) == {40} and SEQS[0][40] not in set(ism["alt"])
    variants = [SEQS[0][:40] + b + SEQS[0][41:] for b in ism["alt"]]
    check = p.predict([SEQS[0]] + variants)
    _close(check[0], pred[0])
    _close(ism["prediction"], check[1:])
    _close(ism["effect"], check[1:] - check[0])
    matrix = p.ism(SEQS[0], start=40, end=41, matrix=True)
    assert matrix.shape == (1, 4) and list(matrix.columns) == list("ACGT") and matrix.loc[40, SEQS[0][40]] == 0
    _close(matrix.loc[40, list(ism["alt"])], ism["effect"])

    # saliency: input x gradient at raw positions, through a one-hot path that predicts what predict does
    if saliency:
        sal = p.saliency(SEQS)
        assert sal.shape == (4, 110, 4) and np.isfinite(sal).all() and np.abs(sal).sum() > 0
        assert ((sal != 0).sum(-1) <= 1).all()  # only the channel of the base present
        adapter = onehot_adapter(p.model, p.spec)
        _close(np.asarray(adapter.predict(adapter.encode(encode_sequences(SEQS, p.spec.layout)[0]))), pred)

    # variant effects agree with predict; an alternative of another length is refused by index
    alts = [SEQS[0][:30] + b + SEQS[0][31:] for b in "ACG"]
    fx = p.variant_effects(SEQS[0], alts)
    assert list(fx.columns) == ["alt", "n_subs", "ref_prediction", "alt_prediction", "effect"]
    _close(fx["ref_prediction"], pred[0])
    _close(fx["alt_prediction"], p.predict([SEQS[0]] + alts)[1:])
    _close(fx["effect"], fx["alt_prediction"] - fx["ref_prediction"])
    assert list(fx["n_subs"]) == [int(b != SEQS[0][30]) for b in "ACG"]
    with pytest.raises(seq2exp.Seq2ExpError, match=r"^alt 1 \('ACGT'\) has 4 nt and ref 110"):
        p.variant_effects(SEQS[0], [SEQS[1], "ACGT"])
    return pred.tolist()


# ---- TensorFlow, in this process ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf_files(tmp_path_factory) -> dict:
    return save_models(str(tmp_path_factory.mktemp("tf_models")), "_tf")


@pytest.mark.parametrize("name", NAMES)
def test_every_model_on_tensorflow(name, tf_files, tmp_path):
    check_predictor(tf_files[name], name, str(tmp_path))


# ---- JAX, in a child process without TensorFlow ---------------------------------------------------------

#: the models whose saliency (a gradient: a second compile of every op) is also checked on JAX
JAX_SALIENCY = NAMES[:1]


@pytest.fixture(scope="module")
def jax_side(request, tmp_path_factory) -> dict:
    """One JAX child runs the shared check on every model: on the TF-saved files where TensorFlow is here (so
    they cross backends), else on models it builds; it saves each loaded model again under JAX."""
    from tests.engine.test_tf_free import check, run_without_tf

    tf_saved = request.getfixturevalue("tf_files") if HAS_TF else None
    folder = str(tmp_path_factory.mktemp("jax_models"))
    out = check(run_without_tf(textwrap.dedent(f"""
        import json, os, keras
        from tests.api.test_predictor import JAX_SALIENCY, check_predictor, save_models
        assert keras.backend.backend() == "jax"
        sources = {tf_saved!r} or save_models({folder!r}, "_built")
        result = {{"sources": sources, "files": {{}}, "pred": {{}}}}
        for name, file in sources.items():
            result["files"][name] = os.path.join({folder!r}, name + "_jax.keras")
            result["pred"][name] = check_predictor(file, name, {folder!r}, saliency=name in JAX_SALIENCY,
                                                   save_as=result["files"][name])
        print("RESULT" + json.dumps(result))
    """)))
    return json.loads(out.split("RESULT", 1)[1])


@pytest.mark.tf_free
def test_every_model_on_jax(jax_side):
    assert sorted(jax_side["pred"]) == NAMES  # the child ran check_predictor on each


@pytest.mark.skipif(not HAS_TF, reason="the TF side of the cross-backend check needs TensorFlow")
def test_keras_files_cross_backends(jax_side, tf_files):
    """A file saved under TensorFlow predicts the same under JAX, and one saved under JAX under TensorFlow."""
    import seq2exp

    assert jax_side["sources"] == tf_files
    for name in NAMES:
        _close(seq2exp.load_run(tf_files[name]).predict(SEQS), jax_side["pred"][name], 1e-4)
        _close(seq2exp.load_run(jax_side["files"][name]).predict(SEQS), jax_side["pred"][name], 1e-4)


# ---- finding the model without its name ----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_a_renamed_model_is_still_recognised(name, tmp_path):
    """Neither a config.yaml nor the model's own name says what it is: its layers and a trial run do."""
    import keras

    import seq2exp

    m = seq2exp.build_model(name, PRESET)
    file = str(tmp_path / "mine.keras")
    keras.Model(m.input, m.output, name="my_model").save(file)
    p = seq2exp.load_run(file)
    assert p.name == name and p.model.name == "my_model"
    _close(p.predict(SEQS[:2]), seq2exp.load_run(file, model=name).predict(SEQS[:2]))


def test_run_folders_and_the_fine_tune_stage(tmp_path):
    """A run folder's config.yaml names the model; a pre-train + fine-tune run predicts with its fine-tune stage."""
    import keras

    import seq2exp

    name = NAMES[0]
    m = seq2exp.build_model(name, PRESET)
    run = tmp_path / "run"
    (run / "finetune").mkdir(parents=True)
    (run / "pretrain").mkdir()
    (run / "config.yaml").write_text(f"model: {name}\n")
    keras.Model(m.input, m.output, name="stage").save(str(run / "finetune" / "model.keras"))
    seq2exp.build_model(name, PRESET).save(str(run / "pretrain" / "model.keras"))
    p = seq2exp.load_run(run)
    assert p.name == name and p.path == str(run / "finetune" / "model.keras")
    _close(p.predict(SEQS[:2]), seq2exp.load_run(run / "finetune" / "model.keras").predict(SEQS[:2]))
    with pytest.raises(seq2exp.Seq2ExpError, match="no model.keras in this run folder"):
        seq2exp.load_run(tmp_path)
    with pytest.raises(seq2exp.Seq2ExpError, match=rf"^unknown model 'nope'; choose one of {', '.join(NAMES)}$"):
        seq2exp.load_run(run, model="nope")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(seq2exp.Seq2ExpError, match=re.escape(f"{bad}: not a valid .keras file")):
        seq2exp.load_run(bad)


def test_build_model_and_models():
    import seq2exp

    listed = seq2exp.models()
    assert sorted(listed) == NAMES and all(PRESET in presets for presets in listed.values())
    with pytest.raises(seq2exp.Seq2ExpError, match=r"^unknown model 'crmnt'; choose one of "):
        seq2exp.build_model("crmnt")
    with pytest.raises(seq2exp.Seq2ExpError, match=rf"^unknown preset 'huge' for model {NAMES[0]}; choose one of "):
        seq2exp.build_model(NAMES[0], "huge")
    with pytest.raises(seq2exp.Seq2ExpError, match=r"^config: unknown key 'seq_lenn' for crmnet \(did you mean "
                                                   r"'seq_len'\?\)"):
        seq2exp.build_model("crmnet", PRESET, {"seq_lenn": 112})
    tiny = seq2exp.build_model("crmnet", PRESET)
    assert tiny.name == "crmnet" and tiny.count_params() < seq2exp.build_model("crmnet", "small").count_params()


def test_file_rows_are_the_predict_commands(tf_files, tmp_path):
    """Predictor.predict(path) returns exactly the rows and reasons `seq2exp-predict` writes."""
    import seq2exp
    from seq2exp.cli.commands import predict_main

    path = tf_files[NAMES[0]]
    tsv = tmp_path / "in.tsv"
    tsv.write_text("name\tsequence\n" + "".join(f"n{i}\t{s}\n" for i, s in enumerate(SEQS))
                   + "bad\tACGTJ\nshort\t\nlong\t" + "A" * 300 + "\n")
    rows = seq2exp.load_run(path).predict(tsv)
    assert predict_main([path, str(tsv), "--predictions", str(tmp_path / "out.tsv")]) == 0
    written = pd.read_csv(tmp_path / "out.tsv", sep="\t", keep_default_na=False, na_values={"prediction": [""]},
                          dtype={"file": str, "id": str, "note": str})
    pd.testing.assert_frame_equal(rows, written)
    assert len(rows) == 7 and rows["note"][4].startswith("invalid_character") and rows["note"][6].startswith(
        "truncated: 300 nt")


def test_predict_input_errors(tf_files, tmp_path):
    import seq2exp

    p = seq2exp.load_run(tf_files[NAMES[0]])
    with pytest.raises(seq2exp.Seq2ExpError, match="file not found; to predict sequences pass a list"):
        p.predict("ACGTACGT")
    with pytest.raises(seq2exp.Seq2ExpError, match=r"^sequence 0 \(''\): empty_sequence: empty sequence$"):
        p.predict([None])
    with pytest.raises(seq2exp.Seq2ExpError, match=r"invalid character '\\n' at position 3"):
        p.predict(["AC\nGT"])
    with pytest.raises(seq2exp.Seq2ExpError, match="no sequence column recognised"):
        p.predict(pd.DataFrame({"a": [1.5, 2.5], "b": [3.5, 4.5]}))
    with pytest.raises(seq2exp.Seq2ExpError, match="saliency: the sequences have 2 lengths"):
        p.saliency([SEQS[0], SEQS[1][:100]])
    assert p.predict([]).shape == (0,)
    buf = io.StringIO()
    print(p, file=buf)
    assert buf.getvalue().startswith(f"Predictor({NAMES[0]!r}, ")
