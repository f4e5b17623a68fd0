"""`tellme build`: fit estimates, the generated TCL run through tclsh against stand-ins for the Vivado and
Vitis HLS commands, the report parsers on fixtures in the tools' formats, and the whole orchestration
end to end with fake `vitis_hls` / `vivado` executables (tclsh + the same stand-ins) on PATH."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hls_formats import hw_header, hwh, layout

from tellme.hls.bd import assign_ports, parse_interfaces
from tellme.hls.boards import BOARDS
from tellme.hls.design import Design
from tellme.hls.reports import ReportError, parse_csynth_xml, parse_timing_summary, parse_utilization
from tellme.hls.xilinx_tools import HlsTool, check_tools, find_hls
from tellme.host.cli import main
from tellme.models.config import SHAPES, ModelConfig
from tellme.models.default_model import resolve_model_dir
from tellme.models.errors import UserError

REPORTS = Path(__file__).parent / "data" / "reports"
TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed")

# Stand-ins for the Vivado / Vitis HLS Tcl commands the scripts use. Each records its call (tab-separated)
# in $TELLME_TCL_LOG; cells, pins and files are checked so a typo or a wrong order fails here, and
# any other command goes to `unknown`, which fails loudly. The "tool" runs the script named by -f
# (vitis_hls) or -source (vivado).
STUBS = r"""
set ::log [open $::env(TELLME_TCL_LOG) a]
set ::cells {}
set ::bd ""
proc record {args} { puts $::log [join $args "\t"]; flush $::log }
proc unknown {args} { record UNKNOWN {*}$args; error "stand-in: unknown command [lindex $args 0]" }
proc need_cell {path} {
    set cell [lindex [split $path /] 0]
    if {$cell ni $::cells} { error "stand-in: no cell $cell (for $path)" }
    return $path
}
proc existing_files {args} {
    set skip 0
    foreach a $args {
        if {$skip} { set skip 0; continue }
        if {$a in {-cflags -fileset -csimflags}} { set skip 1; continue }
        if {[string match -* $a]} { continue }
        if {![file exists $a]} { error "stand-in: add_files of a missing file $a" }
    }
}
proc touch {path} { file mkdir [file dirname $path]; close [open $path w] }
# --- Vivado ---
proc version {args} { return 2023.2 }
proc get_param {name} { return {} }
proc set_param {args} { record set_param {*}$args }
proc get_boards {args} {
    record get_boards {*}$args
    if {[info exists ::env(TELLME_NO_CARRIER)]} { return {} }
    return [string map {"*" ""} [lindex $args end]]
}
proc write_hw_platform {args} {
    record write_hw_platform {*}$args
    touch [lindex $args [expr {[lsearch -exact $args -file] + 1}]]
}
proc create_project {args} { record create_project {*}$args; set ::prj_dir [lindex $args 2]; file mkdir $::prj_dir }
proc get_board_parts {args} {
    record get_board_parts {*}$args
    return [string map {"*:" "tellme.test:" ":*" ":part0:9.9"} [lindex $args end]]
}
proc current_project {args} { return prj }
proc set_property {args} { record set_property {*}$args }
proc update_ip_catalog {args} { record update_ip_catalog {*}$args }
proc get_ipdefs {args} { record get_ipdefs {*}$args; return "xilinx.com:hls:[lindex [lindex $args end] 2]:1.0" }
proc create_bd_design {name} { record create_bd_design $name; set ::bd $name }
proc create_bd_cell {args} {
    record create_bd_cell {*}$args
    if {$::bd eq ""} { error "stand-in: create_bd_cell before create_bd_design" }
    lappend ::cells [lindex $args end]
    return [lindex $args end]
}
proc apply_bd_automation {args} { record apply_bd_automation {*}$args }
proc get_bd_cells {path} { return [need_cell $path] }
proc get_bd_pins {path} { return [need_cell $path] }
proc get_bd_intf_pins {path} { return [need_cell $path] }
proc get_bd_addr_spaces {path} { return [need_cell $path] }
proc get_bd_addr_segs {path} { return [need_cell $path] }
proc connect_bd_net {args} { record connect_bd_net {*}$args }
proc connect_bd_intf_net {args} { record connect_bd_intf_net {*}$args }
proc assign_bd_address {args} { record assign_bd_address {*}$args }
proc validate_bd_design {args} { record validate_bd_design {*}$args }
proc save_bd_design {args} { record save_bd_design {*}$args }
proc get_files {args} { return [file join $::prj_dir [lindex $args end]] }
proc make_wrapper {args} {
    record make_wrapper {*}$args
    set wrapper [file join $::prj_dir hdl ${::bd}_wrapper.v]
    touch $wrapper
    return $wrapper
}
proc add_files {args} { record add_files {*}$args; existing_files {*}$args }
proc current_fileset {args} { return sources_1 }
proc update_compile_order {args} { record update_compile_order {*}$args }
proc get_runs {name} { return $name }
proc launch_runs {args} {
    record launch_runs {*}$args
    if {[lindex $args 0] eq "impl_1"} {
        touch [file join $::prj_dir $::bd.runs impl_1 ${::bd}_wrapper.bit]
        set hwh [file join $::prj_dir $::bd.gen sources_1 bd $::bd hw_handoff $::bd.hwh]
        touch $hwh
        if {[info exists ::env(TELLME_HWH)]} { file copy -force $::env(TELLME_HWH) $hwh }
    }
}
proc wait_on_run {args} { record wait_on_run {*}$args }
proc get_property {name object} {
    switch -- $name {
        PROGRESS { return "100%" }
        DIRECTORY { return [file join $::prj_dir $::bd.runs $object] }
        default { return "stand-in-$name" }
    }
}
proc open_run {args} { record open_run {*}$args }
proc report_utilization {args} {
    record report_utilization {*}$args
    file copy -force $::env(TELLME_UTILIZATION_RPT) [lindex $args end]
}
proc report_timing_summary {args} {
    record report_timing_summary {*}$args
    file copy -force $::env(TELLME_TIMING_RPT) [lindex $args end]
}
# --- Vitis HLS ---
proc open_project {args} { record open_project {*}$args; set ::hls_project [lindex $args end] }
proc set_top {args} { record set_top {*}$args }
proc open_solution {args} { record open_solution {*}$args; set ::hls_solution [lindex $args 1] }
proc set_part {args} { record set_part {*}$args }
proc create_clock {args} { record create_clock {*}$args }
proc config_export {args} { record config_export {*}$args }
proc csim_design {args} { record csim_design {*}$args }
proc cosim_design {args} { record cosim_design {*}$args }
proc csynth_design {args} {
    record csynth_design {*}$args
    set report [file join [pwd] $::hls_project $::hls_solution syn report csynth.xml]
    file mkdir [file dirname $report]
    file copy -force $::env(TELLME_CSYNTH_XML) $report
}
proc config_interface {args} { record config_interface {*}$args }
proc export_design {args} {
    record export_design {*}$args
    set ip [file join [pwd] $::hls_project $::hls_solution impl ip]
    touch [file join $ip component.xml]
    if {[info exists ::env(TELLME_HW_H)]} {
        set header [file join $ip drivers tellme_top_v1_0 src xtellme_top_hw.h]
        file mkdir [file dirname $header]
        file copy -force $::env(TELLME_HW_H) $header
    }
}
# --- the tool: tool.tcl NAME ARGS... ---
set tool [lindex $argv 0]
set flag [dict get {vitis_hls -f vitis-run --tcl vivado -source} $tool]
set script [lindex $argv [expr {[lsearch -exact $argv $flag] + 1}]]
if {$tool eq "vitis-run" && [lrange $argv 1 2] ne {--mode hls}} { error "stand-in: vitis-run without --mode hls" }
record TOOL $tool [pwd] $script [expr {[info exists ::env(TELLME_HLS_STEPS)] ? $::env(TELLME_HLS_STEPS) : ""}]
if {[info exists ::env(TELLME_FAIL)] && $::env(TELLME_FAIL) eq $tool} {
    puts "ERROR: \[Common 17-69\] Command failed: stand-in failure of $tool"
    exit 1
}
source $script
"""


SHAPE_073B, SHAPE_2B = SHAPES["bitnet-0.73b"], SHAPES["bitnet-2b-4t"]


def shape_estimate(board: str, model: ModelConfig, overrides: list[str] | None = None):
    return Design.for_shape(model, board, overrides or []).fit()


# --- fit estimates ---

def test_fit_073b_and_2b_shapes():
    """The presets, sized to the board: both shapes fit a KV260; 2B-4T's buffers (784 MB of weights and
    int8 LM head) are more than the ZCU104's 512 MiB of CMA; PYNQ-Z2 takes neither."""
    for board in ("kv260", "zcu104"):
        assert shape_estimate(board, SHAPE_073B).fits, board
    assert shape_estimate("kv260", SHAPE_2B).fits
    zcu = shape_estimate("zcu104", SHAPE_2B)
    assert [c.name for c in zcu.short] == ["cma"]
    with pytest.raises(Exception, match=r"does not fit: shape on zcu104 \(XCZU7EV\), estimate cma 940\.\d MB of "
                                        r"512\.0 MB: .*cma= boot argument"):
        zcu.check()
    for model in (SHAPE_073B, SHAPE_2B):
        estimate = shape_estimate("pynq-z2", model)
        assert not estimate.fits and "cma" in {c.name for c in estimate.short}


def test_fit_sizes_the_prefill_block_to_the_board():
    """Buffers are held per token of a prefill block: the preset's block is brought down until the 0.73B
    shape fits a KV260, and a block the user forces is refused with the change that fits."""
    auto = Design.for_shape(SHAPE_073B, "kv260")
    assert auto.config.prefill_block < 16 and auto.fit().fits
    forced = shape_estimate("kv260", SHAPE_073B, ["prefill_block=16", "tlmm.token_lanes=2"])
    assert not forced.fits and forced.advice == f"--set prefill_block={8 if auto.config.prefill_block >= 8 else 4}"
    with pytest.raises(Exception, match=r"does not fit: .*LUT [\d,]+ of 117,120: --set prefill_block="):
        forced.check()
    small, large = (shape_estimate("kv260", SHAPE_073B, [f"prefill_block={b}", "tlmm.token_lanes=2"]) for b in (4, 16))
    need = {e: {c.name: c.need for c in e.resources} for e in (small, large)}
    assert need[large]["URAM"] > need[small]["URAM"]  # act: 15 banks of every token's vectors


def test_fit_counts_every_partitioned_array():
    """Every array the engine partitions (decoder.h, attention.h) is counted, and the board's memories:
    URAM on the KV260, none on the PYNQ-Z2."""
    import re

    kernels = Path(__file__).resolve().parents[1] / "hls" / "kernels"
    pragmas = set()
    for name in ("decoder.h", "attention.h"):
        pragmas |= set(re.findall(r"ARRAY_PARTITION variable = (?:bf\.)?(\w+)", (kernels / name).read_text()))
    kv260 = Design.for_shape(SHAPE_073B, "kv260").fit()
    counted = {m.name for m in kv260.memories}
    local = {"prod", "values", "part", "p", "column", "buf", "lo", "hi", "w", "acc", "pend", "divisor",
             "pend_div", "pack", "scales", "next", "peak", "flat"}  # registers inside one loop iteration
    assert pragmas - local <= counted, pragmas - local - counted
    assert {m.name for m in kv260.memories if m.storage == "uram"} == {"act", "tile", "stripe FIFOs", "io FIFO"}
    assert next(c for c in kv260.resources if c.name == "URAM").need > 0
    pynq = Design.for_model(resolve_model_dir(None), "pynq-z2").fit()
    assert next(c for c in pynq.resources if c.name == "URAM").need == 0


# --- bundles and ports ---

def test_parse_interfaces_reads_the_top_function(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "top.cpp").write_text(
        "// #pragma HLS INTERFACE m_axi port=zz bundle=commented_out\n"
        "int helper(int *a);\n"
        "int tellme_top(const int *w, float *p, int *h, unsigned n) {\n"
        "#pragma HLS INTERFACE m_axi port=w offset=slave bundle=gmem_w depth=16 max_read_burst_length=64\n"
        "#pragma HLS interface mode=m_axi port=p bundle=gmem_p\n"
        "#pragma HLS INTERFACE m_axi port=h offset=slave\n"
        "#pragma HLS INTERFACE s_axilite port=n bundle=control\n"
        "#pragma HLS INTERFACE s_axilite port=return\n"
        "    if (n) { return helper(h); }\n"
        "    return 0;\n"
        "}\n"
    )
    (src / "other.cpp").write_text("int tellme_tlmm_top(int *x) {\n#pragma HLS INTERFACE m_axi port=x bundle=gmem_io\n"
                                   "#pragma HLS INTERFACE s_axilite port=return bundle=ctrl\n}\n"
                                   "void no_control(int *x) {\n#pragma HLS INTERFACE m_axi port=x\n}\n")
    top = parse_interfaces(tmp_path, "tellme_top")
    assert top.m_axi == ("gmem_w", "gmem_p", "gmem") and top.control == "control"
    assert top.ports == {"w": "gmem_w", "p": "gmem_p", "h": "gmem", "n": "control", "return": "control"}
    engine = parse_interfaces(tmp_path, "tellme_tlmm_top")
    assert engine.m_axi == ("gmem_io",) and engine.control == "ctrl" and engine.source == "src/other.cpp"
    with pytest.raises(Exception, match="exactly one s_axilite bundle"):
        parse_interfaces(tmp_path, "no_control")
    with pytest.raises(Exception, match="defines no function missing_top"):
        parse_interfaces(tmp_path, "missing_top")


def test_assign_ports_weights_first_io_shares_the_last():
    ports = BOARDS["kv260"].ps.hp_ports
    assert [p.name for p in ports] == ["S_AXI_HP0_FPD", "S_AXI_HP1_FPD", "S_AXI_HP3_FPD", "S_AXI_HP2_FPD",
                                       "S_AXI_HPC0_FPD", "S_AXI_HPC1_FPD"]
    two = assign_ports(("gmem0", "gmem_io"), ports)
    assert [(r.port.name, r.bundles) for r in two] == [("S_AXI_HP0_FPD", ("gmem0",)), ("S_AXI_HP1_FPD", ("gmem_io",))]
    seven = assign_ports((*(f"gmem{p}" for p in range(6)), "gmem_io"), ports)
    assert [r.bundles for r in seven] == [("gmem0",), ("gmem1",), ("gmem2",), ("gmem3",), ("gmem4",),
                                          ("gmem5", "gmem_io")]
    assert [r.bundles for r in assign_ports(("a", "b"), ports[:1])] == [("a", "b")]
    pynq = BOARDS["pynq-z2"].ps.hp_ports
    assert [r.port.name for r in assign_ports(("gmem0", "gmem1", "gmem_io"), pynq)] == ["S_AXI_HP0", "S_AXI_HP2",
                                                                                          "S_AXI_HP1"]


# --- report parsers ---

def test_parse_csynth_xml(tmp_path):
    hls = parse_csynth_xml(REPORTS / "csynth.xml")
    assert hls["tool"] == "Vitis HLS 2023.2" and hls["top"] == "tellme_top"
    assert hls["latency_cycles"] == {"best": 7, "average": None, "worst": 2904311}
    assert hls["interval_cycles"] == {"min": 8, "max": 2904312}
    assert hls["target_clock_ns"] == 4.0 and hls["estimated_clock_ns"] == 2.92
    assert hls["resources"] == {"bram_18k": 58, "dsp": 198, "ff": 81234, "lut": 92417, "uram": 16}
    assert hls["available"]["lut"] == 117120
    older = tmp_path / "csynth.xml"
    older.write_text((REPORTS / "csynth.xml").read_text().replace("<DSP>", "<DSP48E>").replace("</DSP>", "</DSP48E>"))
    assert parse_csynth_xml(older)["resources"]["dsp"] == 198
    broken = tmp_path / "broken.xml"
    broken.write_text("<profile><UserAssignments/></profile>")
    with pytest.raises(ReportError, match="not a Vitis HLS csynth.xml"):
        parse_csynth_xml(broken)


def test_parse_utilization_ultrascale_and_7series(tmp_path):
    us = parse_utilization(REPORTS / "utilization_kv260.rpt")
    assert us["used"] == {"lut": 86412, "ff": 97310, "bram": 41.5, "uram": 16, "dsp": 212}
    assert us["available"] == {"lut": 117120, "ff": 234240, "bram": 144, "uram": 64, "dsp": 1248}
    assert us["device"] == "xck26-sfvc784-2LV-c" and us["tool"].startswith("Vivado v.2023.2")
    z7 = parse_utilization(REPORTS / "utilization_pynq_z2.rpt")
    assert z7["used"] == {"lut": 38204, "ff": 40117, "bram": 33.5, "dsp": 61}
    assert z7["available"]["bram"] == 140 and "uram" not in z7["used"]
    other = tmp_path / "other.rpt"
    other.write_text("| Site Type | Used |\n| Bonded IOB | 3 |\n")
    with pytest.raises(ReportError, match="not a report_utilization file"):
        parse_utilization(other)


def test_parse_timing_summary(tmp_path):
    met = parse_timing_summary(REPORTS / "timing_summary.rpt")
    assert (met["wns_ns"], met["tns_ns"], met["whs_ns"], met["ths_ns"], met["met"]) == (0.137, 0.0, 0.01, 0.0, True)
    failed = parse_timing_summary(REPORTS / "timing_summary_failed.rpt")
    assert failed["wns_ns"] == -0.412 and failed["tns_ns"] == -187.305 and failed["met"] is False
    with pytest.raises(ReportError, match="no Design Timing Summary"):
        parse_timing_summary(REPORTS / "utilization_kv260.rpt")


# --- dry runs and the generated TCL ---

@pytest.fixture(scope="module")
def designs(bitlinear_model, tmp_path_factory) -> dict[str, Path]:
    """A dry-run design folder per board, for the tiny model."""
    root = tmp_path_factory.mktemp("designs")
    out = {}
    for board in BOARDS:
        out[board] = root / board
        assert main(["build", "--board", board, "--model", str(bitlinear_model.model_dir), "--out", str(out[board]),
                     "--dry-run"]) == 0
    return out


def test_dry_run_lists_steps_and_writes_the_design(bitlinear_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    design = tmp_path / "bitstreams" / "kv260" / "model-kv260-p6"
    assert "model on kv260 at 250 MHz: modelled" in printed and "verdict       fits" in printed
    assert "would run:" in printed and "TELLME_HLS_STEPS='csynth export' vitis_hls -f run_hls.tcl" in printed
    assert "vivado -mode batch -source build_bd.tcl" in printed and "dry run: nothing run" in printed
    manifest = json.loads((design / "manifest.json").read_text())
    assert manifest["format"] == "tellme-design" and manifest["built"] is False
    assert manifest["design"] == "model-kv260-p6" and manifest["bitstream"] == "model-kv260-p6.bit"
    assert manifest["hwh"] == "model-kv260-p6.hwh" and manifest["hls"] is None and manifest["vivado"] is None
    model_manifest = json.loads((bitlinear_model.model_dir / "manifest.json").read_text())
    assert manifest["model"]["hash"] == model_manifest["files"]["weights.safetensors"]
    assert manifest["model"]["config"]["num_hidden_layers"] == 2
    assert manifest["max_context"] == 128  # the board's 1024, capped by the model's positions
    assert manifest["accelerator"]["top"] == manifest["top"] == "tellme_top"
    assert manifest["ports"]["ip"] == "tellme_top_0"
    assert (design / "hls" / "run_hls.tcl").is_file() and (design / "vivado" / "build_bd.tcl").is_file()
    # a design never built is regenerated in place; a built one needs --force
    assert main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--dry-run"]) == 0
    manifest["built"] = True
    (design / "manifest.json").write_text(json.dumps(manifest))
    assert main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--dry-run"]) == 2
    assert "holds a built design" in capsys.readouterr().err
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "todo.txt").write_text("keep me")
    assert main(["build", "--model", str(bitlinear_model.model_dir), "--out", str(stranger), "--dry-run",
                 "--force"]) == 2
    assert (stranger / "todo.txt").is_file()


def test_missing_tools_name_tool_and_project(bitlinear_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "design"
    assert main(["build", "--board", "zcu104", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vitis_hls (or vitis-run) not found on PATH" in err[0] and str(out) in err[0]
    assert (out / "hls" / "run_hls.tcl").is_file()  # written, to take to a machine with the tools


def test_does_not_fit_is_one_line(bitlinear_model, tmp_path, capsys):
    out = tmp_path / "design"
    code = main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--out", str(out),
                 "--dry-run", "--set", "tlmm.tile_words=65536"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("tellme: error: does not fit: model on kv260 (XCK26), estimate URAM")
    assert err[-1].endswith("--set tlmm.tile_words=4096")
    assert not out.exists()


def run_stub_tool(tool: str, script: Path, tmp_path: Path, env: dict | None = None) -> list[list[str]]:
    stubs = tmp_path / "tool.tcl"
    stubs.write_text(STUBS)
    log = tmp_path / f"{tool}.log"
    environment = {"PATH": "/usr/bin:/bin", "TELLME_TCL_LOG": str(log),
                   "TELLME_UTILIZATION_RPT": str(REPORTS / "utilization_kv260.rpt"),
                   "TELLME_TIMING_RPT": str(REPORTS / "timing_summary.rpt"),
                   "TELLME_CSYNTH_XML": str(REPORTS / "csynth.xml"), **(env or {})}
    flag = "-f" if tool == "vitis_hls" else "-source"
    result = subprocess.run([TCLSH, str(stubs), tool, flag, str(script)], cwd=script.parent, env=environment,
                            capture_output=True, text=True, timeout=60)
    calls = [line.split("\t") for line in log.read_text().splitlines()]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [c for c in calls if c[0] == "UNKNOWN"]
    return calls


def called(calls: list[list[str]], name: str) -> list[list[str]]:
    return [c[1:] for c in calls if c[0] == name]


def index(calls: list[list[str]], name: str, *args: str) -> int:
    return next(i for i, c in enumerate(calls) if c[0] == name and list(c[1:1 + len(args)]) == list(args))


@needs_tclsh
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_build_bd_tcl_under_stand_ins(board, designs, tmp_path):
    design = designs[board]
    manifest = json.loads((design / "manifest.json").read_text())
    record = BOARDS[board]
    platform = record.ps
    # the exported IP exists where the script looks for it
    ip = json.loads((design / "hls" / "config.json").read_text())
    calls = run_stub_tool("vivado", shutil.copytree(design, tmp_path / "d") / "vivado" / "build_bd.tcl", tmp_path)
    (create,) = called(calls, "create_project")
    assert create[-2:] == ["-part", manifest["part"]] == ["-part", ip["part"]]
    props = {c[0]: c[1] for c in called(calls, "set_property") if len(c) == 3 and c[2] == "prj"}
    assert props["board_part"] == record.board_part_glob.replace("*:", "tellme.test:").replace(":*", ":part0:9.9")
    assert props.get("board_connections", "") == record.board_connections
    assert props["ip_repo_paths"].endswith("/hls/tellme/solution1/impl/ip")
    cells = {c[-1]: c[-2] for c in called(calls, "create_bd_cell")}
    assert cells["ps"] == platform.ip and cells["tellme_top_0"] == "xilinx.com:hls:tellme_top:1.0"
    (automation,) = called(calls, "apply_bd_automation")
    assert automation[:2] == ["-rule", platform.rule]
    ps_dict = next(c[1].split() for c in called(calls, "set_property") if c[0] == "-dict" and c[-1] == "ps")
    ps_config = dict(zip(ps_dict[::2], ps_dict[1::2], strict=True))
    assert float(ps_config[f"CONFIG.{platform.clock_key}"]) == manifest["clock_mhz"]
    hp_width = str(min(128, platform.hp_max_width))
    intf = called(calls, "connect_bd_intf_net")
    ports = manifest["ports"]
    assert ["ps/" + platform.control_port, "smc_control/S00_AXI"] in intf
    assert ["smc_control/M00_AXI", "tellme_top_0/s_axi_control"] in intf
    weight_ports = manifest["accelerator"]["weight_ports"]
    assert set(ports["m_axi"]) == {*(f"gmem{p}" for p in range(weight_ports)), "gmem_io"}
    for bundle, port_name in ports["m_axi"].items():
        port = next(p for p in platform.hp_ports if p.name == port_name)
        smc = next(c[1].split("/")[0] for c in intf if c[0] == f"tellme_top_0/m_axi_{bundle}")
        assert [f"{smc}/M00_AXI", f"ps/{port_name}"] in intf
        assert ps_config[f"CONFIG.{port.enable}"] == "1" and ps_config[f"CONFIG.{port.width_key}"] == hp_width
    # one port each while they last
    assert len(set(ports["m_axi"].values())) == min(weight_ports + 1, len(platform.hp_ports))
    assert len({ports["m_axi"][f"gmem{p}"] for p in range(weight_ports)}) == weight_ports  # stripes never share
    clock = next(c for c in called(calls, "connect_bd_net") if c[0] == f"ps/{platform.clock_pin}")
    assert "tellme_top_0/ap_clk" in clock and f"ps/{platform.control_clock_pin}" in clock
    for port in platform.hp_ports:
        if port.name in ports["m_axi"].values():
            assert f"ps/{port.clock_pin}" in clock
    address = called(calls, "assign_bd_address")[0]
    assert address[:2] == ["-offset", ports["control"]["base_address"]] == ["-offset", f"0x{platform.control_base:08X}"]
    order = [index(calls, "validate_bd_design"), index(calls, "make_wrapper"), index(calls, "add_files"),
             index(calls, "launch_runs", "synth_1"), index(calls, "wait_on_run", "synth_1"),
             index(calls, "launch_runs", "impl_1", "-to_step", "write_bitstream"),
             index(calls, "wait_on_run", "impl_1"),
             index(calls, "report_utilization"), index(calls, "report_timing_summary")]
    assert order == sorted(order)
    out = tmp_path / "d" / "vivado" / "out"
    assert (out / f"{manifest['design']}.bit").is_file() and (out / f"{manifest['design']}.hwh").is_file()


@needs_tclsh
def test_run_hls_tcl_under_stand_ins(designs, tmp_path):
    hls = shutil.copytree(designs["kv260"] / "hls", tmp_path / "hls")
    calls = run_stub_tool("vitis_hls", hls / "run_hls.tcl", tmp_path, {"TELLME_HLS_STEPS": "csynth export"})
    assert called(calls, "set_top") == [["tellme_top"]] and called(calls, "set_part") == [["xck26-sfvc784-2LV-c"]]
    assert called(calls, "create_clock")[0][:2] == ["-period", "4.0"]
    assert called(calls, "csynth_design") and called(calls, "export_design")
    assert not called(calls, "csim_design") and not called(calls, "cosim_design")
    assert (hls / "tellme" / "solution1" / "impl" / "ip" / "component.xml").is_file()


# --- the whole flow, with fake tools ---

def fake_tools(tmp_path: Path, hls: str = "vitis_hls", release: str | None = None) -> str:
    """Stand-in tools on a PATH; with a release, laid out as AMD installs them (the release in the path),
    with the Y2K22 patch's file in a 2021.x Vitis HLS."""
    (tmp_path / "tool.tcl").write_text(STUBS)
    if release is None:
        dirs = {hls: tmp_path / "fakebin", "vivado": tmp_path / "fakebin"}
    elif hls == "vitis_hls":
        dirs = {hls: tmp_path / "Xilinx" / "Vitis_HLS" / release / "bin",
                "vivado": tmp_path / "Xilinx" / "Vivado" / release / "bin"}
    else:
        dirs = {hls: tmp_path / "Xilinx" / release / "Vitis" / "bin",
                "vivado": tmp_path / "Xilinx" / release / "Vivado" / "bin"}
    for tool, bin_dir in dirs.items():
        bin_dir.mkdir(parents=True, exist_ok=True)
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\nexec "{TCLSH}" "{tmp_path / "tool.tcl"}" {tool} "$@"\n')
        path.chmod(0o755)
    return ":".join(dict.fromkeys(str(d) for d in dirs.values()))


def register_files(tmp_path: Path, model_dir: Path, monkeypatch, forms: dict | None = None) -> None:
    """The driver header and .hwh the stand-in tools export, in Vitis HLS's formats, for the model's top."""
    interface = Design.for_model(model_dir, "kv260").top_args.interface
    regs = layout([(a.name, a.kind) for a in interface.arguments], forms)
    (tmp_path / "hw.h").write_text(hw_header("tellme_top", regs))
    (tmp_path / "design.hwh").write_text(hwh("tellme_top_0", "tellme:hls:tellme_top:1.0", regs))
    monkeypatch.setenv("TELLME_HW_H", str(tmp_path / "hw.h"))
    monkeypatch.setenv("TELLME_HWH", str(tmp_path / "design.hwh"))


@needs_tclsh
def test_build_end_to_end_with_fake_tools(bitlinear_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_tools(tmp_path)}:/usr/bin:/bin")
    register_files(tmp_path, bitlinear_model.model_dir, monkeypatch, {"n_tokens": "renamed"})
    monkeypatch.setenv("TELLME_TCL_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("TELLME_UTILIZATION_RPT", str(REPORTS / "utilization_kv260.rpt"))
    monkeypatch.setenv("TELLME_TIMING_RPT", str(REPORTS / "timing_summary.rpt"))
    monkeypatch.setenv("TELLME_CSYNTH_XML", str(REPORTS / "csynth.xml"))
    out = tmp_path / "bitstreams" / "kv260" / "tiny"
    assert main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "[vivado" in captured.err and "tellme: step 5/6" in captured.err  # progress lines
    assert "built " in captured.out and "WNS 0.137 ns" in captured.out
    assert (out / "tiny.bit").is_file() and (out / "tiny.hwh").is_file() and (out / "tiny.xsa").is_file()
    assert "cannot tell the release of vitis_hls" in captured.err  # stand-ins outside an AMD install path
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["registers"]["weights0"] == [0x18, 0x1C] and len(manifest["registers"]) == 2 * 6 + 6
    assert manifest["estimate"]["report"]["model"].startswith("hls/perf.py v")
    assert manifest["estimate"]["speed"]["decode_ms_accelerator"]
    assert manifest["built"] is True and manifest["bitstream"] == "tiny.bit"
    assert manifest["tools"]["vitis_hls"] == "Vitis HLS 2023.2"
    assert manifest["tools"]["vivado"].startswith("Vivado v.2023.2")
    assert manifest["hls"]["latency_cycles"]["worst"] == 2904311
    assert manifest["vivado"]["utilization"]["used"]["uram"] == 16
    assert manifest["vivado"]["timing"] == {"wns_ns": 0.137, "tns_ns": 0.0, "whs_ns": 0.01, "ths_ns": 0.0, "met": True}
    tools = [line.split("\t") for line in (tmp_path / "calls.log").read_text().splitlines() if line.startswith("TOOL")]
    assert [t[1] for t in tools] == ["vitis_hls", "vivado"] and tools[0][4] == "csynth export"
    assert (out / "logs" / "vivado.log").is_file()

    # the modelled figures beside the reported ones
    assert main(["estimate", "--design", str(out)]) == 0
    table = capsys.readouterr().out
    assert "modelled" in table and "csynth (IP)" in table and "Vivado (design)" in table
    lut = next(line for line in table.splitlines() if line.strip().startswith("LUT"))
    assert "92,417" in lut and "86,412" in lut  # csynth.xml's and utilization_kv260.rpt's LUTs
    assert "csynth worst case 2,904,311 cycles" in table

    # timing not met: the design is written, the exit code says so
    monkeypatch.setenv("TELLME_TIMING_RPT", str(REPORTS / "timing_summary_failed.rpt"))
    assert main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--out", str(out),
                 "--force"]) == 1
    assert "timing not met (WNS -0.412 ns" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["vivado"]["timing"]["met"] is False

    # a failing tool: one line with its last error and the log; no bitstream left behind
    monkeypatch.setenv("TELLME_FAIL", "vivado")
    assert main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--out", str(out),
                 "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "vivado failed (exit 1)" in err and "stand-in failure of vivado" in err and "vivado.log" in err
    assert not (out / "tiny.bit").exists()
    assert json.loads((out / "manifest.json").read_text())["built"] is False


# --- the tools: which form, which release, the Y2K22 patch, board files, the .xsa ---

def _which(paths: dict[str, str]):
    return lambda name: paths.get(name)


def test_find_hls_picks_the_form_the_release_needs(tmp_path):
    classic = "/tools/Xilinx/Vitis_HLS/2023.2/bin/vitis_hls"
    unified = "/tools/Xilinx/2025.1/Vitis/bin/vitis-run"
    assert find_hls(_which({}), {}) is None
    tool = find_hls(_which({"vitis_hls": classic}), {})
    assert (tool.kind, tool.version, tool.argv()) == ("vitis_hls", (2023, 2), ["vitis_hls", "-f", "run_hls.tcl"])
    # 2023.2 has both; the classic form is the one its scripts were written for
    assert find_hls(_which({"vitis_hls": classic, "vitis-run": "/tools/Xilinx/Vitis/2023.2/bin/vitis-run"}),
                    {}).kind == "vitis_hls"
    # from 2024.2 vitis_hls is deprecated (a wrapper that warns) or gone: vitis-run
    both = {"vitis_hls": "/tools/Xilinx/2025.1/Vitis/bin/vitis_hls", "vitis-run": unified}
    tool = find_hls(_which(both), {})
    assert tool.kind == "vitis-run" and tool.argv() == ["vitis-run", "--mode", "hls", "--tcl", "run_hls.tcl"]
    assert find_hls(_which({"vitis-run": "/opt/bin/vitis-run"}), {"XILINX_HLS": "/opt/amd/2024.2/Vitis"}).version \
        == (2024, 2)


def test_check_tools_range_y2k22_and_mismatch(tmp_path):
    old = HlsTool("vitis_hls", "/tools/Xilinx/Vitis_HLS/2020.2/bin/vitis_hls", (2020, 2))
    with pytest.raises(UserError, match="release 2020.2; tellme build supports 2021.1 to 2025.2"):
        check_tools(old, ("/tools/Xilinx/Vivado/2020.2/bin/vivado", (2020, 2)))
    root = tmp_path / "Vitis_HLS" / "2021.2"
    (root / "bin").mkdir(parents=True)
    unpatched = HlsTool("vitis_hls", str(root / "bin" / "vitis_hls"), (2021, 2))
    with pytest.raises(UserError, match="lacks AMD's Y2K22 patch.*bad lexical cast.*y2k22_patch"):
        check_tools(unpatched, ("vivado", (2021, 2)))
    (root / "common" / "scripts").mkdir(parents=True)
    (root / "common" / "scripts" / "automg_patch_20220104.tcl").write_text("# patched\n")
    assert check_tools(unpatched, ("vivado", (2021, 2))) == []
    newer = HlsTool("vitis-run", "/x/2026.1/Vitis/bin/vitis-run", (2026, 1))
    warnings = check_tools(newer, ("vivado", (2026, 1)))
    assert len(warnings) == 2 and "newer than the releases this flow was checked against" in warnings[0]
    with pytest.raises(UserError, match="vitis-run 2025.1 is newer than vivado 2024.2"):
        check_tools(HlsTool("vitis-run", "/x/2025.1/bin/vitis-run", (2025, 1)), ("vivado", (2024, 2)))
    assert "cannot tell the release" in check_tools(HlsTool("vitis_hls", "/opt/bin/vitis_hls"), ("vivado", None))[0]


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_dry_run_lists_both_hls_forms_without_tools(board, bitlinear_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / board
    assert main(["build", "--board", board, "--model", str(bitlinear_model.model_dir), "--out", str(out),
                 "--dry-run"]) == 0
    printed = capsys.readouterr().out
    hls_dir = str(out / "hls")
    assert f"  1. (cd {hls_dir} && TELLME_HLS_STEPS='csynth export' vitis_hls -f run_hls.tcl)   # Vitis HLS 2021.1 " \
           "to 2024.1" in printed
    assert f"     or (cd {hls_dir} && TELLME_HLS_STEPS='csynth export' vitis-run --mode hls --tcl run_hls.tcl)   " \
           "# Vitis 2024.2 and later" in printed
    assert "vivado -mode batch -source build_bd.tcl" in printed and ".xsa" in printed


@needs_tclsh
@pytest.mark.parametrize("hls, release", [("vitis_hls", "2023.2"), ("vitis-run", "2025.1")])
def test_dry_run_and_build_with_the_installed_form(hls, release, bitlinear_model, tmp_path, capsys, monkeypatch):
    """With the tools installed the dry run lists the one form the release needs, and the build runs it."""
    monkeypatch.setenv("PATH", f"{fake_tools(tmp_path, hls, release)}:/usr/bin:/bin")
    monkeypatch.delenv("XILINX_HLS", raising=False)
    for key, name in (("TELLME_TCL_LOG", "calls.log"),):
        monkeypatch.setenv(key, str(tmp_path / name))
    monkeypatch.setenv("TELLME_UTILIZATION_RPT", str(REPORTS / "utilization_kv260.rpt"))
    monkeypatch.setenv("TELLME_TIMING_RPT", str(REPORTS / "timing_summary.rpt"))
    monkeypatch.setenv("TELLME_CSYNTH_XML", str(REPORTS / "csynth.xml"))
    register_files(tmp_path, bitlinear_model.model_dir, monkeypatch, {"weights0": "halves"})
    out = tmp_path / "design"
    args = ["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--out", str(out)]
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    other = "vitis-run" if hls == "vitis_hls" else "vitis_hls -f"
    assert f"{hls} {tmp_path}" in printed and other not in printed
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "cannot tell the release" not in err and (out / "logs" / f"{hls}.log").is_file()
    tools = [line.split("\t") for line in (tmp_path / "calls.log").read_text().splitlines() if line[:4] == "TOOL"]
    assert [t[1] for t in tools] == [hls, "vivado"] and tools[0][4] == "csynth export"
    calls = [line.split("\t") for line in (tmp_path / "calls.log").read_text().splitlines()]
    assert ["config_export", "-format", "ip_catalog", "-rtl", "verilog", "-vendor", "tellme", "-library", "hls",
            "-version", "1.0"] in calls
    (xsa,) = [c for c in calls if c[0] == "write_hw_platform"]
    assert xsa[1:5] == ["-fixed", "-include_bit", "-force", "-file"] and xsa[5].endswith("/out/design.xsa")
    assert json.loads((out / "manifest.json").read_text())["ports"]["vlnv"] == "tellme:hls:tellme_top:1.0"


@needs_tclsh
def test_build_refuses_a_hwh_without_the_top_arguments(bitlinear_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_tools(tmp_path)}:/usr/bin:/bin")
    for key, value in (("TELLME_TCL_LOG", tmp_path / "calls.log"), ("TELLME_CSYNTH_XML", REPORTS / "csynth.xml"),
                       ("TELLME_UTILIZATION_RPT", REPORTS / "utilization_kv260.rpt"),
                       ("TELLME_TIMING_RPT", REPORTS / "timing_summary.rpt")):
        monkeypatch.setenv(key, str(value))
    register_files(tmp_path, bitlinear_model.model_dir, monkeypatch)
    (tmp_path / "design.hwh").write_text(hwh("tellme_top_0", "tellme:hls:tellme_top:1.0",
                                             layout([("weights0", "buffer"), ("n", "scalar")])))
    out = tmp_path / "design"
    assert main(["build", "--board", "kv260", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has no 'weights1'" in err and "vivado.log" in err and not (out / "design.bit").exists()


@needs_tclsh
def test_board_repo_paths_and_a_missing_carrier(designs, tmp_path, monkeypatch):
    store = tmp_path / "boards"
    store.mkdir()
    script = shutil.copytree(designs["kv260"], tmp_path / "d") / "vivado" / "build_bd.tcl"
    calls = run_stub_tool("vivado", script, tmp_path, {"TELLME_BOARD_REPO_PATHS": f"{store}:{tmp_path}/absent"})
    (repo,) = [c for c in calls if c[0] == "set_param"]
    assert repo[1] == "board.repoPaths" and repo[2] == str(store)  # existing folders only
    assert index(calls, "set_param") < index(calls, "create_project")
    assert ["get_boards", "-quiet", "*kv260_carrier*"] in calls
    log = tmp_path / "vivado.log"
    log.unlink()
    stubs = tmp_path / "tool.tcl"
    result = subprocess.run([TCLSH, str(stubs), "vivado", "-source", str(script)], cwd=script.parent,
                            env={"PATH": "/usr/bin:/bin", "TELLME_TCL_LOG": str(log), "TELLME_NO_CARRIER": "1"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "tellme: error: Vivado has the SOM's board files but no carrier matching *kv260_carrier*" in result.stderr
    assert "create_bd_design" not in log.read_text()
