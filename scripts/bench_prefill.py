"""C-simulation time to first token: one prefill call for a 64- and a 128-token prompt against a loop
of decode calls over the same tokens (the accelerator's C++ compiled by g++, not the board).

    python scripts/bench_prefill.py [--model DIR] [--board kv260] [--out bench/prefill.json]

Without --model it uses the bundled default model, or a random model of the same shape if there is none.
The figures are C-simulation wall times on this machine; they say how much work a prefill saves
(each weight tile read once per block of tokens), not how fast a board is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import machine, save_json  # noqa: E402

from tellme.hls.design import Design  # noqa: E402
from tellme.host.backends import HostEnds  # noqa: E402
from tellme.models.config import ModelConfig
from tellme.models.convert import convert_checkpoint  # noqa: E402
from tellme.models.errors import UserError  # noqa: E402
from tellme.models.synthetic import write_random_checkpoint  # noqa: E402

PROMPTS = (64, 128)
DEFAULT_SHAPE = ModelConfig(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


def model_dir(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), Path(arg).name
    try:
        from tellme.models.default_model import default_model_dir

        return default_model_dir(), "default"
    except (ImportError, UserError):
        convert_checkpoint(write_random_checkpoint(tmp / "hf", "bitlinear", DEFAULT_SHAPE), tmp / "m", quiet=True)
        return tmp / "m", "random model of the default shape"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--board", default="kv260")
    parser.add_argument("--out", default="bench/prefill.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, label = model_dir(args.model, Path(tmp))
        design = Design.for_model(path, args.board)
        config, sim, ends = design.config, design.csim(), HostEnds(design.folder)
        results = {"machine": machine(), "model": label, "board": args.board,
                   "prefill_block": config.prefill_block, "attention_pes": config.attention_pes, "prompts": {}}
        sim.forward(ends.embed([1]), *sim.new_cache(), 0)  # load the weights once, outside the timings
        for n in PROMPTS:
            if n > sim.max_context:
                continue
            hidden = ends.embed(list(range(3, 3 + n)))

            def prefill(hidden=hidden) -> None:
                k, v = sim.new_cache()
                ends.lm_head(sim.forward(hidden, k, v, 0)[-1:])

            def decode_loop(hidden=hidden, n=n) -> None:
                k, v = sim.new_cache()
                for pos in range(n):
                    out = sim.forward(hidden[pos : pos + 1], k, v, pos)
                ends.lm_head(out)

            t_prefill, t_loop = timed(prefill), timed(decode_loop)
            row = {"ttft_prefill_s": round(t_prefill, 3), "ttft_decode_loop_s": round(t_loop, 3),
                   "prefill_over_decode_loop": round(t_prefill / t_loop, 3)}
            results["prompts"][str(n)] = row
            print(f"{n:4d}-token prompt: prefill call {t_prefill:7.2f} s, {n} decode calls {t_loop:7.2f} s, "
                  f"ratio {row['prefill_over_decode_loop']:.2f}")
    save_json(Path(args.out), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
