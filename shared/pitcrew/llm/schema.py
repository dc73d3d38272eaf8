"""The answer an LLM must give: its JSON schema (quoted in the prompt) and a small validator
that turns the model's text into a ``Diagnosis`` or says exactly what is wrong with it.

A hand validator rather than ``jsonschema``: the schema is small, the Lambda layer does not
ship jsonschema, and the problems it reports are worded for the model's retry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pitcrew.incidents.model import Category, Diagnosis

CATEGORIES: tuple[str, ...] = tuple(str(c) for c in Category)
# Bounds on what is kept of an answer: a model that rambles must not bloat an incident.
MAX_EVIDENCE = 12
MAX_EVIDENCE_CHARS = 400
MAX_ROOT_CAUSE_CHARS = 2000
MAX_SUMMARY_CHARS = 200

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["category", "root_cause", "confidence", "evidence", "patch", "summary_line"],
    "properties": {
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "root_cause": {"type": "string", "minLength": 1},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "evidence": {"type": "array", "items": {"type": "string"}},
        "patch": {"type": ["object", "null"]},
        "summary_line": {"type": "string", "minLength": 1},
    },
}


def extract_json(text: str) -> Any:
    """The JSON value in a model's text: the whole text, or else the outermost ``{...}`` in
    it (models without a JSON mode wrap it in a fence or a sentence). Raises ValueError."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    except RecursionError as exc:
        raise ValueError("the answer is nested too deeply") from exc
    start, end = stripped.find("{"), stripped.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    try:
        return json.loads(stripped[start : end + 1])
    except RecursionError as exc:
        raise ValueError("the answer is nested too deeply") from exc


def problems_of(document: Any) -> list[str]:
    """Every way ``document`` breaks ``OUTPUT_SCHEMA``, one line each; [] when it is valid.
    Keys the schema does not name are ignored."""
    if not isinstance(document, dict):
        return [f"the answer must be a JSON object, got {_kind(document)}"]
    problems = [f"missing key {key!r}" for key in OUTPUT_SCHEMA["required"] if key not in document]
    category = document.get("category")
    if "category" in document and category not in CATEGORIES:
        problems.append(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    for key in ("root_cause", "summary_line"):
        value = document.get(key)
        if key in document and not (isinstance(value, str) and value.strip()):
            problems.append(f"{key} must be a non-empty string, got {_kind(value)}")
    confidence = document.get("confidence")
    if "confidence" in document and not _is_unit_number(confidence):
        problems.append(f"confidence must be a number from 0 to 1, got {confidence!r}")
    evidence = document.get("evidence")
    if "evidence" in document and not (
        isinstance(evidence, list) and all(isinstance(line, str) for line in evidence)
    ):
        problems.append(f"evidence must be a list of strings, got {_kind(evidence)}")
    patch = document.get("patch")
    if "patch" in document and patch is not None and not isinstance(patch, dict):
        problems.append(f"patch must be an object or null, got {_kind(patch)}")
    return problems


def parse_answer(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The model's answer as a valid document, or None and the problems found."""
    try:
        document = extract_json(text)
    except ValueError as exc:
        return None, [f"the answer is not valid JSON ({exc})"]
    problems = problems_of(document)
    return (document, []) if not problems else (None, problems)


def to_diagnosis(
    document: Mapping[str, Any],
    *,
    model: str | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> Diagnosis:
    """A valid answer (see ``parse_answer``) as a ``Diagnosis`` from the LLM, bounded."""
    evidence = tuple(
        _clip(line.strip(), MAX_EVIDENCE_CHARS)
        for line in document["evidence"][:MAX_EVIDENCE]
        if line.strip()
    )
    return Diagnosis(
        category=Category(document["category"]),
        root_cause=_clip(document["root_cause"].strip(), MAX_ROOT_CAUSE_CHARS),
        confidence=float(document["confidence"]),
        source="llm",
        evidence=evidence,
        patch=document["patch"],
        summary_line=_clip(" ".join(document["summary_line"].split()), MAX_SUMMARY_CHARS),
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def _is_unit_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list" if all(isinstance(v, str) for v in value) else "a list with non-strings"
    return "an object"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
