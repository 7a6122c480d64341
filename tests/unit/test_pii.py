from __future__ import annotations

import json
import random

import pytest
from continuous_learning.data.pii import Redactor, iban_valid, luhn_valid

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
    "my name is ", "Hi ", "Thanks,\n", "Mr. ", "Jane", "Doe", "José", "O'Brien", "\u2014", "name", "call me ",
    "22 MG Road", "Calle Mayor 5", "Hauptstraße 12", ", 10115 Berlin", "LS12 1DR", "my address is ",
    "secret ", "AKIAIOSFODNN7EXAMPLE", "DE89 3704 0044 0532 0130 00", "passport ", "C01X00T47", "version ",
    "{", "}", "[", "]", '"', '": ', ", ", "\\u00e9", "\\n", '"name": "', '"street": "', "tel ", "06 12 34 56 78",
]  # fmt: skip


def test_shortcuts_never_change_a_result() -> None:
    """The fast path (substring tests, per-rule pre-checks, the clean-text cache) against the plain
    reference path on random texts built from PII pieces, look-alikes and Unicode case-folding traps."""
    from continuous_learning.data.pii.rules import TRIGGER, triggers

    rng = random.Random(7)
    texts = ["".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 12))) for _ in range(4000)]
    fast = Redactor()
    fast.found = []
    for text in texts + texts[:500]:  # repeats go through the cache
        assert triggers(text) == bool(TRIGGER.search(text)), text
        before, seen = fast.counts.copy(), len(fast.found)
        reference = Redactor()
        reference.found = []
        assert fast.redact(text) == reference.redact_reference(text), text
        assert fast.counts - before == reference.counts, text
        assert fast.found[seen:] == reference.found, text


@pytest.mark.parametrize(
    "text",
    [
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'",
        "the secret key is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, rotate it",
        "aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        '{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
    ],
)
def test_aws_secret_keys_next_to_a_key_word_are_redacted(text: str) -> None:
    redactor = Redactor()
    assert "wJalrXUtnFEMI" not in redactor.redact(text)
    assert redactor.counts == {"AWS_SECRET_KEY": 1}


def test_forty_character_look_alikes_are_kept() -> None:
    sha = "8c961d29f2afaab5258c360e76d468f4abc64444"
    for text in (
        f"the secret commit {sha} is the one",  # a hex digest, next to "secret"
        "random id DNEIbj5uibgzfkI3qbcVeWMHhU925vTjt9EpuT5D in the URL",  # no key word
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY1",  # 41 characters
    ):
        assert Redactor().redact(text) == text


@pytest.mark.parametrize(
    "address",
    ["10.20.30.40", "192.168.1.105", "172.16.4.22", "100.64.12.7", "81.2.69.142", "fd12:3456:789a:1::1"],
)
def test_ip_addresses_private_and_public_are_redacted(address: str) -> None:
    for text in (f"ssh to {address} please", f"my ip is {address}.", f"curl http://{address}:8080/"):
        assert address not in Redactor().redact(text), text


def test_loopback_and_version_numbers_are_kept() -> None:
    text = "listen on 127.0.0.1:8080 and 0.0.0.0:443, ::1; firmware version 4.2.1.0, v1.2.3.4, build 10.0.22631.2861"
    assert Redactor().redact(text) == text


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Hi, my name is Priya Natarajan and I need help", "Priya Natarajan"),
        ("my name is john smith and my email is x", "john smith"),
        ("Best regards,\nAnna-Lena Schäfer\nTeamleitung", "Anna-Lena Schäfer"),
        ("Dear Dr. Okonkwo, your appointment", "Okonkwo"),
        ("Меня зовут Дмитрий Соколов", "Дмитрий Соколов"),
        ("Can you ask Tomasz whether it works?", "Tomasz"),
        ("cc Fatima Zahra Benali on the thread", "Fatima Zahra Benali"),
        ("\u2014 Ay\u015fe Y\u0131lmaz", "Ay\u015fe Y\u0131lmaz"),
    ],
)
def test_names_after_cues_are_redacted(text: str, name: str) -> None:
    redactor = Redactor()
    assert name not in redactor.redact(text)
    assert redactor.counts["PERSON"] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "I'm happy with the result, thanks!",
        "I'm Sorry but this is Wrong",
        "Thanks, Support Team",
        "Dear Customer, your order has shipped",
        "Hello World example fails on Node 22.11.0",
        "The New York Times article mentioned Microsoft",
        "Meet at Central Park at noon on Monday",
    ],
)
def test_capitalised_words_that_are_not_names_are_kept(text: str) -> None:
    assert Redactor().redact(text) == text


@pytest.mark.parametrize(
    "address",
    [
        "1427 Maple Avenue, Apt 3C, Evanston, IL 60201",
        "14 Wellington Road, Leeds LS12 1DR",
        "12 rue de la Paix, 75002 Paris",
        "Calle Mayor 5, 3º B, 28013 Madrid",
        "Hauptstraße 12, 10115 Berlin",
        "Keizersgracht 123, 1015 CJ Amsterdam",
        "Via Roma 21, 00184 Roma",
        "2-21-1 Shibuya, Shibuya-ku, Tokyo 150-0002",
        "P.O. Box 52481, Dubai",
    ],
)
def test_postal_addresses_of_several_countries_are_redacted(address: str) -> None:
    redactor = Redactor()
    redacted = redactor.redact(f"please ship it to {address} by Friday")
    assert redacted.endswith(" by Friday") and not any(part in redacted for part in address.split(", ")), (
        redacted
    )
    assert set(redactor.counts) == {"ADDRESS"}


def test_ibans_are_checked() -> None:
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE88 3704 0044 0532 0130 00")
    redactor = Redactor()
    assert redactor.redact("IBAN GB29 NWBK 6016 1331 9268 19, BIC NWBKGB2L") == "IBAN <IBAN>, BIC NWBKGB2L"


def test_look_alikes_of_every_kind_are_kept() -> None:
    text = (
        "Order #A-100234 on 2026-11-28 at 15:42:07 cost $1,299.00; tracking 1Z999AA10123456784, flight LH 401, "
        "version 3.11.7, uuid cc941d42-62e0-4dd6-9bda-22cf907b12b7, sha 1189548b4e55154df097b2ed4a41f013b8a0562d, "
        "ISBN 978-0-13-468599-1, invoice INV-2026-000123, my order id is 8472910355, MAC 3C:22:FB:7A:11:09"
    )
    assert Redactor().redact(text) == text


def test_names_in_tool_call_arguments_are_redacted_and_the_json_still_parses() -> None:
    arguments = json.dumps(
        {
            "passenger_name": "Aiko Suzuki",
            "customer": {"first_name": "José", "last_name": "García"},
            "attendees": ["Wang Fang", "Rahul Mehta"],
            "note": 'Customer Hannah Becker called about "late delivery"\nThanks, Tom',
            "address": {"street": "Calle de Alcalá 48", "city": "Madrid"},
            "name": "get_weather",
            "date": "2026-12-03",
        }
    )
    for text in (arguments, json.dumps(json.loads(arguments), ensure_ascii=False)):
        redactor = Redactor()
        redacted = json.loads(redactor.redact(text))
        assert redacted["passenger_name"] == "<PERSON>"
        assert redacted["customer"] == {"first_name": "<PERSON>", "last_name": "<PERSON>"}
        assert redacted["attendees"] == ["<PERSON>", "<PERSON>"]
        assert redacted["note"] == 'Customer <PERSON> called about "late delivery"\nThanks, <PERSON>'
        assert redacted["address"] == {"street": "<ADDRESS>", "city": "Madrid"}
        assert (redacted["name"], redacted["date"]) == ("get_weather", "2026-12-03")
        assert redactor.counts == {"PERSON": 7, "ADDRESS": 1}


def test_redacted_json_keeps_its_bytes_outside_the_placeholders() -> None:
    text = '{"q":  "mail jos\\u00e9@example.com",\n "k": "caf\\u00e9 \\"ok\\"", "n": 1}'
    assert Redactor().redact(text) == '{"q":  "mail <EMAIL>",\n "k": "caf\\u00e9 \\"ok\\"", "n": 1}'


def test_tool_call_arguments_stay_json_through_ingest() -> None:
    """As ingest redacts a message (content and each tool call's arguments string)."""
    from continuous_learning.data.ingest import _redact_messages

    rng = random.Random(3)
    values = ["Aiko Suzuki", "jane@example.com", "4111 1111 1111 1111", "10.0.0.5", "Hi Anna,\nThanks, Bob",
              "Hauptstraße 12, 10115 Berlin", 'a "quoted" \\ back\\slash', "Zoë \u2014 ok", "\u00e9\ud83d\ude00", 7]  # fmt: skip
    keys = ["name", "note", "street", "passenger_name", "to", "q"]
    for _ in range(300):
        document = {rng.choice(keys): rng.choice(values) for _ in range(rng.randrange(1, 5))}
        document["nested"] = [{rng.choice(keys): rng.choice(values)}]
        for ensure_ascii in (True, False):
            arguments = json.dumps(document, ensure_ascii=ensure_ascii)
            message = {
                "role": "assistant",
                "tool_calls": [{"function": {"name": "f", "arguments": arguments}}],
            }
            redacted = _redact_messages([message], Redactor())[0]["tool_calls"][0]["function"]["arguments"]
            parsed = json.loads(redacted)
            assert parsed.keys() == document.keys()
            assert "jane@" not in redacted and "10.0.0.5" not in redacted and "4111 1111" not in redacted
            for key in ("name", "passenger_name"):
                if document.get(key) == "Aiko Suzuki":
                    assert parsed[key] == "<PERSON>"


def test_phone_digit_bound_holds_for_every_country_code() -> None:
    """The international bound the phone shortcut relies on, recomputed from the metadata of every
    country code (a phonenumbers upgrade with shorter numbers fails here), and the bounds it gives."""
    import phonenumbers
    from continuous_learning.data.pii.phones import (
        INTERNATIONAL_PHONE_DIGITS,
        fewest_phone_digits,
        inserted_digits,
        region_lengths,
    )

    fewest = min(
        len(str(code))
        + min(length for region in regions for length in region_lengths(code, region))
        - max(
            inserted_digits(metadata.national_prefix_transform_rule)
            for region in regions
            if (metadata := phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region))
        )
        for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
    )
    assert fewest >= INTERNATIONAL_PHONE_DIGITS
    assert inserted_digits("1481\\1") == 4 and inserted_digits("9\\1") == 1 and inserted_digits(None) == 0
    assert fewest_phone_digits("US") == fewest_phone_digits("GB") == 5
    assert fewest_phone_digits("GG") < 5  # its transform rule adds 4 digits to a 6-digit local number
    # The shortest numbers found: "+43 1 ..." style with 6 digits is above the bound; 4 digits never are.
    redactor = Redactor()
    assert redactor.redact("call +44 20 7946 0958 at 18:00") == "call <PHONE> at 18:00"
    assert redactor.redact("meet at 18:00, room 12") == "meet at 18:00, room 12"


def test_every_labelled_and_found_phone_passes_the_digit_shortcut() -> None:
    """Every phone number labelled in the benchmark sets, and every one the rules find there (cued
    regions included), has at least the digits the shortcut asks of a default region."""
    import re

    from continuous_learning.data.pii.phones import fewest_phone_digits

    from benchmarks.pii.evaluate import LABELLED, load_chat_set

    needed = max(fewest_phone_digits(region) for region in Redactor().phone_regions)
    texts = [example.text for example in load_chat_set()]
    phones = [
        example.text[start:end]
        for example in load_chat_set()
        for start, end, kind in example.pii
        if kind == "PHONE"
    ]
    for line in LABELLED.read_text(encoding="utf-8").splitlines():
        labelled = json.loads(line)
        texts.append(labelled["text"])
        phones += labelled["pii"].get("PHONE", [])
    redactor = Redactor()
    redactor.found = []
    for text in texts:
        redactor.redact_reference(text)
    phones += [value for kind, value in redactor.found if kind == "PHONE"]
    assert len(phones) > 50
    short = [phone for phone in phones if len(re.findall(r"\d", phone)) < needed]
    assert not short
