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
    """What the host computes around the accelerator: the embedding gather, and the LM head when the device
    has none. With int8 tables (the device computes the int8 head) only the gathered rows are read and
    dequantised, so the host keeps no float32 copy of the embedding or the head."""

    def __init__(self, folder: ModelFolder, int8: bool = False):
        self.folder = folder
        self.vocab_size = folder.config.vocab_size
        self.int8 = int8
        if not int8:
            self.embed_tokens = folder.tensor("embed_tokens")
            self.lm_head_weight = self.embed_tokens if folder.config.tie_word_embeddings else folder.tensor("lm_head")

    def embed(self, tokens: list[int]) -> np.ndarray:
        if not self.int8:
            return gather_embeddings(self.embed_tokens, tokens)
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise UserError(f"token ids must lie in [0, {self.vocab_size})")
        q, divisor = self.folder.int8_rows("embed_tokens", ids)
        return q.astype(np.float32) / divisor.reshape(-1, 1)

    def lm_head(self, hidden: np.ndarray) -> np.ndarray:
        if self.int8:
            raise RuntimeError("the int8 LM head runs on the device")
        return hidden @ self.lm_head_weight.T


class Backend:
    """A device with its host ends and KV-cache position: step() runs tokens at the next positions and gives
    the last one's logits, wherever the LM head runs."""

    def __init__(self, folder: ModelFolder, device: Device, ends: HostEnds | None = None):
        self.folder = folder
        self.device = device
        self.returns_logits = bool(getattr(device, "returns_logits", False))
        self.ends = ends or HostEnds(folder, int8=self.returns_logits)
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
        """Embeddings [n, hidden] at the next n positions -> what the device returns (hidden states, or the
        last token's logits)."""
        out = self.device.run(hidden, self._position)
        self._position += len(hidden)
        return out

    def head(self, out: np.ndarray) -> np.ndarray:
        """The last token's logits from what run() returned (the host's LM head when the device has none)."""
        return out if self.returns_logits else self.ends.lm_head(out[-1])

    def step(self, tokens: list[int]) -> np.ndarray:
        """Run tokens at the next positions; the last one's logits [vocab]."""
        return self.head(self.run(self.embed(tokens)))

    def all_logits(self, tokens: list[int]) -> np.ndarray:
        """Logits [n, vocab] of every position (a device with its own head runs one token per call)."""
        if self.returns_logits:
            return np.stack([self.step([t]) for t in tokens])
        return self.ends.lm_head(self.run(self.embed(tokens)))

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
