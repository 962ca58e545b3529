"""The ``parallel-exec`` console script."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parallel-exec",
        description="Companion tool of the parallel_exec pytest plugin "
        "(run tests with: pytest -p parallel_exec -n auto).",
    )
    parser.add_argument("--version", action="version", version=f"parallel-exec {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
