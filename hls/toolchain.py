"""g++ against the ap_types headers hls4ml ships: locating both, and compiling into a cache keyed by a
hash of everything that affects the binary (sources, flags, compiler), so repeat builds are free."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tellme.models.atomic import write_atomic
from tellme.models.errors import UserError
from tellme.models.interrupts import run_child
from tellme.models.model_folder import sha256_file
from tellme.models.output_path import check_output

STAMP_SUFFIX = ".sha256"
CXX_STANDARD = "-std=c++14"
# -ffp-contract=off: every float multiply and add rounds on its own, as in the hardware and in numpy
BASE_FLAGS = (CXX_STANDARD, "-O2", "-ffp-contract=off", "-Wno-unknown-pragmas")
# shift-base is off: ap_types sign-extends with left shifts of negative values, which C++20 defines
# but UBSan flags under C++14; every other UB check stays fatal.
SANITIZE_FLAGS = (
    CXX_STANDARD,
    "-O1",
    "-g",
    "-ffp-contract=off",
    "-Wno-unknown-pragmas",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize=shift-base",
    "-fno-sanitize-recover=all",
)


def compiler() -> str:
    """Path of the C++ compiler ($CXX, default g++)."""
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise UserError(f"C simulation needs a C++ compiler but {name!r} was not found: install g++ (or set CXX)")
    return path


def compiler_version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else cxx


def ap_types_dir() -> Path:
    """The ap_types headers inside the installed hls4ml package."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("C simulation needs the ap_types headers from hls4ml: pip install 'tellme-hls[hls]'")
    for location in spec.submodule_search_locations:
        path = Path(location) / "templates" / "vivado" / "ap_types"
        if (path / "ap_int.h").is_file():
            return path
    raise UserError("the installed hls4ml has no templates/vivado/ap_types/ap_int.h: reinstall hls4ml>=1.0")


def cache_root() -> Path:
    """$TELLME_CACHE, else ~/.cache/tellme; checked like every output (a file there, or a folder that
    cannot be written, is a one-line error before anything is compiled)."""
    env = os.environ.get("TELLME_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "tellme"
    return check_output(root, folder=True, what=f"the C-sim cache {root}" + (" ($TELLME_CACHE)" if env else ""))


def source_hash(sources: dict[str, str], flags: tuple[str, ...], extra: str = "") -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    digest.update("\0".join(flags).encode() + b"\0" + extra.encode())
    return digest.hexdigest()


def _stamp(target: Path) -> Path:
    """Beside a cached binary: the sha256 of the binary as the compiler wrote it."""
    return target.with_name(target.name + STAMP_SUFFIX)


def cached(target: Path) -> bool:
    """A cache entry is used only when it is exactly what the compiler wrote: a binary truncated or
    overwritten since (a full disk, a crash, a hand edit) would crash the loader (SIGBUS) or fail on
    every run, so it is compiled again instead."""
    stamp = _stamp(target)
    if not target.is_file() or not stamp.is_file():
        return False
    return stamp.read_text().strip() == sha256_file(target)


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no output")


def build(
    sources: dict[str, str],
    compile_units: list[str],
    *,
    output: str,
    flags: tuple[str, ...] = BASE_FLAGS,
    shared: bool = False,
    include_dirs: tuple[str, ...] = ("src", "tb"),
    cache_dir: Path | None = None,
    label: str = "C simulation",
) -> Path:
    """Write `sources` (relative path -> text) into a cache folder named by their hash and compile
    `compile_units` into `output` there; a verified existing build is reused (`cached`). Returns the
    output path. A compiler failure is one UserError naming the log; an interrupt leaves no temporary
    and no compiler running (tellme.models.interrupts)."""
    cxx = compiler()
    ap_types = ap_types_dir()
    # hidden: template instances and their static buffers must not be shared between loaded designs
    link = ("-shared", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden") if shared else ()
    key = source_hash(sources, flags + link + tuple(compile_units) + (output,), compiler_version(cxx) + str(ap_types))
    folder = (check_output(cache_dir, folder=True) if cache_dir else cache_root() / "csim") / key[:32]
    target = folder / output
    if cached(target):
        return target
    if target.exists():
        print(f"tellme: warning: {target} cannot be verified (damaged, or cached by an older tellme): "
              "compiling it again", file=sys.stderr)
    for name, text in sources.items():
        write_atomic(folder / name, text)
    command = [cxx, *flags, *link, "-isystem", str(ap_types)]
    command += [f"-I{folder / d}" for d in include_dirs]
    command += [str(folder / unit) for unit in compile_units]
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output}.", dir=folder)
        os.close(fd)
        print(f"compiling {label} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            result = run_child([*command, "-o", tmp])
        except BaseException:
            print(" stopped", file=sys.stderr)  # end the progress line before the reason is printed
            raise
        if result.returncode:
            print(" failed", file=sys.stderr)
            log = folder / f"{output}.log"
            write_atomic(log, f"$ {' '.join(command)} -o {output}\n{result.stderr}")
            raise UserError(f"{Path(cxx).name} failed (exit {result.returncode}) compiling the {label}: "
                            f"{_first_error(result.stderr)[:300]} (full output: {log})")
        os.replace(tmp, target)
        write_atomic(_stamp(target), sha256_file(target) + "\n")
    except OSError as exc:
        raise UserError(f"cannot compile into {folder}: {exc.strerror or exc}: check the space and permissions "
                        "there, or set TELLME_CACHE to another folder") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    print(f" done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return target
