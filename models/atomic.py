"""Writing outputs so that nothing is ever half-written: into a temporary sibling, then renamed.

A reader (or a crash, or an interrupt: see tellme.models.interrupts) sees the old file or folder or the
new one, never a mix, and no temporary is left behind; an existing folder is refused unless the caller
forces a replacement, and is only removed once the new one is complete. A write the system refuses
(disk full, permissions) is a one-line UserError naming the output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .interrupts import deferred_interrupts
from .output_path import check_output


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace path's contents in one rename."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _not_written(path, exc) from None
        raise


def _not_written(path: Path, exc: OSError) -> UserError:
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return UserError(f"{path} was not written: {exc.strerror or exc}{where}: check the space and permissions there")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_destination(
    dst: Path,
    force: bool,
    replaceable: Callable[[Path], bool],
    what: str,
    inputs: Iterable[Path] = (),
) -> None:
    """Refuse a destination that would destroy something: an input (or a folder holding one), a file or
    device, a place that cannot be written, an existing folder without --force, or with --force one
    that is neither empty nor a `what`."""
    check_output(dst, folder=True, inputs=inputs)
    target = Path(dst).resolve()
    if not target.exists():
        return
    if not force:
        raise UserError(f"{dst} already exists: choose another folder or pass --force to replace it")
    if any(target.iterdir()) and not replaceable(target):
        raise UserError(f"{dst} is not a {what}: --force only replaces one of those; choose another folder")


@contextmanager
def atomic_dir(dst: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside dst; on success it becomes dst, on error it is removed.
    Callers check the destination first (check_destination)."""
    dst = Path(dst)
    if dst.exists() and not force:
        raise UserError(f"{dst} already exists: choose another folder or pass --force to replace it")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    except OSError as exc:
        raise _not_written(dst, exc) from None
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
        yield tmp
        for path in tmp.rglob("*"):  # some writers (safetensors) create files private: make them ordinary
            if path.is_file():
                path.chmod(0o666 & ~_umask())
        with deferred_interrupts():  # the swap is never cut in half
            if dst.exists():
                old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
                dst.rename(old)
                tmp.rename(dst)
                shutil.rmtree(old)
            else:
                tmp.rename(dst)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _not_written(dst, exc) from None
        raise
