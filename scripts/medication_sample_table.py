"""Convert drug-interaction-mcp 0.1.0 (PyPI, MIT, by Pillright) into the CSV files
`conveyor medication load-interactions` reads: conveyor/packs/medication/data/.

    pip download drug-interaction-mcp==0.1.0 --no-deps -d /tmp/dim
    unzip -o /tmp/dim/drug_interaction_mcp-0.1.0-py3-none-any.whl -d /tmp/dim/pkg
    python scripts/medication_sample_table.py /tmp/dim/pkg

Each source interaction names two sides, each a tuple of names: its first name is the
ingredient (or drug class), and the rest are either brands that stand for that name alone
(written as synonyms) or other drugs the source matches on that side (a class's members,
written as pairs of their own). Severities map danger -> major, warning -> moderate,
caution -> minor; where two source entries give the same pair, the more severe one is kept.
"""

from __future__ import annotations

import csv
import itertools
import sys
from collections import defaultdict
from pathlib import Path

from conveyor.interactions import SEVERITIES, normalise, parse_table

SEVERITY = {"danger": "major", "warning": "moderate", "caution": "minor"}
OUT = Path(__file__).resolve().parent.parent / "conveyor" / "packs" / "medication" / "data"
VERSION = "drug-interaction-mcp 0.1.0"


def main(package_dir: str) -> None:
    sys.path.insert(0, package_dir)
    from drug_interaction_mcp.interactions import INTERACTIONS  # type: ignore[import-not-found]

    canonical = {normalise(side[0]) for i in INTERACTIONS for side in (i.drug_a, i.drug_b)}
    stands_for: dict[str, set[str]] = defaultdict(set)
    for i in INTERACTIONS:
        for side in (i.drug_a, i.drug_b):
            for alias in side[1:]:
                stands_for[normalise(alias)].add(normalise(side[0]))
    synonyms = {a: next(iter(c)) for a, c in stands_for.items() if len(c) == 1 and a not in canonical}

    def ingredients(side: tuple[str, ...]) -> list[str]:
        return sorted({synonyms.get(normalise(n), normalise(n)) for n in side})

    pairs: dict[tuple[str, str], dict[str, str]] = {}
    for i in INTERACTIONS:
        severity = SEVERITY[i.severity.value]
        for a, b in itertools.product(ingredients(i.drug_a), ingredients(i.drug_b)):
            if a == b:
                continue
            key = (min(a, b), max(a, b))
            kept = pairs.get(key)
            if kept is not None and SEVERITIES.index(kept["severity"]) <= SEVERITIES.index(severity):
                continue
            pairs[key] = {
                "drug_a": key[0], "drug_b": key[1], "severity": severity, "description": i.description,
                "mechanism": i.mechanism, "management": i.recommendation, "source": i.source,
                "source_version": VERSION,
            }  # fmt: skip
    in_pairs = {n for key in pairs for n in key}
    synonyms = {a: c for a, c in synonyms.items() if a not in in_pairs}
    OUT.mkdir(parents=True, exist_ok=True)
    columns = ["drug_a", "drug_b", "severity", "description", "mechanism", "management", "source", "source_version"]
    with (OUT / "interactions.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(pairs[k] for k in sorted(pairs))
    with (OUT / "synonyms.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["name", "ingredient"])
        writer.writerows(sorted(synonyms.items()))
    parsed = parse_table((OUT / "interactions.csv").read_bytes(), (OUT / "synonyms.csv").read_bytes())
    sys.stdout.write(
        f"{len(INTERACTIONS)} source interactions -> {len(parsed.pairs)} pairs, {len(parsed.synonyms)} synonyms\n"
    )


if __name__ == "__main__":
    main(sys.argv[1])
