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
