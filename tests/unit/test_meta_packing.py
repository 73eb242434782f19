"""The meta document's and log's compact form (services/meta/packing.py): any JSON value comes
back exactly, a document stored before the compact form reads unchanged, and a real document
and its log shrink to a fraction."""

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
        {"~": "~", "z1:": ["z1:", "z1:AAAA", "~@1"], "": [None, True, 1, 1.5, -0.0, 2**60]},
        ["2026-12-03T07:34:43.123Z", "ümlaut", "status", "x" * 10_000],
        "z1:not base64 but a plain string value",
        {"status": {"status": "completed"}, "Learning Analysis": "Retention booster applied"},
        [],
    ],
)
def test_any_json_value_round_trips(value: object) -> None:
    packed = packing.pack(value)
    assert isinstance(orjson.loads(packed), str)  # still JSON: the commit script checks it
    assert packing.unpack(packed) == value
    assert orjson.dumps(packing.unpack(packed)) == orjson.dumps(value)


def test_a_plain_json_document_reads_unchanged() -> None:
    doc = phases.new_document()
    assert packing.unpack(orjson.dumps(doc)) == doc
    assert packing.unpack(b'{"message": "z1:x"}') == {"message": "z1:x"}


def test_a_run_document_and_its_log_shrink() -> None:
    now = time.time()
    state = new_learner_state("p", "eu", True, now - 3600)
    for i, key in enumerate(("dsa", "os", "ml", "theory")):
        state.domains[key] = DomainState(0.5 + i / 10, 3600.0, now - 60, 9, 5, 60.0 + i, 70.0)
    out = phases.run_remaining(phases.new_document(), state, now)
    plain = len(orjson.dumps(out.doc))
    packed = packing.pack(out.doc)
    assert packing.unpack(packed) == out.doc
    assert len(packed) < plain / 4
    for entry in out.log:
        assert packing.unpack(packing.pack(entry)) == entry
    log_plain = sum(len(orjson.dumps(e)) for e in out.log)
    assert sum(len(packing.pack(e)) for e in out.log) < log_plain / 2


def test_the_dictionary_is_the_one_stored_values_were_deflated_against() -> None:
    """meta_zdict_v1.json must never change (see packing.py): a value packed with it, kept
    here, still unpacks."""
    kept = '"z1:Q+uhGekaGIcYmFsZm1iZGJM6RAYA"'
    assert packing.unpack(kept) == {
        "time": "2026-12-03T07:34:43.123Z",
        "message": "Meta-Learning Engine started",
    }
