"""Layers shared by every model in the package."""
from seq2exp.layers.one_hot import OneHotIndex, lookup_matrix, reverse_complement

__all__ = ["OneHotIndex", "lookup_matrix", "reverse_complement"]
