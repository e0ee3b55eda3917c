"""The order readers visit records in: ONE definition for the tf.data reader (`data_prep.dataset`) and
the numpy reader (`data_prep.numpy_reader`), so that both yield the same batches in the same order for
the same seed. Pure numpy; no TensorFlow.

Process sharding: of n input processes, process i reads shards i, i+n, ... of a split (manifest
order). With fewer shards than processes every process reads every shard and keeps rows i, i+n, ...
of each (slower: each inflates everything), with a warning.

Training, one dataset (`stream` k of a mix), pass p (an epoch), seed s:
  1. the process's shards in the order of rng(s, k, p).permutation;
  2. cut into groups of consecutive shards, each closed once it holds >= `group_records` records
     and >= 2 shards (or when the shards run out);
  3. group g's rows (its shards' rows, concatenated) in the order rng(s, k, p, g).permutation(n),
     extended by its own first (-n mod block) entries (wrapping) so that it is whole blocks;
  4. blocks of `block` rows, group after group; pass after pass when repeating.
Each group is permuted whole, so a batch is a uniform sample of the group's records (no shuffle
buffer), and every record is read at least once per pass. A batch is the next batch/block blocks.
Several datasets: each block is drawn from dataset k with probability weights[k], draws coming from
rng(s, MIX) 4096 at a time. rng(...) is `np.random.default_rng([...])`.
"""
from __future__ import annotations

import logging
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
_FILES, _ROWS, _MIX = 0, 1, 2  # rng tags
MIX_DRAWS = 4096


def resolve_seed(seed: int | None) -> int:
    """A non-negative seed; None draws a fresh one (an unseeded reader differs run to run)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy) & (2**63 - 1)
    return operator.index(seed) & (2**64 - 1)


@dataclass(frozen=True)
class ProcessShards:
    """What one input process reads of one split."""

    paths: tuple[str, ...]
    #: records in each of those shard files (the manifest's count)
    records: tuple[int, ...]
    #: take rows offset, offset + stride, ... of every shard (stride 1: whole shards)
    stride: int = 1
    offset: int = 0

    @property
    def rows(self) -> tuple[int, ...]:
        """Rows this process reads from each shard."""
        return tuple(len(range(self.offset, n, self.stride)) for n in self.records)


def process_shards(paths: Sequence[str], records: Sequence[int], index: int = 0, count: int = 1,
                   where: str = "") -> ProcessShards:
    """Process `index` of `count`'s share of a split's shards (see the module docstring)."""
    if not 0 <= index < count:
        raise ValueError(f"process index {index} is not in 0..{count - 1}")
    if count > 1 and len(paths) >= count:
        return ProcessShards(tuple(paths[index::count]), tuple(records[index::count]))
    if count > 1:
        log.warning("%s has %d shard(s) for %d input processes; sharding by record instead (every process "
                    "inflates every shard). Rebuild with --records-per-shard at most %d so that each process "
                    "gets whole shards.", where or "the split", len(paths), count, max(sum(records) // count, 1))
    return ProcessShards(tuple(paths), tuple(records), count, index)


@dataclass
class Group:
    """Shards read together and the order of their concatenated rows (a whole number of blocks)."""

    paths: list[str]
    #: records in each shard file, and the rows of each this process reads
    records: list[int]
    rows: list[int]
    order: np.ndarray  # int64


class TrainOrder:
    """Groups of one dataset for training. Each `groups()` call is one iteration: pass k on the k-th
    call, or passes k, k+1, ... forever with `repeat` (as tf.data's reshuffle-each-iteration)."""

    def __init__(self, shards: ProcessShards, block: int, group_records: int, seed: int, stream: int = 0,
                 repeat: bool = False):
        if not sum(shards.rows):
            raise ValueError(f"no records to read in {shards.paths}")
        self.shards, self.block, self.group_records = shards, block, group_records
        self.seed, self.stream, self.repeat = seed, stream, repeat
        self._next_pass = 0

    def groups(self) -> Iterator[Group]:
        p = self._next_pass
        self._next_pass += 1
        while True:
            yield from self.pass_groups(p)
            if not self.repeat:
                return
            p = self._next_pass
            self._next_pass += 1

    def pass_groups(self, p: int) -> Iterator[Group]:
        paths, rows = self.shards.paths, self.shards.rows
        order = np.random.default_rng([self.seed, _FILES, self.stream, p]).permutation(len(paths))
        members: list[int] = []
        g = 0
        for k, i in enumerate(order.tolist()):
            members.append(i)
            if k == len(order) - 1 or (len(members) >= 2 and sum(rows[j] for j in members) >= self.group_records):
                n = sum(rows[j] for j in members)
                if n:
                    perm = np.random.default_rng([self.seed, _ROWS, self.stream, p, g]).permutation(n)
                    pad = -n % self.block
                    yield Group([paths[j] for j in members], [self.shards.records[j] for j in members],
                                [rows[j] for j in members],
                                np.concatenate([perm, perm[np.arange(pad) % n]]))
                members, g = [], g + 1


def mix_choices(seed: int, weights: Sequence[float] | None, k: int) -> Iterator[np.ndarray]:
    """Endless draws of which of k datasets each block comes from, MIX_DRAWS at a time."""
    w = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {k} non-negative numbers with a positive sum, got {weights}")
    rng = np.random.default_rng([seed, _MIX])
    while True:
        yield rng.choice(k, size=MIX_DRAWS, p=w / w.sum())


def block_size(batch: int, block: int) -> int:
    """The largest block of at most `block` rows that divides the batch (batches are whole blocks)."""
    return max(d for d in range(1, min(block, batch) + 1) if batch % d == 0)
