"""What a slim board archive holds and how the board checks it: the layout `tellme package` writes
(tellme.hls.package) and `tellme selftest` reads. numpy only, so the board can read it.

    <design>/manifest.json, <design>.bit, <design>.hwh     the design, as pynq loads it
    <design>/golden.npz                                     one prefill and one decode from the C simulation
    <design>/images/<buffer>.npy                            the image buffers (weights0.., params; with --images)
    <design>/notebooks/chat.ipynb                           the notebook; it finds its design one folder up
    <design>/PACKAGE.json                                   sha256 of every file above
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tellme.models.errors import UserError

from .design_manifest import MANIFEST

GOLDEN = "golden.npz"
INDEX = "PACKAGE.json"
PACKAGE_FORMAT = "tellme-board-package"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_package(folder: Path) -> int | None:
    """Files checked against PACKAGE.json (None when the folder is not a package); a missing or changed
    file is a UserError naming it."""
    index = Path(folder) / INDEX
    if not index.is_file():
        return None
    try:
        files = json.loads(index.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{index} is damaged: unpack the archive again") from None
    for name, digest in files.items():
        path = Path(folder) / name
        if not path.is_file():
            raise UserError(f"{folder} lacks {name} listed in {INDEX}: unpack the whole archive")
        if sha256(path) != digest:
            raise UserError(f"{path} differs from the archive (sha256): copy or unpack it again")
    return len(files)


@dataclass(frozen=True)
class Golden:
    """Tokens run from position 0 in one prefill call, then one decode step, as the C simulation ran them."""

    tokens: np.ndarray  # int64 [n + 1]
    prefill_in: np.ndarray  # float32 [n, hidden]
    prefill_out: np.ndarray  # what the top returns: the last token's logits [vocab] (head on the PL), else [n, hidden]
    decode_in: np.ndarray  # float32 [1, hidden], at position n
    decode_out: np.ndarray  # [vocab], else [1, hidden]

    @property
    def n(self) -> int:
        return int(self.prefill_in.shape[0])

    def save(self, target: Path | BinaryIO) -> None:
        np.savez(target, tokens=self.tokens, prefill_in=self.prefill_in, prefill_out=self.prefill_out,
                 decode_in=self.decode_in, decode_out=self.decode_out)


def read_golden(folder: Path) -> Golden:
    path = Path(folder) / GOLDEN
    if not path.is_file():
        raise UserError(f"{folder} has no {GOLDEN}: make the board archive with tellme package and unpack it there")
    with np.load(path) as data:
        return Golden(**{k: np.array(data[k]) for k in ("tokens", "prefill_in", "prefill_out", "decode_in",
                                                       "decode_out")})


def bit_exact(got: np.ndarray, want: np.ndarray) -> tuple[bool, str]:
    """Bit patterns equal (NaNs included); else how many values differ and by how much at most."""
    got, want = np.ascontiguousarray(got, np.float32), np.ascontiguousarray(want, np.float32)
    if got.shape != want.shape:
        return False, f"shape {got.shape}, expected {want.shape}"
    differ = got.view(np.uint32) != want.view(np.uint32)
    if not differ.any():
        return True, f"{want.size} values bit-exact"
    worst = float(np.nanmax(np.abs(got - want)))
    return False, f"{int(differ.sum())} of {want.size} values differ (max |difference| {worst:.3g})"


def is_design_dir(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def designs_near(folder: Path) -> list[Path]:
    """Design folders a notebook in `folder` may mean: the folder above it when it is one (an unpacked
    archive's notebooks/), else designs in `folder` and one or two levels below (get-notebooks' folder with
    archives unpacked into it)."""
    folder = Path(folder)
    if is_design_dir(folder.parent):
        return [folder.parent]
    found = [p.parent for pattern in ("manifest.json", "*/manifest.json", "*/*/manifest.json")
             for p in folder.glob(pattern)]
    return sorted(dict.fromkeys(found))
