"""A design folder's manifest.json (`tellme build`): its one schema, written by the build flow and read
and checked against the model by the host.

Both sides live here because the host may not import the generator (tellme.hls): the build flow
(hls/build.py) calls `new_manifest` / `write_manifest`, the host `open_design`. A design is only usable
with the model it was generated for: the DDR image offsets, the KV cache size and the kernel's loop
bounds are all baked into the bitstream, so any mismatch is a one-line UserError rather than garbage
on the board. The layout is documented in bitstreams/README.md.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from tellme.models.atomic import write_atomic
from tellme.models.config import ModelConfig
from tellme.models.ddr_image import DdrLayout
from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder

from .top_interface import TopInterface, interface_from_dict

MANIFEST = "manifest.json"
DESIGN_FORMAT = "tellme-design"
DESIGN_VERSION = 2  # 2: the top's arguments and buffers ("interface"), prefixed argument names
DECODER_TOP = "tellme_top"
# the exported IP's VLNV (run_hls.tcl's config_export pins it; the pynq driver binds to it)
HLS_VENDOR, HLS_LIBRARY, HLS_IP_VERSION = "tellme", "hls", "1.0"
# accelerator fields the host reads itself (the DDR layout, the LM head's side): checked when the manifest is
# read, so a damaged one is refused before the overlay is loaded
HOST_ACCELERATOR_FIELDS = (("weight_ports", int), ("kv_block", int), ("lm_head", str))
# model config fields the bitstream is sized by (the rest, e.g. token ids, is the host's business)
SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta")


def new_manifest(*, design: str, board: str, part: str, board_part: str, clock_mhz: float, top: str,
                 accelerator: dict, ports: dict, interface: dict, model_name: str, model_hash: str,
                 model_config: ModelConfig, max_context: int, estimate: dict) -> dict:
    """The manifest of a design that is written but not built yet (tools, hls and vivado come later)."""
    return {
        "format": DESIGN_FORMAT,
        "version": DESIGN_VERSION,
        "design": design,
        "board": board,
        "part": part,
        "board_part": board_part,
        "clock_mhz": clock_mhz,
        "top": top,
        "bitstream": f"{design}.bit",
        "hwh": f"{design}.hwh",
        "built": False,
        "accelerator": accelerator,
        "ports": ports,
        "interface": interface,
        "registers": None,
        "model": {"name": model_name, "hash": model_hash, "config": dataclasses.asdict(model_config)},
        "max_context": max_context,
        "estimate": estimate,
        "tools": {"vitis_hls": None, "vivado": None},
        "hls": None,
        "vivado": None,
    }


def write_manifest(folder: Path, manifest: dict) -> None:
    """<folder>/manifest.json, atomically; never NaN or Infinity (not JSON: ValueError instead)."""
    write_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False) + "\n")


def is_design_folder(path: Path) -> bool:
    """A folder tellme build wrote (whatever its state)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == DESIGN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class DesignManifest:
    """What the host needs from a design folder: files, the engine layout, the context, the clock, and the
    top's arguments and buffers."""

    path: Path
    name: str
    board: str
    part: str
    top: str
    ip: str  # the accelerator's cell name in the block design (a key of pynq's ip_dict)
    clock_mhz: float
    max_context: int
    model_hash: str
    model_config: dict
    accelerator: dict  # the generator's AcceleratorConfig, as written (the csim backend rebuilds it)
    built: bool
    interface: TopInterface
    vlnv: str  # the accelerator IP's vendor:library:name:version (what the pynq driver binds to)
    registers: dict[str, tuple[int, ...]] | None  # argument -> register words, as the build read them
    decode_ms_estimate: float | None  # hls/perf.py's modelled decode step (mid-context), for the self-test

    @property
    def head_on_pl(self) -> bool:
        """The design computes the int8 LM head (and the host gathers int8 embeddings)."""
        return str(self.accelerator.get("lm_head")).startswith("pl-")

    def layout(self, model: ModelConfig) -> DdrLayout:
        """The DDR layout the bitstream reads, for the model it was built for (ddr_image)."""
        try:
            return DdrLayout(model, int(self.accelerator["weight_ports"]), self.max_context,
                             int(self.accelerator["kv_block"]), self.head_on_pl,
                             self.accelerator["lm_head"] == "pl-int8-twopass")
        except (KeyError, TypeError, ValueError):
            raise UserError(f"design {self.name}: its accelerator parameters are damaged or from another version: "
                            "rebuild the design with tellme build") from None

    @property
    def bitstream(self) -> Path:
        return self.path / f"{self.name}.bit"

    @property
    def hwh(self) -> Path:
        return self.path / f"{self.name}.hwh"


def _field(data: dict, path: str, kind: type | tuple[type, ...], where: Path):
    value: object = data
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise UserError(f"{where} has no {path!r}: not a tellme design manifest (rebuild with tellme build)")
        value = value[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError(f"{where}: {path!r} is {value!r}, not a {getattr(kind, '__name__', kind)}")
    return value


def read_design(path: Path | str) -> DesignManifest:
    """Parse <design>/manifest.json; a missing or malformed manifest is a UserError."""
    path = Path(path)
    if path.is_file() and path.suffix in (".bit", ".json"):
        path = path.parent  # accept the .bit or the manifest itself
    manifest_path = path / MANIFEST
    try:
        data = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is not a design folder (no {MANIFEST}): pass bitstreams/<board>/<design>/") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{manifest_path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != DESIGN_FORMAT:
        raise UserError(f"{manifest_path} is not a {DESIGN_FORMAT} manifest")
    if data.get("version") != DESIGN_VERSION:
        raise UserError(f"{manifest_path} has version {data.get('version')!r}; this host reads version "
                        f"{DESIGN_VERSION}: rebuild the design or upgrade tellme-hls")
    f = manifest_path
    ports = data.get("ports") if isinstance(data.get("ports"), dict) else {}
    top = _field(data, "top", str, f)
    for key, kind in HOST_ACCELERATOR_FIELDS:
        value = _field(data, f"accelerator.{key}", kind, f)
        if kind is int and value < 1:
            raise UserError(f"{f}: 'accelerator.{key}' is {value}: the manifest is damaged (rebuild with tellme build)")
    return DesignManifest(
        path=path,
        name=Path(_field(data, "bitstream", str, f)).stem,
        board=_field(data, "board", str, f),
        part=_field(data, "part", str, f),
        top=top,
        ip=str(ports.get("ip") or f"{top}_0"),
        clock_mhz=float(_field(data, "clock_mhz", (int, float), f)),
        max_context=_field(data, "max_context", int, f),
        model_hash=_field(data, "model.hash", str, f),
        model_config=_field(data, "model.config", dict, f),
        accelerator=_field(data, "accelerator", dict, f),
        built=bool(data.get("built")),
        interface=interface_from_dict(data.get("interface"), str(f)),
        vlnv=str(ports.get("vlnv") or f"{HLS_VENDOR}:{HLS_LIBRARY}:{top}:{HLS_IP_VERSION}"),
        registers=_registers(data.get("registers"), f),
        decode_ms_estimate=_decode_ms(data),
    )


def _registers(value: object, where: Path) -> dict[str, tuple[int, ...]] | None:
    if value is None:
        return None
    try:
        return {str(k): tuple(int(x) for x in v) for k, v in dict(value).items()}  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise UserError(f"{where}: 'registers' is damaged: rebuild the design with tellme build") from None


def _decode_ms(data: dict) -> float | None:
    """The modelled accelerator time of a decode step mid-context (hls/perf.py, recorded by tellme build):
    at position 256 when the context holds it, else the largest position modelled."""
    speed = (data.get("estimate") or {}).get("speed") or {}
    steps = speed.get("decode_ms_accelerator") if isinstance(speed, dict) else None
    if not isinstance(steps, dict) or not steps:
        return None
    key = "256" if "256" in steps else max(steps, key=lambda k: int(k) if k.isdigit() else -1)
    value = steps.get(key)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def check_design(design: DesignManifest, folder: ModelFolder, board: str | None = None, built: bool = True) -> None:
    """Refuse a design for another board or model, or one that cannot hold its context; with built=True
    also one without its bitstream (a dry run or a failed build)."""
    where = f"design {design.name}"
    if design.top != DECODER_TOP:
        raise UserError(f"{where} synthesises {design.top}, not the decoder ({DECODER_TOP}): it cannot run a model")
    if board is not None and board != design.board:
        raise UserError(f"{where} was built for {design.board}, not {board}: pass --board {design.board} "
                        "or a design for this board")
    if design.model_hash != folder.model_hash:
        raise UserError(f"{where} was built for model {design.model_hash[:12]}, --model is {folder.model_hash[:12]} "
                        f"({folder.path}): pass the model it was built for or rebuild with tellme build")
    ours = {k: getattr(folder.config, k) for k in SHAPE_FIELDS}
    diff = [k for k in SHAPE_FIELDS if design.model_config.get(k) != ours[k]]
    if diff:
        k = diff[0]
        raise UserError(f"{where} has {k}={design.model_config.get(k)!r}, the model {ours[k]!r}: "
                        "rebuild the design with tellme build")
    if not 0 < design.max_context <= folder.config.max_position_embeddings:
        raise UserError(f"{where} holds {design.max_context} positions, the model "
                        f"{folder.config.max_position_embeddings}: rebuild the design with tellme build")
    if not 0 < design.clock_mhz <= 1000:
        raise UserError(f"{where} has a clock of {design.clock_mhz} MHz: the manifest is damaged")
    if not built:
        return
    if not design.built:
        raise UserError(f"{where} was never built (a dry run, or the build failed): run tellme build "
                        f"without --dry-run on a machine with Vivado, then copy {design.path} to the board")
    for file in (design.bitstream, design.hwh):
        if not file.is_file():
            raise UserError(f"{where} has no {file.name} in {design.path}: copy the whole design folder")


def open_design(path: Path | str, folder: ModelFolder, board: str | None = None,
                built: bool = True) -> DesignManifest:
    design = read_design(path)
    check_design(design, folder, board, built)
    return design
