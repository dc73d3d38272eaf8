"""``/pitcrew`` commands in GitHub comments: ``retry`` (diagnose again), ``approve`` and
``reject`` (promotion approvals). A command is the first line of a comment that starts with
``/pitcrew``; anything after the verb is kept as its arguments (a reason, for ``reject``).
"""

from __future__ import annotations

import re

from pitcrew.records import frozen

VERBS = ("retry", "approve", "reject")
# People who may command: GitHub's permission levels with write access (the API reports
# maintain as write in ``permission``; ``role_name`` may say maintain).
WRITERS = frozenset({"admin", "maintain", "write"})
_COMMAND = re.compile(r"^/pitcrew(?:\s+(\S+))?(?:\s+(.*))?$")


@frozen
class Command:
    """A parsed command; ``verb`` is lower case, possibly not one of ``VERBS``."""

    verb: str
    argument: str = ""

    @property
    def known(self) -> bool:
        return self.verb in VERBS


def parse_command(body: str | None) -> Command | None:
    """The command of a comment, or None when the comment is not one."""
    for line in (body or "").splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        match = _COMMAND.match(stripped)
        if match is None:
            return None
        return Command(verb=(match.group(1) or "").lower(), argument=(match.group(2) or "").strip())
    return None


def usage() -> str:
    return (
        "pitcrew understands `/pitcrew retry` (diagnose the incident again), "
        "`/pitcrew approve` and `/pitcrew reject [reason]` (promotion approvals)."
    )
