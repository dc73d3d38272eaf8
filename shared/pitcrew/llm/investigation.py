"""An LLM investigation of one incident: the rule-based answer checked and refined by a model,
never a reason for the diagnosis to fail.

``investigate`` asks the configured provider once per (signature, context, model) (the cache),
retries 429 / 5xx / timeouts with exponential backoff honouring ``Retry-After`` within
``llm.retries``, gives an invalid answer one second chance (telling the model what was wrong),
and otherwise returns the analyzers' answer marked ``source: rules`` with a line saying why.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pitcrew.config import LlmConfig
from pitcrew.errors import PitcrewError, ServiceError
from pitcrew.incidents.model import ClusterContext, Diagnosis, Subject
from pitcrew.llm.cache import LlmCache, cache_key, context_hash
from pitcrew.llm.prompt import build_prompt
from pitcrew.llm.providers import Completion, Message, Provider, RetryLater, provider_for
from pitcrew.llm.schema import parse_answer, to_diagnosis
from pitcrew.observability import redact

logger = logging.getLogger(__name__)

BASE_DELAY_S = 1.0
MAX_DELAY_S = 8.0
NOTE = "LLM answer not used"


class CallCounter:
    """LLM calls made by this process (each HTTP request or Converse call, retries included):
    what the storm benchmark reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, calls: int = 1) -> None:
        with self._lock:
            self.value += calls

    def reset(self) -> None:
        with self._lock:
            self.value = 0


calls = CallCounter()


def llm_calls() -> int:
    """How many LLM calls this process has made."""
    return calls.value


def investigate(
    subject: Subject,
    context: ClusterContext,
    rules: Diagnosis,
    llm: LlmConfig,
    *,
    signature: str,
    cache: LlmCache | None = None,
    provider: Provider | None = None,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
    metrics: Any | None = None,
) -> Diagnosis:
    """The LLM's diagnosis of ``subject`` (``source: llm``, with its model and tokens), or
    ``rules`` marked ``source: rules`` with an evidence line saying why the LLM's was not used.
    ``provider: none`` returns ``rules`` unchanged. Never raises for an LLM or cache failure.

    ``cache`` makes a storm cost one call; by default an ``LlmCache`` on the incidents table
    (``INCIDENTS_TABLE``) keeping answers ``llm.cache_ttl_s``, none when that is 0 or the table
    is not configured. ``provider`` (default: built from ``llm``), ``sleep``, ``jitter`` and
    ``metrics`` (a powertools ``Metrics``; default: the shared ``pitcrew`` namespace) are
    injectable."""
    if llm.provider == "none":
        return rules
    if cache is None:
        cache = default_cache(llm)
    record = _Recorder(metrics)
    key = cache_key(signature, context_hash(subject, context), llm.provider, llm.model or "")
    if cache is not None:
        cached = _cache_get(cache, key)
        if cached is not None:
            record.metric("LlmCacheHits", 1)
            return cached
        record.metric("LlmCacheMisses", 1)
    prompt = build_prompt(subject, context, rules, max_tokens=llm.max_prompt_tokens)
    try:
        provider = provider or provider_for(llm)
    except PitcrewError as exc:
        record.metric("LlmFallbacks", 1)
        return _fallback(rules, f"the provider cannot be set up: {exc}")
    session = _Session(provider, llm, sleep=sleep, jitter=jitter, record=record)
    messages: list[Message] = list(prompt.messages())
    try:
        completion = session.complete(messages)
        document, problems = parse_answer(completion.text)
        if problems:
            messages += [
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": _correction(problems, completion.finish_reason)},
            ]
            completion = session.complete(messages)
            document, problems = parse_answer(completion.text)
    except PitcrewError as exc:
        record.metric("LlmFallbacks", 1)
        return session.tokens_on(_fallback(rules, f"{provider.name} failed: {exc}"))
    if document is None:
        record.metric("LlmFallbacks", 1)
        reason = "the answer was invalid twice: " + "; ".join(problems[:3])
        return session.tokens_on(_fallback(rules, reason))
    diagnosis = session.tokens_on(to_diagnosis(document, model=completion.model))
    if cache is not None:
        _cache_put(cache, key, diagnosis)
    return diagnosis


def default_cache(llm: LlmConfig) -> LlmCache | None:
    """The answer cache ``llm`` asks for: on the incidents table, unless ``cache_ttl_s`` is 0
    or no table is configured (a process outside the stack)."""
    if llm.cache_ttl_s <= 0 or not os.environ.get("INCIDENTS_TABLE"):
        return None
    return LlmCache(ttl_s=llm.cache_ttl_s)


class _Session:
    """The calls of one investigation: retries, token totals, metrics."""

    def __init__(
        self,
        provider: Provider,
        llm: LlmConfig,
        *,
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
        record: _Recorder,
    ) -> None:
        self.provider = provider
        self.llm = llm
        self.sleep = sleep
        self.jitter = jitter
        self.record = record
        self.model: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def complete(self, messages: Sequence[Message]) -> Completion:
        """One answer, retrying what is worth retrying: at most ``retries + 1`` attempts, and
        no wait longer than ``timeout_s`` (a provider asking for more is down for us)."""
        attempts = self.llm.retries + 1
        for attempt in range(1, attempts + 1):
            calls.add()
            self.record.metric("LlmCalls", 1)
            try:
                completion = self.provider.complete(messages)
            except RetryLater as exc:
                wait = self._wait(attempt, exc.retry_after)
                if attempt == attempts:
                    raise
                if wait > self.llm.timeout_s:
                    raise ServiceError(
                        self.provider.name, f"{exc}; asked to wait {wait:g} s, more than timeout_s"
                    ) from exc
                logger.info("LLM call failed (%s), retrying in %.3g s", exc, wait)
                self.sleep(wait)
                continue
            self.model = completion.model
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens
            self.record.metric("LlmPromptTokens", completion.prompt_tokens)
            self.record.metric("LlmCompletionTokens", completion.completion_tokens)
            return completion
        raise AssertionError("unreachable: the last attempt raises or returns")

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(BASE_DELAY_S * 2 ** (attempt - 1), MAX_DELAY_S)
        return round(ceiling / 2 + self.jitter() * ceiling / 2, 3)  # "equal jitter"

    def tokens_on(self, diagnosis: Diagnosis) -> Diagnosis:
        """``diagnosis`` with what this investigation spent (nothing if no call answered)."""
        if self.model is None:
            return diagnosis
        return replace(
            diagnosis,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )


def _correction(problems: Sequence[str], finish_reason: str | None) -> str:
    lines = "\n".join(f"- {p}" for p in problems)
    cut = (
        "\nYour answer was cut off by the token limit: keep it shorter."
        if finish_reason in ("length", "max_tokens")
        else ""
    )
    return (
        f"Your answer does not match the required JSON schema:\n{lines}{cut}\n"
        "Answer again with only the corrected JSON object."
    )


def _fallback(rules: Diagnosis, reason: str) -> Diagnosis:
    note = f"{NOTE}: {redact(reason)}"
    logger.warning(note)
    return replace(rules, source="rules", evidence=(*rules.evidence, note))


def _cache_get(cache: LlmCache, key: str) -> Diagnosis | None:
    try:
        return cache.get(key)
    except PitcrewError as exc:
        logger.warning("LLM cache unreadable, asking the model: %s", exc)
        return None


def _cache_put(cache: LlmCache, key: str, diagnosis: Diagnosis) -> None:
    try:
        cache.put(key, diagnosis)
    except PitcrewError as exc:
        logger.warning("LLM answer not cached: %s", exc)


class _Recorder:
    """EMF metrics into the given powertools ``Metrics`` or the shared ``pitcrew`` set (which
    the function's ``@metrics.log_metrics`` flushes)."""

    def __init__(self, metrics: Any | None) -> None:
        self._metrics = metrics

    def metric(self, name: str, value: float) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        if self._metrics is None:
            from aws_lambda_powertools import Metrics

            self._metrics = Metrics(namespace="pitcrew")
        self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
