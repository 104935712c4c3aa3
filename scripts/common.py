"""What every backupctl command shares: options, AWS clients, output, exit codes, the operations log.

A command module in scripts/commands/ defines `register(subparsers)`; each subcommand's handler takes
a `Context` and returns an exit code (or raises `CommandError` / `UsageError`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from components.config import DEFAULT_REGION, ConfigError, StackConfig, load_stack_config

EXIT_OK = 0
EXIT_FAILED = 1      # a check failed or an AWS operation failed
EXIT_USAGE = 2       # bad usage or input

# Standard retry mode: exponential backoff with jitter for throttling and transient errors.
BOTO_RETRIES = {"mode": "standard", "max_attempts": 8}


class CommandError(Exception):
    """An AWS operation or a check failed: exit 1 with this one-line message."""


class UsageError(Exception):
    """Bad usage or input: exit 2 with this one-line message naming the field and what is allowed."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def default_log_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "quickport-backup" / "operations.jsonl"


def add_common_options(parser: argparse.ArgumentParser, *, aws: bool = True) -> None:
    """--json, --log-file, --stack, --config-file; with aws: --region and --instance-id."""
    g = parser.add_argument_group("common options")
    g.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    g.add_argument("--stack", default="prod", help="stack whose Pulumi.<stack>.yaml gives defaults (default: prod)")
    g.add_argument("--config-file", type=Path, help="read the stack config from this file instead")
    g.add_argument("--log-file", type=Path, default=None,
                   help="operations log (JSON lines); default $XDG_STATE_HOME/quickport-backup/operations.jsonl")
    if aws:
        g.add_argument("--region", default=None,
                       help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION, else the stack's, else ap-south-1)")
        g.add_argument("--instance-id", default=None, help="production instance (default: the stack's instanceId)")


@dataclass
class Context:
    """Per-invocation state handed to every command handler."""
    args: argparse.Namespace
    command: str
    _config: Optional[StackConfig] = None
    _session: Any = None
    _clients: dict[str, Any] = field(default_factory=dict)
    # Test seam: pre-built clients by service name (e.g. a botocore Stubber'd "ec2" for APIs the
    # emulator lacks). Empty in normal use.
    client_overrides: dict[str, Any] = field(default_factory=dict)

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
                field = f"--config-file {path}" if path else f"--stack {getattr(self.args, 'stack', 'prod')}"
                reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
                raise UsageError(f"{field}: the stack config file cannot be read ({reason}); must be a "
                                 f"readable Pulumi.<stack>.yaml") from None
        return self._config

    @property
    def region(self) -> str:
        explicit = getattr(self.args, "region", None) or os.environ.get("AWS_REGION") \
            or os.environ.get("AWS_DEFAULT_REGION")
        if explicit:
            return explicit
        try:
            return self.config.region
        except UsageError:
            return DEFAULT_REGION

    @property
    def instance_id(self) -> str:
        return getattr(self.args, "instance_id", None) or self.config.instance_id

    # --- AWS ---
    def client(self, service: str, region: Optional[str] = None):
        """A boto3 client with standard retries. AWS_ENDPOINT_URL (and per-service variants) are
        honoured by botocore itself, so an emulator is reached exactly as real AWS is."""
        if service in self.client_overrides:
            return self.client_overrides[service]
        key = f"{service}@{region or self.region}"
        if key not in self._clients:
            import boto3
            from botocore.config import Config
            if self._session is None:
                self._session = boto3.session.Session()
            self._clients[key] = self._session.client(
                service, region_name=region or self.region,
                config=Config(retries=BOTO_RETRIES, user_agent_extra="quickport-backup"))
        return self._clients[key]

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

    def log(self, event: str, **details: Any) -> bool:
        """Append one timestamped JSON line to the operations log. Never fails the command;
        returns whether the line was written (the section 8 checklist reports it)."""
        path = getattr(self.args, "log_file", None) or default_log_file()
        record = {"time": utcnow().isoformat(timespec="seconds"), "command": self.command,
                  "event": event, "user": _user(), "host": socket.gethostname(), **details}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=str) + "\n")
        except OSError as e:
            print(f"warning: could not write operations log {path}: {e}", file=sys.stderr)
            return False
        return True


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def aws_error_message(exc: BaseException) -> str:
    """One line for a botocore error: the AWS error code and message, or the exception text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
