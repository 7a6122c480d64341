"""The :class:`Redactor`: typed placeholders (``<EMAIL>``) in free text, counted by type.

The rules run one after the other, each on the output of the one before (:data:`RULES`, the phone
numbers, :data:`NAME_RULES`), and the replaced spans are traced back to the original text. Text that is
a JSON object or array is redacted string by string, on the decoded strings, and spliced back into the
original bytes: the result still parses, keys and escapes are kept.

Cheap tests skip text that cannot hold any kind, and each rule whose required characters are absent:
most text costs a few substring searches and the name rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from continuous_learning.data.pii.json_values import (
    JSON_COLON,
    JSON_STRING,
    VALUE_KEYS,
    decode_json_string,
    key_spans,
    looks_like_json,
    normal_key,
)
from continuous_learning.data.pii.names import CAPITAL, LOWER_CASE_NAMES, NAME_RULES, strong_cue_word
from continuous_learning.data.pii.phones import (
    CUED_PHONE_REGIONS,
    PHONE_CANDIDATE,
    cued_phone_candidate,
    fewest_phone_digits,
    phone_spans,
)
from continuous_learning.data.pii.rules import DIGIT, RULES, triggers

_CLEAN_CACHE_TEXT = 4096  # longest text the clean-text cache keeps


def _may_hold_pii(text: str) -> bool:
    """False when no rule can match: no trigger, no capital after the start, no cue of a lower-case name.
    Decoding JSON escapes never turns such a text into one that can (escapes hold digits)."""
    return (
        triggers(text) or CAPITAL.search(text, 1) is not None or not text.isascii() or strong_cue_word(text)
    )


class Redactor:
    """Replaces PII with typed placeholders and keeps counts by type."""

    def __init__(self, phone_regions: Sequence[str] = ("US", "GB"), clean_cache: int = 65_536) -> None:
        self.counts: Counter[str] = Counter()
        self.phone_regions = tuple(phone_regions)
        self.found: list[tuple[str, str]] | None = None  # set to a list to record (kind, text) matches
        self.spans: list[tuple[int, int, str]] | None = None  # set to a list to record (start, end, kind)
        # Texts seen before that held nothing to redact (system prompts, tool results, metadata values
        # repeat across records): found again in one dictionary lookup. Redaction is a function of the
        # text alone, so this never changes a result.
        self._clean: set[str] = set()
        self._clean_cache = clean_cache

    def redact(self, text: str) -> str:
        if text in self._clean:
            return text
        found_before = self.counts.total()
        redacted = self._redact(text, reference=False)
        if self.counts.total() == found_before and len(text) <= _CLEAN_CACHE_TEXT and self._clean_cache:
            if len(self._clean) >= self._clean_cache:
                self._clean.clear()
            self._clean.add(text)
        return redacted

    def redact_reference(self, text: str) -> str:
        """The same result as :meth:`redact` without its shortcuts: every rule on every text.

        Kept as the specification the fast path is tested against."""
        return self._redact(text, reference=True)

    def _redact(self, text: str, reference: bool) -> str:
        if not reference and not _may_hold_pii(text):
            return text
        if looks_like_json(text):
            return self._redact_json(text, reference)
        redacted, spans = self._redact_plain(text, reference)
        self._record(text, spans, 0)
        return redacted

    def _record(self, text: str, spans: list[tuple[int, int, str]], offset: int) -> None:
        for start, end, kind in spans:
            self.counts[kind] += 1
            if self.found is not None:
                self.found.append((kind, text[start:end]))
            if self.spans is not None:
                self.spans.append((start + offset, end + offset, kind))

    def _redact_json(self, text: str, reference: bool) -> str:
        """Each string of a JSON document on its own, decoded; the result is the original with the
        redacted characters replaced by placeholders (so keys, spacing and escapes are kept)."""
        pieces: list[str] = []
        last = 0
        key = ""
        for match in JSON_STRING.finditer(text):
            if JSON_COLON.match(text, match.end()):
                key = normal_key(match.group()[1:-1])
                continue
            raw = match.group()[1:-1]
            if not reference and not _may_hold_pii(raw) and key not in VALUE_KEYS:
                continue
            value, offsets = decode_json_string(raw)
            spans = key_spans(value, key) or self._redact_plain(value, reference)[1]
            if not spans:
                continue
            body_start = match.start() + 1
            pieces.append(text[last:body_start])
            at = 0
            for start, end, kind in spans:
                pieces.append(raw[offsets[at] : offsets[start]])
                pieces.append(f"<{kind}>")
                at = end
            pieces.append(raw[offsets[at] :])
            last = match.end() - 1
            for start, end, kind in spans:
                self.counts[kind] += 1
                if self.found is not None:
                    self.found.append((kind, value[start:end]))
                if self.spans is not None:
                    self.spans.append((body_start + offsets[start], body_start + offsets[end], kind))
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    def _redact_plain(self, text: str, reference: bool) -> tuple[str, list[tuple[int, int, str]]]:
        """(redacted text, the redacted spans of ``text``). The rules run one after the other, each on
        the output of the one before; the spans are traced back to ``text``."""
        trace = _Trace()
        if reference or triggers(text):
            ascii_only = text.isascii()  # stays true: placeholders are ASCII
            digits = DIGIT.search(text) is not None  # only ever removed: placeholders hold no digit
            for rule in RULES:
                if reference or rule.may_match(text, ascii_only, digits):
                    found = list(rule.spans(text))
                    if found:
                        text = trace.apply(text, found, rule.kind)
            if reference or (digits and PHONE_CANDIDATE.search(text)):
                text = self._redact_phones(text, trace, reference)
        # Every name rule but the one for names in lower case needs a capital after the text's start.
        capital = reference or CAPITAL.search(text, 1) is not None
        for rule in NAME_RULES:
            if (
                capital
                if rule is not LOWER_CASE_NAMES
                else reference or rule.may_match(text, text.isascii(), True)
            ):
                found = list(rule.spans(text))
                if found:
                    text = trace.apply(text, found, rule.kind)
        return text, trace.spans()

    def _redact_phones(self, text: str, trace: _Trace, reference: bool) -> str:
        for region in self.phone_regions:
            # Skipping a text with fewer digits than any valid number of ``region`` needs changes no
            # result (see fewest_phone_digits); most often it is the text after an earlier region's
            # pass replaced its numbers.
            if not reference and len(DIGIT.findall(text)) < fewest_phone_digits(region):
                continue
            found = list(phone_spans(text, region, cued=False))
            if found:
                text = trace.apply(text, found, "PHONE")
        if cued_phone_candidate(text):
            for region in CUED_PHONE_REGIONS:
                if region not in self.phone_regions and cued_phone_candidate(text):
                    text = trace.apply(text, list(phone_spans(text, region, cued=True)), "PHONE")
        return text


class _Trace:
    """Replaced spans, in the coordinates of the current text and of the original one."""

    def __init__(self) -> None:
        # (current start, current end, original start, original end, kind), in text order
        self._done: list[tuple[int, int, int, int, str]] = []

    def _original(self, position: int, end: bool) -> int:
        shift = 0
        for cur_start, cur_end, orig_start, orig_end, _ in self._done:
            if cur_end <= position:
                shift = orig_end - cur_end
            elif cur_start < position:  # inside a placeholder: take all of it
                return orig_end if end else orig_start
            else:
                break
        return position + shift

    def apply(self, text: str, found: list[tuple[int, int]], kind: str) -> str:
        if not found:
            return text
        placeholder = f"<{kind}>"
        pieces: list[str] = []
        at = 0
        new: list[tuple[int, int, int, int, str]] = []
        delta = 0
        for start, end in found:
            pieces.append(text[at:start])
            pieces.append(placeholder)
            orig_start, orig_end = self._original(start, False), self._original(end, True)
            new.append((start + delta, start + delta + len(placeholder), orig_start, orig_end, kind))
            delta += len(placeholder) - (end - start)
            at = end
        pieces.append(text[at:])
        # Move the earlier placeholders to the new text's coordinates; drop those a new span swallowed.
        moved = []
        for cur_start, cur_end, orig_start, orig_end, old_kind in self._done:
            if any(s < cur_end and cur_start < e for s, e in found):
                continue  # swallowed by a new span, which covers its original characters too
            shift = sum(len(placeholder) - (e - s) for s, e in found if e <= cur_start)
            moved.append((cur_start + shift, cur_end + shift, orig_start, orig_end, old_kind))
        self._done = sorted(moved + new)
        return "".join(pieces)

    def spans(self) -> list[tuple[int, int, str]]:
        return [(start, end, kind) for _, _, start, end, kind in self._done]
