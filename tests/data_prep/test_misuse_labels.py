"""Issue 17, case 8: labels that a float32 record cannot hold are rejected per line with their own reason."""
import os
import re

import numpy as np

from data_prep.parse import REASONS
from tests.data_prep.util import decode_all, run_build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LINES = [
    ("ACGTACGTAC\t1e39", "label_out_of_float32_range"),
    ("ACGTACGTAA\t-1e39", "label_out_of_float32_range"),
    ("ACGTACGTAG\t1e300", "label_out_of_float32_range"),
    ("ACGTACGTAT\t3.41e38", "label_out_of_float32_range"),
    ("ACGTACGTCC\t1e400", "non_finite_expression"),
    ("ACGTACGTCA\t3.4e38", None),
    ("ACGTACGTCG\t-3.4e38", None),
    ("ACGTACGTCT\t2.5", None),
    ("ACGTACGTGA\t1e-50", None),
]


def test_labels_outside_float32_are_rejected_per_line(tmp_path):
    src = tmp_path / "x.tsv"
    src.write_text("\n".join(line for line, _ in LINES) + "\n")
    m = run_build([src], tmp_path / "out", "--workers", "1", "--split", "none")
    rows = [r.split("\t") for r in (tmp_path / "out" / "rejected.tsv").read_text().splitlines()[1:]]
    assert {int(r[1]): r[2] for r in rows} == {i + 1: why for i, (_, why) in enumerate(LINES) if why}
    assert "1e300" in next(r for r in rows if int(r[1]) == 3)[3]
    labels = [r["label"] for r in decode_all(tmp_path / "out")["all"]]
    assert np.isfinite(labels).all() and len(labels) == 4
    assert m["counts"]["rejected_by_reason"]["label_out_of_float32_range"] == 4
    assert np.isfinite([m["splits"]["all"]["label"][k] for k in ("mean", "std", "min", "max")]).all()


def test_every_reason_code_is_documented_in_the_data_guide():
    with open(os.path.join(ROOT, "docs", "guide", "data.md")) as fh:
        readme = fh.read()
    documented = set(re.findall(r"`([a-z0-9_]+)`", readme))
    assert set(REASONS) <= documented, set(REASONS) - documented
