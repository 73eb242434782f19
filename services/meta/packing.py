"""The compact form of the meta document and of its activity-log entries in Redis.

Both are JSON that repeats, in every learner, the same few dozen words (metric names, phase names,
the proposals' and strategies' descriptions, log messages) around a few numbers and times. Stored
as they are, they cost ~5 KB per learner. Here each is deflated against a fixed dictionary of a
typical document and log (`meta_zdict_v1.json`: deflate then writes what matches it as short
back-references), and stored as the JSON string `"z1:<base64>"`: a document of ~3 KB takes ~300
bytes. It is still JSON (the commit script checks that), and `unpack(pack(x)) == x` for any JSON
value. A document or entry stored before (plain JSON: never a string starting with `z1:`) reads
back unchanged and is stored compactly at its next commit.

The dictionary must never change: a stored value needs the very bytes it was deflated against. A
better one would be `meta_zdict_v2.json` with the marker `z2:`, both kept for reading.
"""

from __future__ import annotations

import base64
import zlib
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

MARK = "z1:"
_WBITS = -15  # raw deflate: no zlib header or checksum (the value is checked as JSON on read)


@lru_cache(maxsize=1)
def _zdict() -> bytes:
    return resources.files(__package__).joinpath("meta_zdict_v1.json").read_bytes()


def pack(value: Any) -> str:
    """The stored JSON of a document or log entry."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, _WBITS, 9, zlib.Z_DEFAULT_STRATEGY, _zdict())
    raw = deflate.compress(orjson.dumps(value)) + deflate.flush()
    return orjson.dumps(MARK + base64.b64encode(raw).decode()).decode()


def unpack(stored: str | bytes) -> Any:
    """The document or log entry stored by `pack` (or as plain JSON, before it)."""
    value = orjson.loads(stored)
    if isinstance(value, str) and value.startswith(MARK):
        inflate = zlib.decompressobj(_WBITS, _zdict())
        raw = inflate.decompress(base64.b64decode(value[len(MARK) :])) + inflate.flush()
        return orjson.loads(raw)
    return value
