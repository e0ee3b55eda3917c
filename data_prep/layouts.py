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
from numpy.lib.stride_tricks import sliding_window_view

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
        L = self.length
        pos = np.arange(L, dtype=np.int64)
        # rows are copied as windows of L bytes (uint8 gathers, no (n, L) index arrays), then patched
        if not self.flank_5:  # the sequence from its start; positions past its end are N
            buf = np.concatenate([codes, np.full(L, alphabet.N, np.uint8)])
            out = sliding_window_view(buf, L)[starts]
            out[pos[None, :] >= lengths[:, None]] = alphabet.N
        else:  # the last L codes of flank + sequence: a window ending at the sequence's end...
            buf = np.concatenate([np.zeros(L, np.uint8), codes])
            out = sliding_window_view(buf, L)[ends]
            # ...whose first L - length positions come from the flank, flank[F - L + length + p]
            flank = np.concatenate([alphabet.encode(self.flank_5), np.zeros(L, np.uint8)])
            first = np.clip(len(self.flank_5) - L + lengths, 0, len(self.flank_5))
            short = lengths < L
            if short.any():
                rows = out[short]
                np.copyto(rows, sliding_window_view(flank, L)[first[short]],
                          where=pos[None, :] < (L - lengths[short])[:, None])
                out[short] = rows
        return out, lengths > L

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
