"""Save and resume of one training run, whatever the checkpoint format (no TensorFlow import of its own).

`RunCheckpointsBase` holds the run-folder logic both engine backends share: a per-epoch checkpoint
that counts only once committed, best/ written beside its final name and swapped in, a resume that
takes the newest intact checkpoint, cuts history.json back to its epoch, drops what a kill left
uncommitted and re-syncs best/, and NaN/inf weights never written. A subclass supplies the storage:
`seq2exp.engine.checkpointing.RunCheckpoints` (tf.train.Checkpoint, TensorFlow runs) and
`seq2exp.engine.checkpointing_npz.NpzRunCheckpoints` (numpy archives, JAX runs).
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

import keras
import numpy as np

from seq2exp.engine.files import gfile, io_errors, read_history, recover_swap, remove, swap_in, write_failed
from seq2exp.engine.optim import inner_optimizer
from seq2exp.engine.settings import NonFiniteLossError

log = logging.getLogger(__name__)


def restore_first_intact(committed: list[str], restore: Callable[[str], None], ckpt_dir: str,
                         say: Callable[[str], None]) -> str | None:
    """`restore(c)` for the committed checkpoints, newest first, until one reads back whole; which one.

    None when nothing was ever committed. `restore` raises ValueError/AssertionError when a readable
    checkpoint holds another model (no fallback helps: an error), anything else when it is damaged
    (said, and the one before is tried); an error when none is readable.
    """
    for name in committed:
        try:
            restore(name)
            return name
        except (ValueError, AssertionError) as err:
            raise ValueError(f"{name}: does not fit this model ({str(err).strip().splitlines()[0][:300]}); "
                             "--resume needs the model config the run was started with") from err
        except Exception as err:  # noqa: BLE001 - DataLossError (CRC), IndexError (short file), BadZipFile, ...
            why = re.sub(r"\{\{[^}]*\}\}\s*", "", str(err)).strip().splitlines() or [""]
            say(f"resume: {name} is unreadable ({type(err).__name__}: {why[0][:200]}); "
                "trying the checkpoint before it")
    if committed:
        raise RuntimeError(f"resume: no checkpoint in {ckpt_dir} reads back intact ({committed}); start a new run "
                           "(without --resume) or restore the folder from a backup")
    return None


def remove_uncommitted(ckpt_dir: str, done: int) -> None:
    """Delete ckpt-N files (and N_temp folders) newer than the restored epoch: a kill left them uncommitted."""
    for path in gfile().glob(os.path.join(ckpt_dir, "ckpt-*")):
        number = os.path.basename(path)[5:].split(".")[0].split("_")[0]
        if number.isdigit() and int(number) > done:
            remove(path)


class Scalar:
    """One number of the loop state with `tf.Variable`'s assign / assign_add / numpy (formats other than TF's)."""

    def __init__(self, value):
        self.value = value

    def assign(self, value) -> None:
        self.value = type(self.value)(value)

    def assign_add(self, value) -> None:
        self.value = type(self.value)(self.value + value)

    def numpy(self):
        return self.value


class RunCheckpointsBase:
    """Per-epoch checkpoints, best/ weights and the early-stopping state of one run (see module docstring).

    Checkpoints hold everything a resumed run needs (weights, optimizer slots and step, dropout RNG state,
    early-stopping state: `epoch`, `best_epoch`, `bad_epochs`, `best_score`).
    """

    def __init__(self, model: keras.Model, optimizer, run_dir: str, info: dict, say: Callable[[str], None] = print):
        self.model, self.optimizer, self.run_dir, self.say = model, optimizer, run_dir, say
        self.chief, self.info, self.multiworker = info["chief"], info, info["workers"] > 1
        self.beat: Callable[[str], None] = lambda doing: None
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.best_prefix = os.path.join(run_dir, "best", "weights")
        #: where this process writes best/ when it is not the chief's local copy (None: it writes nothing)
        self._write_best: str | None = self.best_prefix if self.chief else None
        gfile().makedirs(run_dir)
        if self.chief:
            recover_swap(os.path.dirname(self.best_prefix))

    # ------------------------------------------------------------------ storage (the subclass's format)
    def latest(self) -> str | None:
        """The newest committed checkpoint (its path or prefix), None when none."""
        raise NotImplementedError

    def _target(self, epoch: int) -> str:
        """The checkpoint this process writes for `epoch` (named in errors)."""
        return os.path.join(self.ckpt_dir, f"ckpt-{epoch}")

    def _write_checkpoint(self, epoch: int) -> None:
        """Write and commit epoch's checkpoint (may raise `io_errors()`)."""
        raise NotImplementedError

    def _partial_files(self, epoch: int) -> list[str]:
        """What a failed write of epoch's checkpoint may have left."""
        raise NotImplementedError

    def _write_best_files(self, prefix: str) -> None:
        raise NotImplementedError

    def _restore_newest_intact(self) -> str | None:
        """Restore the newest committed checkpoint that reads back whole; None when none was committed."""
        raise NotImplementedError

    def _remove_uncommitted(self, done: int) -> None:
        raise NotImplementedError

    def _best_tag(self) -> int | None:
        """The epoch best/ was written at (None: absent or unreadable)."""
        raise NotImplementedError

    def _best_exists(self) -> bool:
        raise NotImplementedError

    def _read_best(self) -> None:
        raise NotImplementedError

    def _read_weights(self, source: str) -> None:
        """Model weights from a checkpoint file/prefix, a checkpoint folder or a run folder of this format."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Block until every process gets here (a no-op for one process)."""

    def _peer_failure(self, err: Exception) -> bool:
        """`err` means another worker died (re-raised as is, not reported as a failed write)."""
        return False

    # ------------------------------------------------------------------ shared logic
    def check_finite(self, target: str) -> None:
        bad = [v.path for v in list(self.model.variables) + list(self.optimizer.variables)
               if "float" in str(v.dtype) and not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
        if bad:
            raise NonFiniteLossError(f"{len(bad)} weight/optimizer variable(s) are not finite (e.g. {bad[0]}); "
                                     f"refusing to write them to {target}. The checkpoints on disk are all finite.")

    def save(self, epoch: int) -> None:
        """The per-epoch checkpoint: files, then the commit, so a kill leaves no commit."""
        target = self._target(epoch)
        self.check_finite(target)
        last_good = self.latest()
        try:
            self._write_checkpoint(epoch)
        except io_errors() as err:
            if self._peer_failure(err):
                raise
            raise write_failed(f"checkpoint {target}", err, self._partial_files(epoch), last_good or "") from err
        self._done_saving()

    def save_best(self) -> None:
        """best/ written beside its final name and swapped in (object stores: written in place)."""
        folder = os.path.dirname(self.best_prefix)
        local = self.chief and "://" not in folder
        target = os.path.join(folder + ".partial", "weights") if local else self._write_best
        if target is not None:
            self.check_finite(target)
            try:
                if local:
                    remove(os.path.dirname(target))
                self._write_best_files(target)
                if local:
                    swap_in(os.path.dirname(target), folder)
            except io_errors() as err:
                if self._peer_failure(err):
                    raise
                raise write_failed(f"best weights {self.best_prefix}", err, [folder + ".partial"] if local else [],
                                   self.latest() or "") from err
        self._done_saving()

    def _done_saving(self) -> None:
        self.beat("saving")
        self.barrier()

    def resume(self) -> list[dict] | None:
        """Restore the newest intact checkpoint; the history rows of its committed epochs (None: nothing saved)."""
        self.barrier()  # the chief has run `recover_swap` on best/ before anyone reads it
        latest = self._restore_newest_intact()  # the chief's: run_dir is shared
        if latest is None:
            return None
        done = int(self.epoch.numpy())
        if self.chief:
            self._remove_uncommitted(done)
        history = read_history(self.run_dir, done)
        self._sync_best(done)
        self.say(f"resumed from {latest}: {done} epoch(s) done, step "
                 f"{int(keras.ops.convert_to_numpy(inner_optimizer(self.optimizer).iterations))}")
        return history

    def _sync_best(self, done: int) -> None:
        """best/ must hold the best epoch's weights; a kill after the commit can leave it one save behind."""
        best, tag = int(self.best_epoch.numpy()), self._best_tag()
        self.barrier()  # every worker has read best/ before the chief may replace it
        if not best or tag == best or float(self.best_score.numpy()) == -np.inf:
            return
        if best == done:  # the weights just restored are the best ones
            self.say(f"resume: best/ holds epoch {tag}, not the best epoch {best}; rewriting it")
            self.save_best()
        else:
            log.warning("resume: best/ holds epoch %s, the best epoch %d is lost; restore_best will keep the "
                        "final weights", tag, best)
            if self.chief:
                remove(os.path.dirname(self.best_prefix))

    def restore_best(self) -> bool:
        """Load best/ into the model when it exists for the best epoch."""
        if int(self.best_epoch.numpy()) and self._best_exists():
            self._read_best()
            return True
        return False

    def load_weights(self, source: str, model_name: str) -> None:
        """Weights only (fine-tuning): a `.keras` file (any backend's), or a checkpoint / run folder of this format."""
        if source.endswith(".keras"):
            try:  # safe_mode: a .keras file may carry Python code (Lambda layers); it is never run
                weights = keras.saving.load_model(source, safe_mode=True, compile=False).get_weights()
                self.model.set_weights(weights)
            except ValueError as err:
                raise ValueError(f"{source}: cannot initialise {model_name} from it: {err}") from err
            return
        self._read_weights(source)
