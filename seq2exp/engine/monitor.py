"""What a training run shows while it runs and leaves behind to look at.

* `Progress`: a per-step bar (tqdm) when stderr is a terminal, else one line every
  `log_every_seconds` (logs and schedulers); both give the ETA of the WHOLE run, validation passes
  included: the measured time per training step for the steps left, plus the measured duration of
  the last validation (before the first one: the validation records at 3x the training throughput,
  a forward pass being about a third of forward + backward) for each validation left.
* `Board`: TensorBoard runs `tensorboard/train` (per-step loss, learning rate and sequences/s every
  N steps; epoch loss) and `tensorboard/validation` (epoch loss and metrics), so the training and validation
  curves of one tag (`epoch_loss`) share a chart. Both backends write the same tags through tensorboardX
  (simple scalars, which tensorboard's `EventAccumulator.Scalars` reads; it needs no TensorFlow).
* `curves_png`: `curves.png` with the loss (training and validation), the learning rate and the validation
  metrics per epoch.
"""
from __future__ import annotations

import io
import math
import os
import sys
import time


def _float32(value: float) -> bool:
    """TensorBoard stores float32: a finite float64 beyond its range (a val MSE of 1e54) raises, not logs."""
    return math.isfinite(value) and abs(value) < 3.4e38


def _clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, epochs: int, steps_per_epoch: int, global_batch: int, val_examples: int | None = None,
                 log_every_seconds: float = 30.0, stream=None, bar: bool | None = None):
        self.epochs, self.steps_per_epoch, self.global_batch = epochs, steps_per_epoch, global_batch
        self.val_examples, self.log_every_seconds = val_examples, log_every_seconds
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.train_seconds, self.train_steps = 0.0, 0  # this process's measured steps (after the first call)
        self.val_seconds: float | None = None
        self._bar, self._epoch, self._t_last, self._t_line = None, 0, 0.0, 0.0

    def seconds_per_step(self) -> float | None:
        return self.train_seconds / self.train_steps if self.train_steps else None

    def eta(self, epoch: int, step: int, validating: bool = True) -> float | None:
        """Seconds left in the run from `step` of 0-based `epoch` (validations included when `validating`)."""
        per_step = self.seconds_per_step()
        if per_step is None:
            return None
        steps_left = self.steps_per_epoch - step + (self.epochs - epoch - 1) * self.steps_per_epoch
        left = steps_left * per_step
        if validating:
            per_val = self.val_seconds
            if per_val is None:
                per_val = (self.val_examples or 0) * per_step / self.global_batch / 3.0
            left += (self.epochs - epoch) * per_val
        return left

    def start_epoch(self, epoch: int) -> None:
        self._epoch, self._t_last = epoch, time.perf_counter()
        self._t_line = self._t_last
        if self.bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                             file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, step: int, done: int, loss: float, validating: bool = True) -> None:
        """`done` more steps have run (now `step` of this epoch); `loss` is the epoch's running mean."""
        now = time.perf_counter()
        if self._t_last and done:
            self.train_seconds += now - self._t_last
            self.train_steps += done
        self._t_last = now
        eta = self.eta(self._epoch, step, validating)
        eta_text = _clock(eta) if eta is not None else "?"
        per_step = self.seconds_per_step()
        speed = f"{self.global_batch / per_step:,.0f} seq/s" if per_step else "? seq/s"
        if self._bar is not None:
            self._bar.update(done)
            self._bar.set_postfix_str(f"loss {loss:.4f}, {speed}, run ETA {eta_text}", refresh=False)
        elif now - self._t_line >= self.log_every_seconds:
            self._t_line = now
            print(f"epoch {self._epoch + 1}/{self.epochs} step {step}/{self.steps_per_epoch} loss {loss:.4f} "
                  f"{speed} ETA {eta_text} (validation included)", file=self.stream, flush=True)

    def pause(self) -> None:
        """Between calls that are not training steps (validation, saving): not counted as step time."""
        self._t_last = 0.0

    def end_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def validation_done(self, seconds: float) -> None:
        self.val_seconds = seconds


class _Writer:
    """One TensorBoard run: tensorboardX's event writer (maintained; `tf.summary` would write tensor summaries
    under TensorFlow only, and the JAX backend has no TensorFlow)."""

    def __init__(self, logdir: str):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(logdir, flush_secs=30)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, float(value), int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class Board:
    """TensorBoard writers for the `train` and `validation` runs of one run folder, the same on both backends."""

    def __init__(self, run_dir: str, every_steps: int, global_batch: int, make_writer=_Writer):
        root = os.path.join(run_dir, "tensorboard")
        self.train = make_writer(os.path.join(root, "train"))
        self.validation = make_writer(os.path.join(root, "validation"))
        self.every, self.global_batch = every_steps, global_batch
        self._next, self._t, self._at = None, None, None

    def steps(self, step: int, loss: float, lr) -> None:
        """After the optimizer's `step`-th update: scalars every `every` steps (and at the first)."""
        if not self.every:
            return
        now = time.perf_counter()
        if self._next is None:  # the first call of this process (a resumed run starts mid-way)
            self._next, self._t, self._at = step, now, step
        if step < self._next:
            return
        self.train.scalar("loss", loss, step)
        self.train.scalar("learning_rate", lr() if callable(lr) else lr, step)
        if step > self._at:
            self.train.scalar("seq_per_s", (step - self._at) * self.global_batch / max(now - self._t, 1e-9), step)
        self._t, self._at = now, step
        self._next = (step // self.every + 1) * self.every

    def pause(self, seconds: float) -> None:
        """`seconds` of validation and saving passed: not training throughput."""
        if self._t is not None:
            self._t += seconds

    def epoch(self, row: dict, step: int) -> None:
        """Epoch scalars at the optimizer step they end on: train loss/lr/throughput, validation metrics."""
        for key in ("loss", "seq_per_s", "seconds", "skipped_steps"):
            if key in row and _float32(row[key]):
                self.train.scalar(f"epoch_{key}", row[key], step)
        for key, value in row.items():
            if key.startswith("val_") and key != "val_n" and _float32(value):
                self.validation.scalar(f"epoch_{key[4:]}", value, step)
        self.train.flush()
        self.validation.flush()

    def close(self) -> None:
        for writer in (self.train, self.validation):
            getattr(writer, "close", writer.flush)()


def curves_png(history: list[dict]) -> bytes:
    """Loss (training and validation), learning rate and validation metrics per epoch, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]

    def series(key):
        return [r.get(key, float("nan")) for r in history]

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(12.5, 3.4), constrained_layout=True)
    ax1.plot(epochs, series("loss"), "o-", label="training")
    if any(math.isfinite(v) for v in series("val_loss")):
        ax1.plot(epochs, series("val_loss"), "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    ax2.plot(epochs, series("lr"), "o-", color="tab:green")
    ax2.set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate")
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for key, label in (("val_pearson", "Pearson r"), ("val_spearman", "Spearman rho"), ("val_r2", "R$^2$")):
        ax3.plot(epochs, series(key), "o-", label=label)
    r = series("val_pearson")
    if any(math.isfinite(v) for v in r):
        best = max(range(len(r)), key=lambda i: r[i] if math.isfinite(r[i]) else -math.inf)
        ax3.annotate(f"best r {r[best]:.3f}", (epochs[best], r[best]), textcoords="offset points", xytext=(0, -14),
                     ha="center")
    ax3.set(xlabel="epoch", title="validation")
    ax3.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
