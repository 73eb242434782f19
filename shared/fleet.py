"""The fleet's services, as one table: what each one is called, how it is run, where it listens,
what it needs before it starts, when it stops, and which gateway paths it answers.

Everything that lists the services reads this table: the fleet settings (ports and URLs), the
orchestrator's service table, the gateway's proxy table and health panel, and the process harness
the tests and load tests start fleets with.

Three deployment files spell the services too and must agree with the table, because they are
read by tools that cannot import it: the Procfile (honcho), docker-compose.yml (ports and
commands) and pyproject.toml's `[project.scripts]` (console entry points).
`tests/unit/test_fleet_table.py` checks the last two against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    # Run as `python -m <module>`.
    module: str
    default_port: int
    # Older names of the port variable, still honoured.
    port_env_aliases: tuple[str, ...] = ()
    # Started only once these answer their ready path: they are called during start-up.
    depends_on: tuple[str, ...] = ()
    # Shutdown waves, lowest first: the coach drives the others, so it stops first.
    stop_wave: int = 1
    # Path prefixes the gateway (web) forwards to this service.
    proxy_prefixes: tuple[str, ...] = ()
    # Whether the orchestrator starts and supervises it (everything but itself).
    supervised: bool = True
    health_path: str = "/health"
    ready_path: str = "/ready"

    @property
    def port_env(self) -> str:
        return f"{self.name.upper()}_PORT"

    @property
    def url_env(self) -> str:
        return f"{self.name.upper()}_URL"


# In start order: what a service calls is listed before it.
SERVICES: tuple[Service, ...] = (
    Service(
        "training",
        "services.training",
        3001,
        stop_wave=3,
        proxy_prefixes=("/api/v1/training", "/api/v1/next-domain", "/api/v1/learners"),
    ),
    Service("meta", "services.meta", 3002, stop_wave=2, proxy_prefixes=("/api/v4/meta-learning",)),
    Service(
        "coach",
        "services.coach",
        3004,
        depends_on=("training", "meta"),
        stop_wave=0,
        proxy_prefixes=("/api/v1/auto-coach",),
    ),
    Service("reports", "services.reports", 3008, proxy_prefixes=("/api/v1/reports",)),
    Service("web", "services.web", 3000),
    Service(
        "orchestrator",
        "orchestrator",
        3123,
        port_env_aliases=("ORCH_CTRL_PORT",),
        # Stopped with the coach, before what it would otherwise see fail and restart.
        stop_wave=0,
        proxy_prefixes=(
            "/api/v1/system/processes",
            "/api/v1/system/status",
            "/api/v1/system/services",
            "/api/v1/system/prearm",
            "/api/v1/system/replicas",
        ),
        supervised=False,
    ),
)

BY_NAME: dict[str, Service] = {s.name: s for s in SERVICES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
# The services the orchestrator supervises, in start order.
SUPERVISED: tuple[str, ...] = tuple(s.name for s in SERVICES if s.supervised)


def service(name: str) -> Service:
    """The table's entry for `name` (KeyError for a name not in the fleet)."""
    return BY_NAME[name]


def stop_sequence(names: Iterable[str]) -> list[str]:
    """`names` in shutdown order: by wave, then in start order; names outside the table last."""
    order = {s.name: (s.stop_wave, i) for i, s in enumerate(SERVICES)}
    return sorted(names, key=lambda n: order.get(n, (99, 0)))
