"""`tellme package DESIGN`: a slim archive for the board instead of the whole design folder (whose HLS
and Vivado projects run to gigabytes): the manifest, .bit and .hwh, golden vectors from the C simulation
(one prefill and one decode, for `tellme selftest`), optionally the static DDR buffers, the notebook and
an index of sha256 sums. Layout: tellme.host.board_package. The model folder itself is not included:
the manifest's model hash is checked against the board's copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from importlib import resources
from pathlib import Path

import numpy as np

from tellme.host.backends import HostEnds
from tellme.host.board_package import GOLDEN, INDEX, PACKAGE_FORMAT, Golden
from tellme.host.design_manifest import MANIFEST, open_design
from tellme.host.pynq_device import IMAGES
from tellme.models.atomic import write_atomic
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder

from .config import AcceleratorConfig
from .design import Design

GOLDEN_TOKENS = 4
NOTEBOOK = "chat.ipynb"


def golden_vectors(design: Design, n_tokens: int = GOLDEN_TOKENS, seed: int = 0) -> Golden:
    """n random tokens through the C-simulated top from position 0 in one call, then one more token as a
    decode step on the K/V cache the prefill left: what the board must reproduce bit for bit. The inputs
    are the embeddings the board host gathers for this design (int8 rows with the LM head on the PL); the
    outputs what the top returns (the last token's logits with the head on the PL, else hidden states)."""
    folder = design._weights()
    n = max(1, min(n_tokens, design.context - 1))
    tokens = np.random.default_rng(seed).integers(0, design.model.vocab_size, n + 1)
    embeddings = HostEnds(folder, int8=design.config.head_on_pl).embed(tokens.tolist()).astype(np.float32)
    sim = design.csim()
    kv = sim.new_cache()
    prefill_out = sim.forward(embeddings[:n], kv, 0)
    decode_out = sim.forward(embeddings[n:], kv, n)
    return Golden(tokens=tokens, prefill_in=embeddings[:n], prefill_out=prefill_out, decode_in=embeddings[n:],
                  decode_out=decode_out)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    return buffer.getvalue()


def package_design(design_dir: Path, model_dir: Path, out: Path | None = None, images: bool = False) -> Path:
    """Write <design>.tar.gz (default: beside the design folder) atomically; returns its path."""
    folder = open_model_folder(model_dir)
    manifest = open_design(design_dir, folder)  # a built design, for this model
    design = Design.for_model(folder, config=AcceleratorConfig.from_dict(manifest.accelerator))
    name = manifest.name
    golden = io.BytesIO()
    golden_vectors(design).save(golden)
    files: dict[str, bytes] = {
        MANIFEST: (manifest.path / MANIFEST).read_bytes(),
        f"{name}.bit": manifest.bitstream.read_bytes(),
        f"{name}.hwh": manifest.hwh.read_bytes(),
        GOLDEN: golden.getvalue(),
        f"notebooks/{NOTEBOOK}": resources.files("tellme.host.notebooks").joinpath(NOTEBOOK).read_bytes(),
    }
    if images:
        static = design.image().named_buffers()
        for spec in manifest.interface.with_role("image"):
            files[f"{IMAGES}/{spec.name}.npy"] = _npy(static[spec.name])
    index = {"format": PACKAGE_FORMAT, "design": name, "model_hash": manifest.model_hash, "files": {}}
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for rel, data in files.items():
            index["files"][rel] = _sha256_bytes(data)
            _add(tar, f"{name}/{rel}", data)
        _add(tar, f"{name}/{INDEX}", (json.dumps(index, indent=2) + "\n").encode())
    out = Path(out) if out else manifest.path.parent / f"{name}.tar.gz"
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a file name such as {name}.tar.gz")
    write_atomic(out, archive.getvalue())
    return out


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
