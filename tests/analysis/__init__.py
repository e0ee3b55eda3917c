"""Tests of seq2exp.analysis.stats / variants / interpret / plots / report, and small synthetic Vaishnav-style files."""
import numpy as np
import pandas as pd

from data_prep.layouts import ADAPTER_3, ADAPTER_5


def random_seqs(rng, n, var_len=80):
    core = rng.choice(list("ACGT"), size=(n, var_len))
    return [ADAPTER_5 + "".join(row) + ADAPTER_3 for row in core]


def mutate(rng, seq, positions):
    s = list(seq)
    for pos in positions:
        s[pos] = rng.choice([b for b in "ACGT" if b != s[pos]])
    return "".join(s)


def drift_family(rng, parent, design=(1, 2, 3)):
    """Variants of `parent` with 1, 2 and 3 substitutions at disjoint positions of the variable region."""
    pos = rng.choice(np.arange(len(ADAPTER_5), len(parent) - len(ADAPTER_3)), size=sum(design), replace=False)
    out, start = [], 0
    for k in design:
        out.append(mutate(rng, parent, pos[start:start + k]))
        start += k
    return out


def write_vaishnav(path, seqs, measured, other):
    pd.DataFrame({"sequence": seqs, "Measured Expression": measured, "Predicted Expression": other}).to_csv(path)


def write_synthetic_gpra(folder, n_native=120, n_families=30, seed=0):
    """Native_complex.csv, Drift_complex.csv and Drift_delta_complex.csv in the Vaishnav layout.

    The delta file stores parent - variant (the sign of the real files); returns the truth:
    {"parents": [...], "variants": [...], "n_subs": [...], "delta": variant - parent}.
    """
    rng = np.random.default_rng(seed)
    native = random_seqs(rng, n_native)
    y = rng.uniform(2, 15, n_native)
    write_vaishnav(folder / "Native_complex.csv", native, y, y + rng.normal(0, 1, n_native))
    parents = random_seqs(rng, n_families)
    seqs, n_subs, par, k_meas, k_pred = [], [], [], [], []
    for parent in parents:
        fam = drift_family(rng, parent)
        seqs += fam
        n_subs += [1, 2, 3]
        par += [parent] * 3
        k_meas += [rng.uniform(3, 14)] * 3
        k_pred += [rng.uniform(3, 14)] * 3
    delta = rng.normal(0, 1, len(seqs)) * np.array(n_subs)
    meas = np.array(k_meas) + delta
    pred_delta = delta + rng.normal(0, 0.5, len(seqs))
    pred = np.array(k_pred) + pred_delta
    write_vaishnav(folder / "Drift_complex.csv", seqs, meas, pred)
    write_vaishnav(folder / "Drift_delta_complex.csv", seqs, np.array(k_meas) - meas, np.array(k_pred) - pred)
    return {"parents": par, "variants": seqs, "n_subs": n_subs, "delta": delta, "native": native}
