"""Options of a training run, shared by `tellme train` and `python -m tellme.models.train`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .shape import DEFAULT_SHAPE

SHAPE_OPTIONS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "max_position_embeddings")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options: corpus and output folders, model shape, budget and optimiser settings."""
    p.add_argument("--corpus", type=Path, required=True, help="folder with train.txt and val.txt")
    p.add_argument("--out", type=Path, required=True, help="run folder (tokenizer, hf/ checkpoint, summary)")
    for name in SHAPE_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(DEFAULT_SHAPE, name))
    p.add_argument("--minutes", type=float, default=60.0, help="wall-time budget for the training loop")
    p.add_argument("--max-steps", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--checkpoint-every", type=float, default=600.0, help="seconds between exports")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    p.add_argument("--seed", type=int, default=0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tellme.models.train", description=__doc__)
    add_arguments(p)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    """One training run with parsed options; returns its summary. Imports TensorFlow."""
    from .runtime import configure_tensorflow

    configure_tensorflow(intra_op_threads=args.threads, inter_op_threads=1)
    import keras

    from .loop import TrainSettings
    from .run import RunPaths, run_training

    keras.utils.set_random_seed(args.seed)
    shape = DEFAULT_SHAPE.replace(**{name: getattr(args, name) for name in SHAPE_OPTIONS})
    settings = TrainSettings(
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        peak_lr=args.lr,
        max_steps=args.max_steps,
        minutes=args.minutes,
        checkpoint_every_s=args.checkpoint_every,
        seed=args.seed,
    )
    return run_training(RunPaths(corpus=args.corpus, out=args.out), shape, settings)


def main(argv: list[str] | None = None) -> dict[str, object]:
    return run(parse_args(argv))
