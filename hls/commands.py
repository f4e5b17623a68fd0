"""`tellme hls`: a converted model + a board preset (+ overrides) -> a self-contained HLS project."""

from __future__ import annotations

import argparse
from pathlib import Path

from tellme.models.default_model import resolve_model_dir
from tellme.models.errors import UserError

from .boards import board_config, get_board
from .config import AcceleratorConfig
from .decoder_design import load_spec, make_decoder_golden
from .golden import make_golden
from .model_layer import read_layer, read_sizes
from .project import write_project

GOLDEN_LAYER = 0
GOLDEN_PROJ = "gate_proj"
GOLDEN_TOKENS = 2


def configure(board: str, model_dir: Path, overrides: list[str]) -> AcceleratorConfig:
    """Board preset sized for the model (largest layer), then the user's overrides, which must still fit."""
    sizes = read_sizes(model_dir)
    config = board_config(board, overrides, max_k=sizes.max_k, max_n=sizes.max_n)
    if config.max_k < sizes.max_k or config.max_n < sizes.max_n:
        raise UserError(
            f"max_k={config.max_k}, max_n={config.max_n} are too small for the model's layers "
            f"(need {sizes.max_k}, {sizes.max_n}): drop those --set overrides"
        )
    return config


def hls_command(args: argparse.Namespace) -> int:
    get_board(args.board)  # an unknown board is reported before anything else
    model_dir = resolve_model_dir(args.model)
    config = configure(args.board, model_dir, list(args.set))
    layer = read_layer(model_dir, GOLDEN_LAYER, GOLDEN_PROJ)
    golden = make_golden(
        layer.packed, layer.k, layer.scale, config,
        source=f"{layer.name} of {model_dir.resolve().name} (K={layer.k}, N={layer.n}), random activations",
        tokens=GOLDEN_TOKENS,
    )
    folder, spec = load_spec(model_dir, config)
    decoder_golden = make_decoder_golden(folder, spec, config)
    out = write_project(Path(args.out), config, golden, spec, decoder_golden, force=args.force,
                        inputs=(model_dir,))
    print(
        f"wrote {out}: top {config.top} for {config.board} ({config.part}, {config.clock_mhz:g} MHz), "
        f"{spec.config.num_hidden_layers} layers, context {spec.max_context}; testbenches: decoder on "
        f"{decoder_golden.n} tokens, TLMM on {layer.name} K={layer.k} N={layer.n}"
    )
    return 0
