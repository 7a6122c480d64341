"""PII redaction: typed placeholders (``<EMAIL>``) in free text, counted by type.

Phone numbers are found with ``phonenumbers`` (Google's libphonenumber metadata: international
``+CC`` numbers and national formats of the configured regions); the other kinds are shapes a
regular expression states exactly, with a check where the shape alone is not enough (Luhn for
payment cards, address parsing for IPv6). Cheap tests skip text that cannot hold any, and each rule whose
required characters are absent: most text costs a few substring searches, not nine regular expressions.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers

PLACEHOLDER_RE = re.compile(r"<[A-Z_]+>")
# A number right after one of these words is a reference, not a phone number.
_REFERENCE_CONTEXT = re.compile(
    r"(?i)(?:order|invoice|ref(?:erence)?|tracking|sku|ticket|case|id|no\.?|#)\W{0,3}$"
)
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
_TRIGGER = re.compile(r"[@\d]|bearer|AKIA|ASIA|(?:sk|pk|rk)[-_]|gh[pousr]_|xox[abprs]-|::", re.IGNORECASE)
# Cheap tests that run before the regular expressions. Each is implied by what it guards, so skipping
# on a failed test never changes a result (tests/unit/test_pii.py checks against the reference path).
_DIGIT = re.compile(r"\d")
_ASCII_DIGIT_OR_AT = re.compile(r"[@0-9]")
_ASCII_SHORT_WORDS = re.compile(r"[spr]k[-_]|gh[pousr]_|xox[abprs]-")
_CLEAN_CACHE_TEXT = 4096  # longest text the clean-text cache keeps


def _triggers(text: str) -> bool:
    """``_TRIGGER.search(text)``, faster. On ASCII text, case-insensitive matching is matching the
    lower-cased text and ``\\d`` is [0-9], so substring tests decide; other text goes to ``_TRIGGER``
    itself (Unicode case folding has look-alikes such as U+017F for "s" and U+212A for "K")."""
    if not text.isascii():
        return _TRIGGER.search(text) is not None
    if "::" in text or _ASCII_DIGIT_OR_AT.search(text):
        return True
    lower = text.lower()
    if "bearer" in lower or "akia" in lower or "asia" in lower:
        return True
    if "k-" in lower or "k_" in lower or "gh" in lower or "xox" in lower:
        return _ASCII_SHORT_WORDS.search(lower) is not None
    return False


def luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _ipv6_valid(candidate: str) -> bool:
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)  # ::1 and :: identify nobody


def _always(text: str, ascii_only: bool, digits: bool) -> bool:
    return True


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    # A test that holds whenever ``pattern`` can match the text: (text, text is ASCII, text has a digit).
    may_match: Callable[[str, bool, bool], bool] = _always


# Order matters: specific shapes before generic digit runs.
RULES: tuple[_Rule, ...] = (
    _Rule(
        "EMAIL",
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
        may_match=lambda t, a, d: "@" in t,
    ),
    _Rule(
        "AWS_ACCESS_KEY",
        re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        may_match=lambda t, a, d: "AKIA" in t or "ASIA" in t,
    ),
    _Rule(
        "AWS_SECRET_KEY",
        re.compile(r"(?i)(?<=aws_secret_access_key)[\s:=\"']+[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
        may_match=lambda t, a, d: "_" in t and (not a or "aws_secret_access_key" in t.lower()),
    ),
    _Rule(
        "BEARER_TOKEN",
        re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*"),
        may_match=lambda t, a, d: not a or "bearer" in t.lower(),
    ),
    _Rule(
        "API_KEY",
        re.compile(
            r"\b(?:sk|pk|rk)[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9]{16,}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{36}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}\b"
        ),
        may_match=lambda t, a, d: "k-" in t or "k_" in t or "gh" in t or "xox" in t,
    ),
    _Rule(
        "CREDIT_CARD",
        re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
        luhn_valid,
        may_match=lambda t, a, d: d,
    ),
    _Rule(
        "US_SSN",
        re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"),
        may_match=lambda t, a, d: d and "-" in t,
    ),
    _Rule(
        "IP_ADDRESS",
        re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"),
        may_match=lambda t, a, d: d and "." in t,
    ),
    _Rule(
        "IP_ADDRESS",
        re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        _ipv6_valid,
        may_match=lambda t, a, d: t.count(":") >= 2,
    ),
)


class Redactor:
    """Replaces PII with typed placeholders and keeps counts by type."""

    def __init__(self, phone_regions: Sequence[str] = ("US", "GB"), clean_cache: int = 65_536) -> None:
        self.counts: Counter[str] = Counter()
        self.phone_regions = tuple(phone_regions)
        self.found: list[tuple[str, str]] | None = None  # set to a list to record (kind, text) matches
        # Texts seen before that held nothing to redact (system prompts, tool results, metadata values
        # repeat across records): found again in one dictionary lookup. Redaction is a function of the
        # text alone, so this never changes a result.
        self._clean: set[str] = set()
        self._clean_cache = clean_cache

    def redact(self, text: str) -> str:
        if text in self._clean:
            return text
        found_before = self.counts.total()
        redacted = self._redact_triggered(text) if _triggers(text) else text
        if self.counts.total() == found_before and len(text) <= _CLEAN_CACHE_TEXT and self._clean_cache:
            if len(self._clean) >= self._clean_cache:
                self._clean.clear()
            self._clean.add(text)
        return redacted

    def _redact_triggered(self, text: str) -> str:
        ascii_only = text.isascii()  # stays true: placeholders are ASCII
        digits = _DIGIT.search(text) is not None  # only ever removed: placeholders hold no digit
        for rule in RULES:
            if rule.may_match(text, ascii_only, digits):
                text = rule.pattern.sub(lambda m, r=rule: self._replace(m, r), text)  # type: ignore[misc]
        if digits and _PHONE_CANDIDATE.search(text):
            text = self._redact_phones(text)
        return text

    def redact_reference(self, text: str) -> str:
        """The same result as :meth:`redact` without its shortcuts: every rule on every triggered text.

        Kept as the specification the fast path is tested against."""
        if not _TRIGGER.search(text):
            return text
        for rule in RULES:
            text = rule.pattern.sub(lambda m, r=rule: self._replace(m, r), text)  # type: ignore[misc]
        if _PHONE_CANDIDATE.search(text):
            text = self._redact_phones(text)
        return text

    def _replace(self, match: re.Match[str], rule: _Rule) -> str:
        found = match.group(0)
        if rule.check is not None and not rule.check(found):
            return found
        self.counts[rule.kind] += 1
        if self.found is not None:
            self.found.append((rule.kind, found))
        return f"<{rule.kind}>"

    def _redact_phones(self, text: str) -> str:
        for region in self.phone_regions:
            spans = [
                (m.start, m.end)
                for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
                if not _REFERENCE_CONTEXT.search(text[max(0, m.start - 16) : m.start])
            ]
            for start, end in reversed(spans):
                if self.found is not None:
                    self.found.append(("PHONE", text[start:end]))
                text = text[:start] + "<PHONE>" + text[end:]
                self.counts["PHONE"] += 1
        return text
