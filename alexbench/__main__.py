"""The `alexbench` entry point, and `python -m alexbench` (and `torchrun -m alexbench`)."""

from __future__ import annotations

import sys


def main() -> None:
    # A Ctrl-C while the CLI itself imports (typer, rich) is outside every command's error
    # handling, so catch it here: one line and 130, not a traceback from deep in an import. (The
    # command's own module, with torch, is imported later by the group, which does the same.)
    try:
        from alexbench.cli import main as cli_main
    except KeyboardInterrupt:
        from alexbench.exit_codes import ExitCode

        sys.stderr.write("error: interrupted\n")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    cli_main()


if __name__ == "__main__":
    main()
