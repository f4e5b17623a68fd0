"""Reading safetensors files into numpy, including bfloat16 (which numpy has no dtype for), with
every failure turned into a one-line UserError that names the file."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from .errors import UserError

HEADER_LENGTH_BYTES = 8
MAPPABLE = {"I8": np.int8, "U8": np.uint8, "F32": "<f4", "I32": "<i4", "U16": "<u2"}


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: widen the bit pattern."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile:
    """One open .safetensors file: its tensor names and numpy reads (bf16 widened to float32)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._handle = safe_open(str(path), framework="np")
            self._ctx = self._handle.__enter__()
            self.names = list(self._ctx.keys())
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path.name} is not a readable safetensors file ({exc}): re-download it") from None
        self._bf16: dict[str, tuple[list[int], int]] | None = None
        self._header: tuple[int, dict] | None = None

    def layout(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """name -> (dtype as safetensors names it, e.g. "F32", shape), from the header: no data is read."""
        out = {}
        for name in self.names:
            view = self._ctx.get_slice(name)
            out[name] = (view.get_dtype(), tuple(view.get_shape()))
        return out

    def _bf16_entries(self) -> dict[str, tuple[list[int], int]]:
        """name -> (shape, absolute byte offset) for BF16 tensors, from the JSON header."""
        if self._bf16 is None:
            with open(self.path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(HEADER_LENGTH_BYTES))
                header = json.loads(f.read(length))
            base = HEADER_LENGTH_BYTES + length
            self._bf16 = {
                name: (info["shape"], base + info["data_offsets"][0])
                for name, info in header.items()
                if name != "__metadata__" and info.get("dtype") == "BF16"
            }
        return self._bf16

    def get(self, name: str) -> np.ndarray:
        try:
            return self._ctx.get_tensor(name)
        except (SafetensorError, TypeError, ValueError) as exc:
            entry = self._bf16_entries().get(name)
            if entry is None:
                raise UserError(f"{self.path.name}: cannot read tensor {name!r} ({exc})") from None
            shape, offset = entry
            count = int(np.prod(shape))
            raw = np.fromfile(self.path, dtype="<u2", count=count, offset=offset)
            if raw.size != count:
                raise UserError(f"{self.path.name}: tensor {name!r} is truncated: re-download it") from None
            return _bf16_to_f32(raw).reshape(shape)

    def mapped(self, name: str) -> np.ndarray:
        """A tensor mapped from the file (not read): rows gathered from it load only their own pages."""
        if self._header is None:
            with open(self.path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(HEADER_LENGTH_BYTES))
                self._header = (HEADER_LENGTH_BYTES + length, json.loads(f.read(length)))
        base, header = self._header
        info = header.get(name)
        dtype = MAPPABLE.get(info.get("dtype")) if isinstance(info, dict) else None
        if dtype is None:
            raise UserError(f"{self.path.name}: tensor {name!r} cannot be mapped: re-run tellme convert")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - start != int(np.prod(shape)) * np.dtype(dtype).itemsize:
            raise UserError(f"{self.path.name}: tensor {name!r} has a damaged header: re-run tellme convert")
        return np.memmap(self.path, dtype=dtype, mode="r", offset=base + start, shape=shape)

    def get_rows(self, name: str, ids: np.ndarray) -> np.ndarray:
        """Rows `ids` of a tensor, read without loading the others."""
        return np.asarray(self.mapped(name)[np.asarray(ids, dtype=np.int64)])

    def close(self) -> None:
        self._handle.__exit__(None, None, None)


class TensorStore:
    """All tensors of a checkpoint folder (one or many .safetensors shards) by name."""

    def __init__(self, folder: Path):
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise UserError(f"{folder} holds no .safetensors file: is it a Hugging Face checkpoint folder?")
        self._files = [SafetensorsFile(p) for p in files]
        self._where: dict[str, SafetensorsFile] = {}
        for f in self._files:
            for name in f.names:
                self._where[name] = f

    @property
    def names(self) -> set[str]:
        return set(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise UserError(f"checkpoint lacks tensor {name!r}: the checkpoint is incomplete or of another model")
        return self._where[name].get(name)

    def close(self) -> None:
        for f in self._files:
            f.close()


@contextmanager
def open_tensors(folder: Path) -> Iterator[TensorStore]:
    store = TensorStore(folder)
    try:
        yield store
    finally:
        store.close()
