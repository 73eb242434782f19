"""The supervised services: the fleet table's entries the orchestrator starts (all but itself).

The table can be narrowed (ORCHESTRATOR_SERVICES=training,meta) and a service's module replaced
(ORCHESTRATOR_MODULE_<NAME>=package.module), both from the environment, so running a partial
fleet is a configuration decision rather than something the orchestrator guesses. A listed
service whose module cannot be imported is reported as `failed`, never silently dropped.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import replace

from shared.fleet import SERVICES, Service

# Every service the orchestrator supervises, in start order.
DEFAULT_TABLE: tuple[Service, ...] = tuple(s for s in SERVICES if s.supervised)


class TableError(ValueError):
    """The service table configuration names something that does not exist."""


def load_table(
    selection: str | None, environ: Mapping[str, str] | None = None
) -> tuple[Service, ...]:
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


def stop_waves(table: tuple[Service, ...]) -> list[list[Service]]:
    waves: dict[int, list[Service]] = {}
    for spec in table:
        waves.setdefault(spec.stop_wave, []).append(spec)
    return [waves[k] for k in sorted(waves)]
