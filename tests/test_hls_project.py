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
from tellme.hls.config import AP_INT_MAX_W, AcceleratorConfig, apply_overrides
from tellme.hls.csim import TlmmSim, run_testbench
from tellme.hls.design import Design, model_sizes
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
    assert names == {
        "README.md", "config.json", "run_hls.tcl", "src/config.h", "src/tlmm.h", "src/top.cpp",
        "src/tlmm_top.cpp", "src/decoder.h", "src/elementwise.h", "src/attention.h", "src/fp16.h",
        "tb/tb_tlmm.cpp", "tb/tb_decoder.cpp", "tb/tb_io.h", "tb/csim_bridge.cpp",
        "tb/data/tlmm/weights.bin", "tb/data/tlmm/x.bin", "tb/data/tlmm/s_x.bin", "tb/data/tlmm/s_w.bin",
        "tb/data/tlmm/y.bin", "tb/data/decoder/weights.bin", "tb/data/decoder/params.bin",
        "tb/data/decoder/hidden_in.bin", "tb/data/decoder/hidden_out.bin",
    }
    kernel = Path(project_module.__file__).parent / "kernels" / "tlmm.h"
    assert (project / "src" / "tlmm.h").read_text() == kernel.read_text()  # copied verbatim
    config = json.loads((project / "config.json").read_text())
    assert (config["max_k"], config["max_n"]) == (130, 130)  # sized by the model's largest layers
    assert "layers.0.gate_proj" in (project / "tb" / "tb_tlmm.cpp").read_text()
    assert not list(project.parent.glob(".kv260.*"))  # no temp folders left beside OUT


def test_golden_vectors_come_from_the_model(project, model_dir):
    folder = Design.for_model(model_dir).folder
    packed, scale = folder.tensor("layers.0.gate_proj.tlmm"), folder.tensor("layers.0.gate_proj.scale")[0]
    n, k = PROJS["gate_proj"]
    sim = TlmmSim.from_project(project)
    x = np.fromfile(project / "tb" / "data" / "tlmm" / "x.bin", dtype=np.int8).reshape(2, k)
    s_x = np.fromfile(project / "tb" / "data" / "tlmm" / "s_x.bin", dtype=np.float32)
    y = np.fromfile(project / "tb" / "data" / "tlmm" / "y.bin", dtype=np.float32).reshape(2, n)
    assert np.fromfile(project / "tb" / "data" / "tlmm" / "s_w.bin", dtype=np.float32)[0] == scale
    np.testing.assert_array_equal(sim.matmul(packed, k, x, s_x, scale).view(np.uint32), y.view(np.uint32))


def test_testbench_passes_with_plain_gpp(project, cache):
    result = run_testbench(project, cache_dir=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


def test_testbench_passes_under_asan_and_ubsan(project, cache):
    result = run_testbench(project, sanitize=True, cache_dir=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


def test_testbench_fails_on_a_mismatch(project, cache, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(project, broken)
    y = np.fromfile(broken / "tb" / "data" / "tlmm" / "y.bin", dtype=np.float32)
    y[5] = np.nextafter(y[5], np.float32(np.inf))  # one ulp off
    y.tofile(broken / "tb" / "data" / "tlmm" / "y.bin")
    result = run_testbench(broken, cache_dir=cache)
    assert result.returncode != 0
    assert "FAIL: 1 of" in result.stdout


def test_run_hls_tcl_names_part_clock_top(project):
    tcl = (project / "run_hls.tcl").read_text()
    assert "set_part xck26-sfvc784-2LV-c" in tcl
    assert re.search(r"create_clock -period 4\.0\b", tcl)
    assert "set_top tellme_top" in tcl
    for command in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert command in tcl


STAND_IN = """
set calls {}
foreach name {open_project set_top add_files open_solution set_part create_clock config_export
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
    assert names == ["open_project", "set_top"] + ["add_files"] * 8 + [
        "open_solution", "set_part", "create_clock", "config_export",
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
    assert f"#define TELLME_WEIGHT_STORAGE {storage}" in (out / "src" / "config.h").read_text()


def test_overrides_reach_config_h(model_dir, tmp_path, cache):
    out = tmp_path / "p"
    args = ["hls", "--model", str(model_dir), "--out", str(out), "--set", "tlmm.q=4", "--set", "tlmm.table=half",
            "--set", "clock_mhz=200"]
    assert main(args) == 0
    header = (out / "src" / "config.h").read_text()
    assert "static const unsigned Q = 4;" in header
    assert "static const bool half_table = true;" in header
    assert "create_clock -period 5.0 " in (out / "run_hls.tcl").read_text()
    result = run_testbench(out, cache_dir=cache)  # the half-table design passes its testbench too
    assert result.returncode == 0, result.stdout + result.stderr


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tellme: error:") and "\n" not in err
    return err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--set", "tlmm.qq=8"], "unknown parameter"),
        (["--set", "tlmm.q=eight"], "expected int"),
        (["--set", "tlmm.q=0"], "tlmm.q=0"),
        (["--set", "tlmm.table=third"], "full, half"),
        (["--set", "tlmm.q"], "KEY=VALUE"),
        (["--set", "max_k=50"], "too small for the model"),
        (["--board", "vcu118"], "kv260, zcu104, pynq-z2"),
        (["--board", "pynq-z2", "--set", "tlmm.weight_storage=uram"], "no URAM"),
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


def test_model_sizes(model_dir):
    design = Design.for_model(model_dir)
    assert model_sizes(design.model) == (130, 130)
    assert design.model.linear_shapes() == PROJS
    with pytest.raises(UserError, match="lacks"):
        design.folder.tensor("layers.3.gate_proj.tlmm")


def test_config_round_trip_and_validation():
    config = board_config("kv260", ["tlmm.q=16", "axi_width=256"])
    assert AcceleratorConfig.from_dict(json.loads(config.to_json())) == config
    assert config.line_words == 9  # 16 x 144 bits = 2304 bits = 9 x 256
    with pytest.raises(UserError, match="1..64"):
        apply_overrides(config, ["tlmm.q=65"])
    assert apply_overrides(config, ["tlmm.t=64", "axi_width=512"]).gear_bits <= AP_INT_MAX_W
    with pytest.raises(UserError, match="weight_buffer_depth"):
        apply_overrides(config, ["tlmm.weight_buffer_depth=3"])
    with pytest.raises(UserError, match="only 3"):
        apply_overrides(config, ["tlmm.g=2"])
    with pytest.raises(UserError, match="tellme_top, tellme_tlmm_top"):
        apply_overrides(config, ["top=1top"])


def test_converted_model(bitlinear_model, tmp_path, cache):
    """A folder written by `tellme convert` (not a hand-made fixture) drives the generator."""
    out = tmp_path / "p"
    assert main(["hls", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 0
    result = run_testbench(out, cache_dir=cache)
    assert result.returncode == 0, result.stdout + result.stderr
