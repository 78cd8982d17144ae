"""Efficient attention: the online softmax, tiled attention with a backward pass by
recomputation, sliding windows that score only the band, and linear attention.

Chapter 10 of the tutorials measures them (time, peak memory, bytes moved). Three more
modules are imported by name: :mod:`attnlib.efficient.flex` (attnlib's masks and ALiBi as
PyTorch ``flex_attention`` functions), :mod:`attnlib.efficient.iosim` (the bytes moved
between a slow and a fast memory) and :mod:`attnlib.efficient.measure` (time and peak
memory, one process per configuration).
"""

from .linear import elu_feature_map, linear_attention
from .online import naive_attention, online_logsumexp, online_softmax, tiled_attention
from .window import band_attention, band_to_dense

__all__ = [
    "online_softmax",
    "online_logsumexp",
    "naive_attention",
    "tiled_attention",
    "band_attention",
    "band_to_dense",
    "linear_attention",
    "elu_feature_map",
]
