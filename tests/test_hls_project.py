"""`tellme hls`: the generated project, its testbench (plain g++ and ASan/UBSan), its TCL, the config."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tellme.hls import project as project_module
from tellme.hls.boards import BOARDS, board_config
from tellme.hls.config import AcceleratorConfig, apply_overrides
from tellme.hls.csim import run_testbench
from tellme.hls.design import Design
from tellme.hls.toolchain import ap_types_dir
from tellme.host.cli import main
from tellme.models.config import ModelConfig
from tellme.models.convert import convert_checkpoint
from tellme.models.errors import UserError
from tellme.models.synthetic import write_random_checkpoint

SIZES = dict(hidden_size=100, intermediate_size=130, num_attention_heads=2, num_key_value_heads=1, head_dim=50)
PROJS = {"q_proj": (100, 100), "k_proj": (50, 100), "v_proj": (50, 100), "o_proj": (100, 100),
         "gate_proj": (130, 100), "up_proj": (130, 100), "down_proj": (100, 130)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A converted one-layer model (sizes SIZES: no dimension a multiple of 84, GQA 2:1)."""
    root = tmp_path_factory.mktemp("models")
    shape = ModelConfig(vocab_size=300, hidden_size=SIZES["hidden_size"], intermediate_size=SIZES["intermediate_size"],
                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    checkpoint = write_random_checkpoint(root / "hf", "online", shape, seed=7)
    convert_checkpoint(checkpoint, root / "tiny", quiet=True)
    return root / "tiny"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csim-cache")


@pytest.fixture(scope="module")
def project(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("projects") / "kv260"
    assert main(["hls", "--model", str(model_dir), "--board", "kv260", "--out", str(out)]) == 0
    return out


def test_project_files(project):
    names = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    kernels = {f"src/{k}" for k in ("common.h", "fp16.h", "tlmm.h", "elementwise.h", "attention.h", "prefetch.h",
                                    "lm_head.h", "decoder.h")}
    data = {f"tb/data/decoder/stripe{p}.bin" for p in range(6)} | {
        "tb/data/decoder/params.bin", "tb/data/decoder/hidden_in.bin", "tb/data/decoder/expected.bin",
        "tb/data/tlmm/stripes.bin", "tb/data/tlmm/xq.bin", "tb/data/tlmm/acc.bin"}
    assert names == kernels | data | {
        "README.md", "config.json", "run_hls.tcl", "src/config.h", "src/top.cpp",
        "tb/tb_tlmm.cpp", "tb/tb_decoder.cpp", "tb/tb_io.h", "tb/csim_bridge.cpp"}
    kernel = Path(project_module.__file__).parent / "kernels" / "tlmm.h"
    assert (project / "src" / "tlmm.h").read_text() == kernel.read_text()  # copied verbatim
    config = json.loads((project / "config.json").read_text())
    assert config["weight_ports"] == 6 and config["lm_head"] == "pl-int8-twopass"  # a large vocabulary for K=100
    assert "static const unsigned qkv_wpr = 2;" in (project / "src" / "config.h").read_text()  # K=100: 34 groups
    assert not list(project.parent.glob(".kv260.*"))  # no temp folders left beside OUT


def test_golden_vectors_come_from_the_model(project, model_dir):
    """The TLMM testbench's sums are numpy's TLMM of layer 0's q, k, v (in the streamed order: q and k in
    RoPE pairs); the decoder's are the reference's."""
    design = Design.for_model(model_dir)
    from tellme.models.ddr_image import qkv_row_order
    from tellme.models.tlmm import TlmmWeights

    xq = np.fromfile(project / "tb" / "data" / "tlmm" / "xq.bin", dtype=np.int8).reshape(3, -1)[:, :100]
    acc = np.fromfile(project / "tb" / "data" / "tlmm" / "acc.bin", dtype=np.int32).reshape(3, -1)
    q = TlmmWeights(design.folder.tensor("layers.0.q_proj.tlmm"), 100).matmul(xq)
    streamed = acc[:, np.argsort(qkv_row_order(design.model))]  # back to q, k, v order
    np.testing.assert_array_equal(streamed[:, :100], q)
    expected = np.fromfile(project / "tb" / "data" / "decoder" / "expected.bin", dtype=np.float32)
    golden = design.decoder_golden()
    np.testing.assert_array_equal(expected, golden["expected"].ravel())
    assert expected.size == design.model.vocab_size  # the last token's logits: the LM head is on the PL


@pytest.mark.parametrize("which", ["tlmm", "decoder"])
def test_testbenches_pass_with_plain_gpp(project, cache, which):
    result = run_testbench(project, which, cache_dir=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


@pytest.mark.parametrize("which", ["tlmm", "decoder"])
def test_testbenches_pass_under_asan_and_ubsan(project, cache, which):
    result = run_testbench(project, which, sanitize=True, cache_dir=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


STRICT = ["-std=c++14", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-label",
          "-Wno-maybe-uninitialized", "-fsyntax-only"]  # the last: ap_types' own members, inlined into ours


@pytest.mark.parametrize("unit", ["src/top.cpp", "tb/csim_bridge.cpp", "tb/tb_decoder.cpp", "tb/tb_tlmm.cpp"])
@pytest.mark.parametrize("defines", [[], ["-DTELLME_FAST_CSIM", "-DTELLME_PROFILE"]])
def test_every_kernel_compiles_without_a_warning(project, unit, defines):
    """Every header (common, tlmm, elementwise, attention, fp16, prefetch, lm_head, decoder) through the
    top, the bridge and the testbenches, with -Wall -Wextra -Werror, in both type settings."""
    result = subprocess.run(["g++", *STRICT, *defines, "-isystem", str(ap_types_dir()), f"-I{project / 'src'}",
                             f"-I{project / 'tb'}", str(project / unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_testbenches_fail_on_a_mismatch(project, cache, tmp_path):
    broken = shutil.copytree(project, tmp_path / "broken")
    acc = np.fromfile(broken / "tb" / "data" / "tlmm" / "acc.bin", dtype=np.int32)
    acc[5] += 1
    acc.tofile(broken / "tb" / "data" / "tlmm" / "acc.bin")
    result = run_testbench(broken, "tlmm", cache_dir=cache)
    assert result.returncode != 0 and "FAIL: 1 of" in result.stdout
    expected = np.fromfile(broken / "tb" / "data" / "decoder" / "expected.bin", dtype=np.float32)
    expected[7] += 0.5 * np.abs(expected).max()
    expected.tofile(broken / "tb" / "data" / "decoder" / "expected.bin")
    result = run_testbench(broken, "decoder", cache_dir=cache)
    assert result.returncode != 0 and "MISMATCH" in result.stdout


def test_run_hls_tcl_names_part_clock_top(project):
    tcl = (project / "run_hls.tcl").read_text()
    assert "set_part xck26-sfvc784-2LV-c" in tcl
    assert re.search(r"create_clock -period 4\.0\b", tcl)
    assert "set_top tellme_top" in tcl
    for command in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert command in tcl


STAND_IN = """
set calls {}
foreach name {open_project set_top add_files open_solution set_part create_clock config_export config_interface
              csim_design csynth_design cosim_design export_design} {
    proc $name {args} "lappend ::calls \\[list $name {*}\\$args\\]"
}
rename exit real_exit
proc exit {args} {}
source [lindex $argv 0]
foreach call $calls { puts $call }
"""


def _run_tcl(script: Path, tmp_path: Path, env: dict | None = None) -> list[str]:
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("tclsh is not installed")
    driver = tmp_path / "stand_in.tcl"
    driver.write_text(STAND_IN)
    result = subprocess.run([tclsh, str(driver), str(script)], capture_output=True, text=True, check=True,
                            env=env, cwd=tmp_path)
    return result.stdout.splitlines()


def test_run_hls_tcl_under_tclsh(project, tmp_path):
    calls = _run_tcl(project / "run_hls.tcl", tmp_path)
    names = [line.split()[0] for line in calls]
    assert names == ["open_project", "set_top"] + ["add_files"] * 12 + [
        "open_solution", "set_part", "create_clock", "config_export", "config_interface",
        "csim_design", "csynth_design", "cosim_design", "export_design"]
    assert "set_top tellme_top" in calls
    assert "set_part xck26-sfvc784-2LV-c" in calls
    assert "create_clock -period 4.0 -name default" in calls
    for call in calls:
        tokens = call.split()
        if tokens[0] == "add_files":
            assert Path(tokens[2] if tokens[1] == "-tb" else tokens[1]).is_file()
    data = [c for c in calls if c.startswith("csim_design")][0].split()[-1]
    assert Path(data) == (project / "tb" / "data" / "decoder").resolve()
    added = {Path(c.split()[2 if c.split()[1] == "-tb" else 1]).name for c in calls if c.startswith("add_files")}
    assert {"top.cpp", "decoder.h", "tlmm.h", "tb_decoder.cpp"} <= added


def test_run_hls_tcl_steps_can_be_chosen(project, tmp_path):
    calls = _run_tcl(project / "run_hls.tcl", tmp_path, env={"TELLME_HLS_STEPS": "csim csynth"})
    names = [line.split()[0] for line in calls]
    assert "csynth_design" in names and "cosim_design" not in names and "export_design" not in names


@pytest.mark.parametrize("board,period,storage", [("zcu104", "4.0", "uram"), ("pynq-z2", "10.0", "bram")])
def test_other_boards(model_dir, tmp_path, board, period, storage):
    out = tmp_path / board
    assert main(["hls", "--model", str(model_dir), "--board", board, "--out", str(out)]) == 0
    tcl = (out / "run_hls.tcl").read_text()
    assert f"set_part {BOARDS[board].part}" in tcl
    assert f"create_clock -period {period} " in tcl
    assert f"#define TELLME_TILE_STORAGE {storage}" in (out / "src" / "config.h").read_text()


def test_overrides_reach_config_h(model_dir, tmp_path, cache):
    out = tmp_path / "p"
    args = ["hls", "--model", str(model_dir), "--out", str(out), "--set", "tlmm.token_lanes=3", "--set",
            "lm_head=host-float32", "--set", "clock_mhz=200", "--set", "weight_ports=4"]
    assert main(args) == 0
    header = (out / "src" / "config.h").read_text()
    assert "static const unsigned token_lanes = 3;" in header
    assert "static const bool lm_head = false;" in header and "static const unsigned ports = 4;" in header
    assert "create_clock -period 5.0 " in (out / "run_hls.tcl").read_text()
    for which in ("tlmm", "decoder"):  # the hidden-state design passes its testbenches too
        result = run_testbench(out, which, cache_dir=cache)
        assert result.returncode == 0, result.stdout + result.stderr


def _error(capsys, argv) -> str:
    """The one-line error (after the fit estimate's warnings, when it has any)."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("tellme: warning:") for line in lines[:-1]), lines
    assert lines[-1].startswith("tellme: error:")
    return lines[-1]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--set", "tlmm.qq=8"], "unknown parameter"),
        (["--set", "tlmm.token_lanes=two"], "expected int"),
        (["--set", "tlmm.token_lanes=0"], "tlmm.token_lanes=0"),
        (["--set", "lm_head=fp16"], "pl-int8, pl-int8-twopass, host-float32"),
        (["--set", "tlmm.token_lanes"], "KEY=VALUE"),
        (["--set", "weight_ports=3"], "even number"),
        (["--set", "attention_lanes=7"], "divisor of 48"),
        (["--set", "attention_lanes=48"], "an accumulator would be updated every"),
        (["--set", "weight_ports=8"], "kv260 has 6 ports"),
        (["--board", "vcu118"], "kv260, zcu104, pynq-z2"),
        (["--board", "pynq-z2", "--set", "storage=uram"], "no URAM"),
    ],
)
def test_bad_options_are_one_line_errors(model_dir, tmp_path, capsys, extra, message):
    err = _error(capsys, ["hls", "--model", str(model_dir), "--out", str(tmp_path / "p"), *extra])
    assert message in err
    assert not (tmp_path / "p").exists()


def test_existing_out_needs_force(model_dir, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["hls", "--model", str(model_dir), "--out", str(out)]) == 0
    (out / "old.txt").write_text("keep me unless --force")
    assert "--force" in _error(capsys, ["hls", "--model", str(model_dir), "--out", str(out)])
    assert (out / "old.txt").exists()
    assert main(["hls", "--model", str(model_dir), "--out", str(out), "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "run_hls.tcl").exists()
    assert not list(tmp_path.glob(".p.*"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a project")
    assert "not a tellme HLS project" in _error(capsys, ["hls", "--model", str(model_dir), "--out", str(other),
                                                          "--force"])
    assert (other / "notes.txt").exists()


def test_failed_write_leaves_nothing(model_dir, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(project_module, "project_files", explode)
    with pytest.raises(RuntimeError):
        main(["hls", "--model", str(model_dir), "--out", str(tmp_path / "p")])
    assert list(tmp_path.iterdir()) == []


def test_model_is_required_without_a_default(tmp_path, capsys, monkeypatch):
    from tellme.models import default_model

    monkeypatch.setattr(default_model, "BUNDLED", tmp_path / "no-bundled-model")
    assert "--model" in _error(capsys, ["hls", "--out", str(tmp_path / "p")])


def test_not_a_model_folder(tmp_path, capsys):
    assert "manifest.json" in _error(capsys, ["hls", "--model", str(tmp_path), "--out", str(tmp_path / "p")])


def test_config_round_trip_and_validation():
    config = board_config("kv260", ["tlmm.token_lanes=3", "weight_ports=4", "attention_lanes=16"])
    assert AcceleratorConfig.from_dict(json.loads(config.to_json())) == config
    assert config.chunk == 32  # eight fp16 a port a cycle
    with pytest.raises(UserError, match="1..4"):
        apply_overrides(config, ["tlmm.token_lanes=5"])
    with pytest.raises(UserError, match="tile_words"):
        apply_overrides(config, ["tlmm.tile_words=3"])
    with pytest.raises(UserError, match="tellme_top"):
        apply_overrides(config, ["top=1top"])
    with pytest.raises(UserError, match="cannot hold one row"):
        Design.for_shape(ModelConfig(vocab_size=64, hidden_size=8000, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=4), "kv260", ["tlmm.tile_words=64"])


def test_converted_model(bitlinear_model, tmp_path, cache):
    """A folder written by `tellme convert` (not a hand-made fixture) drives the generator."""
    out = tmp_path / "p"
    assert main(["hls", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 0
    for which in ("tlmm", "decoder"):
        result = run_testbench(out, which, cache_dir=cache)
        assert result.returncode == 0, result.stdout + result.stderr
