"""The meta document's and log's compact JSON (services/meta/packing.py): any JSON value comes
back exactly, a document stored before the compact form reads unchanged, and a real document
shrinks to well under half."""

from __future__ import annotations

import time

import orjson
import pytest

from services.meta import packing, phases
from services.training.round import new_learner_state
from shared.learner_state import DomainState


@pytest.mark.parametrize(
    "value",
    [
        {"~": "~", "~~x": ["~a", "~@1", "~!2", "~zz"], "": [None, True, 1, 1.5, -0.0]},
        ["2026-12-03T07:34:43.123Z", "2026-12-03T07:34:43.123+00:00", "1970-01-01T00:00:00.000Z"],
        ["2026-02-30T07:34:43.123Z", "9999-12-31T23:59:59.999Z", "ümlaut", "status"],
        {"status": {"status": "completed"}, "Learning Analysis": "Retention booster applied"},
    ],
)
def test_any_json_value_round_trips(value: object) -> None:
    packed = packing.pack(value)
    orjson.loads(packed)  # still JSON: the commit script checks it
    assert packing.unpack(packed) == value
    assert orjson.dumps(packing.unpack(packed)) == orjson.dumps(value)


def test_a_plain_json_document_reads_unchanged() -> None:
    doc = phases.new_document()
    assert packing.unpack(orjson.dumps(doc)) == doc


def test_a_run_document_and_its_log_shrink() -> None:
    now = time.time()
    state = new_learner_state("p", "eu", True, now - 3600)
    for i, key in enumerate(("dsa", "os", "ml")):
        state.domains[key] = DomainState(0.5 + i / 10, 3600.0, now - 60, 9, 5, 60.0 + i, 70.0)
    out = phases.run_remaining(phases.new_document(), state, now)
    plain = len(orjson.dumps(out.doc))
    packed = packing.pack(out.doc)
    assert packing.unpack(packed) == out.doc
    assert len(packed) < plain / 2
    for entry in out.log:
        assert packing.unpack(packing.pack(entry)) == entry
    assert sum(len(packing.pack(e)) for e in out.log) < sum(len(orjson.dumps(e)) for e in out.log)


def test_the_words_are_distinct() -> None:
    assert len(set(packing.WORDS)) == len(packing.WORDS)
