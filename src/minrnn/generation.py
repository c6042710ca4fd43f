"""Sampling from a language model in step mode: the prompt is read once in parallel, then each
new token costs one ``model.step`` with the cached state (O(1) per token for the recurrent models,
whatever the context length).

`generate` is the iterator every path uses (``model.generate``, ``minrnn sample``);
`GenerationMixin` gives the language models their ``generate`` method; `sample_next` draws one
token per row from logits (temperature, top-k, top-p).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor


def _check_top_p(top_p) -> None:
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be a number in (0, 1] or None (no nucleus filtering), got {top_p!r}")


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
) -> Tensor:
    """Draw one token per row from logits (B, V) -> (B,); temperature 0 means greedy.

    ``top_k`` keeps the k most likely tokens (None: all); a k at or above V keeps all of them, as
    Hugging Face's top-k does. ``top_p`` (nucleus sampling) then keeps the most likely tokens whose
    probabilities (after temperature and top-k) first reach a total of ``top_p`` (at least one).
    Non-finite logits (a model whose weights or state went NaN, e.g. a diverged run) are a
    ValueError rather than a silently arbitrary token.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None (no top-k filtering), got {top_k!r}")
    _check_top_p(top_p)
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("the model's logits are not finite (NaN/Inf): its weights or state are, e.g. after a diverged training run")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens
        drop = (before >= top_p).scatter(-1, order, before >= top_p)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _eos_tensor(eos, device) -> Tensor | None:
    if eos is None:
        return None
    ids = [eos] if isinstance(eos, int) else list(eos) if isinstance(eos, Iterable) else None
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"eos must be a token id (int >= 0), a list of them, or None; got {eos!r}")
    return torch.tensor(ids, device=device)


@torch.no_grad()
def generate(
    model,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    *,
    top_p: float | None = None,
    eos: int | Sequence[int] | None = None,
) -> Iterator[Tensor]:
    """Yield up to ``max_new_tokens`` new tokens, each (B,), continuing ``prompt`` (B, T0), T0 >= 1.

    The prompt is read by one parallel ``model(prompt)`` (a Transformer reads its last ``context``
    tokens, all that its window sees), then each token by ``model.step(token, state)``. With
    ``eos`` (an id or a list of ids) a row that has produced one is finished: it yields ``eos``
    (its first id) from then on, and the iteration stops once every row has finished.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not isinstance(prompt, Tensor) or prompt.dim() != 2 or prompt.shape[1] == 0:
        got = tuple(prompt.shape) if isinstance(prompt, Tensor) else type(prompt).__name__
        raise ValueError(f"prompt must have shape (B, T0) with T0 >= 1, got {got}")
    sample_next(torch.zeros(1, 1), temperature, top_k, top_p=top_p)  # bad settings fail before the model runs
    stop = _eos_tensor(eos, prompt.device)
    context = getattr(getattr(model, "config", None), "context", None)
    if isinstance(context, int) and prompt.shape[1] > context:
        prompt = prompt[:, -context:]  # what a sliding window of `context` tokens sees of it
    logits, state = model(prompt)
    logits = logits[:, -1]
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for i in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, generator, top_p=top_p)
        if stop is not None:
            token = torch.where(done, stop[0], token)
            done |= torch.isin(token, stop)
        yield token
        if i + 1 == max_new_tokens or (stop is not None and bool(done.all())):
            return
        logits, state = model.step(token, state)


class GenerationMixin:
    """``model.generate(...)`` for the language models (``model(idx) -> (logits, state)`` and
    ``model.step(token, state) -> (logits, state)``)."""

    def generate(
        self,
        prompt_ids: Tensor | Sequence[int],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos: int | Sequence[int] | None = None,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: Callable[[Tensor], object] | None = None,
        stream: bool = False,
    ) -> Tensor | Iterator[Tensor]:
        """Continue ``prompt_ids`` (B, T0), or (T0,) / a list of ids for one sequence.

        Returns the prompt followed by the new tokens, (B, T0 + n) (or (T0 + n,)), with n <=
        ``max_new_tokens`` (fewer once every row has produced ``eos``; finished rows are padded
        with ``eos``). ``temperature`` 0 is greedy; ``top_k`` / ``top_p`` filter as `sample_next`
        does; ``seed`` (or a ``generator`` on the model's device) makes the draw reproducible.
        ``callback(token)`` is called with each new token (B,) (or () for one sequence) as it is
        drawn; ``stream=True`` returns an iterator of them instead (nothing runs until it is read). The model runs in eval mode
        (dropout off) and is put back in its mode afterwards.
        """
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        device = next(self.parameters()).device  # type: ignore[attr-defined]
        if isinstance(prompt_ids, Tensor):
            if prompt_ids.is_floating_point() or prompt_ids.is_complex() or prompt_ids.dtype == torch.bool:
                raise ValueError(f"prompt_ids must hold integer token ids, got a {prompt_ids.dtype} tensor")
        elif not isinstance(prompt_ids, Sequence) or not all(isinstance(i, int) and not isinstance(i, bool) for i in prompt_ids):
            raise ValueError(f"prompt_ids must be a tensor of token ids (B, T0) or (T0,), or a list of ints; got {prompt_ids!r:.60}")
        single = not isinstance(prompt_ids, Tensor) or prompt_ids.dim() == 1
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"seed must be an int or None, got {seed!r}")
            generator = torch.Generator(device=device).manual_seed(seed)
        tokens = self._generate_tokens(prompt, max_new_tokens, temperature, top_k, top_p, eos, generator, single, callback)
        if stream:
            return tokens
        out = [prompt[0] if single else prompt] + [token.unsqueeze(-1) for token in tokens]
        return torch.cat(out, dim=-1)

    def _generate_tokens(self, prompt, max_new_tokens, temperature, top_k, top_p, eos, generator, single, callback) -> Iterator[Tensor]:
        was_training = self.training  # type: ignore[attr-defined]
        self.eval()  # type: ignore[attr-defined]
        try:
            for token in generate(self, prompt, max_new_tokens, temperature, top_k, generator, top_p=top_p, eos=eos):
                token = token[0] if single else token
                if callback is not None:
                    callback(token)
                yield token
        finally:
            self.train(was_training)  # type: ignore[attr-defined]
