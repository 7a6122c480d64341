"""Text that is a JSON object or array: its strings, decoded with each character's offset in the original,
and the values a JSON key makes PII where their text alone would not ("passenger_name": "...")."""

from __future__ import annotations

import json
import re

from continuous_learning.data.pii.names import name_shaped
from continuous_learning.data.pii.rule import PLACEHOLDER_RE
from continuous_learning.data.pii.rules import aws_secret_valid, passport_valid

# JSON keys whose (name-shaped) string values are a person's name, and keys whose values are an
# address, compared without case, "_" and "-".
_NAME_KEYS_TEXT = """
    name fullname firstname lastname givenname givennames surname familyname middlename passenger
    passengername customer customername client clientname recipient recipientname sender sendername
    contact contactname assignee author owner organizer organiser patient patientname guest
    guestname traveller travellername traveler travelername attendees participants beneficiary
    accountholder cardholder cardholdername holder holdername driver drivername employee
    employeename to from cc
"""
_NAME_KEYS = frozenset(_NAME_KEYS_TEXT.split())
_ADDRESS_KEYS_TEXT = """
    address street streetaddress addressline1 addressline2 address1 address2 line1 line2
    shippingaddress billingaddress deliveryaddress homeaddress postalcode postcode zip zipcode
"""
_ADDRESS_KEYS = frozenset(_ADDRESS_KEYS_TEXT.split())
VALUE_KEYS = _NAME_KEYS | _ADDRESS_KEYS  # keys that can make a value PII where its text alone does not
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
JSON_COLON = re.compile(r"\s*:")
_JSON_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def decode_json_string(raw: str) -> tuple[str, list[int]]:
    """The decoded string of a JSON string's body and, for each decoded character (and the end), its
    offset in ``raw``."""
    if "\\" not in raw:
        return raw, list(range(len(raw) + 1))
    out: list[str] = []
    offsets: list[int] = []
    i = 0
    while i < len(raw):
        offsets.append(i)
        if raw[i] != "\\":
            out.append(raw[i])
            i += 1
        elif raw[i + 1] == "u":
            code = int(raw[i + 2 : i + 6], 16)
            i += 6
            if 0xD800 <= code < 0xDC00 and raw[i : i + 2] == "\\u":
                low = int(raw[i + 2 : i + 6], 16)
                if 0xDC00 <= low < 0xE000:
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            out.append(chr(code))
        else:
            out.append(_JSON_ESCAPES[raw[i + 1]])
            i += 2
    offsets.append(len(raw))
    return "".join(out), offsets


def looks_like_json(text: str) -> bool:
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return False
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


def normal_key(key: str) -> str:
    return "".join(c for c in key.lower() if c.isalnum())


def key_spans(value: str, key: str) -> list[tuple[int, int, str]]:
    """The span of ``value`` (stripped) when its key ``key`` (:func:`normal_key`) makes it PII, else none."""
    stripped = value.strip()
    if not stripped or PLACEHOLDER_RE.fullmatch(stripped):
        return []
    start = value.index(stripped)
    end = start + len(stripped)
    if key in _NAME_KEYS and name_shaped(stripped):
        return [(start, end, "PERSON")]
    if key in _ADDRESS_KEYS and any(c.isdigit() for c in stripped) and len(stripped) <= 200:
        return [(start, end, "ADDRESS")]
    if "secret" in key and re.fullmatch(r"[A-Za-z0-9/+]{40}", stripped) and aws_secret_valid(stripped):
        return [(start, end, "AWS_SECRET_KEY")]
    if "passport" in key and re.fullmatch(r"[A-Z0-9]{6,10}", stripped) and passport_valid(stripped):
        return [(start, end, "PASSPORT")]
    return []
