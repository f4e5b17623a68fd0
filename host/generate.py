"""The generation loop: prefill the prompt in one device call, then decode token by token, timing every
part so the host's share per token (LM head, sampling, the rest) is visible next to the device's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from tellme.models.errors import UserError

from .backends import Backend
from .sampling import Sampler


class ContextFull(UserError):
    """The KV cache has no room for the next tokens."""


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    ttft_s: float = 0.0  # prompt in -> first new token out
    prefill_s: float = 0.0
    decode_s: float = 0.0  # first new token -> last new token (new_tokens - 1 steps)
    # the decode steps' time, split; what is left of decode_s (embedding, detokenising, the caller's
    # handling of each token) is the host's bookkeeping
    device_s: float = 0.0
    lm_head_s: float = 0.0
    sample_s: float = 0.0
    context_full: bool = False  # generation stopped because the KV cache was full

    @property
    def decode_steps(self) -> int:
        return max(self.new_tokens - 1, 0)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_steps / self.decode_s if self.decode_s > 0 else 0.0

    def per_token_ms(self) -> dict[str, float]:
        """Milliseconds per decode step: device, LM head, sampling, other host work, and host in total."""
        steps = self.decode_steps
        if not steps:
            return {"device": 0.0, "lm_head": 0.0, "sampling": 0.0, "other": 0.0, "host": 0.0}
        other = max(self.decode_s - self.device_s - self.lm_head_s - self.sample_s, 0.0)
        ms = {"device": self.device_s, "lm_head": self.lm_head_s, "sampling": self.sample_s, "other": other}
        ms = {k: v * 1e3 / steps for k, v in ms.items()}
        ms["host"] = ms["lm_head"] + ms["sampling"] + ms["other"]
        return ms

    def summary(self) -> str:
        ms = self.per_token_ms()
        return (
            f"prompt {self.prompt_tokens} tok, generated {self.new_tokens} tok | "
            f"TTFT {self.ttft_s * 1e3:.1f} ms | prefill {self.prefill_tok_s:.1f} tok/s | "
            f"decode {self.decode_tok_s:.1f} tok/s | ms/token: device {ms['device']:.2f}, host {ms['host']:.2f} "
            f"(LM head {ms['lm_head']:.2f}, sampling {ms['sampling']:.2f}, other {ms['other']:.2f})"
            + (" | context full" if self.context_full else "")
        )


def check_fits(backend: Backend, prompt_len: int, max_new_tokens: int) -> None:
    """The last new token is sampled but never run, so it needs no position."""
    need = backend.position + prompt_len + max_new_tokens - 1
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
    fill_context: bool = False,
) -> Iterator[int]:
    """Yield new token ids as they are produced; fills stats as it goes. By default the prompt and every
    new token must fit the context up front; fill_context (chat) instead stops when the cache is full."""
    if not prompt:
        raise UserError("the prompt is empty: give at least one token")
    if not fill_context:
        check_fits(backend, len(prompt), max_new_tokens)
    elif backend.position + len(prompt) > backend.max_context:
        raise ContextFull(
            f"the context is full ({backend.position} of {backend.max_context} positions used, "
            f"{len(prompt)} more needed): reset the conversation"
        )
    clock = time.perf_counter
    stats.prompt_tokens = len(prompt)
    start = clock()
    out = backend.run(backend.embed(prompt))
    stats.prefill_s = clock() - start
    first = last = None
    try:
        for i in range(max_new_tokens):
            t0 = clock()
            logits = backend.head(out)
            t1 = clock()
            token = sampler(logits)
            last = clock()
            if first is None:
                first = last
                stats.ttft_s = last - start
            else:
                stats.lm_head_s += t1 - t0
                stats.sample_s += last - t1
            stats.new_tokens += 1
            yield token
            if token == eos_token_id or i == max_new_tokens - 1:
                break
            if backend.position >= backend.max_context:
                stats.context_full = True
                break
            embedded = backend.embed([token])
            t0 = clock()
            out = backend.run(embedded)
            stats.device_s += clock() - t0
    finally:
        if first is not None:
            stats.decode_s = last - first
