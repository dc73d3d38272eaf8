"""The LLM providers: any OpenAI-compatible Chat Completions server (OpenAI, Groq, Ollama,
vLLM, LiteLLM) over httpx, and Amazon Bedrock's Converse API over boto3.

A provider makes ONE call and says what came back (``Completion``) or raises a pitcrew error:
``RetryLater`` (a ``TransientServiceError``: 429, 5xx, timeouts, throttling; with the wait
the service asked for, if any) or ``ServiceError`` for anything no retry fixes. Retries,
validation and fallback belong to ``pitcrew.llm.investigation``. httpx is imported only
when an OpenAI-compatible call is made, so a handler importing this module stays fast.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pitcrew import __version__
from pitcrew.config import LlmConfig
from pitcrew.errors import ConfigError, ServiceError, TransientServiceError
from pitcrew.observability import redact
from pitcrew.records import frozen

if TYPE_CHECKING:
    import httpx

Message = Mapping[str, str]  # {"role": "system"|"user"|"assistant", "content": ...}
USER_AGENT = f"pitcrew/{__version__} (+diagnose)"
_EXCERPT = 300
# Bedrock errors worth another attempt beyond what pitcrew.aws already treats as transient.
_BEDROCK_TRANSIENT = frozenset(
    {"ModelTimeoutException", "ModelNotReadyException", "ServiceUnavailableException"}
)


class RetryLater(TransientServiceError):
    """The provider is busy or failing for now; ``retry_after`` is the wait it asked for
    (seconds), or None."""

    def __init__(self, service: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(service, message)
        self.retry_after = retry_after


@frozen
class Completion:
    """One answer: its text, the model that served it, its token usage and why it stopped."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None


class Provider(Protocol):
    name: str
    model: str

    def complete(self, messages: Sequence[Message]) -> Completion: ...


def provider_for(llm: LlmConfig) -> Provider:
    """The provider ``llm`` configures. Raises ``ConfigError`` when it cannot be built (no
    model; an ``api_key`` reference that does not resolve)."""
    if not llm.model:
        raise ConfigError(["llm.model: missing (the provider needs one)"])
    if llm.provider == "openai":
        api_key = llm.api_key.get() if llm.api_key is not None else None
        return OpenAICompatible(
            base_url=llm.base_url.get(),
            model=llm.model,
            api_key=api_key,
            timeout_s=llm.timeout_s,
            max_completion_tokens=llm.max_completion_tokens,
        )
    if llm.provider == "bedrock":
        return BedrockConverse(
            model=llm.model, region=llm.region, max_completion_tokens=llm.max_completion_tokens
        )
    raise ConfigError([f"llm.provider: {llm.provider!r} makes no calls"])


# --- OpenAI-compatible Chat Completions --------------------------------------------------------


class OpenAICompatible:
    """``POST {base_url}/chat/completions`` with JSON mode (``response_format:
    {"type": "json_object"}``) and temperature 0. ``client`` is injectable (tests pass an
    httpx client with a transport of their own); by default one is built on first use."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_completion_tokens: int = 1024,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.max_completion_tokens = max_completion_tokens
        self._api_key = api_key
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 5.0)),
                    headers={"User-Agent": USER_AGENT},
                    follow_redirects=False,
                )
            return self._client

    def complete(self, messages: Sequence[Message]) -> Completion:
        body = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "response_format": {"type": "json_object"},
            "temperature": 0,
            # max_tokens, not max_completion_tokens: every compatible server reads it.
            "max_tokens": self.max_completion_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        with http_errors(self.name):
            response = self.client.post(self.url, content=json.dumps(body), headers=headers)
            status, text = response.status_code, response.text
            retry_after = response.headers.get("retry-after")
        if status == 429 or status >= 500:
            from pitcrew.notify.http import parse_retry_after

            wait = parse_retry_after(retry_after, datetime.now(UTC))
            raise RetryLater(self.name, f"HTTP {status}: {_excerpt(text)}", wait)
        if status >= 400:
            raise ServiceError(self.name, f"HTTP {status}: {_excerpt(text)}")
        return self._completion(text)

    def _completion(self, text: str) -> Completion:
        try:
            answer = json.loads(text)
            choice = answer["choices"][0]
            content = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as exc:
            raise ServiceError(
                self.name, f"not a Chat Completions answer: {_excerpt(text)}"
            ) from exc
        usage = answer.get("usage") or {}
        return Completion(
            text=str(content),
            model=str(answer.get("model") or self.model),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
        )


@contextmanager
def http_errors(service: str) -> Iterator[None]:
    """httpx's exceptions as pitcrew's (cause kept): timeouts and dropped connections are
    ``RetryLater``; a bad URL or protocol is a ``ServiceError``. Messages never carry the URL
    or the request (they could hold the key)."""
    import httpx

    try:
        yield
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise RetryLater(service, f"{type(exc).__name__}: {redact(str(exc))}") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ServiceError(service, f"cannot call: {type(exc).__name__}") from exc


# --- Bedrock Converse --------------------------------------------------------------------------


class BedrockConverse:
    """Bedrock's Converse API: the system message as ``system``, the others as ``messages``;
    the JSON schema is in the system prompt (Converse has no JSON mode every model supports).
    ``client`` is injectable; by default ``pitcrew.aws.client("bedrock-runtime", region)``."""

    name = "bedrock"

    def __init__(
        self,
        *,
        model: str,
        region: str | None = None,
        max_completion_tokens: int = 1024,
        client: Any | None = None,
    ) -> None:
        self.model = model
        self.region = region
        self.max_completion_tokens = max_completion_tokens
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from pitcrew.aws import client

            self._client = client("bedrock-runtime", self.region)
        return self._client

    def complete(self, messages: Sequence[Message]) -> Completion:
        system = [{"text": m["content"]} for m in messages if m["role"] == "system"]
        turns = [
            {"role": m["role"], "content": [{"text": m["content"]}]}
            for m in messages
            if m["role"] != "system"
        ]
        with bedrock_errors(self.name):
            answer = self.client.converse(
                modelId=self.model,
                system=system,
                messages=turns,
                inferenceConfig={"maxTokens": self.max_completion_tokens, "temperature": 0},
            )
        content = ((answer.get("output") or {}).get("message") or {}).get("content") or []
        text = "".join(block.get("text", "") for block in content if isinstance(block, dict))
        usage = answer.get("usage") or {}
        return Completion(
            text=text,
            model=self.model,
            prompt_tokens=int(usage.get("inputTokens") or 0),
            completion_tokens=int(usage.get("outputTokens") or 0),
            finish_reason=answer.get("stopReason"),
        )


@contextmanager
def bedrock_errors(service: str) -> Iterator[None]:
    """botocore's exceptions as pitcrew's, through ``pitcrew.aws.translate``; throttling,
    5xx and Bedrock's model-busy errors become ``RetryLater``."""
    from botocore.exceptions import BotoCoreError, ClientError

    from pitcrew.aws import error_code, translate

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        error = translate(exc, service)
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        if isinstance(error, TransientServiceError) or code in _BEDROCK_TRANSIENT:
            raise RetryLater(service, str(error).removeprefix(f"{service}: ")) from exc
        if isinstance(error, ServiceError):
            raise error from exc
        raise ServiceError(service, str(error)) from exc


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return redact(flat[:_EXCERPT] + ("…" if len(flat) > _EXCERPT else ""))
