"""Postal addresses: a house number next to a street word (Street, Road, rue, Calle, ...straße, ...gatan),
a post-office box, or a postcode-bearing line after "my address is" and its kin, in several languages;
:data:`ADDRESS_RULES`, the last of the rules that run before the phone numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from continuous_learning.data.pii.names import PARTICLE
from continuous_learning.data.pii.rule import LOWER, PLACEHOLDER_RE, UPPER, Rule

_STREET_AFTER = (  # capitalised street words after the street's name: "22 MG Road", "Maple Avenue"
    r"Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Parkway|Pkwy|"
    r"Square|Sq|Terrace|Close|Crescent|Highway|Hwy|Row|Walk|Grove|Gardens|Mews|Circle|Cir|Trail|Plaza|"
    r"Quay|Wharf|Esplanade|Promenade|Broadway|Straße|Strasse|Weg|Platz|Gasse|Allee"
)
_STREET_SEPARATE = (  # street words after the name, written apart, before the number: "Karl Johans gate 22"
    r"gate|gata|gatan|vej|vei|náměstí|ulice|třída|utca|straße|strasse|weg|platz|gasse|allee"
)
_STREET_GLUED = (  # street words written as a suffix: "Hauptstraße 12", "Keizersgracht 123", "Storgatan 14"
    r"straße|strasse|str\.|weg|platz|gasse|allee|damm|ufer|gracht|straat|laan|plein|kade|steeg|gatan|"
    r"vägen|väg|vej|veien|intie|katu|utca"
)
_STREET_BEFORE = (  # street words before the street's name: "rue de la Paix", "Calle Mayor"
    r"(?i:rue|avenue|av\.|avda\.|boulevard|bd|chemin|allée|impasse|quai|cours|calle|c/|avenida|paseo|"
    r"plaza|camino|carrera|via|viale|piazza|corso|largo|vicolo|strada|rua|travessa|praça|alameda|ul\.|"
    r"ulica|al\.|aleja|plac|ulitsa|prospekt)|Am|An\s+der|Auf\s+der|Im"
)
_HOUSE = r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,4}[A-Za-z]?)*"
_WORD = rf"[{UPPER}{LOWER}][{UPPER}{LOWER}'\u2019.\-]*"
_CAP_WORD = rf"(?:[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*|{PARTICLE}|la|las|los|del)"
_POSTCODE = (
    r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"  # UK
    r"|[A-Z]\d[A-Z]\s?\d[A-Z]\d"  # Canada
    r"|[A-Z]\d{2}\s?[A-Z\d]{4}"  # Ireland (Eircode)
    r"|\d{5}-\d{3}|\d{3}-\d{4}|\d{4}-\d{3}|\d{2}-\d{3}"  # Brazil, Japan, Portugal, Poland
    r"|\d{4}\s?[A-Z]{2}|\d{3}\s\d{2}|\d{4,6}(?:-\d{4})?"  # Netherlands, Sweden/Czechia, most others, ZIP+4
)
_UNIT = (
    r"(?:Flat|Apt|Apartment|Unit|Suite|Ste|Level|Floor|Ground\s+Floor|Room|Building|Bldg|Plot|Block|"
    r"District|#)\.?\s*[\w/-]*"
)
# One comma-separated piece after a street: a unit, a place name, a region code or a postcode.
_TAIL_PART = (
    rf"(?:{_UNIT}|\d+\s?º\s?[A-Z]?|(?:{_POSTCODE})(?:\s+{_CAP_WORD}){{0,3}}"
    rf"|[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*(?:[ \-]+{_CAP_WORD}){{0,3}}(?:\s+(?:{_POSTCODE}))?)"
)
_TAIL = (
    rf"(?:(?:,|\s+-)?\s+(?:{_POSTCODE})\s+[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*(?:\s+{_CAP_WORD})?"
    rf"|(?:,\s*{_TAIL_PART}){{1,4}})?"
)
_STREET_NUMBER_FIRST = (
    rf"(?:(?:{_UNIT}),?\s+)*{_HOUSE},?\s+"
    rf"(?:(?:[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*\s+){{0,4}}?(?:{_STREET_AFTER})\b\.?(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?"
    rf"|(?:{_STREET_BEFORE})\.?(?:\s+{_CAP_WORD}){{0,3}}?\s+[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*)"
)
_STREET_NAME_FIRST = (
    rf"(?:(?:{_UNIT}),?\s+)*"
    rf"(?:(?:{_STREET_BEFORE})\.?(?:\s+{_CAP_WORD}){{0,3}}?\s+[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*"
    rf"|[{UPPER}][{UPPER}{LOWER}]{{2,}}(?i:{_STREET_GLUED})"
    rf"|[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*(?:\s+[{UPPER}][{UPPER}{LOWER}'\u2019.\-]*){{0,2}}\s+(?:{_STREET_SEPARATE}))"
    rf",?\s+{_HOUSE}(?:\s?[A-Z](?=\W))?(?:\s+[A-Z]\s+\d+)?"
)
_JAPANESE_BLOCK = rf"\d{{1,2}}-\d{{1,3}}(?:-\d{{1,3}})?\s+{_WORD}(?:,\s*{_WORD}-(?:ku|shi|cho|machi|gun))"
_PO_BOX = r"(?i:P\.?\s?O\.?\s+Box|Postfach|Apartado|Caixa\s+Postal)\s+\d+"
_ADDRESS = re.compile(
    rf"(?<![\w/])(?:{_PO_BOX}|{_JAPANESE_BLOCK}|{_STREET_NUMBER_FIRST}|{_STREET_NAME_FIRST}){_TAIL}(?![\w])"
)
# After these words the rest of the line, up to a sentence break, is an address if it holds a digit.
_ADDRESS_CUE = re.compile(
    r"(?i:(?:my|our|new|the|billing|shipping|delivery|home|office|postal|mailing)?\s*address(?:\s+is)?\s*[:=-]?|"
    r"i\s+live\s+(?:at|on)|lives\s+at|live\s+at|staying\s+at|i'm\s+at|moved\s+to|ship(?:\s+it)?\s+to|"
    r"deliver(?:y)?\s+(?:to|at)|send\s+(?:it\s+)?to|pickup\s+point\s*:|home\s*:|office\s*:|billing\s*:|"
    r"sender\s*:|lieferadresse\s*:|lieferung\s+an|wohne\s+in\s+der|adresse(?:\s+de\s+livraison)?\s*:?|"
    r"dirección(?:\s+de\s+envío)?\s*:?|moro\s+na|indirizzo\s*:?|adres\s*:?)"
    r"[ \t]+(?P<v>[^\n.!?;()]{6,120})"
)
_ADDRESS_END = re.compile(r"\s+(?:by|until|before|after|lol|jk|please|thanks|\u2014|\u2013|-\s)\b.*$|[ ,]+$")


def _cued_address_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in _ADDRESS_CUE.finditer(text):
        value = match.group("v")
        cut = _ADDRESS_END.search(value)
        if cut:
            value = value[: cut.start()]
        if not (re.search(r"\d", value) and re.search(rf"[{UPPER}]", value) and len(value) >= 6):
            continue
        if PLACEHOLDER_RE.fullmatch(value.strip()):
            continue
        start = match.start("v")
        yield start, start + len(value.rstrip(", "))


@dataclass(frozen=True)
class _CuedAddressRule(Rule):
    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        return _cued_address_spans(text)


def _words_of(alternation: str) -> set[str]:
    """The lower-case words of a regular-expression alternation such as ``r"Street|St|An\\s+der"``."""
    return {
        w
        for part in re.sub(r"\(\?i:|\)|\\s\+|\\\.|/", " ", alternation).lower().split("|")
        for w in part.split()[:1]
    }


# Pre-checks on ASCII text (on ASCII, case-insensitive matching is matching the lower-cased text).
_STREET_WORDS = frozenset(
    _words_of(_STREET_AFTER)
    | _words_of(_STREET_SEPARATE)
    | _words_of(_STREET_BEFORE)
    | {"box", "postfach", "apartado", "caixa", "ku", "shi", "cho", "machi", "gun", "c"}
)
_GLUED_SUFFIXES = tuple(_words_of(_STREET_GLUED))
_ASCII_WORD = re.compile(r"[a-z]+")
_ADDRESS_CUE_WORDS = (
    "address", "live", "staying", "i'm at", "moved", "ship", "deliver", "send", "pickup", "home", "office",
    "billing", "sender", "liefer", "wohne", "adres", "moro", "indirizzo",
)  # fmt: skip


def _street_word(text: str) -> bool:
    return any(w in _STREET_WORDS or w.endswith(_GLUED_SUFFIXES) for w in _ASCII_WORD.findall(text.lower()))


def _address_cue_word(text: str) -> bool:
    lower = text.lower()
    return any(w in lower for w in _ADDRESS_CUE_WORDS)


ADDRESS_RULES: tuple[Rule, ...] = (
    Rule("ADDRESS", _ADDRESS, may_match=lambda t, a, d: d and (not a or _street_word(t))),
    _CuedAddressRule(
        "ADDRESS", _ADDRESS_CUE, may_match=lambda t, a, d: d and (not a or _address_cue_word(t))
    ),
)
