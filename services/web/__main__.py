from services.web.app import create_app
from shared.runner import run_service


def main() -> None:
    run_service("web", create_app)


if __name__ == "__main__":
    main()
