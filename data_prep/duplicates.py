"""Repeated sequences in a build, and what `--duplicates` does with those whose labels disagree.

Every written record's sequence (upper-cased, as read) is keyed by a 64-bit hash; after the last chunk the
keys are sorted and grouped. The manifest's `counts.duplicates` and the build's summary always say how many
sequences occur more than once and how many of those carry different labels (the first such pair named by
file and line). Policies for conflicting labels:

- `keep` (default): every record is kept as read (replicates are information; the hash split puts all copies
  of a sequence in the same fold, so they never straddle train and test);
- `average`: one record per sequence: the first copy, labelled with the mean of all copies; every later copy
  is listed in rejected.tsv as `duplicate_merged` ("averaged into FILE:LINE (3 copies, mean 2.5)"), so
  records in = written + rejected still holds. It costs a first pass over the inputs (parse only) that finds
  the copies before anything is written;
- `refuse`: the build fails naming the first conflicting pair, and writes nothing.

Memory: 24 bytes per written record in the main process (about 160 MB for the 6.7 M DREAM sequences).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.errors import BuildError
from data_prep.parse import Parsed, Rejection


@dataclass(frozen=True)
class Merge:
    """What `--duplicates average` does in one file (or one chunk of it): by input line."""

    first_lines: np.ndarray  # sorted lines of first copies ...
    means: np.ndarray        # ... and the mean label of all their copies
    drop_lines: np.ndarray   # sorted lines of later copies ...
    into: np.ndarray         # ... and where each went ("FILE:LINE (n copies, mean x)")

    def lines(self, first: int, end: int) -> Merge | None:
        """The part for input lines first..end-1 (a chunk), or None when it has nothing to do."""
        a, b = np.searchsorted(self.first_lines, [first, end])
        c, d = np.searchsorted(self.drop_lines, [first, end])
        if a == b and c == d:
            return None
        return Merge(self.first_lines[a:b], self.means[a:b], self.drop_lines[c:d], self.into[c:d])

    def apply(self, p: Parsed) -> list[Rejection]:
        """First copies get the mean label; later copies leave `p` and come back as rejections."""
        if len(self.first_lines):
            hit = np.isin(p.line, self.first_lines)
            p.label[hit] = self.means[np.searchsorted(self.first_lines, p.line[hit])]
        drop = np.isin(p.line, self.drop_lines)
        if not drop.any():
            return []
        where = self.into[np.searchsorted(self.drop_lines, p.line[drop])]
        merged = [Rejection(int(ln), MERGED, f"averaged into {w}") for ln, w in zip(p.line[drop].tolist(), where)]
        keep = ~drop
        for name in ("line", "codes", "hash", "length", "truncated", "label", "key"):
            if getattr(p, name) is not None:
                setattr(p, name, getattr(p, name)[keep])
        if p.ids is not None:
            p.ids = [i for i, k in zip(p.ids, keep.tolist()) if k]
        return merged

POLICIES = ("keep", "average", "refuse")
MERGED = "duplicate_merged"


class Duplicates:
    """Keys, labels and (file, line) of the written records, chunk by chunk, in input order."""

    def __init__(self):
        self._parts: list[tuple] = []

    def add(self, key: np.ndarray, label: np.ndarray | None, file_index: int, line: np.ndarray) -> None:
        if len(key):
            self._parts.append((key, None if label is None else np.asarray(label, np.float64),
                                np.full(len(key), file_index, np.int32), np.asarray(line, np.int64)))

    def _grouped(self):
        key = np.concatenate([p[0] for p in self._parts])
        order = np.argsort(key, kind="stable")  # stable: copies stay in input order
        k = key[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        return order, starts, np.diff(np.r_[starts, len(k)])

    def merge_plan(self, paths: list[str]) -> dict[int, Merge]:
        """file index -> Merge for `--duplicates average` (first copy keeps the mean, later copies merge)."""
        if not self._parts or self._parts[0][1] is None:
            return {}
        order, starts, sizes = self._grouped()
        label = np.concatenate([p[1] for p in self._parts])[order]
        files = np.concatenate([p[2] for p in self._parts])[order]
        lines = np.concatenate([p[3] for p in self._parts])[order]
        means = np.add.reduceat(label, starts) / sizes if len(starts) else np.zeros(0)
        group = np.repeat(np.arange(len(starts)), sizes)
        later = np.ones(len(order), bool)
        later[starts] = False
        later &= sizes[group] > 1
        firsts = starts[sizes > 1]
        into = np.array([f"{paths[files[starts[g]]]}:{lines[starts[g]]} ({sizes[g]} copies, mean {means[g]:g})"
                         for g in group[later]], dtype=object)
        plan = {}
        for f in np.unique(files[np.r_[firsts, np.flatnonzero(later)].astype(np.int64)]):
            fm, lm = files[firsts] == f, files[later] == f
            fo, lo = np.argsort(lines[firsts][fm]), np.argsort(lines[later][lm])
            plan[int(f)] = Merge(lines[firsts][fm][fo], means[sizes > 1][fm][fo], lines[later][lm][lo],
                                 into[lm][lo])
        return plan

    def count(self, paths: list[str]) -> dict:
        """{sequences_repeated, records_repeated, conflicting_sequences, conflicting_records, first_conflict}."""
        out = {"sequences_repeated": 0, "records_repeated": 0, "conflicting_sequences": 0, "conflicting_records": 0,
               "first_conflict": None}
        if not self._parts:
            return out
        order, starts, sizes = self._grouped()
        repeated = sizes > 1
        out["sequences_repeated"] = int(repeated.sum())
        out["records_repeated"] = int((sizes[repeated] - 1).sum())
        if self._parts[0][1] is None or not repeated.any():
            return out
        label = np.concatenate([p[1] for p in self._parts])[order]
        conflict = repeated & (np.minimum.reduceat(label, starts) != np.maximum.reduceat(label, starts))
        out["conflicting_sequences"] = int(conflict.sum())
        out["conflicting_records"] = int(sizes[conflict].sum())
        if conflict.any():
            files = np.concatenate([p[2] for p in self._parts])[order]
            lines = np.concatenate([p[3] for p in self._parts])[order]
            g = min(np.flatnonzero(conflict), key=lambda i: order[starts[i]])  # the earliest in the input
            members = np.arange(starts[g], starts[g] + sizes[g])
            other = members[label[members] != label[members[0]]][0]
            a, b = members[0], other
            out["first_conflict"] = (f"{paths[files[a]]}:{lines[a]} (label {label[a]:g}) and "
                                     f"{paths[files[b]]}:{lines[b]} (label {label[b]:g})")
        return out


def apply_policy(policy: str, counts: dict) -> None:
    """`refuse`: a BuildError naming the first conflicting pair (the build is then not swapped in)."""
    if policy not in POLICIES:
        raise BuildError(f"--duplicates {policy}: must be one of {', '.join(POLICIES)}")
    if policy == "refuse" and counts["conflicting_sequences"]:
        raise BuildError(f"{counts['conflicting_sequences']:,} sequence(s) occur more than once with different "
                         f"labels, first {counts['first_conflict']}; --duplicates refuse: reconcile them in the "
                         "input, or build with --duplicates keep (the default) or average")


def summary_line(counts: dict | None) -> str | None:
    """One line for the build's summary, or None when no sequence repeats."""
    if not counts or not counts["sequences_repeated"]:
        return None
    done = "merged into the first copy, labelled with the mean" if counts.get("policy") == "average" else "all kept"
    line = (f"  repeated sequences: {counts['sequences_repeated']:,} occur more than once "
            f"({counts['records_repeated']:,} extra records, {done})")
    if counts["conflicting_sequences"]:
        line += (f"; {counts['conflicting_sequences']:,} of them with different labels "
                 f"({counts['conflicting_records']:,} records), first {counts['first_conflict']}")
    return line
