"""The converted model folder (models/FORMAT.md): writing it atomically and reading it back verified."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from .atomic import atomic_dir, check_destination
from .checkpoint import TernaryModel
from .config import ModelConfig
from .errors import UserError
from .packing import pack_tlmm
from .quant import row_quant_int8
from .safetensors_io import SafetensorsFile

FORMAT_NAME = "tellme-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_tensors(model: TernaryModel, progress: Callable[[int, int], None] | None = None) -> dict:
    """Our tensor names -> arrays, with every ternary linear in TLMM index-vector form."""
    tensors: dict[str, np.ndarray] = {"embed_tokens": model.embed_tokens, "norm": model.norm}
    if model.lm_head is not None:
        tensors["lm_head"] = model.lm_head
    tensors.update(int8_tables(tensors))
    for i, layer in enumerate(model.layers):
        for name, weight in layer.norms.items():
            tensors[f"layers.{i}.{name}"] = weight
        for name, linear in layer.linears.items():
            tensors[f"layers.{i}.{name}.tlmm"] = pack_tlmm(linear.weight)
            tensors[f"layers.{i}.{name}.scale"] = np.array([linear.scale], dtype=np.float32)
        if progress:
            progress(i + 1, len(model.layers))
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


INT8_TABLES = ("embed_tokens", "lm_head")


def int8_tables(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """<table>.int8 and <table>.divisor for the embedding and (untied) LM head: what the int8 LM head on
    the PL streams, and what a board host gathers embeddings from without a float32 copy."""
    out = {}
    for name in INT8_TABLES:
        if name in tensors:
            q, divisor = row_quant_int8(tensors[name])
            out[f"{name}.int8"], out[f"{name}.divisor"] = q, divisor.astype(np.float32)
    return out


def write_model_folder(
    model: TernaryModel,
    dst: Path,
    source_files: dict[str, Path],
    source_info: dict,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write manifest, weights and tokenizer files into dst atomically (temp folder, then rename)."""
    check_destination(Path(dst), force, is_model_folder, "tellme model folder")
    with atomic_dir(Path(dst), force=force) as tmp:
        save_file(model_tensors(model, progress), str(tmp / WEIGHTS), metadata={"format": FORMAT_NAME})
        for name, path in source_files.items():
            shutil.copyfile(path, tmp / name)
        files = sorted([WEIGHTS, *source_files])
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": model.config.to_dict(),
            "source": source_info,
            "files": {name: sha256_file(tmp / name) for name in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def is_model_folder(path: Path) -> bool:
    """A folder tellme convert wrote (what --force may replace)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class ModelFolder:
    """A verified converted model: its config, manifest and tensors (read on demand)."""

    path: Path
    manifest: dict
    config: ModelConfig
    weights: SafetensorsFile

    def tensor(self, name: str) -> np.ndarray:
        if name not in self.weights.names:
            raise UserError(f"{self.path / WEIGHTS} lacks {name!r}: re-run tellme convert")
        return self.weights.get(name)

    @property
    def head_name(self) -> str:
        """The LM head's table: its own, or the embedding when they are tied."""
        return "embed_tokens" if self.config.tie_word_embeddings else "lm_head"

    def int8_table(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(int8 rows, float32 divisors) of `name` (embed_tokens or lm_head; see int8_tables). Folders
        converted before these were stored get them quantised from the float table on the spot."""
        if f"{name}.int8" in self.weights.names:
            return self.tensor(f"{name}.int8"), self.tensor(f"{name}.divisor")
        return row_quant_int8(self.tensor(name))

    def int8_rows(self, name: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Some rows of an int8 table, read without loading the rest (the board host's embedding gather)."""
        if f"{name}.int8" in self.weights.names:
            return self.weights.get_rows(f"{name}.int8", ids), self.weights.get_rows(f"{name}.divisor", ids)
        q, divisor = self.int8_table(name)
        return q[ids], divisor[ids]

    @property
    def tokenizer_path(self) -> Path | None:
        path = self.path / "tokenizer.json"
        return path if path.is_file() else None

    @property
    def model_hash(self) -> str:
        """sha256 of the weights file: what a bitstream's manifest names its model by."""
        return self.manifest["files"][WEIGHTS]


def open_model_folder(path: Path, verify: bool = True) -> ModelFolder:
    """Open a converted model folder; verify=True checks every file's sha256 against the manifest."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a tellme model folder (no {MANIFEST}): convert it with tellme convert")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{manifest_path} is not valid JSON ({exc}): re-run tellme convert") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: format {manifest.get('format')!r} v{manifest.get('version')} is not "
            f"{FORMAT_NAME} v{FORMAT_VERSION}: re-run tellme convert"
        )
    if verify:
        for name, digest in manifest.get("files", {}).items():
            file = path / name
            if not file.is_file():
                raise UserError(f"{path} lacks {name}: re-run tellme convert")
            if sha256_file(file) != digest:
                raise UserError(f"{file} does not match its manifest checksum (corrupt?): re-run tellme convert")
    config = ModelConfig.from_dict(manifest.get("config", {}))
    return ModelFolder(path=path, manifest=manifest, config=config, weights=SafetensorsFile(path / WEIGHTS))
