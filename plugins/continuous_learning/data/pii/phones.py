"""Phone numbers, found with ``phonenumbers`` (Google's libphonenumber metadata): international ``+CC``
numbers, national formats of the configured regions, and of more regions (:data:`CUED_PHONE_REGIONS`)
after a phone cue such as "tel" or "call me on"; a number right after a reference word is not one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

import phonenumbers

# A number right after one of these words is a reference, not a phone number.
_REFERENCE_CONTEXT = re.compile(
    r"(?i)(?:(?:order|invoice|ref(?:erence)?|tracking|sku|ticket|case|id|no\.?|#)"
    r"(?:\s+(?:id|no\.?|nr\.?|number|num|is|was|:))*|\b[a-z]{2,5}-)\W{0,3}$"
)
PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
# Words after which a national-format number of any of CUED_PHONE_REGIONS is taken for a phone.
_PHONE_CUE = re.compile(
    r"(?i)(?<![<\w])(?:phone|tel\b|tel\.|telephone|téléphone|telefon|telefone|teléfono|telefono|mobile?|mob\b|"
    r"cell|handy|whatsapp|call\s+me|ring\s+me|text\s+me|reach\s+me|rückruf|numéro|nummer|my\s+number)"
)
CUED_PHONE_REGIONS = (
    "FR",
    "DE",
    "IE",
    "BR",
    "ES",
    "IT",
    "NL",
    "AU",
    "IN",
    "JP",
    "AT",
    "CH",
    "BE",
    "SE",
    "PL",
)


def phone_spans(text: str, region: str, cued: bool) -> Iterator[tuple[int, int]]:
    """The valid numbers of ``region`` in ``text`` that follow no reference word (and follow a phone cue
    when ``cued``)."""
    for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        if _REFERENCE_CONTEXT.search(text[max(0, m.start - 16) : m.start]):
            continue
        if cued and not _PHONE_CUE.search(text[max(0, m.start - 40) : m.start]):
            continue
        yield m.start, m.end


# The fewest digits in the text of a number written in international form ("+CC ..." or an IDD prefix)
# that can be valid: the country code's digits and the national number's, less the digits a
# national-prefix transform rule may add (GG's "1481\\1"). tests/unit/test_pii.py recomputes it from
# the phonenumbers metadata of every country code; computing it here would load all of that at import.
INTERNATIONAL_PHONE_DIGITS = 5


@cache
def fewest_phone_digits(region: str) -> int:
    """A lower bound on the ``\\d`` digits of any text in which ``PhoneNumberMatcher(text, region,
    VALID)`` finds a number.

    Why it holds: the matcher returns a number only if it is valid (leniency VALID), and a valid
    number's national significant number has a length in its region's ``general_desc.possible_length``
    (``_number_type_helper`` checks that first). Every digit of that number was read from the text's
    ``\\d`` characters (the matcher's pattern takes digits as ``\\d``; letters are not read) except the
    digits a national-prefix transform rule inserts. A number without a country code in the text takes
    the country code of ``region`` and is transformed with ``region``'s rule, and may be valid for any
    region sharing that code; a number with one is covered by INTERNATIONAL_PHONE_DIGITS."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return 1  # an unknown region: only the matcher's own need of one digit
    code = metadata.country_code
    lengths = [
        length
        for sibling in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, (region,))
        for length in region_lengths(code, sibling)
    ]
    national = (min(lengths) if lengths else 1) - inserted_digits(metadata.national_prefix_transform_rule)
    return max(1, min(INTERNATIONAL_PHONE_DIGITS, national))


def region_lengths(country_code: int, region: str) -> list[int]:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    general = metadata.general_desc if metadata is not None else None
    if general is None or not general.possible_length:
        return [1]  # no length constraint
    return [length for length in general.possible_length if length > 0] or [1]


def inserted_digits(transform_rule: str | None) -> int:
    """The literal digits of a national-prefix transform rule such as ``"1481\\1"`` (groups aside)."""
    return len(re.findall(r"\d", re.sub(r"\\\d", "", transform_rule))) if transform_rule else 0


def cued_phone_candidate(text: str) -> bool:
    """A run of 7 or more digits (with separators) shortly after a phone cue."""
    for candidate in PHONE_CANDIDATE.finditer(text):
        if sum(c.isdigit() for c in candidate.group()) >= 7 and _PHONE_CUE.search(
            text, max(0, candidate.start() - 40), candidate.start()
        ):
            return True
    return False
