"""Sampling from a recurrent LM in step mode: the prompt is read once in parallel, then each new
token costs one `step` with the cached state, whatever the context length."""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row from logits (B, V); temperature 0 means greedy.

    ``top_k`` keeps the k most likely tokens (None: all); a k at or above V keeps all of them, as
    Hugging Face's top-k does. Non-finite logits (a model whose weights or state went NaN, e.g. a
    diverged run) are a ValueError rather than a silently arbitrary token.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None (no top-k filtering), got {top_k!r}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("the model's logits are not finite (NaN/Inf): its weights or state are, e.g. after a diverged training run")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Yield max_new_tokens new tokens (each (B,)) continuing prompt (B, T0), T0 >= 1."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must have shape (B, T0) with T0 >= 1, got {tuple(prompt.shape)}")
    logits, state = model(prompt)
    logits = logits[:, -1]
    for _ in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, generator)
        yield token
        logits, state = model.step(token, state)
