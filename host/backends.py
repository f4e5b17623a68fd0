"""Where the decoder layers run. Each backend keeps its own KV cache and position; the host does the
embedding gather (inside forward), the LM head and sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder, open_model_folder

BACKENDS = ("reference",)


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


def open_backend(name: str, model_dir: Path) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    return ReferenceBackend(open_model_folder(model_dir))
