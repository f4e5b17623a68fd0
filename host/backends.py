"""A backend is a Device plus what the host computes around it: the embedding gather before, the LM head
after, and the position in the KV cache. The generation loop and the CLI talk to this, whatever runs
the layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder, open_model_folder
from tellme.models.reference import gather_embeddings

from .device import DEVICES, Device, open_device

BACKENDS = DEVICES


class HostEnds:
    """What the host computes around the accelerator: the embedding gather and the LM head."""

    def __init__(self, folder: ModelFolder):
        self.vocab_size = folder.config.vocab_size
        self.embed_tokens = folder.tensor("embed_tokens")
        self.lm_head_weight = self.embed_tokens if folder.config.tie_word_embeddings else folder.tensor("lm_head")

    def embed(self, tokens: list[int]) -> np.ndarray:
        return gather_embeddings(self.embed_tokens, tokens)

    def lm_head(self, hidden: np.ndarray) -> np.ndarray:
        return hidden @ self.lm_head_weight.T


class Backend:
    """A device with its host ends and KV-cache position; forward() runs tokens at the next positions."""

    def __init__(self, folder: ModelFolder, device: Device, ends: HostEnds | None = None):
        self.folder = folder
        self.device = device
        self.ends = ends or HostEnds(folder)
        self.name = device.name
        self.max_context = device.max_context
        self._position = 0

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        """Start a new sequence: the device overwrites every position before it reads it."""
        self._position = 0

    def embed(self, tokens: list[int]) -> np.ndarray:
        return self.ends.embed(tokens)

    def run(self, hidden: np.ndarray) -> np.ndarray:
        """Embeddings [n, hidden] at the next n positions -> final-normed hidden states [n, hidden]."""
        out = self.device.run(hidden, self._position)
        self._position += len(hidden)
        return out

    def forward(self, tokens: list[int]) -> np.ndarray:
        return self.run(self.embed(tokens))

    def lm_head(self, hidden: np.ndarray) -> np.ndarray:
        return self.ends.lm_head(hidden)

    def close(self) -> None:
        self.device.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(name: str, model_dir: Path | ModelFolder, bitstream: Path | str | None = None,
                 board: str | None = None, **device_options) -> Backend:
    """The model folder (a path, or one already opened) on the named device. A design folder (--bitstream)
    is checked against the model; the board needs it built, csim simulates its parameters even from a dry
    run."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    folder = model_dir if isinstance(model_dir, ModelFolder) else open_model_folder(model_dir)
    design = None
    if bitstream is not None:
        from .design_manifest import open_design

        design = open_design(bitstream, folder, board, built=name == "pynq")
    device = open_device(name, folder, design, board or (design.board if design else "kv260"), **device_options)
    return Backend(folder, device)
