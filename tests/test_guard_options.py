"""Causes 3, 4 and 5 of issue 16: a bad option value or prompt is one line with exit 2, from every
command that takes it, before any model is loaded or anything written; in a chat, a bad message is one
notice and the conversation goes on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from guard_checks import CLI, changed, error_line, make_model, refused, snapshot

from tellme.host.session import Session
from tellme.models.errors import UserError

HUGE = "99999999999999999999999"  # beyond int64


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("options"))[1]


# the commands that sample: one-shot and chat
SAMPLING_COMMANDS = {
    "run": lambda model: ["run", "--model", model, "--prompt", "And the"],
    "chat": lambda model: ["run", "--chat", "--model", model, "--prompt", "And the"],
}
# bad sampling option -> words of the error
BAD_SAMPLING = {
    ("--seed", "-1"): "--seed must be >= 0",
    ("--max-new-tokens", "0"): "--max-new-tokens",
    ("--max-new-tokens", HUGE): "context holds",
    ("--top-k", "-1"): "--top-k",
    ("--top-p", "0"): "--top-p",
    ("--top-p", "nan"): "--top-p",
    ("--temperature", "-1"): "--temperature",
    ("--temperature", "inf"): "--temperature",
    ("--temperature", "nan"): "--temperature",
}


CASES = [(command, option) for command in sorted(SAMPLING_COMMANDS) for option in sorted(BAD_SAMPLING)
         if not (command == "chat" and option == ("--max-new-tokens", HUGE))]  # a chat reply stops at a full context


@pytest.mark.parametrize(("command", "option"), CASES, ids=[f"{c} {o[0]} {o[1][:12]}" for c, o in CASES])
def test_bad_sampling_option(command, option, model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path, model)
    refused(capsys, [BAD_SAMPLING[option]], *SAMPLING_COMMANDS[command](model), *option)
    assert changed(before, snapshot(tmp_path, model)) == set()


# bad --tokens (logits is the one command taking token ids) -> words
BAD_TOKENS = {HUGE: "token ids must lie in [0, 320)", "-1": "token ids must lie in [0, 320)",
              "320": "token ids must lie in [0, 320)", f"1,{HUGE},2": HUGE, "1,x": "--tokens", ",": "--tokens"}


@pytest.mark.parametrize("tokens", sorted(BAD_TOKENS))
@pytest.mark.parametrize("backend", ["reference", "csim"])
def test_bad_token_ids(backend, tokens, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TELLME_CACHE", str(tmp_path / "cache"))
    before = snapshot(tmp_path, model)
    refused(capsys, [BAD_TOKENS[tokens]], "logits", "--model", model, "--backend", backend, "--tokens", tokens,
            "--out", tmp_path / "l.npy")
    assert changed(before, snapshot(tmp_path, model)) == set()


NOT_UTF8 = "And \udcff\udcfe the"  # what Python makes of the bytes b"\xff\xfe" in argv (surrogateescape)


@pytest.mark.parametrize("command", sorted(SAMPLING_COMMANDS))
def test_prompt_that_is_not_utf8(command, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TELLME_CACHE", str(tmp_path / "cache"))
    argv = [*SAMPLING_COMMANDS[command](model)[:-1], NOT_UTF8]
    for backend in ("reference", "csim"):
        before = snapshot(tmp_path, model)
        refused(capsys, ["not UTF-8"], *argv, "--backend", backend)
        assert changed(before, snapshot(tmp_path, model)) == set()  # refused before the model is loaded


def test_session_refuses_text_that_is_not_utf8(model):
    with Session(model) as session:
        with pytest.raises(UserError, match="not UTF-8"):
            session.generate(NOT_UTF8)
        with pytest.raises(UserError, match="not UTF-8"):
            session.chat(NOT_UTF8)
        assert "".join(session.chat("And the", max_new_tokens=3))  # the session is still usable


def test_prompt_bytes_on_the_real_command_line(model):
    """The bytes as a shell passes them, through a real process."""
    result = subprocess.run([*map(str.encode, CLI), b"run", b"--model", str(model).encode(), b"--prompt",
                             b"And \xff\xfe the"], capture_output=True, timeout=120)
    error_line(result.returncode, result.stderr.decode(errors="replace"), "not UTF-8")


def test_chat_goes_on_after_a_message_that_is_not_utf8(model):
    """stdin bytes that are not UTF-8: a notice for that message, then the next one is answered."""
    script = b"And the\n\xff\xfe broken\nAnd the\n/quit\n"
    result = subprocess.run([*CLI, "run", "--chat", "--model", str(model), "--max-new-tokens", "3"],
                            input=script, capture_output=True, timeout=120)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0 and "Traceback" not in err, err
    assert err.count("not UTF-8") == 1
    assert err.count("generated 3 tok") == 2  # the turns before and after the bad one
