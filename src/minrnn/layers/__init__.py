"""Modules: the nn.GRU-like recurrent layers, the causal conv, and the paper's residual block."""

from minrnn.layers.block import MinRNNBlock
from minrnn.layers.conv import CausalConv1d
from minrnn.layers.rnn import MinGRU, MinLSTM, set_backend

__all__ = ["MinGRU", "MinLSTM", "CausalConv1d", "MinRNNBlock", "set_backend"]
