"""Whole models built from the layers, the baselines they are compared with, and the registry
that says which model a kind name (``--model X``) means."""

from minrnn.models.baselines import KVCache, RNNConfig, RNNLM, TransformerConfig, TransformerLM
from minrnn.models.lm import LMConfig, MinRNNLM
from minrnn.models.mamba import MambaConfig, MambaLM
from minrnn.models.registry import ARCHS, MODEL_KINDS, build_model, check_options, get_kind, model_config

__all__ = [
    "LMConfig",
    "MinRNNLM",
    "TransformerConfig",
    "TransformerLM",
    "KVCache",
    "RNNConfig",
    "RNNLM",
    "MambaConfig",
    "MambaLM",
    "ARCHS",
    "MODEL_KINDS",
    "build_model",
    "check_options",
    "get_kind",
    "model_config",
]
