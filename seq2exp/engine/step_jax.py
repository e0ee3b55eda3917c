"""The JAX training and evaluation steps (KERAS_BACKEND=jax): the TF step's siblings, without tf.distribute.

Same ModelSpec pieces as `seq2exp.engine.step` (input transform, targets + loss or `compute_loss`)
and the same optimizer (`seq2exp.engine.optim.build_optimizer`: schedule, clipping value-then-norm,
loss scaling), as one pure function of (state, batch), `jax.jit`-compiled: `stateless_call(...,
training=True)` + `jax.value_and_grad` + `optimizer.stateless_apply`. The state is (trainable,
non-trainable, optimizer) variable values; the non-trainable ones a forward pass returns (BatchNorm
statistics, dropout seed states) are carried into the next step (keras-team/keras#20378), and
`sync_model()` writes the whole state back into the Keras variables, which the trainer calls before
anything reads them (evaluation, checkpoints, saving). Under `keras.distribution.DataParallel` the
batch arrives split over the devices and the compiled step sees the global batch: XLA inserts the
gradient all-reduce, and batch statistics are global.

NaN policy as the TF step: a non-finite loss (or gradient, without loss scaling: loss scaling skips
overflowing gradients itself) drops the whole update inside the compiled step (`jnp.where` over the
new state), moving BatchNorm statistics included, and is counted; under "stop" the steps after it in
the same call do nothing. Imports nothing from TensorFlow.
"""
from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from seq2exp.engine.registry import ModelSpec, per_example_loss


def _numeric(batch: dict) -> dict:
    """Fields that can cross into XLA (record ids are text; no model reads them)."""
    return {k: v for k, v in batch.items() if getattr(v, "dtype", None) is not None and v.dtype.kind not in "OSU"}


def _offer(q: queue.Queue, stop: threading.Event, item) -> bool:
    """Put `item` unless `stop` is set first (a full queue is retried); whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class Prefetcher:
    """`next()` gives `put(batch)` of the next batches of `source`, read and placed ahead in a thread.

    `close()` stops the thread, waits for it and drops the placed batches it left, in the caller's thread.
    That order matters at exit: a device array freed by a thread while the interpreter finalises aborts the
    process (jaxlib's array destructor gives up the GIL and cannot take it back), so `close()` runs for every
    prefetcher still open when the interpreter exits (atexit), and the trainer closes its own when done.
    """

    def __init__(self, source: Iterable[dict], put, size: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        q, stop, it = self._queue, self._stop, iter(source)

        def produce():  # holds no reference to self: a dropped Prefetcher is collected and stops this thread
            try:
                for batch in it:
                    if not _offer(q, stop, (put(_numeric(batch)), None)) or stop.is_set():
                        return
                item = (None, StopIteration())
            except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
                item = (None, err)
            _offer(q, stop, item)

        self._thread = threading.Thread(target=produce, name="seq2exp-prefetch", daemon=True)
        _producers.add(self._thread)
        _open.add(self)
        self._thread.start()

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        batch, err = self._queue.get()
        if err is not None:
            self._stop.set()
            raise err
        return batch

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._drain()  # unblocks a producer waiting to put: it returns at once
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)  # or after the batch in hand, if it was reading one
        self._drain()

    def _drain(self) -> None:
        """Drop the placed batches waiting in the queue, in this (the closing) thread."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # no join here: collection may run in any thread; exit or the next close() waits
        self._stop.set()


#: prefetchers not collected yet, and producer threads still running (a collected prefetcher's thread
#: stops by itself, freeing its batches as it ends: at exit that must happen before finalisation)
_open: weakref.WeakSet = weakref.WeakSet()
_producers: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_prefetchers() -> None:
    for prefetcher in list(_open):
        prefetcher.close()
    for thread in list(_producers):
        thread.join(30.0)


class JaxTrainStep:
    """The compiled training step of `spec`'s built `model` with its built `optimizer` (module docstring)."""

    def __init__(self, spec: ModelSpec, model: keras.Model, optimizer, jit: bool = True, nan_policy: str = "skip",
                 sharding=None):
        """`sharding`: where the state lives (the placement's replicated layout; default: the first device)."""
        import jax

        self.spec, self.model, self.optimizer = spec, model, optimizer
        self.sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        self.stop_on_nan = nan_policy == "stop"
        self.loss_scaling = hasattr(optimizer, "inner_optimizer")
        self._float_state = ["float" in str(v.dtype) for v in model.non_trainable_variables]
        self._grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        donate = (0, 1) if jax.default_backend() != "cpu" else ()  # the CPU runtime cannot reuse buffers
        self._compiled = jax.jit(self._train_step, donate_argnums=donate) if jit else self._train_step
        self.state: tuple | None = None

    # ------------------------------------------------------------------ the pure step
    def _loss(self, trainable, non_trainable, opt_vars, batch):
        model, spec, opt = self.model, self.spec, self.optimizer
        inputs = spec.inputs(batch, True)
        out, updated, losses = model.stateless_call(trainable, non_trainable, inputs, training=True,
                                                    return_losses=True)
        mapping = list(zip(model.trainable_variables, trainable)) + list(
            zip(model.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping):  # compute_loss may read model variables (label stats)
            per_example = per_example_loss(spec, model, batch, inputs, out)
        per_example = ops.cast(per_example, "float32")
        loss = ops.sum(per_example) / per_example.shape[0]  # the global batch: every device's rows
        if losses:
            loss = loss + ops.cast(ops.sum(ops.stack([ops.sum(x) for x in losses])), "float32")
        if self.loss_scaling:
            with keras.StatelessScope(state_mapping=list(zip(opt.variables, opt_vars))):
                return opt.scale_loss(loss), (loss, updated)
        return loss, (loss, updated)

    def _train_step(self, state, carry, batch):
        import jax.numpy as jnp

        trainable, non_trainable, opt_vars = state
        total, bad, done = carry
        halted = jnp.logical_and(self.stop_on_nan, bad > 0)  # "stop": nothing after the first bad step
        (_, (loss, new_nt)), grads = self._grad_fn(trainable, non_trainable, opt_vars, batch)
        finite = jnp.isfinite(loss)
        if not self.loss_scaling:
            finite = jnp.logical_and(finite, jnp.isfinite(sum(jnp.sum(g) for g in grads)))
        new_tv, new_ov = self.optimizer.stateless_apply(opt_vars, grads, trainable)
        apply = jnp.logical_and(finite, jnp.logical_not(halted))

        def pick(new, old, when):
            return [jnp.where(when, n, o) for n, o in zip(new, old)]

        # a dropped step also drops its batch statistics; seed states advance unless the run has stopped
        new_nt = [jnp.where(apply if is_float else jnp.logical_not(halted), n, o)
                  for n, o, is_float in zip(new_nt, non_trainable, self._float_state)]
        state = (pick(new_tv, trainable, apply), new_nt, pick(new_ov, opt_vars, apply))
        carry = (total + jnp.where(apply, loss, 0.0), bad + jnp.where(jnp.logical_or(finite, halted), 0, 1),
                 done + jnp.where(halted, 0, 1))
        return state, carry, loss

    # ------------------------------------------------------------------ driving it
    def pull(self) -> None:
        """Take the state from the Keras variables (after a restore, `load_weights`, an edit).

        Placed (committed) where the step's outputs are, so the compiled step is traced once, not once for
        the variables' values and again for its own outputs."""
        import jax

        self.state = jax.device_put(([v.value for v in self.model.trainable_variables],
                                     [v.value for v in self.model.non_trainable_variables],
                                     [v.value for v in self.optimizer.variables]), self.sharding)

    def _zero_carry(self):
        import jax
        import numpy as np

        return jax.device_put((np.zeros((), "float32"), np.zeros((), "int32"), np.zeros((), "int32")), self.sharding)

    def sync_model(self) -> None:
        """Write the state into the Keras variables (before evaluating, saving or reading them)."""
        if self.state is None:
            return
        variables = (self.model.trainable_variables, self.model.non_trainable_variables, self.optimizer.variables)
        for group, values in zip(variables, self.state):
            for v, value in zip(group, values):
                v.assign(value)

    def current(self, read):
        """`read()` with the model's and optimizer's variables showing the state (mid-epoch too, before a sync)."""
        if self.state is None:
            return read()
        variables = (self.model.trainable_variables, self.model.non_trainable_variables, self.optimizer.variables)
        mapping = [(v, value) for group, values in zip(variables, self.state) for v, value in zip(group, values)]
        with keras.StatelessScope(state_mapping=mapping):
            return read()

    def run_steps(self, iterator: Iterator[dict], n: int):
        """n steps on the next n batches: (sum of the applied steps' losses, non-finite steps, steps done)."""
        if self.state is None:
            self.pull()
        carry = self._zero_carry()
        for _ in range(n):
            self.state, carry, _ = self._compiled(self.state, carry, next(iterator))
        return carry

    # the benchmarks' interface (benchmarks.step_engines.JaxStep): one step on (state, batch)
    def initial_state(self) -> tuple[Any, Any, Any]:
        """(trainable, non-trainable, optimizer) variable values, as `step` takes and returns them."""
        self.pull()
        state, self.state = self.state, None
        return state

    def step(self, state, batch):
        """One step: (loss, new state)."""
        state, _, loss = self._compiled(state, self._zero_carry(), batch)
        return loss, state


def make_eval_step(spec: ModelSpec, model: keras.Model, out_sharding=None):
    """jit((trainable, non-trainable) values, batch, row mask) -> (global rows, 4) [label, prediction, mask, loss]."""
    import jax
    import jax.numpy as jnp

    def rows(trainable, non_trainable, batch, mask):
        mapping = list(zip(model.trainable_variables, trainable)) + list(
            zip(model.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping):
            pred = spec.predict(model, batch, spec.inputs)
            inputs = spec.inputs(batch, False)
            loss = per_example_loss(spec, model, batch, inputs, model(inputs, training=False))
        pred = jnp.reshape(pred.astype("float32"), (-1,))
        label = jnp.reshape(batch["label"].astype("float32"), (-1,))
        loss = jnp.reshape(jnp.asarray(loss).astype("float32"), (-1,))
        return jnp.stack([label, pred, mask.astype("float32"), loss], axis=1)

    return jax.jit(rows, out_shardings=out_sharding)


def make_predict_fn(spec: ModelSpec, model: keras.Model):
    """batch (numpy dict) -> (b,) float32 predictions, `spec.predict` (test-time averaging included) compiled with
    jax.jit once per batch shape. The variables are arguments, not constants, so a model that trains on keeps
    predicting with its current weights. Eager Keras under JAX compiles every op for every new shape: 4,000
    sequences took 47-54 s that way."""
    import jax

    def predict(trainable, non_trainable, batch):
        mapping = list(zip(model.trainable_variables, trainable)) + list(
            zip(model.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping):
            return ops.cast(ops.reshape(spec.predict(model, batch, spec.inputs), (-1,)), "float32")

    compiled = jax.jit(predict)

    def call(batch: dict) -> np.ndarray:
        return np.asarray(compiled([v.value for v in model.trainable_variables],
                                   [v.value for v in model.non_trainable_variables], batch))

    return call
