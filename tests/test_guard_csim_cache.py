"""Cause 12 of issue 16: a C-sim cache entry is verified when it is used and compiled again when it is
not what the compiler wrote (a truncated binary used to kill the next run with SIGBUS, a garbage one to
fail every run); a compiler that fails is one line naming its log, and leaves no temporary."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from guard_checks import error_line, make_model, run_cli

from tellme.hls import toolchain
from tellme.models.errors import UserError

SOURCE = {"src/answer.cpp": 'extern "C" __attribute__((visibility("default"))) int tellme_answer() { return 42; }\n'}
LIBRARY = "libanswer.so"


def compile_answer(cache: Path) -> Path:
    return toolchain.build(SOURCE, ["src/answer.cpp"], output=LIBRARY, shared=True, cache_dir=cache, label="test")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# damage to a cache entry -> what is done to the entry's binary
DAMAGE = {
    "truncated": _truncate,
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(b"not an ELF file\n" * 64),
    "one byte changed": lambda path: path.write_bytes(path.read_bytes()[:-1] + b"\x01"),
    "stamp missing": lambda path: path.with_name(path.name + toolchain.STAMP_SUFFIX).unlink(),
    "stamp wrong": lambda path: path.with_name(path.name + toolchain.STAMP_SUFFIX).write_text("0" * 64),
    "binary missing": lambda path: path.unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_entry_is_compiled_again(damage, tmp_path, capsys):
    first = compile_answer(tmp_path)
    good = first.read_bytes()
    DAMAGE[damage](first)
    capsys.readouterr()
    again = compile_answer(tmp_path)
    err = capsys.readouterr().err
    assert again == first and "compiling test" in err
    assert ("cannot be verified" in err) == (damage != "binary missing")
    assert len(again.read_bytes()) == len(good)
    assert ctypes.CDLL(str(again)).tellme_answer() == 42  # loads (a damaged one would crash or raise)
    assert sorted(p.name for p in again.parent.iterdir()) == [LIBRARY, LIBRARY + toolchain.STAMP_SUFFIX, "src"]


def test_a_good_entry_is_reused(tmp_path, capsys):
    first = compile_answer(tmp_path)
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    assert compile_answer(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert "compiling" not in capsys.readouterr().err


FAILING_COMPILER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "failing c++ 1.0"; exit 0; fi
for i in 1 2 3 4 5 6 7 8 9 10; do echo "src/answer.cpp:$i:1: note: something about line $i" >&2; done
echo "src/answer.cpp:11:5: error: 'boom' was not declared in this scope" >&2
for i in 12 13 14 15 16 17 18 19 20; do echo "  context line $i" >&2; done
exit 1
"""


@pytest.fixture()
def failing_compiler(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "bin" / "c++"
    path.parent.mkdir()
    path.write_text(FAILING_COMPILER)
    path.chmod(0o755)
    monkeypatch.setenv("CXX", str(path))
    return path


def test_a_failing_compiler_is_one_line_with_its_log(failing_compiler, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as raised:
        compile_answer(cache)
    message = str(raised.value)
    assert "\n" not in message and "c++ failed (exit 1)" in message and "'boom' was not declared" in message
    log = Path(message.rsplit("full output: ", 1)[1].rstrip(")"))
    assert "context line 20" in log.read_text()
    entry = log.parent
    assert sorted(p.name for p in entry.iterdir()) == [LIBRARY + ".log", "src"]  # no binary, no temporary


def test_a_failing_compiler_through_the_cli(failing_compiler, tmp_path, capsys, monkeypatch):
    model = make_model(tmp_path)[1]
    monkeypatch.setenv("TELLME_CACHE", str(tmp_path / "cache"))
    for argv in (["run", "--backend", "csim", "--prompt", "a"],
                 ["logits", "--backend", "csim", "--tokens", "1,2", "--out", tmp_path / "l.npy"]):
        code, _, err = run_cli(capsys, *argv, "--model", model)
        error_line(code, err, "c++ failed (exit 1)", "'boom' was not declared", "full output:")
        assert len(err.strip().splitlines()) == 2  # the progress line, then the error
    assert not (tmp_path / "l.npy").exists()
