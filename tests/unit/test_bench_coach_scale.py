"""The coach scaling benchmark's table: medians of the repeats, ratios against the one-replica
median of the same backend in the same run."""

from __future__ import annotations

from loadtests.bench_coach_scale import rows


def sample(rpm: float) -> dict[str, float]:
    return {
        "rpm": rpm,
        "coach_ms": 1.0,
        "training_ms": 2.0,
        "redis_ms": 0.5,
        "coach_cores": 0.4,
        "training_cores": 0.9,
        "redis_cores": 0.2,
    }


def test_ratios_are_medians_over_the_same_runs_one_replica_figure() -> None:
    results = {
        1: [sample(1000), sample(3000), sample(1200)],  # median 1200
        2: [sample(2400), sample(100), sample(2500)],  # median 2400
        4: [sample(3600), sample(3600), sample(9999)],  # median 3600
    }
    table = {r["figure"]: r["measured"] for r in rows("single", results)}
    assert table["single Redis, 1 coach replica: rounds/min (median)"] == 1200
    assert table["single Redis, 1 coach replica: scaling ratio vs 1 replica"] == 1.0
    assert table["single Redis, 2 coach replicas: scaling ratio vs 1 replica"] == 2.0
    assert table["single Redis, 4 coach replicas: scaling ratio vs 1 replica"] == 3.0
    assert table["single Redis, 4 coach replicas: Redis CPU per round (INFO cpu)"] == 0.5


def test_each_backend_is_its_own_reference() -> None:
    results = {n: [sample(1000 * n)] for n in (1, 2, 4)}
    cluster = {r["figure"]: r["measured"] for r in rows("cluster", results)}
    prefix = "Redis Cluster, 3 masters, "
    assert cluster[prefix + "4 coach replicas: scaling ratio vs 1 replica"] == 4.0
    assert cluster[prefix + "1 coach replica: Redis CPU per round (all masters summed)"] == 0.5
