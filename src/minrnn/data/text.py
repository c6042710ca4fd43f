"""Text tokenizers (character- and byte-level) and a random-window batch sampler.

A tokenizer is described by a small JSON-able dict (`Tokenizer.to_dict`, read back by
`tokenizer_from_dict`): ``{"type": "char", "chars": "..."}`` or ``{"type": "byte"}``. Run
checkpoints store it, and model folders as ``tokenizer.json`` (`save_tokenizer` / `load_tokenizer`).
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch
from torch import Tensor

TOKENIZER_FILE = "tokenizer.json"


class CharTokenizer:
    """Maps each distinct character of a corpus to an id (sorted order, as nanoGPT)."""

    kind = "char"

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
        """str -> (N,) int64 ids; a character outside the vocabulary is a ValueError."""
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {''.join(unknown)!r}")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def stream_decoder(self) -> Callable[[Any], str]:
        """A function decoding ids one chunk at a time (for streamed generation)."""
        return self.decode

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255: any text encodes, whatever its alphabet."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> Tensor:
        data = text.encode("utf-8")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).long() if data else torch.zeros(0, dtype=torch.long)

    def decode(self, ids) -> str:
        """ids -> str; a byte sequence that is not valid UTF-8 decodes with U+FFFD in its place."""
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def stream_decoder(self) -> Callable[[Any], str]:
        """A function decoding ids one chunk at a time: a character split across chunks comes out
        whole with the chunk that completes it."""
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda ids: dec.decode(bytes(int(i) for i in ids))

    def to_dict(self) -> dict:
        return {"type": "byte"}

    def __repr__(self) -> str:
        return "ByteTokenizer()"


Tokenizer = Union[CharTokenizer, ByteTokenizer]
TOKENIZERS = ("char", "byte")


def tokenizer_from_dict(spec: Any) -> Tokenizer:
    """A tokenizer from its `to_dict` form; a plain string is a character tokenizer's characters
    (how Shakespeare runs store it). A malformed spec is a ValueError."""
    if isinstance(spec, str):
        return CharTokenizer(spec)
    if not isinstance(spec, dict) or spec.get("type") not in TOKENIZERS:
        raise ValueError(f"a tokenizer must be {{'type': 'char', 'chars': ...}} or {{'type': 'byte'}}, got {spec!r:.80}")
    if spec["type"] == "byte":
        return ByteTokenizer()
    return CharTokenizer(spec.get("chars"))


def tokenizer_from_checkpoint(ckpt: dict, source: str = "the checkpoint") -> Tokenizer:
    """The tokenizer stored in a run's checkpoint, which must have one symbol per id of its model."""
    vocab_size = (ckpt.get("config") or {}).get("model", {}).get("vocab_size")
    try:
        tok = tokenizer_from_dict(ckpt.get("tokenizer"))
    except ValueError as e:
        raise ValueError(f"{source} has a malformed tokenizer entry: {e}") from None
    if vocab_size is not None and tok.vocab_size != vocab_size:
        what = "characters" if tok.kind == "char" else "symbols"
        raise ValueError(f"{source} has a malformed tokenizer entry: {tok.vocab_size} {what} for a model of {vocab_size} token ids")
    return tok


def save_tokenizer(tokenizer: Tokenizer, folder: str | os.PathLike) -> Path:
    """Write ``tokenizer.json`` into ``folder``; returns its path."""
    path = Path(folder) / TOKENIZER_FILE
    path.write_text(json.dumps(tokenizer.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer | None:
    """The tokenizer saved in ``folder`` (its ``tokenizer.json``), or None if it has none."""
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        return tokenizer_from_dict(spec)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable tokenizer: {e}") from None


def fixed_windows(data: Tensor | np.ndarray, context: int, n: int = 0) -> tuple[Tensor, Tensor]:
    """The non-overlapping windows of 1-D tokens as (x, y), each (N, context) int64: window i is
    data[i * context : (i + 1) * context + 1], x its first context tokens and y its last (x shifted
    by one), for every i that fits. With ``n`` > 0, n of them evenly spaced (window i * N // n for
    i < n; all N if n >= N). A fixed validation set: every evaluation reads the same tokens."""
    total = (len(data) - 1) // context
    if total < 1:
        raise ValueError(f"data has {len(data)} tokens, need more than context={context}")
    starts = torch.arange(total) if n <= 0 or n >= total else torch.arange(n) * total // n
    index = (starts * context).unsqueeze(1) + torch.arange(context + 1)
    windows = torch.from_numpy(data[index.numpy()].astype(np.int64)) if isinstance(data, np.ndarray) else data[index].long()
    return windows[:, :-1], windows[:, 1:]


def random_windows(data: Tensor | np.ndarray, batch_size: int, context: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Sample (x, y) of shape (batch_size, context) int64 from 1-D tokens (a tensor, or a numpy
    array such as a memory-mapped token file, of which only the windows are read); y is x shifted
    by one."""
    if len(data) <= context:
        raise ValueError(f"data has {len(data)} tokens, need more than context={context}")
    starts = torch.randint(len(data) - context, (batch_size,), generator=generator)
    offsets = torch.arange(context + 1)
    index = starts.unsqueeze(1) + offsets
    if isinstance(data, np.ndarray):
        windows = torch.from_numpy(data[index.numpy()].astype(np.int64))
    else:
        windows = data[index]
    return windows[:, :-1], windows[:, 1:]
