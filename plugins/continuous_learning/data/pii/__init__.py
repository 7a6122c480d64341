"""PII redaction: typed placeholders (``<EMAIL>``) in free text, counted by type (:class:`Redactor`).

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

Modules, in the order they build on each other:

- ``rule``: what a rule is (kind, pattern, check, pre-check) and the letter classes of the patterns;
- ``names``: the name cues and :data:`NAME_RULES`; ``addresses``: the street shapes and address cues;
- ``rules``: the machine-shaped kinds, their checks and :data:`RULES` (addresses last), the trigger test;
- ``phones``: libphonenumber matching, the cued regions and the digit bound that skips a region's pass;
- ``json_values``: JSON strings decoded with offsets, and values a key makes PII;
- ``redactor``: the :class:`Redactor`, which runs them in order and traces spans back to the text.
"""

from continuous_learning.data.pii.names import NAME_RULES
from continuous_learning.data.pii.redactor import Redactor
from continuous_learning.data.pii.rule import PLACEHOLDER_RE, Rule
from continuous_learning.data.pii.rules import RULES, iban_valid, luhn_valid

__all__ = ["NAME_RULES", "PLACEHOLDER_RE", "RULES", "Redactor", "Rule", "iban_valid", "luhn_valid"]
