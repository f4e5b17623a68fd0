"""Register maps in the formats Vitis HLS and Vivado write (.hwh, x<top>_hw.h), every name form an
argument takes there, and the top interface's rules that keep names from being renamed."""

from __future__ import annotations

import pytest
from hls_formats import hw_header, hwh, layout

from tellme.hls.design import Design
from tellme.host.registers import (
    RegisterError,
    argument_words,
    hwh_module,
    parse_hw_header,
    parse_hwh_registers,
    register_words,
)
from tellme.host.top_interface import Argument, BufferSpec, TopInterface, interface_from_dict
from tellme.models.config import SHAPES
from tellme.models.errors import UserError

ARGS = [("w_ptr", "buffer"), ("k_ptr", "buffer"), ("x_ptr", "buffer"), ("y_ptr", "buffer"),
        ("n_tokens", "scalar"), ("start_pos", "scalar")]
FORMS = {"w_ptr": "single", "k_ptr": "halves", "x_ptr": "renamed", "y_ptr": "renamed_halves",
         "n_tokens": "single", "start_pos": "renamed"}
# where Vitis HLS puts them: ap_return 0x10, pointers 12 bytes apart from 0x18, scalars 8
WORDS = {"w_ptr": (0x18, 0x1C), "k_ptr": (0x24, 0x28), "x_ptr": (0x30, 0x34), "y_ptr": (0x3C, 0x40),
         "n_tokens": (0x48,), "start_pos": (0x50,)}


def test_hwh_excerpt_every_form():
    regs = layout(ARGS, FORMS)
    text = hwh("tellme_top_0", "tellme:hls:tellme_top:1.0", regs)
    registers = parse_hwh_registers(text, "tellme_top_0")
    assert {"CTRL", "ap_return", "w_ptr", "k_ptr_1", "k_ptr_2", "x_ptr_r", "y_ptr_r_1", "y_ptr_r_2",
            "n_tokens", "start_pos_r"} <= set(registers)
    assert registers["w_ptr"]["size"] == 64 and registers["k_ptr_2"]["address_offset"] == 0x28
    assert argument_words(registers, [a for a, _ in ARGS], "test") == WORDS
    info = hwh_module(text, "tellme_top_0")
    assert info["vlnv"] == "tellme:hls:tellme_top:1.0" and info["system.device"] == "xck26"
    assert info["system.package"] == "sfvc784" and info["system.speedgrade"] == "-2LV"


def test_driver_header_excerpt():
    text = hw_header("tellme_top", layout(ARGS, FORMS))
    registers = parse_hw_header(text)
    assert registers["ap_return"] == {"address_offset": 0x10, "size": 32}
    assert registers["k_ptr"] == {"address_offset": 0x24, "size": 64}  # one 64-bit DATA macro per pointer
    assert registers["y_ptr_r"] == {"address_offset": 0x3C, "size": 64}
    assert "ap_ctrl" not in registers and "gie" not in registers
    assert argument_words(registers, [a for a, _ in ARGS], "test") == WORDS


def test_the_real_header_layout_with_renamed_scalars():
    """The layout of a Vitis HLS 2021.1 header for f(int *a, int length, int value): length and value are
    renamed, the pointer is one 64-bit entry followed by a reserved word."""
    text = ("#define XEXAMPLE_CONTROL_ADDR_AP_CTRL       0x00\n#define XEXAMPLE_CONTROL_ADDR_GIE           0x04\n"
            "#define XEXAMPLE_CONTROL_ADDR_A_DATA        0x10\n#define XEXAMPLE_CONTROL_BITS_A_DATA        64\n"
            "#define XEXAMPLE_CONTROL_ADDR_LENGTH_R_DATA 0x1c\n#define XEXAMPLE_CONTROL_BITS_LENGTH_R_DATA 32\n"
            "#define XEXAMPLE_CONTROL_ADDR_VALUE_R_DATA  0x24\n#define XEXAMPLE_CONTROL_BITS_VALUE_R_DATA  32\n")
    registers = parse_hw_header(text)
    assert register_words(registers, "a", "t") == (0x10, 0x14)
    assert register_words(registers, "length", "t") == (0x1C,) and register_words(registers, "value", "t") == (0x24,)


def test_missing_or_clashing_registers_are_errors():
    registers = parse_hwh_registers(hwh("ip", "v:l:n:1.0", layout(ARGS)), "ip")
    with pytest.raises(RegisterError, match="no 'pos'.*rebuild"):
        register_words(registers, "pos", "ip")
    clash = dict(registers, k_ptr={"address_offset": 0x18, "size": 32})
    with pytest.raises(RegisterError, match="share register 0x18"):
        argument_words(clash, ["w_ptr", "k_ptr"], "ip")
    with pytest.raises(RegisterError, match="no module 'other'"):
        parse_hwh_registers(hwh("ip", "v:l:n:1.0", layout(ARGS)), "other")


def _interface(*args: Argument) -> TopInterface:
    return TopInterface(args, (BufferSpec("buf", "state", "uint16", (4, 2)),))


def test_interface_rules():
    ok = _interface(Argument("buf_ptr", "buffer", "buf", "gmem"), Argument("n_tokens", "scalar", "tokens", "control"))
    assert ok.validate() is ok and ok.cma_bytes == 4096 and ok.largest.nbytes == 16
    for bad, words in [
        (Argument("pos", "scalar", "position", "control"), "renamed"),
        (Argument("n", "scalar", "tokens", "control"), "renamed"),
        (Argument("start_r", "scalar", "position", "control"), "renamed"),
        (Argument("k_1", "scalar", "position", "control"), "renamed"),
        (Argument("x_ptr", "buffer", "nothing", "gmem"), "not a buffer"),
        (Argument("seed", "scalar", "seed", "control"), "carries"),
    ]:
        with pytest.raises(ValueError, match=words):
            _interface(Argument("buf_ptr", "buffer", "buf", "gmem"), bad).validate()
    with pytest.raises(ValueError, match="no argument points at"):
        _interface(Argument("n_tokens", "scalar", "tokens", "control")).validate()
    with pytest.raises(UserError, match="damaged"):
        interface_from_dict({"arguments": [{"name": "x"}], "buffers": []}, "manifest.json")
    round_trip = interface_from_dict(ok.to_dict(), "manifest.json")
    assert round_trip == ok


def test_aliasing_arguments_share_a_buffer():
    """Several read masters may point at one buffer (v2's K/V readers): one allocation, several registers."""
    iface = TopInterface(
        (Argument("k_read0", "buffer", "k", "gmem_k0"), Argument("k_read1", "buffer", "k", "gmem_k1"),
         Argument("n_tokens", "scalar", "tokens", "control")),
        (BufferSpec("k", "state", "uint16", (8,)),)).validate()
    assert [a.target for a in iface.pointers] == ["k", "k"] and iface.cma_bytes == 4096


def test_generated_top_matches_its_description():
    design = Design.for_shape(SHAPES["bitnet-0.73b"], "zcu104")
    top = design.top_args
    source = design.sources()["src/top.cpp"]
    signature = source[source.index("int tellme_top("):source.index("{")]
    ports = design.config.weight_ports
    assert ports == 6 and design.config.head_on_pl
    assert [a.name for a in top.args] == [*(f"weights{p}" for p in range(ports)), *(f"kv{p}" for p in range(ports)),
                                          "params", "hidden_in", "kv_out", "results", "n_tokens", "first_pos"]
    for arg in top.args:
        assert arg.declaration in signature and arg.pragma in source
    interface = top.interface
    assert {b.name: b.role for b in interface.buffers} == {
        **{f"weights{p}": "image" for p in range(ports)}, "params": "image", "kv": "state", "hidden_in": "input",
        "logits": "output"}
    # every K/V reader (one per weight port) and the writer alias the one cache: one allocation
    assert [a.name for a in interface.pointers if a.target == "kv"] == [*(f"kv{p}" for p in range(ports)), "kv_out"]
    assert {a.name: a.target for a in interface.scalars} == {"n_tokens": "tokens", "first_pos": "position"}
    # the 0.73B shape at context 2048: K and V of 24 layers x 2048 positions x 16 heads x 96 fp16 values, the
    # largest buffer; one row of logits, the vocabulary padded to whole 16-byte words
    kv = interface.buffer("kv")
    assert kv.dtype == "uint16" and kv.shape == (24 * 2 * 2048 * 16 * 96,) and kv.nbytes == kv.shape[0] * 2
    assert interface.largest == kv and interface.buffer("logits").shape == (1, 32004)
    assert interface.buffer("hidden_in").shape == (2048, 1536)
    assert interface.cma_bytes == sum(b.pages_bytes for b in interface.buffers) > interface.largest.nbytes


def test_generated_top_with_the_head_on_the_host():
    """lm_head=host-float32: the results are the hidden states of every token, no LM head in the stripes."""
    design = Design.for_shape(SHAPES["bitnet-0.73b"], "zcu104", ["lm_head=host-float32"])
    interface = design.top_args.interface
    assert not design.config.head_on_pl
    assert next(a for a in interface.arguments if a.name == "results").target == "hidden_out"
    assert {b.name: (b.role, b.shape) for b in interface.with_role("output")} == {
        "hidden_out": ("output", (2048, 1536))}
    assert "logits" not in {b.name for b in interface.buffers}
    assert design.layout.head_rows_per_stripe == 0
    assert interface.buffer("weights0").shape == (design.layout.head_offset * 16,)
