"""The board install stays light: the host runtime never imports the generator or heavy frameworks."""

import subprocess
import sys

HEAVY = ("tensorflow", "keras", "torch", "jinja2", "transformers", "tellme.hls", "pynq")


def test_host_imports_stay_light():
    code = (
        "import sys, tellme.host, tellme.host.cli, tellme.host.commands, tellme.host.backends, "
        "tellme.host.generate, tellme.host.sampling, tellme.host.tokenizer, tellme.host.device, "
        "tellme.host.session, tellme.host.design_manifest, tellme.host.pynq_device, tellme.models.reference, "
        "tellme.models.ddr_image, tellme.host.selftest, tellme.host.board_package, tellme.host.cma, "
        "tellme.host.registers, tellme.host.top_interface, tellme.host.notebooks\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"host pulled in: {result.stdout.strip()}"


def test_board_extra_and_notebook_entry_point():
    """pynq get-notebooks finds the notebook through the pynq.notebooks entry point; the board extra keeps
    numpy below 2 on the boards' ARM cores only (the installed package's metadata)."""
    from importlib import metadata, resources

    (entry,) = [e for e in metadata.entry_points(group="pynq.notebooks") if e.name == "tellme"]
    assert resources.files(entry.load()).joinpath("chat.ipynb").is_file()
    board = [r for r in metadata.requires("tellme-hls") if 'extra == "board"' in r]
    numpy = [r for r in board if r.startswith("numpy")]
    assert len(numpy) == 1 and "<2" in numpy[0] and "aarch64" in numpy[0] and "armv7l" in numpy[0], board
