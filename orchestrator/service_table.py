"""The supervised services, as data: module, port setting, health path, dependencies, stop order.

The table can be narrowed (ORCHESTRATOR_SERVICES=training,meta) and a service's module replaced
(ORCHESTRATOR_MODULE_<NAME>=package.module), both from the environment, so running a partial
fleet is a configuration decision rather than something the orchestrator guesses. A listed
service whose module cannot be imported is reported as `failed`, never silently dropped.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    module: str
    port_env: str
    health_path: str = "/health"
    ready_path: str = "/ready"
    # Spawned only once these answer /ready (they are called while it starts up / works).
    depends_on: tuple[str, ...] = ()
    # Shutdown waves, lowest first: the coach drives the others, so it stops first.
    stop_order: int = 1


DEFAULT_TABLE: tuple[ServiceSpec, ...] = (
    ServiceSpec("training", "services.training", "TRAINING_PORT", stop_order=3),
    ServiceSpec("meta", "services.meta", "META_PORT", stop_order=2),
    ServiceSpec(
        "coach", "services.coach", "COACH_PORT", depends_on=("training", "meta"), stop_order=0
    ),
    ServiceSpec("reports", "services.reports", "REPORTS_PORT", stop_order=1),
    ServiceSpec("web", "services.web", "WEB_PORT", stop_order=1),
)


class TableError(ValueError):
    """The service table configuration names something that does not exist."""


def load_table(
    selection: str | None, environ: Mapping[str, str] | None = None
) -> tuple[ServiceSpec, ...]:
    env = os.environ if environ is None else environ
    by_name = {spec.name: spec for spec in DEFAULT_TABLE}
    if selection:
        names = [n.strip() for n in selection.split(",") if n.strip()]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise TableError(f"ORCHESTRATOR_SERVICES names unknown services: {unknown}")
    else:
        names = list(by_name)
    table = []
    for spec in DEFAULT_TABLE:
        if spec.name not in names:
            continue
        module = env.get(f"ORCHESTRATOR_MODULE_{spec.name.upper()}")
        if module:
            spec = replace(spec, module=module)
        # A dependency that is not supervised here is not waited for.
        spec = replace(spec, depends_on=tuple(d for d in spec.depends_on if d in names))
        table.append(spec)
    return tuple(table)


def module_available(module: str) -> bool:
    """Whether `python -m module` can run: the module exists, and a package has a __main__
    (an empty directory is a namespace package, importable but not runnable)."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is None:
            return False
        if spec.submodule_search_locations is not None:
            return importlib.util.find_spec(f"{module}.__main__") is not None
        return True
    except (ImportError, ValueError):
        return False


def stop_waves(table: tuple[ServiceSpec, ...]) -> list[list[ServiceSpec]]:
    waves: dict[int, list[ServiceSpec]] = {}
    for spec in table:
        waves.setdefault(spec.stop_order, []).append(spec)
    return [waves[k] for k in sorted(waves)]
