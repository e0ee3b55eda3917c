"""Which column holds the sequence and which the measurement — resolved, or refused with the column list.

Public MPRA tables name their columns in a few recurring ways (`sequence`, `oligo`, `element`, `utr`;
`expression`, `Measured Expression`, `mean`, `log2FC`, `K562_log2FC`, `activity`, `rl`, ...), often after
an unnamed row-index column (pandas `to_csv`) or a header one name short (R `write.csv` row names).
Rules, in order, each recorded as the column's `how`:
1. an explicit `--seq-col`/`--expr-col`: a header name (case-insensitive), else a 0-based index;
2. a known header name (exact, after lower-casing and turning punctuation into spaces), else a name
   containing a known word (`K562_log2FC`) unless another word marks it as no measurement (`predicted`,
   `SE`, `padj`, `replicate1`, `count`, ...); two candidates of the same rank are refused, never guessed;
3. without a recognised name: the only column holding DNA is the sequence; without a header, the one
   remaining column (after a leading row index) is the expression.
Anything else is refused, listing the columns and the flag to pass. The chosen sequence column must
hold DNA and the expression column numbers in the first lines, so a row index read as sequences is
refused before any record is read, not rejected line by line.
"""
from __future__ import annotations

import collections
import csv
import itertools
import re
from dataclasses import dataclass

from data_prep.alphabet import first_invalid
from data_prep.errors import Seq2ExpError
from data_prep.parse import TableSpec

_SEQ_EXACT = ("sequence", "seq", "sequences", "seqs", "oligo", "oligo sequence", "oligo seq", "insert",
              "insert sequence", "element", "element sequence", "dna sequence", "nt sequence", "tile sequence",
              "fragment sequence", "enhancer sequence", "promoter sequence", "utr", "utr sequence",
              "variable region", "random sequence")
_SEQ_WORDS = {"sequence", "sequences", "seq", "oligo", "insert", "utr"}
_EXPR_EXACT = ("expression", "measured expression", "expr", "label", "labels", "target", "y", "activity",
               "mean", "mean expression", "mean activity", "expression level", "normalized expression",
               "log2fc", "logfc", "log2 fc", "lfc", "log2foldchange", "log2 fold change", "log fold change",
               "log2 ratio", "log2ratio", "log ratio", "log2", "ratio", "rna dna", "log2 rna dna", "rna dna ratio",
               "enrichment", "log2 enrichment", "score", "value", "measurement", "measured", "strength",
               "promoter strength", "rl", "mrl", "mean ribosome load")
_EXPR_WORDS = {"expression", "expr", "activity", "log2fc", "logfc", "lfc", "log2foldchange", "enrichment", "ratio",
               "strength", "measured", "mean", "mrl", "score"}
#: words that mark a column as something other than the measurement (or the sequence)
_NOT_IT = {"predicted", "prediction", "predictions", "pred", "predict", "se", "lfcse", "sd", "std", "stdev", "stderr",
           "sem", "error", "err", "var", "variance", "p", "pval", "pvalue", "padj", "fdr", "q", "qval", "qvalue",
           "rank", "replicate", "rep", "count", "counts", "n", "barcode", "barcodes", "bc", "obs", "id", "ids", "name",
           "names", "length", "len", "ci", "lower", "upper", "low", "high", "min", "max", "z", "zscore", "stat",
           "weight", "weights", "class", "type", "category", "index", "dna", "rna", "gc", "start", "end", "chr",
           "chrom", "position", "pos", "strand", "hash", "number", "num"}
_INDEX_NAMES = {"", "unnamed 0", "index", "row", "rownames"}
SAMPLE_LINES = 50


class ColumnError(Seq2ExpError, ValueError):
    """The columns cannot be resolved safely; the message lists the columns and the flag to pass."""


@dataclass(frozen=True)
class Column:
    index: int
    name: str
    how: str          # "header name" | "--seq-col by name" | "--seq-col by index" | "default" | "content"
    detail: str = ""

    def describe(self, named: bool) -> str:
        label = f"index {self.index}" + (f" {self.name!r}" if named else "")
        return f"{label} ({self.how}{': ' + self.detail if self.detail else ''})"

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "how": self.how, "detail": self.detail}


@dataclass(frozen=True)
class Resolved:
    spec: TableSpec
    has_header: bool
    names: list[str]
    sequence: Column
    expression: Column | None
    note: str = ""

    def describe(self) -> str:
        expr = "none (unlabeled)" if self.expression is None else self.expression.describe(self.has_header)
        return (f"sequence = {self.sequence.describe(self.has_header)}, expression = {expr}"
                + (f"; {self.note}" if self.note else ""))

    def to_dict(self) -> dict:
        return {"sequence": self.sequence.to_dict(),
                "expression": None if self.expression is None else self.expression.to_dict(), "note": self.note}


def _norm(name: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


def _kind(value: str) -> str:
    if not value:
        return "empty"
    try:
        float(value)
        return "num"
    except ValueError:
        return "dna" if first_invalid(value) < 0 else "text"


def _is_index(values: list[str]) -> bool:
    """Strictly increasing integers: a row index, never a measurement."""
    try:
        ints = [int(v) for v in values]
    except ValueError:
        return False
    return len(ints) > 0 and all(b > a for a, b in itertools.pairwise(ints))


def split_rows(lines: list[str], delimiter: str) -> list[list[str]]:
    if delimiter == ",":
        rows = []
        for line in lines:
            try:
                rows.append(next(csv.reader([line]), []))
            except csv.Error:
                rows.append(line.split(","))
    else:
        rows = [line.split(delimiter) for line in lines]
    return [[f.strip() for f in row] for row in rows]


class _Table:
    """The first lines of a file as rows of fields, with per-column content summaries."""

    def __init__(self, header: list[str] | None, rows: list[list[str]], first_line: int):
        self.header, self.rows, self.first_line = header, rows, first_line

    def values(self, k: int) -> list[tuple[int, str]]:
        return [(self.first_line + i, r[k]) for i, r in enumerate(self.rows) if k < len(r) and r[k]]

    def kinds(self, k: int) -> collections.Counter:
        return collections.Counter(_kind(v) for _, v in self.values(k))

    def holds(self, k: int, kind: str) -> bool:
        """At least half of the non-empty values of column k are of `kind` (an all-empty column holds anything):
        a short file with one malformed line among two still has its columns found, and the bad line is
        rejected on its own."""
        c = self.kinds(k)
        return not c or c[kind] * 2 >= sum(c.values())


def _explicit(wanted: str, names: list[str], flag: str, has_header: bool) -> Column:
    lowered = [n.lower() for n in names]
    if has_header and wanted.strip().lower() in lowered:
        k = lowered.index(wanted.strip().lower())
        return Column(k, names[k], f"{flag} by name")
    norm = [_norm(n) for n in names]
    if has_header and _norm(wanted) and norm.count(_norm(wanted)) == 1:
        k = norm.index(_norm(wanted))
        return Column(k, names[k], f"{flag} by name")
    if wanted.isdigit():
        k = int(wanted)
        if k >= len(names):
            raise ColumnError(f"{flag} {wanted} is out of range: the file has {len(names)} columns "
                              f"(indices 0-{len(names) - 1}; columns are {names})")
        return Column(k, names[k], f"{flag} by index")
    if not has_header:
        raise ColumnError(f"{flag} {wanted!r} not found: the file has no header, give a 0-based index "
                          f"(columns are {names})")
    raise ColumnError(f"{flag} {wanted!r} not found; columns are {names}")


def _by_name(names: list[str], exact: tuple[str, ...], words: set[str], skip: set[int]) -> list[int]:
    """Candidate columns of the best rank: exact known names, else names containing a known word."""
    norm = [_norm(n) for n in names]
    hits = [k for k, n in enumerate(norm) if k not in skip and n in exact]
    if hits:
        return hits
    hits = []
    for k, n in enumerate(norm):
        toks = set(n.split())
        if k in skip or not toks & words:
            continue
        if toks & _NOT_IT or any(re.fullmatch(r"(rep|replicate|r|bio|tech)\d+", t) for t in toks):
            continue
        hits.append(k)
    return hits


def _check_content(t: _Table, col: Column, kind: str, what: str, flag: str, names: list[str]) -> None:
    vals = t.values(col.index)
    if vals and not any(_kind(v) == kind for _, v in vals):
        line, example = vals[0]
        label = f"column {col.name!r}" if t.header is not None else f"column {col.index}"
        holds = "holds no DNA sequences" if kind == "dna" else "holds no numbers"
        raise ColumnError(f"{label} ({col.how}) {holds} (line {line}: {example[:40]!r}); columns are {names}; "
                          f"pass {flag} with the {what} column")


def _sequence(t: _Table, names: list[str], seq_col: str | None, index_col: int | None) -> Column:
    has_header = t.header is not None
    if seq_col is not None:
        return _explicit(seq_col, names, "--seq-col", has_header)
    if has_header:
        hits = _by_name(names, _SEQ_EXACT, _SEQ_WORDS, {index_col} - {None})
        dna = [k for k in hits if t.holds(k, "dna")] or hits
        if len(dna) == 1:
            return Column(dna[0], names[dna[0]], "header name")
        if len(dna) > 1:
            raise ColumnError(f"several columns could hold the sequence ({', '.join(names[k] for k in dna)}); "
                              f"columns are {names}; pass --seq-col NAME")
    elif t.holds(0, "dna") and t.kinds(0)["dna"]:
        return Column(0, names[0], "default", "no header")
    dna = [k for k in range(len(names)) if t.kinds(k)["dna"] and t.holds(k, "dna")]
    if len(dna) == 1:
        return Column(dna[0], names[dna[0]], "content", "the only column holding DNA")
    found = "several columns hold DNA" if dna else "no column holds DNA"
    raise ColumnError(f"no sequence column recognised ({found}); columns are {names}; pass --seq-col NAME or INDEX")


def _expression(t: _Table, names: list[str], expr_col: str | None, seq: Column, index_col: int | None
                ) -> Column | None:
    has_header = t.header is not None
    if expr_col is not None:
        col = _explicit(expr_col, names, "--expr-col", has_header)
        if col.index == seq.index:
            raise ColumnError(f"--expr-col {expr_col!r} is the sequence column; columns are {names}")
        return col
    skip = {seq.index} | ({index_col} - {None})
    if has_header:
        hits = _by_name(names, _EXPR_EXACT, _EXPR_WORDS, skip)
        if len(hits) == 1:
            return Column(hits[0], names[hits[0]], "header name")
        if len(hits) > 1:
            raise ColumnError(f"several columns could hold the measured expression "
                              f"({', '.join(names[k] for k in hits)}); columns are {names}; pass --expr-col NAME")
    rest = [k for k in range(len(names)) if k not in skip]
    if not rest:
        return None  # only a sequence column (and perhaps a row index): unlabeled sequences
    if not has_header and len(rest) == 1:
        return Column(rest[0], names[rest[0]], "default", "no header")
    numeric = [k for k in rest if t.kinds(k)["num"] and t.holds(k, "num")]
    if not has_header and len(numeric) == 1:
        return Column(numeric[0], names[numeric[0]], "content", "the only numeric column")
    if has_header:
        raise ColumnError(f"no expression column recognised; columns are {names}; pass --expr-col NAME or INDEX, "
                          "or --expr-col none for unlabeled sequences")
    raise ColumnError(f"{len(names)} columns without a header: which one is the expression?; columns are {names}; "
                      "pass --expr-col INDEX (and --seq-col INDEX), or --expr-col none for unlabeled sequences")


def _header_present(fields: list[str], rows: list[list[str]], wanted: set[str]) -> bool:
    """A header names a known column, or holds words where the lines below hold DNA or numbers.

    A first line with any DNA or number where its column holds them is data (a malformed first record is
    then rejected like any other, never swallowed as a header).
    """
    norm = {_norm(f) for f in fields}
    if norm & (set(_SEQ_EXACT) | set(_EXPR_EXACT)) or {f.lower() for f in fields} & wanted:
        return True
    if not rows:  # a one-line file: a header only if it looks like neither a sequence nor a number
        return len(fields) > 1 and _kind(fields[0]) != "dna" and _kind(fields[1]) != "num"
    below = _Table(None, rows, 2)
    column_kinds = [next((kind for kind in ("dna", "num") if below.kinds(k)[kind] and below.holds(k, kind)), None)
                    for k in range(len(fields))]
    if any(kind and _kind(v) == kind for v, kind in zip(fields, column_kinds)):
        return False
    return any(kind and _kind(v) != kind for v, kind in zip(fields, column_kinds))


def resolve(lines: list[str], delimiter: str, header: str = "auto", seq_col: str | None = None,
            expr_col: str | None = None) -> Resolved:
    """Resolve the columns from the first lines of a table (already decoded, BOM removed)."""
    rows = split_rows([ln for ln in lines if ln.strip()], delimiter)
    if not rows:
        raise ColumnError("no lines to read the columns from")
    wanted = {c.strip().lower() for c in (seq_col, expr_col) if c and not c.isdigit()}
    has_header = header == "yes" or (header == "auto" and _header_present(rows[0], rows[1:], wanted))
    data = rows[1:] if has_header else rows
    widths = collections.Counter(len(r) for r in data)
    note = ""
    if has_header:
        names = [f.strip('"').lstrip("\ufeff") for f in rows[0]]
        if widths and widths.most_common(1)[0][0] == len(names) + 1:
            names = [""] + names
            note = "the header is one name short: its first column is unnamed row names (R write.csv)"
    else:
        n = widths.most_common(1)[0][0] if widths else len(rows[0])
        names = [str(i) for i in range(n)]
    t = _Table(rows[0] if has_header else None, data, 2 if has_header else 1)
    index_col = None
    if len(names) > 1 and (not has_header or _norm(names[0]) in _INDEX_NAMES) and _is_index(
            [v for _, v in t.values(0)]):
        index_col = 0
    seq = _sequence(t, names, seq_col, index_col)
    _check_content(t, seq, "dna", "sequence", "--seq-col", names)
    expr = None if (expr_col or "").lower() == "none" else _expression(t, names, expr_col, seq, index_col)
    if expr is not None:
        _check_content(t, expr, "num", "expression", "--expr-col", names)
    spec = TableSpec(delimiter, len(names), seq.index, None if expr is None else expr.index)
    return Resolved(spec, has_header, names, seq, expr, note)
