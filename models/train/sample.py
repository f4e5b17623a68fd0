"""Text generation with the Keras model (no KV cache: each step re-runs the window; for checks only)."""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from .model import BitNetLM


def generate(
    model: BitNetLM,
    tokenizer: Tokenizer,
    prompt: str,
    new_tokens: int = 48,
    temperature: float = 0.0,
    seed: int = 0,
) -> str:
    """The prompt's continuation: greedy at temperature 0, else softmax sampling at that temperature."""
    rng = np.random.default_rng(seed)
    ids = tokenizer.encode(prompt).ids
    context = model.model_shape.max_position_embeddings
    for _ in range(new_tokens):
        window = np.asarray([ids[-context:]], dtype=np.int32)
        logits = np.asarray(model(window))[0, -1].astype(np.float64)
        if temperature <= 0:
            ids.append(int(np.argmax(logits)))
        else:
            probs = np.exp((logits - logits.max()) / temperature)
            ids.append(int(rng.choice(len(probs), p=probs / probs.sum())))
    return tokenizer.decode(ids[len(tokenizer.encode(prompt).ids) :])
