from __future__ import annotations

from continuous_learning.data.pii import Redactor, luhn_valid

from benchmarks.pii.evaluate import evaluate


def test_labelled_set_precision_and_recall() -> None:
    table = evaluate()
    assert table["ALL"]["precision"] >= 0.95, table
    assert table["ALL"]["recall"] >= 0.95, table


def test_placeholders_are_typed_and_counted() -> None:
    redactor = Redactor()
    text = redactor.redact("mail jane@example.com, card 4111-1111-1111-1111, ip 192.168.1.20")
    assert text == "mail <EMAIL>, card <CREDIT_CARD>, ip <IP_ADDRESS>"
    assert dict(redactor.counts) == {"EMAIL": 1, "CREDIT_CARD": 1, "IP_ADDRESS": 1}


def test_look_alikes_are_kept() -> None:
    text = "order 84729103 on 2026-11-28 at 15:00, version 3.11.7, card 4111 1111 1111 1112"
    assert Redactor().redact(text) == text
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


_PIECES = [
    "@", "a", "b", "e", "r", "s", "k", "-", "_", ":", "::", ".", " ", "\n", "0", "1", "4", "9", "/", "=", "+", "(", ")",
    "4111 1111 1111 1111", "123-45-6789", "10.1.2.3", "2001:db8::1", "fe80::", "abcd:", "::1", "AKIA", "ASIA",
    "IOSFODNN7EXAMPLE", "aws_secret_access_key=", "AWS_SECRET_ACCESS_KEY ", "aws_\u017fecret_access_key:",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "bearer ", "BEARER ", "abcdefghijklmnop", "sk_live_", "pk_", "rk-",
    "ghp_", "xoxb-", "jane@example.com", "+44 20 7946 0958", "(415) 555-0132", "07911 123456", "order ", "#",
    "\u017f", "\u212a", "\u0131", "\u0130", "\u0664", "\uff14", "\u00e9", "Asia", "aKiA",
]  # fmt: skip


def test_shortcuts_never_change_a_result() -> None:
    """The fast path (substring tests, per-rule pre-checks, the clean-text cache) against the plain
    reference path on random texts built from PII pieces, look-alikes and Unicode case-folding traps."""
    import random

    from continuous_learning.data.pii import _TRIGGER, _triggers

    rng = random.Random(7)
    texts = ["".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 12))) for _ in range(4000)]
    fast = Redactor()
    fast.found = []
    for text in texts + texts[:500]:  # repeats go through the cache
        assert _triggers(text) == bool(_TRIGGER.search(text)), text
        before, seen = fast.counts.copy(), len(fast.found)
        reference = Redactor()
        reference.found = []
        assert fast.redact(text) == reference.redact_reference(text), text
        assert fast.counts - before == reference.counts, text
        assert fast.found[seen:] == reference.found, text
