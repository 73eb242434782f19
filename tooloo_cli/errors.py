"""The one error the command line reports: a line of text and the exit code that says what failed."""

from __future__ import annotations

# Exit codes: 0 done, 1 the fleet (or Redis, or a file) refused or failed, 2 bad usage.
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """Printed as one line on stderr; never a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
