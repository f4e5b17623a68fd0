"""`tellme convert` and `tellme train`: parse, call, print."""

from __future__ import annotations

import argparse
from pathlib import Path

from .convert import convert_checkpoint


def convert_command(args: argparse.Namespace) -> int:
    convert_checkpoint(Path(args.src), Path(args.dst), force=args.force)
    return 0


def train_command(args: argparse.Namespace) -> int:
    """Keras quantisation-aware training (the `train` extra); prints progress and the run's summary."""
    from .train.cli import run

    summary = run(args)
    print(f"wrote {args.out}: {summary['steps']} steps, validation loss {summary['val_loss']}; the checkpoint "
          f"{args.out}/hf converts with: tellme convert {args.out}/hf MODEL_DIR")
    return 0
