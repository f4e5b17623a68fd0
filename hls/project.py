"""The HLS project writer: kernel headers copied verbatim, config/top/testbench/TCL/README rendered from
jinja2 templates, golden vectors from numpy; written into a temp folder beside OUT, then renamed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from tellme.host.design_manifest import HLS_IP_VERSION, HLS_LIBRARY, HLS_VENDOR
from tellme.models.atomic import atomic_dir, check_destination

from .config import AP_INT_MAX_W, AcceleratorConfig

if TYPE_CHECKING:
    from .design import Design

# project path -> file under hls/kernels, copied verbatim
ENGINE_FILES = {
    "src/tlmm.h": "tlmm.h",
    "tb/tb_io.h": "tb_io.h",
    "tb/csim_bridge.cpp": "csim_bridge.cpp",
}
# the decoder's kernels, present when the design is generated for a model
DECODER_FILES = {
    "src/fp16.h": "fp16.h",
    "src/elementwise.h": "elementwise.h",
    "src/attention.h": "attention.h",
    "src/decoder.h": "decoder.h",
}
# project path -> template under hls/templates
ENGINE_TEMPLATES = {"src/config.h": "config.h.j2", "src/tlmm_top.cpp": "tlmm_top.cpp.j2"}
DECODER_TEMPLATES = {"src/top.cpp": "top.cpp.j2"}
PROJECT_TEMPLATES = {
    "tb/tb_tlmm.cpp": "tb_tlmm.cpp.j2",
    "tb/tb_decoder.cpp": "tb_decoder.cpp.j2",
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


def _context(config: AcceleratorConfig, design: Design | None) -> dict:
    axi_bytes = config.axi_width // 8
    depth = {
        "weights": config.max_n * config.max_cycles * config.line_words,
        "x": -(-config.max_k // axi_bytes),
        "y": config.max_n,
    }
    params = [("board", config.board), ("part", config.part), ("clock_mhz", config.clock_mhz)]
    params += [(key, getattr(config, key)) for key in ("axi_width", "max_context", "max_k", "max_n", "top")]
    params += [(f"tlmm.{key}", value) for key, value in vars(config.tlmm).items()]
    return {"cfg": config, "ap_int_max_w": AP_INT_MAX_W, "depth": depth, "params": params,
            "project_name": PROJECT_NAME, "design": design,
            "ip_vendor": HLS_VENDOR, "ip_library": HLS_LIBRARY, "ip_version": HLS_IP_VERSION}


def _sources(config: AcceleratorConfig, design: Design | None) -> dict[str, str]:
    env = _environment()
    context = _context(config, design)
    statics = {**ENGINE_FILES, **(DECODER_FILES if design else {})}
    templates = {**ENGINE_TEMPLATES, **(DECODER_TEMPLATES if design else {})}
    files = {path: _package_text("kernels", name) for path, name in statics.items()}
    files.update({path: env.get_template(name).render(context) for path, name in templates.items()})
    return files


def engine_sources(config: AcceleratorConfig) -> dict[str, str]:
    """The TLMM engine alone, its standalone top and the C-sim bridge, for any engine config (no model)."""
    return _sources(config, None)


def design_sources(design: Design) -> dict[str, str]:
    """The whole design and the C-sim bridge (what tellme.hls.csim compiles): project path -> text."""
    return _sources(design.config, design)


def project_files(design: Design) -> dict[str, str | bytes]:
    """Every file of a project: project path -> text or bytes."""
    env = _environment()
    tlmm_golden, decoder_golden = design.tlmm_golden(), design.decoder_golden()
    context = {**_context(design.config, design), "golden": tlmm_golden, "decoder_golden": decoder_golden}
    files: dict[str, str | bytes] = dict(design_sources(design))
    files.update({path: env.get_template(name).render(context) for path, name in PROJECT_TEMPLATES.items()})
    files["config.json"] = design.config.to_json() + "\n"
    files.update({f"tb/data/tlmm/{name}": data for name, data in tlmm_golden.files().items()})
    files.update({f"tb/data/decoder/{name}": data for name, data in decoder_golden.files().items()})
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
