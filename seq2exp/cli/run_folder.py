"""A run folder belongs to one run: claimed with an advisory lock, never silently reused, resumed only as itself.

- An advisory `fcntl` lock (`.seq2exp.lock`, held while the command runs) refuses a second live writer.
- A folder holding an earlier run (one that trained: history, checkpoints or model.keras) is refused without
  `--resume` (continue it) or `--overwrite` (replace it: the earlier run's files are removed, anything else in
  the folder is kept). A folder where a command stopped before training (config.yaml, data/) is reused.
- `--resume` compares the saved config.yaml with this command's before anything is written and names every
  difference that would make the resumed run another run (model, preset, model_config, batch size, ...);
  `--resume` on an empty folder is a fresh start (with the model's data-aware init).
- The datasets a run trains on are pinned by the SHA-256 of their manifest.json (which lists every shard's
  SHA-256): recorded when the run starts, compared on resume and before and after every epoch, so a
  dataset folder rebuilt under a running training stops it instead of switching its data.
"""
from __future__ import annotations

import json
import os
import shutil

from data_prep.errors import Seq2ExpError
from data_prep.outputs import LOCK, LockedError, advisory_lock, release_lock
from data_prep.outputs import RUN_ENTRIES as OWNED
from seq2exp.cli.checks import UsageError

PINS = "datasets.json"
#: what a training writes into its run folder (also inside pretrain/ and finetune/); RUN_ENTRIES lives with the
#: rule that no command writes over a run's own files (data_prep.outputs), which every layer can import
RUN_ENTRIES = tuple(e for e in OWNED if e != LOCK)
#: what shows that a training ran (a folder with only config.yaml and data/ never trained: it is reused)
_MARKS = tuple(os.path.join(stage, m) for stage in ("", "pretrain", "finetune")
               for m in ("history.json", "model.keras", os.path.join("checkpoints", "checkpoint")))
#: settings that make a resumed run a different run if they change (epochs, patience, tests may change)
RESUME_KEYS = ("model", "preset", "model_config", "batch_size", "steps_per_epoch", "precision", "optimizer",
               "schedule", "seed", "shuffle_buffer", "train_split", "val_split", "sync_batch_norm",
               "pretrain_epochs")


class RunFolderError(UsageError):
    """The run folder cannot be used as asked; says why and which flag would do what the user meant."""


class DataChangedError(Seq2ExpError, RuntimeError):
    """A dataset a training pinned changed under it."""


def _local(path: str) -> bool:
    return "://" not in path


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, default=list)


def earlier_run(run_dir: str) -> str | None:
    """A short description of the run already in `run_dir`, or None."""
    if not _local(run_dir) or not os.path.isdir(run_dir):
        return None
    if not any(os.path.exists(os.path.join(run_dir, m)) for m in _MARKS):
        return None
    bits = []
    cfg = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(cfg):
        import yaml
        try:
            with open(cfg) as fh:
                saved = yaml.safe_load(fh) or {}
            bits.append(f"model {saved.get('model')}")
        except (OSError, yaml.YAMLError):
            bits.append("an unreadable config.yaml")
    for stage in ("", "pretrain", "finetune"):
        hist = os.path.join(run_dir, stage, "history.json")
        if os.path.isfile(hist):
            try:
                with open(hist) as fh:
                    bits.append(f"{len(json.load(fh))} epoch(s) done{' in ' + stage if stage else ''}")
            except (OSError, ValueError):
                pass
    return ", ".join(bits) or "files of an earlier training"


class RunFolder:
    """The claim a training command holds on its run folder for as long as it runs."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self._fh = None
        self._existed = os.path.isdir(run_dir) if _local(run_dir) else True
        self._before: set[str] | None = None

    def lock(self) -> None:
        """Advisory lock: a second training into the same folder is refused while the first one runs."""
        if not _local(self.run_dir):
            return  # object stores have no locks; one writer per folder is then the user's job
        try:
            self._fh = advisory_lock(os.path.join(self.run_dir, LOCK), self.run_dir, "training into this folder",
                                     "wait for it to finish or choose another --run-dir")
        except LockedError as err:
            raise RunFolderError(str(err)) from None

    def release(self) -> None:
        release_lock(self._fh)  # closing drops the flock
        self._fh = None

    def claim(self, cfg, overwrite: bool) -> bool:
        """Lock, then decide: fresh start, resume (same config) or overwrite. True when an earlier run is resumed."""
        self.lock()
        earlier = earlier_run(self.run_dir)
        if earlier is None:
            if cfg.resume:
                print(f"resume: nothing to resume in {self.run_dir}; starting a fresh run")
            self._before = _entries(self.run_dir)
            return False
        if cfg.resume:
            self.check_resume(cfg)
            self._before = _entries(self.run_dir)
            return True
        if not overwrite:
            raise RunFolderError(f"{self.run_dir}: holds an earlier run ({earlier}); pass --resume to continue it, "
                                 "--overwrite to replace it, or choose another --run-dir")
        removed = [e for e in RUN_ENTRIES if os.path.lexists(os.path.join(self.run_dir, e))]
        for entry in removed:
            path = os.path.join(self.run_dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        print(f"overwrite: removed the earlier run in {self.run_dir} ({earlier}): {', '.join(removed)}")
        self._before = _entries(self.run_dir)
        return False

    def remove_new(self) -> list[str]:
        """After a refusal before training started: remove what this command added to the folder (the whole
        folder if it made it), so a refused command leaves only what was there before. Call after release()."""
        if not _local(self.run_dir) or self._before is None or not os.path.isdir(self.run_dir):
            return []
        if not self._existed:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return [self.run_dir]
        new = sorted(_entries(self.run_dir) - self._before)
        removed = []
        for rel in new:
            if os.path.dirname(rel) in new:
                continue  # inside a new folder, removed with it
            path = os.path.join(self.run_dir, rel)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(rel)
        return removed

    def check_resume(self, cfg) -> None:
        """Refuse, before anything is written, a resume that would continue the run as another run."""
        from seq2exp.cli.config import load_file

        path = os.path.join(self.run_dir, "config.yaml")
        if not os.path.isfile(path):
            raise RunFolderError(f"{self.run_dir}: --resume, but the folder has no config.yaml to resume from "
                                 "(not a run folder of this package?); use another --run-dir")
        try:
            saved = load_file(path)
        except ValueError as err:
            raise RunFolderError(f"--resume: {err}") from None
        new = cfg.to_dict()
        if saved.get("optimizer") or saved.get("schedule"):  # a run saved before configs were written out in full
            from seq2exp.engine.optim import effective_optimizer, effective_schedule

            saved = {**saved, "optimizer": effective_optimizer(saved.get("optimizer")),
                     "schedule": effective_schedule(saved.get("schedule"))}
        diffs = [f"{k} {_show(saved.get(k))} -> {_show(new.get(k))}" for k in RESUME_KEYS
                 if k in saved and _canon(saved.get(k)) != _canon(new.get(k))]
        if diffs:
            raise RunFolderError(f"--resume: this command differs from the run in {self.run_dir} (config.yaml): "
                                 f"{'; '.join(diffs)}; resume with the run's settings, or start another run "
                                 "(--overwrite, or another --run-dir)")


def _entries(run_dir: str) -> set[str]:
    """The folder's entries and those of its sub-folders (data/, inputs/, checkpoints/, ...), relative."""
    if not os.path.isdir(run_dir):
        return set()
    out = set()
    for name in os.listdir(run_dir):
        out.add(name)
        sub = os.path.join(run_dir, name)
        if os.path.isdir(sub) and not os.path.islink(sub):
            out.update(os.path.join(name, e) for e in os.listdir(sub))
    return out


def _show(value) -> str:
    return json.dumps(value, default=list) if isinstance(value, (dict, list, tuple)) else repr(value)


def manifest_sha256(m) -> str:
    from data_prep.manifest import sha256_file

    return sha256_file(m.path)


class DataPins:
    """The datasets a training started with, by manifest SHA-256; checked on resume and at every epoch."""

    def __init__(self, manifests):
        self.manifests = list({m.path: m for m in manifests}.values())
        self.pins = {m.path: manifest_sha256(m) for m in self.manifests}

    def check(self, when: str = "") -> None:
        for m in self.manifests:
            try:
                now = manifest_sha256(m)
            except OSError:
                now = None
            if now != self.pins[m.path]:
                raise DataChangedError(
                    f"{m.path}: {'removed' if now is None else 'rebuilt or replaced'} while this training reads it"
                    f"{' (' + when + ')' if when else ''}; stopped so the run does not switch data mid-way (its "
                    "checkpoints hold only epochs on the original data). Build new data into another folder; "
                    "restore the original to --resume")

    def record_or_compare(self, run_dir: str, resuming: bool, chief: bool) -> None:
        path = os.path.join(run_dir, PINS)
        mine = sorted(self.pins.values())
        if resuming and os.path.isfile(path):
            saved = _saved_pins(path)
            if sorted(saved.get("manifest_sha256", [])) != mine:
                raise _data_differ(run_dir, saved)
            return
        if chief:
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"folders": sorted(m.folder for m in self.manifests), "manifest_sha256": mine}, fh, indent=1)
            os.replace(tmp, path)

    @staticmethod
    def compare_planned(run_dir: str, folders: list[str]) -> None:
        """On --resume, before anything is built: the dataset folders this command would train on (given, or the
        content-keyed folders its raw files build into) against the run's pins. A raw file edited since makes a
        folder the run never had: refused without building it. A folder not built yet is compared after building."""
        from data_prep.manifest import MANIFEST, sha256_file
        from seq2exp.engine.data import is_dataset

        path = os.path.join(run_dir, PINS)
        if not os.path.isfile(path):
            return
        saved = _saved_pins(path)
        known = {os.path.normpath(f) for f in saved.get("folders", [])}
        shas = []
        for folder in folders:
            if is_dataset(folder):
                shas.append(sha256_file(os.path.join(folder, MANIFEST)))
            elif os.path.normpath(folder) in known:
                return  # the run's own data, removed since: built again, then compared
            else:
                raise _data_differ(run_dir, saved)
        if sorted(shas) != sorted(saved.get("manifest_sha256", [])):
            raise _data_differ(run_dir, saved)


def _saved_pins(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _data_differ(run_dir: str, saved: dict) -> RunFolderError:
    return RunFolderError(f"--resume: the training data differ from those the run in {run_dir} started with ({PINS}: "
                          f"{', '.join(saved.get('folders', []))}); resume with the same data, or start another run "
                          "(--overwrite, or another --run-dir)")
