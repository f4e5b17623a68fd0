"""Board presets: part, clock and the engine size each board's fabric affords.

KV260 follows TeLLMe (250 MHz, full table, T=28). Q=8 there: 8 vectors x 18 bytes = 1152 bits is
exactly 9 beats of the 128-bit HP ports, 8 banks of 4096 x 144 bits take 16 of the 64 URAMs, and
672 weights per cycle (168 G/s) is beyond what DDR4 can feed in decode (~19 GB/s), so decode stays
memory bound while prefill, which reuses each weight line across tokens, gets the compute. Its
prefill block is 4 tokens: the decoder's per-token buffers of the 2B shape then still fit the
144 BRAM36 (hls/fit.py estimates them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tellme.models.errors import UserError

from .config import AcceleratorConfig, TlmmParams, apply_overrides


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    has_uram: bool
    defaults: AcceleratorConfig


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            "kv260",
            "xck26-sfvc784-2LV-c",
            True,
            AcceleratorConfig(board="kv260", part="xck26-sfvc784-2LV-c", clock_mhz=250.0, axi_width=128,
                              max_context=1024, prefill_block=4, attention_pes=4, tlmm=TlmmParams(q=8)),
        ),
        Board(
            "zcu104",
            "xczu7ev-ffvc1156-2-e",
            True,
            AcceleratorConfig(board="zcu104", part="xczu7ev-ffvc1156-2-e", clock_mhz=250.0, axi_width=128,
                              max_context=2048, tlmm=TlmmParams(q=16)),
        ),
        Board(
            "pynq-z2",
            "xc7z020clg400-1",
            False,
            AcceleratorConfig(board="pynq-z2", part="xc7z020clg400-1", clock_mhz=100.0, axi_width=64,
                              max_context=256, max_k=1024, max_n=1024, prefill_block=4, attention_pes=2,
                              tlmm=TlmmParams(q=4, weight_storage="bram", weight_buffer_depth=1024)),
        ),
    )
}


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise UserError(f"unknown board {name!r}: choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


def board_config(name: str, overrides: list[str] | None = None, **fields: object) -> AcceleratorConfig:
    """The board's preset, then `fields` (e.g. model sizes), then user overrides, checked against the
    board (no URAM on Zynq-7000)."""
    board = get_board(name)
    config = dataclasses.replace(board.defaults, **fields) if fields else board.defaults
    config = apply_overrides(config, overrides or [])
    if config.tlmm.weight_storage == "uram" and not board.has_uram:
        raise UserError(f"board {name} has no URAM: use --set tlmm.weight_storage=bram")
    return config
