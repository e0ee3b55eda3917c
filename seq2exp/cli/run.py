"""The train command's run: `seq2exp.api.runner.run_training` (the same function `seq2exp.train` calls), its
errors as one line and an exit code, and an interruption as a line that says how to resume.

Exit codes: 2 when the command cannot work as given (a flag, the run folder, the data), 1 when the run
fails (preflight, non-finite loss, a lost worker, data changed under it, ...), 130 / 143 for Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import os
import shlex
import sys

from data_prep.columns import ColumnError
from data_prep.errors import BuildError, Seq2ExpError
from data_prep.sources import InputError
from seq2exp.cli.checks import UsageError

#: errors that mean "the command as given cannot work" (exit 2); every other Seq2ExpError is a failed run (1)
USAGE_ERRORS = (UsageError, BuildError, InputError, ColumnError)


def run_command(cfg, spec, demo: bool, argv: list[str], prog: str) -> int:
    """Run the training; 0, or a one-line error / interruption note and its exit code."""
    from data_prep.output_folder import interruptible
    from seq2exp.api.runner import run_training
    from seq2exp.cli.outputs import exit_code

    try:
        with interruptible():  # SIGTERM / SIGHUP raise like Ctrl-C, so the same note is printed
            run_training(cfg, spec, demo)
    except Seq2ExpError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        return 2 if isinstance(err, USAGE_ERRORS) else 1
    except KeyboardInterrupt as err:
        print(interrupted(cfg.run_dir, getattr(err, "signum", 2), resume_command(prog, argv, cfg.run_dir)),
              file=sys.stderr, flush=True)
        return exit_code(err)
    return 0


def resume_command(prog: str, argv: list[str], run_dir: str) -> str:
    """This command line with --resume (and its run folder named), without --overwrite."""
    drop = {"--overwrite", "--no-overwrite", "--resume", "--no-resume"}
    words = [a for a in argv if a not in drop]
    if not any(a == "--run-dir" or a.startswith("--run-dir=") for a in words):
        words += ["--run-dir", run_dir]
    return f"{prog} {shlex.join([*words, '--resume'])}"


def interrupted(run_dir: str, signum: int, resume: str) -> str:
    """One line after Ctrl-C or SIGTERM: how to continue, or that nothing was kept."""
    from seq2exp.cli.run_folder import earlier_run

    what = "interrupted (Ctrl-C)" if signum == 2 else f"stopped by signal {signum} (SIGTERM)" if signum == 15 \
        else f"stopped by signal {signum}"
    if os.path.isdir(run_dir) and earlier_run(run_dir):
        return f"{what}: the newest saved epoch is kept in {run_dir}; continue with: {resume}"
    return f"{what} before any epoch was saved; nothing kept in {run_dir}"
