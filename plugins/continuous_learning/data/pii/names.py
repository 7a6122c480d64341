"""Names, found by cues: after "my name is", a greeting, a sign-off, an honorific or a relation word
("my colleague"); :data:`NAME_RULES`, which run after the phone numbers. :func:`name_shaped` tells a
JSON value under a name-like key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from continuous_learning.data.pii.rule import LOWER, UPPER, Rule

_CAP = rf"[{UPPER}][{LOWER}{UPPER}]*(?:['\u2019\-][{UPPER}{LOWER}][{LOWER}{UPPER}]*)*"  # Zoë, O'Brien, Al-Farsi, HIROSHI
_INITIAL = rf"[{UPPER}]\."
PARTICLE = r"(?:van|von|der|den|de|del|della|di|da|das|dos|du|le|la|bin|binti|ibn|al|el|y|ter|zu|af)"
_NAME = rf"(?:{_INITIAL}[ \t]?)*{_CAP}(?:[ \t]+(?:{PARTICLE}[ \t]+)*(?:{_INITIAL}|{_CAP})){{0,3}}"
_LOWER_WORD = rf"[{LOWER}]{{2,}}(?:['\u2019\-][{LOWER}]+)*"
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
class _NameRule(Rule):
    """A cue pattern whose group ``v`` is trimmed to the words that can be a name."""

    strong: bool = False  # the name may be in lower case (after "my name is")

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            start = match.start("v")
            length = _trim_name(match.group("v"), self.strong)
            if length:
                yield start, start + length


CAPITAL = re.compile(rf"(?<![\w<])[{UPPER}]")
_NAME_AT = re.compile(rf"(?P<v>{_NAME}){_BOUNDARY_AFTER}")
_CUE_WINDOW = 48  # characters before a capitalised word searched for a cue


@dataclass(frozen=True)
class _CuedNameRule(Rule):
    """``pattern`` is a cue that ends where a name starts: tried only before capitalised words, which
    is the same as searching cue and name together, and much cheaper."""

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        done = 0
        for capital in CAPITAL.finditer(text, 1):
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


def name_shaped(value: str) -> bool:
    """A JSON value that reads as a person's name: 1-5 words, letters only, capitalised (or a script
    without case), particles allowed."""
    tokens = _name_tokens(value)
    if not 1 <= len(tokens) <= 5 or len(value) > 80:
        return False
    named = False
    for token in tokens:
        if re.fullmatch(PARTICLE, token):
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


_STRONG_CUE_WORDS = ("name", "naam", "nome", "appelle", "llamo", "chiamo", "heisse", "nazywam")


def strong_cue_word(text: str) -> bool:
    lower = text.lower()
    return any(w in lower for w in _STRONG_CUE_WORDS)


# After the phone numbers, which run between RULES and these.
NAME_RULES: tuple[Rule, ...] = (
    _NameRule("PERSON", _HONORIFIC_NAME),
    _CuedNameRule("PERSON", _NAME_CUE),
    _NameRule("PERSON", _STRONG_NAME, strong=True, may_match=lambda t, a, d: not a or strong_cue_word(t)),
    _NameRule("PERSON", _SIGN_OFF_NAME),
)

LOWER_CASE_NAMES = NAME_RULES[2]
