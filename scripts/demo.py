"""`make demo`: stream a continuation from the bundled model (or, in a checkout that has none yet, from a
small random model generated on the spot, which shows the flow but writes no sensible text)."""

from __future__ import annotations

import sys
from pathlib import Path

from tellme.host.cli import main as tellme
from tellme.models.errors import UserError

PROMPT = "And it came to pass"
DEMO_DIR = Path("build/demo-model")


def model_dir() -> Path:
    try:
        from tellme.models.default_model import default_model_dir

        return default_model_dir()
    except (ImportError, UserError):
        pass
    if not (DEMO_DIR / "manifest.json").is_file():
        from tellme.models.convert import convert_checkpoint
        from tellme.models.synthetic import write_random_checkpoint

        print("no bundled model yet: generating a small random one (its text is noise)", file=sys.stderr)
        convert_checkpoint(write_random_checkpoint(DEMO_DIR.with_name("demo-checkpoint")), DEMO_DIR, force=True)
    return DEMO_DIR


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "reference"
    sys.exit(tellme(["run", "--model", str(model_dir()), "--backend", backend, "--prompt", PROMPT,
                     "--max-new-tokens", "48"]))
