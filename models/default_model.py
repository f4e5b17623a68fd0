"""The bundled default model: a small ternary LM shipped as package data under tellme/models/default/."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

BUNDLED = Path(__file__).resolve().parent / "default"
MANIFEST = "manifest.json"


def default_model_dir() -> Path:
    """The folder of the bundled model (a tellme model folder); UserError when this install lacks it."""
    if not (BUNDLED / MANIFEST).is_file():
        raise UserError(f"no bundled model in {BUNDLED}: pass --model DIR (a folder made by `tellme convert`)")
    return BUNDLED


def resolve_model_dir(model: str | Path | None) -> Path:
    """The --model folder when given, else the bundled default model."""
    return Path(model) if model else default_model_dir()
