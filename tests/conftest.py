"""Shared fixtures: tiny random checkpoints of every flavour, converted once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from tellme.models.convert import convert_checkpoint  # noqa: E402
from tellme.models.synthetic import FLAVOURS, TINY, as_transformers_bitnet, write_random_checkpoint  # noqa: E402


class TinyModel:
    def __init__(self, root: Path, flavour: str):
        self.flavour = flavour
        self.checkpoint = write_random_checkpoint(root / "hf", flavour, TINY, seed=7)
        # transformers has no llama-typed BitNet: its oracle reads the same weights renamed
        self.oracle_checkpoint = (
            as_transformers_bitnet(self.checkpoint, root / "oracle") if flavour == "llama" else self.checkpoint
        )
        self.model_dir = root / "model"
        convert_checkpoint(self.checkpoint, self.model_dir, quiet=True)


@pytest.fixture(scope="session", params=sorted(FLAVOURS))
def tiny_model(request, tmp_path_factory) -> TinyModel:
    return TinyModel(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="session")
def bitlinear_model(tmp_path_factory) -> TinyModel:
    return TinyModel(tmp_path_factory.mktemp("bitlinear-single"), "bitlinear")
