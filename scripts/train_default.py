#!/usr/bin/env python3
"""Train the bundled default model (needs the `train` extra and scripts/make_corpus.sh's corpus).

    scripts/train_default.py train  [--run DIR] [--minutes 60]   # Keras QAT, exports DIR/hf periodically
    scripts/train_default.py finish [--run DIR]                  # convert DIR/hf into models/default/

The shape and settings here are the ones the shipped model was trained with; see models/default/MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUN = REPO / "build" / "train" / "default"
SETTING_ARGS = ["--batch-size", "16", "--seq-len", "256", "--lr", "2e-3", "--seed", "0"]


def train(run: Path, minutes: float, corpus: Path) -> None:
    """Run the Keras training with the default shape (tellme.models.train.shape) and these settings."""
    from tellme.models.train.cli import main

    main(["--corpus", str(corpus), "--out", str(run), "--minutes", str(minutes), *SETTING_ARGS])


def finish(run: Path, dst: Path, corpus: Path) -> None:
    """Convert the run's Hugging Face checkpoint into the shipped model folder and write its card."""
    from tellme.models.train.card import finish_default_model

    finish_default_model(run, dst, corpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "finish"])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="run folder (default build/train/default)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall-time budget")
    parser.add_argument("--corpus", type=Path, default=REPO / "build" / "corpus")
    parser.add_argument("--dst", type=Path, default=REPO / "models" / "default")
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.run, args.minutes, args.corpus)
    else:
        finish(args.run, args.dst, args.corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
