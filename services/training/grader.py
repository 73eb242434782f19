"""The keyword auto-grader (no floor: a wrong answer can score 0).

A keyword matches when the lower-cased response contains it, or one of its synonyms, as a
substring. base = round(100 * matched / total); +15 when the response is longer than 100
characters; clamped to 0-100.
"""

from __future__ import annotations

import math

SYNONYMS: dict[str, tuple[str, ...]] = {
    "dns": ("domain name system", "name server", "resolver"),
    "tcp": ("transmission control protocol",),
    "ip": ("internet protocol",),
    "http": ("hypertext transfer protocol", "https"),
    "get": ("retrieve", "fetch"),
    "post": ("submit", "create"),
    "tld": ("top-level domain", "top level domain"),
    "root": ("root server", "root zone"),
    "authoritative": ("authoritative server", "authority"),
    "subnet": ("subnetwork", "network mask", "netmask"),
    "cidr": ("classless inter-domain routing", "prefix length"),
    "broadcast": ("broadcast address",),
    "idempotent": ("same result", "repeatable"),
}
LONG_ANSWER_CHARS = 100
LONG_ANSWER_BONUS = 15


def js_round(x: float) -> int:
    """JavaScript Math.round (halves round up), so scores match the API's long-standing values."""
    return math.floor(x + 0.5)


def grade(response: str, keywords: tuple[str, ...] | list[str]) -> tuple[int, list[str]]:
    """(score 0-100, matched keywords)."""
    text = response.lower()
    matched = []
    for keyword in keywords:
        kw = keyword.lower()
        if kw in text or any(s in text for s in SYNONYMS.get(kw, ())):
            matched.append(keyword)
    total = len(keywords)
    base = js_round(100 * len(matched) / total) if total else 0
    bonus = LONG_ANSWER_BONUS if len(response) > LONG_ANSWER_CHARS else 0
    return max(0, min(100, base + bonus)), matched


def feedback(matched: list[str], total: int) -> str:
    return f"{len(matched)}/{total} concepts: {', '.join(matched)}"
