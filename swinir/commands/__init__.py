"""The ``swinir`` command: restore, eval, degrade, bench, export, train.

Exit status: 0 when everything succeeded, 1 when something failed (each failure is one line
``swinir: error: ...`` on stderr; in a folder the other images are still processed), 2 for usage
errors (the sub-command's usage and one ``swinir COMMAND: error: ...`` line, as argparse prints them).
Every option is checked before any work starts.

Each sub-command is one module of this package, listed in :data:`COMMANDS`. A module defines

* ``HELP`` (its line in ``swinir --help``) and ``DESCRIPTION`` (its ``--help`` text, or None),
  optionally ``FORMATTER`` (an argparse formatter class);
* ``add_arguments(parser)``: its options;
* ``check(args)`` (optional): validates the options before any work, raising
  :class:`~swinir.commands.errors.UsageError` (exit 2) or :class:`~swinir.commands.errors.CliError` (exit 1);
* ``run(args)``: does the work and returns the exit status.

Adding a sub-command is adding its module and one line to :data:`COMMANDS`. Only the modules that a
command line needs are imported (all of them for ``swinir --help``, one for ``swinir restore ...``),
and none imports torch at module level: ``--help`` and usage errors never load it. Shared parts:
:mod:`.arguments` (argument types, output-folder checks), :mod:`.errors` (one-line errors),
:mod:`.loading` (the model), :mod:`.inputs` (input and output files).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import CliError, UsageError, first_line, report

__all__ = ["COMMANDS", "build_parser", "main", "version"]

#: sub-command name -> its module in this package
COMMANDS = {
    "restore": "restore",
    "eval": "evaluate",
    "degrade": "degrade",
    "bench": "bench",
    "train": "train",
    "export": "export",
}


def command_module(name: str):
    """The module of sub-command ``name`` (imported on first use)."""
    return importlib.import_module(f".{COMMANDS[name]}", __name__)


def version() -> str:
    """The installed distribution's version, else (a source checkout) the package's ``__version__``."""
    from importlib import metadata

    try:
        return metadata.version("swinir-kernels")
    except metadata.PackageNotFoundError:
        import swinir

        return swinir.__version__


class _VersionAction(argparse.Action):
    """``--version``, computed only when asked for (the metadata lookup is not free)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"swinir {version()}")
        parser.exit()


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The ``swinir`` parser with every sub-command's options, or only ``selected``'s (the others then
    appear in the command list but their modules are not imported)."""
    parser = argparse.ArgumentParser(prog="swinir", description="SwinIR image restoration on fused kernels.")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        if selected is not None and name != selected:
            commands.add_parser(name)
            continue
        module = command_module(name)
        command_parser = commands.add_parser(name, help=module.HELP, description=module.DESCRIPTION or module.HELP,
                                             formatter_class=getattr(module, "FORMATTER", argparse.HelpFormatter))
        module.add_arguments(command_parser)
        command_parser.set_defaults(handler=module.run, check=getattr(module, "check", None),
                                    command_parser=command_parser)
    return parser


def _selected(argv: list[str]) -> str | None:
    """The sub-command named on the command line (the first argument that is not an option), if any."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_selected(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse: usage error (2), --help or --version (0)
        return int(exit_request.code or 0)
    try:
        if getattr(args, "device", None):
            from .arguments import device_problem

            problem = device_problem(args.device)
            if problem is not None:
                raise UsageError(f"argument --device: {problem}")
        if args.check is not None:
            args.check(args)
        return args.handler(args)
    except UsageError as error:
        args.command_parser.print_usage(sys.stderr)
        print(f"{args.command_parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except CliError as error:
        report(str(error))
        return 1
    except KeyboardInterrupt:
        report("interrupted")
        return 130
    except Exception as error:  # a failure nobody foresaw: still one line (SWINIR_TRACEBACK=1 shows it all)
        if os.environ.get("SWINIR_TRACEBACK") == "1":
            raise
        report(f"{type(error).__name__}: {first_line(error)} (SWINIR_TRACEBACK=1 shows where)")
        return 1
