"""`tellme convert`: a Hugging Face BitNet checkpoint folder -> a tellme model folder."""

from __future__ import annotations

import sys
from pathlib import Path

from .atomic import check_destination
from .checkpoint import load_hf_checkpoint
from .errors import UserError
from .model_folder import TOKENIZER_FILES, is_model_folder, write_model_folder
from .progress import progress_printer


def convert_checkpoint(src: Path, dst: Path, force: bool = False, quiet: bool = False) -> None:
    """Read, validate and quantise src; write dst atomically. The source is never modified."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UserError(f"{src} is not a folder: pass a Hugging Face checkpoint folder")
    check_destination(dst, force, is_model_folder, "tellme model folder", inputs=[src])
    model = load_hf_checkpoint(src, progress=None if quiet else progress_printer("reading layers"))
    tokenizer_files = {name: src / name for name in TOKENIZER_FILES if (src / name).is_file()}
    source_info = {"name": src.resolve().name, "model_type": model.config.source_model_type,
                   "linear_class": model.config.linear_class}
    write_model_folder(
        model, dst, tokenizer_files, source_info, force=force,
        progress=None if quiet else progress_printer("packing layers"),
    )
    if not quiet:
        print(f"wrote {dst}", file=sys.stderr)
