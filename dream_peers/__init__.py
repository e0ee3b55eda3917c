"""The other DREAM 2022 seed architectures in the shared engine: CNN-BiLSTM and the Macaron transformer."""
from dream_peers.cnn_bilstm import CNNBiLSTMConfig, build_cnn_bilstm
from dream_peers.macaron import MacaronConfig, build_macaron

__all__ = ["CNNBiLSTMConfig", "MacaronConfig", "build_cnn_bilstm", "build_macaron"]
