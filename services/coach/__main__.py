from __future__ import annotations

from services.coach.app import create_app
from shared.runner import run_service


def main() -> None:
    run_service("coach", create_app)


if __name__ == "__main__":
    main()
