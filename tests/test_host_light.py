"""The board install stays light: the host runtime never imports the generator or heavy frameworks."""

import subprocess
import sys

HEAVY = ("tensorflow", "keras", "torch", "jinja2", "transformers", "tellme.hls", "pynq")


def test_host_imports_stay_light():
    code = (
        "import sys, tellme.host, tellme.host.cli, tellme.host.commands, tellme.host.backends, "
        "tellme.host.generate, tellme.host.sampling, tellme.host.tokenizer, tellme.host.device, "
        "tellme.host.session, tellme.host.design_manifest, tellme.host.pynq_device, tellme.models.reference, "
        "tellme.models.ddr_image\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"host pulled in: {result.stdout.strip()}"
