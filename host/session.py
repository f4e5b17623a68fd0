"""A Session: a model on a device with its tokenizer, streaming text. The same object serves `tellme run`,
the board notebook and tests, on the numpy reference, the C simulation or the board.

    with Session("models/my-model", backend="pynq", bitstream="bitstreams/kv260/my-design") as s:
        for piece in s.generate("Once upon a time", max_new_tokens=64):
            print(piece, end="", flush=True)
        print(s.stats.summary())

generate() starts a fresh sequence each call; chat() keeps the KV cache across turns until the context
is full, then says so (`context_full`, `notice`) and waits for reset(); a message too long for the room
left is refused and the conversation goes on. One generation at a time: the device holds one KV cache,
so starting another while a previous generator is still open is refused (exhaust or close() it first).
Ctrl-C during generation frees the device (the board's buffers) and propagates.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator, Iterator
from pathlib import Path

from tellme.models.default_model import resolve_model_dir
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder

from .backends import Backend, open_backend
from .device import Device
from .generate import ContextFull, GenerationStats, check_fits, generate
from .sampling import Sampler, SamplingParams
from .tokenizer import StreamDecoder, Tokenizer


class Session:
    """A model on one device, with its tokenizer; generation streams text pieces and leaves `stats`."""

    def __init__(self, model_dir: str | Path | None = None, backend: str = "reference",
                 bitstream: str | Path | None = None, board: str | None = None, device: Device | None = None,
                 **device_options):
        """backend names the device (reference, csim, pynq); `device` supplies one instead (e.g. a
        stand-in that measures the host alone). device_options go to it, e.g. timeout_s for pynq."""
        if device is not None:
            self.backend = Backend(open_model_folder(resolve_model_dir(model_dir)), device)
        else:
            self.backend = open_backend(backend, resolve_model_dir(model_dir), bitstream, board, **device_options)
        try:
            self.tokenizer = Tokenizer(self.backend.folder.tokenizer_path)
        except BaseException:
            self.backend.close()
            raise
        config = self.backend.folder.config
        self.bos_token_id, self.eos_token_id = config.bos_token_id, config.eos_token_id
        self.stats = GenerationStats()
        self.context_full = False
        self.notice = ""
        self._pending: list[int] = []  # chat: the last reply's final token, sampled but not yet run
        self._live: weakref.ref[Generator[str, None, None]] | None = None  # the generator streaming now
        self._closed = False

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def max_context(self) -> int:
        return self.backend.max_context

    @property
    def position(self) -> int:
        """Positions of the KV cache in use (chat: the conversation so far)."""
        return self.backend.position

    def generate(self, prompt: str, max_new_tokens: int = 32, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None) -> Iterator[str]:
        """Continue `prompt` from an empty cache; the prompt plus max_new_tokens must fit the context."""
        sampler = self._sampler(max_new_tokens, temperature, top_k, top_p, seed)
        ids = self.tokenizer.encode(prompt)
        self.reset()
        check_fits(self.backend, len(ids), max_new_tokens)
        return self._stream(ids, max_new_tokens, sampler, chat=False)

    def chat(self, message: str, max_new_tokens: int = 64, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, seed: int | None = None) -> Iterator[str]:
        """Append `message` to the conversation and stream the reply; stops early when the context fills."""
        sampler = self._sampler(max_new_tokens, temperature, top_k, top_p, seed)
        if self.context_full:
            raise ContextFull(self.notice)
        ids = self.tokenizer.encode(message)
        if (self.position or self._pending) and ids[:1] == [self.bos_token_id]:
            ids = ids[1:]  # one BOS per conversation
        ids = self._pending + ids
        room = self.max_context - self.position
        if len(ids) > room:  # refused; the conversation is unchanged and a shorter message still fits
            raise ContextFull(f"this message needs {len(ids)} positions and {room} of {self.max_context} are "
                              "left: shorten it or start a new conversation")
        return self._stream(ids, max_new_tokens, sampler, chat=True)

    def reset(self) -> None:
        """Forget the conversation: the next turn starts at position 0."""
        self._check_open()
        self._check_idle()
        self.backend.reset()
        self._pending = []
        self.context_full = False
        self.notice = ""

    def _sampler(self, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
                 seed: int | None) -> Sampler:
        self._check_open()
        self._check_idle()
        if max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
        return Sampler(SamplingParams(temperature, top_k, top_p, seed))

    def _stream(self, ids: list[int], max_new_tokens: int, sampler: Sampler, chat: bool) -> Iterator[str]:
        if not ids:
            raise UserError("the prompt is empty: give at least one token")
        stats = self.stats = GenerationStats()
        tokens = generate(self.backend, ids, max_new_tokens, sampler, stats, self.eos_token_id, fill_context=chat)
        pieces = self._pieces(tokens, stats, chat)
        self._live = weakref.ref(pieces)
        return pieces

    def _pieces(self, tokens: Iterator[int], stats: GenerationStats, chat: bool) -> Iterator[str]:
        decoder = StreamDecoder(self.tokenizer)
        last: int | None = None
        try:
            for last in tokens:
                piece = decoder.push(last)
                if piece:
                    yield piece
        except KeyboardInterrupt:
            self.close()
            raise
        finally:
            if chat and last is not None:
                self._pending = [last]
                if stats.context_full or self.position >= self.max_context:
                    self._context_is_full()

    def _context_is_full(self) -> None:
        self.context_full = True
        self.notice = f"the context is full ({self.max_context} positions): reset() starts a new conversation"

    def _check_idle(self) -> None:
        """Refuse to start while a generator from this session is still open: both would share one KV
        cache and one position, and each would silently produce wrong text."""
        live = self._live() if self._live is not None else None
        if live is not None and live.gi_frame is not None:  # gi_frame is None once finished or closed
            raise UserError("this session is still streaming a previous reply: exhaust that generator or call "
                            "its close() before starting another (one generation at a time per Session)")

    def _check_open(self) -> None:
        if self._closed:
            raise UserError("this session is closed (interrupted or closed): open a new Session")

    def close(self) -> None:
        """Free the device (the board's buffers); the session is unusable afterwards."""
        if not self._closed:
            self._closed = True
            self.backend.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
