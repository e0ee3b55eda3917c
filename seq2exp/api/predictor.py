"""A trained model of any registered kind, loaded without being told its name: predict, ISM, saliency, variants.

Everything goes through the code the commands use (seq2exp.analysis): a list of sequences is checked by
the parser `seq2exp-predict` uses for files, so an invalid, too short or too long sequence is refused
with the predict command's own words, never predicted as NaN nor silently padded or cut beyond what the
layout does; a DataFrame or a file gets predict's rows, with the reason on every row it cannot score.
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from data_prep.sources import InputError
from seq2exp.api.models import model_spec
from seq2exp.cli.checks import UsageError, check_keras_file
from seq2exp.engine.registry import ModelSpec, get_model_spec, load_all_models, model_names

if TYPE_CHECKING:
    import keras

__all__ = ["Predictor", "load_run", "load_keras_model"]

#: a pre-train + fine-tune run keeps its final model in this stage folder (seq2exp.cli.run)
FINAL_STAGE = "finetune"


def _model_file(path) -> str:
    """The .keras file behind a run folder (a pre-train + fine-tune run: its fine-tune stage) or a path."""
    path = os.fspath(path)
    staged = os.path.join(path, FINAL_STAGE, "model.keras")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "model.keras")) and os.path.exists(staged):
        return check_keras_file(staged)
    return check_keras_file(path)


def _run_config_model(file: str) -> str | None:
    """The model a run's config.yaml names (beside the file, or above a stage folder); None if there is none."""
    from seq2exp.cli.config import load_file

    folder = os.path.dirname(os.path.abspath(file))
    for where in (folder, os.path.dirname(folder)):
        cfg = os.path.join(where, "config.yaml")
        if os.path.isfile(cfg):
            try:
                return load_file(cfg).get("model")
            except (ValueError, OSError):  # an unreadable config: the model itself still says what it is
                return None
        if os.path.basename(folder) not in (FINAL_STAGE, "pretrain"):
            break
    return None


def _package(obj) -> str:
    return (getattr(obj, "__module__", None) or "").partition(".")[0]


def _runs(model: keras.Model, spec: ModelSpec) -> bool:
    """Whether `spec` predicts with `model`: one all-N sequence of its layout gives one finite number."""
    from data_prep import alphabet
    from data_prep.layouts import get_layout
    from seq2exp.analysis.evaluation import predict_codes

    codes = np.full((1, get_layout(spec.layout).length), alphabet.N, dtype=np.uint8)
    try:
        out = predict_codes(model, spec, codes, 1)
    except Exception:  # a wrong input shape or output structure fails in backend-specific ways
        return False
    return out.shape == (1,) and bool(np.isfinite(out).all())


def identify(model: keras.Model, file: str, model_name: str | None = None) -> ModelSpec:
    """The registry entry of a loaded model: the given name, else its run's config.yaml, else the model's
    own name (every builder names its model after its spec), else the model packages its layers come from
    narrowed to the specs that actually run it."""
    if model_name is not None:
        return model_spec(model_name)
    names = model_names()
    for name in (_run_config_model(file), model.name):
        if name in names:
            return get_model_spec(name)
    specs = load_all_models()
    packages = {_package(type(layer)) for layer in model._flatten_layers(include_self=False)}
    candidates = [s for s in specs if _package(s.build) in packages] or specs
    fits = [s for s in candidates if _runs(model, s)]
    if len(fits) == 1:
        return fits[0]
    why = f"it runs as {' and as '.join(s.name for s in fits)}" if fits else "no registered model runs it"
    raise UsageError(f"{file}: cannot tell which registered model this is (it is named {model.name!r}, {why}); "
                     f"name it: load_run(path, model=NAME) or --model NAME, one of {', '.join(names)}")


def shortest_training_sequence(model_file: str) -> int | None:
    """The shortest sequence the model trained on, from the manifests of its run folder's training datasets
    (`datasets.json`, beside model.keras); None for a .keras file without its run folder."""
    run_dir = os.path.dirname(os.path.abspath(model_file))
    try:
        with open(os.path.join(run_dir, "datasets.json")) as fh:
            folders = json.load(fh).get("folders", [])
    except (OSError, ValueError):
        return None
    lengths = []
    for folder in folders:
        for candidate in (folder, os.path.join(run_dir, "data", os.path.basename(folder)),
                          os.path.join(os.path.dirname(run_dir), "data", os.path.basename(folder))):
            try:  # the recorded path, or the same dataset in a run folder that was moved
                with open(os.path.join(candidate, "manifest.json")) as fh:
                    splits = json.load(fh).get("splits", {})
            except (OSError, ValueError):
                continue
            lengths += [s["length"]["min"] for s in splits.values() if isinstance(s.get("length"), dict)]
            break
    return min(lengths) if lengths else None


def load_keras_model(path, model_name: str | None = None) -> tuple[keras.Model, ModelSpec]:
    """(model, spec) from a run folder or .keras file; the loader of the evaluate and predict commands too."""
    model, spec, _ = _load(path, model_name)
    return model, spec


def _load(path, model_name: str | None):
    import keras

    load_all_models()  # importing registers every model's custom layers
    file = _model_file(path)
    try:
        model = keras.saving.load_model(file, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UsageError(f"{file}: cannot load this .keras file ({why})") from None
    return model, identify(model, file, model_name), file


def load_run(path, model: str | None = None) -> Predictor:
    """A `Predictor` for a run folder or a `.keras` file of any registered model, saved under either backend.

    `model` names the model only where nothing else tells (a renamed model of a package holding several).
    """
    model, spec, file = _load(path, model)
    return Predictor(model, spec, file, shortest_training_sequence(file))


def _short(seq, n: int = 30) -> str:
    text = "" if seq is None else str(seq)
    return repr(text if len(text) <= n else text[:n] + "...")


def _as_list(seqs, what: str) -> list:
    if isinstance(seqs, str):
        raise InputError(f"{what} takes a list of sequences, got one string ({_short(seqs)}); pass [seq]")
    if isinstance(seqs, (pd.DataFrame, dict)) or not hasattr(seqs, "__iter__"):
        raise InputError(f"{what} takes a list of sequences, got {type(seqs).__name__}")
    return list(seqs)


class Predictor:
    """A trained model with its registry entry: what predicting, ISM and saliency need.

    `model` is the keras.Model, `spec` its `ModelSpec` and `name` the model's registered name.
    """

    def __init__(self, model: keras.Model, spec: ModelSpec, path: str | None = None, shortest: int | None = None):
        self.model, self.spec, self.path = model, spec, path
        #: the shortest training sequence (from the run folder): a shorter input is reported, not padded silently
        self.shortest = shortest

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, {self.model.count_params():,} parameters, from {self.path!r})"

    @property
    def _layout(self):
        from data_prep.layouts import get_layout

        return get_layout(self.spec.layout)

    def _parsed(self, seqs: list, label=lambda i: f"sequence {i}"):
        """seqs parsed in the model's layout; the first one predict would not score as given is an InputError."""
        from seq2exp.analysis.evaluation import parse_sequences, rejection_note, shortness_note, truncation_note

        parsed = parse_sequences(seqs, self._layout)
        problems = [(r.line, rejection_note(r)) for r in parsed.rejections]
        problems += [(int(i), truncation_note(int(k), self._layout))
                     for i, k in zip(parsed.line[parsed.truncated], parsed.length[parsed.truncated])]
        if self.shortest:
            short = parsed.length < self.shortest
            problems += [(int(i), shortness_note(int(k), self.shortest, self._layout))
                         for i, k in zip(parsed.line[short], parsed.length[short])]
        if problems:
            line, note = min(problems)
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InputError(f"{label(line)} ({_short(seqs[line])}): {note}{more}", note.partition(":")[0])
        return parsed

    def _predict_list(self, seqs: list, batch_size: int, label=lambda i: f"sequence {i}") -> np.ndarray:
        from seq2exp.analysis.evaluation import predict_codes

        parsed = self._parsed(seqs, label)
        return predict_codes(self.model, self.spec, parsed.codes, batch_size)

    def predict(self, seqs, batch_size: int = 1024, seq_col: str | None = None, header: str = "auto"):
        """Expression predictions (the model's `spec.predict`, test-time averaging included).

        * a list / tuple / array of str, or a pandas Series -> (n,) float32 array; a sequence predict
          would not score as given (invalid character, empty, too short, longer than the layout) is an
          InputError naming its index and the reason, before anything is predicted;
        * a pandas DataFrame -> DataFrame (its index) with id (the sequence), prediction, note; the sequence
          column is found as the predict command finds it, or named by `seq_col`;
        * a TSV/CSV/FASTA (.gz) path -> the rows `seq2exp-predict` writes: file, line, id, prediction, note.
        A row that cannot be scored has no prediction and the reason in `note`; a longer-than-layout one is
        predicted from the part the layout keeps, with a note.
        """
        if batch_size < 1:
            raise UsageError(f"batch_size {batch_size}: must be at least 1")
        if isinstance(seqs, (str, os.PathLike)):
            return self._predict_file(os.fspath(seqs), batch_size, seq_col, header)
        if isinstance(seqs, pd.DataFrame):
            return self._predict_frame(seqs, batch_size, seq_col)
        return self._predict_list(_as_list(seqs, "predict"), batch_size)

    def _predict_file(self, path: str, batch_size: int, seq_col: str | None, header: str) -> pd.DataFrame:
        from seq2exp.analysis.evaluation import check_prediction_inputs, predict_files

        if not os.path.exists(path):
            hint = "; to predict sequences pass a list: predict([seq, ...])" if os.sep not in path else ""
            raise InputError(f"{path}: file not found{hint}", "missing_input")
        check_prediction_inputs([path], seq_col, header)
        out = io.StringIO()
        predict_files(self.model, self.spec, [path], out, batch_size, seq_col, header, shortest=self.shortest)
        out.seek(0)
        frame = pd.read_csv(out, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False,
                            na_values={"prediction": [""]}, dtype={"file": str, "id": str, "note": str})
        frame["prediction"] = frame["prediction"].astype(np.float64)
        return frame

    def _sequence_column(self, frame: pd.DataFrame, seq_col):
        from data_prep.columns import SAMPLE_LINES, ColumnError, resolve

        if seq_col is not None and seq_col in frame.columns:
            return seq_col
        names = [str(c).replace("\t", " ") for c in frame.columns]
        rows = frame.head(SAMPLE_LINES).astype(str).to_numpy().tolist()
        lines = ["\t".join(names)] + ["\t".join(v.replace("\t", " ") for v in row) for row in rows]
        try:
            found = resolve(lines, "\t", "yes", None if seq_col is None else str(seq_col), "none")
        except ColumnError as err:
            raise InputError(str(err).replace("--seq-col", "seq_col="), "unresolved_columns") from None
        return frame.columns[found.sequence.index]

    def _predict_frame(self, frame: pd.DataFrame, batch_size: int, seq_col) -> pd.DataFrame:
        from seq2exp.analysis.evaluation import (
            parse_sequences,
            predict_codes,
            rejection_note,
            shortness_note,
            truncation_note,
        )

        seqs = frame[self._sequence_column(frame, seq_col)].tolist()
        parsed = parse_sequences(seqs, self._layout)
        preds = np.full(len(seqs), np.nan)
        notes = [""] * len(seqs)
        if len(parsed.line):
            preds[parsed.line] = predict_codes(self.model, self.spec, parsed.codes, batch_size)
        for i, k in zip(parsed.line[parsed.truncated], parsed.length[parsed.truncated]):
            notes[i] = truncation_note(int(k), self._layout)
        if self.shortest:
            for i, k in zip(parsed.line, parsed.length):
                if k < self.shortest:
                    notes[i] = shortness_note(int(k), self.shortest, self._layout)
        for r in parsed.rejections:
            notes[r.line] = rejection_note(r)
        ids = ["" if s is None or (isinstance(s, float) and s != s) else str(s) for s in seqs]
        return pd.DataFrame({"id": ids, "prediction": preds, "note": notes}, index=frame.index)

    def ism(self, seq: str, start: int = 0, end: int | None = None, batch_size: int = 1024, matrix: bool = False):
        """In-silico saturation mutagenesis of positions [start, end) of one sequence.

        Returns a DataFrame of the 3 variants per position (position, ref, alt, prediction, effect =
        variant - reference; `.attrs["reference_prediction"]`), or with `matrix=True` positions x A/C/G/T
        effects with 0 at the reference base. A position the layout does not show the model has effect 0.
        """
        from seq2exp.analysis.variants import ism_matrix, saturation_mutagenesis

        if not isinstance(seq, str):
            raise InputError(f"ism takes one sequence (a str), got {type(seq).__name__}")
        self._parsed([seq], lambda i: "the sequence")
        try:
            table, reference = saturation_mutagenesis(self.model, self.spec, seq, start, end, batch_size)
        except ValueError as err:
            raise InputError(str(err)) from None
        table.attrs["reference_prediction"] = reference
        return ism_matrix(table) if matrix else table

    def saliency(self, seqs, batch_size: int = 64, mask_adapters: bool = True) -> np.ndarray:
        """Input x gradient of the prediction, (n, L, 4) in A, C, G, T columns at raw positions.

        The sequences must have one length L (a ragged batch has no array shape); with `mask_adapters`
        the constant 5'/3' adapters are 0, as are positions the layout does not show the model.
        """
        from seq2exp.analysis.interpret import input_x_gradient

        seqs = [seqs] if isinstance(seqs, str) else _as_list(seqs, "saliency")
        self._parsed(seqs)
        lengths = sorted({len(str(s).strip()) for s in seqs})
        if len(lengths) > 1:
            raise InputError(f"saliency: the sequences have {len(lengths)} lengths ({lengths[:5]}...); pass "
                             "sequences of one length per call")
        if not seqs:
            return np.zeros((0, 0, 4), dtype=np.float32)
        try:
            sal = input_x_gradient(self.model, self.spec, seqs, batch_size, mask_adapters)
        except ValueError as err:  # a model whose registry entry gives no way to its one-hot input
            raise UsageError(f"saliency: {err}") from None
        return np.stack(sal.contrib).astype(np.float32)

    def variant_effects(self, ref: str, alts, batch_size: int = 1024) -> pd.DataFrame:
        """Predicted effect of each alternative of a reference sequence: alt, n_subs, ref_prediction,
        alt_prediction, effect = alt - ref. Alternatives are substitutions: they must have ref's length."""
        if not isinstance(ref, str):
            raise InputError(f"variant_effects: ref must be one sequence (a str), got {type(ref).__name__}")
        alts = [alts] if isinstance(alts, str) else _as_list(alts, "variant_effects")
        ref_seq = ref.strip().upper()
        clean = ["" if a is None else str(a).strip().upper() for a in alts]
        for i, a in enumerate(clean):
            if len(a) != len(ref_seq):
                raise InputError(f"alt {i} ({_short(alts[i])}) has {len(a)} nt and ref {len(ref_seq)}: variant effects "
                                 "compare substitutions of one length", "length_mismatch")
        preds = self._predict_list([ref] + alts, batch_size,
                                   lambda i: "ref" if i == 0 else f"alt {i - 1}").astype(np.float64)
        return pd.DataFrame({"alt": alts, "n_subs": [sum(x != y for x, y in zip(a, ref_seq)) for a in clean],
                             "ref_prediction": preds[0], "alt_prediction": preds[1:],
                             "effect": preds[1:] - preds[0]})
