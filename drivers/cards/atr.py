"""Telling a carte Vitale from a CPS (and from anything else) by its ATR, before sending it a single APDU.

Rules use the syntax of pcsc-tools' ``smartcard_list.txt`` (Ludovic Rousseau's public list of ATRs): the ATR
as upper-case hex bytes separated by spaces, matched whole as a regular expression, so ``..`` is any byte
and ``4[3-9]`` a range. Rules are tried in order, the first match wins, no match is ``UNKNOWN``.

Default patterns, each taken from that public list:

========  ==================================================  =============================================
kind      pattern                                             cards
========  ==================================================  =============================================
vitale    ``3B 75 13 00 00 4[3-9] 09 [EF]A 90 00``            carte Vitale 2 (with and without photo)
cps       ``3B AC 00 40 2A 00 12 25 00 64 80 .. .. .. 00 90 00``  CPS (contact), "Sesam Vitale card CPS"
cps       ``3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E``  CPS v3 read contactless
========  ==================================================  =============================================

Vitale 1 cards (``3F 65 25 ...``) are left out on purpose: they do not hold the Vitale 2 structure this driver
reads, so they are reported as unknown cards rather than failing half way. New card generations come with
new ATRs: add a rule (``AtrRules.parse`` reads the same ``kind<TAB>pattern`` lines from a config file)
rather than changing code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.cards import CardKind

DEFAULT_RULES_TEXT = """\
# kind    pattern (pcsc-tools smartcard_list.txt syntax)
vitale    3B 75 13 00 00 4[3-9] 09 [EF]A 90 00
cps       3B AC 00 40 2A 00 12 25 00 64 80 .. .. .. 00 90 00
cps       3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E
"""


def atr_text(atr: bytes) -> str:
    """The ATR the way the public lists and the logs write it: ``3B 75 13 ...``."""
    return " ".join(f"{b:02X}" for b in atr)


@dataclass(frozen=True, slots=True)
class AtrRule:
    kind: CardKind
    pattern: str

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"ATR pattern {self.pattern!r} is not a regular expression: {exc}") from None

    def matches(self, atr: bytes) -> bool:
        return re.fullmatch(self.pattern, atr_text(atr)) is not None


class AtrRules:
    """An ordered list of rules; the first that matches gives the kind."""

    def __init__(self, rules: Iterable[AtrRule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def parse(cls, text: str) -> AtrRules:
        """Rules from ``kind pattern`` lines (``#`` comments and blank lines ignored), e.g. a config file.

        Raises ValueError naming the line when a kind is unknown or a pattern is not a regular expression.
        """
        rules = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kind, _, pattern = line.partition(" ")
            try:
                rules.append(AtrRule(CardKind(kind.strip().lower()), " ".join(pattern.upper().split())))
            except ValueError as exc:
                raise ValueError(f"ATR rule line {number}: {exc}") from None
        return cls(rules)

    def classify(self, atr: bytes) -> CardKind:
        for rule in self.rules:
            if rule.matches(atr):
                return rule.kind
        return CardKind.UNKNOWN


DEFAULT_ATR_RULES = AtrRules.parse(DEFAULT_RULES_TEXT)
