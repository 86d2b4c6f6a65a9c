"""A corpus of sentences with planted identifiers, for measuring PII masking.

The identifiers come from Faker (seeded), not from the masking code's own lists: names from
Faker's en_US census-based lists, addresses from its USPS-style generator (military ones
included), phone numbers in all its en_US formats, Luhn-valid card numbers of every scheme
it knows, IBANs of several countries. The sentence templates were written before the
detectors were measured against them, and hold look-alikes that are not identifiers
(order numbers, versions, prices, plain dates, tracking numbers, times). Used by
tests/test_workbench_pii.py and `python -m bench.workloads`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TEMPLATES = [
    "Please update the record for {NAME}; the new email is {EMAIL}.",
    "{NAME} called from {PHONE} about order #{ORDER}, shipped on {PLAIN_DATE}.",
    "Patient {NAME}, DOB {DOB}, MRN {MRN}, was seen for a follow-up.",
    "My SSN is {SSN} and my card number is {CARD}, please don't share them.",
    "Wire the refund of ${PRICE} to IBAN {IBAN} by Friday.",
    "Login from {IP} failed 3 times at {TIME}; app version {VERSION}.",
    "Send the package to {ADDRESS}, tracking {TRACKING}.",
    "The reviewer {NAME} said the new release {VERSION} is great.",
    "Dear {NAME}, your appointment on {PLAIN_DATE} at {TIME} is confirmed.",
    "Contact {NAME} at {PHONE} or {EMAIL} if the invoice {ORDER} is wrong.",
    "I was born on {DOB_LONG} and moved to {ADDRESS} last year.",
    "Card {CARD} was declined for the ${PRICE} purchase; reference {ORDER}.",
    "Our server at {IP} and the backup at {IP6} both run build {VERSION}.",
    "Medical record number {MRN} belongs to {NAME}, date of birth {DOB}.",
    "Ticket {ORDER}: {NAME} could not reach support on {PHONE}.",
    "Thanks, {NAME}! The chair arrived quickly and it is very comfortable.",
    "Refund {PRICE} dollars to {NAME}, IBAN {IBAN}, before {PLAIN_DATE}.",
    "The delivery for {NAME} goes to {ADDRESS}; call {PHONE} on arrival.",
    "Signed by {NAME} on {PLAIN_DATE}. Social security number {SSN}.",
    "Customer {NAME} wrote from {EMAIL}: terrible service, never again.",
]
LOOKALIKES = {
    "ORDER": lambda r: f"{r.randint(10000, 99999)}-{r.randint(100, 999)}",
    "PLAIN_DATE": lambda r: f"{r.randint(2020, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "PRICE": lambda r: f"{r.randint(5, 999)}.{r.randint(0, 99):02d}",
    "TIME": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
    "VERSION": lambda r: f"{r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 99)}",
    "TRACKING": lambda r: "1Z" + "".join(r.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(16)),
}
KIND_OF = {
    "NAME": "NAME", "EMAIL": "EMAIL", "PHONE": "PHONE", "SSN": "SSN", "CARD": "CREDIT_CARD", "IBAN": "IBAN",
    "IP": "IP_ADDRESS", "IP6": "IP_ADDRESS", "DOB": "DATE_OF_BIRTH", "DOB_LONG": "DATE_OF_BIRTH", "MRN": "MRN",
    "ADDRESS": "ADDRESS",
}  # fmt: skip


@dataclass(frozen=True)
class Planted:
    text: str
    spans: list[tuple[int, int, str]]  # start, end, kind


def _generators(seed: int) -> dict[str, Callable[[], str]]:
    from faker import Faker

    Faker.seed(seed)
    us = Faker("en_US")
    banks = [Faker(locale) for locale in ("en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES")]
    r = random.Random(seed)
    return {
        "NAME": lambda: re.sub(r" (?:MD|DDS|DVM|PhD|Jr\.|Sr\.|II|III|IV|V)$", "", us.name()),
        "EMAIL": us.email,
        "PHONE": us.phone_number,
        "SSN": us.ssn,
        "CARD": us.credit_card_number,
        "IBAN": lambda: r.choice(banks).iban(),
        "IP": us.ipv4_public,
        "IP6": us.ipv6,
        "DOB": lambda: us.date_of_birth(minimum_age=18, maximum_age=90).strftime(r.choice(["%m/%d/%Y", "%Y-%m-%d"])),
        "DOB_LONG": lambda: us.date_of_birth(minimum_age=18, maximum_age=90).strftime("%B %d, %Y"),
        "MRN": lambda: r.choice(["", "MR", "A"]) + str(r.randint(10**5, 10**8)),
        "ADDRESS": lambda: us.address().replace("\n", ", "),
        **{k: (lambda f=f: f(r)) for k, f in LOOKALIKES.items()},
    }


def corpus(size: int = 240, seed: int = 20_261_101) -> list[Planted]:
    """`size` sentences, every template used in turn."""
    make = _generators(seed)
    out: list[Planted] = []
    for n in range(size):
        template = TEMPLATES[n % len(TEMPLATES)]
        text, spans, at = "", [], 0
        for m in re.finditer(r"\{([A-Z_0-9]+)\}", template):
            text += template[at : m.start()]
            value = make[m.group(1)]()
            if m.group(1) in KIND_OF:
                spans.append((len(text), len(text) + len(value), KIND_OF[m.group(1)]))
            text += value
            at = m.end()
        text += template[at:]
        out.append(Planted(text, spans))
    return out


def score(items: list[Planted], find: Callable[[str], list[Any]]) -> dict[str, Any]:
    """Recall per kind (a planted identifier counts as found when 80% of its characters are
    masked) and precision (a masked span that touches no planted identifier is a false positive)."""
    found: dict[str, list[int]] = {}
    true_spans = false_spans = 0
    misses: list[tuple[str, str]] = []
    false_positives: list[tuple[str, str]] = []
    for item in items:
        predicted = [(s.start, s.end) for s in find(item.text)]
        for start, end, kind in item.spans:
            covered = sum(max(0, min(end, b) - max(start, a)) for a, b in predicted)
            hit = covered >= 0.8 * (end - start)
            found.setdefault(kind, [0, 0])[0] += hit
            found[kind][1] += 1
            if not hit:
                misses.append((kind, item.text[start:end]))
        for a, b in predicted:
            if any(a < end and b > start for start, end, _ in item.spans):
                true_spans += 1
            else:
                false_spans += 1
                false_positives.append((item.text[a:b], item.text))
    recall = {kind: hits / total for kind, (hits, total) in sorted(found.items())}
    structured = [k for k in recall if k not in ("NAME", "ADDRESS")]
    return {
        "sentences": len(items),
        "identifiers": sum(total for _, total in found.values()),
        "recall": recall,
        "recall_structured": sum(found[k][0] for k in structured) / sum(found[k][1] for k in structured),
        "recall_names_addresses": sum(found[k][0] for k in ("NAME", "ADDRESS"))
        / sum(found[k][1] for k in ("NAME", "ADDRESS")),
        "recall_all": sum(h for h, _ in found.values()) / sum(t for _, t in found.values()),
        "precision": true_spans / max(true_spans + false_spans, 1),
        "misses": misses,
        "false_positives": false_positives,
    }
