"""Security scan of one file: PII and PHI, secrets, dangerous content, file type against
extension, encoding problems; a verdict per compliance framework.

`quick` reads the first SAMPLE_BYTES and the file's metadata; `full` streams the whole file
in blocks of BLOCK_BYTES (split at a line end, so a match never straddles two blocks).
Findings carry a rule id, severity, category, line and column (or a byte offset), an excerpt
in which the finding itself and any PII around it are masked, and the frameworks concerned.
The signatures are this project's own (listed below); no antivirus database is claimed.
"""

from __future__ import annotations

import bisect
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conveyor.packs.workbench import pii, prefilter
from conveyor.packs.workbench.prefilter import Prefilter

FRAMEWORKS = ("HIPAA", "GDPR", "PCI-DSS", "SOC 2")
SAMPLE_BYTES = 1024 * 1024
BLOCK_BYTES = 4 * 1024 * 1024
MAX_FINDINGS = 1000
EXCERPT_CHARS = 32
SEVERITIES = ("info", "low", "medium", "high", "critical")
FAILS_FROM = SEVERITIES.index("medium")


@dataclass
class Finding:
    rule: str
    severity: str
    category: str
    message: str
    frameworks: list[str]
    line: int | None = None
    column: int | None = None
    offset: int | None = None
    excerpt: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# --- rules -------------------------------------------------------------------------------------

PII_RULES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # kind: (category, severity, frameworks)
    "EMAIL": ("pii", "medium", ("HIPAA", "GDPR")),
    "PHONE": ("pii", "medium", ("HIPAA", "GDPR")),
    "SSN": ("pii", "high", ("HIPAA", "GDPR", "SOC 2")),
    "CREDIT_CARD": ("pii", "critical", ("PCI-DSS", "GDPR")),
    "IBAN": ("pii", "high", ("GDPR", "PCI-DSS")),
    "IP_ADDRESS": ("pii", "low", ("HIPAA", "GDPR")),
    "DATE_OF_BIRTH": ("phi", "medium", ("HIPAA", "GDPR")),
    "MRN": ("phi", "high", ("HIPAA", "GDPR")),
    "ADDRESS": ("pii", "medium", ("HIPAA", "GDPR")),
    "NAME": ("pii", "medium", ("HIPAA", "GDPR")),
}
SECRET_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "secret.aws_access_key": (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "critical"),
    "secret.aws_secret_key": (
        re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}\b"),
        "critical",
    ),
    "secret.github_token": (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), "critical"),
    "secret.slack_token": (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"), "high"),
    "secret.stripe_key": (re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}\b"), "critical"),
    "secret.google_api_key": (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), "high"),
    "secret.private_key": (
        re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY"),
        "critical",
    ),
    "secret.jwt": (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "high"),
    "secret.url_credentials": (re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]{1,64}:[^/\s@]{3,64}@[\w.-]+"), "high"),
    "secret.password_assignment": (
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token)\b\s*[=:]\s*['\"]?[^\s'\",;]{8,}"
        ),
        "high",
    ),
}
SECRET_FRAMEWORKS = ["SOC 2", "PCI-DSS"]
DANGER_RULES: dict[str, tuple[re.Pattern[str], str, str]] = {
    "danger.eicar_test_file": (
        re.compile(r"X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H\+H\*"),
        "critical",
        "the EICAR anti-virus test signature",
    ),
    "danger.script_tag": (re.compile(r"(?i)<script\b"), "high", "an HTML script element"),
    "danger.javascript_url": (re.compile(r"(?i)\bjavascript:"), "medium", "a javascript: URL"),
    "danger.php_eval": (
        re.compile(r"(?i)\beval\s*\(\s*(?:base64_decode|gzinflate|str_rot13)\s*\(|\$_(?:POST|GET|REQUEST)\s*\["),
        "critical",
        "PHP code that evaluates request data (a web shell)",
    ),
    "danger.powershell_encoded": (
        re.compile(r"(?i)\bpowershell(?:\.exe)?\b[^\n]{0,80}\s-(?:e|en|enc|encodedcommand)\s+[A-Za-z0-9+/=]{20,}"),
        "critical",
        "an encoded PowerShell command",
    ),
    "danger.spreadsheet_formula": (
        re.compile(r"(?:^|[,;\t])\s*\"?[=+@-]\s*(?:[A-Za-z][A-Za-z0-9.]*\s*\(|cmd\s*\||[A-Za-z]+\|)", re.MULTILINE),
        "high",
        "a cell that a spreadsheet would run as a formula (CSV injection)",
    ),
}
DANGER_FRAMEWORKS = ["SOC 2"]
SIGNATURES: list[tuple[bytes, str]] = [
    (b"MZ", "windows executable"),
    (b"\x7fELF", "ELF executable"),
    (b"\xca\xfe\xba\xbe", "Mach-O or Java class"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"#!", "script"),
    (b"%PDF", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"\x89PNG", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"),
    (b"PAR1", "parquet"),
    (b"\xd0\xcf\x11\xe0", "ole2 (legacy office)"),
]
EXPECTED_KINDS = {
    ".csv": {"text"}, ".tsv": {"text"}, ".txt": {"text"}, ".json": {"text"}, ".jsonl": {"text"}, ".log": {"text"},
    ".md": {"text"}, ".xml": {"text"}, ".xlsx": {"zip"}, ".docx": {"zip"}, ".zip": {"zip"}, ".pdf": {"pdf"},
    ".parquet": {"parquet"}, ".png": {"png"}, ".jpg": {"jpeg"}, ".jpeg": {"jpeg"}, ".gif": {"gif"}, ".gz": {"gzip"},
    ".xls": {"ole2 (legacy office)"}, ".doc": {"ole2 (legacy office)"},
}  # fmt: skip
EXECUTABLE = {"windows executable", "ELF executable", "Mach-O or Java class", "Mach-O executable", "script"}


def sniff(head: bytes) -> str:
    for magic, kind in SIGNATURES:
        if head.startswith(magic):
            return kind
    return "text" if b"\x00" not in head[:8192] else "binary"


# --- the scan --------------------------------------------------------------------------------------


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    dropped: int = 0
    bytes_scanned: int = 0

    def add(self, finding: Finding) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)
        else:
            self.dropped += 1

    def verdicts(self, frameworks: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for framework in frameworks:
            behind = [
                n
                for n, f in enumerate(self.findings)
                if framework in f.frameworks and SEVERITIES.index(f.severity) >= FAILS_FROM
            ]
            out[framework] = {"verdict": "fail" if behind else "pass", "findings": behind}
        return out


def excerpt(text: str, start: int, end: int, label: str) -> str:
    left = text[max(0, start - EXCERPT_CHARS) : start].rsplit("\n", 1)[-1]
    right = text[end : end + EXCERPT_CHARS].split("\n", 1)[0]
    masked_left, _ = pii.mask(left)
    masked_right, _ = pii.mask(right)
    return f"{masked_left}[{label}]{masked_right}"


def check_file_type(path: Path, head: bytes, report: Report) -> str:
    kind = sniff(head)
    expected = EXPECTED_KINDS.get(path.suffix.lower())
    if kind in EXECUTABLE:
        report.add(
            Finding("filetype.executable", "critical", "file_type", f"the content is a {kind}", ["SOC 2"], offset=0)
        )
    if expected is not None and kind not in expected:
        report.add(
            Finding(
                "filetype.extension_mismatch",
                "high",
                "file_type",
                f"the extension says {path.suffix.lower()} but the content is {kind}",
                ["SOC 2"],
                offset=0,
            )
        )
    return kind


def check_xlsx(path: Path, report: Report) -> None:
    """Formulas and macros inside a workbook (a zip of XML parts)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                if name.lower().endswith("vbaproject.bin"):
                    report.add(Finding("danger.office_macro", "critical", "dangerous_content",
                                       f"a VBA macro project ({name})", DANGER_FRAMEWORKS))  # fmt: skip
                if name.startswith("xl/externalLinks/"):
                    report.add(Finding("danger.external_link", "medium", "dangerous_content",
                                       f"a link to another workbook ({name})", DANGER_FRAMEWORKS))  # fmt: skip
                if name.startswith("xl/worksheets/") and name.endswith(".xml") and info.file_size < 256 * 1024 * 1024:
                    xml = archive.read(info).decode("utf-8", errors="replace")
                    for m in re.finditer(r'<c r="([A-Z]+\d+)"[^>]*>\s*<f[^>]*>([^<]{0,200})', xml):
                        formula = m.group(2)
                        severity = (
                            "critical" if re.search(r"(?i)\b(?:cmd|dde|webservice|call|exec)\b", formula) else "high"
                        )
                        report.add(
                            Finding(
                                "danger.spreadsheet_formula",
                                severity,
                                "dangerous_content",
                                f"a formula in cell {m.group(1)} of {name.rsplit('/', 1)[-1]}",
                                DANGER_FRAMEWORKS,
                                excerpt=pii.mask("=" + formula[:EXCERPT_CHARS])[0],
                            )
                        )
    except zipfile.BadZipFile:
        report.add(Finding("encoding.corrupt_archive", "medium", "encoding", "the workbook is not a readable zip",
                           ["SOC 2"], offset=0))  # fmt: skip


def blocks(path: Path, limit: int | None, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) blocks ending at a line end (the last may not), up to `limit` bytes."""
    offset = 0
    carry = b""
    with path.open("rb") as f:
        while limit is None or offset + len(carry) < limit:
            want = block_bytes if limit is None else min(block_bytes, limit - offset - len(carry))
            data = f.read(want)
            if not data:
                break
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0 or len(data) < block_bytes // 2:
                cut = len(data)
            block, carry = data[:cut], data[cut:]
            yield offset, block
            offset += len(block)
    if carry:
        yield offset, carry


def scan_text(
    block: bytes, offset: int, first_line: int, report: Report, is_text: bool, fast: Prefilter | None = None
) -> int:
    """Findings in one block; the number of lines it holds. With `fast`, the rules run only on
    the lines the prefilter names (the same findings: see prefilter.py)."""
    try:
        text = block.decode("utf-8")
        ascii_block = block.isascii()
    except UnicodeDecodeError as exc:
        if is_text:
            report.add(Finding("encoding.invalid_utf8", "low", "encoding", "bytes that are not UTF-8", ["SOC 2"],
                               offset=offset + exc.start))  # fmt: skip
        text = block.decode("utf-8", errors="replace")
        ascii_block = False
    if is_text and "\x00" in text:
        report.add(Finding("encoding.nul_bytes", "medium", "encoding", "NUL bytes in a text file", ["SOC 2"],
                           offset=offset + block.index(b"\x00")))  # fmt: skip
    newlines = [m.start() for m in re.finditer("\n", text)] if len(text) < 64 * 1024 * 1024 else []

    def where(at: int) -> tuple[int, int]:
        n = bisect.bisect_left(newlines, at)
        start = newlines[n - 1] + 1 if n else 0
        return first_line + n, at - start + 1

    def found(rule: str, severity: str, category: str, message: str, frameworks: list[str], s: int, e: int,
              label: str) -> None:  # fmt: skip
        line, column = where(s)
        report.add(Finding(rule, severity, category, message, frameworks, line=line, column=column,
                           excerpt=excerpt(text, s, e, label)))  # fmt: skip

    if fast is not None and (newlines or len(text) < 64 * 1024 * 1024):
        lines = fast.windows(block if ascii_block else prefilter.as_bytes(text), newlines)
        ends = [*newlines, len(text) - 1]
        windows = [(ends[a - 1] + 1 if a else 0, ends[b] + 1) for a, b in lines]
    else:
        windows = [(0, len(text))]
    pieces = [(start, text[start:end]) for start, end in windows]

    for start, piece in pieces:
        for span in pii.find(piece):
            category, severity, frameworks = PII_RULES[span.kind]
            found(f"{category}.{span.kind.lower()}", severity, category, f"a {span.kind.lower().replace('_', ' ')}",
                  list(frameworks), start + span.start, start + span.end, span.kind)  # fmt: skip
    for rule, (pattern, severity) in SECRET_RULES.items():
        for start, piece in pieces:
            for m in pattern.finditer(piece):
                found(rule, severity, "secret", rule.split(".", 1)[1].replace("_", " "), SECRET_FRAMEWORKS,
                      start + m.start(), start + m.end(), "SECRET")  # fmt: skip
    for rule, (pattern, severity, message) in DANGER_RULES.items():
        for start, piece in pieces:
            for m in pattern.finditer(piece):
                found(rule, severity, "dangerous_content", message, DANGER_FRAMEWORKS, start + m.start(),
                      start + m.end(), "CONTENT")  # fmt: skip
    return len(newlines)


def rule_patterns() -> list[re.Pattern[str]]:
    """Every regex the rules run over text: PII's (each module-level pattern of pii.py, so a
    new detector is covered without being listed here), the secrets' and the dangers'."""
    return [
        *(value for value in vars(pii).values() if isinstance(value, re.Pattern)),
        *(pattern for pattern, _ in SECRET_RULES.values()),
        *(pattern for pattern, _, _ in DANGER_RULES.values()),
    ]


_PREFILTER: list[Prefilter | None] = []  # built once per process
_BUILDING = threading.Lock()  # two scans starting together compile it once


def rules_prefilter(cache_dir: Path | None = None) -> Prefilter | None:
    """The prefilter of the rules, compiled once per process or loaded from `cache_dir`
    (None where Hyperscan is missing)."""
    with _BUILDING:
        if not _PREFILTER:
            _PREFILTER.append(Prefilter.build(rule_patterns(), cache_dir))
    return _PREFILTER[0]


FAST_FROM_BYTES = 8 * 1024 * 1024  # below this, compiling the prefilter costs more than it saves


def scan_file(
    path: Path,
    *,
    full: bool,
    frameworks: list[str],
    on_block: Callable[[int], None] = lambda scanned: None,
    fast: bool | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """`fast`: through the prefilter (True), the plain path (False), or the prefilter where
    it is compiled already or the scan reads FAST_FROM_BYTES or more (None)."""
    report = Report()
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8192)
    kind = check_file_type(path, head, report)
    if kind == "zip":
        check_xlsx(path, report)
    is_text = kind == "text"
    if is_text and head.startswith(b"\xef\xbb\xbf"):
        report.add(Finding("encoding.bom", "info", "encoding", "a UTF-8 byte order mark", ["SOC 2"], offset=0))
    line = 1
    planned = size if full else min(size, SAMPLE_BYTES)
    if fast is None:
        fast = planned >= FAST_FROM_BYTES or bool(_PREFILTER)
    prefilter_ = rules_prefilter(cache_dir) if fast else None
    if is_text or full:
        for offset, block in blocks(path, None if full else SAMPLE_BYTES):
            line += scan_text(block, offset, line, report, is_text, prefilter_)
            report.bytes_scanned = offset + len(block)
            on_block(report.bytes_scanned)
    return {
        "fileType": kind,
        "fileSize": size,
        "bytesScanned": report.bytes_scanned,
        "findings": [f.to_json() for f in report.findings],
        "findingsDropped": report.dropped,
        "frameworks": report.verdicts(frameworks),
        "signatures": "project rules (PII, secrets, dangerous content, file type, encoding); no antivirus database",
    }
