"""Fixed-length layouts: how a raw variable-length sequence becomes the model's `length` codes.

crmnet  112 nt: the sequence as given, N-padded at the 3' end, longer ones cut at the 3' end
        (what the published CRMnet code does).
legnet  150 nt: drop the 17 nt 5' adapter, prepend the 150 nt of pTpA plasmid that lie upstream
        of the insert, keep the last 150 nt (LegNet pads with real plasmid, not N).
Both work on many sequences at once: `starts/ends` index into one code buffer (a parsed chunk).
A model package with a layout of its own adds it with `register_layout` in its registry module.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep import alphabet

ADAPTER_5 = "TGCATTTTTTTCACATC"
ADAPTER_3 = "GGTTACGGCTGTT"
PLASMID_5_FLANK = (
    "AGTCCACTATTAAAGAACGTGGACTCCAACGTCAAAGGGCGAAAAACCGTCTATCAGGGCGATGGCCCACTACGTGAACCATCACCCTAATCAAG"
    "TGCTAGCAGGAATGATGCAAAAGGTTCCCGATTCGAACTGCATTTTTTTCACATC")
assert len(PLASMID_5_FLANK) == 150 and PLASMID_5_FLANK.endswith(ADAPTER_5)


@dataclass(frozen=True)
class Layout:
    name: str
    length: int
    #: nt dropped from the 5' end before the flank is prepended (legnet: the 17 nt adapter)
    trim_5: int = 0
    #: codes prepended on the 5' side (legnet: plasmid); empty means pad with N at the 3' end
    flank_5: str = ""
    #: labeled records carry the is_singleton flag (expression is a whole number; LegNet's extra channel)
    has_singleton: bool = False

    @property
    def singleton(self) -> bool:
        return self.has_singleton

    @property
    def min_length(self) -> int:
        return self.trim_5 + 1

    def apply(self, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        """Lay out sequences codes[starts[i]:ends[i]].

        Returns (out (n, length) uint8, truncated bool (n,)). Callers reject sequences shorter
        than `min_length` before calling.
        """
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        lengths = ends - starts - self.trim_5
        pos = np.arange(self.length, dtype=np.int64)
        if not self.flank_5:
            # the byte just past each sequence (its delimiter) stands in for the N padding
            buf = np.append(codes, np.uint8(alphabet.N))
            buf[ends] = alphabet.N
            idx = np.minimum(starts[:, None] + pos[None, :], ends[:, None])
        else:
            # one buffer holding the chunk then the flank; t < 0 indexes into the flank
            buf = np.concatenate([codes, alphabet.encode(self.flank_5)])
            t = pos[None, :] - self.length + lengths[:, None]
            idx = t + np.where(t >= 0, (starts + self.trim_5)[:, None], codes.size + len(self.flank_5))
        return buf[idx], lengths > self.length

    def apply_one(self, seq: str) -> np.ndarray:
        codes = alphabet.encode(seq)
        out, _ = self.apply(codes, np.array([0]), np.array([len(codes)]))
        return out[0]


LAYOUTS = {
    "crmnet": Layout("crmnet", 112),
    "legnet": Layout("legnet", 150, trim_5=len(ADAPTER_5), flank_5=PLASMID_5_FLANK, has_singleton=True),
}


def register_layout(layout: Layout) -> Layout:
    """Make a model's own layout known to the builder and the reader (same name, same layout: a no-op)."""
    if LAYOUTS.get(layout.name, layout) != layout:
        raise ValueError(f"layout {layout.name!r} is already defined differently: {LAYOUTS[layout.name]}")
    LAYOUTS[layout.name] = layout
    return layout


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; choose from {sorted(LAYOUTS)}") from None
