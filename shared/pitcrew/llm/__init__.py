"""The optional LLM investigation of an incident (``llm.provider``: ``none``, ``openai`` for any
OpenAI-compatible server, ``bedrock``): a redacted, bounded prompt; a validated JSON answer;
retries, a DynamoDB answer cache, and the rule-based answer whenever the LLM cannot help.

    investigate(subject, context, rules, llm, *, signature, cache=LlmCache()) -> Diagnosis
"""

from pitcrew.llm.cache import LlmCache
from pitcrew.llm.investigation import investigate, llm_calls

__all__ = ["LlmCache", "investigate", "llm_calls"]
