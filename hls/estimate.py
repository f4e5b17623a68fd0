"""`tellme estimate`: a design's modelled speed (hls/perf.py) and fit (hls/fit.py) as one report: a short
table for the terminal, or the JSON below (`--json`), and beside a built design's reports (`--design`).

    {"shape": {...}, "board": str, "clock_mhz": float, "decode_tok_s": {"64": x, ...}, "prefill_tok_s": {...},
     "ttft_s": {...}, "bytes_per_token": {"weights": n, "lm_head": n, "kv_per_position": n},
     "bound_tok_s": {"256": x}, "fits": bool, "resources": {"LUT": [need, have], ...},
     "memory": {"cma": [need, have], "largest_buffer": [...], "host_ram": [...]}, "bottleneck": str,
     "model": "hls/perf.py vN"}

Everything in it is modelled, never measured; the JSON says which model made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from tellme.host.design_manifest import SHAPE_FIELDS
from tellme.models.config import ModelConfig, config_from_hf, named_shape
from tellme.models.errors import UserError

from .config import AcceleratorConfig

if TYPE_CHECKING:
    from .design import Design

SHAPE_KEYS = (*SHAPE_FIELDS, "max_position_embeddings", "tie_word_embeddings")


def design_for(model: str | None, config: str | None, shape: str | None, board: str,
               overrides: list[str]) -> Design:
    """The design `tellme estimate` describes: a model folder, a Hugging Face config.json, a named shape
    (at most one of them; none: the bundled model)."""
    from tellme.models.default_model import resolve_model_dir

    from .design import Design

    given = [name for name, value in (("--model", model), ("--config", config), ("--shape", shape)) if value]
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)}: give one of --model, --config and --shape")
    if shape:
        return Design.for_shape(named_shape(shape), board, overrides, name=shape)
    if config:
        path = Path(config)
        try:
            hf = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{path}: not a readable JSON config ({exc})") from None
        return Design.for_shape(config_from_hf(hf), board, overrides, name=path.parent.name or path.stem)
    return Design.for_model(resolve_model_dir(model), board, overrides, verify=False)


def estimate_report(design: Design) -> dict:
    """The report's JSON (the keys in the module docstring, nothing else)."""
    speed, fit = design.speed(), design.fit()
    shape = {key: getattr(design.model, key) for key in SHAPE_KEYS}
    return {
        "shape": {"name": design.name, **shape},
        "board": design.config.board,
        "clock_mhz": design.config.clock_mhz,
        "decode_tok_s": speed.decode_tok_s,
        "prefill_tok_s": speed.prefill_tok_s,
        "ttft_s": speed.ttft_s,
        "bytes_per_token": speed.bytes_per_token,
        "bound_tok_s": speed.bound_tok_s,
        "fits": fit.fits,
        "resources": fit.resources_dict(),
        "memory": fit.memory_dict(),
        "bottleneck": speed.bottleneck,
        "model": speed.model,
    }


def describe_report(design: Design, report: dict) -> str:
    """The short table `tellme estimate` prints."""
    cfg, fit = design.config, design.fit()
    lines = [
        f"{design.name} on {cfg.board} at {cfg.clock_mhz:g} MHz: modelled ({report['model']}, hls/fit.py), "
        "not measured",
        f"  design        {cfg.weight_ports} weight ports, prefill block {cfg.prefill_block}, "
        f"{cfg.tlmm.token_lanes} token lane(s), {cfg.attention_lanes} attention lanes, LM head {cfg.lm_head}, "
        f"context {design.context}",
        "  decode        " + ", ".join(f"{v:.1f} tok/s at {k}" for k, v in report["decode_tok_s"].items()),
        "  prefill       " + ", ".join(f"{k} tokens {v:.0f} tok/s, TTFT {report['ttft_s'][k]:.3f} s"
                                       for k, v in report["prefill_tok_s"].items()),
        "  DDR bound     " + ", ".join(f"{v:.1f} tok/s at {k}" for k, v in report["bound_tok_s"].items()),
        f"  per token     weights {report['bytes_per_token']['weights'] / 1e6:.1f} MB, LM head "
        f"{report['bytes_per_token']['lm_head'] / 1e6:.1f} MB, K/V {report['bytes_per_token']['kv_per_position']:,} "
        "bytes a position",
        f"  bottleneck    {report['bottleneck']}",
    ]
    for name, (need, have) in report["resources"].items():
        lines.append(f"  {name:<13} {need:>12,.0f} of {have:>9,.0f}  {need / have:4.0%}" if have else
                     f"  {name:<13} {need:>12,.0f} of {have:>9,}")
    for name, (need, have) in report["memory"].items():
        lines.append(f"  {name:<13} {need / 2**20:>9,.1f} MiB of {have / 2**20:,.0f} MiB")
    verdict = "fits" if report["fits"] else f"DOES NOT FIT: {fit.advice}"
    lines.append(f"  verdict       {verdict}")
    lines += [f"  warning       {w}" for w in fit.warnings]
    return "\n".join(lines)


def design_from_folder(path: Path) -> tuple[Design, dict]:
    """The Design a design folder (tellme build) was made from, rebuilt from its manifest, and the manifest."""
    from tellme.host.design_manifest import MANIFEST, is_design_folder

    from .design import Design

    if not is_design_folder(path):
        raise UserError(f"{path} is not a design folder (no {MANIFEST} from tellme build)")
    manifest = json.loads((path / MANIFEST).read_text())
    try:
        model = ModelConfig.from_dict(manifest["model"]["config"], where=f"{path / MANIFEST}: model config")
        config = AcceleratorConfig.from_dict(manifest["accelerator"])
    except (KeyError, TypeError):
        raise UserError(f"{path / MANIFEST} is damaged: rebuild the design with tellme build") from None
    return Design(manifest["model"].get("name", path.name), config, model), manifest


def reported(path: Path, manifest: dict) -> dict:
    """csynth and Vivado figures of a design folder: from its manifest once built, else from the reports
    a partial build left (Vitis HLS's csynth.xml, Vivado's utilization report)."""
    from .reports import ReportError, parse_csynth_xml, parse_utilization

    out = {"hls": manifest.get("hls"), "vivado": (manifest.get("vivado") or {}).get("utilization")}
    try:
        if out["hls"] is None:
            found = sorted(path.glob("hls/**/syn/report/csynth.xml"))
            out["hls"] = parse_csynth_xml(found[0]) if found else None
        if out["vivado"] is None and (path / "vivado" / "reports" / "utilization.rpt").is_file():
            out["vivado"] = parse_utilization(path / "vivado" / "reports" / "utilization.rpt")
    except ReportError as exc:
        raise UserError(f"{path}: {exc}") from None
    return out


def compare_report(design: Design, manifest: dict, figures: dict) -> str:
    """Modelled against reported, side by side."""
    from .perf import Model

    fit = design.fit()
    hls, vivado = figures["hls"], figures["vivado"]
    if hls is None and vivado is None:
        raise UserError(f"{design.name}: no csynth or implementation report in the design folder yet: run "
                        "tellme build (without --dry-run) first")
    keys = {"LUT": "lut", "FF": "ff", "DSP": "dsp", "BRAM36": "bram", "URAM": "uram"}
    lines = [f"{design.name} on {design.config.board}: modelled (hls/fit.py, hls/perf.py) against reported",
             f"  {'':<8} {'modelled':>12} {'csynth (IP)':>14} {'Vivado (design)':>16}"]
    for name, need in fit.resources_dict().items():
        h = (hls or {}).get("resources", {}).get(keys[name])
        v = (vivado or {}).get("used", {}).get(keys[name])
        lines.append(f"  {name:<8} {need[0]:>12,.0f} {_figure(h):>14} {_figure(v):>16}")
    if hls is not None:
        worst = hls.get("latency_cycles", {}).get("worst")
        model = Model(design).call_cycles(design.context, 0)
        lines.append(f"  latency of a whole-context prefill (the trip-count maxima csynth reports): modelled "
                     f"{model:,.0f} cycles, csynth worst case {_figure(worst)} cycles")
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"
