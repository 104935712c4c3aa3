"""backupctl: the operator's side of the QuickPort backup strategy.

Each module in scripts/commands/ adds its subcommands through `register(subparsers)`; a handler takes
a Context and returns an exit code. Exit codes: 0 ok, 1 a check or AWS operation failed, 2 bad usage.
"""
from __future__ import annotations

import argparse
import importlib
import json
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
        return _fail(ctx, EXIT_USAGE, "error", str(e))
    except CommandError as e:
        return _fail(ctx, EXIT_FAILED, "failed", str(e))
    except KeyboardInterrupt:
        return _fail(ctx, 130, "interrupted", "interrupted by the user")
    except OSError as e:  # a local problem (a --to under a file, disk full, a missing tool): one line
        return _fail(ctx, EXIT_FAILED, "failed", str(e))
    except Exception as e:  # botocore errors and the like: one line, not a traceback
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.parsers import ResponseParserError
        # ResponseParserError is no BotoCoreError: an endpoint that answers with an HTML page (a
        # proxy, an emulator lacking the API) is still an AWS failure, not a crash.
        if isinstance(e, (BotoCoreError, ClientError, ResponseParserError)):
            return _fail(ctx, EXIT_FAILED, "AWS error", aws_error_message(e))
        raise


def _fail(ctx: Context, code: int, kind: str, message: str) -> int:
    """One line on stderr for people; with --json also one JSON document on stdout for machines."""
    print(f"backupctl {ctx.command}: {kind}: {message}", file=sys.stderr)
    if ctx.json:
        print(json.dumps({"command": ctx.command, "ok": False, "exitCode": code, "error": message}))
    return code


if __name__ == "__main__":
    sys.exit(main())
