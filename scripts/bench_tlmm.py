#!/usr/bin/env python3
"""One ternary matrix on the TLMM engine (hls/kernels/tlmm.h) in C simulation against numpy, on the layer shapes
of BitNet b1.58 0.73B: K=1536 -> N=4096 (gate/up-like) and K=4096 -> N=1536 (down-like), for one token and a
block of `--block` tokens.

Random ternary weights are laid out in the design's stripes (tellme.models.ddr_image) and run through
DecoderSim.matrix with unit scales, so its outputs are the integer sums: they must equal numpy's TLMM
(tellme.models.tlmm.TlmmWeights) exactly. Measured on this machine (best of `--repeat`): the C-sim call (it
includes the bridge's copy of the stripes into its streams), numpy's TLMM and numpy's plain int32 matmul.
Modelled, not measured (hls/perf.py v2): the matrix's PL cycles as perf.Model.matrix walks the code: per tile
and token group, row-steps x max(wpr, P x TP) + P x TP (the tlmm_rows loop) plus the tables' builds and the
loops' depths (engine), the prefetcher's stream of the stripes (fetch), and the two overlapped through the
stripe FIFOs (perf.Model.cycles, less its block overhead), at the board clock. `--quick`: small shapes.

    python scripts/bench_tlmm.py [--board kv260] [--block 8] [--quick] [--out bench/tlmm.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import best_of, machine, save_json  # noqa: E402

from tellme.hls import perf, toolchain  # noqa: E402
from tellme.hls.csim import DecoderSim  # noqa: E402
from tellme.hls.design import Design  # noqa: E402
from tellme.models.config import ModelConfig, named_shape  # noqa: E402
from tellme.models.ddr_image import ternary_stripes  # noqa: E402
from tellme.models.packing import pack_tlmm  # noqa: E402
from tellme.models.tlmm import TlmmWeights, naive_matmul  # noqa: E402

SHAPES = [(1536, 4096), (4096, 1536)]  # (K in_features, N out_features)
# --quick: the bundled model's MLP shapes, on a one-layer design of that width
QUICK_SHAPES = [(256, 688), (688, 256)]
QUICK_MODEL = ModelConfig(vocab_size=256, hidden_size=256, intermediate_size=688, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def modelled(design: Design, rows: int, wpr: int, b: int) -> dict:
    """The matrix's PL cycles as hls/perf.py counts them (modelled, not measured)."""
    model = perf.Model(design)
    s = perf.Schedule()
    model.matrix(s, rows, wpr, b)
    engine = sum(p.engine for p in s.pieces)
    fetch = sum(p.fetch for p in s.pieces)
    cycles = model.cycles(s) - perf.BLOCK_OVERHEAD_CYCLES
    per_us = design.config.clock_mhz
    return {"modelled": True, "model": perf.MODEL_VERSION, "clock_mhz": design.config.clock_mhz,
            "tlmm_rows_iterations": s.counts.get("tlmm_rows", 0), "engine_cycles": round(engine),
            "fetch_cycles": round(fetch), "cycles": round(cycles), "us": round(cycles / per_us, 2),
            "bound": "stream" if fetch > engine else "engine"}


def bench(sim: DecoderSim, k: int, n: int, b: int, repeat: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    xq = rng.integers(-128, 128, (b, k)).astype(np.int8)
    ones = np.ones(b, dtype=np.float32)
    weights = TlmmWeights(pack_tlmm(w), k)
    stripes, rows, wpr = ternary_stripes(w, sim.design.config.weight_ports)

    want = weights.matmul(xq)
    got = sim.matrix(stripes, rows, wpr, xq, ones)[:, :n]
    if np.abs(want).max(initial=0) >= 2**24 or not np.array_equal(got, want.astype(np.float32)):
        raise SystemExit(f"C-sim differs from numpy's TLMM on K={k} N={n} b={b}")
    if not np.array_equal(want, naive_matmul(xq, w)):
        raise SystemExit(f"numpy's TLMM differs from the int32 matmul on K={k} N={n} b={b}")
    seconds = {"csim": best_of(lambda: sim.matrix(stripes, rows, wpr, xq, ones), repeat),
               "numpy_tlmm": best_of(lambda: weights.matmul(xq), repeat),
               "numpy_int32": best_of(lambda: naive_matmul(xq, w), repeat)}
    return {"k": k, "n": n, "tokens": b, "rows_per_stripe": rows, "wpr": wpr, "bit_exact": True,
            "seconds": {name: round(t, 6) for name, t in seconds.items()},
            "mweights_per_s": {name: round(k * n * b / t / 1e6, 2) for name, t in seconds.items()},
            "pl": modelled(sim.design, rows, wpr, b)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", default="kv260")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--block", type=int, default=8, help="tokens of the block (the design's prefill_block "
                        "is raised to it when smaller)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best is kept)")
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    parser.add_argument("--out", type=Path, default=Path("bench/tlmm.json"), help="JSON output")
    args = parser.parse_args(argv)

    shape, name = (QUICK_MODEL, "quick") if args.quick else (named_shape("bitnet-0.73b"), "bitnet-0.73b")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    overrides = list(args.set)
    if not any(o.startswith("prefill_block=") for o in overrides):
        if Design.for_shape(shape, args.board, overrides, name=name).config.prefill_block < args.block:
            overrides.append(f"prefill_block={args.block}")
    design = Design.for_shape(shape, args.board, overrides, name=name)
    cfg = design.config
    block = min(args.block, cfg.prefill_block)
    sim = DecoderSim.build(design, fast=True)
    results = [bench(sim, k, n, b, args.repeat) for k, n in shapes for b in sorted({1, block})]

    print(f"TLMM engine, one matrix: C simulation (one core) vs numpy, measured, best of {args.repeat}; PL time "
          f"modelled ({perf.MODEL_VERSION})")
    print(f"design {name} on {cfg.board}: P={cfg.weight_ports} weight ports, TP={cfg.tlmm.token_lanes} token "
          f"lane(s), prefill block {cfg.prefill_block}, tile {cfg.tlmm.tile_words} words, {cfg.tlmm.table} table, "
          f"{cfg.clock_mhz:g} MHz; overrides {overrides or 'none'}")
    print(f"{'K -> N':>12} {'tok':>3} {'exact':>5} {'C-sim ms':>9} {'np TLMM ms':>10} {'np int32 ms':>11} "
          f"{'C-sim/TLMM':>10} {'row iters':>9} {'engine cyc':>10} {'fetch cyc':>10} {'PL us (mod.)':>12}")
    for r in results:
        s, pl = r["seconds"], r["pl"]
        print(f"{r['k']:>5} -> {r['n']:<5} {r['tokens']:>3} {'yes' if r['bit_exact'] else 'NO':>5} "
              f"{s['csim'] * 1e3:>9.2f} {s['numpy_tlmm'] * 1e3:>10.2f} {s['numpy_int32'] * 1e3:>11.2f} "
              f"{s['csim'] / s['numpy_tlmm']:>9.2f}x {pl['tlmm_rows_iterations']:>9,} {pl['engine_cycles']:>10,} "
              f"{pl['fetch_cycles']:>10,} {pl['us']:>12.1f}")
    print("  PL us: engine and stripe stream overlapped through the FIFOs (modelled, not measured)")

    save_json(args.out, {
        "what": "one matrix on the TLMM engine: C simulation vs numpy (measured), PL cycles (modelled)",
        "design": {"name": name, "board": cfg.board, "overrides": overrides, "config": cfg.to_dict()},
        "repeat": args.repeat,
        "machine": {**machine(), "compiler": toolchain.compiler_version(toolchain.compiler())},
        "results": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
