"""Evaluation and prediction with a trained model outside the training loop (one device)."""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import keras
import numpy as np

from data_prep import alphabet
from data_prep.layouts import get_layout
from data_prep.parse import Parsed, Rejection, TableSpec, parse_fasta_chunk, parse_lines, parse_table_chunk
from data_prep.sources import InputError, detect_format, iter_chunks, read_head, resolve_table
from seq2exp.engine.metrics import PredictionCollector
from seq2exp.engine.registry import ModelSpec

#: the smallest padded batch: a handful of sequences still shares a compiled shape with other small calls
MIN_PADDED_BATCH = 32


def padded_size(n: int) -> int:
    """The batch size `n` rows are padded to: the next power of two (at least MIN_PADDED_BATCH), so a stream of
    batches compiles a couple of shapes, not one per remainder."""
    return max(MIN_PADDED_BATCH, 1 << max(n - 1, 0).bit_length())


def predict_batch(model: keras.Model, spec: ModelSpec, batch: dict) -> np.ndarray:
    """(n,) float32 predictions of one batch through the model's compiled `spec.predict` (compiled once per model
    and padded shape; the padding rows are N sequences, dropped from the result)."""
    # kept on the model itself (outside Keras' attribute tracking): freed with it, unlike a cache keyed by model
    fns = model.__dict__.setdefault("_seq2exp_predict_fns", {})
    if spec.name not in fns:
        from seq2exp.engine.backend import predict_fn

        fns[spec.name] = predict_fn(spec, model)
    n = len(batch["seq"])
    size = padded_size(n)
    if size != n:
        batch = {k: np.concatenate([v, np.full((size - n, *v.shape[1:]), alphabet.N if k == "seq" else 0, v.dtype)])
                 for k, v in batch.items()}
    return fns[spec.name](batch)[:n]


def evaluate_model(model: keras.Model, spec: ModelSpec, manifest, split: str, batch_size: int = 1024) -> dict:
    """Exact dataset-level metrics over a whole split (read with numpy: any backend, no TensorFlow)."""
    from data_prep.numpy_reader import make_numpy_reader

    collector = PredictionCollector()
    for batch in make_numpy_reader(manifest, split, batch_size, training=False):
        batch = {k: v for k, v in batch.items() if k != "id"}
        collector.update(batch["label"], predict_batch(model, spec, batch))
    return collector.result()


def check_prediction_inputs(paths: list[str], seq_col: str | None = None, header: str = "auto") -> None:
    """Every input is a readable table or FASTA whose sequence column resolves (InputError naming the file)."""
    for path in paths:
        if os.path.isdir(path):
            raise InputError(f"{path}: is a folder; predict reads TSV/CSV/FASTA files")
        try:
            fmt = detect_format(path)
            if fmt != "fasta":
                resolve_table(path, fmt, header, seq_col, "none")
            elif not read_head(path, 1):
                raise InputError("file is empty (no records)")
        except InputError as err:
            raise InputError(f"{path}: {err}", err.reason) from None


def predict_files(model: keras.Model, spec: ModelSpec, paths: list[str], out: TextIO, batch_size: int = 1024,
                  seq_col: str | None = None, header: str = "auto", stats: dict | None = None,
                  shortest: int | None = None) -> int:
    """Stream predictions as TSV: file, line, id (FASTA header name, or a table's sequence), prediction, note.

    Input lines that are not valid sequences are reported in the output with an empty prediction
    and the reason, so every input line has an output row. A sequence longer than the layout is
    predicted from the part the layout keeps, with a note saying so; `stats` gets the count. With `shortest`
    (the shortest training sequence, when the model's run folder says), a shorter one gets a note too.
    """
    layout = get_layout(spec.layout)
    cut = "the 5' end is cut" if layout.flank_5 else "the 3' end is cut"
    stats = {} if stats is None else stats
    stats.update(truncated=0, short=0, length=layout.length, cut=cut, shortest=shortest)
    out.write("file\tline\tid\tprediction\tnote\n")
    n, shown = 0, time.time()
    warm = None  # (time, count) once the first chunk is done: the rate leaves out the model's compilation
    for fi, path in enumerate(paths):
        fmt = detect_format(path)
        if fmt == "fasta":
            table, skip = None, 0
        else:
            table, has_header, _ = resolve_table(path, fmt, header, seq_col, "none")
            skip = int(has_header)
        for chunk in iter_chunks(path, fi, 4 << 20, fmt == "fasta", skip):
            if fmt == "fasta":
                parsed = parse_fasta_chunk(chunk.data, chunk.first_line, layout, 0)
                names = parsed.ids
            else:
                parsed = parse_table_chunk(chunk.data, chunk.first_line, table, layout, 0)
                lines = chunk.data.split(b"\n")
                names = [_field(lines[ln - chunk.first_line], table) for ln in parsed.line]
            preds = np.zeros(len(parsed.line), dtype=np.float32)
            for i in range(0, len(preds), batch_size):
                codes = parsed.codes[i:i + batch_size]
                batch = {"seq": codes, "is_singleton": np.zeros(len(codes), np.uint8)}
                preds[i:i + batch_size] = predict_batch(model, spec, batch)
            notes = [truncation_note(k, layout) if t else shortness_note(k, shortest, layout)
                     if shortest and k < shortest else "" for k, t in zip(parsed.length.tolist(),
                                                                        parsed.truncated.tolist())]
            stats["short"] += sum(1 for k in parsed.length.tolist() if shortest and k < shortest)
            stats["truncated"] += int(parsed.truncated.sum())
            rows = [(ln, f"{name}\t{p:.6g}\t{note}")
                    for ln, name, p, note in zip(parsed.line.tolist(), names, preds, notes)]
            # the id of a rejected FASTA record is its header name, of a table row its (first 80) characters, tabs
            # as spaces: one row of five fields (a TSV line has several)
            rows += [(r.line, (r.id if fmt == "fasta" else r.text[:80]).replace("\t", " ") + f"\t\t{rejection_note(r)}")
                     for r in parsed.rejections]
            for ln, text in sorted(rows):
                out.write(f"{path}\t{ln}\t{text}\n")
            n += len(preds)
            if warm is None:
                warm = (time.time(), n)
            elif time.time() - shown > 10:
                shown = time.time()
                rate = (n - warm[1]) / max(shown - warm[0], 1e-9)
                print(f"  {n:,} sequences predicted ({rate:,.0f}/s after compilation)", file=sys.stderr)
    return n


def truncation_note(length: int, layout) -> str:
    """What predict says of a sequence longer than the layout keeps (it predicts the part it keeps)."""
    cut = "the 5' end is cut" if layout.flank_5 else "the 3' end is cut"
    return f"truncated: {length} nt, longer than the {layout.length}-nt {layout.name} layout ({cut})"


def shortness_note(length: int, shortest_trained: int, layout) -> str:
    """What predict says of a sequence shorter than every training sequence: it is padded (N or plasmid) to the
    layout's length, an input the model never saw, so its prediction is flagged, not silently given."""
    pad = "plasmid-padded" if layout.flank_5 else "N-padded"
    return (f"short: {length} nt, shorter than the shortest training sequence ({shortest_trained} nt); "
            f"{pad} to {layout.length} nt, predicted from an input unlike the training data")


def rejection_note(rejection) -> str:
    """What predict says of an input line it cannot score (data_prep.parse.Rejection)."""
    return f"{rejection.reason}: {rejection.detail}"


def parse_sequences(seqs, layout) -> Parsed:
    """Python strings through the parser predict uses for files, so they get its rules and its reasons.

    Record / rejection `line` i is seqs[i]. Surrounding whitespace is stripped (as `encode_sequences`
    does); None, NaN and "" are empty sequences; a line break inside a string is an invalid character.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    raw = ["" if s is None or (isinstance(s, float) and s != s) else str(s).strip() for s in seqs]
    early, keep = [], []
    for i, s in enumerate(raw):
        p = None if s.isascii() and "\n" not in s and "\r" not in s else next(  # each must be one line
            (k for k, ch in enumerate(s) if ch in "\n\r" or ord(ch) > 255), None)
        if p is None:
            keep.append(i)
        else:
            early.append(Rejection(i, "invalid_character", f"invalid character {s[p]!r} at position {p + 1} of the "
                                   "sequence", s[:200]))
    body = "".join(raw[i] + "\n" for i in keep).encode("latin-1")
    parsed = parse_lines(body, np.asarray(keep, dtype=np.int64), TableSpec("\t", 1, 0, None), layout, 0)
    for r in parsed.rejections:
        if r.reason == "empty_line":  # one field per line: an empty sequence reads as an empty line
            r.reason, r.detail = "empty_sequence", "empty sequence"
    parsed.rejections = sorted(early + parsed.rejections, key=lambda r: r.line)
    return parsed


def _field(line: bytes, table) -> str:
    return line.rstrip(b"\r").decode("latin-1").split(table.delimiter)[table.seq_col]


def encode_sequences(seqs, layout) -> tuple[np.ndarray, np.ndarray]:
    """Raw sequence strings -> ((n, length) uint8 codes in `layout`, (n,) bool valid).

    A sequence is invalid when it is empty/None, shorter than the layout's minimum or has a character
    outside the alphabet; its row is all N and must not be scored.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    raw = ["" if s is None or (isinstance(s, float) and s != s) else str(s).strip() for s in seqs]
    lens = np.array([len(s) for s in raw], dtype=np.int64)
    codes = alphabet.encode("\n".join(raw) + "\n")  # the separators become the 3' N padding
    starts = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64)
    ends = starts + lens
    bad = np.zeros(len(raw), dtype=bool)
    if len(raw):
        invalid_pos = np.flatnonzero(codes == alphabet.INVALID)
        owner = np.searchsorted(starts, invalid_pos, side="right") - 1
        inside = invalid_pos < ends[owner]
        bad[owner[inside]] = True
    valid = ~bad & (lens >= layout.min_length)
    out = np.full((len(raw), layout.length), alphabet.N, dtype=np.uint8)
    if valid.any():
        laid, _ = layout.apply(np.where(codes == alphabet.INVALID, alphabet.N, codes).astype(np.uint8),
                               starts[valid], ends[valid])
        out[valid] = laid
    return out, valid


def predict_codes(model: keras.Model, spec: ModelSpec, codes: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(n,) float32 predictions of laid-out codes through spec.predict (test-time averaging included)."""
    preds = np.empty(len(codes), dtype=np.float32)
    for i in range(0, len(codes), batch_size):
        c = np.ascontiguousarray(codes[i:i + batch_size])
        preds[i:i + len(c)] = predict_batch(model, spec, {"seq": c, "is_singleton": np.zeros(len(c), np.uint8)})
    return preds


def predict_sequences(model: keras.Model, spec: ModelSpec, seqs, batch_size: int = 1024) -> np.ndarray:
    """(n,) predictions of raw sequences in the model's layout; nan for invalid sequences."""
    codes, valid = encode_sequences(seqs, spec.layout)
    preds = np.full(len(codes), np.nan, dtype=np.float32)
    if valid.any():
        preds[valid] = predict_codes(model, spec, codes[valid], batch_size)
    return preds
