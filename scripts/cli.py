"""backupctl: the operator's side of the QuickPort backup strategy.

Each module in scripts/commands/ adds its subcommands through `register(subparsers)`; a handler takes
a Context and returns an exit code. Exit codes: 0 ok, 1 a check or AWS operation failed, 2 bad usage.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional, Sequence

from scripts import commands
from scripts.common import EXIT_FAILED, EXIT_USAGE, CommandError, Context, UsageError, aws_error_message

DESCRIPTION = """\
Operator CLI for the QuickPort production backup strategy.

Runbook: before any maintenance, `backupctl guard --action <what> -- <command>` (or `snapshot` then
`verify`); to recover, `restore-instance` / `restore-files` / `db-restore-drill`; weekly, `audit`.
Exit codes: 0 ok, 1 a check or AWS operation failed, 2 bad usage or input.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a single line (its default prints the whole usage block first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="backupctl", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None, *, clients: Optional[dict] = None) -> int:
    """Run one command. `clients` (tests only) pre-builds boto3 clients by service name."""
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args=args, command=args.command, client_overrides=dict(clients or {}))
    try:
        return int(args.handler(ctx) or 0)
    except UsageError as e:
        print(f"backupctl {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as e:
        print(f"backupctl {args.command}: failed: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"backupctl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # botocore errors and the like: one line, not a traceback
        from botocore.exceptions import BotoCoreError, ClientError
        if isinstance(e, (BotoCoreError, ClientError)):
            print(f"backupctl {args.command}: AWS error: {aws_error_message(e)}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
