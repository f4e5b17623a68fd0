"""SIGINT and SIGTERM: one policy for the whole command line, and child tools that never outlive it.

`signal_policy()` (installed by `tellme`'s main) turns either signal into `Interrupted`, a
KeyboardInterrupt raised wherever the program is, so every `finally` and `except BaseException` on
the way out runs: temporary folders and files are removed (tellme.models.atomic, the C-sim compile),
devices are freed. Further signals while that cleanup runs are ignored, and `deferred_interrupts()`
holds one back across a step that must not be cut in half (swapping a finished folder into place).

Child tools (g++, vitis_hls, vivado) run in a process group of their own (`child_group`, `run_child`);
on the way out, whatever is left in that group is terminated, then killed. A terminal's Ctrl-C reaches
only tellme, which then stops the group: a tool is never left running as an orphan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 5.0  # how long a tool's group gets to exit after SIGTERM before SIGKILL
_POLL_S = 0.02


EXIT_INTERRUPTED = 2  # as every refused command: the run did not happen, and nothing of it was left behind


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the command ends with one line and exit code 2 once its temporaries and
    child tools are gone."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED


_state = threading.local()


def _deferring() -> list[int] | None:
    return getattr(_state, "pending", None)


@contextmanager
def signal_policy() -> Iterator[None]:
    """While active, SIGINT and SIGTERM raise Interrupted in the main thread (once; later ones are
    ignored so that cleanup finishes). A signal the parent ignored (nohup, a background job) stays
    ignored. Previous handlers come back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, object] = {}

    def ignore(signum: int, frame: object) -> None:
        pass

    def interrupt(signum: int, frame: object) -> None:
        pending = _deferring()
        if pending is not None:
            pending.append(signum)
            return
        for other in previous:
            signal.signal(other, ignore)
        raise Interrupted(signum)

    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN:
            continue
        previous[signum] = current
        signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back Interrupted until the block has finished, then raise it."""
    if _deferring() is not None:  # nested: the outer block raises
        yield
        return
    _state.pending = []
    try:
        yield
    finally:
        pending, _state.pending = _state.pending, None
    if pending:
        raise Interrupted(pending[0])


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: where nothing reaps orphans
    (some containers' init), a stopped tool's children stay in the group as zombies."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.exists("/proc/self/stat"):
        return True  # no /proc (macOS): count every member
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rfind(")") + 2:].split()[:3]  # the name may hold spaces and ')'
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """Terminate what is left of proc's process group: SIGTERM, then SIGKILL after grace_s; proc is reaped."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace_s
        sent = False
        while True:
            proc.poll()  # reap the leader, or it stays in the group as a zombie
            if not _group_alive(proc.pid):
                return
            if not sent:
                _signal_group(proc.pid, signum)
                sent = True
            elif time.monotonic() > deadline:
                break
            time.sleep(_POLL_S)
    proc.poll()


@contextmanager
def child_group(argv: Sequence[str], **popen_options: object) -> Iterator[subprocess.Popen]:
    """subprocess.Popen in a new session (its own process group). However the block ends, nothing of
    the group outlives it: a tool still running (we were interrupted) and anything it left behind are
    stopped (stop_group)."""
    proc = subprocess.Popen(list(argv), start_new_session=True, **popen_options)
    try:
        yield proc
    finally:
        with deferred_interrupts():
            stop_group(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def run_child(argv: Sequence[str], timeout: float | None = None,
              **popen_options: object) -> subprocess.CompletedProcess:
    """Like subprocess.run(capture_output=True, text=True), in a process group of its own (child_group)."""
    with child_group(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_options) as proc:
        stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)
