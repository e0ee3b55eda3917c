"""The TensorFlow training and evaluation steps (tf.distribute), apart from the loop that drives them.

`TFTrainStep` is what `Trainer.fit` runs and what the benchmarks time: per replica, the spec's input
transform, forward pass and loss, then ONE all-reduce of the loss and every gradient, so the
non-finite check and global-norm clipping see the global gradient on every replica alike (the
optimizer's own reduction is turned off), then the update, skipped everywhere when not finite.
`run(iterator, n)` runs n steps inside one tf.function (a while loop: fewer host round-trips).
The JAX step is its sibling `seq2exp.engine.step_jax` (same spec, model and optimizer; no tf.distribute).
"""
from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from seq2exp.engine.data import numeric_fields
from seq2exp.engine.optim import inner_optimizer
from seq2exp.engine.registry import ModelSpec, per_example_loss

_SUM = tf.distribute.ReduceOp.SUM


def use_reduced_gradients(opt) -> None:
    """Make `apply` take gradients that the caller has already summed over replicas.

    Keras all-reduces inside `apply`, after clipping each replica's partial gradient; a loop that
    all-reduces first gets global-norm clipping and one finite/non-finite verdict on every replica.
    """
    inner_optimizer(opt)._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)


def apply_if_finite(opt, grads, variables, finite) -> None:
    """`opt.apply` only where `finite` (identical on all replicas), from inside `strategy.run`.

    Strategies that synchronise through merge_call cannot have it inside a cond in replica context,
    so there the cond runs in cross-replica context, as Keras' LossScaleOptimizer does.
    """
    def skip():
        return tf.constant(False)

    def apply():
        opt.apply(grads, variables)
        return tf.constant(True)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(finite, apply, skip)
        return

    def cross_replica(distribution, finite, grads):
        def apply_all():
            distribution.extended.call_for_each_replica(lambda g: opt.apply(g, variables), args=(grads,))
            return tf.constant(True)
        tf.cond(distribution.experimental_local_results(finite)[0], apply_all, skip)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, grads))


def train_pipeline(train_fn: Callable, ctx, seed: int, global_batch: int) -> tf.data.Dataset:
    """`train_fn(ctx, seed)` checked (static per-replica dict batches), numeric fields only, repeated."""
    ds = train_fn(ctx, seed)
    first = next(iter(ds.element_spec.values())) if isinstance(ds.element_spec, dict) else None
    b = ctx.get_per_replica_batch_size(global_batch)
    if first is None or first.shape[0] != b:
        raise ValueError(f"the training dataset must yield dict batches of exactly {b} examples per replica "
                         f"with a static batch dimension (drop_remainder=True); got {ds.element_spec}")
    if any(v.dtype == tf.string for v in ds.element_spec.values()):
        ds = ds.map(numeric_fields)
    return ds.repeat()  # repeat: uneven worker shards never run dry mid-epoch


class TFTrainStep:
    """The compiled training step of `spec`'s `model` with `optimizer` (built, in `strategy.scope()`)."""

    def __init__(self, spec: ModelSpec, model, optimizer, strategy, global_batch: int, jit: bool = False,
                 nan_policy: str = "stop"):
        self.spec, self.model, self.optimizer, self.strategy = spec, model, optimizer, strategy
        self.global_batch, self.replicas = global_batch, int(strategy.num_replicas_in_sync)
        self.stop_on_nan = nan_policy == "stop"
        self.loss_scaling = hasattr(optimizer, "inner_optimizer")
        use_reduced_gradients(optimizer)  # _replica_step all-reduces them itself
        self._grad_fn = tf.function(self._grads, jit_compile=True) if jit else self._grads
        # what a forward pass updates besides gradients (moving statistics): restored when "skip" drops a step
        self._forward_state = [] if self.stop_on_nan else [v for v in model.non_trainable_variables
                                                           if "float" in str(v.dtype)]
        self._run_one, self._run_many = tf.function(self._one_step), tf.function(self._run_steps)

    def distribute(self, train_fn: Callable, seed: int):
        """Iterator over per-replica batches of `train_fn(ctx, seed)`, as `run` takes them."""
        return iter(self.strategy.distribute_datasets_from_function(
            lambda ctx: train_pipeline(train_fn, ctx, seed, self.global_batch)))

    def run_steps(self, iterator, n: int):
        """n steps: (sum of the finite losses, non-finite steps, steps done) as tensors."""
        return self.run(iterator, tf.constant(n))

    def sync_model(self) -> None:
        """The Keras variables are the state here: nothing to write back (the JAX step's counterpart)."""

    def current(self, read):
        """`read()` of the model/optimizer variables (they are always current here)."""
        return read()

    def per_example_loss(self, batch, inputs, outputs):
        return per_example_loss(self.spec, self.model, batch, inputs, outputs)

    def _grads(self, batch):
        with tf.GradientTape() as tape:
            inputs = self.spec.inputs(batch, True)
            out = self.model(inputs, training=True)
            per_example = tf.cast(self.per_example_loss(batch, inputs, out), tf.float32)
            loss = tf.reduce_sum(per_example) / self.global_batch
            if self.model.losses:
                loss += tf.cast(tf.add_n(self.model.losses), tf.float32) / self.replicas
            scaled = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
        return loss, tape.gradient(scaled, self.model.trainable_variables)

    def _replica_step(self, batch):
        before = [tf.identity(v) for v in self._forward_state]
        loss, grads = self._grad_fn(batch)
        keep = [i for i, g in enumerate(grads) if g is not None]
        if self.replicas > 1:  # one replica: nothing to sum (and no copy of every gradient)
            reduced = tf.distribute.get_replica_context().all_reduce(_SUM, [loss] + [grads[i] for i in keep])
            loss, grads = reduced[0], list(grads)
            for k, i in enumerate(keep):
                grads[i] = reduced[k + 1]
        finite = tf.math.is_finite(loss)
        if keep and not self.loss_scaling:  # loss scaling skips overflowing grads itself
            # stack + one sum: tf.add_n of hundreds of scalars becomes one AssignAdd op per gradient
            sums = tf.stack([tf.reduce_sum(tf.cast(grads[i], tf.float32)) for i in keep])
            finite = tf.logical_and(finite, tf.math.is_finite(tf.reduce_sum(sums)))
        apply_if_finite(self.optimizer, grads, self.model.trainable_variables, finite)
        for v, old in zip(self._forward_state, before):  # a dropped step also drops its batch-norm statistics
            v.assign(tf.where(finite, v, old))
        return loss, finite

    def _one_step(self, iterator):
        loss, finite = self.strategy.run(self._replica_step, args=(next(iterator),))
        loss, finite = (self.strategy.experimental_local_results(x)[0] for x in (loss, finite))  # all-reduced
        return tf.where(finite, loss, 0.0), tf.cast(tf.logical_not(finite), tf.int32), tf.constant(1)

    def _run_steps(self, iterator, n):
        """(sum of the finite steps' losses, non-finite steps, steps done); stops early on NaN under "stop"."""
        total, bad, done = tf.constant(0.0), tf.constant(0), tf.constant(0)
        limit = 0 if self.stop_on_nan else n  # a loop condition, not a `break`: no cond around the whole step
        while done < n and bad <= limit:
            step_loss, step_bad, _ = self._one_step(iterator)
            total, bad, done = total + step_loss, bad + step_bad, done + 1
        return total, bad, done

    def run(self, iterator, n):
        """n (an int or scalar tensor) compiled steps in ONE tf.function call: (sum of the finite losses,
        non-finite steps, steps done). Single steps run without the loop (its per-call control flow is
        a few % of a tiny model's step), unless the loop is already traced (e.g. an epoch's last call
        of one step after calls of steps_per_execution): a second trace would cost far more."""
        static = tf.get_static_value(n)
        if static is not None and int(static) == 1 and not self._run_many.experimental_get_tracing_count():
            return self._run_one(iterator)
        return self._run_many(iterator, tf.convert_to_tensor(n, tf.int32))


def make_eval_step(spec: ModelSpec, model, strategy):
    """tf.function(iterator of (batch, row mask)) -> (global rows, 4) [label, prediction, mask, loss] gathered."""
    def replica(batch, mask):
        pred = tf.reshape(tf.cast(spec.predict(model, batch, spec.inputs), tf.float32), [-1])
        label = tf.reshape(tf.cast(batch["label"], tf.float32), [-1])
        inputs = spec.inputs(batch, False)
        loss = tf.reshape(tf.cast(per_example_loss(spec, model, batch, inputs, model(inputs, training=False)),
                                  tf.float32), [-1])
        return tf.stack([label, pred, tf.cast(mask, tf.float32), loss], axis=1)

    @tf.function
    def step(iterator):
        batch, mask = next(iterator)
        return strategy.gather(strategy.run(replica, args=(batch, mask)), axis=0)

    return step


def make_predict_fn(spec: ModelSpec, model):
    """batch (numpy dict) -> (b,) float32 predictions, `spec.predict` (test-time averaging included) as one
    tf.function traced once per batch shape instead of op by op."""
    fn = tf.function(lambda batch: tf.reshape(tf.cast(spec.predict(model, batch, spec.inputs), tf.float32), [-1]),
                     reduce_retracing=True)
    return lambda batch: fn(batch).numpy()
