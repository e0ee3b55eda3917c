"""Repeated sequences in a build, and what `--duplicates` does with those whose labels disagree.

Every written record's sequence (upper-cased, as read) is keyed by a 64-bit hash; after the last chunk the
keys are sorted and grouped. The manifest's `counts.duplicates` and the build's summary always say how many
sequences occur more than once and how many of those carry different labels (the first such pair named by
file and line). Policies for conflicting labels:

- `keep` (default): every record is kept as read (replicates are information; the hash split puts all copies
  of a sequence in the same fold, so they never straddle train and test);
- `refuse`: the build fails naming the first conflicting pair, and writes nothing.

Memory: 24 bytes per written record in the main process (about 160 MB for the 6.7 M DREAM sequences).
"""
from __future__ import annotations

import numpy as np

from data_prep.errors import BuildError

POLICIES = ("keep", "refuse")


class Duplicates:
    """Keys, labels and (file, line) of the written records, chunk by chunk, in input order."""

    def __init__(self):
        self._parts: list[tuple] = []

    def add(self, key: np.ndarray, label: np.ndarray | None, file_index: int, line: np.ndarray) -> None:
        if len(key):
            self._parts.append((key, None if label is None else np.asarray(label, np.float64),
                                np.full(len(key), file_index, np.int32), np.asarray(line, np.int64)))

    def count(self, paths: list[str]) -> dict:
        """{sequences_repeated, records_repeated, conflicting_sequences, conflicting_records, first_conflict}."""
        out = {"sequences_repeated": 0, "records_repeated": 0, "conflicting_sequences": 0, "conflicting_records": 0,
               "first_conflict": None}
        if not self._parts:
            return out
        key = np.concatenate([p[0] for p in self._parts])
        order = np.argsort(key, kind="stable")  # stable: copies stay in input order
        k = key[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        sizes = np.diff(np.r_[starts, len(k)])
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
                         "input, or build with --duplicates keep (the default; the count goes to the manifest)")


def summary_line(counts: dict | None) -> str | None:
    """One line for the build's summary, or None when no sequence repeats."""
    if not counts or not counts["sequences_repeated"]:
        return None
    line = (f"  repeated sequences: {counts['sequences_repeated']:,} occur more than once "
            f"({counts['records_repeated']:,} extra records, all kept)")
    if counts["conflicting_sequences"]:
        line += (f"; {counts['conflicting_sequences']:,} of them with different labels "
                 f"({counts['conflicting_records']:,} records), first {counts['first_conflict']}")
    return line
