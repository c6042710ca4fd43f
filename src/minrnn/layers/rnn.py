"""`MinGRU` and `MinLSTM`: drop-in replacements for `torch.nn.GRU` / `torch.nn.LSTM`.

Same constructor, defaults (``batch_first=False``) and return values as torch.nn.GRU /
torch.nn.LSTM: ``MinGRU`` returns ``(output, h_n)``, ``MinLSTM`` returns ``(output, (h_n, c_n))``.
Variable-length batches go in as a PackedSequence (as with nn.GRU; the output is packed too) or
as a padded tensor with ``lengths``. Each layer and direction is one Linear (producing all gate
pre-activations in one matmul) followed by a scan; there is no hidden-to-hidden weight.

Both classes are registered with `torch.serialization.add_safe_globals`, with the torch.nn modules
they hold, so a whole saved layer loads with ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import math
import re
from typing import Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from minrnn import functional as F
from minrnn._serialization import allow_weights_only
from minrnn.ops.activations import ACTIVATIONS


# MinGRU's state is a tensor (num_layers * num_directions, B, H); MinLSTM's is nn.LSTM's pair (h, c).
State = Union[Tensor, tuple[Tensor, Tensor]]

# nn.GRU / nn.LSTM parameter names (weight_ih_l0, bias_hh_l1_reverse, ...), which these layers lack.
_NN_RNN_PARAM = re.compile(r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?")


class _MinRNNBase(nn.Module):
    n_proj: int  # pre-activations per hidden unit: 2 for minGRU (gate, cand), 3 for minLSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        proj_size: int = 0,
        activation: str = "g",
        backend: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if proj_size != 0:  # taken only so that nn.LSTM's keyword gives this message, not a TypeError
            raise ValueError(
                f"{type(self).__name__} has no proj_size (nn.LSTM's projected LSTM): leave proj_size=0 and "
                f"project the outputs yourself, e.g. nn.Linear(hidden_size, {proj_size}) on output and h_n"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        F.check_backend(backend)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.proj_size = 0  # as nn.LSTM without projections: code reading rnn.proj_size sees hidden_size in use
        self.activation = activation
        self.backend = backend
        self.num_directions = 2 if bidirectional else 1
        # proj[layer * num_directions + direction]: Linear(layer input -> n_proj * hidden_size)
        self.proj = nn.ModuleList(
            nn.Linear(
                input_size if layer == 0 else hidden_size * self.num_directions,
                self.n_proj * hidden_size,
                bias=bias,
                device=device,
                dtype=dtype,
            )
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.GRU does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for code written for nn.GRU / nn.LSTM: these layers have no cuDNN weight buffer."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # nn.Module: parameters, buffers, submodules
        except AttributeError:
            if _NN_RNN_PARAM.fullmatch(name) or name in ("all_weights", "_flat_weights"):
                raise AttributeError(
                    f"{type(self).__name__} has no {name}: it has no hidden-to-hidden weights; the weights and "
                    f"biases of layer l, direction d are proj[l * num_directions + d].weight / .bias, which "
                    f"map the layer's input to all {self.n_proj} gate pre-activations at once"
                ) from None
            raise

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.activation != "g":
            s += f", activation={self.activation!r}"
        return s

    # --- the cell, on pre-activations ---------------------------------------------------------

    def _scan(self, pre: Tensor, h0: Tensor | None, mask: Tensor | None) -> Tensor:
        """pre (B, T, n_proj * H), the Linear's output as it is (packed ops: no chunk, so the
        fused CPU backward writes d(pre) in one buffer, no torch.cat) -> h (B, T, H)."""
        raise NotImplementedError

    def _step(self, pre: Tensor, h: Tensor) -> Tensor:
        """pre (B, n_proj * H), h (B, H) -> new h (B, H)."""
        raise NotImplementedError

    # --- the state: MinGRU passes a tensor, MinLSTM nn.LSTM's (h, c) pair ---------------------

    def _wrap_state(self, h: Tensor) -> State:
        """The state as this layer returns it (MinLSTM: the pair)."""
        return h

    def _unwrap_state(self, hx: State | None, name: str = "hx") -> Tensor | None:
        """The state tensor of ``hx`` as this layer takes it (MinLSTM: the pair, or a tensor)."""
        if hx is not None and not isinstance(hx, Tensor):
            raise ValueError(f"{name} must be a tensor (num_layers * num_directions, B, hidden_size), got {type(hx).__name__}")
        return hx

    # --- forward --------------------------------------------------------------------------------

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: State | None = None,
        *,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, State]:
        """Run the whole sequence in parallel.

        Args:
            input: (T, B, input_size), or (B, T, input_size) with ``batch_first=True``; or
                (T, input_size) unbatched; or a PackedSequence (from pack_padded_sequence /
                pack_sequence), as nn.GRU takes it.
            hx: initial state, as nn.GRU's h_0: (num_layers * num_directions, B, hidden_size), or
                without B for unbatched input; None means zeros. MinLSTM takes nn.LSTM's (h_0, c_0).
            lengths: (B,) lengths of right-padded sequences, each in [1, T], as a tensor (on any
                device: a CPU tensor, as pack_padded_sequence wants it, works with CUDA input) or a
                list of ints. Outputs past a sequence's length are zero and h_n holds the state at its
                last real step.
        Returns:
            output: (T, B, num_directions * hidden_size) (or batch-first, as the input; a
            PackedSequence for a PackedSequence input),
            h_n: (num_layers * num_directions, B, hidden_size); MinLSTM returns (h_n, c_n).
        """
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths= is for a padded tensor input; a PackedSequence already holds its lengths")
            return self._forward_packed(input, hx)
        x, h0, unbatched = self._check_input(input, self._unwrap_state(hx))
        B, T, _ = x.shape
        mask = self._lengths_mask(lengths, B, T, x.device)
        # Reverse direction: flip each sequence within its own length (plain flip without lengths).
        rev_index = _reverse_index(mask.sum(1), T) if mask is not None and self.bidirectional else None
        if mask is not None:
            # Padded steps get a zero input (where, not a product: NaN/Inf there vanish), so what
            # the padding holds reaches no output and no gradient; later layers get zeros there too.
            x = torch.where(mask.unsqueeze(-1), x, x.new_zeros(()))
        h_n = []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                inp = _reverse(x, rev_index) if direction == 1 else x
                h = self._scan(self.proj[k](inp), None if h0 is None else h0[k], mask)
                h_n.append(h[:, -1])  # padded steps carry the state, so the last step is the last real one
                if direction == 1:
                    h = _reverse(h, rev_index)
                outs.append(h)
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if mask is not None:
                x = torch.where(mask.unsqueeze(-1), x, x.new_zeros(()))
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        h_n = torch.stack(h_n, dim=0)
        if unbatched:
            return x.squeeze(0), self._wrap_state(h_n.squeeze(1))
        if not self.batch_first:
            x = x.transpose(0, 1)
        return x, self._wrap_state(h_n)

    def _forward_packed(self, input: PackedSequence, hx: State | None) -> tuple[PackedSequence, State]:
        """nn.GRU's PackedSequence semantics: hx and h_n in the caller's batch order, the output packed
        like the input (same batch_sizes and indices)."""
        padded, lengths = pad_packed_sequence(input, batch_first=self.batch_first)  # caller's order
        out, state = self.forward(padded, hx, lengths=lengths)
        batch_dim = 0 if self.batch_first else 1
        if input.sorted_indices is not None:  # pack in the input's order, so its indices stay valid
            out = out.index_select(batch_dim, input.sorted_indices)
            lengths = lengths[input.sorted_indices.cpu()]
        data = pack_padded_sequence(out, lengths, batch_first=self.batch_first).data
        return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), state

    @torch.no_grad()
    def init_state(self, batch_size: int) -> State:
        """Zero state for `step`: (num_layers, B, hidden_size) (MinLSTM: the pair)."""
        p = self.proj[0].weight
        return self._wrap_state(torch.zeros(self.num_layers, batch_size, self.hidden_size, device=p.device, dtype=p.dtype))

    def step(self, input: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step in O(1) memory; gives the parallel mode's outputs step by step.

        Args:
            input: (B, input_size).
            state: (num_layers, B, hidden_size) from the previous step or `forward`'s h_n (MinLSTM:
                the (h, c) pair, or h alone); None means zeros.
        Returns:
            (output (B, hidden_size), new state in the form `forward` returns it).
        """
        if self.bidirectional:
            raise ValueError("step() needs the future for a bidirectional layer; use forward()")
        if input.dim() != 2 or input.shape[-1] != self.input_size:
            raise ValueError(f"step input must have shape (B, input_size={self.input_size}), got {tuple(input.shape)}")
        B = input.shape[0]
        h = self._unwrap_state(state, "state")
        if h is None:
            h = torch.zeros(self.num_layers, B, self.hidden_size, device=input.device, dtype=input.dtype)
        elif tuple(h.shape) != (self.num_layers, B, self.hidden_size):
            raise ValueError(
                f"state has shape {tuple(h.shape)}, expected (num_layers, B, hidden_size) = "
                f"({self.num_layers}, {B}, {self.hidden_size})"
            )
        x, new_state = input, []
        for layer in range(self.num_layers):
            x = self._step(self.proj[layer](x), h[layer])
            new_state.append(x)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        return x, self._wrap_state(torch.stack(new_state, dim=0))

    # --- input handling ---------------------------------------------------------------------

    def _check_input(self, input: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor | None, bool]:
        if not isinstance(input, Tensor) or not input.is_floating_point():
            got = input.dtype if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"input must be a floating-point tensor, got {got}")
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input must have shape {layout} or (T, input_size) unbatched, got {input.dim()} dims: {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input has feature size {input.shape[-1]}, expected input_size={self.input_size}: {layout}")
        unbatched = input.dim() == 2
        x = input.unsqueeze(0) if unbatched else (input if self.batch_first else input.transpose(0, 1))
        if x.shape[1] == 0:
            raise ValueError(f"input has T = 0 time steps; expected {layout} with T >= 1")
        if h0 is not None:
            L = self.num_layers * self.num_directions
            expected = (L, self.hidden_size) if unbatched else (L, x.shape[0], self.hidden_size)
            if not isinstance(h0, Tensor) or tuple(h0.shape) != expected:
                got = tuple(h0.shape) if isinstance(h0, Tensor) else type(h0).__name__
                raise ValueError(
                    f"h0 has shape {got}, expected (num_layers * num_directions, B, hidden_size) = {expected} "
                    f"for input {tuple(input.shape)} laid out as {'(T, input_size)' if unbatched else layout}"
                    + ("" if unbatched or self.batch_first else " (batch_first=False, as nn.GRU: pass batch_first=True for (B, T, input_size))")
                )
            if h0.device != x.device:
                raise ValueError(f"h0 is on {h0.device}, expected {x.device} like the input")
            if unbatched:
                h0 = h0.unsqueeze(1)
        return x, h0, unbatched

    @staticmethod
    def _lengths_mask(lengths: Tensor | Sequence[int] | None, B: int, T: int, device: torch.device) -> Tensor | None:
        if lengths is None:
            return None
        if not isinstance(lengths, Tensor):
            lengths = torch.as_tensor(list(lengths))
        if lengths.is_meta and device.type != "meta":
            raise ValueError(f"lengths is on meta (it holds no values); pass it on the CPU or on {device}")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.dim() != 1 or lengths.shape[0] != B:
            raise ValueError(f"lengths must be an integer tensor of shape (B,) = ({B},), got {lengths.dtype} {tuple(lengths.shape)}")
        # Data-dependent, so eager mode only: torch.compile(fullgraph=True) cannot branch on tensor
        # values. Compiled, a length > T acts as T and one < 1 as an all-padded row (output zero).
        if not torch.compiler.is_compiling() and bool(((lengths < 1) | (lengths > T)).any()):
            raise ValueError(f"lengths must lie in [1, T={T}], got min {int(lengths.min())}, max {int(lengths.max())}")
        # Checked where lengths lies (CPU lengths with CUDA input: no device sync), then moved.
        return torch.arange(T, device=device) < lengths.to(device).unsqueeze(1)


def set_backend(module: nn.Module, name: str | None) -> nn.Module:
    """Set the scan backend (see `minrnn.functional`) of every MinGRU / MinLSTM inside ``module``,
    e.g. a whole model; None restores automatic selection. Returns ``module``."""
    F.check_backend(name)
    for m in module.modules():
        if isinstance(m, _MinRNNBase):
            m.backend = name
    return module


def _reverse_index(lengths: Tensor, T: int) -> Tensor:
    """index[b, t] = lengths[b] - 1 - t for t < lengths[b], else t: reverses each sequence in place."""
    t = torch.arange(T, device=lengths.device).unsqueeze(0)
    rev = lengths.unsqueeze(1) - 1 - t
    return torch.where(rev >= 0, rev, t)


def _reverse(x: Tensor, index: Tensor | None) -> Tensor:
    if index is None:
        return x.flip(1)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class MinGRU(_MinRNNBase):
    r"""Multi-layer minGRU, an `nn.GRU`-like module.

    .. math::
        z_t = \sigma(W_z x_t + b_z),\quad \tilde h_t = g(W_h x_t + b_h),\quad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    Args: as `torch.nn.GRU`, plus ``activation`` (``"g"`` or ``"identity"``) and ``backend`` (see
    `minrnn.functional`; `minrnn.layers.set_backend` sets it on every layer of a model).
    """

    n_proj = 2

    def _scan(self, pre: Tensor, h0: Tensor | None, mask: Tensor | None) -> Tensor:
        return F.min_gru_packed(pre, h0, mask, activation=self.activation, backend=self.backend)

    def _step(self, pre: Tensor, h: Tensor) -> Tensor:
        gate, cand = pre.chunk(2, dim=-1)
        return F.min_gru_step(gate, cand, h, activation=self.activation)


class MinLSTM(_MinRNNBase):
    r"""Multi-layer minLSTM, an `nn.LSTM`-like module.

    .. math::
        f'_t, i'_t = \frac{\sigma(f_t)}{\sigma(f_t) + \sigma(i_t)}, \frac{\sigma(i_t)}{\sigma(f_t) + \sigma(i_t)},\quad
        h_t = f'_t \odot h_{t-1} + i'_t \odot g(W_h x_t + b_h)

    Takes and returns nn.LSTM's state pair ``(h, c)``, so ``out, (h_n, c_n) = lstm(x, (h_0, c_0))``
    runs unchanged. minLSTM has no output gate: its cell state is its output, so ``c_n`` is
    ``h_n`` (the same tensor), and ``h_0`` and ``c_0`` must be equal (a ValueError says so
    otherwise; the state passed on between calls always is). A single tensor ``hx`` is accepted too.

    Args: as `MinGRU`.
    """

    n_proj = 3

    def _wrap_state(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return h, h

    def _unwrap_state(self, hx: State | None, name: str = "hx") -> Tensor | None:
        if not isinstance(hx, (tuple, list)):
            return super()._unwrap_state(hx, name)
        if len(hx) != 2 or not all(isinstance(t, Tensor) for t in hx):
            raise ValueError(f"{name} must be nn.LSTM's pair (h_0, c_0) of tensors (num_layers * num_directions, B, hidden_size)")
        h0, c0 = hx
        if h0 is not c0 and not torch.compiler.is_compiling():
            if h0.shape != c0.shape or not torch.equal(h0, c0):
                raise ValueError(
                    f"{name}: minLSTM's cell state is its output, so h_0 and c_0 must be equal; got different "
                    "tensors (pass the (h_n, c_n) a MinLSTM returned, or (h_0, h_0))"
                )
        return h0

    def _scan(self, pre: Tensor, h0: Tensor | None, mask: Tensor | None) -> Tensor:
        return F.min_lstm_packed(pre, h0, mask, activation=self.activation, backend=self.backend)

    def _step(self, pre: Tensor, h: Tensor) -> Tensor:
        forget, inp, cand = pre.chunk(3, dim=-1)
        return F.min_lstm_step(forget, inp, cand, h, activation=self.activation)


# torch.load(path, weights_only=True) of a whole saved layer: these classes and the modules they hold.
allow_weights_only(MinGRU, MinLSTM, nn.ModuleList, nn.Linear)
