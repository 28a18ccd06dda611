"""Reproduce the paper's experiments (§4.4–4.7); the same as ``scai bench``.

Usage::

    python benchmarks/paper.py --quick                      # pipeline check, < 2 min
    python benchmarks/paper.py --data-dir ../shared/datasets --seeds 0,1,2 --resume

See docs/benchmarks.md for the protocol, the outputs and the full-run time estimate.
"""

from __future__ import annotations

import argparse
import sys

from scai.cli._common import CliError
from scai.cli.bench import HELP, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/paper.py", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"paper.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
