"""May this output path be written? One check, made before any work, for every output: tellme convert's
folder, logits --out, hls --out, build --out and the C-sim cache. A mistake is then one line before
anything is computed or written, never a traceback halfway, and an input or a device is never replaced.

Outputs are written by rename (tellme.models.atomic), so what must be writable is the folder that will
hold them: the nearest folder that exists on the way to the path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import UserError


def check_output(path: Path | str, *, folder: bool = False, inputs: Iterable[Path | str] = (),
                 what: str | None = None) -> Path:
    """UserError unless `path` can become a new file (folder=False) or folder: it is not a device or
    another special file, not the wrong kind of thing, not an input nor inside or around one, and the
    folder that will hold it can be written. `what` names the path in messages (e.g. "--out x")."""
    path = Path(path)
    name = what or str(path)
    target = path.resolve()  # follows links: a link to /dev/full is a device
    if not folder and target.is_dir():
        raise UserError(f"{name} is a folder: give a file name")
    for source in inputs:
        source = Path(source).resolve()
        if target == source or source in target.parents or target in source.parents:
            raise UserError(f"{name} overlaps the input {source}: choose a path outside it")
    if target.exists():
        _check_kind(target, folder, name)
    holder = _nearest_existing(target.parent)
    if not holder.is_dir():
        raise UserError(f"{name} lies under {holder}, which is a file, not a folder: choose another path")
    if not os.access(holder, os.W_OK | os.X_OK):
        raise UserError(f"{name} cannot be written: {holder} is not writable (choose another path or fix its "
                        "permissions)")
    return path


def _check_kind(target: Path, folder: bool, name: str) -> None:
    """An existing target: a folder where one is wanted, or a regular file (never a device)."""
    if target.is_dir():
        return
    if not target.is_file():
        raise UserError(f"{name} is a device or special file, not a regular file: choose another path")
    if folder:
        raise UserError(f"{name} is a file, not a folder: choose another path")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
