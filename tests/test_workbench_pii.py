"""PII masking (conveyor.packs.workbench.pii) on a planted corpus it was not written from
(bench.pii_corpus: Faker's identifiers in sentences with look-alikes), and on look-alikes
that must be left alone."""

from __future__ import annotations

import pytest

from bench.pii_corpus import corpus, score
from conveyor.packs.workbench import pii


@pytest.mark.parametrize("seed", [20_261_101, 99])
def test_planted_identifiers_are_found_with_few_false_alarms(seed: int) -> None:
    figures = score(corpus(240, seed=seed), pii.find)
    assert figures["sentences"] >= 200
    assert set(figures["recall"]) == set(pii.KINDS)
    assert figures["recall_structured"] >= 0.98, figures["misses"]
    assert figures["recall_names_addresses"] >= 0.90, figures["misses"]
    assert figures["precision"] >= 0.95, figures["false_positives"]


@pytest.mark.parametrize(
    "text",
    [
        "Order 48213-552 shipped on 2024-05-01 at 10:30, version 2.3.1, total $1,204.50.",
        "Card 4111 1111 1111 1112 fails the Luhn check.",
        "IBAN GB82WEST12345698765433 has a wrong check sum.",
        "SSN-like 000-12-3456 and 666-12-3456 are never issued.",
        "Tracking 1Z999AA10123456784, room 404, build 10.0.19045.",
        "The Grand Canyon and New York are places, not people.",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert pii.mask(text) == (text, [])


def test_each_kind_gets_its_placeholder() -> None:
    text = (
        "Dr. Jane Roe (jane@example.com, +44 20 7946 0958) SSN 123-45-6789, card 4111-1111-1111-1111, "
        "IBAN DE89 3704 0044 0532 0130 00, from 10.0.0.7, DOB: 1980-02-29, MRN A1234567, "
        "lives at 12 Oak Street, Springfield, IL 62704."
    )
    masked, spans = pii.mask(text)
    assert {s.kind for s in spans} == set(pii.KINDS)
    assert masked == (
        "[NAME] ([EMAIL], [PHONE]) SSN [SSN], card [CREDIT_CARD], IBAN [IBAN], from [IP_ADDRESS], "
        "DOB: [DATE_OF_BIRTH], MRN [MRN], lives at [ADDRESS]."
    )
