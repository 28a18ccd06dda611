"""The ``scai`` command line: ``scai COMMAND --help`` explains each command."""

from __future__ import annotations

import argparse
import sys
import warnings
from importlib import import_module

from scai._version import __version__
from scai.cli._common import CliError

# Each sub-command lives in its own module with ``register(subparsers)``; the module sets
# ``func`` on its parser. Modules missing from an install (optional extras) are skipped.
_COMMAND_MODULES = ("train", "demo", "evaluate", "predict", "deploy", "bench")

EPILOG = """\
typical session:
  scai demo                                   train SCAI+ on the bundled milk dataset, print a table, write plots
  scai train spectra.csv --label-column label --out model/
  scai evaluate model/ test.csv --out eval/   per-exit accuracy, accuracy-vs-MACs curves, confusion matrix
  scai predict model/ new.csv --policy anytime --budget 300k --out preds.csv

Compute is counted in MACs (multiply-accumulates); FLOPs = 2 x MACs. Budgets accept 150k, 1.2M, or 2ms.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scai",
        description="Adaptive-inference spectral classification (SCAI / SCAI+): train once, run on any device.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = import_module(f"scai.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("scai.cli"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    warnings.simplefilter("default")
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"scai {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        from scai.errors import ScaiError

        if isinstance(exc, (ScaiError, FileNotFoundError, ImportError)):
            print(f"scai {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
