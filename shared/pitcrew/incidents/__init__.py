"""Incident triage: Alertmanager alerts grouped into incidents, diagnosed by rule-based
analyzers and optionally an LLM, with a minimal, policy-checked manifest patch."""
