"""A user's mistake gets one line on stderr and exit code 2, never a traceback."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tellme.models.synthetic import TINY, write_random_checkpoint

CLI = [sys.executable, "-m", "tellme.host.cli"]


def tellme(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("tellme: error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    return write_random_checkpoint(tmp_path / "ckpt", "bitlinear", TINY.replace(num_hidden_layers=2))


def edit_tensors(ckpt: Path, edit) -> None:
    tensors = load_file(str(ckpt / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(ckpt / "model.safetensors"))


def edit_config(ckpt: Path, **changes) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    config.update(changes)
    (ckpt / "config.json").write_text(json.dumps(config))


def test_truncated_safetensors(checkpoint, tmp_path):
    path = checkpoint / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "model.safetensors")
    assert not (tmp_path / "out").exists()


def test_missing_tensor(checkpoint, tmp_path):
    edit_tensors(checkpoint, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "model.layers.1.mlp.up_proj.weight")


def test_wrong_shape(checkpoint, tmp_path):
    edit_tensors(checkpoint, lambda t: t.update({"model.norm.weight": np.ones(7, np.float32)}))
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "model.norm.weight", "shape")


def test_unknown_model_type(checkpoint, tmp_path):
    edit_config(checkpoint, model_type="gpt2")
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "gpt2")


def test_config_contradicts_tensors(checkpoint, tmp_path):
    edit_config(checkpoint, num_hidden_layers=1)  # the file holds two layers
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "does not match")
    edit_config(checkpoint, num_hidden_layers=2, hidden_size=96)
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "does not match")


def test_linear_class_mismatch(checkpoint, tmp_path):
    """Packed bitlinear weights read as online (latent) weights would be garbage: refused."""
    edit_config(checkpoint, quantization_config={"quant_method": "bitnet", "linear_class": "autobitlinear",
                                                 "quantization_mode": "online"})
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "shape")


def test_missing_quantization_config(checkpoint, tmp_path):
    config = json.loads((checkpoint / "config.json").read_text())
    del config["quantization_config"]
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert_one_line_error(tellme("convert", checkpoint, tmp_path / "out"), "quantization_config")


def test_not_a_checkpoint_folder(tmp_path):
    assert_one_line_error(tellme("convert", tmp_path / "nowhere", tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    assert_one_line_error(tellme("convert", tmp_path / "empty", tmp_path / "out"), "config.json")


def test_existing_destination_is_refused_then_replaced_with_force(checkpoint, tmp_path):
    out = tmp_path / "out"
    assert tellme("convert", checkpoint, out).returncode == 0
    (out / "stale.txt").write_text("from an older conversion")
    assert_one_line_error(tellme("convert", checkpoint, out), "--force")
    assert tellme("convert", checkpoint, out, "--force").returncode == 0
    assert (out / "manifest.json").is_file() and not (out / "stale.txt").exists()


def test_force_never_replaces_a_folder_that_is_not_a_model(checkpoint, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert_one_line_error(tellme("convert", checkpoint, mine, "--force"), "not a tellme model folder")
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_hls_force_never_replaces_the_model(checkpoint, tmp_path):
    model = tmp_path / "model"
    assert tellme("convert", checkpoint, model).returncode == 0
    before = sorted(p.name for p in model.iterdir())
    assert_one_line_error(tellme("hls", "--model", model, "--out", model, "--force"), "overlaps the input")
    assert_one_line_error(tellme("hls", "--model", model, "--out", tmp_path, "--force"), "overlaps the input")
    assert sorted(p.name for p in model.iterdir()) == before


def test_converting_into_the_source_is_refused(checkpoint):
    before = sorted(p.name for p in checkpoint.iterdir())
    assert_one_line_error(tellme("convert", checkpoint, checkpoint / "inside"), "overlaps the input")
    assert sorted(p.name for p in checkpoint.iterdir()) == before


def test_corrupt_converted_model(checkpoint, tmp_path):
    out = tmp_path / "out"
    assert tellme("convert", checkpoint, out).returncode == 0
    weights = out / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert_one_line_error(tellme("logits", "--model", out, "--tokens", "1,2", "--out", tmp_path / "l.npy"),
                          "checksum")
    assert not (tmp_path / "l.npy").exists()


def test_prompt_longer_than_context(checkpoint, tmp_path):
    out = tmp_path / "out"
    assert tellme("convert", checkpoint, out).returncode == 0
    long_prompt = "the table " * 200  # far more tokens than max_position_embeddings=128
    assert_one_line_error(tellme("run", "--model", out, "--prompt", long_prompt), "context")
    tokens = ",".join(["5"] * 129)
    assert_one_line_error(tellme("logits", "--model", out, "--tokens", tokens, "--out", tmp_path / "l.npy"),
                          "context")


def test_bad_options(checkpoint, tmp_path):
    out = tmp_path / "out"
    assert tellme("convert", checkpoint, out).returncode == 0
    assert_one_line_error(tellme("logits", "--model", out, "--tokens", "1,x", "--out", tmp_path / "l.npy"),
                          "--tokens")
    assert_one_line_error(tellme("logits", "--model", out, "--tokens", "1,999", "--out", tmp_path / "l.npy"),
                          "token ids")
    assert_one_line_error(tellme("run", "--model", out, "--prompt", "a", "--top-p", "0"), "--top-p")
    assert_one_line_error(tellme("run", "--model", out, "--prompt", "a", "--backend", "fpga"), "backend")
    assert_one_line_error(tellme("run", "--model", tmp_path, "--prompt", "a"), "tellme convert")


def test_model_folder_without_tokenizer(checkpoint, tmp_path):
    (checkpoint / "tokenizer.json").unlink()
    out = tmp_path / "out"
    assert tellme("convert", checkpoint, out).returncode == 0
    assert_one_line_error(tellme("run", "--model", out, "--prompt", "a"), "tokenizer.json")
    shutil.rmtree(out)


def test_more_bad_values(checkpoint, tmp_path):
    out = tmp_path / "out"
    assert tellme("convert", checkpoint, out).returncode == 0
    assert_one_line_error(tellme("run", "--model", out, "--prompt", "a", "--temperature", "nan"), "--temperature")
    assert_one_line_error(tellme("logits", "--model", out, "--tokens", "1,2", "--out", tmp_path), "is a folder")


def test_design_with_unknown_parameters(tmp_path):
    from tellme.hls.config import AcceleratorConfig
    from tellme.models.errors import UserError

    with pytest.raises(UserError, match="not understood"):
        AcceleratorConfig.from_dict({"board": "kv260", "part": "x", "clock_mhz": 250.0, "warp_drive": 9})
    with pytest.raises(UserError, match="not understood"):
        AcceleratorConfig.from_dict({"board": "kv260", "part": "x", "clock_mhz": 250.0, "tlmm": {"q": "many"}})
