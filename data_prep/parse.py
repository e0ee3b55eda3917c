"""Text chunk -> validated, laid-out records plus rejections, vectorised over the whole chunk.

Every input line ends as exactly one of: a record, or a `Rejection` naming its line and reason.
Everything is numpy over the chunk's bytes (folds use a vectorised MurmurHash3, equal to
`mmh3.hash(seq, seed, signed=False)`); Python loops only over rejected lines and over labels
that numpy cannot parse.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np

from data_prep import alphabet
from data_prep.hashing import murmur3_32_spans, murmur3_64_spans
from data_prep.layouts import Layout

REASONS = (
    "empty_line", "wrong_column_count", "csv_quoting", "empty_sequence", "invalid_character",
    "too_short_for_layout", "non_numeric_expression", "non_finite_expression",
    "sequence_before_header", "truncated_input", "label_out_of_float32_range",
)
_MAX_LABEL_WIDTH = 48


@dataclass(frozen=True)
class TableSpec:
    """How to cut a line into fields: delimiter, expected field count, which columns hold what."""

    delimiter: str = "\t"
    n_fields: int = 2
    seq_col: int = 0
    expr_col: int | None = 1


@dataclass
class Rejection:
    line: int
    reason: str
    detail: str
    text: str = ""
    id: str = ""  # a FASTA record's header name (the id column of predict's output)


@dataclass
class Parsed:
    line: np.ndarray                       # int64 input line of each record
    codes: np.ndarray                      # (n, length) uint8
    hash: np.ndarray                       # uint32 mmh3 of the upper-cased raw sequence
    length: np.ndarray                     # int64 raw sequence length
    truncated: np.ndarray                  # bool, sequence longer than the layout keeps
    label: np.ndarray | None = None        # float64
    ids: list[str] | None = None
    rejections: list[Rejection] = field(default_factory=list)
    key: np.ndarray | None = None          # uint64 hash of the upper-cased raw sequence (repeats are counted by it)


def _text(data: bytes, start: int, end: int, limit: int = 200) -> str:
    return data[start:min(end, start + limit)].decode("latin-1")


def parse_lines(data: bytes, line_no: np.ndarray, spec: TableSpec, layout: Layout, hash_seed: int) -> Parsed:
    """Parse newline-terminated `data` whose i-th line is input line `line_no[i]`."""
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    if nl.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Parsed(empty, np.zeros((0, layout.length), np.uint8), empty.astype(np.uint32), empty,
                      empty.astype(bool), None if spec.expr_col is None else np.zeros(0), key=empty.astype(np.uint64))
    starts = np.concatenate([[0], nl[:-1] + 1]).astype(np.int64)
    ends = nl.astype(np.int64)
    ends -= (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)  # CRLF
    n = nl.size
    reason = np.zeros(n, dtype=np.int16)  # 0 = ok, else 1 + REASONS index
    detail: dict[int, str] = {}

    def reject(mask: np.ndarray, name: str) -> None:
        reason[mask & (reason == 0)] = 1 + REASONS.index(name)

    reject(ends == starts, "empty_line")
    F = spec.n_fields
    delim = np.flatnonzero(arr == ord(spec.delimiter)) if F > 1 else np.zeros(0, np.int64)
    dline = np.searchsorted(nl, delim)
    counts = np.bincount(dline, minlength=n)
    bad_cols = (reason == 0) & (counts != F - 1)
    for i in np.flatnonzero(bad_cols):
        detail[i] = f"expected {F} fields separated by {spec.delimiter!r}, found {counts[i] + 1}"
    reject(bad_cols, "wrong_column_count")

    ok = np.flatnonzero(reason == 0)
    D = delim[(reason == 0)[dline]].reshape(ok.size, F - 1)

    def field_span(k: int):
        s = starts[ok] if k == 0 else D[:, k - 1] + 1
        e = ends[ok] if k == F - 1 else D[:, k]
        return s, e

    codes = alphabet.ENCODE[arr]
    s0, e0 = field_span(spec.seq_col)
    seqlen = e0 - s0
    sub = np.zeros(ok.size, dtype=np.int16)
    sub[seqlen == 0] = 1 + REASONS.index("empty_sequence")
    laid, truncated = layout.apply(codes, s0, e0)
    # invalid bytes show up as 255 in the laid-out codes; cut-off tails are checked separately.
    # A sequence shorter than the layout's minimum is laid out from bytes that are not its own
    # (the rest of the chunk), so only its own bytes -- all inside the 5' head below -- are checked.
    bad_char = (laid == alphabet.INVALID).any(axis=1) & (seqlen >= layout.min_length)
    if layout.trim_5:  # the trimmed 5' end is not in `laid`: check it too (all of a short sequence)
        head = np.minimum(s0[:, None] + np.arange(layout.trim_5), np.maximum(e0 - 1, s0)[:, None])
        bad_char |= (codes[head] == alphabet.INVALID).any(axis=1) & (seqlen > 0)
    for j in np.flatnonzero(truncated & ~bad_char):
        bad_char[j] = (codes[s0[j]:e0[j]] == alphabet.INVALID).any()
    bad_char &= sub == 0
    sub[bad_char] = 1 + REASONS.index("invalid_character")
    for j in np.flatnonzero(bad_char):
        p = int(np.flatnonzero(codes[s0[j]:e0[j]] == alphabet.INVALID)[0])
        detail[ok[j]] = f"invalid character {chr(arr[s0[j] + p])!r} at position {p + 1} of the sequence"
    short = (sub == 0) & (seqlen < layout.min_length)
    sub[short] = 1 + REASONS.index("too_short_for_layout")
    for j in np.flatnonzero(short):
        detail[ok[j]] = (f"sequence of {seqlen[j]} nt is too short for the {layout.name} layout "
                         f"(needs at least {layout.min_length})")

    label = None
    if spec.expr_col is not None:
        s1, e1 = field_span(spec.expr_col)
        label, bad_num, nonfinite = _parse_floats(arr, s1, e1)
        m = (sub == 0) & bad_num
        sub[m] = 1 + REASONS.index("non_numeric_expression")
        for j in np.flatnonzero(m):
            detail[ok[j]] = f"expression {_text(data, s1[j], e1[j], 60)!r} is not a number"
        m = (sub == 0) & nonfinite
        sub[m] = 1 + REASONS.index("non_finite_expression")
        for j in np.flatnonzero(m):
            detail[ok[j]] = f"expression {_text(data, s1[j], e1[j], 60)!r} is not finite"
        with np.errstate(over="ignore"):  # records store float32: these would become inf
            m = (sub == 0) & ~nonfinite & np.isinf(label.astype(np.float32))
        sub[m] = 1 + REASONS.index("label_out_of_float32_range")
        for j in np.flatnonzero(m):
            detail[ok[j]] = f"expression {_text(data, s1[j], e1[j], 60)!r} is outside the float32 range (±3.4e38)"
    reason[ok] = sub

    rejections = []
    for i in np.flatnonzero(reason):
        name = REASONS[reason[i] - 1]
        rejections.append(Rejection(int(line_no[i]), name, detail.get(i, name.replace("_", " ")),
                                    _text(data, starts[i], ends[i])))

    keep = sub == 0
    s0, e0 = s0[keep], e0[keep]
    src = data.upper() if ((arr >= 97) & (arr <= 122)).any() else data
    hashes = murmur3_32_spans(src, s0, e0, hash_seed)
    return Parsed(line=np.asarray(line_no)[ok[keep]].astype(np.int64), codes=laid[keep], hash=hashes,
                  length=(e0 - s0).astype(np.int64), truncated=truncated[keep],
                  label=None if label is None else label[keep], rejections=rejections,
                  key=murmur3_64_spans(src, s0, e0))


def _parse_floats(arr: np.ndarray, s: np.ndarray, e: np.ndarray):
    """Vectorised float parse of byte spans; returns (values, not-a-number mask, non-finite mask)."""
    w = e - s
    n = s.size
    width = int(min(max(w.max(initial=1), 1), _MAX_LABEL_WIDTH))
    pos = np.arange(width)
    buf = np.where(pos[None, :] < w[:, None], arr[np.minimum(s[:, None] + pos[None, :], arr.size - 1)], 0)
    strs = np.ascontiguousarray(buf.astype(np.uint8)).view(f"S{width}").reshape(n)
    bad = (w == 0) | (w > width)
    values = np.full(n, np.nan)
    good = ~bad
    try:
        values[good] = strs[good].astype(np.float64)
    except ValueError:  # some field is not a number: find which, one by one
        for j in np.flatnonzero(good):
            try:
                values[j] = float(strs[j])
            except ValueError:
                bad[j] = True
    return values, bad, ~bad & ~np.isfinite(values)


def parse_table_chunk(data: bytes, first_line: int, spec: TableSpec, layout: Layout, hash_seed: int) -> Parsed:
    """A chunk of whole lines from a TSV/CSV file; quoted CSV goes through the csv module."""
    n_lines = data.count(b"\n")
    line_no = first_line + np.arange(n_lines, dtype=np.int64)
    if spec.delimiter != "," or b'"' not in data:
        return parse_lines(data, line_no, spec, layout, hash_seed)
    # Quoted CSV: let csv split each line, then re-emit the two fields we need as plain TSV.
    keep_lines, out, early = [], [], []
    for i, line in enumerate(data.decode("latin-1").split("\n")[:-1]):
        try:
            row = next(csv.reader(io.StringIO(line), strict=True), [])
        except csv.Error as err:
            early.append(Rejection(int(line_no[i]), "csv_quoting", f"CSV quoting error: {err}", line[:200]))
            continue
        if not line.strip("\r"):
            early.append(Rejection(int(line_no[i]), "empty_line", "empty line", ""))
            continue
        if len(row) != spec.n_fields:
            early.append(Rejection(int(line_no[i]), "wrong_column_count",
                                   f"expected {spec.n_fields} fields separated by ',', found {len(row)}", line[:200]))
            continue
        fields = [row[spec.seq_col]] + ([] if spec.expr_col is None else [row[spec.expr_col]])
        if any("\t" in f for f in fields):
            early.append(Rejection(int(line_no[i]), "invalid_character", "tab inside a field", line[:200]))
            continue
        keep_lines.append(line_no[i])
        out.append("\t".join(fields))
    tsv = TableSpec("\t", 1 if spec.expr_col is None else 2, 0, None if spec.expr_col is None else 1)
    parsed = parse_lines(("\n".join(out) + "\n").encode("latin-1") if out else b"",
                         np.array(keep_lines, dtype=np.int64), tsv, layout, hash_seed)
    parsed.rejections = sorted(early + parsed.rejections, key=lambda r: r.line)
    return parsed


def parse_fasta_chunk(data: bytes, first_line: int, layout: Layout, hash_seed: int) -> Parsed:
    """A chunk of whole FASTA records (the first may be preceded by stray text, which is rejected)."""
    ids, seqs, header_lines, early = [], [], [], []
    current = None
    for i, line in enumerate(data.split(b"\n")[:-1]):
        line = line.rstrip(b"\r")
        if line.startswith(b">"):
            current = [line[1:].decode("latin-1").strip(), []]
            ids.append(current[0])
            seqs.append(current[1])
            header_lines.append(first_line + i)
        elif current is None:
            if line.strip():
                early.append(Rejection(first_line + i, "sequence_before_header",
                                       "text before the first '>' header", line[:200].decode("latin-1")))
        else:
            current[1].append(line.strip())
    body = b"".join(b"".join(s) + b"\n" for s in seqs)
    # an empty sequence would read as an empty line; give it the FASTA-specific reason instead
    parsed = parse_lines(body, np.array(header_lines, dtype=np.int64), TableSpec("\t", 1, 0, None), layout, hash_seed)
    for r in parsed.rejections:
        if r.reason == "empty_line":
            r.reason, r.detail = "empty_sequence", "FASTA record has no sequence"
    kept = set(parsed.line.tolist())
    parsed.ids = [name for name, ln in zip(ids, header_lines) if ln in kept]
    names = dict(zip(header_lines, ids))
    for r in parsed.rejections:
        r.id = names.get(r.line, "")
    parsed.rejections = sorted(early + parsed.rejections, key=lambda r: r.line)
    return parsed
