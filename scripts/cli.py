"""backupctl: the operator's side of the QuickPort backup strategy.

Each module in scripts/commands/ adds its subcommands through `register(subparsers)`; a handler takes
a Context and returns an exit code. This module maps every way a command can end to an exit code in
one place: 0 ok, 1 a check or AWS operation failed, 2 bad usage, 130 interrupted, 141 closed pipe.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from typing import Any, NoReturn, Optional, Sequence

from scripts import commands
from scripts.aws.errors import describe, is_aws_error
from scripts.aws.session import ClientFactory
from scripts.commands.base import Context
from scripts.errors import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, UsageError

DESCRIPTION = """\
Operator CLI for the QuickPort production backup strategy.

Runbook: before any maintenance, `backupctl guard --action <what> -- <command>` (or `snapshot` then
`verify`); to recover, `restore-instance` / `restore-files` / `db-restore-drill`; weekly, `audit`.
Exit codes: 0 ok, 1 a check or AWS operation failed, 2 bad usage or input (with --json also a usage
error is one JSON document). Every AWS call gives up after about 1.5 minutes (4 attempts of 5 s connect
+ 20 s read; AWS_MAX_ATTEMPTS overrides the count); long waits have their own --timeout.
"""


class _UsageExit(Exception):
    """argparse found bad usage; carries its one-line message (and the parser's prog) to main()."""

    def __init__(self, prog: str, message: str):
        super().__init__(f"{prog}: error: {message}")
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (its default prints the whole usage block
    first) and hands it to main(), which prints it and returns 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise _UsageExit(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="backupctl", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if info.name != "base":   # base.py is what the commands share; every other module registers
            module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None, *, clients: Optional[dict[str, Any]] = None) -> int:
    """Run one command. `clients` pre-builds boto3 clients by service name (tests, the demo)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except _UsageExit as e:
        print(e, file=sys.stderr)
        if _wants_json(argv):   # argparse stopped before --json was parsed: read it from argv
            _print_json({"command": _command_of(argv, parser), "ok": False, "exitCode": EXIT_USAGE,
                         "error": e.message})
        return EXIT_USAGE
    ctx = Context(args=args, command=args.command, clients=ClientFactory(clients))
    try:
        return int(args.handler(ctx) or 0)
    except UsageError as e:
        return _fail(ctx, EXIT_USAGE, "error", str(e))
    except CommandError as e:
        return _fail(ctx, EXIT_FAILED, "failed", str(e))
    except KeyboardInterrupt:
        return _fail(ctx, EXIT_INTERRUPTED, "interrupted", "interrupted by the user")
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as e:  # a local problem (a --to under a file, disk full, a missing tool): one line
        return _fail(ctx, EXIT_FAILED, "failed", str(e))
    except Exception as e:  # botocore errors and the like: one line, not a traceback
        if is_aws_error(e):
            return _fail(ctx, EXIT_FAILED, "AWS error", describe(e))
        raise


def _wants_json(argv: list[str]) -> bool:
    """--json among the options (not in a guard command after `--`)."""
    head = argv[:argv.index("--")] if "--" in argv else argv
    return "--json" in head


def _command_of(argv: list[str], parser: argparse.ArgumentParser) -> Optional[str]:
    """The subcommand named in argv, if any (for a usage error's JSON document)."""
    names = {name for action in parser._subparsers._group_actions   # type: ignore[union-attr]
             for name in getattr(action, "choices", None) or ()} if parser._subparsers else set()
    return next((a for a in argv if a in names), None)


def _print_json(document: dict[str, Any]) -> int:
    try:
        print(json.dumps(document))
    except BrokenPipeError:
        return _closed_pipe()
    return 0


def _fail(ctx: Context, code: int, kind: str, message: str) -> int:
    """One line on stderr for people; with --json also one JSON document on stdout for machines."""
    print(f"backupctl {ctx.command}: {kind}: {message}", file=sys.stderr)
    if ctx.json and _print_json({"command": ctx.command, "ok": False, "exitCode": code, "error": message}):
        return EXIT_BROKEN_PIPE
    return code


def _closed_pipe() -> int:
    """The reader went away (`backupctl ... | head`): stop quietly, as a shell pipeline expects.
    When stdout is the process's own, point it at /dev/null so the interpreter's final flush does
    not raise again (a caller's redirected stdout, e.g. the demo's, is left alone)."""
    if sys.stdout is sys.__stdout__ and sys.__stdout__ is not None:
        try:
            fd = sys.__stdout__.fileno()
        except (OSError, ValueError):
            return EXIT_BROKEN_PIPE
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def console_main() -> None:
    """The `backupctl` console script (pyproject.toml)."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
