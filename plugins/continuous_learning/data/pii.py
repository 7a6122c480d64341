"""PII redaction: typed placeholders (``<EMAIL>``) in free text, counted by type.

Phone numbers are found with ``phonenumbers`` (Google's libphonenumber metadata: international
``+CC`` numbers, national formats of the configured regions, and of more regions after a phone cue such
as "tel" or "call me on"); the other machine-shaped kinds are shapes a regular expression states
exactly, with a check where the shape alone is not enough (Luhn for payment cards, ISO 7064 mod 97 for
IBANs, address parsing for IPv6, a key-ish context for AWS secret keys and passport numbers).

Names and postal addresses have no fixed shape. Without an NER model (see benchmarks/pii/RESULTS.md for
why ingest does not run one) they are found by cues: a name after "my name is", a greeting, a sign-off,
an honorific or a relation word ("my colleague"), or as the value of a name-like JSON key; an address as
a house number next to a street word (Street, Road, rue, Calle, ...straße, ...gatan), a post-office box,
or a postcode-bearing line after "my address is" and its kin, in several languages.

Text that is a JSON object or array (tool-call arguments, tool results) is redacted string by string,
on the decoded strings, and spliced back into the original bytes: the result still parses, keys and
escapes are kept, and a JSON key can give its value's type ("passenger_name": "...").

Cheap tests skip text that cannot hold any kind, and each rule whose required characters are absent:
most text costs a few substring searches and the name rules.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import phonenumbers

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


_U = _char_class(lambda c: c.isupper() and c.isalpha())  # upper-case letters of every cased script
_L = _char_class(lambda c: c.islower() and c.isalpha())

# A number right after one of these words is a reference, not a phone number.
_REFERENCE_CONTEXT = re.compile(
    r"(?i)(?:(?:order|invoice|ref(?:erence)?|tracking|sku|ticket|case|id|no\.?|#)"
    r"(?:\s+(?:id|no\.?|nr\.?|number|num|is|was|:))*|\b[a-z]{2,5}-)\W{0,3}$"
)
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
# Words after which a national-format number of any of _CUED_PHONE_REGIONS is taken for a phone.
_PHONE_CUE = re.compile(
    r"(?i)(?<![<\w])(?:phone|tel\b|tel\.|telephone|téléphone|telefon|telefone|teléfono|telefono|mobile?|mob\b|"
    r"cell|handy|whatsapp|call\s+me|ring\s+me|text\s+me|reach\s+me|rückruf|numéro|nummer|my\s+number)"
)
_CUED_PHONE_REGIONS = (
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
_TRIGGER = re.compile(
    r"[@\d]|bearer|AKIA|ASIA|(?:sk|pk|rk)[-_]|gh[pousr]_|xox[abprs]-|::|secret|aws|cred", re.IGNORECASE
)
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


def _aws_secret_valid(candidate: str) -> bool:
    """40 characters of base64 with both cases: a hex digest (git SHA-1) has one case only."""
    return any(c.isupper() for c in candidate) and any(c.islower() for c in candidate)


def _passport_valid(candidate: str) -> bool:
    return sum(c.isdigit() for c in candidate) >= 2 and not candidate.isalpha()


def _always(text: str, ascii_only: bool, digits: bool) -> bool:
    return True


_Finder = Callable[[str], Iterator[tuple[int, int]]]


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    # A test that holds whenever ``pattern`` can match the text: (text, text is ASCII, text has a digit).
    may_match: Callable[[str, bool, bool], bool] = _always
    group: str | None = None  # redact only this named group of a match (the rest is context)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            start, end = match.span(self.group) if self.group else match.span()
            if start < 0 or start == end:
                continue
            if self.check is None or self.check(text[start:end]):
                yield start, end


# -- names ------------------------------------------------------------------------------------------

_CAP = rf"[{_U}][{_L}{_U}]*(?:['\u2019\-][{_U}{_L}][{_L}{_U}]*)*"  # Zoë, O'Brien, Al-Farsi, HIROSHI
_INITIAL = rf"[{_U}]\."
_PARTICLE = r"(?:van|von|der|den|de|del|della|di|da|das|dos|du|le|la|bin|binti|ibn|al|el|y|ter|zu|af)"
_NAME = rf"(?:{_INITIAL}[ \t]?)*{_CAP}(?:[ \t]+(?:{_PARTICLE}[ \t]+)*(?:{_INITIAL}|{_CAP})){{0,3}}"
_LOWER_WORD = rf"[{_L}]{{2,}}(?:['\u2019\-][{_L}]+)*"
_LOWER_NAME = rf"{_LOWER_WORD}(?:[ \t]+{_LOWER_WORD})?"
_BOUNDARY_BEFORE = r"(?<![\w<])"
_BOUNDARY_AFTER = r"(?![\w>])"

# Cues after which a capitalised word sequence is a name (case-insensitive cue, case-sensitive name).
_NAME_CUES = (
    r"my\s+name\s+is|my\s+name's|name\s+is|names?\s*[:=]|i\s+am|i'm|i\u2019m|im|this\s+is|it's|it\s+is|"
    r"call\s+me|(?:he|she)\s+said\s+(?:his|her)\s+name\s+(?:is|was)|(?:his|her)\s+name\s+(?:is|was)|"
    r"under\s+the\s+name|signed\s*(?:by|:)|signature\s*:|from\s*:|attn\.?\s*:?|c/o|cc|"
    r"hi|hello|hey|dear|good\s+(?:morning|afternoon|evening)|bonjour|hola|hallo|ciao|olá|ola|hej|dag|"
    r"thanks|thank\s+you|many\s+thanks|thx|cheers|regards|best\s+regards|kind\s+regards|warm\s+regards|"
    r"best\s+wishes|best|sincerely|yours\s+sincerely|yours\s+truly|yours|saludos|cordialement|pozdrawiam|"
    r"met\s+vriendelijke\s+groet|mit\s+freundlichen\s+grüßen|viele\s+grüße|liebe\s+grüße|saluti|"
    r"atenciosamente|atentamente|un\s+saludo|groeten|"
    r"je\s+suis|je\s+m'appelle|soy|me\s+llamo|mi\s+nombre\s+es|ich\s+heiße|ich\s+heisse|mein\s+name\s+ist|"
    r"mi\s+chiamo|sono|meu\s+nome\s+é|eu\s+sou|ik\s+ben|mijn\s+naam\s+is|меня\s+зовут|nazywam\s+się|jestem|"
    r"ask|tell|forward(?:\s+(?:this|it|the\s+\w+))?\s+to|send\s+(?:it|this|the\s+\w+)\s+to|cc\s+to|"
    r"spoke\s+(?:to|with)|speak\s+(?:to|with)|talked\s+(?:to|with)|add|who\s+is|belongs\s+to|"
    r"intestato\s+a|beneficiary|account\s+holder|holder|customer|client|passenger|guest|patient|driver|"
    r"teacher|recipient|owner|organi[sz]er|contact|"
    r"my\s+(?:wife|husband|son|daughter|mother|mom|mum|father|dad|brother|sister|friend|colleague|boss|"
    r"partner|manager|grandmother|grandfather|uncle|aunt|cousin|neighbou?r|assistant)|"
    r"the\s+(?:driver|courier|agent|technician|customer|guest|passenger|account\s+holder)"
)
# Cues after which a name may be written in lower case ("my name is john smith").
_STRONG_CUES = (
    r"my\s+name\s+is|my\s+name's|name\s+is|меня\s+зовут|je\s+m'appelle|me\s+llamo|"
    r"mi\s+chiamo|ich\s+heiße|mein\s+name\s+ist|mijn\s+naam\s+is|meu\s+nome\s+é|nazywam\s+się"
)
_HONORIFICS = (
    r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord|Mme|Mlle|Madame|Monsieur|Herr|Frau|Sr|Sra|Srta|Señor|"
    r"Señora|Sig|Sig\.ra|Signor|Signora|Dott|Dott\.ssa|Pan|Pani|Grandma|Grandpa|Granny|Uncle|Aunt|Auntie"
)
_CUE_SEPARATOR = r"[ \t]*[,:;\-\u2013\u2014]?[ \t]*(?:\r?\n[ \t]*)?"
_NAME_CUE = re.compile(
    rf"{_BOUNDARY_BEFORE}(?i:{_NAME_CUES})(?!\w){_CUE_SEPARATOR}(?:(?i:is|was|named|called)[ \t]+)?\Z"
)
_STRONG_NAME = re.compile(
    rf"{_BOUNDARY_BEFORE}(?i:{_STRONG_CUES})[ \t]+(?P<v>{_LOWER_NAME}){_BOUNDARY_AFTER}"
)
_HONORIFIC_NAME = re.compile(rf"{_BOUNDARY_BEFORE}(?:{_HONORIFICS})\.?[ \t]+(?P<v>{_NAME}){_BOUNDARY_AFTER}")
_SIGN_OFF_NAME = re.compile(rf"(?m)^[ \t]*(?:\u2014|\u2013|--|-)[ \t]*(?P<v>{_NAME})[ \t]*$")

# Capitalised words that follow a cue without being a name ("I'm Sorry", "Hi there", "Thanks, Support Team").
_NOT_NAME_WORDS = """
    a an the this that these those it its i we you he she they me my our your his her their us them
    sorry happy glad great good fine ok okay yes no not here there back still just also so very
    really now then again ready done sure please thanks thank hello hi hey dear regards best all
    everyone everybody team support customer customers service sales billing department office staff
    management admin later world folks guys friends sir madam madame mesdames messieurs gentlemen
    ladies there going trying looking having calling writing wrong right interested new using from
    with about for on in at to of and or but if as by when what which who how why where is are was
    were be been monday tuesday wednesday thursday friday saturday sunday january february march
    april may june july august september october november december today tomorrow yesterday tonight
    morning afternoon evening night week weekend month year bot assistant agent human user someone
    somebody anyone nobody manager owner client guest patient driver passenger holder teacher
    recipient beneficiary contact mr mrs ms miss mx dr prof sir dame lady lord mme mlle monsieur
    herr frau sr sra srta señor señora sig signor signora dott pan pani grandma grandpa granny uncle
    aunt auntie
"""
_NOT_NAMES = frozenset(_NOT_NAME_WORDS.split())
_STRONG_STOP_WORDS = """
    and or but is was from at in on with my i the a an to for of not here there and, please thanks
    can could would will
"""
_STRONG_STOP = frozenset(_STRONG_STOP_WORDS.split())


def _name_tokens(value: str) -> list[str]:
    return value.replace("\t", " ").split()


def _trim_name(value: str, strong: bool) -> int:
    """How many characters of ``value`` are a name (0: none)."""
    tokens = _name_tokens(value)
    keep: list[str] = []
    for token in tokens:
        word = token.lower().rstrip(".")
        if word in (_STRONG_STOP if strong else _NOT_NAMES):
            break
        keep.append(token)
    while keep and keep[-1].lower() in {"de", "van", "von", "der", "den", "da", "di", "del", "la", "le"}:
        keep.pop()
    if not keep:
        return 0
    if not strong and all(len(t) <= 2 for t in keep):
        return 0
    last = keep[-1]
    at = 0
    for token in keep[:-1]:
        at = value.index(token, at) + len(token)
    return value.index(last, at) + len(last)


@dataclass(frozen=True)
class _NameRule(_Rule):
    """A cue pattern whose group ``v`` is trimmed to the words that can be a name."""

    strong: bool = False  # the name may be in lower case (after "my name is")

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            start = match.start("v")
            length = _trim_name(match.group("v"), self.strong)
            if length:
                yield start, start + length


_CAPITAL = re.compile(rf"(?<![\w<])[{_U}]")
_NAME_AT = re.compile(rf"(?P<v>{_NAME}){_BOUNDARY_AFTER}")
_CUE_WINDOW = 48  # characters before a capitalised word searched for a cue


@dataclass(frozen=True)
class _CuedNameRule(_Rule):
    """``pattern`` is a cue that ends where a name starts: tried only before capitalised words, which
    is the same as searching cue and name together, and much cheaper."""

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        done = 0
        for capital in _CAPITAL.finditer(text, 1):
            start = capital.start()
            if start < done or not self.pattern.search(text, max(0, start - _CUE_WINDOW), start):
                continue
            match = _NAME_AT.match(text, start)
            if match is None:
                continue
            length = _trim_name(match.group("v"), strong=False)
            if length:
                done = start + length
                yield start, done


def _name_shaped(value: str) -> bool:
    """A JSON value that reads as a person's name: 1-5 words, letters only, capitalised (or a script
    without case), particles allowed."""
    tokens = _name_tokens(value)
    if not 1 <= len(tokens) <= 5 or len(value) > 80:
        return False
    named = False
    for token in tokens:
        if re.fullmatch(_PARTICLE, token):
            continue
        if not all(c.isalpha() or c in "'\u2019-." for c in token):
            return False
        first = token[0]
        if first.isupper() or (not first.islower() and first.isalpha()):  # capitalised, or a caseless script
            named = True
            if token.lower() in _NOT_NAMES and len(tokens) == 1:
                return False
        else:
            return False
    return named


# -- addresses --------------------------------------------------------------------------------------

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
_WORD = rf"[{_U}{_L}][{_U}{_L}'\u2019.\-]*"
_CAP_WORD = rf"(?:[{_U}][{_U}{_L}'\u2019.\-]*|{_PARTICLE}|la|las|los|del)"
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
    rf"|[{_U}][{_U}{_L}'\u2019.\-]*(?:[ \-]+{_CAP_WORD}){{0,3}}(?:\s+(?:{_POSTCODE}))?)"
)
_TAIL = (
    rf"(?:(?:,|\s+-)?\s+(?:{_POSTCODE})\s+[{_U}][{_U}{_L}'\u2019.\-]*(?:\s+{_CAP_WORD})?"
    rf"|(?:,\s*{_TAIL_PART}){{1,4}})?"
)
_STREET_NUMBER_FIRST = (
    rf"(?:(?:{_UNIT}),?\s+)*{_HOUSE},?\s+"
    rf"(?:(?:[{_U}][{_U}{_L}'\u2019.\-]*\s+){{0,4}}?(?:{_STREET_AFTER})\b\.?(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?"
    rf"|(?:{_STREET_BEFORE})\.?(?:\s+{_CAP_WORD}){{0,3}}?\s+[{_U}][{_U}{_L}'\u2019.\-]*)"
)
_STREET_NAME_FIRST = (
    rf"(?:(?:{_UNIT}),?\s+)*"
    rf"(?:(?:{_STREET_BEFORE})\.?(?:\s+{_CAP_WORD}){{0,3}}?\s+[{_U}][{_U}{_L}'\u2019.\-]*"
    rf"|[{_U}][{_U}{_L}]{{2,}}(?i:{_STREET_GLUED})"
    rf"|[{_U}][{_U}{_L}'\u2019.\-]*(?:\s+[{_U}][{_U}{_L}'\u2019.\-]*){{0,2}}\s+(?:{_STREET_SEPARATE}))"
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
        if not (re.search(r"\d", value) and re.search(rf"[{_U}]", value) and len(value) >= 6):
            continue
        if PLACEHOLDER_RE.fullmatch(value.strip()):
            continue
        start = match.start("v")
        yield start, start + len(value.rstrip(", "))


@dataclass(frozen=True)
class _CuedAddressRule(_Rule):
    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        return _cued_address_spans(text)


@dataclass(frozen=True)
class _IbanRule(_Rule):
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
class _Ipv4Rule(_Rule):
    """A dotted quad, unless a version: "version 4.2.1.0", "v1.2.3.4", "build 10.0.0.1"."""

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for start, end in super().spans(text):
            if not text[max(0, start - 8) : start].lower().endswith(("version ", "v", "build ")):
                yield start, end


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
_PASSPORT_WORDS = ("passport", "passeport", "pasaporte", "passaporto", "reisepass", "paszport")
_STRONG_CUE_WORDS = ("name", "naam", "nome", "appelle", "llamo", "chiamo", "heisse", "nazywam")


def _street_word(text: str) -> bool:
    return any(w in _STREET_WORDS or w.endswith(_GLUED_SUFFIXES) for w in _ASCII_WORD.findall(text.lower()))


def _address_cue_word(text: str) -> bool:
    lower = text.lower()
    return any(w in lower for w in _ADDRESS_CUE_WORDS)


def _strong_cue_word(text: str) -> bool:
    lower = text.lower()
    return any(w in lower for w in _STRONG_CUE_WORDS)


# -- rules ------------------------------------------------------------------------------------------

_SECRET_CONTEXT = r"(?i:secret|aws.{0,24}?key|credentials?|creds)"

# Order matters: specific shapes before generic digit runs, machine shapes before names.
RULES: tuple[_Rule, ...] = (
    _Rule(
        "EMAIL",
        re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
        may_match=lambda t, a, d: "@" in t,
    ),
    _Rule(
        "AWS_ACCESS_KEY",
        re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        may_match=lambda t, a, d: "AKIA" in t or "ASIA" in t,
    ),
    _Rule(
        "AWS_SECRET_KEY",  # 40 base64 characters within a short distance after a secret-ish word
        re.compile(
            rf"{_SECRET_CONTEXT}[^\n]{{0,48}}?(?<![A-Za-z0-9/+])(?P<v>[A-Za-z0-9/+]{{40}})(?![A-Za-z0-9/+=])"
        ),
        _aws_secret_valid,
        may_match=lambda t, a, d: not a or any(w in t.lower() for w in ("secret", "aws", "cred")),
        group="v",
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
    _IbanRule(
        "IBAN",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        iban_valid,
        may_match=lambda t, a, d: d,
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
    _Ipv4Rule(
        "IP_ADDRESS",
        re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\d|\.\d)"),
        _ipv4_valid,
        may_match=lambda t, a, d: d and "." in t,
    ),
    _Rule(
        "IP_ADDRESS",
        re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        _ipv6_valid,
        may_match=lambda t, a, d: t.count(":") >= 2,
    ),
    _Rule(
        "PASSPORT",  # an id of 6-10 capitals and digits shortly after the word passport, in some languages
        re.compile(
            r"(?i:passport|passeport|pasaporte|passaporto|reisepass|paszport|паспорт)"
            r"[^\n\d]{0,24}?(?<![A-Z0-9])(?P<v>[A-Z0-9]{6,10})(?![A-Za-z0-9])"
        ),
        _passport_valid,
        may_match=lambda t, a, d: d and (not a or any(w in t.lower() for w in _PASSPORT_WORDS)),
        group="v",
    ),
    _Rule("ADDRESS", _ADDRESS, may_match=lambda t, a, d: d and (not a or _street_word(t))),
    _CuedAddressRule(
        "ADDRESS", _ADDRESS_CUE, may_match=lambda t, a, d: d and (not a or _address_cue_word(t))
    ),
)
# After the phone numbers, which run between RULES and these.
NAME_RULES: tuple[_Rule, ...] = (
    _NameRule("PERSON", _HONORIFIC_NAME),
    _CuedNameRule("PERSON", _NAME_CUE),
    _NameRule("PERSON", _STRONG_NAME, strong=True, may_match=lambda t, a, d: not a or _strong_cue_word(t)),
    _NameRule("PERSON", _SIGN_OFF_NAME),
)

_LOWER_CASE_NAMES = NAME_RULES[2]

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
_VALUE_KEYS = _NAME_KEYS | _ADDRESS_KEYS  # keys that can make a value PII where its text alone does not
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_COLON = re.compile(r"\s*:")
_JSON_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode_json_string(raw: str) -> tuple[str, list[int]]:
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


def _looks_like_json(text: str) -> bool:
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return False
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


def _may_hold_pii(text: str) -> bool:
    """False when no rule can match: no trigger, no capital after the start, no cue of a lower-case name.
    Decoding JSON escapes never turns such a text into one that can (escapes hold digits)."""
    return (
        _triggers(text)
        or _CAPITAL.search(text, 1) is not None
        or not text.isascii()
        or _strong_cue_word(text)
    )


def _normal_key(key: str) -> str:
    return "".join(c for c in key.lower() if c.isalnum())


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
        if _looks_like_json(text):
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
        for match in _JSON_STRING.finditer(text):
            if _JSON_COLON.match(text, match.end()):
                key = _normal_key(match.group()[1:-1])
                continue
            raw = match.group()[1:-1]
            if not reference and not _may_hold_pii(raw) and key not in _VALUE_KEYS:
                continue
            value, offsets = _decode_json_string(raw)
            spans = self._key_spans(value, key) or self._redact_plain(value, reference)[1]
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

    def _key_spans(self, value: str, key: str) -> list[tuple[int, int, str]]:
        stripped = value.strip()
        if not stripped or PLACEHOLDER_RE.fullmatch(stripped):
            return []
        start = value.index(stripped)
        end = start + len(stripped)
        if key in _NAME_KEYS and _name_shaped(stripped):
            return [(start, end, "PERSON")]
        if key in _ADDRESS_KEYS and any(c.isdigit() for c in stripped) and len(stripped) <= 200:
            return [(start, end, "ADDRESS")]
        if "secret" in key and re.fullmatch(r"[A-Za-z0-9/+]{40}", stripped) and _aws_secret_valid(stripped):
            return [(start, end, "AWS_SECRET_KEY")]
        if "passport" in key and re.fullmatch(r"[A-Z0-9]{6,10}", stripped) and _passport_valid(stripped):
            return [(start, end, "PASSPORT")]
        return []

    def _redact_plain(self, text: str, reference: bool) -> tuple[str, list[tuple[int, int, str]]]:
        """(redacted text, the redacted spans of ``text``). The rules run one after the other, each on
        the output of the one before; the spans are traced back to ``text``."""
        trace = _Trace()
        if reference or _triggers(text):
            ascii_only = text.isascii()  # stays true: placeholders are ASCII
            digits = _DIGIT.search(text) is not None  # only ever removed: placeholders hold no digit
            for rule in RULES:
                if reference or rule.may_match(text, ascii_only, digits):
                    found = list(rule.spans(text))
                    if found:
                        text = trace.apply(text, found, rule.kind)
            if reference or (digits and _PHONE_CANDIDATE.search(text)):
                text = self._redact_phones(text, trace, reference)
        # Every name rule but the one for names in lower case needs a capital after the text's start.
        capital = reference or _CAPITAL.search(text, 1) is not None
        for rule in NAME_RULES:
            if (
                capital
                if rule is not _LOWER_CASE_NAMES
                else reference or rule.may_match(text, text.isascii(), True)
            ):
                found = list(rule.spans(text))
                if found:
                    text = trace.apply(text, found, rule.kind)
        return text, trace.spans()

    def _redact_phones(self, text: str, trace: _Trace, reference: bool) -> str:
        for region in self.phone_regions:
            # Skipping a text with fewer digits than any valid number of ``region`` needs changes no
            # result (see _fewest_phone_digits); most often it is the text after an earlier region's
            # pass replaced its numbers.
            if not reference and len(_DIGIT.findall(text)) < _fewest_phone_digits(region):
                continue
            found = list(self._phone_spans(text, region, cued=False))
            if found:
                text = trace.apply(text, found, "PHONE")
        if _cued_phone_candidate(text):
            for region in _CUED_PHONE_REGIONS:
                if region not in self.phone_regions and _cued_phone_candidate(text):
                    text = trace.apply(text, list(self._phone_spans(text, region, cued=True)), "PHONE")
        return text

    @staticmethod
    def _phone_spans(text: str, region: str, cued: bool) -> Iterator[tuple[int, int]]:
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
_INTERNATIONAL_PHONE_DIGITS = 5


@cache
def _fewest_phone_digits(region: str) -> int:
    """A lower bound on the ``\\d`` digits of any text in which ``PhoneNumberMatcher(text, region,
    VALID)`` finds a number.

    Why it holds: the matcher returns a number only if it is valid (leniency VALID), and a valid
    number's national significant number has a length in its region's ``general_desc.possible_length``
    (``_number_type_helper`` checks that first). Every digit of that number was read from the text's
    ``\\d`` characters (the matcher's pattern takes digits as ``\\d``; letters are not read) except the
    digits a national-prefix transform rule inserts. A number without a country code in the text takes
    the country code of ``region`` and is transformed with ``region``'s rule, and may be valid for any
    region sharing that code; a number with one is covered by _INTERNATIONAL_PHONE_DIGITS."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return 1  # an unknown region: only the matcher's own need of one digit
    code = metadata.country_code
    lengths = [
        length
        for sibling in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, (region,))
        for length in _region_lengths(code, sibling)
    ]
    national = (min(lengths) if lengths else 1) - _inserted_digits(metadata.national_prefix_transform_rule)
    return max(1, min(_INTERNATIONAL_PHONE_DIGITS, national))


def _region_lengths(country_code: int, region: str) -> list[int]:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    general = metadata.general_desc if metadata is not None else None
    if general is None or not general.possible_length:
        return [1]  # no length constraint
    return [length for length in general.possible_length if length > 0] or [1]


def _inserted_digits(transform_rule: str | None) -> int:
    """The literal digits of a national-prefix transform rule such as ``"1481\\1"`` (groups aside)."""
    return len(re.findall(r"\d", re.sub(r"\\\d", "", transform_rule))) if transform_rule else 0


def _cued_phone_candidate(text: str) -> bool:
    """A run of 7 or more digits (with separators) shortly after a phone cue."""
    for candidate in _PHONE_CANDIDATE.finditer(text):
        if sum(c.isdigit() for c in candidate.group()) >= 7 and _PHONE_CUE.search(
            text, max(0, candidate.start() - 40), candidate.start()
        ):
            return True
    return False


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
