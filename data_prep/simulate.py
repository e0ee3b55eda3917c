"""Synthetic yeast GPRA data with a known ground truth.

Real MPRA measurements cannot tell us whether a model learned the *right* thing, and the real files may
not be shipped. This generator mimics the DREAM/GPRA format (adapters, 80 nt random region, 0-17 bin
scale, ~58% single-cell integer values) while planting real yeast TF sites whose effects, position and
orientation dependence and interactions are recorded in a JSON-serialisable :class:`GroundTruth`. A
trained model can then be scored against the noiseless truth on any sequence, mutated ones included.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from data_prep import alphabet
from data_prep.command_line import Parser, one_line_errors
from data_prep.layouts import ADAPTER_3, ADAPTER_5  # noqa: E402  (the real constant adapters)
from data_prep.outputs import OutputRule

VARIABLE_LEN = 80
MAX_BIN = 17
_ALPHABET = np.frombuffer(b"ACGT", dtype=np.uint8)
_LUT = np.full(256, 4, dtype=np.uint8)  # 4 = not ACGT, never matches a motif
for _i, _c in enumerate(b"ACGT"):
    _LUT[_c] = _LUT[_c + 32] = _i
_CHUNK = 1 << 16

# (name, consensus site, nominal effect in logit units): real yeast sites; activators > 0, repressors < 0.
_CATALOGUE = (
    ("Reb1", "TTACCCGG", 1.1),
    ("Abf1", "ATCATTATACACG", 1.1),
    ("Rap1", "ACACCCATACAT", 1.4),
    ("TATA", "TATAAAAG", 1.0),
    ("Gcn4", "ATGACTCAT", 0.75),
    ("Mcm1", "CCTATTTAGG", 0.9),
    ("polyT", "TTTTTTTTTT", 0.9),  # nucleosome-depleting poly-dT tract
    ("Ume6", "TAGCCGCCGA", -1.5),  # URS1 repressor site
    ("Mig1", "AATGCGGGG", -1.0),  # glucose repression
)
_PAIRS = (("Reb1", "TATA", 0.6), ("Rap1", "Gcn4", 0.5))


def _revcomp(site: str) -> str:
    return alphabet.decode(alphabet.reverse_complement(alphabet.encode(site)))


def _code(site: str) -> np.ndarray:
    return _LUT[np.frombuffer(site.encode(), dtype=np.uint8)]


@dataclass(frozen=True)
class Motif:
    """One planted site. Its contribution is effect * strand factor * positional profile, so a model must
    learn where and in which orientation the site sits, not just whether it is present."""

    name: str
    site: str
    effect: float
    reverse_factor: float  # multiplier for the reverse-complement strand (forward = 1)
    pos_center: float  # profile peak, as a fraction of the 80 nt region (0 = 5' end)
    pos_width: float
    pos_floor: float  # profile value far from the peak

    def profile(self, x: np.ndarray) -> np.ndarray:
        bump = np.exp(-0.5 * ((x - self.pos_center) / self.pos_width) ** 2)
        return self.pos_floor + (1 - self.pos_floor) * bump


@dataclass(frozen=True)
class Interaction:
    """Extra effect when both motifs occur anywhere in the same sequence (synergy if positive)."""

    a: str
    b: str
    effect: float


@dataclass(frozen=True)
class GroundTruth:
    """Expression = 17 * sigmoid(baseline + motif terms + interactions + gc_coef * (GC - 0.5)).
    The sigmoid keeps the truth inside the bin scale and saturates strong promoters, as real data do."""

    motifs: tuple[Motif, ...]
    interactions: tuple[Interaction, ...]
    baseline: float
    gc_coef: float
    noise_sd: float  # sd of the per-cell deviation on the bin scale
    seed: int | None = None

    @classmethod
    def from_seed(cls, seed: int = 0, noise_sd: float = 1.5) -> GroundTruth:
        rng = np.random.default_rng([seed, 1])

        def u(lo: float, hi: float) -> float:
            return round(float(rng.uniform(lo, hi)), 4)

        motifs = []
        for name, site, effect in _CATALOGUE:
            # TATA acts close to the TSS (3' end); other sites get a random preferred region.
            center = 0.85 if name == "TATA" else u(0.15, 0.85)
            motifs.append(Motif(name, site, round(effect * u(0.8, 1.2), 4), u(0.35, 0.9), center,
                                u(0.15, 0.4), u(0.2, 0.5)))
        inter = tuple(Interaction(a, b, round(e * u(0.8, 1.2), 4)) for a, b, e in _PAIRS)
        return cls(tuple(motifs), inter, baseline=0.35, gc_coef=-2.0, noise_sd=noise_sd, seed=seed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GroundTruth:
        d = dict(d)
        d["motifs"] = tuple(Motif(**m) for m in d["motifs"])
        d["interactions"] = tuple(Interaction(**i) for i in d["interactions"])
        return cls(**d)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> GroundTruth:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    @cached_property
    def _scan_table(self):
        """Both strands of every motif (palindromes once), plus a 65536-entry table keyed by the 8-mer
        code that flags which entries may start there; only those candidates are verified further."""
        entries = []  # (motif index, strand factor, codes)
        for j, m in enumerate(self.motifs):
            if len(m.site) < 8 or len(entries) > 62:
                raise ValueError(f"motif {m.name}: sites need >= 8 nt and at most 64 strands in all")
            entries.append((j, 1.0, _code(m.site)))
            if _revcomp(m.site) != m.site:
                entries.append((j, m.reverse_factor, _code(_revcomp(m.site))))
        table = np.zeros(1 << 16, dtype=np.uint64)
        for e, (_, _, c) in enumerate(entries):
            table[_pack8(c[None, :8])[0, 0]] |= np.uint64(1) << np.uint64(e)
        return entries, table

    def motif_counts(self, sequences) -> np.ndarray:
        """(n, n_motifs) number of occurrences of each motif (either strand) per sequence."""
        return self._run(sequences)[1]

    def expression(self, sequences) -> np.ndarray:
        """Noiseless expected expression (bin scale, float64) of any sequences, of any length."""
        return self._run(sequences)[0]

    def _run(self, sequences):
        sequences = [sequences] if isinstance(sequences, str) else list(sequences)
        out = np.empty(len(sequences), dtype=np.float64)
        counts = np.zeros((len(sequences), len(self.motifs)), dtype=np.int32)
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        for length in np.unique(lengths):
            idx = np.flatnonzero(lengths == length)
            buf = "".join(sequences[i] for i in idx).encode("ascii", "replace")
            codes = _LUT[np.frombuffer(buf, dtype=np.uint8)].reshape(len(idx), int(length))
            out[idx], counts[idx] = self._score_codes(codes)
        return out, counts

    def _score_codes(self, codes: np.ndarray):
        """Score (n, L) uint8 codes in chunks; returns (expression, motif counts)."""
        n, length = codes.shape
        expr = np.empty(n, dtype=np.float64)
        counts = np.zeros((n, len(self.motifs)), dtype=np.int32)
        entries, table = self._scan_table
        names = [m.name for m in self.motifs]
        offset = length - len(ADAPTER_3) - VARIABLE_LEN  # start of the 80 nt region in a 110 nt read
        for lo in range(0, n, _CHUNK):
            c = codes[lo:lo + _CHUNK]
            m = len(c)
            z = np.full(m, self.baseline)
            core = c[:, len(ADAPTER_5):length - len(ADAPTER_3)] if length > 30 else c
            gc = ((core == 1) | (core == 2)).sum(1) / np.maximum((core < 4).sum(1), 1)
            z += self.gc_coef * (gc - 0.5)
            if length >= 8:
                c8 = _pack8(c & 3)
                cand = table[c8]
                bad8 = None
                if (c > 3).any():  # windows touching an N (or other letter) match nothing
                    win = np.pad(np.cumsum(c > 3, axis=1), ((0, 0), (1, 0)))
                    bad8 = (win[:, 8:] - win[:, :-8]) > 0
                    cand[bad8] = 0
                rows, pos = np.nonzero(cand)
                flags = cand[rows, pos]
                for e, (j, factor, site) in enumerate(entries):
                    sel = ((flags >> np.uint64(e)) & np.uint64(1)).astype(bool)
                    r, p = rows[sel], pos[sel]
                    k = len(site)
                    for off in sorted(set(range(8, k - 7, 8)) | {k - 8} - {0}):
                        ok = p + off < c8.shape[1]
                        r, p = r[ok], p[ok]
                        ok = c8[r, p + off] == _pack8(site[None, off:off + 8])[0, 0]
                        if bad8 is not None:
                            ok &= ~bad8[r, p + off]
                        r, p = r[ok], p[ok]
                    mot = self.motifs[j]
                    x = (p + k / 2 - offset) / VARIABLE_LEN
                    z += np.bincount(r, mot.effect * factor * mot.profile(x), minlength=m)
                    counts[lo:lo + m, j] += np.bincount(r, minlength=m).astype(np.int32)
                present = counts[lo:lo + m] > 0
                for it in self.interactions:
                    z += it.effect * (present[:, names.index(it.a)] & present[:, names.index(it.b)])
            expr[lo:lo + m] = MAX_BIN / (1 + np.exp(-z))
        return expr, counts


def _pack8(c: np.ndarray) -> np.ndarray:
    """2-bit pack every 8-mer window of (n, L) codes 0-3 into uint16 (n, L-7)."""
    c4 = (c[:, :-3] << 6) | (c[:, 1:-2] << 4) | (c[:, 2:-1] << 2) | c[:, 3:]
    return (c4[:, :-4].astype(np.uint16) << 8) | c4[:, 4:]


@dataclass(frozen=True)
class SimulatedData:
    """Measured values for training plus the noiseless truth they came from, for checking a model."""

    sequences: list[str]
    expression: np.ndarray  # measured: weighted mean of the cells' bins
    true_expression: np.ndarray  # noiseless GroundTruth.expression
    n_cells: np.ndarray
    truth: GroundTruth

    def __len__(self) -> int:
        return len(self.sequences)


def simulate(n: int, seed: int = 0, truth: GroundTruth | None = None, motif_rate: float = 1.2,
             singleton_fraction: float = 0.58, multi_cell_mean: float = 4.0,
             truth_seed: int = 0) -> SimulatedData:
    """Random 80-mers in the real adapters with Poisson(motif_rate) planted sites, measured cell by cell:
    bin = clip(round(true + noise), 0, 17), averaged over cells weighted by read depth, so multi-cell
    values are not simple fractions (as in real files) while singletons stay integers. The truth defaults
    to ``GroundTruth.from_seed(truth_seed)``, independent of ``seed``: train and test sets share it."""
    truth = truth if truth is not None else GroundTruth.from_seed(truth_seed)
    rng = np.random.default_rng(seed)
    var = rng.integers(0, 4, size=(n, VARIABLE_LEN), dtype=np.uint8)
    n_sites = rng.poisson(motif_rate, size=n)
    rows = np.repeat(np.arange(n), n_sites)
    which = rng.integers(0, len(truth.motifs), size=len(rows))
    reverse = rng.random(len(rows)) < 0.5
    starts = rng.random(len(rows))
    for j, mot in enumerate(truth.motifs):
        k = len(mot.site)
        for strand, site in ((False, mot.site), (True, _revcomp(mot.site))):
            sel = (which == j) & (reverse == strand)
            pos = (starts[sel] * (VARIABLE_LEN - k + 1)).astype(np.int64)
            var[rows[sel][:, None], pos[:, None] + np.arange(k)] = _code(site)
    codes = np.concatenate([np.broadcast_to(_code(ADAPTER_5), (n, len(ADAPTER_5))), var,
                            np.broadcast_to(_code(ADAPTER_3), (n, len(ADAPTER_3)))], axis=1)
    true, _ = truth._score_codes(codes)

    single = rng.random(n) < singleton_fraction
    extra = rng.geometric(1.0 / max(multi_cell_mean - 1.0, 1.0), size=n)
    n_cells = np.where(single, 1, 1 + extra).astype(np.int64)
    cell_row = np.repeat(np.arange(n), n_cells)
    bins = np.clip(np.rint(true[cell_row] + rng.normal(0.0, truth.noise_sd, size=len(cell_row))), 0, MAX_BIN)
    weight = rng.gamma(2.0, size=len(cell_row))
    measured = np.bincount(cell_row, weight * bins, minlength=n) / np.bincount(cell_row, weight, minlength=n)
    snapped = np.rint(measured)
    measured = np.where(np.abs(measured - snapped) < 1e-9, snapped, measured)  # singletons exact

    text = _ALPHABET[codes].tobytes().decode("ascii")
    width = codes.shape[1]
    sequences = [text[i:i + width] for i in range(0, n * width, width)]
    return SimulatedData(sequences, measured, true, n_cells, truth)


def write_tsv(data: SimulatedData, path: str | Path, values: np.ndarray | None = None,
              chunk: int = 100_000) -> None:
    """Stream ``sequence<TAB>expression`` lines (gzip when the path ends in .gz). Integral values are
    written without a decimal point, as singletons are in real files; others as repr, which round-trips.
    ``values`` overrides the measured expression, e.g. with ``data.true_expression``."""
    values = np.asarray(data.expression if values is None else values, dtype=np.float64)
    path = str(path)
    with (gzip.open(path, "wt", compresslevel=3) if path.endswith(".gz") else open(path, "w")) as fh:
        for lo in range(0, len(data.sequences), chunk):
            v = values[lo:lo + chunk]
            text = [str(int(x)) if i else repr(x) for x, i in zip(v.tolist(), (v == np.floor(v)).tolist())]
            fh.write("".join(f"{s}\t{t}\n" for s, t in zip(data.sequences[lo:lo + chunk], text)))


@one_line_errors("python -m data_prep.simulate")
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m data_prep.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="number of sequences (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sequences and noise (default 0)")
    parser.add_argument("--truth-seed", type=int, default=0, help="seed of the ground truth (default 0)")
    parser.add_argument("--out", required=True, help="output TSV (sequence<TAB>expression); .gz compresses")
    parser.add_argument("--truth", help="ground-truth JSON (default: OUT with suffix .truth.json)")
    parser.add_argument("--true-out", help="optional TSV of sequence<TAB>noiseless expression")
    parser.add_argument("--motif-rate", type=float, default=1.2, help="mean planted sites per sequence (default 1.2)")
    parser.add_argument("--singleton-fraction", type=float, default=0.58,
                        help="fraction seen in one cell (default 0.58)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    out = args.out[:-3] if args.out.endswith(".gz") else args.out
    truth = str(args.truth or Path(out).with_suffix(".truth.json"))
    rule = OutputRule(overwrite=args.overwrite)
    for flag, path in (("--out", args.out), ("--truth", truth), ("--true-out", args.true_out)):
        rule.check_file(path, flag)

    t0 = time.perf_counter()
    data = simulate(args.n, seed=args.seed, motif_rate=args.motif_rate,
                    singleton_fraction=args.singleton_fraction, truth_seed=args.truth_seed)
    with rule.staged(args.out, "--out") as tmp:
        write_tsv(data, tmp)
    with rule.staged(truth, "--truth") as tmp:
        data.truth.to_json(tmp)
    if args.true_out:
        with rule.staged(args.true_out, "--true-out") as tmp:
            write_tsv(data, tmp, values=data.true_expression)
    print(f"simulated n={len(data)} singletons={np.mean(data.n_cells == 1):.3f} "
          f"measured mean={data.expression.mean():.3f} sd={data.expression.std():.3f} "
          f"(true mean={data.true_expression.mean():.3f} sd={data.true_expression.std():.3f}) "
          f"in {time.perf_counter() - t0:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
