"""Input files -> line-aligned byte chunks with their first line number.

Handles plain and gzip (multi-member) input, detects truncated/corrupt gzip without losing the
bytes that did decompress, resolves header and column choices, and cuts FASTA at record
boundaries. Chunk boundaries depend only on the input and `chunk_bytes`, never on worker count.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterator

from data_prep.alphabet import first_invalid
from data_prep.parse import TableSpec

SEQ_NAMES = ("sequence", "seq", "sequences")
EXPR_NAMES = ("expression", "measured expression", "measured_expression", "expr", "label", "target", "y")
_FASTA_EXT = (".fa", ".fasta", ".fna", ".fas")


class InputError(ValueError):
    """A problem with an input file as a whole (not one record), with a reason code."""

    def __init__(self, message: str, reason: str = "unreadable_input"):
        super().__init__(message)
        self.reason = reason


@dataclass
class Chunk:
    file_index: int
    chunk_index: int
    first_line: int
    data: bytes


@dataclass
class InputProblem:
    """A file-level problem found while reading (truncated gzip, empty file)."""

    line: int
    reason: str
    detail: str
    partial_record: bytes = b""


def detect_format(path: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    name = path[:-3] if path.endswith(".gz") else path
    if name.lower().endswith(_FASTA_EXT):
        return "fasta"
    return "csv" if name.lower().endswith(".csv") else "tsv"


def iter_blocks(path: str, block_bytes: int) -> Iterator[bytes]:
    """Decompressed blocks (each at most ~block_bytes); raises InputError AFTER yielding every
    byte that could be recovered, so a truncated download loses only its cut-off tail."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        if not gz:
            while block := fh.read(block_bytes):
                yield block
            return
        dec, started = zlib.decompressobj(wbits=31), False
        while raw := fh.read(block_bytes):
            while raw:
                try:
                    out = dec.decompress(raw, block_bytes)
                except zlib.error as err:
                    raise InputError(f"corrupt gzip data ({err})") from None
                started = True
                if out:
                    yield out
                if dec.eof:  # multi-member gzip: start the next member
                    raw, dec, started = dec.unused_data, zlib.decompressobj(wbits=31), False
                else:
                    raw = dec.unconsumed_tail
        if started and not dec.eof:
            raise InputError("truncated gzip file: the compressed stream ends before its end marker")


def iter_chunks(path: str, file_index: int, chunk_bytes: int, fasta: bool, skip_lines: int = 0,
                problems: list | None = None) -> Iterator[Chunk]:
    """Line-aligned chunks (FASTA: record-aligned). File-level problems are appended to `problems`."""
    sep = b"\n>" if fasta else b"\n"
    carry, line, index = b"", 1, 0
    try:
        for block in iter_blocks(path, chunk_bytes):
            buf = carry + block
            while skip_lines and (cut := buf.find(b"\n")) >= 0:
                buf, skip_lines, line = buf[cut + 1:], skip_lines - 1, line + 1
            cut = buf.rfind(sep)
            if cut < 0 or skip_lines:
                carry = buf
                continue
            data, carry = buf[:cut + 1], buf[cut + 1:]
            yield Chunk(file_index, index, line, data)
            line += data.count(b"\n")
            index += 1
    except InputError as err:
        if problems is None:
            raise
        cut = carry.rfind(b"\n") + 1
        if cut:
            yield Chunk(file_index, index, line, carry[:cut])
            line += carry[:cut].count(b"\n")
        problems.append(InputProblem(line, "truncated_input", str(err), carry[cut:]))
        return
    if carry:
        yield Chunk(file_index, index, line, carry if carry.endswith(b"\n") else carry + b"\n")


def read_first_line(path: str) -> bytes | None:
    """The first line (without newline), or None for an empty file."""
    buf = b""
    try:
        for block in iter_blocks(path, 1 << 16):
            buf += block
            if b"\n" in buf or len(buf) > 1 << 20:
                break
    except InputError:
        pass
    if not buf:
        return None
    return buf.split(b"\n", 1)[0].rstrip(b"\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def resolve_table(path: str, fmt: str, header: str = "auto", seq_col: str | None = None,
                  expr_col: str | None = None) -> tuple[TableSpec, bool, list[str]]:
    """Work out delimiter, header presence and the column indices; returns (spec, has_header, names)."""
    first = read_first_line(path)
    if first is None:
        raise InputError("file is empty (no records)", "empty_file")
    delim = "," if fmt == "csv" else "\t"
    fields = [f.strip().strip('"') for f in first.decode("latin-1").split(delim)]
    if header == "auto":
        # a header must name a column we look for, or look like neither a sequence nor a number;
        # a malformed first data line is then rejected like any other, never taken as a header
        lowered = {f.lower() for f in fields}
        named = bool(lowered & set(SEQ_NAMES + EXPR_NAMES)) or bool(
            {c.lower() for c in (seq_col, expr_col) if c and not c.isdigit()} & lowered)
        seq_like = bool(fields[0]) and first_invalid(fields[0]) < 0
        numeric = len(fields) > 1 and _is_number(fields[1])
        has_header = named or (not seq_like and not numeric and len(fields) > 1)
    else:
        has_header = header == "yes"
    names = fields if has_header else [str(i) for i in range(len(fields))]
    s = _pick(names, seq_col, SEQ_NAMES if has_header else (), 0, "sequence")
    e = None if (expr_col or "").lower() == "none" else _pick(
        names, expr_col, EXPR_NAMES if has_header else (), 1 if len(names) > 1 else None, None)
    if e is None and expr_col not in (None, "none", "None"):
        raise InputError(f"expression column {expr_col!r} not found; columns are {names}")
    if s is None or s >= len(names):
        raise InputError(f"sequence column {seq_col!r} not found; columns are {names} (use --seq-col)")
    if e is not None and e >= len(names):
        raise InputError(f"expression column {e} out of range; the file has {len(names)} columns")
    if e == s:
        raise InputError("sequence and expression columns must differ")
    return TableSpec(delim, len(names), s, e), has_header, names


def _pick(names: list[str], wanted: str | None, defaults: tuple[str, ...], fallback: int | None,
          what: str | None) -> int | None:
    lowered = [n.lower() for n in names]
    if wanted is not None and wanted.lower() != "none":
        if wanted.lower() in lowered:
            return lowered.index(wanted.lower())
        if wanted.isdigit():
            return int(wanted)
        if what:
            raise InputError(f"{what} column {wanted!r} not found; columns are {names}")
        return None
    for d in defaults:
        if d in lowered:
            return lowered.index(d)
    return fallback
