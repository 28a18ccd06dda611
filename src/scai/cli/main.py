"""The ``scai`` command line: ``scai COMMAND --help`` explains each command.

Errors a user can cause print one line ``scai COMMAND: error: ...`` and exit with status 2: bad
option values and usage mistakes (checked by argparse, see :mod:`scai.cli._common`), every
:class:`scai.errors.ScaiError` raised by the library, files that cannot be opened, and optional
packages that are not installed. Anything else is a bug in scai and shows its traceback.

Every command module is imported to build the parser, so the modules import the torch side of
the library (estimators, models, deploy, report plots) inside their run functions: ``scai
--help`` and option errors must not wait for PyTorch. Torch-free helpers are imported on top.

Warnings print as one line, ``scai COMMAND: warning: MESSAGE``, not as Python's source path and
line. ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (set here, before PyTorch's OpenMP runtime is
loaded, which reads it once): waiting OpenMP threads sleep instead of spinning, so a busy shared
machine does not make every epoch many times slower (measured in docs/inference.md, "Threads").
An ``OMP_WAIT_POLICY`` set by the user is kept.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything can load PyTorch's OpenMP

import argparse
import sys
import warnings
from importlib import import_module
from typing import Any, NoReturn, TextIO

from scai._version import __version__
from scai.errors import ScaiError

__all__ = ["ArgumentParser", "build_parser", "main"]

# Each sub-command lives in its own module with ``register(subparsers)``; the module sets
# ``func`` on its parser. Modules missing from an install (optional extras) are skipped.
_COMMAND_MODULES = ("train", "demo", "evaluate", "predict", "deploy", "bench", "info")

#: Operating-system errors about a path the user gave (printed as one line, exit 2).
_PATH_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)

EPILOG = """\
typical session:
  scai demo                                   train SCAI+ on the bundled milk dataset, print a table, write plots
  scai train spectra.csv --label-column label --out model/
  scai evaluate model/ test.csv --out eval/   per-exit accuracy, accuracy-vs-MACs curves, confusion matrix
  scai predict model/ new.csv --policy anytime --budget 300k --out preds.csv

Compute is counted in MACs (multiply-accumulates); FLOPs = 2 x MACs. Budgets accept 150k, 1.2M, or 2ms.
"""


def _one_line(message: str) -> str:
    """``message`` on one line (multi-line messages are joined with "; ")."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``PROG: error: MESSAGE (see PROG --help)``, exit 2.

    Sub-command parsers are of the same class, so ``PROG`` is ``scai COMMAND``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _build() -> tuple[ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = ArgumentParser(
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
    return parser, dict(sub.choices)


def build_parser() -> argparse.ArgumentParser:
    """The ``scai`` parser with every installed sub-command."""
    return _build()[0]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; unknown arguments are reported by the sub-command they were given to."""
    parser, commands = _build()
    args, extras = parser.parse_known_args(argv)
    if extras:
        target = commands.get(getattr(args, "command", None) or "", parser)
        target.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user caused, or ``None`` for a bug (re-raised)."""
    if isinstance(exc, ScaiError):
        return _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, _PATH_ERRORS):
        if exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror.lower()}"
        return _one_line(str(exc))
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != "scai":
        return f"{_one_line(str(exc))} (an optional dependency: pip install 'scai[io,onnx,serve]' installs them)"
    return None


def _warning_printer(command: str) -> Any:
    """A ``warnings.showwarning`` that prints ``scai COMMAND: warning: MESSAGE`` on one line."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        kind = "" if category is UserWarning else f" [{category.__name__}]"
        print(f"scai {command}: warning: {_one_line(str(message))}{kind}", file=file or sys.stderr)

    return show


#: Commands that may predict for a long time, meeting many batch shapes: their process caps
#: oneDNN's compiled-convolution cache (:mod:`scai.inference.memory`).
PREDICTING = frozenset({"predict", "evaluate", "serve", "edge"})


def main(argv: list[str] | None = None) -> int:
    """Run ``scai`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    ``--help`` and ``--version`` exit through ``SystemExit(0)`` as argparse does; usage errors and
    user errors return 2 after printing one line on stderr.
    """
    try:
        args = _parse(argv)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        build_parser().print_help()
        return 0
    if args.command in PREDICTING:
        from scai.inference.memory import bound_onednn_cache

        bound_onednn_cache()  # before the command's first convolution
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _warning_printer(args.command)
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            message = _user_error(exc)
            if message is None:
                raise
            print(f"scai {args.command}: error: {message}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
