"""The JAX half of the engine: what `Trainer` needs that differs per backend (see seq2exp.engine.backend).

Compiled step: a `jax.jit` stateless step (seq2exp.engine.step_jax); placement: keras.distribution
(seq2exp.engine.distribution_jax); input: the numpy reader through `train_fn(process_input(), seed)`,
read and placed on the devices one batch ahead in a thread; checkpoints: numpy archives
(seq2exp.engine.checkpointing_npz). Nothing here imports
TensorFlow. The step is always compiled (`TrainSettings.jit` is TensorFlow's XLA switch).
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator

import keras
import numpy as np

from seq2exp.engine.checkpointing_npz import NpzRunCheckpoints
from seq2exp.engine.distribution_jax import JaxPlacement, current_placement
from seq2exp.engine.registry import ModelSpec
from seq2exp.engine.settings import TrainSettings
from seq2exp.engine.step_jax import JaxTrainStep, Prefetcher, make_eval_step


def seed_everything(seed: int) -> None:
    """`keras.utils.set_random_seed` without its TensorFlow seeding (it imports TensorFlow when installed)."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    global_state.set_global_attribute("global_random_seed", seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


class JaxEngineStep:
    """`JaxTrainStep` fed as `Trainer.fit` feeds the TF step (`distribute(train_fn, seed)`, `run_steps`)."""

    def __init__(self, step: JaxTrainStep, placement: JaxPlacement, global_batch: int):
        self.step, self.placement, self.global_batch = step, placement, global_batch

    def distribute(self, train_fn: Callable, seed: int) -> Iterator[dict]:
        """This process's batches of `train_fn(process_input(), seed)`, endlessly, as global device arrays."""
        from seq2exp.engine.data import process_input

        ctx = process_input()
        source, rows = train_fn(ctx, seed), ctx.get_per_replica_batch_size(self.global_batch)

        def batches():
            while True:  # repeat: uneven process shards never run dry mid-epoch
                n = 0
                for batch in source:
                    if not isinstance(batch, dict) or len(next(iter(batch.values()))) != rows:
                        got = {k: getattr(v, "shape", None) for k, v in batch.items()} if isinstance(batch, dict) \
                            else type(batch).__name__
                        raise ValueError(f"the training input must yield dict batches of exactly {rows} examples "
                                         f"per process (drop_remainder=True); got {got}")
                    n += 1
                    yield batch
                if not n:
                    raise ValueError("the training input yielded no batch")

        self.step.state = None  # taken from the model at the first step: a resume or restore may have changed it
        return Prefetcher(batches(), self.placement.put)

    def run_steps(self, iterator, n: int):
        return self.step.run_steps(iterator, n)

    def sync_model(self) -> None:
        self.step.sync_model()

    def current(self, read):
        return self.step.current(read)


class JaxBackend:
    """The engine's JAX parts for one run on `placement` (default: Keras' global distribution or one device)."""

    name = "jax"

    def __init__(self, placement: JaxPlacement | None = None):
        self.strategy = placement or current_placement()
        self.replicas = self.strategy.num_replicas_in_sync
        self.info = self.strategy.describe()
        self._eval_steps: dict = {}  # compiled once per model, not once per evaluation

    def check_settings(self, s: TrainSettings) -> None:
        """Nothing to refuse: batch statistics are global under data parallelism anyway (sync_batch_norm)."""

    def seed(self, seed: int) -> None:
        seed_everything(seed)

    def scope(self):
        return self.strategy.scope()

    def prepare_model(self, model: keras.Model, s: TrainSettings) -> None:
        """Refuse what cannot compile here, before any data is read (batch statistics need nothing: the compiled
        step sees the global batch)."""
        import jax

        if s.precision == "mixed_float16" and jax.default_backend() == "cpu":
            attention = [layer.name for layer in model._flatten_layers(include_self=False)
                         if isinstance(layer, keras.layers.MultiHeadAttention)]
            if attention:
                raise ValueError(f"precision mixed_float16 under JAX on CPU: XLA's CPU backend has no float16 matrix "
                                 f"product with float32 accumulation, which the attention layer {attention[0]!r} "
                                 "needs; use mixed_bfloat16 or float32 on CPU (GPUs run mixed_float16)")

    def saving(self, model: keras.Model, s: TrainSettings):
        return contextlib.nullcontext()

    def checkpoints(self, model, optimizer, run_dir: str, keep: int, say: Callable[[str], None]) -> NpzRunCheckpoints:
        return NpzRunCheckpoints(model, optimizer, run_dir, self.info, keep, say, barrier=self.strategy.barrier)

    def train_step(self, spec: ModelSpec, model, optimizer, global_batch: int, s: TrainSettings) -> JaxEngineStep:
        step = JaxTrainStep(spec, model, optimizer, jit=True, nan_policy=s.nan_policy,
                            sharding=self.strategy.replicated)
        return JaxEngineStep(step, self.strategy, global_batch)

    def eval_rows(self, spec: ModelSpec, model, data, global_batch: int) -> Iterator[np.ndarray]:
        """Endless (global rows, 4) [label, prediction, mask, loss] arrays over `data` (fn(ctx) or batches)."""
        import jax

        from seq2exp.engine.data import padded_batches, process_input

        ctx = process_input()
        source = data(ctx) if callable(data) else data
        rows = ctx.get_per_replica_batch_size(global_batch)
        if id(model) not in self._eval_steps:
            self._eval_steps[id(model)] = make_eval_step(spec, model, self.strategy.replicated)
        step = self._eval_steps[id(model)]
        trainable, non_trainable = jax.device_put(([v.value for v in model.trainable_variables],
                                                   [v.value for v in model.non_trainable_variables]),
                                                  self.strategy.replicated)
        batches = Prefetcher(({**batch, "_mask": mask} for batch, mask in padded_batches(source, rows)),
                             self.strategy.put)
        with batches:  # a caller that stops early closes this generator, which closes the prefetcher
            for batch in batches:
                mask = batch.pop("_mask")
                yield np.asarray(step(trainable, non_trainable, batch, mask))


    def lost_worker_error(self, err: Exception, epoch: int, last_checkpoint: str | None):
        """None: JAX's coordination service ends every process when one is lost (restart all with --resume)."""
        return None
