"""The HLS project writer: kernel headers copied verbatim, config/top/testbenches/TCL/README rendered from
jinja2 templates, golden vectors from numpy; written into a temp folder beside OUT, then renamed."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import numpy as np

from tellme.host.design_manifest import HLS_IP_VERSION, HLS_LIBRARY, HLS_VENDOR
from tellme.models.atomic import atomic_dir, check_destination
from tellme.models.ddr_image import WORD_BYTES
from tellme.models.packing import WORD_INDICES

from .design import TLMM_GOLDEN_TOKENS

if TYPE_CHECKING:
    from .design import Design

# project path -> file under hls/kernels, copied verbatim
KERNEL_FILES = {f"src/{name}": name for name in (
    "common.h", "fp16.h", "tlmm.h", "elementwise.h", "attention.h", "prefetch.h", "lm_head.h", "decoder.h")}
KERNEL_FILES.update({"tb/tb_io.h": "tb_io.h", "tb/csim_bridge.cpp": "csim_bridge.cpp"})
# project path -> template under hls/templates
DESIGN_TEMPLATES = {"src/config.h": "config.h.j2", "src/top.cpp": "top.cpp.j2"}
PROJECT_TEMPLATES = {
    "tb/tb_decoder.cpp": "tb_decoder.cpp.j2",
    "tb/tb_tlmm.cpp": "tb_tlmm.cpp.j2",
    "run_hls.tcl": "run_hls.tcl.j2",
    "README.md": "README.md.j2",
}
PROJECT_NAME = "tellme"


def _package_text(folder: str, name: str) -> str:
    return resources.files("tellme.hls").joinpath(folder, name).read_text()


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: _package_text("templates", name)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _context(design: Design) -> dict:
    config = design.config
    params = [("board", config.board), ("part", config.part), ("clock_mhz", config.clock_mhz)]
    params += [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
               if f.name not in ("board", "part", "clock_mhz", "tlmm")]
    params += [(f"tlmm.{key}", value) for key, value in vars(config.tlmm).items()]
    return {"cfg": config, "design": design, "params": params, "project_name": PROJECT_NAME,
            "kernels": [path for path in KERNEL_FILES if path.startswith("src/")],
            "ip_vendor": HLS_VENDOR, "ip_library": HLS_LIBRARY, "ip_version": HLS_IP_VERSION}


def design_sources(design: Design) -> dict[str, str]:
    """The design's C++ and the C-sim bridge (what tellme.hls.csim compiles): project path -> text."""
    env = _environment()
    context = _context(design)
    files = {path: _package_text("kernels", name) for path, name in KERNEL_FILES.items()}
    files.update({path: env.get_template(name).render(context) for path, name in DESIGN_TEMPLATES.items()})
    return files


def golden_files(design: Design) -> tuple[dict[str, bytes], int]:
    """The testbenches' data: tb/data/decoder (the DDR image, a prompt's embeddings and what the top writes
    for it) and tb/data/tlmm (layer 0's qkv stripes, int8 activations, numpy's integer sums)."""
    image = design.image()
    decoder = design.decoder_golden()
    hidden = np.zeros((len(decoder["tokens"]), design.layout.hidden_pad), dtype="<f4")
    hidden[:, : design.model.hidden_size] = decoder["hidden_in"]
    files = {f"tb/data/decoder/stripe{p}.bin": s.tobytes() for p, s in enumerate(image.stripes)}
    files["tb/data/decoder/params.bin"] = image.params.astype("<f4").tobytes()
    files["tb/data/decoder/hidden_in.bin"] = hidden.tobytes()
    files["tb/data/decoder/expected.bin"] = np.asarray(decoder["expected"], dtype="<f4").tobytes()
    tlmm = design.tlmm_golden()
    qkv = design.layout.matrices[0]
    stripes = np.stack([s.reshape(-1, WORD_BYTES)[qkv.offset : qkv.offset + qkv.words] for s in image.stripes])
    groups = qkv.wpr * WORD_INDICES
    xq = np.zeros((tlmm["xq"].shape[0], groups * 3), dtype=np.int8)
    xq[:, : qkv.k] = tlmm["xq"]
    files["tb/data/tlmm/stripes.bin"] = stripes.tobytes()
    files["tb/data/tlmm/xq.bin"] = xq.tobytes()
    files["tb/data/tlmm/acc.bin"] = tlmm["acc"].astype("<i4").tobytes()
    return files, len(decoder["tokens"])


def project_files(design: Design) -> dict[str, str | bytes]:
    """Every file of a project: project path -> text or bytes."""
    env = _environment()
    context = _context(design)
    files: dict[str, str | bytes] = dict(design_sources(design))
    data, tokens = golden_files(design)
    context["golden"] = {"tokens": tokens, "tlmm_tokens": TLMM_GOLDEN_TOKENS}
    files.update({path: env.get_template(name).render(context) for path, name in PROJECT_TEMPLATES.items()})
    files["config.json"] = design.config.to_json() + "\n"
    files.update(data)
    return files


def is_hls_project(path: Path) -> bool:
    """A folder tellme hls wrote (what --force may replace)."""
    return (Path(path) / "run_hls.tcl").is_file() and (Path(path) / "config.json").is_file()


def write_project(out: Path, design: Design, force: bool = False, inputs: tuple[Path, ...] = ()) -> Path:
    """Write the project atomically. An existing out is refused unless force, and even then unless it is
    an HLS project (or empty); out may not overlap the inputs (the model folder)."""
    out = Path(out)
    check_destination(out, force, is_hls_project, "tellme HLS project", inputs=inputs)
    files = project_files(design)
    with atomic_dir(out, force=force) as tmp:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return out
