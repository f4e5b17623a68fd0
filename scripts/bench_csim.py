#!/usr/bin/env python3
"""Decode and prefill throughput of the bundled model on the C simulation (the accelerator's C++, compiled by
g++, on one core of this machine: the C simulation is single-threaded).

Decode is a real greedy loop from position 0: each token is embedded on the host (HostEnds, int8 rows when
the design's LM head is on the PL, as the csim backend does), run by one forward() call, and the next token
is the argmax of the logits it returns. After a warm-up, `--tokens` such steps are timed (best of
`--repeat`); prefill is one forward() call of a `--prompt`-token prompt (best of `--repeat`). These are
measured wall times of the simulation, not of a board.

    python scripts/bench_csim.py [--board kv260] [--tokens 128] [--out bench/csim.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import best_of, machine, save_json  # noqa: E402

from tellme.hls import toolchain  # noqa: E402
from tellme.hls.csim import DecoderSim  # noqa: E402
from tellme.hls.design import Design  # noqa: E402
from tellme.host.backends import HostEnds  # noqa: E402
from tellme.models.default_model import resolve_model_dir  # noqa: E402

GOAL_TOK_S = 50.0
FIRST_TOKEN = 0  # <|endoftext|>: BOS of the bundled model


def next_token(out: np.ndarray, ends: HostEnds, head_on_pl: bool) -> int:
    """The greedy next token from what forward() returned (logits, or hidden states for the host's head)."""
    logits = out if head_on_pl else ends.lm_head(out[-1:])
    return int(np.argmax(np.asarray(logits).reshape(-1)))


def greedy_decode(sim: DecoderSim, ends: HostEnds, tokens: int) -> list[int]:
    """`tokens` decode steps from position 0, one forward() call each; returns the tokens fed in."""
    head = sim.design.config.head_on_pl
    kv = sim.new_cache()
    fed, token = [], FIRST_TOKEN
    for pos in range(tokens):
        fed.append(token)
        token = next_token(sim.forward(ends.embed([token]), kv, pos), ends, head)
    return fed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--board", default="kv260")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--tokens", type=int, default=128, help="decode steps timed")
    parser.add_argument("--prompt", type=int, default=64, help="prefill prompt length")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best is kept)")
    parser.add_argument("--out", type=Path, default=Path("bench/csim.json"), help="JSON output")
    args = parser.parse_args(argv)

    design = Design.for_model(resolve_model_dir(args.model), args.board, args.set)
    sim = design.csim()
    ends = HostEnds(design.folder, int8=design.config.head_on_pl)
    tokens = min(args.tokens, design.context)
    prompt = min(args.prompt, design.context)

    greedy_decode(sim, ends, min(8, tokens))  # warm-up: loads the image, touches the buffers
    decode_s = best_of(lambda: greedy_decode(sim, ends, tokens), args.repeat)
    text = greedy_decode(sim, ends, tokens)
    prompt_ids = text[:prompt] if len(text) >= prompt else (text * prompt)[:prompt]
    hidden = ends.embed(prompt_ids)

    def prefill() -> None:
        next_token(sim.forward(hidden, sim.new_cache(), 0), ends, design.config.head_on_pl)

    prefill()
    prefill_s = best_of(prefill, args.repeat)
    decode_tok_s, prefill_tok_s = tokens / decode_s, prompt / prefill_s
    met = decode_tok_s >= GOAL_TOK_S

    cfg = design.config
    print(f"C simulation of {design.name} on {cfg.board} ({cfg.weight_ports} weight ports, prefill block "
          f"{cfg.prefill_block}, {cfg.tlmm.token_lanes} token lane(s), LM head {cfg.lm_head}, context "
          f"{design.context}); one core (the C-sim is single-threaded), measured, best of {args.repeat}")
    print(f"  decode   {tokens:4d} tokens, greedy, one forward() each from position 0: {decode_s:7.3f} s  "
          f"{decode_tok_s:8.1f} tok/s  ({decode_s / tokens * 1e3:.2f} ms/token)")
    print(f"  prefill  {prompt:4d}-token prompt, one forward() call:            {prefill_s:7.3f} s  "
          f"{prefill_tok_s:8.1f} tok/s")
    print(f"  machine  {machine()['cpus']} CPUs, load average {machine()['load_average']} (a shared machine slows "
          "the C-sim)")
    print(f"  goal     decode >= {GOAL_TOK_S:g} tok/s on the C-sim: {'MET' if met else 'NOT MET'} "
          f"({decode_tok_s:.1f} tok/s)")

    save_json(args.out, {
        "what": "C simulation of the bundled model, one core, measured wall time on this machine",
        "machine": {**machine(), "compiler": toolchain.compiler_version(toolchain.compiler()), "threads": 1},
        "design": {"name": design.name, "board": cfg.board, "overrides": list(args.set), "config": cfg.to_dict(),
                   "context": design.context},
        "repeat": args.repeat,
        "decode": {"tokens": tokens, "seconds": round(decode_s, 4), "tok_s": round(decode_tok_s, 2),
                   "greedy_tokens": text},
        "prefill": {"tokens": prompt, "seconds": round(prefill_s, 4), "tok_s": round(prefill_tok_s, 2)},
        "goal": {"decode_tok_s_min": GOAL_TOK_S, "met": met},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
