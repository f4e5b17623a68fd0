"""The accelerator boundary: a Device runs the decoder stack (every layer and the final norm, and with
the design's LM head on the PL the int8 head too); the host around it gathers embeddings, applies the
LM head when the device does not, and samples.

Building a device uploads the static buffers once and allocates its KV cache; `run(hidden_in, pos)`
feeds n embeddings at positions [pos, pos + n) and returns the final hidden states [n, hidden], or,
when `returns_logits`, the last token's logits [vocab]. Positions past `pos + n` are never read
(attention is causal), so rewinding to position 0 needs no clearing. Three implementations share this
contract: the numpy reference, the C-simulated top (csim) and the board (pynq, in pynq_device.py).
Only the board one imports pynq; csim, and the reference when it predicts a design, import the generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder

if TYPE_CHECKING:
    from .design_manifest import DesignManifest

DEVICES = ("reference", "csim", "pynq")
KV_DTYPES = {"float16": np.float16, "float32": np.float32}


class Device(Protocol):
    name: str
    max_context: int
    returns_logits: bool  # run() returns the last token's logits, not hidden states

    def run(self, hidden_in: np.ndarray, pos: int) -> np.ndarray:
        """hidden_in float32 [n, hidden] at positions [pos, pos + n) -> final hidden states [n, hidden], or
        the last token's logits [vocab] when returns_logits."""
        ...

    def close(self) -> None:
        """Release what the device holds (board buffers); idempotent."""
        ...


def check_range(n: int, pos: int, max_context: int) -> None:
    """The range check every device does before touching its cache (the top refuses it too)."""
    if n < 1:
        raise UserError("nothing to run: give at least one token")
    if pos < 0 or pos + n > max_context:
        raise UserError(f"positions {pos}..{pos + n - 1} exceed the context of {max_context}: "
                        "shorten the prompt or lower --max-new-tokens")


class ReferenceDevice:
    """The numpy reference model. With kv_cache="float16" (the default) it predicts a design bit for bit:
    the design's arithmetic (tellme.models.numerics), its fp16 KV cache and its LM head (the board's
    preset unless a design folder is given). kv_cache="float32" gives transformers' numerics: float32 KV
    cache, float32 embedding and LM head, numpy's softmax and sums."""

    name = "reference"

    def __init__(self, folder: ModelFolder, design: DesignManifest | None = None, board: str = "kv260",
                 kv_cache: str = "float16"):
        from tellme.models.reference import ReferenceModel

        if kv_cache not in KV_DTYPES:
            raise UserError(f"unknown KV cache type {kv_cache!r}: use one of {', '.join(KV_DTYPES)}")
        if kv_cache == "float16":
            predicted = design_for(folder, design, board)
            self.model = predicted.reference()
            self.max_context = predicted.context
        else:
            self.model = ReferenceModel(folder)
            self.max_context = design.max_context if design else folder.config.max_position_embeddings
        self.returns_logits = self.model.head.startswith("int8")
        self.cache = self.model.new_cache(self.max_context)

    def run(self, hidden_in: np.ndarray, pos: int) -> np.ndarray:
        check_range(len(hidden_in), pos, self.max_context)
        self.cache.length = pos
        hidden = self.model.forward_hidden(np.asarray(hidden_in, dtype=np.float32), self.cache)
        return self.model.lm_head_logits(hidden[-1:])[0] if self.returns_logits else hidden

    def close(self) -> None:
        pass


def design_for(folder: ModelFolder, design: DesignManifest | None, board: str):
    """The generator's Design for a design folder's parameters, or for the board's preset."""
    from tellme.hls.config import AcceleratorConfig
    from tellme.hls.design import Design

    config = AcceleratorConfig.from_dict(design.accelerator) if design is not None else None
    return Design.for_model(folder, board, config=config)


class CsimDevice:
    """The accelerator's C++ (tellme_top) compiled by g++ against the same DDR image and fp16 KV cache the
    board gets. With a design, it simulates exactly that design's parameters; needs the `hls` extra."""

    name = "csim"

    def __init__(self, folder: ModelFolder, board: str = "kv260", design: DesignManifest | None = None):
        self.sim = design_for(folder, design, board).csim()
        self.max_context = self.sim.max_context
        self.returns_logits = self.sim.design.config.head_on_pl
        self.kv = self.sim.new_cache()

    def run(self, hidden_in: np.ndarray, pos: int) -> np.ndarray:
        check_range(len(hidden_in), pos, self.max_context)
        return self.sim.forward(hidden_in, self.kv, pos)

    def close(self) -> None:
        pass


def open_device(name: str, folder: ModelFolder, design: DesignManifest | None = None, board: str = "kv260",
                kv_cache: str = "float16", **options) -> Device:
    """The device called `name`; pynq needs a design (--bitstream), csim may simulate one."""
    if name not in DEVICES:
        raise UserError(f"unknown backend {name!r}: use one of {', '.join(DEVICES)}")
    if name != "reference" and kv_cache != "float16":
        raise UserError(f"--kv-cache {kv_cache} is for the reference backend: the accelerator ({name}) stores fp16")
    if name == "pynq":
        if design is None:
            raise UserError("the pynq backend needs --bitstream bitstreams/<board>/<design>/")
        from .pynq_device import PynqDevice

        return PynqDevice(folder, design, **options)
    if name == "csim":
        return CsimDevice(folder, board, design)
    return ReferenceDevice(folder, design, board, kv_cache)
