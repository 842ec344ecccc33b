"""Finding the served model: the URL spec, ``GET /v1/models`` and the server's identity.

A served model spec is ``http(s)://HOST:PORT/v1`` (the API base URL), optionally
``#NAME`` to pick one of several models the server lists; without a name the
server must list exactly one. Which server answers (vLLM, llama.cpp's
``llama-server``, llama-cpp-python, another) is read from what it reports:
the ``owned_by`` field of ``/v1/models`` and vLLM's ``GET /version``. The kind
only selects extensions (vLLM's ``prompt_logprobs``, each server's tokenize
endpoint) and names the server in messages; the requests are plain OpenAI.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pytest_energy.errors import ModelError, ServerError

if TYPE_CHECKING:
    from pytest_energy.backends.http import ServerClient

SCHEMES = ("http://", "https://")
# What /v1/models says in ``owned_by``, by server.
_OWNERS = {"vllm": "vllm", "llamacpp": "llama.cpp", "me": "llama-cpp-python"}
_LISTED = 8


def is_served(model: str) -> bool:
    """Whether a model spec names a served model (an ``http(s)://`` URL)."""
    return model.strip().lower().startswith(SCHEMES)


@dataclass(frozen=True)
class ServedModel:
    """A served model spec, split: the API base URL and the model name, if given."""

    base_url: str
    name: str | None = None

    @property
    def root_url(self) -> str:
        """``scheme://host:port``, where non-``/v1`` endpoints (``/version``) live."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def host(self) -> str:
        """``host:port`` (the port the scheme implies when the URL has none)."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"

    @property
    def local(self) -> bool:
        """Whether the URL names this machine (a loopback address, ``localhost`` or
        this host's name; no name lookup)."""
        host = (urlsplit(self.base_url).hostname or "").lower()
        if host in ("localhost", socket.gethostname().lower()):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host.endswith(".localhost")
        return address.is_loopback or address.is_unspecified

    def label(self, model_id: str) -> str:
        """How results name the model: the base URL and the served model's id."""
        return f"{self.base_url}#{model_id}"


def parse_served(spec: str) -> ServedModel:
    """Split ``http(s)://HOST:PORT/v1[#NAME]``; a URL without a host is a ModelError."""
    text = spec.strip()
    url, _, name = text.partition("#")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ModelError(
            f"model {text!r} is not a served model's URL; give http(s)://HOST:PORT/v1, "
            "optionally with #NAME"
        )
    try:
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise ModelError(f"model URL {url} has a bad port; give http(s)://HOST:PORT/v1") from None
    return ServedModel(url.rstrip("/"), name.strip() or None)


@dataclass(frozen=True)
class ServerInfo:
    """What the server said about itself and the chosen model."""

    base_url: str
    model_id: str
    owned_by: str = ""
    version: str | None = None

    @property
    def kind(self) -> str:
        """``vllm``, ``llama.cpp``, ``llama-cpp-python`` or ``openai-compatible``."""
        return _OWNERS.get(self.owned_by, "openai-compatible")

    @property
    def label(self) -> str:
        """The server in messages: ``llama-cpp-python at http://127.0.0.1:8000/v1``."""
        return f"{self.kind} server at {self.base_url}"


def discover(client: ServerClient, served: ServedModel) -> ServerInfo:
    """The served model and server identity, or a one-line ServerError with the fix."""
    url = f"{served.base_url}/models"
    reply = client.get(url)
    data = reply.json() if reply.status == 200 else None
    listed = data.get("data") if isinstance(data, dict) else None
    if not isinstance(listed, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) for m in listed
    ):
        raise ServerError(
            f"{served.base_url} is not an OpenAI-compatible server: GET {url} answered "
            f"{reply.summary()}; give the API base URL, such as http://HOST:PORT/v1"
        )
    models = {m["id"]: m for m in listed}
    shown = ", ".join(list(models)[:_LISTED]) + (", ..." if len(models) > _LISTED else "")
    if served.name is not None:
        if served.name not in models:
            raise ServerError(
                f"model {served.name!r} is not served at {served.base_url} (it lists: "
                f"{shown or 'nothing'}); fix #NAME in the model spec"
            )
        model_id = served.name
    elif len(models) == 1:
        model_id = next(iter(models))
    else:
        raise ServerError(
            f"{served.base_url} serves {len(models)} models ({shown or 'none'}); "
            f"pick one with {served.base_url}#NAME"
        )
    owner = models[model_id].get("owned_by")
    return ServerInfo(
        served.base_url,
        model_id,
        owner if isinstance(owner, str) else "",
        _version(client, served),
    )


def _version(client: ServerClient, served: ServedModel) -> str | None:
    """The server's version where it reports one (vLLM: ``GET /version``)."""
    try:
        reply = client.get(f"{served.root_url}/version")
    except ServerError:
        return None
    data = reply.json() if reply.status == 200 else None
    version = data.get("version") if isinstance(data, dict) else None
    return str(version) if isinstance(version, (str, int, float)) else None
