"""Causes 8, 12 (the interrupted compile) and 14 of issue 16: one policy for SIGINT and SIGTERM. Whatever
tellme is doing (writing a model folder, compiling the C simulation, running a Xilinx tool), a signal
ends it with exit code 128 + N and one line, removes its temporaries, and stops the child tool's whole
process group. Real processes and real signals: these cannot be faked in-process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from guard_checks import CLI, changed, make_model, process_alive, snapshot

from tellme.models.interrupts import Interrupted, deferred_interrupts, signal_policy

# whether a tool is still running is read from /proc (zombies count as gone)
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return make_model(tmp_path_factory.mktemp("signals"))


# how the signal reaches tellme: `kill -s SIG PID`, or a terminal's Ctrl-C / hangup-like signal to its
# whole foreground process group (the tool is in a group of its own and must still be stopped)
DELIVERIES = {
    "to tellme": lambda proc, signum: os.kill(proc.pid, signum),
    "to its process group": lambda proc, signum: os.killpg(proc.pid, signum),
}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


def start(argv: list, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"tellme ended before {what}: {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def interrupted(proc: subprocess.Popen, signum: int) -> str:
    """Wait for the interrupted tellme; assert its exit code and its one line; return stderr."""
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    name = signal.Signals(signum).name
    assert err.strip().splitlines()[-1].startswith(f"tellme: error: interrupted by {name}: "), err
    return err


def assert_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if process_alive(pid)], "a child tool outlived tellme"


# --- convert: the model folder is written into a temporary folder, then renamed ---

CONVERT_WITH_A_PAUSE = """
import sys, time
import tellme.models.model_folder as model_folder
real_save = model_folder.save_file
def save_then_wait(*args, **kwargs):
    real_save(*args, **kwargs)  # the temporary folder now holds a partial model
    print("partial", flush=True)
    time.sleep(60)
model_folder.save_file = save_then_wait
from tellme.host.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("replacing", [False, True], ids=["new folder", "--force over a model"])
@pytest.mark.parametrize("delivery", sorted(DELIVERIES))
@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_convert_interrupted(name, delivery, replacing, models, tmp_path):
    ckpt = models[0]
    out = tmp_path / "model"
    if replacing:
        subprocess.run([*CLI, "convert", str(ckpt), str(out)], check=True, capture_output=True)
    before = snapshot(tmp_path)
    force = ["--force"] if replacing else []
    proc = start([sys.executable, "-c", CONVERT_WITH_A_PAUSE, "convert", ckpt, out, *force])
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready and proc.stdout.readline() == b"partial\n", proc.stderr.read().decode()
    DELIVERIES[delivery](proc, SIGNALS[name])
    interrupted(proc, SIGNALS[name])
    assert changed(before, snapshot(tmp_path)) == set()  # no temporary folder, the old model untouched


# --- the C simulation's compile, and tellme build's tools: child processes in a group of their own ---

# a stand-in tool: records its pid and its child's, then waits on the child (like a compiler or vivado)
SLOW_TOOL = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "stand-in 1.0"; exit 0; fi
sleep 300 &
echo "$$ $!" > "$TELLME_TEST_PIDS.tmp" && mv "$TELLME_TEST_PIDS.tmp" "$TELLME_TEST_PIDS"
wait
"""


def stand_in(folder: Path, *names: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text(SLOW_TOOL)
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize("delivery", sorted(DELIVERIES))
@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_csim_compile_interrupted(name, delivery, models, tmp_path):
    cache, pids = tmp_path / "cache", tmp_path / "pids"
    env = {"CXX": str(stand_in(tmp_path / "bin", "c++") / "c++"), "TELLME_CACHE": str(cache),
           "TELLME_TEST_PIDS": str(pids)}
    proc = start([*CLI, "run", "--model", models[1], "--backend", "csim", "--prompt", "a", "--max-new-tokens", "1"],
                 env)
    wait_for(pids.exists, "the compiler started", proc)
    DELIVERIES[delivery](proc, SIGNALS[name])
    interrupted(proc, SIGNALS[name])
    assert_gone([int(pid) for pid in pids.read_text().split()])
    entry = next((cache / "csim").iterdir())
    assert sorted(p.name for p in entry.iterdir()) == ["config.json", "src", "tb"]  # sources; no binary, no temporary


@pytest.mark.parametrize("delivery", sorted(DELIVERIES))
@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_build_interrupted_while_a_tool_runs(name, delivery, models, tmp_path):
    pids, out = tmp_path / "pids", tmp_path / "design"
    tools = stand_in(tmp_path / "bin", "vitis_hls", "vivado")
    env = {"PATH": f"{tools}:/usr/bin:/bin", "TELLME_TEST_PIDS": str(pids)}
    proc = start([*CLI, "build", "--model", models[1], "--out", out], env)
    wait_for(pids.exists, "vitis_hls started", proc)
    DELIVERIES[delivery](proc, SIGNALS[name])
    interrupted(proc, SIGNALS[name])
    assert_gone([int(pid) for pid in pids.read_text().split()])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["built"] is False and not list(out.glob("*.bit"))
    assert (out / "logs" / "vitis_hls.log").is_file()


def test_an_interrupt_waits_for_a_step_that_must_not_be_cut():
    """Swapping a finished folder into place is two renames: a signal between them is held back."""
    steps, previous = [], signal.getsignal(signal.SIGTERM)
    with signal_policy(), pytest.raises(Interrupted) as raised:
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now (between two bytecodes after the kill)
            steps.append("second rename")
    assert steps == ["second rename"] and raised.value.exit_code == 2 and raised.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous  # the policy gave the previous handler back


def test_a_reader_that_goes_away_ends_tellme_quietly(models):
    """`tellme run ... | head -c 5`: exit 141 as for SIGPIPE, and no traceback."""
    proc = start([*CLI, "run", "--model", models[1], "--prompt", "And the", "--max-new-tokens", "100"])
    assert proc.stdout.read(5) == b"And t"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err
