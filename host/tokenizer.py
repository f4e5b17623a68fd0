"""Text <-> token ids with the model's tokenizer.json, and a detokenizer that streams text safely."""

from __future__ import annotations

from pathlib import Path

from tellme.models.errors import UserError

REPLACEMENT_CHAR = "\ufffd"


def check_utf8(text: str) -> str:
    """The text itself, if it is text the tokenizer can take. Bytes that are not UTF-8 reach Python as lone
    surrogates (a command line's argv, stdin read with surrogateescape): refused in one line."""
    if not isinstance(text, str):
        raise UserError(f"the prompt must be text, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UserError(f"the prompt holds bytes that are not UTF-8 (at character {exc.start}): "
                        "give it as UTF-8 text") from None
    return text


class Tokenizer:
    def __init__(self, path: Path | None):
        if path is None:
            raise UserError(
                "the model folder has no tokenizer.json: put the checkpoint's tokenizer.json beside its "
                "config.json and re-run tellme convert"
            )
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise UserError(f"{path} is not a readable tokenizer ({exc})") from None

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(check_utf8(text), add_special_tokens=True).ids)

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)


class StreamDecoder:
    """Turns a growing list of ids into new text pieces; holds back a piece that ends in the middle of
    a multi-byte character (byte-level BPE can split one)."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith(REPLACEMENT_CHAR):
            return ""
        piece = text[len(self.emitted):] if text.startswith(self.emitted) else text
        self.emitted = text
        return piece
