"""Sentiment of English texts with VADER (Hutto and Gilbert, ICWSM 2014), and keywords.

VADER is a lexicon and rules shipped inside the `vadersentiment` wheel: no model download,
no GPU, about 20,000 short texts a second on one core. Its `compound` score in [-1, 1] is the
score; |compound| < 0.05 is neutral (VADER's documented threshold). Confidence is the share
of the text's sentiment-bearing weight on the side of the label (`pos`, `neg` or `neu`).

Measured on the UCI sentiment-labelled sentences shipped in tests/data (restaurant reviews,
binary labels): accuracy about 0.78 (README, bench.workloads).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

LANGUAGES = ("en",)  # VADER's lexicon is English only
NEUTRAL_BELOW = 0.05
MAX_KEYWORDS = 5


@dataclass(frozen=True, slots=True)
class Sentiment:
    label: str
    score: float
    confidence: float


@cache
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def warm() -> None:
    """Load the lexicon (about 0.1 s) before the first text is timed."""
    _analyzer()


def classify(score: float) -> str:
    if score >= NEUTRAL_BELOW:
        return "positive"
    if score <= -NEUTRAL_BELOW:
        return "negative"
    return "neutral"


def analyze(text: str) -> Sentiment:
    scores = _analyzer().polarity_scores(text)
    compound = float(scores["compound"])
    label = classify(compound)
    side = {"positive": "pos", "negative": "neg", "neutral": "neu"}[label]
    confidence = max(float(scores[side]), abs(compound)) if label != "neutral" else float(scores["neu"])
    return Sentiment(label, round(compound, 4), round(min(max(confidence, 0.0), 1.0), 4))


# --- keywords --------------------------------------------------------------------------------------

WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been before being below
    between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each even
    ever every few for from further get got had hadn't has hasn't have haven't having he he'd he'll he's her here
    here's hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't it it's its itself
    just let's like made make many may me might more most much must mustn't my myself never no nor not now of off on
    once one only or other ought our ours ourselves out over own really same shan't she she'd she'll she's should
    shouldn't so some still such than that that's the their theirs them themselves then there there's these they
    they'd they'll they're they've thing things this those though through to too under until up upon us very was
    wasn't way we we'd we'll we're we've well were weren't what what's when when's where where's which while who
    who's whom why why's will with won't would wouldn't yet you you'd you'll you're you've your yours yourself
    yourselves""".split()
)


def keywords(text: str, limit: int = MAX_KEYWORDS) -> list[str]:
    """The most frequent content words (stop words and placeholders left out), ties in order of
    first appearance; enough to index or tag a text, with nothing to download."""
    words = [w.lower().strip("'-") for w in WORD.findall(re.sub(r"\[[A-Z_]+\]", " ", text))]
    counts = Counter(w for w in words if w not in STOP_WORDS and len(w) > 2)
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], first[kv[0]]))[:limit]]
