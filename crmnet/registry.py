"""CRMnet's ModelSpec (entry point `seq2exp.models: crmnet`): Huber loss, warm-up + cosine LR, 112 nt records."""
from crmnet.model import CRMnetConfig, build_crmnet
from seq2exp.engine.losses import huber
from seq2exp.engine.registry import ModelSpec


def _small() -> dict:
    """Width-reduced CRMnet for CPU runs (same topology, ~1/100 of the parameters)."""
    return {"encoder_filters": (32, 32, 64, 64), "num_heads": 4, "key_dim": 32, "embed_dim": 64, "ffn_dim": 64,
            "decoder_filters": 32, "head_conv_filters": (32, 16, 8), "dense_units": (64, 32, 16, 8)}


def _initialize(model, stats: dict) -> None:
    """Start the linear output at the training mean (the published code starts it at 0)."""
    model.get_layer("expression").bias.assign([stats["mean"]])


SPEC = ModelSpec(
    name="crmnet",
    layout="crmnet",
    build=build_crmnet,
    default_config=lambda: CRMnetConfig().to_dict(),
    presets={"tiny": lambda: CRMnetConfig.tiny(seq_len=112).to_dict(), "small": _small},
    loss=huber,
    initialize=_initialize,
    optimizer={"name": "adam"},
    # the paper's: 1e-4 -> 1e-3 over 10 epochs, cosine to 1e-4, all x replicas (linear scaling)
    schedule={"name": "warmup_cosine", "base_lr": 1e-4, "peak_lr": 1e-3, "final_lr": 1e-4,
              "warmup_epochs": 10, "scale_with_replicas": True},
)
