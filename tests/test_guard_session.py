"""Causes 9 and 13 of issue 16: a chat recovers from a message longer than the room left, and a Session
runs one generation at a time (a second live generator is refused, the first one is undisturbed)."""

from __future__ import annotations

import gc
import subprocess
from pathlib import Path

import pytest
from guard_checks import CLI, make_model

from tellme.host.generate import ContextFull
from tellme.host.session import Session
from tellme.models.errors import UserError


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("session"))[1]


@pytest.fixture()
def session(model):
    with Session(model) as s:
        yield s


# every way to start a generation, or to disturb one, while another generator is open
STARTS = {
    "generate": lambda s: s.generate("the table", max_new_tokens=3),
    "chat": lambda s: s.chat("the table", max_new_tokens=3),
    "reset": lambda s: s.reset(),
}


@pytest.mark.parametrize("first", ["generate", "chat"])
@pytest.mark.parametrize("second", sorted(STARTS))
def test_a_second_live_generator_is_refused(first, second, session):
    alone = "".join(STARTS[first](session))
    session.reset()
    running = STARTS[first](session)
    pieces = [next(running)]  # suspended in the middle of its reply
    with pytest.raises(UserError, match="still streaming a previous reply"):
        STARTS[second](session)
    pieces += list(running)
    assert "".join(pieces) == alone  # the refused call changed nothing
    again = STARTS[second](session)  # with the first one finished, the second may start
    if again is not None:
        list(again)
        assert session.stats.new_tokens >= 1


def test_a_generator_not_yet_started_counts_until_closed_or_dropped(session):
    pending = session.generate("the table", max_new_tokens=3)
    with pytest.raises(UserError, match="still streaming"):
        session.generate("the chair")
    pending.close()
    list(session.generate("the chair", max_new_tokens=2))
    dropped = session.generate("the table", max_new_tokens=3)
    del dropped
    gc.collect()
    list(session.generate("the chair", max_new_tokens=2))
    assert session.stats.new_tokens == 2


def test_chat_recovers_after_a_message_longer_than_the_context(session):
    too_long = "the table " * 200  # more tokens than the whole context (128)
    with pytest.raises(ContextFull, match="this message needs"):
        session.chat(too_long)
    assert not session.context_full and session.position == 0
    first = "".join(session.chat("And the table", max_new_tokens=4))
    with pytest.raises(ContextFull, match="this message needs"):
        session.chat(too_long)
    second = "".join(session.chat(" and the chair", max_new_tokens=4))
    session.reset()  # the same conversation without the refused messages gives the same replies
    assert "".join(session.chat("And the table", max_new_tokens=4)) == first
    assert "".join(session.chat(" and the chair", max_new_tokens=4)) == second


def test_cli_chat_recovers_after_an_over_long_message(model):
    script = "And the table\n" + "the table " * 200 + "\nthe chair\n/quit\n"
    result = subprocess.run([*CLI, "run", "--chat", "--model", str(model), "--max-new-tokens", "4"],
                            input=script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("this message needs") == 1
    assert result.stderr.count("generated 4 tok") == 2  # the turns before and after the long one
    assert "context is full" not in result.stderr
