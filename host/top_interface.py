"""The accelerator top's arguments and the named buffers they point at: the one contract between the
generator, which writes it into a design's manifest.json ("interface"), and the board host, which
allocates every named buffer once, fills it and writes every argument's register from it.

    "interface": {
      "arguments": [{"name": "weights0", "kind": "buffer", "buffer": "weights0", "bundle": "gmem0"}, ...,
                    {"name": "kv0", "kind": "buffer", "buffer": "kv", "bundle": "gmem0"}, ...,
                    {"name": "n_tokens", "kind": "scalar", "value": "tokens", "bundle": "control"}, ...],
      "buffers": [{"name": "weights0", "role": "image", "dtype": "uint8", "shape": [N]}, ...]
    }

Arguments are in the C signature's order. Several arguments may name one buffer (v2's read masters
kv0..kv{P-1} and its writer kv_out all point at the one K/V cache); a buffer's `role` says how the host
fills it: "image" (static content from the DDR image, uploaded once: the weight stripes and the params),
"state" (zeroed once, then the accelerator's: the K/V cache), "input" (rows written per call), "output"
(rows read back per call: hidden states, or one row of logits). A scalar's `value` says what it carries
("tokens": the call's token count, "position": its first position). numpy only: the board imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tellme.models.errors import UserError

ROLES = ("image", "state", "input", "output")
SCALAR_VALUES = ("tokens", "position")
KINDS = ("buffer", "scalar")
HIDDEN_IN, HIDDEN_OUT = "hidden_in", "hidden_out"  # the buffers Device.run writes and reads
PAGE = 4096  # contiguous allocations are whole pages
# Vitis HLS renames an argument that clashes with an HDL keyword or attribute (pos -> pos_r) and names the
# halves of a 64-bit register x_1, x_2; a name of that shape could be mistaken for another's register.
_C_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REGISTER_SUFFIX = re.compile(r"_(r|\d+)$")
# names seen renamed by Vitis HLS, or VHDL attributes / Verilog keywords it may rename (facts note, section 9)
RENAMED_NAMES = frozenset({
    "in", "out", "input", "output", "inout", "length", "value", "image", "pos", "val", "range", "high", "low",
    "left", "right", "event", "n", "reg", "wire", "signal", "begin", "end", "type", "buffer", "return",
})


@dataclass(frozen=True)
class BufferSpec:
    """One contiguous DDR buffer the host allocates: numpy dtype and shape (rows first for input/output)."""

    name: str
    role: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def pages_bytes(self) -> int:
        """What the allocation takes from CMA: whole pages."""
        return -(-self.nbytes // PAGE) * PAGE

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Argument:
    """One argument of the top, in signature order: a pointer into a named buffer, or a scalar."""

    name: str  # the C name, and so the base name of its s_axilite register
    kind: str  # "buffer" or "scalar"
    target: str  # the buffer's name, or the scalar's value ("tokens", "position")
    bundle: str  # its m_axi bundle, or the s_axilite bundle of a scalar

    def to_dict(self) -> dict:
        key = "buffer" if self.kind == "buffer" else "value"
        return {"name": self.name, "kind": self.kind, key: self.target, "bundle": self.bundle}


@dataclass(frozen=True)
class TopInterface:
    arguments: tuple[Argument, ...]
    buffers: tuple[BufferSpec, ...]

    def buffer(self, name: str) -> BufferSpec:
        return next(b for b in self.buffers if b.name == name)

    @property
    def pointers(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.arguments if a.kind == "buffer")

    @property
    def scalars(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.arguments if a.kind == "scalar")

    def with_role(self, *roles: str) -> tuple[BufferSpec, ...]:
        return tuple(b for b in self.buffers if b.role in roles)

    @property
    def cma_bytes(self) -> int:
        """Contiguous memory the host allocates for the design: every buffer, in whole pages."""
        return sum(b.pages_bytes for b in self.buffers)

    @property
    def largest(self) -> BufferSpec:
        return max(self.buffers, key=lambda b: b.nbytes)

    def to_dict(self) -> dict:
        return {"arguments": [a.to_dict() for a in self.arguments], "buffers": [b.to_dict() for b in self.buffers]}

    def validate(self, where: str = "the top") -> TopInterface:
        """ValueError for an interface the host could not bind: unknown kinds, roles or values, dangling
        buffers, names a tool would rename or that look like another argument's register."""
        names = [b.name for b in self.buffers]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: buffer names repeat: {names}")
        for b in self.buffers:
            if b.role not in ROLES:
                raise ValueError(f"{where}: buffer {b.name!r} has role {b.role!r}, not one of {ROLES}")
            np.dtype(b.dtype)
            if not b.shape or any(not isinstance(d, int) or d < 1 for d in b.shape):
                raise ValueError(f"{where}: buffer {b.name!r} has shape {b.shape}")
        args = [a.name for a in self.arguments]
        if len(set(args)) != len(args):
            raise ValueError(f"{where}: argument names repeat: {args}")
        for a in self.arguments:
            if not _C_NAME.match(a.name) or _REGISTER_SUFFIX.search(a.name) or a.name in RENAMED_NAMES:
                raise ValueError(f"{where}: argument {a.name!r} may be renamed by Vitis HLS or read as another "
                                 "argument's register (use a lower-case name not ending in _r or _<digit>)")
            if a.kind not in KINDS:
                raise ValueError(f"{where}: argument {a.name!r} has kind {a.kind!r}")
            if a.kind == "buffer" and a.target not in names:
                raise ValueError(f"{where}: argument {a.name!r} points at {a.target!r}, which is not a buffer")
            if a.kind == "scalar" and a.target not in SCALAR_VALUES:
                raise ValueError(f"{where}: scalar {a.name!r} carries {a.target!r}, not one of {SCALAR_VALUES}")
        unused = set(names) - {a.target for a in self.pointers}
        if unused:
            raise ValueError(f"{where}: no argument points at buffer(s) {sorted(unused)}")
        return self


def interface_from_dict(data: object, where: str) -> TopInterface:
    """A manifest's "interface", checked; a damaged one is a one-line UserError."""
    try:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        arguments = tuple(
            Argument(str(a["name"]), str(a["kind"]), str(a["buffer"] if a["kind"] == "buffer" else a["value"]),
                     str(a["bundle"]))
            for a in data["arguments"]
        )
        buffers = tuple(BufferSpec(str(b["name"]), str(b["role"]), str(b["dtype"]), tuple(b["shape"]))
                        for b in data["buffers"])
        return TopInterface(arguments, buffers).validate(where)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: its top interface is damaged or from another version ({exc}): "
                        "rebuild the design with tellme build") from None
