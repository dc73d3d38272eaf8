"""GitHub for pitcrew: one wrapper over PyGithub (``GitHub``) that retries 5xx and rate limits
and raises pitcrew's errors, and webhook signature verification (``webhooks``).

PyGithub is imported only when a client is built, so handler modules import fast.
"""

from pitcrew.github.client import (
    FileContent,
    GitHub,
    IssueRef,
    PullRef,
    RetryPolicy,
    connect,
)

__all__ = ["FileContent", "GitHub", "IssueRef", "PullRef", "RetryPolicy", "connect"]
