"""`python -m orchestrator`: the control API on ORCHESTRATOR_PORT, which supervises the fleet."""

from __future__ import annotations

import signal
import sys


def _exit_quietly(signum: int, _frame: object) -> None:
    # Until aiohttp installs its own handlers no child exists yet, so a SIGTERM/SIGINT this
    # early just ends the process, with status 0 like a later, graceful stop.
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_quietly)
    signal.signal(signal.SIGINT, _exit_quietly)
    from orchestrator.app import create_app
    from shared.runner import run_service

    run_service("orchestrator", create_app)


if __name__ == "__main__":
    main()
