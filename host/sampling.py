"""Next-token choice from a logits row: greedy, or temperature with top-k and top-p (nucleus)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1.0: no nucleus cut
    seed: int | None = None

    def validate(self) -> None:
        from tellme.models.errors import UserError

        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise UserError(f"--temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise UserError(f"--top-k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"--top-p must lie in (0, 1], got {self.top_p}")
        if self.seed is not None and self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")


class Sampler:
    def __init__(self, params: SamplingParams):
        params.validate()
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray) -> int:
        p = self.params
        if p.temperature == 0.0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / p.temperature
        if p.top_k and p.top_k < scaled.size:
            # only the k candidates get sorted (a full sort of a 32k vocabulary costs ms per token);
            # ties go to the lower id, as a stable sort of the whole vocabulary would have it
            candidates = np.argpartition(-scaled, p.top_k - 1)[: p.top_k]
            order = candidates[np.lexsort((candidates, -scaled[candidates]))]
        else:
            order = np.argsort(-scaled, kind="stable")
        probs = np.exp(scaled[order] - scaled[order[0]])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self.rng.choice(len(order), p=probs)])
