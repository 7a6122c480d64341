"""The machine-shaped kinds (emails, keys and tokens, IBANs, payment cards, SSNs, IP addresses, passport
numbers) and, after them, postal addresses: :data:`RULES`, in the order they run.

Each is a shape a regular expression states exactly, with a check where the shape alone is not enough
(Luhn for payment cards, ISO 7064 mod 97 for IBANs, address parsing for IPv6, a key-ish context for AWS
secret keys and passport numbers). :func:`triggers` is the cheap test that text may hold any of them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from continuous_learning.data.pii.addresses import ADDRESS_RULES
from continuous_learning.data.pii.rule import Rule

TRIGGER = re.compile(
    r"[@\d]|bearer|AKIA|ASIA|(?:sk|pk|rk)[-_]|gh[pousr]_|xox[abprs]-|::|secret|aws|cred", re.IGNORECASE
)
# Cheap tests that run before the regular expressions. Each is implied by what it guards, so skipping
# on a failed test never changes a result (tests/unit/test_pii.py checks against the reference path).
DIGIT = re.compile(r"\d")
_ASCII_DIGIT_OR_AT = re.compile(r"[@0-9]")
_ASCII_SHORT_WORDS = re.compile(r"[spr]k[-_]|gh[pousr]_|xox[abprs]-")


def triggers(text: str) -> bool:
    """``TRIGGER.search(text)``, faster. On ASCII text, case-insensitive matching is matching the
    lower-cased text and ``\\d`` is [0-9], so substring tests decide; other text goes to ``TRIGGER``
    itself (Unicode case folding has look-alikes such as U+017F for "s" and U+212A for "K")."""
    if not text.isascii():
        return TRIGGER.search(text) is not None
    if "::" in text or _ASCII_DIGIT_OR_AT.search(text):
        return True
    lower = text.lower()
    if any(word in lower for word in ("bearer", "akia", "asia", "secret", "aws", "cred")):
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


# ISO 13616 lengths of the IBAN countries most seen; others only need 15-34 characters.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IS": 26, "IT": 27, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15,
    "PL": 28, "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "TR": 26, "UA": 29,
}  # fmt: skip


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if (expected is not None and len(compact) != expected) or not 15 <= len(compact) <= 34:
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def _ipv4_valid(candidate: str) -> bool:
    # 127.0.0.0/8 and 0.0.0.0 identify nobody (as ::1 and :: below).
    return not candidate.startswith(("127.", "0.0.0.0"))


def _ipv6_valid(candidate: str) -> bool:
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)  # ::1 and :: identify nobody


def aws_secret_valid(candidate: str) -> bool:
    """40 characters of base64 with both cases: a hex digest (git SHA-1) has one case only."""
    return any(c.isupper() for c in candidate) and any(c.islower() for c in candidate)


def passport_valid(candidate: str) -> bool:
    return sum(c.isdigit() for c in candidate) >= 2 and not candidate.isalpha()


@dataclass(frozen=True)
class _IbanRule(Rule):
    """The longest valid IBAN at the start of each match (a match may run on into the next word)."""

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            candidate = match.group()
            while len(candidate) >= 15:
                if iban_valid(candidate):
                    yield match.start(), match.start() + len(candidate)
                    break
                candidate = candidate[:-1].rstrip()


@dataclass(frozen=True)
class _Ipv4Rule(Rule):
    """A dotted quad, unless a version: "version 4.2.1.0", "v1.2.3.4", "build 10.0.0.1"."""

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for start, end in super().spans(text):
            if not text[max(0, start - 8) : start].lower().endswith(("version ", "v", "build ")):
                yield start, end


_PASSPORT_WORDS = ("passport", "passeport", "pasaporte", "passaporto", "reisepass", "paszport")
_SECRET_CONTEXT = r"(?i:secret|aws.{0,24}?key|credentials?|creds)"

# Order matters: specific shapes before generic digit runs, machine shapes before names.
RULES: tuple[Rule, ...] = (
    Rule(
        "EMAIL",
        re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
        may_match=lambda t, a, d: "@" in t,
    ),
    Rule(
        "AWS_ACCESS_KEY",
        re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        may_match=lambda t, a, d: "AKIA" in t or "ASIA" in t,
    ),
    Rule(
        "AWS_SECRET_KEY",  # 40 base64 characters within a short distance after a secret-ish word
        re.compile(
            rf"{_SECRET_CONTEXT}[^\n]{{0,48}}?(?<![A-Za-z0-9/+])(?P<v>[A-Za-z0-9/+]{{40}})(?![A-Za-z0-9/+=])"
        ),
        aws_secret_valid,
        may_match=lambda t, a, d: not a or any(w in t.lower() for w in ("secret", "aws", "cred")),
        group="v",
    ),
    Rule(
        "BEARER_TOKEN",
        re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*"),
        may_match=lambda t, a, d: not a or "bearer" in t.lower(),
    ),
    Rule(
        "API_KEY",
        re.compile(
            r"\b(?:sk|pk|rk)[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9]{16,}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{36}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}\b"
        ),
        may_match=lambda t, a, d: "k-" in t or "k_" in t or "gh" in t or "xox" in t,
    ),
    _IbanRule(
        "IBAN",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        iban_valid,
        may_match=lambda t, a, d: d,
    ),
    Rule(
        "CREDIT_CARD",
        re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
        luhn_valid,
        may_match=lambda t, a, d: d,
    ),
    Rule(
        "US_SSN",
        re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"),
        may_match=lambda t, a, d: d and "-" in t,
    ),
    _Ipv4Rule(
        "IP_ADDRESS",
        re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\d|\.\d)"),
        _ipv4_valid,
        may_match=lambda t, a, d: d and "." in t,
    ),
    Rule(
        "IP_ADDRESS",
        re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        _ipv6_valid,
        may_match=lambda t, a, d: t.count(":") >= 2,
    ),
    Rule(
        "PASSPORT",  # an id of 6-10 capitals and digits shortly after the word passport, in some languages
        re.compile(
            r"(?i:passport|passeport|pasaporte|passaporto|reisepass|paszport|паспорт)"
            r"[^\n\d]{0,24}?(?<![A-Z0-9])(?P<v>[A-Z0-9]{6,10})(?![A-Za-z0-9])"
        ),
        passport_valid,
        may_match=lambda t, a, d: d and (not a or any(w in t.lower() for w in _PASSPORT_WORDS)),
        group="v",
    ),
    *ADDRESS_RULES,
)
