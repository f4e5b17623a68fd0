"""The converted model folder (models/FORMAT.md): writing it atomically and reading it back verified."""

from __future__ import annotations

import hashlib
import json
import re
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
from .packing import K_ALIGN, VECTOR_BYTES, pack_tlmm, padded_k
from .quant import row_quant_int8
from .safetensors_io import SafetensorsFile

FORMAT_NAME = "tellme-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
HASH_CHUNK = 1 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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


def expected_tensors(config: ModelConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor a model folder of this config holds: name -> (safetensors dtype, shape), as
    model_tensors writes them (ternary linears in the stored TLMM form [N, padded K / 84, 18])."""
    c = config
    tensors = {"embed_tokens": ("F32", (c.vocab_size, c.hidden_size)), "norm": ("F32", (c.hidden_size,))}
    if not c.tie_word_embeddings:
        tensors["lm_head"] = ("F32", (c.vocab_size, c.hidden_size))
    norm_dims = {"input_layernorm": c.hidden_size, "post_attention_layernorm": c.hidden_size,
                 "attn_sub_norm": c.q_size, "ffn_sub_norm": c.intermediate_size}
    for i in range(c.num_hidden_layers):
        tensors.update({f"layers.{i}.{name}": ("F32", (dim,)) for name, dim in norm_dims.items()})
        for name, (n, k) in c.linear_shapes().items():
            tensors[f"layers.{i}.{name}.tlmm"] = ("U8", (n, padded_k(k) // K_ALIGN, VECTOR_BYTES))
            tensors[f"layers.{i}.{name}.scale"] = ("F32", (1,))
    return tensors


def optional_tensors(config: ModelConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensors a folder may hold beyond expected_tensors: the int8 tables (int8_tables), which folders
    converted before they existed lack (they are then quantised on opening)."""
    c = config
    tables = INT8_TABLES if not c.tie_word_embeddings else INT8_TABLES[:1]
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name in tables:
        out[f"{name}.int8"] = ("I8", (c.vocab_size, c.hidden_size))
        out[f"{name}.divisor"] = ("F32", (c.vocab_size,))
    return out


def _read_manifest(path: Path) -> dict:
    """manifest.json parsed and its structure checked: format, version, a files table and a config."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a tellme model folder (no {MANIFEST}): convert it with tellme convert")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{manifest_path} is not readable JSON ({exc}): re-run tellme convert") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path} is not a JSON object: re-run tellme convert")
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: format {manifest.get('format')!r} v{manifest.get('version')} is not "
            f"{FORMAT_NAME} v{FORMAT_VERSION}: re-run tellme convert"
        )
    _check_files_table(path, manifest.get("files"))
    return manifest


def _check_files_table(path: Path, files: object) -> None:
    """The manifest names, with its sha256, every file the model is read from: the weights, and each
    tokenizer file the folder holds (so none can be swapped in unverified)."""
    where = path / MANIFEST
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise UserError(f"{where} does not list {WEIGHTS} with its checksum: re-run tellme convert")
    for name, digest in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..", MANIFEST):
            raise UserError(f"{where} lists {name!r}, which is not a file of the folder: re-run tellme convert")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise UserError(f"{where}: the checksum of {name} is {digest!r}, not a sha256: re-run tellme convert")
    for name in TOKENIZER_FILES:
        if (path / name).exists() and name not in files:
            raise UserError(f"{path / name} is not in {where}, so it cannot be verified: re-run tellme convert")


def _check_tensors(path: Path, weights: SafetensorsFile, config: ModelConfig) -> None:
    """The weights hold exactly the tensors the config describes, with their dtypes and shapes (a config
    that disagrees with its weights would run fewer layers or read garbage)."""
    expected, found = expected_tensors(config), weights.layout()
    optional = optional_tensors(config)
    missing = [name for name in expected if name not in found]
    extra = sorted(set(found) - set(expected) - set(optional))
    hint = f"{path / MANIFEST} and {path / WEIGHTS} disagree: re-run tellme convert"
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"{path / WEIGHTS} lacks {missing[0]!r}{more} that the config implies; {hint}")
    if extra:
        raise UserError(f"{path / WEIGHTS} holds {len(extra)} tensor(s) the config does not describe "
                        f"({', '.join(extra[:2])}{' ...' if len(extra) > 2 else ''}); {hint}")
    for name, (dtype, shape) in (expected | optional).items():
        if name in found and found[name] != (dtype, shape):
            got_dtype, got_shape = found[name]
            raise UserError(f"{path / WEIGHTS}: {name} is {got_dtype} {list(got_shape)}, the config implies "
                            f"{dtype} {list(shape)}; {hint}")


def open_model_folder(path: Path, verify: bool = True) -> ModelFolder:
    """Open a converted model folder, checked so that whatever is wrong with it is one UserError here and
    nothing later: the manifest's structure, its config (types and ranges, tellme.models.config), the
    weights' tensors against that config, and (verify=True) every listed file against its sha256."""
    path = Path(path)
    manifest = _read_manifest(path)
    if verify:
        for name, digest in manifest["files"].items():
            file = path / name
            if not file.is_file():
                raise UserError(f"{path} lacks {name}: re-run tellme convert")
            if sha256_file(file) != digest:
                raise UserError(f"{file} does not match its manifest checksum (corrupt?): re-run tellme convert")
    config = ModelConfig.from_dict(manifest.get("config"), where=f"{path / MANIFEST}: config")
    weights = SafetensorsFile(path / WEIGHTS)
    _check_tensors(path, weights, config)
    return ModelFolder(path=path, manifest=manifest, config=config, weights=weights)
