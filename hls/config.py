"""Accelerator parameters: one validated dataclass, the derived sizes the kernels and the weight layout
share, and `--set key=value` overrides. Every number in the generated config.h comes from here."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from tellme.models import packing
from tellme.models.ddr_image import LineLayout
from tellme.models.errors import UserError

AP_INT_MAX_W = 4096  # widest ap_uint allowed; t <= 64 keeps every kernel type within it (test_config_*)
AXI_WIDTHS = (32, 64, 128, 256, 512)
TABLE_MODES = ("full", "half")
WEIGHT_STORAGES = ("uram", "bram")
TOPS = ("tellme_top", "tellme_tlmm_top")  # the whole decoder; the TLMM engine alone


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class TlmmParams:
    """The table-lookup matmul engine. TeLLMe's choices are the defaults (full table, T=28)."""

    g: int = packing.G  # activations per lookup group; the index format only encodes 3
    table: str = "full"  # "full": 27 entries per group; "half": 14 entries + sign logic
    t: int = packing.T  # indices per index vector (5*T bits)
    q: int = 8  # index vectors read per cycle (independent weight banks)
    weight_storage: str = "uram"  # weight buffer memory: "uram" or "bram"
    weight_buffer_depth: int = 4096  # index vectors per weight bank

    def validate(self) -> None:
        if self.g != 3:
            raise UserError(f"tlmm.g={self.g}: only 3 is supported (the group index encodes 3 weights)")
        if self.table not in TABLE_MODES:
            raise UserError(f"tlmm.table={self.table!r}: use one of {', '.join(TABLE_MODES)}")
        if not 1 <= self.t <= 64:
            raise UserError(f"tlmm.t={self.t}: use 1..64 indices per vector (TeLLMe uses 28)")
        if not 1 <= self.q <= 64:
            raise UserError(f"tlmm.q={self.q}: use 1..64 index vectors per cycle")
        if self.weight_storage not in WEIGHT_STORAGES:
            raise UserError(
                f"tlmm.weight_storage={self.weight_storage!r}: use one of {', '.join(WEIGHT_STORAGES)}"
            )
        if self.weight_buffer_depth < 1:
            raise UserError(f"tlmm.weight_buffer_depth={self.weight_buffer_depth}: must be positive")


@dataclass(frozen=True)
class AcceleratorConfig:
    """Everything a generated design is sized by. max_k/max_n bound the layer shapes the buffers hold."""

    board: str
    part: str
    clock_mhz: float
    axi_width: int = 128  # bits per m_axi beat
    max_context: int = 1024  # positions the KV cache holds (used by the decoder top)
    max_k: int = 4096  # largest in_features of any layer
    max_n: int = 4096  # largest out_features of any layer
    prefill_block: int = 8  # tokens per prefill block: each weight tile serves all of them
    attention_pes: int = 4  # query PEs of prefill attention (N_pe): queries per K/V stream
    top: str = "tellme_top"  # the synthesised top: tellme_top (decoder) or tellme_tlmm_top (engine)
    tlmm: TlmmParams = field(default_factory=TlmmParams)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        self.tlmm.validate()
        if not 0 < self.clock_mhz <= 1000:
            raise UserError(f"clock_mhz={self.clock_mhz}: use a clock in (0, 1000] MHz")
        if self.axi_width not in AXI_WIDTHS:
            raise UserError(f"axi_width={self.axi_width}: use one of {', '.join(map(str, AXI_WIDTHS))}")
        if not 1 <= self.prefill_block <= 64:
            raise UserError(f"prefill_block={self.prefill_block}: use 1..64 tokens per prefill block")
        if not 1 <= self.attention_pes <= self.prefill_block:
            raise UserError(
                f"attention_pes={self.attention_pes}: use 1..prefill_block ({self.prefill_block}) query PEs"
            )
        for name in ("max_context", "max_k", "max_n"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be positive")
        if self.top not in TOPS:
            raise UserError(f"top={self.top!r}: use one of {', '.join(TOPS)}")
        if self.tile_rows < 1:
            raise UserError(
                f"tlmm.weight_buffer_depth={self.tlmm.weight_buffer_depth} cannot hold one row of "
                f"max_k={self.max_k} ({self.max_cycles} vectors per bank): raise it to at least "
                f"{self.max_cycles}"
            )

    # --- sizes derived from the parameters (the generated config.h states them all) ---
    @property
    def clock_period_ns(self) -> float:
        return round(1000.0 / self.clock_mhz, 3)

    @property
    def half_table(self) -> bool:
        return self.tlmm.table == "half"

    @property
    def chunk(self) -> int:
        """Activations covered by one index vector (G*T)."""
        return self.tlmm.g * self.tlmm.t

    @property
    def gear_bits(self) -> int:
        """Width of the activation loader's shift register (one vector's bytes plus one AXI word)."""
        return (self.chunk + self.axi_width // 8) * 8

    @property
    def layout(self) -> LineLayout:
        """The weight line layout (tellme.models.ddr_image), which the board host builds images with too."""
        return LineLayout(t=self.tlmm.t, q=self.tlmm.q, axi_width=self.axi_width)

    @property
    def vector_bytes(self) -> int:
        return self.layout.vector_bytes

    @property
    def line_words(self) -> int:
        """AXI words per line of Q index vectors (one lookup cycle)."""
        return self.layout.line_words

    @property
    def line_bytes(self) -> int:
        return self.layout.line_bytes

    def vectors(self, k: int) -> int:
        """Index vectors per row for in_features k."""
        return _ceil_div(k, self.chunk)

    def cycles(self, k: int) -> int:
        """Lookup cycles (lines) per row for in_features k."""
        return self.layout.cycles(k)

    @property
    def max_cycles(self) -> int:
        return self.cycles(self.max_k)

    @property
    def tile_rows(self) -> int:
        """Rows the weight buffer holds at max_k."""
        return self.tlmm.weight_buffer_depth // self.max_cycles

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
    """Every key `--set` accepts, e.g. clock_mhz, tlmm.q."""
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{f.name}.{sub.name}" for sub in dataclasses.fields(value)]
        elif f.name != "board":
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


def apply_overrides(config: AcceleratorConfig, items: list[str]) -> AcceleratorConfig:
    """Apply `key=value` strings (keys as override_keys lists) and validate the result."""
    top: dict[str, typing.Any] = {}
    nested: dict[str, dict[str, typing.Any]] = {}
    valid = override_keys(config)
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"--set {item}: write KEY=VALUE, e.g. --set tlmm.q=8")
        if key not in valid:
            raise UserError(f"--set {key}: unknown parameter; known: {', '.join(valid)}")
        head, _, sub = key.partition(".")
        if sub:
            owner = getattr(config, head)
            nested.setdefault(head, {})[sub] = _parse_value(key, text.strip(), _field_types(owner)[sub])
        else:
            top[head] = _parse_value(key, text.strip(), _field_types(config)[head])
    for head, values in nested.items():
        top[head] = dataclasses.replace(getattr(config, head), **values)
    return dataclasses.replace(config, **top)
