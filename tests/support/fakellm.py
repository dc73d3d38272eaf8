"""A fake OpenAI-compatible Chat Completions server on 127.0.0.1, built on ``FakeService``.

``POST /v1/chat/completions`` answers like OpenAI's: ``{"id": "chatcmpl-...", "object":
"chat.completion", "created", "model", "choices": [{"index": 0, "message": {"role":
"assistant", "content"}, "finish_reason"}], "usage": {"prompt_tokens", "completion_tokens",
"total_tokens"}}``, and refuses like OpenAI: 401 ``invalid_api_key`` for a wrong key, 400 for
a request without ``model`` or ``messages``, or with JSON mode but no message saying "json".

Replies are scripted in order (``script(...)``): an answer (``answer(...)``: a dict sent as
JSON, or any text), ``rate_limited(retry_after)``, ``server_error()``; when the script is
empty, ``responder`` answers (by default: the rule-based hint from the prompt, confirmed).
``calls`` counts chat completion requests; ``delay_s`` slows every answer down.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pitcrew.incidents.model import (
    Category,
    ClusterContext,
    Diagnosis,
    LogExcerpt,
    Subject,
    WorkloadRef,
)
from tests.support.fakehttp import FakeService, Reply, Request

Responder = Callable[[dict[str, Any]], str | dict[str, Any]]


@dataclass(frozen=True)
class Answer:
    """A scripted 200: ``content`` (a dict is sent as JSON text), and how it ended."""

    content: str | dict[str, Any]
    finish_reason: str = "stop"


def answer(content: str | dict[str, Any], finish_reason: str = "stop") -> Answer:
    return Answer(content, finish_reason)


def rate_limited(retry_after: str | None = "1") -> Reply:
    """OpenAI's 429 (``rate_limit_exceeded``), with ``Retry-After`` when given."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(
        429, _error("Rate limit reached for requests", "requests", "rate_limit_exceeded"), headers
    )


def server_error(status: int = 500) -> Reply:
    return Reply(
        status, _error("The server had an error while processing your request.", "server_error")
    )


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def hint_answer(request: dict[str, Any]) -> dict[str, Any]:
    """Confirms the rule-based hint found in the user message (pitcrew's prompt puts it as a
    JSON line under ``## Rule-based hint``), or answers ``unknown``."""
    user = next((m["content"] for m in request["messages"] if m["role"] == "user"), "")
    found = re.search(r"## Rule-based hint\n(\{.*\})\n", user)
    hint = json.loads(found.group(1)) if found else {}
    category = hint.get("category", "unknown")
    return {
        "category": category,
        "root_cause": hint.get("root_cause") or "The data does not show the cause.",
        "confidence": 0.8,
        "evidence": ["confirmed the rule-based analysis"],
        "patch": hint.get("patch"),
        "summary_line": f"{category}: {hint.get('root_cause', 'cause unknown')}"[:120],
    }


class FakeLLM:
    """The fake server; ``base_url`` is what ``llm.base_url`` should be."""

    def __init__(
        self,
        *,
        api_key: str | None = "sk-test-fake-llm-key-0123456789",
        responder: Responder = hint_answer,
        served_model: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.responder = responder
        self.served_model = served_model  # e.g. a dated snapshot; default: the requested model
        self.delay_s = 0.0  # how long each answer takes (a slow model, a timeout)
        self.service = FakeService("llm")
        self._script: deque[Answer | Reply] = deque()
        self._lock = threading.Lock()
        self.service.route("POST", "/v1/chat/completions")(self._chat_completions)

    def start(self) -> FakeLLM:
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self.service.url + "/v1"

    def reset(self) -> None:
        """Forget the script, the requests received and any delay (one server, many tests)."""
        with self._lock:
            self._script.clear()
        with self.service._lock:
            self.service.requests.clear()
        self.delay_s = 0.0
        self.served_model = None

    def script(self, *replies: Answer | Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def calls(self) -> int:
        return len(self.service.received("POST", "/v1/chat/completions"))

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests received, in order."""
        return [r.json() for r in self.service.received("POST", "/v1/chat/completions")]

    # -- the endpoint -----------------------------------------------------------------------
    def _chat_completions(self, request: Request) -> Reply:
        if self.api_key is not None and request.header("Authorization") != f"Bearer {self.api_key}":
            return Reply(
                401,
                _error(
                    "Incorrect API key provided. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            )
        try:
            body = request.json()
        except ValueError:
            return Reply(
                400,
                _error(
                    "We could not parse the JSON body of your request.", "invalid_request_error"
                ),
            )
        for key in ("model", "messages"):
            if not isinstance(body, dict) or not body.get(key):
                return Reply(
                    400, _error(f"Missing required parameter: '{key}'.", "invalid_request_error")
                )
        json_mode = (body.get("response_format") or {}).get("type") == "json_object"
        if json_mode and not any(
            "json" in str(m.get("content", "")).lower() for m in body["messages"]
        ):
            return Reply(
                400,
                _error(
                    "'messages' must contain the word 'json' in some form, to use "
                    "'response_format' of type 'json_object'.",
                    "invalid_request_error",
                ),
            )
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        # Slow down after taking this request's reply: a request that times out must not take
        # the reply scripted for the next one.
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(scripted, Reply):
            return scripted
        reply = scripted or Answer(self.responder(body))
        content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4 + 7
        completion_tokens = max(len(content) // 4, 1)
        return Reply(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.served_model or body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "fp_fake",
            },
        )


# --- a sample incident to ask about -----------------------------------------------------------

PREVIOUS_LOG = [
    "2024-11-19T07:58:01.104Z INFO  [main] Starting ledger 2.14.1 on port 8080",
    "2024-11-19T07:58:01.350Z INFO  [db] connecting to postgres://ledger:Pr0d-S3cret@db:5432/ledger",
    "2024-11-19T07:58:02.001Z INFO  [main] Loaded 412 accounts",
    "2024-11-19T07:58:02.417Z ERROR [main] Unhandled exception Traceback (most recent call last):",
    '  File "/app/ledger/settle.py", line 88, in settle',
    "    balance = total / shares",
    "ZeroDivisionError: division by zero",
    "2024-11-19T07:58:02.420Z INFO  [main] Shutting down",
]


def crashloop_incident(
    *, restarts: int = 14, exit_code: int = 1, reason: str = "Error", log: list[str] | None = None
) -> tuple[Subject, ClusterContext, Diagnosis]:
    """Deployment payments/ledger crash-looping: its pods, a BackOff event, the previous
    container's log, and the rule-based answer (``app_crash``)."""
    subject = Subject(
        cluster="prod-eu",
        alertname="KubePodCrashLooping",
        namespace="payments",
        workload=WorkloadRef("Deployment", "ledger", "payments"),
        pod="ledger-7c9d8f6b5-x2x7q",
        container="app",
        category_hint=Category.APP_CRASH,
    )
    container = {
        "name": "app",
        "image": "ghcr.io/acme/ledger:2.14.1",
        "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "API_SIGNING_KEY", "value": "kx-9f8e7d6c5b4a"},
        ],
    }
    workload = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ledger", "namespace": "payments", "resourceVersion": "918273"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [container]}}},
        "status": {"replicas": 2, "unavailableReplicas": 2},
    }
    pods: list[dict[str, Any]] = [
        {
            "metadata": {"name": name, "namespace": "payments", "resourceVersion": str(1000 + i)},
            "spec": {"nodeName": f"ip-10-0-{i}-17.eu-west-1.compute.internal"},
            "status": {
                "phase": "Running",
                "startTime": f"2024-11-19T07:{10 + i}:00Z",
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
                ],
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": restarts + i,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "reason": reason,
                                "exitCode": exit_code,
                                "finishedAt": "2024-11-19T07:58:02Z",
                            }
                        },
                    }
                ],
            },
        }
        for i, name in enumerate([subject.pod or "", "ledger-7c9d8f6b5-b8kfp"])
    ]
    events = [
        {
            "type": "Warning",
            "reason": "BackOff",
            "message": f"Back-off restarting failed container app in pod {pod['metadata']['name']}",
            "involvedObject": {"kind": "Pod", "name": pod["metadata"]["name"]},
            "count": 3 * restarts,
            "lastTimestamp": "2024-11-19T07:58:12Z",
        }
        for pod in pods
    ]
    context = ClusterContext(
        cluster="prod-eu",
        reachable=True,
        workload=workload,
        pods=pods,
        events=events,
        logs=[
            LogExcerpt(
                pod=subject.pod or "",
                container="app",
                previous=True,
                lines=list(PREVIOUS_LOG if log is None else log),
                total_lines=len(PREVIOUS_LOG if log is None else log),
            )
        ],
    )
    rules = Diagnosis(
        category=Category.APP_CRASH,
        root_cause=f"Container app exits with code {exit_code} ({reason}) and restarts in a loop.",
        confidence=0.7,
        evidence=(f"lastState terminated: {reason}, exit code {exit_code}",),
        summary_line="ledger crash-loops",
    )
    return subject, context, rules
