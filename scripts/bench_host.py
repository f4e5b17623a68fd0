"""Host overhead per generated token, with a device that costs nothing: what the host adds around the
accelerator (embedding gather, LM head, sampling, detokenising, bookkeeping) through the Session path
that `tellme run` and the board use. Goal: well under 1 ms per token for the small models.

    python scripts/bench_host.py [--out bench/host.json] [--quick] [--large]
"""

from __future__ import annotations

import argparse
import os
import sys

# A decode step's LM head is one matrix-vector product. Multithreaded OpenBLAS hands half of it to a
# second thread; on a shared, busy machine that thread waits for a time slice and one product takes
# ~8 ms instead of ~0.04 ms. Measure the host's own work single-threaded unless told otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import machine, save_json  # noqa: E402

from tellme.host.session import Session  # noqa: E402
from tellme.models.config import ModelConfig
from tellme.models.convert import convert_checkpoint  # noqa: E402
from tellme.models.synthetic import TINY, write_random_checkpoint  # noqa: E402

SHAPES = {
    "tiny": TINY,
    # the bundled default model's shape (scripts/train_default.py): vocab 2048, 6 layers of 256
    "default-2048": ModelConfig(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256),
}
# the host ends of 1bitLLM bitnet_b1_58-large (0.73B): its 32002 x 1536 LM head, one layer (--large)
LARGE = ModelConfig(vocab_size=32002, hidden_size=1536, intermediate_size=4096, num_hidden_layers=1,
              num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=256)
SAMPLING = {"greedy": {}, "sampled": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 0}}
PROMPT = "the table and the chair"


class NullDevice:
    """Answers instantly with fixed random hidden states (random so that sampling sees varied logits)."""

    name = "null"

    def __init__(self, hidden_size: int, max_context: int):
        self.max_context = max_context
        self.rows = np.random.default_rng(0).standard_normal((max_context, hidden_size)).astype(np.float32)

    def run(self, hidden_in: np.ndarray, pos: int) -> np.ndarray:
        return self.rows[pos : pos + len(hidden_in)]

    def close(self) -> None:
        pass


def host_ms(model_dir: Path, shape: ModelConfig, repeats: int) -> dict:
    """Best-of-`repeats` milliseconds per decode step, split, for each sampling setting."""
    out = {}
    with Session(model_dir, device=NullDevice(shape.hidden_size, shape.max_position_embeddings)) as session:
        session.eos_token_id = None  # decode the full length every run
        new = shape.max_position_embeddings - len(session.tokenizer.encode(PROMPT))
        for label, options in SAMPLING.items():
            runs = []
            for _ in range(repeats):
                for _piece in session.generate(PROMPT, max_new_tokens=new, **options):
                    pass
                runs.append(session.stats.per_token_ms())
            best = min(runs, key=lambda ms: ms["host"])
            out[label] = {k: round(v, 4) for k, v in best.items() if k != "device"} | {"tokens": new}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/host.json")
    parser.add_argument("--quick", action="store_true", help="tiny model only, one run")
    parser.add_argument("--large", action="store_true", help="also the 0.73B model's vocabulary (slow to set up)")
    args = parser.parse_args()
    shapes = {"tiny": SHAPES["tiny"]} if args.quick else dict(SHAPES)
    if args.large:
        shapes["0.73B-vocab"] = LARGE
    results = {"machine": machine(), "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"], "prompt": PROMPT,
               "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in shapes.items():
            ckpt = write_random_checkpoint(Path(tmp) / name, "bitlinear", shape)
            convert_checkpoint(ckpt, Path(tmp) / f"{name}-model", quiet=True)
            row = {"vocab": shape.vocab_size, "hidden": shape.hidden_size,
                   **host_ms(Path(tmp) / f"{name}-model", shape, 1 if args.quick else 5)}
            results["models"][name] = row
            for label in SAMPLING:
                ms = row[label]
                print(f"{name:>12} {label:>7}: host {ms['host']:.3f} ms/token (LM head {ms['lm_head']:.3f}, "
                      f"sampling {ms['sampling']:.3f}, other {ms['other']:.3f}) over {ms['tokens']} tokens")
    save_json(Path(args.out), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
