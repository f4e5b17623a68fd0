#!/usr/bin/env python3
"""C-simulation throughput of the TLMM kernel against the numpy references, on the layer shapes of
BitNet b1.58 0.73B: K=1536 -> N=4096 (gate/up_proj) and K=4096 -> N=1536 (down_proj), one token.

Prints a table and writes JSON (default bench/tlmm.json). Every C-sim output is also checked
bit-exact against numpy. "PL model" is the cycle count of the generated design at its clock (tile
loads over one m_axi port, then the lookup loop), for scale only. `--quick` runs small shapes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tellme.hls import toolchain
from tellme.hls.boards import board_config
from tellme.hls.csim import TlmmSim
from tellme.hls.design import tlmm_reference
from tellme.models.ddr_image import tlmm_lines
from tellme.models.packing import pack_tlmm
from tellme.models.quant import act_quant
from tellme.models.tlmm import TlmmWeights, naive_matmul

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import best_of, machine, save_json  # noqa: E402

SHAPES = [(1536, 4096), (4096, 1536)]  # (K in_features, N out_features)
QUICK_SHAPES = [(300, 200), (200, 300)]


def bench_shape(sim: TlmmSim, k: int, n: int, repeat: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    xq, s_x = act_quant(rng.standard_normal((1, k)).astype(np.float32))
    s_w = np.float32(1.7)
    packed = pack_tlmm(w)
    lines = tlmm_lines(packed, k, sim.config.layout)
    weights = TlmmWeights(packed, k)

    _, y_ref = tlmm_reference(packed, k, xq, s_x, s_w)
    y_sim = sim.run_lines(lines, k, xq, s_x, s_w)
    if not np.array_equal(y_sim.view(np.uint32), y_ref.view(np.uint32)):
        raise SystemExit(f"C-sim differs from numpy on K={k} N={n}")

    times = {
        "csim": best_of(lambda: sim.run_lines(lines, k, xq, s_x, s_w), repeat),
        "numpy_tlmm": best_of(lambda: weights.matmul(xq), repeat),
        "numpy_naive": best_of(lambda: naive_matmul(xq, w), repeat),
    }
    # what the generated design would spend at its clock: one AXI word per cycle while a tile loads,
    # then one line per cycle while it is looked up (tiles do not overlap yet)
    lookup = n * sim.config.cycles(k)
    load = lookup * sim.config.line_words
    return {
        "k": k,
        "n": n,
        "seconds": times,
        "mweights_per_s": {name: k * n / t / 1e6 for name, t in times.items()},
        "csim_vs_numpy_tlmm": times["csim"] / times["numpy_tlmm"],
        "pl_model": {
            "lookup_cycles": lookup,
            "load_cycles": load,
            "ms": (lookup + load) / (sim.config.clock_mhz * 1e3),
        },
        "bit_exact": True,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/tlmm.json", help="JSON output (default bench/tlmm.json)")
    parser.add_argument("--board", default="kv260")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best is kept)")
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    args = parser.parse_args(argv)

    shapes = QUICK_SHAPES if args.quick else SHAPES
    config = board_config(args.board, args.set, max_k=max(k for k, _ in shapes), max_n=max(n for _, n in shapes))
    sim = TlmmSim.build(config)
    results = [bench_shape(sim, k, n, args.repeat) for k, n in shapes]

    print(f"TLMM, one token, {args.board} config (Q={config.tlmm.q}, T={config.tlmm.t}, "
          f"{config.tlmm.table} table); best of {args.repeat} runs")
    print(f"{'K x N':>12} {'C-sim ms':>10} {'numpy TLMM ms':>14} {'numpy naive ms':>15} "
          f"{'C-sim/TLMM':>11} {'PL model ms':>12}")
    for r in results:
        s = r["seconds"]
        print(f"{r['k']:>5} x {r['n']:<5} {s['csim'] * 1e3:>10.2f} {s['numpy_tlmm'] * 1e3:>14.2f} "
              f"{s['numpy_naive'] * 1e3:>15.2f} {r['csim_vs_numpy_tlmm']:>10.2f}x {r['pl_model']['ms']:>12.3f}")

    report = {
        "what": "TLMM C-simulation vs numpy, one token per matmul; shapes are K (in) x N (out)",
        "config": config.to_dict(),
        "repeat": args.repeat,
        "machine": {**machine(), "compiler": toolchain.compiler_version(toolchain.compiler())},
        "results": results,
    }
    save_json(Path(args.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
