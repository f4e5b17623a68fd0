"""Numpy reference speed: decode tok/s for a tiny model and for one layer of the 0.73B shape, and the
time of the table-lookup (TLMM) path relative to the plain integer matmul path.

    python scripts/bench_reference.py [--out bench/reference.json] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import best_of, machine, save_json  # noqa: E402

from tellme.models.config import ModelConfig
from tellme.models.convert import convert_checkpoint  # noqa: E402
from tellme.models.reference import ReferenceModel  # noqa: E402
from tellme.models.synthetic import write_random_checkpoint  # noqa: E402

SHAPES = {
    "tiny": ModelConfig(vocab_size=320, hidden_size=120, intermediate_size=200, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2),
    # one decoder layer of 1bitLLM bitnet_b1_58-large (0.73B): MHA, 16 heads of 96
    "0.73B-one-layer": ModelConfig(vocab_size=320, hidden_size=1536, intermediate_size=4096, num_hidden_layers=1,
                             num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=256),
}
PROMPT = 16


def decode_seconds(model: ReferenceModel, steps: int) -> float:
    """Seconds per decode step after a 16-token prefill (best of 3 runs)."""

    def run() -> None:
        cache = model.new_cache(PROMPT + steps)
        model.forward(list(range(3, 3 + PROMPT)), cache)
        for t in range(steps):
            model.forward([3 + t], cache)

    prefill_only = best_of(lambda: model.forward(list(range(3, 3 + PROMPT)), model.new_cache(PROMPT)), 3)
    return (best_of(run, 3) - prefill_only) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/reference.json")
    parser.add_argument("--quick", action="store_true", help="tiny model only, few steps")
    args = parser.parse_args()
    results = {"machine": machine(), "prompt_tokens": PROMPT, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in SHAPES.items():
            if args.quick and name != "tiny":
                continue
            steps = 4 if args.quick else (32 if name == "tiny" else 8)
            ckpt = write_random_checkpoint(Path(tmp) / name, "bitlinear", shape)
            convert_checkpoint(ckpt, Path(tmp) / f"{name}-model", quiet=True)
            row = {"layers": shape.num_hidden_layers, "hidden": shape.hidden_size,
                   "intermediate": shape.intermediate_size, "decode_steps": steps}
            for path in ("tlmm", "naive"):
                model = ReferenceModel.load(Path(tmp) / f"{name}-model", matmul=path)
                seconds = decode_seconds(model, steps)
                row[f"{path}_decode_ms"] = round(seconds * 1e3, 3)
                row[f"{path}_decode_tok_s"] = round(1.0 / seconds, 2)
            row["tlmm_over_naive_time"] = round(row["tlmm_decode_ms"] / row["naive_decode_ms"], 3)
            results["models"][name] = row
            print(f"{name:18s} TLMM {row['tlmm_decode_tok_s']:9.2f} tok/s  naive {row['naive_decode_tok_s']:9.2f}"
                  f" tok/s  TLMM/naive time {row['tlmm_over_naive_time']:.2f}x")
    save_json(Path(args.out), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
