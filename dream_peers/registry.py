"""The DREAM 2022 peers' ModelSpecs (entry points `seq2exp.models: cnn_bilstm, macaron`).

Both read the shared 112 nt ``crmnet`` records and make their own inputs in the step
(``dream_peers.transforms``), train on standardised labels (``LabelScale`` set from the
training label mean/std by ``initialize``) and predict expression units.
"""
from keras import ops

from dream_peers.cnn_bilstm import CNNBiLSTMConfig, build_cnn_bilstm
from dream_peers.losses import cnn_bilstm_loss, macaron_loss
from dream_peers.macaron import MacaronConfig, build_macaron
from dream_peers.transforms import cnn_bilstm_inputs, macaron_inputs
from seq2exp.engine.losses import mse
from seq2exp.engine.registry import ModelSpec


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
)
