"""Issue 17, class 9 on the builder: a wrong number on the command line is one line naming the flag,
before any work; it never turns into a wrong result (`--chunk-bytes 0` once read as an empty file)."""
import pytest

from data_prep.build import main


@pytest.mark.parametrize("flags,needle", [
    (["--chunk-bytes", "0"], "--chunk-bytes 0: must be a positive"),
    (["--workers", "0"], "--workers 0: must be a positive"),
    (["--workers", "-2"], "--workers -2"),
    (["--n-folds", "0"], "--n-folds 0: must be in 1..127"),
    (["--val-folds", "12"], "--val-folds 12: folds are 0..9"),
    (["--n-folds", "5", "--val-folds", "7"], "--val-folds 7: folds are 0..4 (--n-folds 5)"),
    (["--val-fraction", "2"], "--val-fraction 2.0: must be a fraction"),
    (["--split", "random", "--val-fraction", "0.5", "--test-fraction", "0.5"], "must be below 1"),
])
def test_bad_numbers_are_one_line_naming_the_flag(tmp_path, capsys, flags, needle):
    src = tmp_path / "x.tsv"
    src.write_text("ACGTACGTAC\t1\nACGTACGTAA\t2\n")
    assert main([str(src), "--out", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()
