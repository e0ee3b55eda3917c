"""The build's inputs, checked before any record is read, and the per-file policy and summary.

Every input is resolved up front (format, header, which columns, how), so a file that cannot be read
or whose columns are ambiguous stops the build before the long work starts. A file-level failure of
any input (unreadable, empty, unresolved columns, truncated, every record rejected) fails the whole
build unless `--skip-bad-files` is given; then it is skipped (a truncated file keeps the records read
before the cut) and the summary and the manifest say so.
"""
from __future__ import annotations

import collections
import os
import sys
from dataclasses import dataclass, field

from data_prep.errors import BuildError
from data_prep.manifest import MANIFEST, sha256_file
from data_prep.parse import Rejection, TableSpec
from data_prep.sources import InputError, detect_format, read_head, resolve_columns


@dataclass
class InputPlan:
    index: int
    path: str
    fmt: str
    table: TableSpec | None
    skip_lines: int
    labeled: bool
    info: dict                     # this file's entry in manifest["inputs"]
    reasons: collections.Counter = field(default_factory=collections.Counter)
    first_rejection: Rejection | None = None

    @property
    def skipped(self) -> bool:
        return self.info["skipped"]

    def count(self, records_in: int, written: int, rejections: list[Rejection]) -> None:
        self.info["records_in"] += records_in
        self.info["written"] += written
        self.info["rejected"] += len(rejections)
        for r in rejections:
            self.reasons[r.reason] += 1
            self.first_rejection = self.first_rejection or r


def check_inputs(inputs: list[str]) -> None:
    """Missing files, folders, and the same file (or the same content) given twice."""
    seen: dict[tuple[int, int], str] = {}
    by_size: dict[int, list[str]] = collections.defaultdict(list)
    for path in inputs:
        if os.path.isdir(path):
            built = " (it is a data_prep.build output: use it as it is)" if os.path.isfile(
                os.path.join(path, MANIFEST)) else ""
            raise BuildError(f"{path}: is a folder; data_prep.build reads TSV/CSV/FASTA files{built}")
        if not os.path.isfile(path):
            raise BuildError(f"{path}: input file not found")
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in seen:
            raise BuildError(f"{path}: given twice (also as {seen[st.st_dev, st.st_ino]}); give each input once")
        seen[st.st_dev, st.st_ino] = path
        if st.st_size:
            by_size[st.st_size].append(path)
    for group in by_size.values():  # only files of equal size can be equal: hash just those
        digests: dict[str, str] = {}
        for path in group if len(group) > 1 else ():
            d = sha256_file(path)
            if d in digests:
                raise BuildError(f"{path}: same content as {digests[d]}; every record would be counted twice "
                                 "(give each file once)")
            digests[d] = path


def check_options(args) -> None:
    """Numeric options a careless command line gets wrong, named by their flag (before any work)."""
    problems = []
    for flag, value in (("--workers", args.workers), ("--chunk-bytes", args.chunk_bytes)):
        if value < 1:
            problems.append(f"{flag} {value}: must be a positive whole number")
    if not 1 <= args.n_folds <= 127:
        problems.append(f"--n-folds {args.n_folds}: must be in 1..127")
    for flag, folds in (("--val-folds", args.val_folds), ("--test-folds", args.test_folds)):
        bad = [f for f in folds if not 0 <= f < args.n_folds]
        if bad and args.split == "hash":
            problems.append(f"{flag} {','.join(map(str, folds))}: folds are 0..{args.n_folds - 1} "
                            f"(--n-folds {args.n_folds})")
    for flag, value in (("--val-fraction", args.val_fraction), ("--test-fraction", args.test_fraction)):
        if not 0 <= value < 1:
            problems.append(f"{flag} {value}: must be a fraction in [0, 1)")
    if args.split == "random" and args.val_fraction + args.test_fraction >= 1:
        problems.append(f"--val-fraction + --test-fraction = {args.val_fraction + args.test_fraction}: "
                        "must be below 1 (nothing would be left to train on)")
    if problems:
        raise BuildError("; ".join(problems))


def _plan_one(fi: int, path: str, args) -> InputPlan:
    fmt = detect_format(path, args.format)
    info = {"path": os.path.abspath(path), "format": fmt, "problems": [], "skipped": False,
            "records_in": 0, "written": 0, "rejected": 0}
    plan = InputPlan(fi, path, fmt, None, 0, False, info)
    try:
        if fmt == "fasta":
            if not read_head(path, 1):
                raise InputError("file is empty (no records)", "empty_file")
            info.update(header=False, columns_used={"sequence": {"how": "fasta"}, "expression": None},
                        columns_summary="FASTA: sequences from the records, ids from the '>' lines, no labels")
            return plan
        r = resolve_columns(path, fmt, args.header, args.seq_col, args.expr_col)
    except InputError as err:
        info["problems"].append({"line": 0, "reason": err.reason, "detail": str(err)})
        info["skipped"] = True
        return plan
    plan.table, plan.skip_lines, plan.labeled = r.spec, int(r.has_header), r.expression is not None
    info.update(header=r.has_header, columns=r.names, seq_col=r.sequence.name,
                expr_col=None if r.expression is None else r.expression.name,
                columns_used=r.to_dict(), columns_summary=r.describe())
    return plan


def fail_or_skip(failures: list[tuple[str, str, str]], n_inputs: int, args) -> None:
    """Raise for file-level failures, unless --skip-bad-files (then warn, one line per file)."""
    if not failures:
        return
    if args.strict or not getattr(args, "skip_bad_files", False):
        msg = "; ".join(f"{path}: {reason}: {detail}" for path, reason, detail in failures)
        others = n_inputs - len({p for p, _, _ in failures})
        hint = (f" (pass --skip-bad-files to build from the other {others} file(s))"
                if others and not args.strict else "")
        raise BuildError(msg + hint)
    for path, reason, detail in failures:
        print(f"warning: {path}: {reason}: {detail} (--skip-bad-files: building from the other files)",
              file=sys.stderr)


def plan_inputs(inputs: list[str], args) -> list[InputPlan]:
    """Resolve every input before any record is read; file-level failures stop the build here."""
    check_inputs(inputs)
    plans = [_plan_one(fi, path, args) for fi, path in enumerate(inputs)]
    fail_or_skip([(p.path, pr["reason"], pr["detail"]) for p in plans if p.skipped for pr in p.info["problems"]],
                 len(inputs), args)
    used = [p for p in plans if not p.skipped]
    unlabeled = [p.path for p in used if not p.labeled]
    if unlabeled and len(unlabeled) < len(used):
        labeled = [p.path for p in used if p.labeled]
        raise BuildError(f"{', '.join(unlabeled)}: unlabeled (FASTA or no expression column) but "
                         f"{', '.join(labeled)} labeled; build them separately")
    return plans


def late_failures(plans: list[InputPlan], problems: list) -> list[tuple[str, str, str]]:
    """File-level failures found while reading: truncated input, no records, every record rejected."""
    out = []
    for plan in plans:
        if plan.skipped:
            continue
        info = plan.info
        mine = [pr for path, pr in problems if path == plan.path]
        out += [(plan.path, pr.reason, pr.detail) for pr in mine]
        merged = plan.reasons.get("duplicate_merged", 0)  # --duplicates average: copies of records kept elsewhere
        if info["written"] == 0 and info["records_in"] > merged:
            top = ", ".join(f"{r} {n:,}" for r, n in plan.reasons.most_common(3))
            first = plan.first_rejection
            example = f"; first at line {first.line}: {first.detail}" if first else ""
            out.append((plan.path, "all_records_rejected",
                        f"no records written: all {info['records_in']:,} records were rejected ({top}{example})"))
            info["skipped"] = True
        elif info["records_in"] == 0 and not mine:
            out.append((plan.path, "empty_file", "no records (a header and nothing else?)"))
            info["skipped"] = True
    for path, reason, detail in out:
        info = next(p.info for p in plans if p.path == path)
        if not any(pr["reason"] == reason for pr in info["problems"]):
            info["problems"].append({"line": 0, "reason": reason, "detail": detail})
    return out


def summary_lines(manifest: dict) -> list[str]:
    """One line per input: the columns used and how they were chosen, the counts, or why it was skipped."""
    lines = []
    for info in manifest["inputs"]:
        if info.get("skipped"):
            why = "; ".join(f"{p['reason']}: {p['detail']}" for p in info["problems"])
            lines.append(f"  {info['path']}: skipped ({why})")
            continue
        problems = "".join(f"; {p['reason']}: {p['detail']}" for p in info["problems"])
        lines.append(f"  {info['path']}: {info.get('columns_summary', '')}; {info['written']:,} written, "
                     f"{info['rejected']:,} rejected{problems}")
    return lines


def rejected_lines(folder: str, manifest: dict, first: int = 3) -> list[str]:
    """The rejected records of a build as lines to print (a count per reason, then the first few), for a build
    whose folder (and its rejected.tsv) is temporary and will be gone when the user looks."""
    c = manifest["counts"]
    if not c["rejected"]:
        return []
    reasons = ", ".join(f"{r} {n:,}" for r, n in c["rejected_by_reason"].items())
    lines = [f"  {c['rejected']:,} rejected ({reasons}); the first:"]
    with open(os.path.join(folder, "rejected.tsv")) as fh:
        next(fh, None)
        for row in fh:
            path, line, reason, detail, text = (row.rstrip("\n").split("\t") + [""] * 5)[:5]
            if line != "0":
                lines.append(f"    {path}:{line}: {reason}: {detail}" + (f" ({text[:60]!r})" if text else ""))
            if len(lines) > first:
                break
    return lines
