"""Character-level text: a tokenizer and a random-window batch sampler."""

from __future__ import annotations

import torch
from torch import Tensor


class CharTokenizer:
    """Maps each distinct character of a corpus to an id (sorted order, as nanoGPT)."""

    def __init__(self, chars: str) -> None:
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"chars must be a non-empty string (character i is token i), got {type(chars).__name__} {chars!r:.40}")
        if len(set(chars)) != len(chars):
            raise ValueError(f"chars must not repeat a character, got {chars!r:.80}")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {''.join(unknown)!r}")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def random_windows(data: Tensor, batch_size: int, context: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Sample (x, y) of shape (batch_size, context) from a 1-D token tensor; y is x shifted by one."""
    if len(data) <= context:
        raise ValueError(f"data has {len(data)} tokens, need more than context={context}")
    starts = torch.randint(len(data) - context, (batch_size,), generator=generator)
    offsets = torch.arange(context + 1)
    windows = data[starts.unsqueeze(1) + offsets]
    return windows[:, :-1], windows[:, 1:]
