#!/usr/bin/env python3
"""Time to first token on the C simulation: a 64- and a 128-token prompt as one prefill call against n decode
calls over the same tokens, beside the board's modelled TTFT.

The C simulation is the accelerator's C++ compiled by g++, run on one core of this machine (measured wall
time, best of `--repeat`); each run starts from an empty K/V cache, embeds the prompt on the host (HostEnds,
int8 rows when the LM head is on the PL) and ends with the first token (argmax of the last logits). The
ratio says how much work a prefill saves (each weight tile read once a block of tokens), not how fast a board
is. The board's TTFT is modelled (design.speed().ttft_s, hls/perf.py v2), never measured here.

    python scripts/bench_prefill.py [--model DIR] [--board kv260] [--repeat 3] [--out bench/prefill.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import best_of, machine, save_json  # noqa: E402

from tellme.hls.csim import DecoderSim  # noqa: E402
from tellme.hls.design import Design  # noqa: E402
from tellme.host.backends import HostEnds  # noqa: E402
from tellme.models.default_model import resolve_model_dir  # noqa: E402

PROMPTS = (64, 128)


def first_token(sim: DecoderSim, ends: HostEnds, out: np.ndarray) -> int:
    logits = out if sim.design.config.head_on_pl else ends.lm_head(out[-1:])
    return int(np.argmax(np.asarray(logits).reshape(-1)))


def prefill(sim: DecoderSim, ends: HostEnds, tokens: list[int]) -> int:
    """The prompt as one forward() call; returns the first token."""
    return first_token(sim, ends, sim.forward(ends.embed(tokens), sim.new_cache(), 0))


def decode_loop(sim: DecoderSim, ends: HostEnds, tokens: list[int]) -> int:
    """The prompt one token a call; returns the first token."""
    kv = sim.new_cache()
    for pos, token in enumerate(tokens):
        out = sim.forward(ends.embed([token]), kv, pos)
    return first_token(sim, ends, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--board", default="kv260")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best is kept)")
    parser.add_argument("--out", type=Path, default=Path("bench/prefill.json"), help="JSON output")
    args = parser.parse_args(argv)

    design = Design.for_model(resolve_model_dir(args.model), args.board, args.set)
    cfg, speed = design.config, design.speed()
    sim = design.csim()
    ends = HostEnds(design.folder, int8=cfg.head_on_pl)
    rng = np.random.default_rng(0)
    prefill(sim, ends, [3])  # loads the weights once, outside the timings

    print(f"TTFT of {design.name} on {cfg.board} (prefill block {cfg.prefill_block}, {cfg.tlmm.token_lanes} token "
          f"lane(s), LM head {cfg.lm_head}, context {design.context}): C simulation on one core, measured, best of "
          f"{args.repeat}; board modelled ({speed.model})")
    print(f"{'prompt':>6} {'prefill call s':>14} {'n decode calls s':>16} {'ratio':>6} {'same token':>10} "
          f"{'board TTFT s (modelled)':>24}")
    prompts = {}
    for n in PROMPTS:
        if n > design.context:
            print(f"{n:>6} skipped: beyond the design's context of {design.context}")
            continue
        tokens = rng.integers(3, design.model.vocab_size, n).tolist()
        same = prefill(sim, ends, tokens) == decode_loop(sim, ends, tokens)
        t_prefill = best_of(lambda tokens=tokens: prefill(sim, ends, tokens), args.repeat)
        t_loop = best_of(lambda tokens=tokens: decode_loop(sim, ends, tokens), args.repeat)
        board = speed.ttft_s.get(str(n))
        prompts[str(n)] = {"csim_prefill_s": round(t_prefill, 4), "csim_decode_loop_s": round(t_loop, 4),
                           "prefill_over_decode_loop": round(t_prefill / t_loop, 3), "same_first_token": same,
                           "board_ttft_s_modelled": board}
        print(f"{n:>6} {t_prefill:>14.3f} {t_loop:>16.3f} {t_prefill / t_loop:>6.2f} {'yes' if same else 'NO':>10} "
              f"{board if board is not None else '-':>24}")

    save_json(args.out, {
        "what": "TTFT: C-sim prefill call vs n decode calls (measured, one core); board TTFT modelled",
        "machine": machine(), "model": design.name, "board": cfg.board, "overrides": list(args.set),
        "prefill_block": cfg.prefill_block, "token_lanes": cfg.tlmm.token_lanes, "context": design.context,
        "repeat": args.repeat, "board_model": speed.model, "prompts": prompts,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
