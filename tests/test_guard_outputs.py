"""Causes 1, 2 and 10 of issue 16: every output path goes through one check before anything is written.

A table of bad outputs runs through every command that writes one (convert, logits --out, hls --out,
build --out, the C-sim cache by $TELLME_CACHE): each is refused in one line with exit 2 and leaves the
file system as it was; an input (or a folder holding one) and a device are never replaced."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from guard_checks import changed, copy_model, error_line, make_model, run_cli, snapshot


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return make_model(tmp_path_factory.mktemp("outputs"))


# command -> argv for an output path `out` (csim-cache: the output is $TELLME_CACHE, set by the test)
COMMANDS = {
    "convert": lambda ckpt, model, out: ["convert", ckpt, out],
    "logits": lambda ckpt, model, out: ["logits", "--model", model, "--tokens", "1,2", "--out", out],
    "hls": lambda ckpt, model, out: ["hls", "--model", model, "--out", out],
    "build": lambda ckpt, model, out: ["build", "--model", model, "--out", out, "--dry-run"],
    "csim-cache": lambda ckpt, model, out: ["run", "--model", model, "--backend", "csim", "--prompt", "a",
                                            "--max-new-tokens", "1"],
}


def _input(command: str, ckpt: Path, model: Path) -> Path:
    return ckpt if command == "convert" else model


# bad output -> (its path, given the work folder and the command's input; the error's words, by command,
# "*" for the others; None where the path is not a mistake for that command: the cache has no input, and
# --out of an existing file replaces it)
BAD_OUTPUTS = {
    "under a regular file": (lambda work, src: work / "notes.txt" / "out", {"*": "is a file, not a folder"}),
    "a named pipe": (lambda work, src: work / "pipe", {"*": "device or special file"}),
    "a link to a device": (lambda work, src: work / "link", {"*": "device or special file"}),
    "the input itself": (lambda work, src: src, {"*": "overlaps the input", "logits": "is a folder",
                                                 "csim-cache": None}),
    "inside the input": (lambda work, src: src / "out", {"*": "overlaps the input", "csim-cache": None}),
    "a file of the input": (lambda work, src: next(p for p in sorted(src.iterdir()) if p.is_file()),
                            {"*": "overlaps the input", "csim-cache": None}),
    "a folder holding the input": (lambda work, src: src.parent, {"*": "overlaps the input", "logits": "is a folder",
                                                                 "csim-cache": None}),
    "an existing file": (lambda work, src: work / "notes.txt", {"*": "is a file, not a folder", "logits": None}),
    "an existing folder": (lambda work, src: work / "notes", {"*": "already exists", "logits": "is a folder",
                                                             "build": "not a tellme design folder",
                                                             "csim-cache": None}),
}


CASES = [(command, bad) for command in sorted(COMMANDS) for bad in sorted(BAD_OUTPUTS)
         if BAD_OUTPUTS[bad][1].get(command, BAD_OUTPUTS[bad][1]["*"]) is not None]


@pytest.mark.parametrize(("command", "bad"), CASES)
def test_bad_output_is_refused_and_nothing_is_written(command, bad, models, tmp_path, capsys, monkeypatch):
    where, words = BAD_OUTPUTS[bad]
    word = words.get(command, words["*"])
    ckpt, model = (copy_model(p, tmp_path / p.name) for p in models)
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me too")
    # a device by a link only: were the check broken, the link would be replaced, never /dev/full itself
    (tmp_path / "link").symlink_to("/dev/full")
    os.mkfifo(tmp_path / "pipe")
    out = where(tmp_path, _input(command, ckpt, model))
    if command == "csim-cache":
        monkeypatch.setenv("TELLME_CACHE", str(out))
    device = Path("/dev/full").stat()
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, *COMMANDS[command](ckpt, model, out))
    error_line(code, err, word)
    assert changed(before, snapshot(tmp_path)) == set()
    assert Path("/dev/full").is_char_device() and Path("/dev/full").stat().st_rdev == device.st_rdev


@pytest.mark.parametrize("command", ["convert", "logits", "hls", "build"])
def test_a_good_output_is_all_that_changes(command, models, tmp_path, capsys):
    ckpt, model = (copy_model(p, tmp_path / p.name) for p in models)
    out = tmp_path / "results" / "out"
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, *COMMANDS[command](ckpt, model, out))
    assert code == 0, err
    assert changed(before, snapshot(tmp_path)) == {str(p) for p in snapshot(out)} | {str(out.parent)}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_logits_replaces_an_existing_file_atomically(models, tmp_path, capsys):
    _, model = models
    out = tmp_path / "logits.npy"
    out.write_text("old")
    code, _, err = run_cli(capsys, "logits", "--model", model, "--tokens", "1,2", "--out", out)
    assert code == 0, err
    assert out.read_bytes().startswith(b"\x93NUMPY") and os.listdir(tmp_path) == ["logits.npy"]


def test_build_refused_for_its_input_leaves_no_design_folder(models, tmp_path, capsys):
    """Cause 10: the refusal comes before the design folder is made (it used to be left, empty, in the model)."""
    model = copy_model(models[1], tmp_path / "model")
    before = snapshot(tmp_path)
    for out in (model / "design", model, tmp_path):
        for force in ([], ["--force"]):
            code, _, err = run_cli(capsys, "build", "--model", model, "--out", out, "--dry-run", *force)
            error_line(code, err, "overlaps the input")
    assert changed(before, snapshot(tmp_path)) == set()


def test_build_failing_while_writing_the_design_removes_what_it_created(models, tmp_path, capsys, monkeypatch):
    """A failure (or an interrupt) before the design's manifest exists leaves no folder, nor the parents
    the run created for it."""
    from tellme.hls import project

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(project, "write_project", broken)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "build", "--model", models[1], "--out", tmp_path / "a" / "b" / "design",
                           "--dry-run")
    assert code == 2 and err.strip().splitlines()[-1].startswith("tellme: error: interrupted by SIGINT: ")
    assert changed(before, snapshot(tmp_path)) == set()


def _nobody() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


@pytest.mark.skipif(os.geteuid() == 0 and (shutil.which("setpriv") is None or _nobody() is None),
                    reason="as root a read-only folder is writable; needs setpriv and a nobody user")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_read_only_folder(command, models):
    """A folder the user cannot write: one line before any work (as root, the command runs as nobody)."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="tellme-ro-"))  # outside pytest's private tmp, so nobody can read it
    try:
        work.chmod(0o755)
        ckpt, model = (copy_model(p, work / p.name) for p in models)
        for path in (work, *work.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        locked = work / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        argv_for = COMMANDS[command]
        out = locked / "out"
        env = {**os.environ, "HOME": str(work)}
        if command == "csim-cache":
            env["TELLME_CACHE"] = str(out)
        prefix: list[str] = []
        if os.geteuid() == 0:
            uid, gid = _nobody()
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        before = snapshot(work)
        result = subprocess.run([*prefix, sys.executable, "-m", "tellme.host.cli",
                                 *map(str, argv_for(ckpt, model, out))],
                                capture_output=True, text=True, timeout=120, env=env, cwd=str(work))
        if "Permission denied" in result.stderr and "tellme" not in result.stderr:
            pytest.skip(f"nobody cannot run this interpreter: {result.stderr.strip()[:200]}")
        error_line(result.returncode, result.stderr, "not writable")
        assert changed(before, snapshot(work)) == set()
    finally:
        shutil.rmtree(work, ignore_errors=True)
