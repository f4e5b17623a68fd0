"""`tellme run` streams text and reports its speed; the package installs only under tellme/."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "tellme.host.cli"]


def test_run_streams_and_reports_stats(bitlinear_model):
    result = subprocess.run(
        [*CLI, "run", "--model", str(bitlinear_model.model_dir), "--prompt", "And the table",
         "--max-new-tokens", "12"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert result.stdout.startswith("And the table")
    assert len(result.stdout.strip()) > len("And the table")
    for figure in ("TTFT", "prefill", "decode", "tok/s"):
        assert figure in result.stderr


@pytest.mark.parametrize("flags", [["--temperature", "0.9", "--seed", "3"],
                                   ["--temperature", "1.0", "--top-k", "5", "--top-p", "0.9", "--seed", "3"]])
def test_sampling_is_reproducible_with_a_seed(bitlinear_model, flags):
    cmd = [*CLI, "run", "--model", str(bitlinear_model.model_dir), "--prompt", "the", "--max-new-tokens", "10",
           *flags]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert first == second


def test_train_without_tensorflow_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from tellme.host.cli import main

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as on an install without the train extra
    code = main(["train", "--corpus", str(tmp_path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err == "tellme: error: this command needs tensorflow: pip install 'tellme-hls[train]'"


def test_commands_call_the_library_not_each_other():
    """No part of the library fakes a command line to reach another part."""
    root = Path(__file__).parents[1]
    for package in ("hls", "host", "models"):
        for path in (root / package).rglob("*.py"):
            assert "argparse.Namespace(" not in path.read_text(), path


def test_wheel_installs_only_the_tellme_namespace(tmp_path):
    # build from a copy: setuptools writes build/ beside the sources, and the checkout is not ours to litter
    source = tmp_path / "src"
    shutil.copytree(Path(__file__).parents[1], source,
                    ignore=shutil.ignore_patterns(".venv", ".git", "build", "bench", "__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), "."], check=True, cwd=str(source))
    wheel = next(tmp_path.glob("tellme_hls-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"tellme"}, top_level
    for module in ("tellme/host/cli.py", "tellme/models/reference.py", "tellme/hls/__init__.py",
                   "tellme/host/notebooks/chat.ipynb", "tellme/host/notebooks/__init__.py"):
        assert module in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)], check=True)
    help_text = subprocess.run([str(venv / "bin" / "tellme"), "--help"], capture_output=True, text=True,
                               check=True).stdout
    for command in ("convert", "train", "logits", "run", "hls", "build", "package", "selftest"):
        assert command in help_text
