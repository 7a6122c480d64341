"""PII redaction: typed placeholders (``<EMAIL>``) in free text, counted by type."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


def _luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _ipv6_ok(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None


# Order matters: specific shapes before generic digit runs.
_RULES = [
    _Rule("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    _Rule("AWS_ACCESS_KEY", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    _Rule(
        "AWS_SECRET_KEY",
        re.compile(
            r"(?i)(?<=aws_secret_access_key)[\s:=\"']+[A-Za-z0-9/+]{40}\b|\b[A-Za-z0-9/+]{40}(?=\s*$)"
        ),
    ),
    _Rule("BEARER_TOKEN", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*")),
    _Rule(
        "API_KEY",
        re.compile(
            r"\b(?:sk|pk|rk)[-_](?:live|test|proj)?[-_]?[A-Za-z0-9]{16,}\b|\bgh[pousr]_[A-Za-z0-9]{36}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}\b"
        ),
    ),
    _Rule("CREDIT_CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), _luhn_ok),
    _Rule("US_SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    _Rule(
        "IP_ADDRESS",
        re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    ),
    _Rule(
        "IP_ADDRESS", re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"), _ipv6_ok
    ),
    _Rule(
        "PHONE",
        re.compile(
            r"(?:(?<=\s)|^|(?<=[:(,]))(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}[\s.-]\d{3,4}[\s.-]?\d{0,4}\b"
        ),
        lambda s: (
            9 <= sum(c.isdigit() for c in s) <= 15 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s.strip())
        ),
    ),
]


class Redactor:
    """Replaces PII with typed placeholders and keeps counts by type."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def redact(self, text: str) -> str:
        for rule in _RULES:
            text = rule.pattern.sub(lambda m, r=rule: self._replace(m, r), text)  # type: ignore[misc]
        return text

    def _replace(self, match: re.Match[str], rule: _Rule) -> str:
        found = match.group(0)
        if rule.check is not None and not rule.check(found):
            return found
        self.counts[rule.kind] += 1
        return f"<{rule.kind}>"
