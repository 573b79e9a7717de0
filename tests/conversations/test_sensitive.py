"""Built-in and tenant-defined sensitive data detection, and the guard against catastrophic patterns."""

import re
import time

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from conversations.models import SensitiveDataPattern
from conversations.selectors import sensitive_spans
from conversations.sensitive import Span, find_sensitive_spans, luhn_valid, validate_safe_regex

VISA_TEST = "4111111111111111"


def spans_of(text, patterns=()):
    return [(text[s.start : s.end], s.label) for s in find_sensitive_spans(text, patterns)]


def test_luhn():
    assert luhn_valid(VISA_TEST) and luhn_valid("378282246310005") and luhn_valid("6011111111111117")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    "card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "3782 822463 10005"]
)
def test_card_numbers_are_found_with_or_without_separators(card):
    assert spans_of(f"my card is {card}, thanks") == [(card, "Card number")]


@pytest.mark.parametrize(
    "text",
    ["4111 1111 1111 1112", "order 123456789012", "call +1 555 010 0001", "12345678901234567890123", "2024-01-15"],
)
def test_numbers_that_are_not_cards_are_not_flagged(text):
    assert spans_of(text) == []


def test_ssn_found_and_impossible_ones_ignored():
    assert spans_of("SSN 123-45-6789.") == [("123-45-6789", "US SSN")]
    assert spans_of("SSN 123 45 6789") == [("123 45 6789", "US SSN")]
    assert spans_of("000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000 123-45 6789") == []


def test_tenant_patterns_and_overlaps():
    patterns = [("Order number", re.compile(r"ORD-\d{6}")), ("Digits", re.compile(r"\d{4}"))]
    assert spans_of("ORD-123456 and 4111 1111 1111 1111", patterns) == [
        ("ORD-123456", "Order number"),
        ("4111 1111 1111 1111", "Card number"),
    ]


@given(st.text(alphabet="0123456789 -abc", max_size=80))
def test_spans_never_overlap_and_stay_inside_the_text(text):
    spans = find_sensitive_spans(text, [("Digits", re.compile(r"\d{3}"))])
    assert spans == sorted(spans)
    for span in spans:
        assert 0 <= span.start < span.end <= len(text)
    for left, right in zip(spans, spans[1:]):
        assert left.end <= right.start


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("(a+)+$", "inside a repetition"),
        ("(a*)*b", "inside a repetition"),
        ("(\\w+\\s?)+$", "inside a repetition"),
        ("(a|aa)+$", "inside a repetition"),
        ("((ab)*c)+", "inside a repetition"),
        ("(a)\\1", "Backreferences"),
        ("[unclosed", "not a valid"),
        ("a*", "matches empty"),
        ("x" * 201, "under 200"),
    ],
)
def test_dangerous_or_broken_patterns_are_refused(pattern, complaint):
    with pytest.raises(ValidationError, match=re.escape(complaint)):
        validate_safe_regex(pattern)


@pytest.mark.parametrize(
    "pattern", [r"ORD-\d{6}", r"\b[A-Z]{2}\d{7}\b", r"[\w.]+@[\w.]+", r"(?:IBAN)?\s?[A-Z]{2}\d{2}"]
)
def test_ordinary_patterns_are_accepted_and_fast(pattern):
    validate_safe_regex(pattern)
    started = time.monotonic()
    find_sensitive_spans("a" * 10_000 + "!", [("p", re.compile(pattern))])
    assert time.monotonic() - started < 1


def test_the_model_validates_the_pattern_and_the_selector_uses_the_tenants_patterns(in_acme, globex):
    bad = SensitiveDataPattern(tenant=in_acme, name="Bad", pattern="(x+)+y")
    with pytest.raises(ValidationError):
        bad.full_clean()
    SensitiveDataPattern.objects.create(tenant=in_acme, name="Order number", pattern=r"ORD-\d{6}")
    SensitiveDataPattern.objects.create(tenant=in_acme, name="Retired", pattern=r"OLD-\d+", is_active=False)
    assert sensitive_spans("ORD-123456 OLD-1 4111111111111111") == [
        Span(0, 10, "Order number"),
        Span(17, 33, "Card number"),
    ]
