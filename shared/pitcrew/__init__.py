"""pitcrew: serverless operations functions for AWS (costs, triage, fix PRs, rotation,
promotion)."""

__version__ = "0.1.0"
