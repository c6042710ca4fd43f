"""minrnn: minimal recurrent networks (minGRU, minLSTM) from "Were RNNs All We Needed?"."""

from minrnn import functional
from minrnn.layers import CausalConv1d, MinGRU, MinLSTM, MinRNNBlock
from minrnn.models import LMConfig, MinRNNLM
from minrnn.pretrained import load

__version__ = "0.1.0"
__all__ = ["functional", "MinGRU", "MinLSTM", "CausalConv1d", "MinRNNBlock", "LMConfig", "MinRNNLM", "load"]
