"""What every PII rule is (a kind, a pattern, a check, a cheap pre-check), and the character classes
the patterns are written with: the upper- and lower-case letters of every cased script."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PLACEHOLDER_RE = re.compile(r"<[A-Z_]+>")


def _char_class(test: Callable[[str], bool]) -> str:
    """A regular-expression character class body of the BMP characters for which ``test`` holds."""
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if test(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)


UPPER = _char_class(lambda c: c.isupper() and c.isalpha())  # upper-case letters of every cased script
LOWER = _char_class(lambda c: c.islower() and c.isalpha())


def always(text: str, ascii_only: bool, digits: bool) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    # A test that holds whenever ``pattern`` can match the text: (text, text is ASCII, text has a digit).
    may_match: Callable[[str, bool, bool], bool] = always
    group: str | None = None  # redact only this named group of a match (the rest is context)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            start, end = match.span(self.group) if self.group else match.span()
            if start < 0 or start == end:
                continue
            if self.check is None or self.check(text[start:end]):
                yield start, end
