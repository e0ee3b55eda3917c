"""LegNet's ModelSpec (entry point `seq2exp.models: legnet`): soft-label KL loss, AdamW + one-cycle LR,
150 nt plasmid-padded records, forward + reverse-complement test-time averaging."""
import numpy as np
from keras import ops

from legnet_tf.losses import kl_soft_label, soft_argmax_score, soft_labels
from legnet_tf.model import LegNetConfig, build_legnet
from legnet_tf.transforms import BASE_ORDER, N_VALUE, prediction_inputs, training_inputs
from seq2exp.engine.registry import ModelSpec, OneHotAdapter
from seq2exp.layers.one_hot import lookup_matrix


def _build(config: dict):
    c = LegNetConfig.coerce(config)
    if c.in_channels != 6:
        raise ValueError(f"the legnet input transform makes 6 channels (A, G, C, T, is_reverse, is_singleton); "
                         f"in_channels={c.in_channels} only works with build_legnet and your own inputs")
    return build_legnet(c)


def _inputs(batch, training):
    """Training: per-example pseudo-random orientation with the real is_singleton flags.
    Otherwise: forward strand, is_singleton = 0 (prediction-time convention)."""
    return training_inputs(batch) if training else prediction_inputs(batch)


def _average_strands(model, both):
    scores = soft_argmax_score(model(both, training=False))
    forward, reverse = ops.split(scores, 2, axis=0)
    return 0.5 * (forward + reverse)


def _predict(model, batch, transform=None):
    """Mean soft-argmax score of the forward and reverse-complement inputs (is_singleton = 0).

    Both strands go through one model call (BatchNorm is in inference mode, so
    the examples do not interact); ``transform`` is unused: the two strands are
    LegNet's own test-time augmentation.
    """
    return _average_strands(model, ops.concatenate([prediction_inputs(batch),
                                                    prediction_inputs(batch, reverse=True)], axis=0))


def _onehot(model) -> OneHotAdapter:
    """Saliency at the 4 base channels: the 6-channel input rebuilt around them, both strands averaged
    exactly as `_predict` does (in A, G, C, T order the complement is the reversed channels)."""
    table = lookup_matrix(BASE_ORDER, N_VALUE)

    def predict(x):
        zeros = ops.zeros_like(x[..., :1])
        forward = ops.concatenate([x, zeros, zeros], axis=-1)
        reverse = ops.concatenate([ops.flip(ops.flip(x, 1), 2), zeros + 1.0, zeros], axis=-1)
        return _average_strands(model, ops.concatenate([forward, reverse], 0))

    return OneHotAdapter(lambda codes: table[np.minimum(codes, 4)], predict, [BASE_ORDER.index(b) for b in "ACGT"])


SPEC = ModelSpec(
    name="legnet",
    layout="legnet",
    build=_build,
    default_config=lambda: LegNetConfig().to_dict(),
    presets={"tiny": lambda: LegNetConfig.tiny().to_dict(), "small": lambda: LegNetConfig.small().to_dict()},
    loss=kl_soft_label,
    inputs=_inputs,
    targets=lambda batch: soft_labels(batch["label"]),
    predict=_predict,
    optimizer={"name": "adamw", "weight_decay": 0.01},
    schedule={"name": "one_cycle", "max_lr": 0.005, "pct_start": 0.3, "div_factor": 25.0},
    onehot=_onehot,
)
