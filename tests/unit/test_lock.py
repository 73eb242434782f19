"""requirements.lock, which `make install` installs with --require-hashes, holds every pin of
pyproject.toml at the same version, each with a hash: a pin changed without `make lock` fails."""

from __future__ import annotations

import re
import tomllib

from harness.processes import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_lock_has_every_pin_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    lock = (ROOT / "requirements.lock").read_text()
    locked = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", lock, flags=re.M))
    locked = {k.lower().replace("_", "-"): v for k, v in locked.items()}
    for pin in pins:
        name, version = _name(pin), pin.split("==", 1)[1]
        assert locked.get(name) == version, f"{pin} is locked at {locked.get(name)}: run make lock"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2])
    for block in blocks:
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]
