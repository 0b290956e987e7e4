"""The `alexbench` entry point, and `python -m alexbench` (and `torchrun -m alexbench`)."""

from __future__ import annotations

import sys


def main() -> None:
    # Importing the commands takes seconds (torch); a Ctrl-C then is outside every command's
    # error handling, so catch it here: one line and 130, not a traceback from deep in an import.
    try:
        from alexbench.cli import main as cli_main
    except KeyboardInterrupt:
        from alexbench.exit_codes import ExitCode

        sys.stderr.write("error: interrupted\n")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    cli_main()


if __name__ == "__main__":
    main()
