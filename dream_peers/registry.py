"""The DREAM 2022 peers' ModelSpecs (entry points `seq2exp.models: cnn_bilstm, macaron`).

Both read the shared 112 nt ``crmnet`` records and make their own inputs in the step
(``dream_peers.transforms``), train on standardised labels (``LabelScale`` set from the
training label mean/std by ``initialize``) and predict expression units.
"""
import keras
import numpy as np
from keras import ops

from dream_peers.cnn_bilstm import CNNBiLSTMConfig, build_cnn_bilstm
from dream_peers.losses import cnn_bilstm_loss, macaron_loss
from dream_peers.macaron import MacaronConfig, build_macaron
from dream_peers.transforms import CNN_LENGTH, N_CODE, cnn_bilstm_inputs, macaron_inputs, token_sources
from seq2exp.engine.losses import mse
from seq2exp.engine.registry import ModelSpec, OneHotAdapter
from seq2exp.layers.one_hot import lookup_matrix


def _initialize(model, stats: dict) -> None:
    """Standardise with the training labels' mean and std (std 1 when the stats have none)."""
    std = stats.get("std") or 1.0
    model.get_layer("label_scale").set_stats(stats["mean"], std if std > 0 else 1.0)


def _scaled(config: dict) -> dict:
    """The registry's sizes train on standardised labels: LabelScale on."""
    return {**config, "label_scale": True}


def _default_scaled(config: dict) -> dict:
    """A partial config (e.g. `{}`) builds with LabelScale unless it says otherwise."""
    return {"label_scale": True, **config}


def _macaron_predict(model, batch, transform):
    """The expression output of the unmasked 200-token input (both strands are already in it)."""
    return ops.reshape(model(transform(batch, False), training=False)["expression"], (-1,))


def _cnn_bilstm_onehot(model) -> OneHotAdapter:
    """Saliency at the one-hot the network reads (N = [1, 1, 1, 1]); it never sees the record's last 2 nt."""
    table = lookup_matrix("ACGT", n_value=1.0)
    return OneHotAdapter(lambda codes: table[np.minimum(codes, N_CODE)],
                         lambda x: ops.reshape(model(x[:, :CNN_LENGTH], training=False), (-1,)), [0, 1, 2, 3])


def _macaron_onehot(model) -> OneHotAdapter:
    """Saliency at a one-hot of the record: the 200 tokens' one-hot is gathered from it as `macaron_tokens`
    gathers codes (the reverse strand by swapping A/T and C/G channels), then the network from its embedding
    on, as `_macaron_predict` (the tokens' origin is read from the one-hot; the gradient flows through it)."""
    embedding = model.get_layer("embedding")
    rest = keras.Model(embedding.output, model.output["expression"])
    table = np.eye(embedding.vocab_size, dtype="float32")[:N_CODE + 1]  # codes A C G T N -> token one-hot
    complement = [3, 2, 1, 0, *range(N_CODE, embedding.vocab_size)]

    def predict(x):
        source, inside = token_sources(ops.argmax(x, axis=-1))
        inside = ops.cast(inside, x.dtype)[..., None]
        gather = ops.one_hot(source, x.shape[1], dtype=x.dtype) * inside  # (b, 100, record length)
        forward = ops.matmul(gather, x) + (1.0 - inside) * table[N_CODE]
        tokens = ops.concatenate([forward, ops.take(ops.flip(forward, axis=1), complement, axis=2)], axis=1)
        return ops.reshape(rest(embedding.embed_one_hot(tokens), training=False), (-1,))

    return OneHotAdapter(lambda codes: table[np.minimum(codes, N_CODE)], predict, [0, 1, 2, 3])


CNN_BILSTM = ModelSpec(
    name="cnn_bilstm",
    layout="crmnet",
    build=lambda config: build_cnn_bilstm(_default_scaled(config)),
    default_config=lambda: _scaled(CNNBiLSTMConfig().to_dict()),
    presets={"tiny": lambda: _scaled(CNNBiLSTMConfig.tiny().to_dict()),
             "small": lambda: _scaled(CNNBiLSTMConfig.small().to_dict())},
    loss=mse,
    inputs=cnn_bilstm_inputs,
    compute_loss=cnn_bilstm_loss,
    initialize=_initialize,
    optimizer={"name": "adam"},
    schedule={"name": "constant", "lr": 0.003},
    onehot=_cnn_bilstm_onehot,
)

MACARON = ModelSpec(
    name="macaron",
    layout="crmnet",
    build=lambda config: build_macaron(_default_scaled(config)),
    default_config=lambda: _scaled(MacaronConfig().to_dict()),
    presets={"tiny": lambda: _scaled(MacaronConfig.tiny().to_dict()),
             "small": lambda: _scaled(MacaronConfig.small().to_dict())},
    loss=mse,
    inputs=macaron_inputs,
    compute_loss=macaron_loss,
    predict=_macaron_predict,
    initialize=_initialize,
    optimizer={"name": "adam", "beta_1": 0.9, "beta_2": 0.98, "epsilon": 1e-9, "clipvalue": 0.5,
               "global_clipnorm": 1.0},
    schedule={"name": "inverse_sqrt", "d_model": 512, "warmup_steps": 12500},
    onehot=_macaron_onehot,
)
