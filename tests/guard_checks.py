"""What a refused input must look like, from every command: exit code 2, exactly one stderr line
`tellme: error: ...`, no traceback, and the file system exactly as it was (or changed only where the
command is meant to write). Shared by the tests/test_guard_*.py tables."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from tellme.host.cli import main
from tellme.models.convert import convert_checkpoint
from tellme.models.synthetic import TINY, write_random_checkpoint

CLI = [sys.executable, "-m", "tellme.host.cli"]


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    """`tellme ARGV` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(code: int, err: str, *words: str) -> str:
    """Assert the one-line refusal and return the line; each of `words` must be in it."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("tellme: error:")]
    assert len(lines) == 1, err
    assert err.rstrip().endswith(lines[0]), err  # nothing after the error
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def refused(capsys, words: tuple[str, ...] | list[str], *argv: object) -> str:
    code, _, err = run_cli(capsys, *argv)
    return error_line(code, err, *words)


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under the roots (hidden ones too): kind, mode, size and content hash. Two snapshots are
    equal exactly when nothing was created, removed, replaced or changed."""
    seen: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        paths = [root, *root.rglob("*")] if root.is_dir() else [root]
        for path in paths:
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[str(path)] = ("file", stat.S_IMODE(info.st_mode), info.st_size, digest)
            elif stat.S_ISDIR(info.st_mode):
                seen[str(path)] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                seen[str(path)] = ("other", info.st_mode, info.st_rdev, os.readlink(path) if path.is_symlink() else "")
    return seen


def changed(before: dict[str, tuple], after: dict[str, tuple]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def make_model(root: Path, shape=TINY) -> tuple[Path, Path]:
    """A small bitlinear checkpoint and its converted model folder under root: (checkpoint, model)."""
    checkpoint = write_random_checkpoint(root / "ckpt", "bitlinear", shape, seed=3)
    model = root / "model"
    convert_checkpoint(checkpoint, model, quiet=True)
    return checkpoint, model


def copy_model(model: Path, dst: Path) -> Path:
    shutil.copytree(model, dst)
    return dst


def edit_json(path: Path, edit: Callable[[object], object]) -> None:
    """Rewrite a JSON file after edit(data) changed the data in place (what edit returns is ignored)."""
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def replace_json(path: Path, make: Callable[[object], object]) -> None:
    """Rewrite a JSON file with make(data) instead of its data."""
    path.write_text(json.dumps(make(json.loads(path.read_text()))))


def process_alive(pid: int) -> bool:
    """Running (a zombie, dead but not reaped by an init that does not reap, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
