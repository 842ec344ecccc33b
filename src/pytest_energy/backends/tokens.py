"""Token facts of a served model: its tokenizer when the name resolves here, else the server's.

Prompts are rendered with the model's chat template only when its tokenizer
is available locally: the served model's id resolves with
:func:`pytest_energy.models.resolve_model` (the alias ``smollm2-135m``, a
Hugging Face id, a local path), and only the tokenizer is loaded. Otherwise
the prompt is plain text (``has_chat_template`` is false) and token counts
(``cot:budget_j``, ``route``) come from the server's tokenize endpoint: vLLM's
``/tokenize``, llama-cpp-python's ``/extras/tokenize``, llama.cpp's ``/tokenize``.

The local tokenizer also names the end-of-sequence tokens to ban with
``logit_bias`` when scoring the next token (llama-cpp-python sends no
log-probabilities when the greedy next token ends the text) and the first
token of each candidate (the key of its log-probability).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_energy.errors import ModelError, ServerError

if TYPE_CHECKING:
    from pytest_energy.backends.http import ServerClient
    from pytest_energy.backends.server import ServedModel, ServerInfo

# Tokenize endpoints by server kind: (path under the server root, request field).
_TOKENIZE = {
    "vllm": ("/tokenize", "prompt"),
    "llama-cpp-python": ("/extras/tokenize", "input"),
    "llama.cpp": ("/tokenize", "content"),
}
# logit_bias that bans a token (OpenAI's range is -100..100).
BAN = -100.0
_MAX_BANNED = 16


class ServedTokenizerWarning(UserWarning):
    """The served model's name resolves locally but its tokenizer could not be loaded."""


def local_tokenizer(model_id: str, rootdir: Path | None) -> Any | None:
    """The tokenizer of the served model when its id resolves locally, else None."""
    from pytest_energy.models import load_tokenizer, resolve_model

    try:
        spec = resolve_model(model_id, rootdir=rootdir)
    except ModelError:
        return None
    try:
        return load_tokenizer(spec)
    except ModelError as exc:
        warnings.warn(
            ServedTokenizerWarning(
                f"{exc}; prompts for served model {model_id} are rendered without its "
                "chat template and counted by the server"
            ),
            stacklevel=2,
        )
        return None


class ServedTokens:
    """Counting, ids and banned tokens of a served model (``tokenizer`` may be None)."""

    def __init__(
        self, tokenizer: Any | None, client: ServerClient, served: ServedModel, info: ServerInfo
    ) -> None:
        self.tokenizer = tokenizer
        self._client = client
        self._served = served
        self._info = info
        self._endpoint: tuple[str, str] | None = None

    @property
    def has_chat_template(self) -> bool:
        return self.tokenizer is not None and bool(getattr(self.tokenizer, "chat_template", None))

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens added."""
        if self.tokenizer is not None:
            ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return list(ids)
        return self._server_ids(text)

    def count(self, text: str) -> int:
        return len(self.ids(text))

    def key(self, candidate: str) -> str:
        """The text of ``candidate``'s first token: the key of its top log-probability."""
        if self.tokenizer is None:
            return candidate
        first = self.ids(candidate)[:1]
        return str(self.tokenizer.decode(first)) if first else candidate

    def first_ids(self, candidates: tuple[str, ...]) -> list[int] | None:
        """Each candidate's first token id, when the tokenizer is known."""
        if self.tokenizer is None:
            return None
        return [self.ids(c)[0] for c in candidates]

    def banned(self) -> dict[str, float]:
        """``logit_bias`` that bans the special tokens (end of sequence among them)."""
        if self.tokenizer is None:
            return {}
        ids = {int(i) for i in getattr(self.tokenizer, "all_special_ids", [])}
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        return {str(i): BAN for i in sorted(ids)[:_MAX_BANNED]}

    def _server_ids(self, text: str) -> list[int]:
        root = self._served.root_url
        kinds = [self._info.kind] if self._info.kind in _TOKENIZE else list(_TOKENIZE)
        candidates = [self._endpoint] if self._endpoint else [_TOKENIZE[k] for k in kinds]
        for path, field in candidates:
            body: dict[str, Any] = {field: text}
            if field == "prompt":
                body |= {"model": self._info.model_id, "add_special_tokens": False}
            reply = self._client.post(root + path, body)
            data = reply.json() if reply.status == 200 else None
            tokens = data.get("tokens") if isinstance(data, dict) else None
            if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
                self._endpoint = (path, field)
                return [int(t) for t in tokens]
        raise ServerError(
            f"{self._info.label} has no tokenize endpoint and model {self._info.model_id!r} "
            "does not resolve to a local tokenizer, but cot:budget_j and route need token "
            "counts; serve the model under a name pytest-energy resolves (an alias such as "
            "smollm2-135m, a Hugging Face id or a local path)"
        )
