"""Float64 references shared by the tests."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from minrnn import functional as F
from minrnn.ops.activations import min_gru_coeffs, min_lstm_coeffs
from minrnn.ops.reference import sequential_scan


def reference(op, xs, h0=None, mask=None, activation="g"):
    """float64 sequential scan, differentiable through autograd: op "scan" (xs = a, b), "gru"
    (gate, cand) or "lstm" (forget, input, cand) on the coefficients of `minrnn.ops.activations`."""
    xs = [x.double() for x in xs]
    if op == "scan":
        a, b = xs
    else:
        a, b = (min_gru_coeffs if op == "gru" else min_lstm_coeffs)(*xs, activation)
    a, b = F._apply_mask(a, b, mask)
    return sequential_scan(a, b, None if h0 is None else h0.double())


def ref_min_gru(gate, cand, h0=None, mask=None, activation="g"):
    return reference("gru", [gate, cand], h0, mask, activation)


def ref_min_lstm(forget, input, cand, h0=None, mask=None, activation="g"):
    return reference("lstm", [forget, input, cand], h0, mask, activation)


def make_h0(kind, B, H, dtype=torch.float32):
    if kind is None:
        return None
    h0 = torch.rand(B, H, dtype=dtype) + 0.1
    return h0 if kind == "pos" else -h0 if kind == "neg" else torch.randn(B, H, dtype=dtype)


def random_mask(B, T):
    """Random right-padding-free mask with holes, always at least one True per row."""
    mask = torch.rand(B, T) > 0.3
    mask[:, 0] = True
    return mask


def rel_err(x, ref):
    return ((x.double() - ref).norm() / ref.norm().clamp(min=1e-30)).item()


# The Mamba baseline needs the optional `mamba` extra (mambapy; in the `test` extra too).
HAS_MAMBAPY = importlib.util.find_spec("mambapy") is not None
needs_mambapy = pytest.mark.skipif(not HAS_MAMBAPY, reason="needs the mamba extra (pip install mambapy)")


def kind_params(kinds) -> list:
    """Model kinds as pytest parameters, "mamba" skipped where mambapy is not installed."""
    return [pytest.param(k, marks=needs_mambapy) if k == "mamba" else k for k in kinds]
