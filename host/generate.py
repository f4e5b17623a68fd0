"""The generation loop: prefill the prompt in one call, then decode token by token, timing both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from tellme.models.errors import UserError

from .backends import Backend
from .sampling import Sampler


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    ttft_s: float = 0.0  # prompt in -> first new token out
    prefill_s: float = 0.0
    decode_s: float = 0.0  # every decode step after the first token

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        steps = max(self.new_tokens - 1, 0)
        return steps / self.decode_s if self.decode_s > 0 else 0.0

    def summary(self) -> str:
        return (
            f"prompt {self.prompt_tokens} tok, generated {self.new_tokens} tok | "
            f"TTFT {self.ttft_s * 1e3:.1f} ms | prefill {self.prefill_tok_s:.1f} tok/s | "
            f"decode {self.decode_tok_s:.1f} tok/s"
        )


def check_fits(backend: Backend, prompt_len: int, max_new_tokens: int) -> None:
    need = backend.position + prompt_len + max_new_tokens
    if need > backend.max_context:
        raise UserError(
            f"prompt ({prompt_len} tokens) + {max_new_tokens} new tokens need {need} positions, the "
            f"context holds {backend.max_context}: shorten the prompt or lower --max-new-tokens"
        )


def generate(
    backend: Backend,
    prompt: list[int],
    max_new_tokens: int,
    sampler: Sampler,
    stats: GenerationStats,
    eos_token_id: int | None = None,
) -> Iterator[int]:
    """Yield new token ids as they are produced; fills stats as it goes."""
    if not prompt:
        raise UserError("the prompt is empty: give at least one token")
    check_fits(backend, len(prompt), max_new_tokens)
    stats.prompt_tokens = len(prompt)
    start = time.perf_counter()
    hidden = backend.forward(prompt)
    stats.prefill_s = time.perf_counter() - start
    decode_start = None
    for i in range(max_new_tokens):
        token = sampler(backend.lm_head(hidden[-1:])[0])
        if i == 0:
            stats.ttft_s = time.perf_counter() - start
            decode_start = time.perf_counter()
        stats.new_tokens += 1
        yield token
        if token == eos_token_id or i == max_new_tokens - 1:
            break
        hidden = backend.forward([token])
    if decode_start is not None:
        stats.decode_s = time.perf_counter() - decode_start
