"""The Session API: streaming generation, chat over a kept KV cache, context overflow, stats, and the
`tellme run --chat` loop on top of it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tellme.host.backends import open_backend
from tellme.host.generate import ContextFull, GenerationStats, generate
from tellme.host.sampling import Sampler, SamplingParams
from tellme.host.session import Session
from tellme.host.tokenizer import StreamDecoder
from tellme.models.errors import UserError

CLI = [sys.executable, "-m", "tellme.host.cli"]


def greedy_text(session: Session, ids: list[int], n: int) -> tuple[list[int], str]:
    """A fresh greedy continuation of token ids, through the generation loop directly."""
    with open_backend(session.name, session.backend.folder.path) as backend:
        tokens = list(generate(backend, ids, n, Sampler(SamplingParams()), GenerationStats(), session.eos_token_id))
    decoder = StreamDecoder(session.tokenizer)
    return tokens, "".join(decoder.push(t) for t in tokens)


@pytest.fixture()
def session(bitlinear_model):
    with Session(bitlinear_model.model_dir) as s:
        yield s


def test_generate_streams_what_the_loop_produces(session):
    pieces = list(session.generate("And the table", max_new_tokens=12))
    assert len(pieces) > 1 and all(pieces)
    _, text = greedy_text(session, session.tokenizer.encode("And the table"), 12)
    assert "".join(pieces) == text
    stats = session.stats
    assert stats.prompt_tokens == len(session.tokenizer.encode("And the table")) and stats.new_tokens == 12
    assert stats.ttft_s > 0 and stats.prefill_tok_s > 0 and stats.decode_tok_s > 0
    ms = stats.per_token_ms()
    assert ms["device"] > 0 and ms["lm_head"] > 0 and ms["sampling"] > 0
    assert abs(ms["device"] + ms["host"] - 1e3 / stats.decode_tok_s) < 1e-6
    for word in ("TTFT", "prefill", "decode", "device", "LM head", "sampling"):
        assert word in stats.summary()
    # a second call starts over: same prompt, same text
    assert "".join(session.generate("And the table", max_new_tokens=12)) == text


def test_generate_refuses_what_does_not_fit(session):
    with pytest.raises(UserError, match="context holds 128"):
        session.generate("the table " * 20, max_new_tokens=100)
    with pytest.raises(UserError, match="--top-p"):
        session.generate("a", top_p=0)
    with pytest.raises(UserError, match="max-new-tokens"):
        session.generate("a", max_new_tokens=0)


def test_chat_keeps_the_cache_across_turns(session):
    first, second = "And the table", " said the cat"
    reply1 = "".join(session.chat(first, max_new_tokens=6))
    ids1 = session.tokenizer.encode(first)
    tokens1, text1 = greedy_text(session, ids1, 6)
    assert reply1 == text1
    assert session.position == len(ids1) + 5  # the last reply token waits for the next turn
    reply2 = "".join(session.chat(second, max_new_tokens=6))
    ids2 = session.tokenizer.encode(second)
    assert ids2[0] == session.bos_token_id  # ... and is dropped: one BOS per conversation
    _, text2 = greedy_text(session, ids1 + tokens1 + ids2[1:], 6)
    assert reply2 == text2
    session.reset()
    assert session.position == 0 and "".join(session.chat(first, max_new_tokens=6)) == reply1


def test_chat_says_when_the_context_is_full_and_resets(session):
    replies = 0
    while not session.context_full:
        "".join(session.chat("the table and the chair", max_new_tokens=40))
        replies += 1
        assert replies < 20
    assert session.position == session.max_context == 128
    assert session.stats.context_full and "context full" in session.stats.summary()
    assert "reset()" in session.notice
    with pytest.raises(ContextFull, match="context is full"):
        session.chat("more")
    session.reset()
    assert not session.context_full and "".join(session.chat("the table", max_new_tokens=4))


def test_a_message_too_long_for_the_rest_of_the_context(session):
    """Refused on its own: the conversation is unchanged and a shorter message still gets its reply."""
    first = "".join(session.chat("the table " * 10, max_new_tokens=4))
    position = session.position
    with pytest.raises(ContextFull, match="this message needs"):
        session.chat("the table " * 50)
    assert not session.context_full and session.position == position
    reply = "".join(session.chat(" and the chair", max_new_tokens=4))
    assert session.position > position
    session.reset()  # the same conversation without the refused message: the same replies
    assert "".join(session.chat("the table " * 10, max_new_tokens=4)) == first
    assert "".join(session.chat(" and the chair", max_new_tokens=4)) == reply


def test_ctrl_c_inside_generation_closes_the_session(session, monkeypatch):
    calls = []

    def interrupted(hidden, pos):
        calls.append(pos)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(hidden, pos)

    real = session.backend.device.run
    monkeypatch.setattr(session.backend.device, "run", interrupted)
    closed = []
    monkeypatch.setattr(session.backend.device, "close", lambda: closed.append(True))
    with pytest.raises(KeyboardInterrupt):
        list(session.generate("And the table", max_new_tokens=8))
    assert closed == [True]
    with pytest.raises(UserError, match="closed"):
        session.generate("a")


def test_cli_chat(bitlinear_model, session):
    first = "".join(session.chat("And the table", max_new_tokens=40))
    script = "And the table\n/reset\nAnd the table\n" + "the table and the chair\n" * 6 + "/quit\n"
    result = subprocess.run([*CLI, "run", "--chat", "--model", str(bitlinear_model.model_dir),
                             "--max-new-tokens", "40"], input=script, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert first and result.stdout.startswith(f"{first}\n{first}\n")  # /reset: the same first turn again
    assert "conversation reset" in result.stderr
    assert "context is full" in result.stderr and "/reset" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_needs_a_prompt_without_chat(bitlinear_model):
    result = subprocess.run([*CLI, "run", "--model", str(bitlinear_model.model_dir)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "--prompt" in result.stderr and "Traceback" not in result.stderr


def test_top_k_sampling_picks_like_a_full_sort():
    """The partial sort for top-k must choose exactly what a stable sort of the whole vocabulary would."""
    from tellme.host.sampling import Sampler, SamplingParams

    rng = np.random.default_rng(0)
    logits = np.round(rng.standard_normal(5000) * 3, 1).astype(np.float32)  # many ties
    for k in (1, 5, 40):
        params = SamplingParams(temperature=0.7, top_k=k, top_p=0.9, seed=11)
        fast, draws = Sampler(params), []
        reference_rng = np.random.default_rng(11)
        for _ in range(50):
            scaled = logits.astype(np.float64) / 0.7
            order = np.argsort(-scaled, kind="stable")[:k]
            probs = np.exp(scaled[order] - scaled[order[0]])
            probs /= probs.sum()
            keep = int(np.searchsorted(np.cumsum(probs), 0.9) + 1)
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
            draws.append(int(order[reference_rng.choice(len(order), p=probs)]))
        assert [fast(logits) for _ in range(50)] == draws


def test_a_generation_that_exactly_fills_the_context_is_allowed(bitlinear_model):
    """The last sampled token is never run, so prompt + new tokens may reach context + 1."""
    from tellme.host.backends import open_backend
    from tellme.host.generate import GenerationStats, generate
    from tellme.host.sampling import Sampler, SamplingParams
    from tellme.models.errors import UserError

    backend = open_backend("reference", bitlinear_model.model_dir)
    prompt = list(range(3, 3 + 100))
    room = backend.max_context - len(prompt) + 1
    out = list(generate(backend, prompt, room, Sampler(SamplingParams()), GenerationStats()))
    assert len(out) == room
    backend.reset()
    with pytest.raises(UserError, match="context"):
        list(generate(backend, prompt, room + 1, Sampler(SamplingParams()), GenerationStats()))
