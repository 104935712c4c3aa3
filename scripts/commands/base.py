"""What every backupctl command shares: common options, the per-invocation Context, output.

A command module in scripts/commands/ defines `register(subparsers)`; each subcommand's handler takes
a `Context`, checks its arguments, calls a workflow and renders the result, returning an exit code
(or raising `CommandError` / `UsageError`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from components.config import (
    _ID_RE,
    DEFAULT_REGION,
    REGION_RE,
    ConfigError,
    StackConfig,
    capped,
    load_stack_config,
)
from scripts import oplog
from scripts.aws.session import ClientFactory
from scripts.errors import UsageError
from scripts.times import utcnow


def add_common_options(parser: argparse.ArgumentParser, *, aws: bool = True) -> None:
    """--json, --log-file, --stack, --config-file; with aws: --region and --instance-id."""
    g = parser.add_argument_group("common options")
    g.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    g.add_argument("--stack", default="prod", help="stack whose Pulumi.<stack>.yaml gives defaults (default: prod)")
    g.add_argument("--config-file", type=Path, help="read the stack config from this file instead")
    g.add_argument("--log-file", type=Path, default=None,
                   help="operations log (JSON lines); default $XDG_STATE_HOME/quickport-backup/operations.jsonl")
    if aws:
        g.add_argument("--region", default=None, type=region_name,
                       help="AWS region, e.g. ap-south-1 (default: AWS_REGION / AWS_DEFAULT_REGION, else the "
                            "stack's, else ap-south-1)")
        g.add_argument("--instance-id", default=None, type=instance_id,
                       help="production instance, i- and 8 or 17 hex digits (default: the stack's instanceId; "
                            "an empty value is refused, never the default)")


# --- argument types shared by several commands -----------------------------------------------------

# Every value an argparse type refuses is quoted through `capped`: a pasted megabyte stays one line.
# ASCII digits only: int() and float() also take "3_0" and Arabic-Indic digits, which no operator
# means and no AWS API documents.
_NUMBER_RE = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_WHOLE_RE = re.compile(r"^[+-]?[0-9]+$")


def number_in_range(flag: str, lo: float, hi: float, unit: str, *, integer: bool = False,
                    open_low: bool = False) -> Callable[[str], Any]:
    """An argparse type: a number (whole with `integer`) from lo to hi (above lo with `open_low`),
    written in ASCII digits (no '_', no other scripts' digits, no nan/inf)."""
    kind = ("a whole number" if integer else "a number") + (f" of {unit}" if unit else "")

    def parse(value: str) -> Any:
        number: Any = None
        if (_WHOLE_RE if integer else _NUMBER_RE).match(value.strip()):
            number = int(value) if integer else float(value)
        low_ok = number is not None and (number > lo if open_low else number >= lo)
        if number is None or number != number or not low_ok or number > hi:  # NaN compares unequal
            bound = f"more than {lo:g} and at most {hi:g}" if open_low else f"from {lo:g} to {hi:g}"
            raise argparse.ArgumentTypeError(f"{flag} {capped(value)}: must be {kind} {bound} (ASCII digits)")
        return number
    return parse


def matching(flag: str, pattern: re.Pattern, allowed: str) -> Callable[[str], str]:
    """An argparse type: a string matching `pattern` (an empty one never does)."""
    def parse(value: str) -> str:
        if not pattern.fullmatch(value):
            raise argparse.ArgumentTypeError(f"{flag} {capped(value)}: {allowed}")
        return value
    return parse


# re.ASCII: the config's \d would also take other scripts' digits.
region_name = matching("--region", re.compile(REGION_RE.pattern, re.ASCII),
                       "must be an AWS region name, e.g. ap-south-1")
instance_id = matching("--instance-id", _ID_RE["instance"],
                       "must be an EC2 instance id, i- followed by 8 or 17 hex digits")
port_number = number_in_range("--port", 1, 65535, "", integer=True)


def directory_target(flag: str, path: Path) -> Path:
    """A directory to restore into, checked before anything is downloaded: it may not exist yet, but
    neither it nor its nearest existing ancestor may be a file. Returns the absolute path."""
    path = path.resolve()
    existing = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    if existing is not None and not existing.is_dir():
        where = "is" if existing == path else f"is under {existing}, which is"
        raise UsageError(f"{flag} {path}: {where} not a directory; give a directory (new or existing)")
    return path


@dataclass
class Context:
    """Per-invocation state handed to every command handler (it satisfies workflows.base.Session)."""
    args: argparse.Namespace
    command: str
    clients: ClientFactory = field(default_factory=ClientFactory)
    _config: Optional[StackConfig] = None

    # --- configuration ---
    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def config(self) -> StackConfig:
        """The stack config; a bad or missing file is a usage error (exit 2)."""
        if self._config is None:
            try:
                self._config = load_stack_config(getattr(self.args, "stack", "prod"),
                                                 getattr(self.args, "config_file", None))
            except ConfigError as e:
                raise UsageError(str(e)) from None
            except (OSError, UnicodeDecodeError) as e:  # a directory, unreadable or binary file
                path = getattr(self.args, "config_file", None)
                name = f"--config-file {path}" if path else f"--stack {getattr(self.args, 'stack', 'prod')}"
                reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
                raise UsageError(f"{name}: the stack config file cannot be read ({reason}); must be a "
                                 f"readable Pulumi.<stack>.yaml") from None
        return self._config

    @property
    def region(self) -> str:
        if getattr(self.args, "region", None):
            return str(self.args.region)   # checked by region_name
        for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if os.environ.get(variable):
                try:
                    return region_name(os.environ[variable])
                except argparse.ArgumentTypeError as e:
                    raise UsageError(str(e).replace("--region", variable, 1)) from None
        try:
            return self.config.region
        except UsageError:
            return DEFAULT_REGION

    @property
    def instance_id(self) -> str:
        return getattr(self.args, "instance_id", None) or self.config.instance_id

    # --- AWS ---
    def client(self, service: str, region: Optional[str] = None) -> Any:
        return self.clients.client(service, region or self.region)

    # --- output ---
    def progress(self, message: str) -> None:
        """A timestamped progress line for people; on stderr so --json stdout stays one document."""
        print(f"{utcnow():%H:%M:%SZ} {message}", file=sys.stderr, flush=True)

    def emit(self, document: dict[str, Any], text: str) -> None:
        """The command's result: the JSON document with --json, else the human text."""
        if self.json:
            print(json.dumps(document, indent=2, default=str, sort_keys=False))
        else:
            print(text)

    def log(self, event: str, /, **details: Any) -> bool:
        """Append one line to the operations log; never fails the command."""
        return oplog.append(getattr(self.args, "log_file", None), self.command, event, **details)
