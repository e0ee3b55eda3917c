"""LegNet's entry in the model registry: soft-label KL loss, AdamW + one-cycle LR, 150 nt plasmid-padded records."""
from keras import ops

from legnet_tf.model import LegNetConfig, build_legnet
from legnet_tf.transforms import prediction_inputs, training_inputs
from seq2exp.losses import soft_argmax_score, soft_labels
from seq2exp.registry import ModelSpec, register


def _build(config: dict):
    c = LegNetConfig.from_dict({**LegNetConfig().to_dict(), **config})
    if c.in_channels != 6:
        raise ValueError(f"the legnet input transform makes 6 channels (A, G, C, T, is_reverse, is_singleton); "
                         f"in_channels={c.in_channels} only works with build_legnet and your own inputs")
    return build_legnet(c)


def _inputs(batch, training):
    """Training: per-example pseudo-random orientation with the real is_singleton flags.
    Otherwise: forward strand, is_singleton = 0 (prediction-time convention)."""
    return training_inputs(batch) if training else prediction_inputs(batch)


def _predict(model, batch, transform=None):
    """Mean soft-argmax score of the forward and reverse-complement inputs (is_singleton = 0).

    Both strands go through one model call (BatchNorm is in inference mode, so
    the examples do not interact); ``transform`` is unused: the two strands are
    LegNet's own test-time augmentation.
    """
    both = ops.concatenate([prediction_inputs(batch), prediction_inputs(batch, reverse=True)], axis=0)
    scores = soft_argmax_score(model(both, training=False))
    forward, reverse = ops.split(scores, 2, axis=0)
    return 0.5 * (forward + reverse)


SPEC = register(ModelSpec(
    name="legnet",
    layout="legnet",
    build=_build,
    default_config=lambda: LegNetConfig().to_dict(),
    presets={"tiny": lambda: LegNetConfig.tiny().to_dict(), "small": lambda: LegNetConfig.small().to_dict()},
    loss="kl_soft_label",
    inputs=_inputs,
    targets=lambda batch: soft_labels(batch["label"]),
    predict=_predict,
    optimizer={"name": "adamw", "weight_decay": 0.01},
    schedule={"name": "one_cycle", "max_lr": 0.005, "pct_start": 0.3, "div_factor": 25.0},
))
