"""Deterministic train/val/test assignment.

`hash` (default): fold = mmh3(sequence, seed, unsigned) % n_folds, as LegNet's reference does, so
identical sequences always share a fold and a split; val/test are chosen by fold.
`random`: CRMnet's 99/1 style split, drawn per line from a generator keyed by
(seed, file, chunk) so it does not depend on worker count. `none`: everything in split "all".
The fold is stored in every record whatever the mode, so later runs can re-split without rebuilding.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MODES = ("hash", "random", "none")


@dataclass(frozen=True)
class SplitSpec:
    mode: str = "hash"
    n_folds: int = 10
    hash_seed: int = 0
    val_folds: tuple[int, ...] = (9,)
    test_folds: tuple[int, ...] = ()
    val_fraction: float = 0.01
    test_fraction: float = 0.0
    split_seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"split mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= self.n_folds <= 127:
            raise ValueError("n_folds must be in 1..127")
        folds = set(self.val_folds) | set(self.test_folds)
        if any(not 0 <= f < self.n_folds for f in folds):
            raise ValueError(f"val/test folds must be in 0..{self.n_folds - 1}")
        if set(self.val_folds) & set(self.test_folds):
            raise ValueError("a fold cannot be both validation and test")
        if self.mode == "random" and not 0 <= self.val_fraction + self.test_fraction < 1:
            raise ValueError("val_fraction + test_fraction must be in [0, 1)")

    @property
    def names(self) -> tuple[str, ...]:
        if self.mode == "none":
            return ("all",)
        has_test = bool(self.test_folds) if self.mode == "hash" else self.test_fraction > 0
        return ("train", "val", "test") if has_test else ("train", "val")

    def folds(self, hashes: np.ndarray) -> np.ndarray:
        return (np.asarray(hashes, dtype=np.uint32) % np.uint32(self.n_folds)).astype(np.uint8)

    def assign(self, folds: np.ndarray, positions: np.ndarray, n_lines: int, file_index: int,
               chunk_index: int) -> np.ndarray:
        """Index into `names` for each record; `positions` are the records' line offsets in the chunk."""
        if self.mode == "none":
            return np.zeros(folds.size, dtype=np.int8)
        out = np.zeros(folds.size, dtype=np.int8)
        if self.mode == "hash":
            out[np.isin(folds, self.val_folds)] = 1
            out[np.isin(folds, self.test_folds)] = 2
            return out
        u = np.random.default_rng([self.split_seed, file_index, chunk_index]).random(n_lines)[positions]
        out[u < self.val_fraction] = 1
        out[(u >= self.val_fraction) & (u < self.val_fraction + self.test_fraction)] = 2
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["val_folds"], d["test_folds"] = list(self.val_folds), list(self.test_folds)
        return d
