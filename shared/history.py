"""A learner's round history in one compact string (`Keys.learner_history`): the encoding.

The history answers `GET /api/v1/training/history` with entries
`{round, n, ts, trained, scores, avg, ms}`, newest first, capped (`TRAINING_HISTORY_LIMIT`,
default 100). Kept as one JSON string per entry in a list it cost ~16 KB per learner; here each
entry is a record of a dozen bytes in one string value, which the commit script
(shared/lua/commit_rounds.lua) extends and trims in the same atomic step as the round's state.

Every byte is below 128 (ASCII), so the fleet's clients, which decode replies as UTF-8, read and
write it unchanged: no second, binary client is needed. Integers are varints of 6 bits a byte
(bit 6 set: more bytes follow), signed ones zigzag-mapped first.

    blob   = 'h' varint(H) varint(count) varint(len(anchor)) anchor record*   (newest first)
    record = varint(len(rest)) rest,   rest = zigzag(idgap) (entry JSON | packed body)

- H is the newest record's round id and `idgap` a record's id minus the next older one's (the
  script knows the ids; the oldest record's gap is never used). `count` records follow: the
  script keeps up to a tenth more than the history length, so that it walks the records to cut
  them only once in that many commits; readers stop at the history length.
- The anchor (built here, written by the script as given) holds the newest packed record's `ts`,
  `avg` (in hundredths) and `n`, and the topic keys that packed records name by their position
  (the learner's own list, kept in its state as `hk`, only ever appended to, so older records
  stay decodable). A packed body holds its values minus the next older packed record's: small
  numbers, mostly one byte.
- An entry this encoding cannot reproduce exactly (another shape, a value off the grid) is kept
  as its JSON object: the script accepts both, and decoding gives back the same entry.

Packed body: b0 = min(m, 15)·4 + 2·(trained == list(scores)) + (n step == 1), where m is the
number of scores; then varint(m) if m ≥ 15; zigzag(n step) unless it is 1; varint(2k + 1) and
k topic positions unless trained == list(scores) (varint(2k) when trained is the first k score
keys); zigzag(ts step); zigzag(avg step, hundredths); varint(ms in µs); m × (topic position,
score: one byte 0-126, or 127 and zigzag(score)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = "h"
PACKED_KEYS = ("n", "ts", "trained", "scores", "avg", "ms")
MAX_SMALL_M = 15
SCORE_ESCAPE = 127


def varint(v: int) -> str:
    """An unsigned integer, 6 bits a byte, low bits first; every byte below 128."""
    if v < 0:
        raise ValueError("varint of a negative number")
    out = []
    while v >= 64:
        out.append(chr(64 | (v & 63)))
        v >>= 6
    out.append(chr(v))
    return "".join(out)


def zigzag(v: int) -> str:
    return varint(v * 2 if v >= 0 else -v * 2 - 1)


def read_varint(s: str, pos: int) -> tuple[int, int]:
    """(value, position after it); IndexError when `s` ends inside it."""
    v = 0
    shift = 0
    while True:
        b = ord(s[pos])
        pos += 1
        if b & 64:
            v |= (b & 63) << shift
            shift += 6
        else:
            return v | (b << shift), pos


def read_zigzag(s: str, pos: int) -> tuple[int, int]:
    u, pos = read_varint(s, pos)
    return (u >> 1) if not u & 1 else -((u + 1) >> 1), pos


@dataclass(slots=True)
class Anchor:
    """The values the next packed record is a step from: the newest packed record's `ts`,
    `avg` (hundredths) and `n`, and the topic keys packed records refer to by position."""

    ts: int = 0
    avg: int = 0
    n: int = 0
    topics: list[str] = field(default_factory=list)

    def encode(self) -> str:
        return zigzag(self.ts) + zigzag(self.avg) + varint(self.n) + ",".join(self.topics)

    @classmethod
    def decode(cls, raw: str) -> Anchor:
        if not raw:  # no packed record yet
            return cls()
        ts, pos = read_zigzag(raw, 0)
        avg, pos = read_zigzag(raw, pos)
        n, pos = read_varint(raw, pos)
        rest = raw[pos:]
        return cls(ts, avg, n, rest.split(",") if rest else [])


def _hundredths(x: Any) -> int | None:
    if type(x) is not float:
        return None
    k = round(x * 100)
    return k if k / 100 == x else None


def _micros(x: Any) -> int | None:
    if type(x) is not float or x < 0:
        return None
    k = round(x * 1000)
    return k if k / 1000 == x else None


def _packable(entry: dict[str, Any]) -> bool:
    if tuple(entry) != PACKED_KEYS:
        return False
    trained, scores = entry["trained"], entry["scores"]
    return (
        type(entry["n"]) is int
        and type(entry["ts"]) is int
        and isinstance(trained, list)
        and all(type(t) is str and t in scores for t in trained)
        and len(set(trained)) == len(trained)
        and isinstance(scores, dict)
        and all(type(s) is int and "," not in t and t for t, s in scores.items())
        and _hundredths(entry["avg"]) is not None
        and _micros(entry["ms"]) is not None
    )


def encode_entries(anchor: Anchor, entries: list[dict[str, Any]]) -> list[str]:
    """The script's per-round history arguments for `entries` (oldest first, each without its
    round id): packed bodies whose steps start from `anchor`, which is advanced to the last
    packed entry (its topic list appended to as needed). An entry that cannot be packed exactly
    is passed as its JSON object."""
    out: list[str] = []
    codes = {t: i for i, t in enumerate(anchor.topics)}

    def code(topic: str) -> int:
        found = codes.get(topic)
        if found is None:
            found = codes[topic] = len(anchor.topics)
            anchor.topics.append(topic)
        return found

    for entry in entries:
        if not _packable(entry):
            out.append(orjson.dumps(entry).decode())
            continue
        n, ts, trained, scores = entry["n"], entry["ts"], entry["trained"], entry["scores"]
        avg = _hundredths(entry["avg"]) or 0
        keys = list(scores)
        m = len(keys)
        same = trained == keys
        step = n - anchor.n
        parts = [chr(min(m, MAX_SMALL_M) * 4 + (2 if same else 0) + (1 if step == 1 else 0))]
        if m >= MAX_SMALL_M:
            parts.append(varint(m))
        if step != 1:
            parts.append(zigzag(step))
        if not same:
            k = len(trained)
            if trained == keys[:k]:
                parts.append(varint(2 * k))
            else:
                parts.append(varint(2 * k + 1))
                parts.extend(varint(code(t)) for t in trained)
        parts.append(zigzag(ts - anchor.ts))
        parts.append(zigzag(avg - anchor.avg))
        parts.append(varint(_micros(entry["ms"]) or 0))
        for topic, score in scores.items():
            parts.append(varint(code(topic)))
            small = 0 <= score < SCORE_ESCAPE
            parts.append(chr(score) if small else chr(SCORE_ESCAPE) + zigzag(score))
        out.append("".join(parts))
        anchor.ts, anchor.avg, anchor.n = ts, avg, n
    return out


def decode(blob: str | None, limit: int | None = None) -> list[dict[str, Any]]:
    """The entries of a history string, newest first (at most `limit`), exactly as they were
    committed, each with its round id first."""
    if not blob:
        return []
    if blob[0] != MAGIC:
        raise ValueError("not a history string")
    head, pos = read_varint(blob, 1)
    _count, pos = read_varint(blob, pos)
    alen, pos = read_varint(blob, pos)
    anchor = Anchor.decode(blob[pos : pos + alen])
    pos += alen
    topics = anchor.topics
    rid, ts, avg, n = head, anchor.ts, anchor.avg, anchor.n
    out: list[dict[str, Any]] = []
    end = len(blob)
    while pos < end and (limit is None or len(out) < limit):
        length, pos = read_varint(blob, pos)
        stop = pos + length
        gap, p = read_zigzag(blob, pos)
        if blob[p] == "{":
            entry: dict[str, Any] = {"round": rid}
            entry.update(orjson.loads(blob[p:stop]))
            out.append(entry)
        else:
            b0 = ord(blob[p])
            p += 1
            m = b0 >> 2
            if m == MAX_SMALL_M:
                m, p = read_varint(blob, p)
            step = 1
            if not b0 & 1:
                step, p = read_zigzag(blob, p)
            same = bool(b0 & 2)
            k, explicit = 0, None
            if not same:
                kk, p = read_varint(blob, p)
                k = kk >> 1
                if kk & 1:
                    explicit = []
                    for _ in range(k):
                        c, p = read_varint(blob, p)
                        explicit.append(c)
            dts, p = read_zigzag(blob, p)
            davg, p = read_zigzag(blob, p)
            us, p = read_varint(blob, p)
            scores: dict[str, int] = {}
            for _ in range(m):
                c, p = read_varint(blob, p)
                s = ord(blob[p])
                p += 1
                if s == SCORE_ESCAPE:
                    s, p = read_zigzag(blob, p)
                scores[topics[c]] = s
            keys = list(scores)
            if same:
                trained = keys
            elif explicit is not None:
                trained = [topics[c] for c in explicit]
            else:
                trained = keys[:k]
            out.append(
                {
                    "round": rid,
                    "n": n,
                    "ts": ts,
                    "trained": trained,
                    "scores": scores,
                    "avg": avg / 100,
                    "ms": us / 1000,
                }
            )
            ts, avg, n = ts - dts, avg - davg, n - step
        rid -= gap
        pos = stop
    return out


def _split(blob: str) -> tuple[int, int, str, int]:
    """(H, record count, anchor, position of the first record) of a history string."""
    head, pos = read_varint(blob, 1)
    count, pos = read_varint(blob, pos)
    alen, pos = read_varint(blob, pos)
    return head, count, blob[pos : pos + alen], pos + alen


def prepend(blob: str | None, first_id: int, bodies: list[str], anchor: str, cap: int) -> str:
    """What the commit script does, in Python (the history migration builds strings with it, the
    tests hold the script to it): rounds `first_id, first_id + 1, ...` with `bodies` (oldest
    first) put in front of `blob`, the anchor replaced (kept when ''); the stored records kept
    whole while the total is at most `cap` plus a tenth, else cut to the newest `cap`."""
    old_head, old_count, old_anchor, pos = _split(blob) if blob else (0, 0, "", 0)
    records = []
    for i, body in enumerate(bodies):
        rid = first_id + i
        gap = 1 if i else (rid - old_head if old_head else 0)
        rest = zigzag(gap) + body
        records.append(varint(len(rest)) + rest)
    records.reverse()
    kept = records[:cap]
    count = len(kept)
    if blob and count < cap:
        if count + old_count <= cap + cap // 10:
            kept.append(blob[pos:])
            count += old_count
        else:
            end = len(blob)
            left = cap - count
            start = pos
            while pos < end and left:
                length, p = read_varint(blob, pos)
                pos = p + length
                left -= 1
            kept.append(blob[start:pos])
            count = cap - left
    head = first_id + len(bodies) - 1
    use = anchor if anchor else old_anchor
    return MAGIC + varint(head) + varint(count) + varint(len(use)) + use + "".join(kept)


def read_entries(blob: str | None, legacy: list[str], limit: int) -> list[dict[str, Any]]:
    """The newest `limit` entries of a learner: its history string's, then those of a history
    list written before the string existed (all older; JSON strings, newest first)."""
    out = decode(blob, limit)
    for raw in legacy[: max(0, limit - len(out))]:
        out.append(orjson.loads(raw))
    return out
