"""Finding sensitive data in message text, for the desktop to highlight (pure functions, no database).

Built in: payment card numbers (13–19 digits, in one run or grouped as cards print them, accepted
only when the Luhn checksum holds) and US social security numbers (123-45-6789, without the
numbers the SSA never issues). Tenants add their own regular expressions.

Tenants' expressions run on our server, so a catastrophic one (`(a+)+$` on "aaaa…b") could pin a
worker: Python's `re` has no timeout. We refuse such expressions when they are saved instead:
at most 200 characters, no backreferences, and no repetition inside a repetition (the shape of
every exponential-backtracking pattern), and no alternation inside a repetition. What remains is
polynomial backtracking (several unbounded repeats side by side, `[0-9]+[0-9]+x`), bounded by capping the
text scanned (MAX_SCANNED_CHARS); it is a risk we accept and document rather than a timeout we lack.
"""

import re
import re._constants as sre_constants  # the parser's node names; stable since Python 3.11
import re._parser as sre_parser
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError

MAX_PATTERN_LENGTH = 200
MAX_SCANNED_CHARS = 10_000

# 13–19 digits written as cards are: in one run, in groups of four (4-4-4-4, up to 19 digits), or
# Amex/Diners style 4-6-5 / 4-6-4, with one kind of separator. Arbitrary digit runs with separators
# (phone numbers, dates, two SSNs side by side) are not candidates, even when the Luhn sum holds.
CARD_CANDIDATE = re.compile(
    r"(?<![\d-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{4,5})(?![\d-])"
)
US_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    label: str


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def find_sensitive_spans(text: str, tenant_patterns: Iterable[tuple[str, re.Pattern]] = ()) -> list[Span]:
    """Where `text` holds card numbers, SSNs or matches of the tenant's patterns.

    Returns non-overlapping spans sorted by start; where two overlap the earlier (then longer) wins.
    """
    text = text[:MAX_SCANNED_CHARS]
    found: list[Span] = []
    for match in CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found.append(Span(match.start(), match.end(), "Card number"))
    found += [Span(m.start(), m.end(), "US SSN") for m in US_SSN.finditer(text)]
    for name, pattern in tenant_patterns:
        found += [Span(m.start(), m.end(), name) for m in pattern.finditer(text) if m.end() > m.start()]
    spans: list[Span] = []
    for span in sorted(found, key=lambda s: (s.start, -s.end)):
        if not spans or span.start >= spans[-1].end:
            spans.append(span)
    return spans


_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT}


def _has_nested_repeat(parsed, inside_repeat: bool = False) -> bool:
    for op, arg in parsed:
        if op in _REPEATS:
            low, high, sub = arg
            repeats = high > 1
            if repeats and inside_repeat:
                return True
            if _has_nested_repeat(sub, inside_repeat or repeats):
                return True
        elif op is sre_constants.SUBPATTERN:
            if _has_nested_repeat(arg[-1], inside_repeat):
                return True
        elif op is sre_constants.BRANCH:
            # Alternatives inside a repetition, (a|ab)+, backtrack like nested repetition when
            # they can match the same text; we do not try to prove they cannot.
            if inside_repeat or any(_has_nested_repeat(branch, inside_repeat) for branch in arg[1]):
                return True
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            if _has_nested_repeat(arg[1], inside_repeat):
                return True
    return False


def _has_backreference(parsed) -> bool:
    for op, arg in parsed:
        if op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            return True
        children = []
        if op in _REPEATS:
            children = [arg[2]]
        elif op is sre_constants.SUBPATTERN:
            children = [arg[-1]]
        elif op is sre_constants.BRANCH:
            children = arg[1]
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            children = [arg[1]]
        if any(_has_backreference(child) for child in children):
            return True
    return False


def validate_safe_regex(value: str) -> None:
    """Refuse expressions that do not compile or could backtrack catastrophically (see module docstring)."""
    if len(value) > MAX_PATTERN_LENGTH:
        raise ValidationError(f"Keep the pattern under {MAX_PATTERN_LENGTH} characters.")
    try:
        re.compile(value)
        parsed = sre_parser.parse(value)
    except re.error as error:
        raise ValidationError(f"This is not a valid regular expression: {error}.") from None
    if _has_nested_repeat(parsed):
        raise ValidationError(
            "Repetition inside a repetition, like (a+)+ or (a|b+)*, can make matching take forever; "
            "rewrite it without nesting."
        )
    if _has_backreference(parsed):
        raise ValidationError("Backreferences (\\1) are not allowed in patterns.")
    if re.compile(value).match(""):
        raise ValidationError("This pattern matches empty text, so it would mark everything.")
