"""CRMnet in Keras 2 (``tf-keras``) with the published code's object structure, written from the spec.

``../shared/specs/crmnet.md`` describes what the published TensorFlow code builds and how its objects
nest (that nesting decides the keys of a Keras-2 SavedModel's checkpoint). This module rebuilds that
structure in Keras 2 -- not a copy of the published code -- so that

* ``tests/crmnet/test_convert.py`` can write a REAL Keras-2 SavedModel (random weights and
  BatchNorm statistics, Adam slots after one training step, ``model.save(dir)``) and check that
  ``python -m crmnet.convert`` reproduces the Keras-2 model's own predictions;
* a step-time benchmark can time the published architecture under Keras 2 (``build_reference_model``
  + ``compile_published``, no saving).

Object structure (as in the spec): functional outer model on ``(seq_len, 5)`` float one-hot in channel
order ``[N, A, C, G, T]``; squeeze-excite = subclassed ``tf.keras.Model`` with ``squeeze`` /
``excitation_a`` / ``excitation_b``; transformer block = subclassed ``Layer`` with ``att``, ``ffn``
(a ``Sequential``), ``layernorm1/2`` and ``dropout1/2``; a weightless position layer; every other
layer a stock Keras layer.

Run it under Keras 2 (``TF_USE_LEGACY_KERAS=1``; the CLI sets it before TensorFlow is imported)::

    python -m benchmarks.crmnet_keras2_reference --out DIR [--preset small|published] [--config JSON]

DIR receives ``saved_model/`` (the SavedModel), ``predictions.tsv`` (``sequence<TAB>prediction``,
usable as ``crmnet.convert --check-input``), ``config.json`` (a ``crmnet.CRMnetConfig`` dict for
``crmnet.convert --config``) and ``summary.json`` (parameter counts, prediction spread).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from data_prep.command_line import Parser, one_line_errors
from data_prep.outputs import OutputRule

#: The published configuration, in ``crmnet.CRMnetConfig`` keys (the fields this builder uses).
PUBLISHED = {
    "seq_len": 112,
    "encoder_filters": [128, 128, 256, 256],
    "kernel_size": 11,
    "se_ratio": 2,
    "encoder_dropout": 0.1,
    "num_transformer_blocks": 8,
    "num_heads": 12,
    "key_dim": 256,
    "embed_dim": 256,
    "ffn_dim": 128,
    "transformer_dropout": 0.1,
    "decoder_filters": 128,
    "head_conv_filters": [128, 64, 32],
    "dense_units": [256, 128, 64, 32],
    "dense_dropouts": [0.2, 0.2, 0.1, 0.1],
    "leaky_relu_slope": 0.1,
    "position_mode": "multiply_sin",
    "position_span": 111.0,
    "layer_norm_epsilon": 1e-6,
    "batch_norm_momentum": 0.99,
    "batch_norm_epsilon": 1e-3,
}

#: The same topology (8 transformer blocks, 14 BatchNorms, 17 squeeze-excites) at a small width.
SMALL = dict(
    PUBLISHED,
    encoder_filters=[16, 16, 32, 32],
    num_heads=4,
    key_dim=16,
    embed_dim=32,
    ffn_dim=16,
    decoder_filters=16,
    head_conv_filters=[16, 8, 4],
    dense_units=[32, 16, 8, 4],
)

PRESETS = {"published": PUBLISHED, "small": SMALL}
CHANNELS = "NACGT"  # published one-hot order: StringLookup(A, C, G, T) puts N (out of vocabulary) first


def keras2():
    """The Keras 2 module (``tf-keras``); a clear error when it is missing or Keras 3 is active."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        import tf_keras
    except ImportError as error:
        raise RuntimeError("the Keras-2 reference needs tf-keras: pip install 'tf-keras~=2.21.0' "
                           "(the version of the installed TensorFlow)") from error
    return tf_keras


def full_config(config=None) -> dict:
    """``PUBLISHED`` overridden by ``config`` (a dict); unknown keys are an error."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(PUBLISHED))
    if unknown:
        raise ValueError(f"unknown reference config keys: {unknown}")
    merged = dict(PUBLISHED, **config)
    if merged["position_mode"] != "multiply_sin":
        raise ValueError("the published code multiplies by a sine: position_mode must be 'multiply_sin'")
    if merged["embed_dim"] != merged["encoder_filters"][-1]:
        raise ValueError("embed_dim must equal the last encoder_filters")
    return merged


def _classes(k):
    """The three custom classes, defined against the Keras-2 module ``k``."""

    class SqueezeExcite(k.Model):
        """Squeeze-excite as a subclassed Model, with the published attribute names."""

        def __init__(self, filters, ratio=2, layer_name="se"):
            super().__init__(name=layer_name)
            self.filters, self.ratio = int(filters), int(ratio)
            self.squeeze = k.layers.GlobalAveragePooling1D()
            self.excitation_a = k.layers.Dense(max(1, self.filters // self.ratio), activation="relu")
            self.excitation_b = k.layers.Dense(self.filters, activation="sigmoid")

        def call(self, inputs):
            gate = self.excitation_b(self.excitation_a(self.squeeze(inputs)))
            return inputs * gate[:, None, :]

        def get_config(self):
            return {"filters": self.filters, "ratio": self.ratio, "layer_name": self.name}

    class TransformerBlock(k.layers.Layer):
        """Post-norm encoder block; sub-layers under the published attribute names."""

        def __init__(self, embed_dim, num_heads, key_dim, ff_dim, rate=0.1, epsilon=1e-6, **kwargs):
            super().__init__(**kwargs)
            self.args = {"embed_dim": embed_dim, "num_heads": num_heads, "key_dim": key_dim, "ff_dim": ff_dim,
                         "rate": rate, "epsilon": epsilon}
            self.att = k.layers.MultiHeadAttention(num_heads=num_heads, key_dim=key_dim)
            self.ffn = k.Sequential([k.layers.Dense(ff_dim, activation="relu"), k.layers.Dense(embed_dim)])
            self.layernorm1 = k.layers.LayerNormalization(epsilon=epsilon)
            self.layernorm2 = k.layers.LayerNormalization(epsilon=epsilon)
            self.dropout1 = k.layers.Dropout(rate)
            self.dropout2 = k.layers.Dropout(rate)

        def call(self, inputs, training=None):
            attended = self.dropout1(self.att(inputs, inputs), training=training)
            hidden = self.layernorm1(inputs + attended)
            return self.layernorm2(hidden + self.dropout2(self.ffn(hidden), training=training))

        def get_config(self):
            return {**super().get_config(), **self.args}

    class SinePosition(k.layers.Layer):
        """Multiplies position i by sin(i * span / length): the published multiplicative 'encoding'."""

        def __init__(self, span=111.0, **kwargs):
            super().__init__(**kwargs)
            self.span = float(span)

        def call(self, inputs):
            length = int(inputs.shape[1])
            table = np.sin(np.arange(length) * self.span / length).astype("float32")
            return inputs * table[None, :, None]

        def get_config(self):
            return {**super().get_config(), "span": self.span}

    return SqueezeExcite, TransformerBlock, SinePosition


def build_reference_model(config=None, batch_size=None, skip_first=False):
    """The published architecture as an uncompiled Keras-2 functional model.

    Args:
        config: ``crmnet.CRMnetConfig``-style dict (default: published, 34,170,289 parameters).
        batch_size: fixed batch dimension of the input (``None``: any).
        skip_first: decoders concatenate ``[skip, upsampled]`` instead of the spec's
            ``[upsampled, skip]`` (same weights and shapes, other kernel row order), to test that
            the converter follows the saved graph.
    """
    k = keras2()
    c = full_config(config)
    SqueezeExcite, TransformerBlock, SinePosition = _classes(k)
    count = {"se": 0}

    def conv(filters, x, strides=1):
        return k.layers.Conv1D(filters, c["kernel_size"], strides=strides, padding="same", activation="relu",
                               kernel_initializer="he_normal")(x)

    def se(x):
        count["se"] += 1
        return SqueezeExcite(int(x.shape[-1]), c["se_ratio"], layer_name=f"se_{count['se']}")(x)

    def norm(x):
        return k.layers.BatchNormalization(momentum=c["batch_norm_momentum"], epsilon=c["batch_norm_epsilon"])(x)

    def block(x):
        return TransformerBlock(c["embed_dim"], c["num_heads"], c["key_dim"], c["ffn_dim"],
                                c["transformer_dropout"], c["layer_norm_epsilon"])(x)

    inputs = k.Input((c["seq_len"], len(CHANNELS)), batch_size=batch_size, name="one_hot")
    x, skips = inputs, []
    for index, filters in enumerate(c["encoder_filters"]):
        x = norm(se(conv(filters, x)))
        x = norm(se(conv(filters, x)))
        x = k.layers.Dropout(c["encoder_dropout"])(x)
        if index < len(c["encoder_filters"]) - 1:
            skips.append(x)
            x = conv(filters, x, strides=2)
    x = SinePosition(c["position_span"])(x)
    blocks = c["num_transformer_blocks"]
    if blocks:
        x, done = block(x), 1
        while blocks - done >= 2:  # a = t_even(x); x = t_odd(x) + a
            side = block(x)
            x = block(x) + side
            done += 2
        if done < blocks:
            x = block(x)
    for skip in reversed(skips):
        x = k.layers.Conv1DTranspose(c["decoder_filters"], c["kernel_size"], strides=2, padding="same",
                                     kernel_initializer="he_normal")(x)
        x = k.layers.Concatenate()([skip, x] if skip_first else [x, skip])
        x = norm(se(conv(c["decoder_filters"], x)))
        x = norm(se(conv(c["decoder_filters"], x)))
    for filters in c["head_conv_filters"]:
        x = se(conv(filters, x))
    x = k.layers.Flatten()(x)
    for units, rate in zip(c["dense_units"], c["dense_dropouts"]):
        x = k.layers.Dense(units)(x)
        x = k.layers.LeakyReLU(c["leaky_relu_slope"])(x)
        x = k.layers.Dropout(rate)(x)
    return k.Model(inputs, k.layers.Dense(1)(x), name="crmnet_keras2")


def compile_published(model, learning_rate=1e-3):
    """Adam + Huber(delta 1), as the paper trains."""
    k = keras2()
    model.compile(optimizer=k.optimizers.Adam(learning_rate), loss=k.losses.Huber(delta=1.0))
    return model


def one_hot(sequences, seq_len):
    """``(n, seq_len, 5)`` float32 in channel order ``[N, A, C, G, T]``, N-padded at the 3' end."""
    out = np.zeros((len(sequences), seq_len, len(CHANNELS)), dtype="float32")
    for row, seq in enumerate(sequences):
        seq = seq.upper()[:seq_len].ljust(seq_len, "N")
        out[row, np.arange(seq_len), [CHANNELS.find(b) if b in "ACGT" else 0 for b in seq]] = 1.0
    return out


def random_sequences(count, seq_len, rng):
    """Random ACGT sequences, each with 1..8 N at random positions (some also shorter, N-padded)."""
    seqs = []
    for _ in range(count):
        bases = rng.choice(list("ACGT"), size=seq_len)
        bases[rng.choice(seq_len, size=int(rng.integers(1, 9)), replace=False)] = "N"
        seqs.append("".join(bases))
    return seqs


def randomize(model, rng, calibration):
    """Random weights everywhere; BatchNorm statistics random around the real ones.

    Kernels get new values at their initializer's scale, biases / gamma / beta random values. Each
    BatchNorm's moving mean and variance are first set to the statistics of its input on
    ``calibration`` (one training-mode pass with momentum 0), then perturbed at random (mean +-0.2
    SD, variance x0.6..1.6). Statistics unrelated to the activations would let a constant offset
    swamp the input-dependent part of every activation, so the model would predict nearly a
    constant and the prediction check would test float noise.
    """
    norms = [layer for layer in model.layers if hasattr(layer, "moving_variance")]
    for weight in model.weights:
        name, shape = weight.name, tuple(weight.shape)
        if "moving_" in name:
            continue
        if "gamma" in name:
            value = rng.uniform(0.6, 1.4, shape)
        elif "beta" in name or "bias" in name:
            value = rng.normal(0.0, 0.1, shape)
        else:  # kernels: keep the He / Glorot scale of the initializer, new random values
            value = rng.normal(0.0, 1.0, shape) * float(np.std(weight.numpy()) or 0.05)
        weight.assign(value.astype(weight.dtype.as_numpy_dtype))
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(calibration, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
        spread = np.sqrt(layer.moving_variance.numpy())
        shape = spread.shape
        layer.moving_mean.assign((layer.moving_mean.numpy() + 0.2 * spread * rng.normal(size=shape)).astype("float32"))
        layer.moving_variance.assign((spread ** 2 * rng.uniform(0.6, 1.6, shape)).astype("float32"))


def write_reference(out_dir, config=None, seed=0, num_sequences=64, train_batch=4, target_sd=1.0,
                    skip_first=False):
    """Builds, randomises, trains one step and saves the reference; returns the summary dict.

    The output Dense is rescaled so predictions spread with SD ``target_sd`` around 0 (a random
    deep net otherwise predicts nearly a constant, which would hide mapping errors).
    """
    k = keras2()
    import tensorflow as tf

    c = full_config(config)
    k.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_reference_model(c, skip_first=skip_first)
    seqs = random_sequences(num_sequences, c["seq_len"], rng)
    x = one_hot(seqs, c["seq_len"])
    randomize(model, rng, calibration=one_hot(random_sequences(64, c["seq_len"], rng), c["seq_len"]))
    compile_published(model)  # one step, so the checkpoint holds Adam slots as a trained model's does
    train_x = one_hot(random_sequences(train_batch, c["seq_len"], rng), c["seq_len"])
    model.train_on_batch(train_x, rng.normal(size=(train_batch, 1)).astype("float32"))

    head = model.layers[-1]
    before = model.predict(x, verbose=0)
    spread = float(np.std(before))
    if not np.isfinite(before).all() or spread == 0.0:
        raise RuntimeError("the randomised reference predicts a constant or non-finite values; try another seed")
    kernel, bias = head.get_weights()
    scale = target_sd / spread
    head.set_weights([kernel * scale, (bias - float(np.mean(before))) * scale])

    saved = os.path.join(out_dir, "saved_model")
    model.save(saved)
    preds = model.predict(x, verbose=0).reshape(-1)
    with open(os.path.join(out_dir, "predictions.tsv"), "w") as handle:
        handle.write("sequence\tprediction\n")
        handle.writelines(f"{s}\t{p:.9g}\n" for s, p in zip(seqs, preds))
    with open(os.path.join(out_dir, "config.json"), "w") as handle:
        json.dump(c, handle, indent=1)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    summary = {
        "params": int(model.count_params()),
        "trainable": trainable,
        "non_trainable": int(model.count_params()) - trainable,
        "prediction_sd": float(np.std(preds)),
        "num_sequences": len(seqs),
        "tensorflow": tf.__version__,
        "keras": k.__version__,
        "saved_model": saved,
        "decoder_concat": "skip, upsampled" if skip_first else "upsampled, skip",
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    return summary


@one_line_errors("python -m benchmarks.crmnet_keras2_reference")
def main(argv=None) -> int:
    parser = Parser(prog="python -m benchmarks.crmnet_keras2_reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="published")
    parser.add_argument("--config", help="JSON overrides of the preset (CRMnetConfig keys)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-sequences", type=int, default=64, help="sequences (all with N) to predict")
    parser.add_argument("--skip-first", action="store_true",
                        help="decoders concatenate [skip, upsampled] (the spec's order is [upsampled, skip])")
    args = parser.parse_args(argv)
    config = dict(PRESETS[args.preset], **(json.loads(args.config) if args.config else {}))
    OutputRule().check_folder(args.out, "--out")  # a new or empty folder: nothing in it is replaced
    os.makedirs(args.out, exist_ok=True)
    summary = write_reference(args.out, config, seed=args.seed, num_sequences=args.num_sequences,
                              skip_first=args.skip_first)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    sys.exit(main())
