"""Redaction of everything pitcrew sends to an LLM: cluster data (logs, events, messages) is
full of credentials a third-party model must never see.

``redact`` replaces, by shape: private keys (PEM blocks, and stray base64 key lines of a
block cut by log trimming), bearer and basic credentials, ``password=...`` / ``"password":
...`` style pairs, AWS access key ids and secret keys, JWTs, credentials in connection
strings, GitHub, Slack, OpenAI and Google API tokens, and email addresses; then every value
registered with ``pitcrew.observability.register_secret`` (everything pitcrew resolved from
Secrets Manager or marked secret in its configuration).
"""

from __future__ import annotations

import re

from pitcrew import observability

REDACTED = "[REDACTED]"

_PEM = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]*)PRIVATE KEY-----"
    r"(?:[\s\S]*?-----END (?P=kind)PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)"
)
# Authorization headers, curl -H lines, "Bearer xyz" anywhere.
_AUTH_HEADER = re.compile(
    r"(?i)\b(?P<lead>(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|digest)?\s*)"
    r"[^\s\"',;]{4,}"
)
_BEARER = re.compile(r"(?i)\b(?P<lead>bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*")
# key=value, key: value, "key": "value", key='value' for keys that name a credential.
_CREDENTIAL_NAMES = (
    r"pass(?:word|wd|phrase)?|pwd|secret(?:[_-]?(?:access)?[_-]?key)?|client[_-]?secret|"
    r"api[_-]?key|apikey|access[_-]?key(?:[_-]?id)?|access[_-]?token|refresh[_-]?token|"
    r"auth[_-]?token|token|private[_-]?key|credentials?|session[_-]?token|"
    r"aws[_-]?secret[_-]?access[_-]?key|requirepass|masterauth"
)
_SECRET_PAIR = re.compile(
    r"(?i)(?P<lead>(?<![A-Za-z0-9])"
    # DB_PASSWORD, dbPassword, and run-together names: PGPASSWORD, MYSQLROOTPASSWORD.
    r"(?:[\w.-]*[_.-]|[A-Za-z0-9]*(?-i:[a-z0-9])(?=(?-i:[A-Z]))|[A-Za-z0-9]+(?=passw(?:or)?d))?"
    r"(?:" + _CREDENTIAL_NAMES + r")\\?[\"']?\s*[:=]\s*)"
    r"(?P<value>\\\"(?:[^\"\\]|\\[^\"])*\\\"|\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s\"',;&}\])]+)"
)
_AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_URL_CREDENTIALS = re.compile(
    r"(?P<lead>\b[a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^/\s:@]{0,256}:)[^/\s@]{1,1024}(?=@)"
)
_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}"
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,})"
)
_SLACK_WEBHOOK = re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+")
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
# A bare run of 40+ base64 characters mixing upper case, lower case and digits: an AWS secret
# access key (exactly 40), a line of a PEM body, a random token. Hex digests and words lack
# the mix, so they stay.
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/=_-])")


def _keep_lead(match: re.Match[str]) -> str:
    return match.group("lead") + REDACTED


def _secret_pair(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.startswith('\\"'):
        return f'{match.group("lead")}\\"{REDACTED}\\"'
    if value[:1] in "\"'":
        return f"{match.group('lead')}{value[0]}{REDACTED}{value[0]}"
    if value == REDACTED or value.startswith("[REDACTED"):
        return match.group(0)
    return match.group("lead") + REDACTED


def _base64_run(match: re.Match[str]) -> str:
    run = match.group(0)
    mixed = (
        any(c.isupper() for c in run)
        and any(c.islower() for c in run)
        and any(c.isdigit() for c in run)
    )
    return REDACTED if mixed else run


def redact(text: str) -> str:
    """``text`` with every credential-shaped value and registered secret replaced."""
    text = _PEM.sub("[REDACTED PRIVATE KEY]", text)
    text = _URL_CREDENTIALS.sub(_keep_lead, text)
    text = _SLACK_WEBHOOK.sub("https://hooks.slack.com/services/" + REDACTED, text)
    text = _AUTH_HEADER.sub(_keep_lead, text)
    text = _BEARER.sub(_keep_lead, text)
    text = _JWT.sub(REDACTED, text)
    text = _TOKENS.sub(REDACTED, text)
    text = _AWS_ACCESS_KEY_ID.sub(REDACTED, text)
    text = _SECRET_PAIR.sub(_secret_pair, text)
    text = _BASE64_RUN.sub(_base64_run, text)
    text = _EMAIL.sub("[EMAIL]", text)
    return observability.redact(text)
