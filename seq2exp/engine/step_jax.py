"""The JAX training step (KERAS_BACKEND=jax): the TF step's sibling, without tf.distribute.

Same ModelSpec pieces as `seq2exp.engine.step` (input transform, targets + loss or `compute_loss`)
and the same optimizer (`seq2exp.engine.optim.build_optimizer`, schedule included), as one pure
function of (state, batch): `stateless_call` + `jax.value_and_grad` + `optimizer.stateless_apply`,
`jax.jit`-compiled with `jit=True`. One device; imports nothing from TensorFlow.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

from seq2exp.engine.registry import ModelSpec


class JaxTrainStep:
    """`step(state, batch) -> (loss, state)` for `spec`'s built `model` and built `optimizer`."""

    def __init__(self, spec: ModelSpec, model: keras.Model, optimizer, jit: bool = True):
        import jax

        self.spec, self.model, self.optimizer = spec, model, optimizer
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)

        def train_step(state, batch):
            trainable, non_trainable, opt_vars = state
            (_, (loss, non_trainable)), grads = grad_fn(trainable, non_trainable, opt_vars, batch)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return loss, (trainable, non_trainable, opt_vars)

        self.step = jax.jit(train_step, donate_argnums=0) if jit else train_step

    def _loss(self, trainable, non_trainable, opt_vars, batch):
        model, spec, opt = self.model, self.spec, self.optimizer
        inputs = spec.inputs(batch, True)
        out, updated = model.stateless_call(trainable, non_trainable, inputs, training=True)
        if spec.compute_loss is not None:  # may read model variables (e.g. label statistics): the traced ones
            mapping = list(zip(model.trainable_variables, trainable)) + list(
                zip(model.non_trainable_variables, non_trainable))
            with keras.StatelessScope(state_mapping=mapping):
                per_example = spec.compute_loss(model, batch, inputs, out)
        else:
            per_example = spec.loss(spec.targets(batch), out)
        loss = ops.mean(ops.cast(per_example, "float32"))
        with keras.StatelessScope(state_mapping=list(zip(opt.variables, opt_vars))):
            scaled = opt.scale_loss(loss)
        return scaled, (loss, updated)

    def initial_state(self) -> tuple[Any, Any, Any]:
        """(trainable, non-trainable, optimizer) variable values, as `step` takes and returns them."""
        return ([v.value for v in self.model.trainable_variables],
                [v.value for v in self.model.non_trainable_variables],
                [v.value for v in self.optimizer.variables])
