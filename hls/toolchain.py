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

from tellme.models.errors import UserError

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
    """$TELLME_CACHE, else ~/.cache/tellme."""
    env = os.environ.get("TELLME_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tellme"


def source_hash(sources: dict[str, str], flags: tuple[str, ...], extra: str = "") -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    digest.update("\0".join(flags).encode() + b"\0" + extra.encode())
    return digest.hexdigest()


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
    `compile_units` into `output` there; an existing build is reused. Returns the output path."""
    cxx = compiler()
    ap_types = ap_types_dir()
    # hidden: template instances and their static buffers must not be shared between loaded designs
    link = ("-shared", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden") if shared else ()
    key = source_hash(sources, flags + link + tuple(compile_units) + (output,), compiler_version(cxx) + str(ap_types))
    folder = (cache_dir or cache_root() / "csim") / key[:32]
    target = folder / output
    if target.is_file():
        return target
    for name, text in sources.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    fd, tmp = tempfile.mkstemp(prefix=f".{output}.", dir=folder)
    os.close(fd)
    command = [cxx, *flags, *link, "-isystem", str(ap_types)]
    command += [f"-I{folder / d}" for d in include_dirs]
    command += [str(folder / unit) for unit in compile_units] + ["-o", tmp]
    print(f"compiling {label} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        os.unlink(tmp)
        print(" failed", file=sys.stderr)
        raise RuntimeError(f"g++ failed ({' '.join(command)}):\n{result.stderr[-4000:]}")
    os.replace(tmp, target)
    print(f" done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return target
