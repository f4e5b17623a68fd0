"""Accelerator parameters: one validated dataclass and `--set key=value` overrides. Every number in a
generated config.h comes from here and the model's shape (hls/design.py derives the sizes)."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from tellme.models.errors import UserError

LM_HEADS = ("pl-int8", "pl-int8-twopass", "host-float32")
STORAGES = ("uram", "bram")
ELEMENTWISE_LANES = (3, 15)  # one group of three a cycle, or five (the activations' sets of five groups)
FLOAT_ADDERS = ("dsp", "fabric")
MAX_PORTS = 8  # the kernels take eight stripe pointers (hls/kernels/prefetch.h)
HALVES_PER_WORD = 8


@dataclass(frozen=True)
class TlmmParams:
    """The table-lookup matmul engine (hls/kernels/tlmm.h)."""

    token_lanes: int = 2  # TP: tokens looked up per weight word in prefill
    tile_words: int = 4096  # tile buffer depth per stripe: the weights a prefill block replays
    table: str = "half"  # half: 14 entries a group, read with a negation; full: all 27 (TeLLMe's)

    def validate(self) -> None:
        if self.table not in ("half", "full"):
            raise UserError(f"tlmm.table={self.table!r}: use half or full")
        if not 1 <= self.token_lanes <= 4:
            raise UserError(f"tlmm.token_lanes={self.token_lanes}: use 1..4 tokens per weight word")
        if not 64 <= self.tile_words <= 65536:
            raise UserError(f"tlmm.tile_words={self.tile_words}: use 64..65536 words per stripe")


@dataclass(frozen=True)
class AcceleratorConfig:
    """Everything a generated design is sized by, besides the model's shape."""

    board: str
    part: str
    clock_mhz: float
    weight_ports: int = 6  # P: weight stripes, each on its own m_axi master (HP/HPC ports)
    max_context: int = 1024  # positions the KV cache holds (capped by the model's)
    prefill_block: int = 16  # B: tokens per block; each weight word serves all of them
    kv_block: int = 16  # R: K/V positions per attention block
    attention_lanes: int = 24  # A: multiply lanes of attention's QK and PV (a divisor of 8P)
    # pl-int8: the int8 head on the PL, whole rows; pl-int8-twopass: in two passes (every row's high
    # nibbles, then the best head_candidates rows whole); host-float32: the host's float32 head.
    # Left unset, hls/design.py sized_config picks one of the PL heads for the model (default_head).
    lm_head: str = "pl-int8"
    head_candidates: int = 16  # rows the two-pass head scores with their whole int8 row
    fifo_depth: int = 4096  # words per stripe FIFO between prefetcher and engine
    elementwise_lanes: int = 15  # V: values a cycle of the norms (15: five groups of three; 3: one group)
    float_adders: str = "dsp"  # dsp: fp32 adders on DSPs (Vitis HLS's default); fabric: in LUTs (config_op)
    storage: str = "uram"  # memory of the tile buffers and stripe FIFOs: uram, or bram on Zynq-7000
    top: str = "tellme_top"
    tlmm: TlmmParams = field(default_factory=TlmmParams)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        self.tlmm.validate()
        if not 0 < self.clock_mhz <= 1000:
            raise UserError(f"clock_mhz={self.clock_mhz}: use a clock in (0, 1000] MHz")
        if not 2 <= self.weight_ports <= MAX_PORTS or self.weight_ports % 2:
            raise UserError(f"weight_ports={self.weight_ports}: use an even number of ports, 2..{MAX_PORTS} "
                            "(gate and up rows travel in pairs)")
        if not 1 <= self.prefill_block <= 64:
            raise UserError(f"prefill_block={self.prefill_block}: use 1..64 tokens per block")
        if not 1 <= self.kv_block <= 64:
            raise UserError(f"kv_block={self.kv_block}: use 1..64 positions per attention block")
        chunk = HALVES_PER_WORD * self.weight_ports
        if self.attention_lanes < 1 or chunk % self.attention_lanes:
            raise UserError(f"attention_lanes={self.attention_lanes}: use a divisor of {chunk} "
                            f"(8 x weight_ports fp16 values arrive per cycle)")
        if self.lm_head not in LM_HEADS:
            raise UserError(f"lm_head={self.lm_head!r}: use one of {', '.join(LM_HEADS)}")
        if not 1 <= self.head_candidates <= 64:
            raise UserError(f"head_candidates={self.head_candidates}: use 1..64 rows")
        if not 16 <= self.fifo_depth <= 65536:
            raise UserError(f"fifo_depth={self.fifo_depth}: use 16..65536 words")
        if self.elementwise_lanes not in ELEMENTWISE_LANES:
            raise UserError(f"elementwise_lanes={self.elementwise_lanes}: use one of "
                            f"{', '.join(map(str, ELEMENTWISE_LANES))} (whole groups of three a cycle)")
        if self.float_adders not in FLOAT_ADDERS:
            raise UserError(f"float_adders={self.float_adders!r}: use one of {', '.join(FLOAT_ADDERS)}")
        if self.storage not in STORAGES:
            raise UserError(f"storage={self.storage!r}: use one of {', '.join(STORAGES)}")
        if self.max_context < 1:
            raise UserError(f"max_context={self.max_context}: must be positive")
        if self.top != "tellme_top":
            raise UserError(f"top={self.top!r}: the design's top is tellme_top")

    @property
    def clock_period_ns(self) -> float:
        return round(1000.0 / self.clock_mhz, 3)

    @property
    def chunk(self) -> int:
        """fp16 values the weight ports deliver per cycle (one 128-bit word each)."""
        return HALVES_PER_WORD * self.weight_ports

    @property
    def head_on_pl(self) -> bool:
        return self.lm_head.startswith("pl-")

    @property
    def head_twopass(self) -> bool:
        """The head streams high nibbles, then rescores the best rows (hls/kernels/lm_head.h)."""
        return self.lm_head == "pl-int8-twopass"

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, typing.Any]) -> AcceleratorConfig:
        """Inverse of to_dict (a project's config.json, a design manifest's "accelerator"). Keys or
        values this version does not know are a UserError: the file comes from elsewhere or is damaged."""
        fields = dict(data)
        try:
            fields["tlmm"] = TlmmParams(**fields.get("tlmm", {}))
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise UserError(
                f"accelerator parameters not understood ({exc}): regenerate the project or design with this "
                "version of tellme"
            ) from None


def override_keys(config: AcceleratorConfig) -> list[str]:
    """Every key `--set` accepts, e.g. clock_mhz, tlmm.token_lanes."""
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{f.name}.{sub.name}" for sub in dataclasses.fields(value)]
        elif f.name not in ("board", "part"):
            keys.append(f.name)
    return keys


def _parse_value(key: str, text: str, kind: type) -> typing.Any:
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind is float:
            return float(text)
        if kind is int:
            return int(text, 0)
        return text
    except ValueError:
        raise UserError(f"--set {key}={text}: expected {kind.__name__}") from None


def _field_types(obj: object) -> dict[str, type]:
    return typing.get_type_hints(type(obj))


def parse_overrides(config: AcceleratorConfig, items: list[str]) -> dict[str, typing.Any]:
    """`key=value` strings -> {key: typed value}, keys as override_keys lists them."""
    valid = override_keys(config)
    out: dict[str, typing.Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"--set {item}: write KEY=VALUE, e.g. --set tlmm.token_lanes=2")
        if key not in valid:
            raise UserError(f"--set {key}: unknown parameter; known: {', '.join(valid)}")
        head, _, sub = key.partition(".")
        owner = getattr(config, head) if sub else config
        out[key] = _parse_value(key, text.strip(), _field_types(owner)[sub or head])
    return out


def apply_overrides(config: AcceleratorConfig, items: list[str] | dict[str, typing.Any]) -> AcceleratorConfig:
    """Apply `key=value` strings (or parsed {key: value}) and validate the result."""
    values = parse_overrides(config, items) if isinstance(items, list) else items
    top: dict[str, typing.Any] = {}
    nested: dict[str, dict[str, typing.Any]] = {}
    for key, value in values.items():
        head, _, sub = key.partition(".")
        if sub:
            nested.setdefault(head, {})[sub] = value
        else:
            top[head] = value
    for head, sub_values in nested.items():
        top[head] = dataclasses.replace(getattr(config, head), **sub_values)
    return dataclasses.replace(config, **top)
