"""Where the decoder layers run. Each backend keeps its own KV cache and position; the host does the
embedding gather (inside forward), the LM head and sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder, open_model_folder

BACKENDS = ("reference", "csim")


class Backend(Protocol):
    name: str
    folder: ModelFolder
    max_context: int

    @property
    def position(self) -> int: ...

    def reset(self) -> None: ...

    def forward(self, tokens: list[int]) -> np.ndarray:
        """Run tokens at the next positions; return final-normed hidden states [n, hidden]."""
        ...

    def lm_head(self, hidden: np.ndarray) -> np.ndarray: ...


class ReferenceBackend:
    """The numpy reference model (table-lookup matmuls, float32 KV cache)."""

    name = "reference"

    def __init__(self, folder: ModelFolder, max_context: int | None = None):
        from tellme.models.reference import ReferenceModel

        self.folder = folder
        self.model = ReferenceModel(folder)
        self.max_context = max_context or folder.config.max_position_embeddings
        self.cache = self.model.new_cache(self.max_context)

    @property
    def position(self) -> int:
        return self.cache.length

    def reset(self) -> None:
        self.cache = self.model.new_cache(self.max_context)

    def forward(self, tokens: list[int]) -> np.ndarray:
        return self.model.forward(tokens, self.cache)

    def lm_head(self, hidden: np.ndarray) -> np.ndarray:
        return self.model.lm_head_logits(hidden)


class HostEnds:
    """What the host computes around the accelerator: the embedding gather and the LM head."""

    def __init__(self, folder: ModelFolder):
        self.vocab_size = folder.config.vocab_size
        self.embed_tokens = folder.tensor("embed_tokens")
        self.lm_head_weight = self.embed_tokens if folder.config.tie_word_embeddings else folder.tensor("lm_head")

    def embed(self, tokens: list[int]) -> np.ndarray:
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise UserError(f"token ids must lie in [0, {self.vocab_size})")
        return self.embed_tokens[ids]

    def lm_head(self, hidden: np.ndarray) -> np.ndarray:
        return hidden @ self.lm_head_weight.T


class CsimBackend:
    """The accelerator's C++ (tellme_top) compiled by g++: the design a board would run, on a laptop.
    Needs the `hls` extra; the library is built on first use and cached."""

    name = "csim"

    def __init__(self, folder: ModelFolder, board: str = "kv260"):
        from tellme.hls.commands import configure
        from tellme.hls.csim_decoder import DecoderSim

        self.folder = folder
        self.ends = HostEnds(folder)
        self.sim = DecoderSim.build(folder, configure(board, folder.path, []))
        self.max_context = self.sim.spec.max_context
        self.reset()

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self.k_cache, self.v_cache = self.sim.new_cache()
        self._position = 0

    def forward(self, tokens: list[int]) -> np.ndarray:
        hidden = self.sim.forward(self.ends.embed(tokens), self.k_cache, self.v_cache, self._position)
        self._position += len(tokens)
        return hidden

    def lm_head(self, hidden: np.ndarray) -> np.ndarray:
        return self.ends.lm_head(hidden)


def open_backend(name: str, model_dir: Path) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    folder = open_model_folder(model_dir)
    if name == "csim":
        return CsimBackend(folder)
    return ReferenceBackend(folder)
