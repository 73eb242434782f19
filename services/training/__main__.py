"""`python -m services.training` / `tooloo-training`."""

from __future__ import annotations

from services.training.app import create_app
from shared.runner import run_service


def main() -> None:
    run_service("training", create_app)


if __name__ == "__main__":
    main()
