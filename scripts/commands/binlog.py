"""`backupctl binlog-ship`: ship MariaDB's binary logs to S3 now (--once) or until stopped (--follow).

Arguments and defaults from the stack's binlog.* config; the shipping is scripts/agent/binlog_ship.py,
the code the instance's quickport-binlog service runs (scripts/workflows/binlog.py starts it).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from scripts.agent import binlog_ship as agent
from scripts.commands.base import Context, add_common_options, number_in_range
from scripts.commands.database import PREFIX_RULE
from scripts.commands.database import _check as check_value
from scripts.errors import UsageError
from scripts.workflows import binlog as flow

HELP = """\
Ship the server's binary logs to s3://BUCKET/PREFIX/<chain>/ with the code the instance's quickport-binlog
service runs (scripts/agent/binlog_ship.py). Each interval: if the current binlog holds a transaction not
yet shipped, FLUSH BINARY LOGS closes it; every closed file is copied byte for byte (mariadb-binlog
--read-from-remote-server --raw), hashed, uploaded with a small manifest, recorded in the chain's
index (index.json, older entries sealed into index/NNNNN.json pages). --once runs one interval (exit 1
on a failure or a gap in the chain, naming the missing file and the latest restorable time); --follow
runs until SIGTERM/Ctrl-C, then ships what there is and exits 0.
A kill resumes without gap or duplicate from --state-dir; while S3 is unreachable files wait in the spool
(bounded by --spool-megabytes). The password comes from the SSM parameter (default: the stack's
binlog.passwordParameter) or a client option file, and only ever sits in a 0600 option file.
Check the server first: python3 scripts/agent/binlog_ship.py --check --defaults-file F (docs/binlog-shipping.md)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("binlog-ship", help="ship MariaDB binary logs to S3 (point-in-time recovery)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one interval, then exit")
    mode.add_argument("--follow", action="store_true", help="every --interval seconds until stopped")
    p.add_argument("--interval", type=number_in_range("--interval", 5, 300, "seconds", integer=True),
                   help="seconds between intervals with --follow, 5..300 (default: the stack's binlog.intervalSeconds)")
    p.add_argument("--bucket", help="dump bucket (default: the stack's dumps.bucketName)")
    p.add_argument("--prefix", help="key prefix of the segments (default: the stack's binlog.prefix)")
    creds = p.add_mutually_exclusive_group()
    creds.add_argument("--password-parameter", help="SSM SecureString with the password (default: the stack's)")
    creds.add_argument("--defaults-file", type=Path, help="client option file with user, password, socket")
    p.add_argument("--user", help="database user with --password-parameter (default: the stack's binlog.user)")
    p.add_argument("--socket", help="server socket with --password-parameter (default: the client's)")
    p.add_argument("--state-dir", type=Path, default=Path(agent.DEFAULT_STATE_DIR),
                   help=f"where the chain's state and the spool live (default: {agent.DEFAULT_STATE_DIR}, "
                        "the service's: the two never run at once, the second refuses)")
    p.add_argument("--spool-megabytes", type=number_in_range("--spool-megabytes", 16, 1048576, "MiB", integer=True),
                   help="local spool bound while S3 is unreachable (default: the stack's binlog.spoolMegabytes)")
    add_common_options(p)
    p.set_defaults(handler=run_binlog_ship)


def run_binlog_ship(ctx: Context) -> int:
    a = ctx.args

    def stack(section: str, key: str):
        """A stack value, read only when a flag leaves it out (every flag given: no stack file needed)."""
        return getattr(getattr(ctx.config, section), key)

    bucket = check_value(a.bucket or stack("dumps", "bucket_name"), "--bucket", agent.BUCKET_RE,
                         "must be an S3 bucket name")
    prefix = check_value(a.prefix or stack("binlog", "prefix"), "--prefix", agent.PREFIX_RE, PREFIX_RULE)
    if a.defaults_file is not None and not a.defaults_file.is_file():
        raise UsageError(f"--defaults-file {a.defaults_file}: no such file")
    user = "" if a.defaults_file else check_value(a.user or stack("binlog", "user"), "--user", agent.USER_RE,
                                                  "must be 1-80 characters A-Z a-z 0-9 _")
    if a.state_dir.exists() and not a.state_dir.is_dir():
        raise UsageError(f"--state-dir {a.state_dir}: must be a directory")
    parent = _existing_parent(a.state_dir)
    if not a.state_dir.exists() and not (parent.is_dir() and os.access(parent, os.W_OK)):
        raise UsageError(f"--state-dir {a.state_dir}: cannot be created ({parent} is not a directory you may "
                         "write); give one you may")
    request = flow.ShipRequest(
        bucket=bucket, prefix=prefix, follow=bool(a.follow), interval=a.interval or stack("binlog", "interval_seconds"),
        state_dir=a.state_dir, spool_megabytes=a.spool_megabytes or stack("binlog", "spool_megabytes"),
        defaults_file=a.defaults_file,
        password_parameter="" if a.defaults_file else a.password_parameter or stack("binlog", "password_parameter"),
        user=user, socket=a.socket, region=ctx.region, json=ctx.json)
    ctx.log("started", bucket=bucket, prefix=prefix, follow=request.follow)
    code = flow.ship(request)
    ctx.log("finished", exitCode=code)
    return code


def _existing_parent(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path("/")
