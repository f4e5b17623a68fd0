"""`tellme convert`: a Hugging Face BitNet checkpoint folder -> a tellme model folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint import load_hf_checkpoint
from .errors import UserError
from .model_folder import TOKENIZER_FILES, write_model_folder
from .progress import progress_printer


def convert_checkpoint(src: Path, dst: Path, force: bool = False, quiet: bool = False) -> None:
    """Read, validate and quantise src; write dst atomically. The source is never modified."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UserError(f"{src} is not a folder: pass a Hugging Face checkpoint folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise UserError(f"{dst} would overwrite or nest inside the source checkpoint: choose another folder")
    if dst.exists() and not force:
        raise UserError(f"{dst} already exists: choose another folder or pass --force to replace it")
    model = load_hf_checkpoint(src, progress=None if quiet else progress_printer("reading layers"))
    tokenizer_files = {name: src / name for name in TOKENIZER_FILES if (src / name).is_file()}
    source_info = {"path": str(src), "model_type": model.config.source_model_type,
                   "linear_class": model.config.linear_class}
    write_model_folder(
        model, dst, tokenizer_files, source_info, force=force,
        progress=None if quiet else progress_printer("packing layers"),
    )
    if not quiet:
        print(f"wrote {dst}", file=sys.stderr)


def convert_command(args: argparse.Namespace) -> int:
    convert_checkpoint(Path(args.src), Path(args.dst), force=args.force)
    return 0
