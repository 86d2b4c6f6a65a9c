"""PII masking, shared by sentiment analysis and the security scan.

Each detector finds spans of one kind; structured identifiers are checked beyond their shape
(Luhn for payment cards, ISO 7064 mod 97 for IBANs, `ipaddress` for IPs, the SSA's excluded
areas for SSNs, `phonenumbers` for international phone numbers), so an order number or a
version string is not masked. Dates of birth and medical record numbers are found by their
cue (DOB, born, MRN…); postal addresses by the USPS street-suffix list, city-state-ZIP and
military (APO/FPO/DPO) forms; person names by an honorific, a cue ("my name is", "patient",
"Dear") or a common given name followed by a capitalised word. Overlapping spans keep the
longest; each is replaced by its kind's placeholder (`[EMAIL]`, `[PHONE]`…).

No model and no network: the regexes and the given-name list ship in the package.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

KINDS = (
    "EMAIL",
    "PHONE",
    "SSN",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "MRN",
    "ADDRESS",
    "NAME",
)
STRUCTURED = ("EMAIL", "PHONE", "SSN", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "DATE_OF_BIRTH", "MRN")


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    kind: str

    @property
    def placeholder(self) -> str:
        return f"[{self.kind}]"


# --- structured identifiers ------------------------------------------------------------------

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)(\d{3})[- ](?!00)(\d{2})[- ](?!0000)(\d{4})(?![\d-])")
SSN_CUED = re.compile(r"\b(?:SSN|social security(?: number| no\.?)?)\s*(?:#|:|is)?\s*(\d{9})\b", re.IGNORECASE)
CARD = re.compile(r"(?<![\d-])[1-6](?:[ -]?\d){11,18}(?![\d-])")
MAESTRO_PREFIXES = ("50", "56", "57", "58", "6")  # the only schemes with 12-digit numbers
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# NANP numbers written with separators or parentheses, with an optional +1/001 and extension.
PHONE_NANP = re.compile(
    r"(?<![\w+])(?:(?:\+1|001)[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?!\d)"
)
PHONE_BARE = re.compile(r"(?<![\w+.-])(?:\+?1)?[2-9]\d{2}[2-9]\d{6}(?![\w.-])")
PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}(?!\d)")

MONTHS = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"  # noqa: E501
DATE = (
    r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)\d{2}|(?:19|20)\d{2}-\d{1,2}-\d{1,2}"
    rf"|{MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)\d{{2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)? {MONTHS}\.?,? (?:19|20)\d{{2}})"
)
DOB = re.compile(
    rf"\b(?:DOB|D\.O\.B\.?|born(?: on)?|birth ?date|date of birth|birthday)\b[:\s,]*(?:is\s+|was\s+|on\s+)?({DATE})",
    re.IGNORECASE,
)
MRN = re.compile(
    r"\b(?:MRN|medical record(?: number| no\.?| #)?|patient (?:ID|number))\b[:\s#]*(?:is\s+)?"
    r"((?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,14})\b",
    re.IGNORECASE,
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_ok(raw: str) -> bool:
    compact = raw.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _cards(text: str) -> Iterator[Span]:
    for m in CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        long_enough = len(digits) >= 13 or digits.startswith(MAESTRO_PREFIXES)
        if long_enough and len(digits) <= 19 and luhn_ok(digits):
            yield Span(m.start(), m.end(), "CREDIT_CARD")


def _ibans(text: str) -> Iterator[Span]:
    for m in IBAN.finditer(text):
        if iban_ok(m.group()):
            yield Span(m.start(), m.end(), "IBAN")


def _ips(text: str) -> Iterator[Span]:
    for pattern in (IPV4, IPV6):
        for m in pattern.finditer(text):
            raw = m.group()
            if pattern is IPV6 and raw.count(":") < 2:
                continue
            try:
                ipaddress.ip_address(raw)
            except ValueError:
                continue
            yield Span(m.start(), m.end(), "IP_ADDRESS")


def _phones(text: str) -> Iterator[Span]:
    for m in PHONE_NANP.finditer(text):
        yield Span(m.start(), m.end(), "PHONE")
    if "+" not in text and not PHONE_BARE.search(text):
        return
    import phonenumbers

    # Ten digits in a row are a phone number only where the number plan says it could be one
    # (an assigned area code and exchange), so most order and account numbers are left alone.
    for m in PHONE_BARE.finditer(text):
        with contextlib.suppress(phonenumbers.NumberParseException):
            if phonenumbers.is_valid_number(phonenumbers.parse(m.group(), "US")):
                yield Span(m.start(), m.end(), "PHONE")
    if "+" in text:
        for m in PHONE_INTL.finditer(text):
            try:
                number = phonenumbers.parse(m.group(), None)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_possible_number(number):
                yield Span(m.start(), m.end(), "PHONE")


def _group_spans(pattern: re.Pattern[str], kind: str, text: str, group: int = 1) -> Iterator[Span]:
    for m in pattern.finditer(text):
        yield Span(m.start(group), m.end(group), kind)


# --- postal addresses -------------------------------------------------------------------------

# USPS Publication 28, appendix C1: the common street suffixes and their abbreviations.
STREET_SUFFIXES = """Alley Aly Annex Anx Arcade Arc Avenue Ave Av Bayou Byu Beach Bch Bend Bnd Bluff Blf Bluffs Blfs
Bottom Btm Boulevard Blvd Branch Br Bridge Brg Brook Brk Brooks Burg Bg Burgs Bypass Byp Camp Cp Canyon Cyn Cape Cpe
Causeway Cswy Center Ctr Centers Circle Cir Circles Cliff Clf Cliffs Clfs Club Clb Common Cmn Corner Cor Corners Cors
Course Crse Court Ct Courts Cts Cove Cv Coves Creek Crk Crescent Cres Crest Crst Crossing Xing Crossroad Xrd Curve
Dale Dl Dam Dm Divide Dv Drive Dr Drives Drs Estate Est Estates Ests Expressway Expy Extension Ext Extensions Fall Falls
Fls Ferry Fry Field Fld Fields Flds Flat Flt Flats Flts Ford Frd Fords Forest Frst Forge Frg Forges Fork Frk Forks Frks
Fort Ft Freeway Fwy Garden Gdn Gardens Gdns Gateway Gtwy Glen Gln Glens Green Grn Greens Grove Grv Groves Harbor Hbr
Harbors Haven Hvn Heights Hts Highway Hwy Hill Hl Hills Hls Hollow Holw Inlet Inlt Island Is Islands Iss Isle Junction
Jct Junctions Key Ky Keys Knoll Knl Knolls Lake Lk Lakes Lks Land Landing Lndg Lane Ln Light Lgt Lights Loaf Lf Lock
Lck Locks Lodge Ldg Loop Mall Manor Mnr Manors Meadow Mdw Meadows Mdws Mews Mill Ml Mills Mission Msn Motorway Mtwy
Mount Mt Mountain Mtn Mountains Neck Nck Orchard Orch Oval Overpass Opas Park Parks Parkway Pkwy Parkways Pass Passage
Psge Path Pike Pine Pne Pines Pnes Place Pl Plain Pln Plains Plaza Plz Point Pt Points Port Prt Ports Prairie Pr Radial
Radl Ramp Ranch Rnch Rapid Rpd Rapids Rest Rst Ridge Rdg Ridges River Riv Road Rd Roads Rds Route Rte Row Rue Run
Shoal Shl Shoals Shore Shr Shores Skyway Skwy Spring Spg Springs Spur Spurs Square Sq Squares Station Sta Stravenue
Stra Stream Strm Street St Streets Summit Smt Terrace Ter Throughway Trwy Trace Trce Track Trak Trafficway Trfy Trail
Trl Trailer Tunnel Tunl Turnpike Tpke Underpass Upas Union Un Unions Valley Vly Valleys Vlys Viaduct Via Vw View
Views Vws Village Vlg Villages Ville Vl Vista Vis Walk Walks Wall Way Ways Well Wl Wells""".split()
STATES = """AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND
OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI AS MP MH FM PW AA AE AP""".split()
_SUFFIX = "|".join(sorted(STREET_SUFFIXES, key=len, reverse=True))
_STATE = "|".join(STATES)
_CITY_STATE_ZIP = rf"[A-Z][a-z]+(?: [A-Z][a-z]+){{0,3}},? (?:{_STATE}) \d{{5}}(?:-\d{{4}})?"
STREET = re.compile(
    rf"\b\d{{1,6}} (?:[NSEW]\.? |North |South |East |West )?(?:[A-Z][a-z]+\.? ){{1,3}}(?:{_SUFFIX})\b\.?"
    r"(?:,? (?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#) ?[A-Za-z0-9-]+)?"
    rf"(?:(?:,|\n)\s*{_CITY_STATE_ZIP})?"
)
MILITARY = re.compile(
    r"\b(?:(?:USNS|USNV|USS|USCGC) [A-Z][a-z]+|PSC \d{3,5}, Box \d{3,5}|Unit \d{3,5},? Box \d{3,5})"
    r"(?:,|\n)?\s*(?:APO|FPO|DPO) (?:AA|AE|AP) \d{5}\b"
)
CITY_STATE_ZIP = re.compile(rf"\b{_CITY_STATE_ZIP}\b")
PO_BOX = re.compile(r"\bP\.? ?O\.? Box \d{1,6}\b", re.IGNORECASE)


def _addresses(text: str) -> Iterator[Span]:
    for pattern in (STREET, MILITARY, CITY_STATE_ZIP, PO_BOX):
        for m in pattern.finditer(text):
            yield Span(m.start(), m.end(), "ADDRESS")


# --- person names -------------------------------------------------------------------------------


@cache
def given_names() -> frozenset[str]:
    raw = resources.files(__package__).joinpath("names.txt").read_text(encoding="utf-8")
    return frozenset(word for line in raw.splitlines() if not line.startswith("#") for word in line.split())


_CAP = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_TITLED = r"(?:[A-Z]\. )?" + _CAP
HONORIFIC = re.compile(rf"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Madam|Mme|Mister)\.? ((?:{_TITLED} ?){{1,3}})")
NAME_CUE = re.compile(
    r"\b(?:[Mm]y name is|[Nn]amed|[Cc]alled|[Pp]atient|[Dd]ear|[Ss]igned(?: by)?|[Cc]ontact|[Cc]ustomer|[Cc]lient"
    r"|[Ee]mployee|[Aa]pplicant|[Mm]ember|[Rr]eviewer|[Pp]hysician|[Nn]urse|[Aa]ttn:?|[Aa]ttention:?|[Rr]egards,"
    r"|[Ss]incerely,|[Tt]hanks,|[Ff]rom:|[Tt]o:|[Cc]c:|[Aa]uthor:?|[Oo]wner:?|[Nn]ame:)"
    rf"\s+((?:{_CAP})(?: {_TITLED}){{1,2}})"
)
CAPITAL_PAIR = re.compile(rf"\b({_CAP})((?: {_TITLED}){{1,2}})")
NAME_SUFFIX = re.compile(r"^,? (?:Jr\.|Sr\.|II|III|IV|MD|PhD|DDS|DVM)\b")
NOT_SURNAMES = frozenset(
    "The A An And Or But If In On At To Of For From With By As Is Was Are Were Be I We You He She They It This That "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August "
    "September October November December Street Avenue Road".split()
)


def _names(text: str) -> Iterator[Span]:
    for m in HONORIFIC.finditer(text):
        yield _with_suffix(text, m.start(), m.end(1))
    for m in NAME_CUE.finditer(text):
        yield _with_suffix(text, m.start(1), m.end(1))
    names = given_names()
    for m in CAPITAL_PAIR.finditer(text):
        if m.group(1) not in names:
            continue
        kept: list[str] = []
        for word in m.group(2).split():
            if word in NOT_SURNAMES:
                break
            kept.append(word)
        if kept:
            yield _with_suffix(text, m.start(1), m.start(2) + 1 + len(" ".join(kept)))


def _with_suffix(text: str, start: int, end: int) -> Span:
    while end > start and text[end - 1] == " ":
        end -= 1
    if m := NAME_SUFFIX.match(text[end : end + 8]):
        end += m.end()
    return Span(start, end, "NAME")


# --- all together -----------------------------------------------------------------------------------

DETECTORS = {
    "EMAIL": lambda t: _group_spans(EMAIL, "EMAIL", t, 0),
    "SSN": lambda t: [*_group_spans(SSN, "SSN", t, 0), *_group_spans(SSN_CUED, "SSN", t)],
    "CREDIT_CARD": _cards,
    "IBAN": _ibans,
    "IP_ADDRESS": _ips,
    "DATE_OF_BIRTH": lambda t: _group_spans(DOB, "DATE_OF_BIRTH", t),
    "MRN": lambda t: _group_spans(MRN, "MRN", t),
    "PHONE": _phones,
    "ADDRESS": _addresses,
    "NAME": _names,
}
# Where two kinds claim the same characters and are as long, the earlier kind wins.
PRECEDENCE = {kind: n for n, kind in enumerate(("EMAIL", "IBAN", "CREDIT_CARD", "SSN", "MRN", "DATE_OF_BIRTH",
                                                  "IP_ADDRESS", "PHONE", "ADDRESS", "NAME"))}  # fmt: skip


def find(text: str, kinds: Iterable[str] = KINDS) -> list[Span]:
    """The PII spans in `text`, without overlaps, in order."""
    found = [span for kind in kinds for span in DETECTORS[kind](text) if span.end > span.start]
    found.sort(key=lambda s: (-(s.end - s.start), PRECEDENCE[s.kind], s.start))
    kept: list[Span] = []
    taken: list[tuple[int, int]] = []
    for span in found:
        if all(span.end <= a or span.start >= b for a, b in taken):
            kept.append(span)
            taken.append((span.start, span.end))
    return sorted(kept, key=lambda s: s.start)


def mask(text: str, spans: Iterable[Span] | None = None) -> tuple[str, list[Span]]:
    """`text` with every PII span replaced by its placeholder, and the spans."""
    spans = find(text) if spans is None else list(spans)
    if not spans:
        return text, []
    out: list[str] = []
    at = 0
    for span in spans:
        out.append(text[at : span.start])
        out.append(span.placeholder)
        at = span.end
    out.append(text[at:])
    return "".join(out), spans
