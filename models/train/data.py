"""Corpus handling: a byte-level BPE tokenizer, token arrays, random training windows."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

DOC_TOKEN = "<|endoftext|>"
SAMPLE_PROMPT = "And it came to pass"  # the prompt of the samples in run summaries and the model card


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style) with one special token that is both BOS and EOS (id 0)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[DOC_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def split_documents(text: str) -> list[str]:
    """Documents of a corpus file: blocks separated by a blank line, each kept with a final newline."""
    return [block.strip("\n") + "\n" for block in text.split("\n\n") if block.strip()]


def encode_documents(tokenizer: Tokenizer, documents: list[str]) -> np.ndarray:
    """One flat uint16 token array: each document preceded by the BOS/EOS token."""
    doc_id = tokenizer.token_to_id(DOC_TOKEN)
    pieces: list[list[int]] = []
    for encoding in tokenizer.encode_batch(documents):
        pieces.append([doc_id, *encoding.ids])
    return np.fromiter((t for piece in pieces for t in piece), dtype=np.uint16)


def load_split(tokenizer: Tokenizer, path: Path) -> np.ndarray:
    """Tokens of one corpus file (train.txt or val.txt)."""
    return encode_documents(tokenizer, split_documents(path.read_text(encoding="utf-8")))


class WindowSampler:
    """Random (input, target) windows of a fixed length from a token array, reproducible by seed."""

    def __init__(self, tokens: np.ndarray, length: int, seed: int = 0) -> None:
        if len(tokens) < length + 2:
            raise ValueError(f"corpus has {len(tokens)} tokens; need more than {length + 1}")
        self.tokens, self.length = tokens.astype(np.int32), length
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and next-token targets, both int32 [size, length]."""
        starts = self.rng.integers(0, len(self.tokens) - self.length - 1, size)
        rows = np.stack([self.tokens[s : s + self.length + 1] for s in starts])
        return rows[:, :-1], rows[:, 1:]


def eval_windows(tokens: np.ndarray, length: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` consecutive non-overlapping windows (inputs, targets) for a fixed validation score."""
    count = min(limit, (len(tokens) - 1) // length)
    if count < 1:
        raise ValueError(f"validation split has {len(tokens)} tokens; need more than {length}")
    span = tokens[: count * length + 1].astype(np.int32)
    inputs = span[:-1].reshape(count, length)
    targets = span[1:].reshape(count, length)
    return inputs, targets
