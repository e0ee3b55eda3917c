"""A self-contained report folder for a trained model on test libraries (any registered model).

    report/
      summary.md            tables + figures, readable on its own
      metrics.json          everything below, machine-readable
      metrics.csv           long format: section, subset, group, predictor, metric, value, ci_lo, ci_hi, n
      comparison.csv        model vs the other predictor's column: dependent-correlation tests, p-values
      predictions/*.tsv     per-row sequence, measured, predicted (and the other predictor)
      variants/*.tsv        reconstructed variant pairs with measured / predicted deltas
      ism/*.tsv             saturation mutagenesis tables
      saliency/motifs.tsv   motif vs background saliency
      figures/*.png|svg     hexbins, variant-effect panels, metric bars, ISM heat maps, logos, motif bars

Files whose name contains "delta" are variant-effect tables (Vaishnav drift / SSWM layout, see
seq2exp.analysis.variants): their sibling without "_delta" (same folder) gives the absolute expression.
`python -m seq2exp.analysis.report dream PRED --subsets JSON` computes the DREAM 2022 score.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np
import pandas as pd

from data_prep.layouts import ADAPTER_3, ADAPTER_5
from data_prep.output_folder import interruptible
from data_prep.outputs import OutputRule
from seq2exp.analysis import plots, stats, variants
from seq2exp.analysis.evaluation import predict_codes, predict_sequences

CORR = ("pearson", "spearman")
#: core IUPAC consensus of well-known yeast promoter sites (they also match the demo's planted ones)
DEFAULT_MOTIFS = ("Reb1=TTACCCG", "Abf1=TCRNNNNNNACG", "TATA=TATAWAWR", "Gcn4=TGASTCA", "Mig1=SYGGGG",
                  "polyA/T=AAAAAAAAAA")


def load_table(path: str, compare_col: str | None = None) -> pd.DataFrame:
    """sequence / measured (/ other) columns of a CSV/TSV, columns found as the data builder finds them."""
    from data_prep.sources import detect_format, resolve_table

    fmt = detect_format(path)
    if fmt == "fasta":
        raise ValueError(f"{path}: FASTA has no measured expression to report on")
    spec, has_header, names = resolve_table(path, fmt)
    raw = pd.read_csv(path, sep=spec.delimiter, header=None, skiprows=int(has_header), dtype=str,
                      keep_default_na=False, compression="infer")
    if spec.expr_col is None:
        raise ValueError(f"{path}: no measured-expression column among {names}")
    out = pd.DataFrame({"sequence": raw[spec.seq_col].str.strip(),
                        "measured": pd.to_numeric(raw[spec.expr_col], errors="coerce")})
    if compare_col:
        hit = [i for i, n in enumerate(names) if n.strip().lower() == compare_col.strip().lower()]
        if hit:
            out["other"] = pd.to_numeric(raw[hit[0]], errors="coerce")
    return out


def _stem(path: str) -> str:
    return re.sub(r"\.(csv|tsv|txt)(\.gz)?$", "", os.path.basename(path.rstrip("/")), flags=re.I)


def _fmt(entry: dict, digits: int = 3) -> str:
    if not np.isfinite(entry.get("lo", np.nan)):
        return f"{entry['value']:.{digits}f}"
    return f"{entry['value']:.{digits}f} [{entry['lo']:.{digits}f}, {entry['hi']:.{digits}f}]"


def _box(m: dict) -> str:
    return f"n = {m['n']:,}\nPearson r = {m['pearson']['value']:.3f}\nSpearman ρ = {m['spearman']['value']:.3f}"


def _pval(p: float, floor: float = 1e-300) -> str:
    """p-values for tables; 0 means below what the method resolves (1/resamples for the bootstrap)."""
    if not np.isfinite(p):
        return "nan"
    if p < floor or p == 0:
        return f"< {floor:.0e}"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


class Report:
    def __init__(self, out: str, model, spec, n_boot: int, seed: int, batch_size: int, label: str,
                 other_label: str):
        self.out, self.model, self.spec = out, model, spec
        self.n_boot, self.seed, self.batch_size = n_boot, seed, batch_size
        self.label, self.other_label = label, other_label
        self.json = {"model": {"name": spec.name, "label": label}, "settings": {"bootstrap": n_boot, "ci": 0.95,
                     "seed": seed, "other_predictor": other_label}, "subsets": {}, "variants": {}}
        self.long, self.comp, self.md = [], [], []
        for sub in ("figures", "predictions", "variants", "ism", "saliency"):
            os.makedirs(os.path.join(out, sub), exist_ok=True)

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.out)

    # -- one block of (measured, model, other) with CIs and tests ------------------------------------
    def score(self, section: str, subset: str, group: str, y, p, other=None, names=stats.METRICS) -> dict:
        res = {"model": stats.bootstrap_metrics(y, p, self.n_boot, seed=self.seed, names=names)}
        res["n"] = res["model"]["n"]
        preds = [(self.label, res["model"])]
        if other is not None and np.isfinite(other).sum() > 3:
            res["other"] = stats.bootstrap_metrics(y, other, self.n_boot, seed=self.seed, names=names)
            preds.append((self.other_label, res["other"]))
            diff = stats.bootstrap_compare(y, p, other, self.n_boot, seed=self.seed)
            res["comparison"] = {}
            for method in CORR:
                test = stats.compare_correlations(y, p, other, method)
                test["bootstrap_diff"] = diff[method]
                res["comparison"][method] = test
                self.comp.append({"section": section, "subset": subset, "group": group, "method": method,
                                  "n": test["n"], "r_model": test["r_1"], "r_other": test["r_2"],
                                  "r_model_other": test["r_12"], "hittner_z": test["hittner_z"],
                                  "hittner_p": test["hittner_p"], "williams_t": test["williams_t"],
                                  "williams_p": test["williams_p"], "diff": diff[method]["value"],
                                  "diff_ci_lo": diff[method]["lo"], "diff_ci_hi": diff[method]["hi"],
                                  "p_bootstrap": diff[method]["p_boot"]})
        for who, m in preds:
            for k in names:
                self.long.append({"section": section, "subset": subset, "group": group, "predictor": who,
                                  "metric": k, "value": m[k]["value"], "ci_lo": m[k]["lo"], "ci_hi": m[k]["hi"],
                                  "n": m["n"]})
        return res

    # -- expression subsets ----------------------------------------------------------------------------
    def subset(self, name: str, seqs, y, p, other=None, rejected: int = 0):
        keep = np.isfinite(y) & np.isfinite(p)
        res = self.score("expression", name, "all", y[keep], p[keep], None if other is None else other[keep])
        res["rejected"] = int(rejected + (~keep).sum())
        panels = [(self.label, y[keep], p[keep], _box(res["model"]))]
        if "other" in res:
            panels.append((self.other_label, y[keep], other[keep], _box(res["other"])))
        res["figures"] = [self.rel(f) for f in plots.hexbin(panels, os.path.join(
            self.out, "figures", f"hexbin_{name}"), name)]
        table = pd.DataFrame({"sequence": seqs, "measured": y, "predicted": p})
        if other is not None:
            table["other"] = other
        table.to_csv(os.path.join(self.out, "predictions", f"{name}.tsv"), sep="\t", index=False)
        self.json["subsets"][name] = res
        m = res["model"]
        print(f"{name:32s} n={res['n']:6d} pearson {_fmt(m['pearson'])} spearman {_fmt(m['spearman'])} "
              f"R2 {m['r2']['value']:.3f} MSE {m['mse']['value']:.3f} MAE {m['mae']['value']:.3f}")

    # -- variant effects -------------------------------------------------------------------------------
    def variant_file(self, path: str, compare_col: str | None):
        name = _stem(path)
        delta = load_table(path, compare_col or "Predicted Expression")
        raw_delta = delta.rename(columns={"sequence": "sequence", "measured": "Measured Expression",
                                          "other": "Predicted Expression"})
        sibling = os.path.join(os.path.dirname(path), re.sub(r"_delta", "", os.path.basename(path), flags=re.I))
        expr = load_table(sibling, compare_col or "Predicted Expression") if sibling != path and \
            os.path.exists(sibling) else None
        raw_expr = None if expr is None else expr.rename(columns={"measured": "Measured Expression",
                                                                 "other": "Predicted Expression"})
        has_seq = (delta["sequence"].str.len() > 0).mean() > 0.5
        if has_seq:
            kind = "drift"
            pairs, notes = variants.drift_pairs(raw_delta, raw_expr,
                                                other_col="Predicted Expression" if "other" in delta else None)
        else:
            if raw_expr is None or "Predicted Expression" not in raw_delta or "Predicted Expression" not in raw_expr:
                print(f"{name}: no sequences and no sibling table with both value columns; skipped")
                return
            kind = "sswm"
            pairs, notes = variants.sswm_pairs(raw_expr, raw_delta)
        pairs = pairs[pairs["status"] == "ok"].reset_index(drop=True)
        if pairs.empty:
            print(f"{name}: no variant pair could be reconstructed ({notes}); skipped")
            return
        pairs["predicted_delta"] = variants.predict_pair_deltas(self.model, self.spec, pairs, self.batch_size)
        pairs["group"] = variants.subs_group(pairs["n_subs"], 3)  # 1, 2, 3, 4+ as LegNet's Figure 3
        pairs.to_csv(os.path.join(self.out, "variants", f"{name}_pairs.tsv"), sep="\t", index=False)
        has_other = compare_col is not None and "other_delta" in pairs
        entry = {"kind": kind, "notes": notes, "delta_sign": "variant - parent", "groups": {}}
        if has_other and "other" in delta and has_seq:
            y_all, o_all = delta["measured"].to_numpy(float), delta["other"].to_numpy(float)
            entry["other_all_rows"] = stats.bootstrap_metrics(y_all, o_all, self.n_boot, seed=self.seed, names=CORR)
        panels = []
        groups = sorted(pairs["group"].unique(), key=lambda g: (len(g), g)) + ["all"]
        for g in groups:
            sel = pairs if g == "all" else pairs[pairs["group"] == g]
            if len(sel) < 4:
                continue
            y, p = sel["measured_delta"].to_numpy(float), sel["predicted_delta"].to_numpy(float)
            o = sel["other_delta"].to_numpy(float) if has_other else None
            res = self.score("variants", name, g, y, p, o, names=CORR + ("mse", "mae"))
            entry["groups"][g] = res
            label = "all pairs" if g == "all" else f"{g} substitution{'s' if g != '1' else ''}"
            panels.append((label, y, p, _box(res["model"])))
            print(f"{name:24s} {label:18s} n={res['n']:5d} pearson {_fmt(res['model']['pearson'])}"
                  + (f"  other {_fmt(res['other']['pearson'])}" if "other" in res else ""))
        entry["figures"] = [self.rel(f) for f in plots.hexbin(
            panels, os.path.join(self.out, "figures", f"deltas_{name}"), f"{name}: {self.label}",
            "Measured expression change", "Predicted expression change")]
        self.json["variants"][name] = entry

    # -- ISM and saliency ---------------------------------------------------------------------------------
    def ism(self, seqs: list[str]):
        self.json["ism"] = {}
        for i, seq in enumerate(seqs, 1):
            table, ref = variants.saturation_mutagenesis(self.model, self.spec, seq, batch_size=self.batch_size)
            table.to_csv(os.path.join(self.out, "ism", f"ism_{i}.tsv"), sep="\t", index=False)
            figs = plots.ism_heatmap(variants.ism_matrix(table), seq.strip().upper(),
                                     os.path.join(self.out, "figures", f"ism_{i}"),
                                     f"In-silico mutagenesis, sequence {i} (prediction {ref:.2f})")
            top = table.loc[table["effect"].abs().idxmax()]
            self.json["ism"][f"ism_{i}"] = {"sequence": seq, "reference_prediction": ref, "variants": len(table),
                                            "largest_effect": {k: (v.item() if hasattr(v, "item") else v)
                                                               for k, v in top.items()},
                                            "table": f"ism/ism_{i}.tsv", "figures": [self.rel(f) for f in figs]}

    def saliency(self, seqs: list[str], motifs: list, logo_seqs: list[str]):
        from seq2exp.analysis import interpret

        sal = interpret.input_x_gradient(self.model, self.spec, seqs)
        entry = {"sequences": len(seqs), "logos": []}
        logo = interpret.input_x_gradient(self.model, self.spec, logo_seqs) if logo_seqs else None
        for i, (seq, c) in enumerate(zip(logo.seqs, logo.contrib) if logo else [], 1):
            unmasked = np.flatnonzero(~interpret.adapter_mask(seq))
            figs = plots.saliency_logo(c, os.path.join(self.out, "figures", f"logo_{i}"),
                                       f"Input x gradient, sequence {i}", int(unmasked.min()), int(unmasked.max()) + 1)
            entry["logos"].append({"sequence": seq, "figures": [self.rel(f) for f in figs]})
        if motifs:
            table = interpret.motif_saliency(sal, motifs)
            table.to_csv(os.path.join(self.out, "saliency", "motifs.tsv"), sep="\t", index=False)
            entry["motifs"] = table.to_dict(orient="records")
            entry["motif_figures"] = [self.rel(f) for f in plots.motif_bars(
                table, os.path.join(self.out, "figures", "motif_saliency"))]
        self.json["saliency"] = entry

    # -- outputs -----------------------------------------------------------------------------------------
    def finish(self):
        long = pd.DataFrame(self.long)
        long.to_csv(os.path.join(self.out, "metrics.csv"), index=False)
        pd.DataFrame(self.comp).to_csv(os.path.join(self.out, "comparison.csv"), index=False)
        rows = [{"subset": r["subset"], "predictor": r["predictor"], "value": r["value"], "lo": r["ci_lo"],
                 "hi": r["ci_hi"]} for r in self.long if r["metric"] == "pearson" and r["section"] == "expression"]
        if rows:
            self.json["figures"] = [self.rel(f) for f in plots.metric_bars(
                rows, os.path.join(self.out, "figures", "pearson_by_subset"))]
        with open(os.path.join(self.out, "metrics.json"), "w") as fh:
            json.dump(self.json, fh, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        with open(os.path.join(self.out, "summary.md"), "w") as fh:
            fh.write(summary_markdown(self.json, self.comp))
        return self.json


def summary_markdown(rep: dict, comp: list[dict]) -> str:
    """The human-readable summary of a report's metrics.json (tables and relative figure links)."""
    s = rep["settings"]
    lines = [f"# Evaluation report: {rep['model']['label']}", "",
             f"Model `{rep['model'].get('path') or rep['model']['name']}` ({rep['model']['name']}); "
             f"{s['bootstrap']:,} bootstrap resamples, 95% percentile intervals in brackets; "
             f"other predictor: `{s['other_predictor']}`.", ""]
    if rep["subsets"]:
        lines += ["## Test subsets", "", "| subset | predictor | n | Pearson r | Spearman ρ | R² | MSE | MAE |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in rep["subsets"].items():
            for who, key in ((rep["model"]["label"], "model"), (s["other_predictor"], "other")):
                if key in r:
                    m = r[key]
                    lines.append(f"| {name} | {who} | {m['n']:,} | " + " | ".join(
                        _fmt(m[k]) for k in stats.METRICS) + " |")
        lines.append("")
        for name, r in rep["subsets"].items():
            lines.append(f"![{name}]({r['figures'][0]})")
        if rep.get("figures"):
            lines += ["", f"![Pearson by subset]({rep['figures'][0]})"]
        lines.append("")
    if comp:
        lines += ["## Model vs other predictor (dependent overlapping correlations)", "",
                  "Two-sided p-values: Hittner-May-Silver z, Williams t, paired bootstrap of the difference.", "",
                  "| section | subset | group | method | n | model | other | diff [95% CI] | HMS p | Williams p |"
                  " bootstrap p |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in comp:
            lines.append(f"| {c['section']} | {c['subset']} | {c['group']} | {c['method']} | {c['n']:,} | "
                         f"{c['r_model']:.3f} | {c['r_other']:.3f} | {c['diff']:+.3f} [{c['diff_ci_lo']:+.3f}, "
                         f"{c['diff_ci_hi']:+.3f}] | {_pval(c['hittner_p'])} | {_pval(c['williams_p'])} | "
                         f"{_pval(c['p_bootstrap'], 1 / max(s['bootstrap'], 1))} |")
        lines.append("")
    for name, v in rep["variants"].items():
        lines += [f"## Variant effects: {name} ({v['kind']})", "",
                  "Deltas are variant - parent. Reconstruction: `" + json.dumps(v["notes"], default=str) + "`", ""]
        if "other_all_rows" in v:
            o = v["other_all_rows"]
            lines += [f"Other predictor on all {o['n']:,} rows of the file: Pearson {_fmt(o['pearson'])}, "
                      f"Spearman {_fmt(o['spearman'])}.", ""]
        lines += ["| substitutions | n | model Pearson | model Spearman | other Pearson | other Spearman |",
                  "|---|---|---|---|---|---|"]
        for g, r in v["groups"].items():
            o = r.get("other")
            lines.append(f"| {g} | {r['n']:,} | {_fmt(r['model']['pearson'])} | {_fmt(r['model']['spearman'])} | "
                         f"{_fmt(o['pearson']) if o else '-'} | {_fmt(o['spearman']) if o else '-'} |")
        lines += ["", f"![{name}]({v['figures'][0]})", ""]
    for key, e in rep.get("ism", {}).items():
        big = e["largest_effect"]
        lines += [f"## In-silico mutagenesis: {key}", "", f"`{e['sequence']}`: prediction "
                  f"{e['reference_prediction']:.3f}; largest effect {big['effect']:+.3f} at position "
                  f"{big['position']} ({big['ref']}>{big['alt']}); table `{e['table']}`.", "",
                  f"![{key}]({e['figures'][0]})", ""]
    sal = rep.get("saliency")
    if sal:
        lines += ["## Input x gradient saliency", "", f"{sal['sequences']} sequences; constant adapters masked.", ""]
        for i, logo in enumerate(sal["logos"], 1):
            lines += [f"![logo {i}]({logo['figures'][0]})", ""]
        if sal.get("motifs"):
            lines += ["Mean absolute input x gradient on motif-matched positions vs all other unmasked positions. "
                      "p: two-sided Wilcoxon signed-rank test over the matched sequences of (motif - background) "
                      "mean |saliency| per sequence (sequences, not positions, are the independent units).", "",
                      "| motif | sequences with match | positions | motif | background | ratio | motif higher | p |",
                      "|---|---|---|---|---|---|---|---|"]
            for m in sal["motifs"]:
                lines.append(f"| {m['motif']} | {m['sequences_with_match']} | {m['positions']} | "
                             f"{m['mean_abs_motif']:.3g} | {m['mean_abs_background']:.3g} | {m['ratio_abs']:.2f} | "
                             f"{m['sequences_motif_higher']:.0%} | {_pval(m['p_wilcoxon_per_sequence'])} |")
            lines += ["", f"![motifs]({sal['motif_figures'][0]})", ""]
    return "\n".join(lines) + "\n"


def write_report(model, spec, data: list[str], out: str, n_boot: int = 10000, compare_col: str | None =
                 "Predicted Expression", ism: list[str] = (), saliency: bool = False, saliency_n: int = 200,
                 motifs: list[str] | None = None, logo_n: int = 3, seed: int = 0, batch_size: int = 1024,
                 label: str | None = None, model_path: str | None = None, rule: OutputRule | None = None) -> dict:
    """Evaluate `model` on every item of `data` (CSV/TSV files or dataset folders) into folder `out`.

    The report is made in a temporary folder inside `out` and moved into place file by file when complete,
    each name checked by `rule` (data_prep.outputs: never over an input or a run's own files; over an existing
    file only with `OutputRule(..., overwrite=True)`)."""
    rule = OutputRule(data) if rule is None else rule
    rule.check_folder(out, "--report")
    made = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".report.", suffix=".partial", dir=out)
    try:
        with interruptible():
            result = _write_report(model, spec, data, stage, n_boot, compare_col, ism, saliency, saliency_n, motifs,
                                   logo_n, seed, batch_size, label, model_path)
        _publish(stage, out, rule)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if made and not os.listdir(out):
            os.rmdir(out)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    print(f"report written to {out}")
    return result


def _publish(stage: str, out: str, rule: OutputRule) -> None:
    """Move the finished report from `stage` into `out` file by file, every name checked by the rule first."""
    moves = []
    for folder, _, files in os.walk(stage):
        for name in files:
            src = os.path.join(folder, name)
            moves.append((src, os.path.join(out, os.path.relpath(src, stage))))
    for _, dst in moves:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        rule.claim(dst, "--report")
    for src, dst in moves:
        os.replace(src, dst)


def _write_report(model, spec, data, out, n_boot, compare_col, ism, saliency, saliency_n, motifs, logo_n, seed,
                  batch_size, label, model_path) -> dict:
    if compare_col and compare_col.lower() == "none":
        compare_col = None
    rep = Report(out, model, spec, n_boot, seed, batch_size, label or spec.name, compare_col or "other")
    rep.json["model"]["path"] = model_path
    rep.json["data"] = list(data)
    saliency_pool = []
    for item in data:
        name = _stem(item)
        if os.path.isdir(item):
            from data_prep.manifest import load_manifest
            from seq2exp.engine.data import eval_split, read_arrays

            m = load_manifest(item, layout=spec.layout)
            arr = read_arrays(m, eval_split(m))
            p = predict_codes(model, spec, arr["seq"], batch_size).astype(np.float64)
            from data_prep import alphabet

            rep.subset(name, [alphabet.decode(c) for c in arr["seq"]], arr["label"].astype(np.float64), p)
        elif re.search(r"_delta(_|$)", name, flags=re.I):
            rep.variant_file(item, compare_col)
        else:
            t = load_table(item, compare_col)
            p = predict_sequences(model, spec, t["sequence"].tolist(), batch_size).astype(np.float64)
            other = t["other"].to_numpy(float) if "other" in t else None
            rep.subset(name, t["sequence"].tolist(), t["measured"].to_numpy(float), p, other)
            saliency_pool.extend(t.loc[np.isfinite(p), ["sequence", "measured"]].itertuples(index=False))
    if ism:
        rep.ism(list(ism))
    if saliency:
        from seq2exp.analysis import interpret

        if not saliency_pool:
            raise ValueError("--saliency needs at least one CSV/TSV expression file among the data")
        rng = np.random.default_rng(seed)
        # sequences with both constant adapters (e.g. not the N-prefixed Random rows), of one length
        both = len(ADAPTER_5) + len(ADAPTER_3)
        pool = [s for s in saliency_pool if interpret.adapter_mask(s[0]).sum() == both] or saliency_pool
        pool = [s for s in pool if len(s[0]) == len(pool[0][0])]
        pick = rng.choice(len(pool), size=min(saliency_n, len(pool)), replace=False)
        seqs = [pool[i][0] for i in pick]
        top = sorted(pick, key=lambda i: -pool[i][1])[:logo_n]
        logo_seqs = list(ism) or [pool[i][0] for i in top]
        motifs = DEFAULT_MOTIFS if motifs is None else motifs
        rep.saliency(seqs, interpret.parse_motifs(motifs), logo_seqs)
    return rep.finish()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dream"]:
        return stats.dream_main(argv[1:], prog="python -m seq2exp.analysis.report dream")
    print("usage: python -m seq2exp.analysis.report dream PREDICTIONS --subsets JSON  "
          "(reports for a trained run: seq2exp-evaluate RUN DATA... --report DIR)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
