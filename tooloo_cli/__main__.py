"""`tooloo` (and `python -m tooloo_cli`): runs a command and turns every failure into one line on
stderr and an exit code (2 bad usage, 1 a refused or failed call), never a traceback."""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from tooloo_cli.errors import EXIT_FAILED, EXIT_USAGE, CliError


def run(argv: list[str] | None = None) -> int:
    from tooloo_cli.app import app

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="tooloo", standalone_mode=False)
    except CliError as exc:
        _line(exc.message)
        return exc.code
    except typer.Abort:
        _line("aborted")
        return EXIT_FAILED
    except TyperException as exc:  # bad usage: unknown command, bad number, missing value
        message = exc.format_message().strip()
        ctx = getattr(exc, "ctx", None)
        if message:  # empty when a group was called bare and its help was printed
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            _line(f"{message}{hint}")
        return EXIT_USAGE if exc.exit_code == 2 else int(exc.exit_code)
    except typer.Exit as exc:  # --help
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _line("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line, never a traceback
        _line(f"unexpected error: {exc.__class__.__name__}: {exc}")
        return EXIT_FAILED
    return int(result) if isinstance(result, int) else 0


def _line(message: str) -> None:
    sys.stderr.write(f"tooloo: {' '.join(message.split())}\n")


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
