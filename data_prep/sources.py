"""Input files -> line-aligned byte chunks with their first line number.

Handles plain and gzip (multi-member) input, detects truncated/corrupt gzip without losing the
bytes that did decompress, resolves header and column choices, and cuts FASTA at record
boundaries. Chunk boundaries depend only on the input and `chunk_bytes`, never on worker count.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from data_prep.columns import SAMPLE_LINES, ColumnError, Resolved, resolve
from data_prep.errors import Seq2ExpError
from data_prep.parse import TableSpec

_FASTA_EXT = (".fa", ".fasta", ".fna", ".fas")


class InputError(Seq2ExpError, ValueError):
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
    """`fmt`, or for "auto" what the first line shows ('>' FASTA, tabs TSV, commas CSV), else the extension."""
    if fmt != "auto":
        return fmt
    try:
        first = read_head(path, 1)
    except (OSError, InputError):
        first = []
    if first:
        if first[0].startswith(b">"):
            return "fasta"
        if b"\t" in first[0]:
            return "tsv"
        if b"," in first[0]:
            return "csv"
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
    carry, line, index, first = b"", 1, 0, True
    try:
        for block in iter_blocks(path, chunk_bytes):
            buf = carry + block
            if first and len(buf) < len(_BOM) and _BOM.startswith(buf):
                carry = buf
                continue
            if first and buf.startswith(_BOM):  # UTF-8 byte-order mark (Excel, Notepad)
                buf = buf[len(_BOM):]
            first = False
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


_BOM = b"\xef\xbb\xbf"
_NOT_TEXT = {b"\xff\xfe": "UTF-16 text (save it as UTF-8)", b"\xfe\xff": "UTF-16 text (save it as UTF-8)",
             b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook? export it as CSV/TSV)",
             b"BZh": "bzip2-compressed (only gzip is read; decompress it or recompress with gzip)",
             b"\xfd7zXZ\x00": "xz-compressed (only gzip is read)",
             b"\x28\xb5\x2f\xfd": "zstd-compressed (only gzip is read)",
             b"PAR1": "a Parquet file (export it as CSV/TSV)"}


def read_head(path: str, max_lines: int = 50, max_bytes: int = 1 << 20) -> list[bytes]:
    """The first lines (without newline; UTF-8 BOM removed), or [] for an empty file.

    Raises InputError for files that are not text tables (UTF-16, ZIP/xlsx, other compressors, binary).
    """
    with open(path, "rb") as fh:
        magic = fh.read(8)
    for sig, what in _NOT_TEXT.items():
        if magic.startswith(sig):
            raise InputError(f"not a text table: {what}", "not_text")
    buf = b""
    try:
        for block in iter_blocks(path, 1 << 16):
            buf += block
            if buf.count(b"\n") > max_lines or len(buf) > max_bytes:
                break
    except InputError:
        pass
    buf = buf.removeprefix(_BOM)
    if b"\x00" in buf[:max_bytes]:
        raise InputError("not a text table: it holds NUL bytes (a binary file?)", "not_text")
    lines = [ln.rstrip(b"\r") for ln in buf.split(b"\n")[:max_lines]]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_first_line(path: str) -> bytes | None:
    """The first line (without newline), or None for an empty file."""
    lines = read_head(path, 1)
    return lines[0] if lines else None


def resolve_columns(path: str, fmt: str, header: str = "auto", seq_col: str | None = None,
                    expr_col: str | None = None) -> Resolved:
    """Delimiter, header and columns of a table, with how each column was chosen (data_prep.columns)."""
    lines = read_head(path, SAMPLE_LINES)
    if not lines:
        raise InputError("file is empty (no records)", "empty_file")
    delim = "," if fmt == "csv" else "\t"
    try:
        return resolve([ln.decode("latin-1") for ln in lines], delim, header, seq_col, expr_col)
    except ColumnError as err:
        raise InputError(str(err), "unresolved_columns") from None


def resolve_table(path: str, fmt: str, header: str = "auto", seq_col: str | None = None,
                  expr_col: str | None = None) -> tuple[TableSpec, bool, list[str]]:
    """Work out delimiter, header presence and the column indices; returns (spec, has_header, names)."""
    r = resolve_columns(path, fmt, header, seq_col, expr_col)
    return r.spec, r.has_header, r.names
