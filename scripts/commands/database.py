"""`backupctl db-backup`, `db-restore-drill`, `files-restore`: logical backups and the proof they restore.

Arguments and rendering; the steps are scripts/workflows/database.py, the dump itself
scripts/agent/quickport_dump.py (the code the instance runs nightly).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from scripts.agent import quickport_dump as qd
from scripts.commands.base import Context, add_common_options, directory_target, port_number
from scripts.errors import EXIT_FAILED, EXIT_OK, UsageError
from scripts.workflows import database as flow

DATABASE_RE = qd.DATABASE_RE
DATABASE_RULE = "must be 1-64 characters A-Z a-z 0-9 _"
PREFIX_RULE = "must be lowercase a-z 0-9 . _ - segments separated by /"

DB_BACKUP_HELP = """\
Dump one database to S3 now, with the code the instance runs nightly (scripts/agent/quickport_dump.py):
mariadb-dump --single-transaction ... | zstd | S3 multipart upload, SHA-256 on the way. The object, its
manifest and <prefix>/<db>/latest.json are published only if every step succeeded; any failure aborts the
upload and exits 1 with nothing published. The password comes from the SSM parameter (default: the
stack's dumps.passwordParameter) or a client defaults file, and only ever sits in a 0600 option file."""

DRILL_HELP = """\
Prove a dump restores: download it, verify its SHA-256 against the manifest (refuse on mismatch), restore
it into a NEW scratch database on the server your client options reach, compare the table list, row
counts, views, triggers, routines and events with the manifest, then drop the scratch database (unless
--keep). Exit 0 when everything matches, 1 on any mismatch or failure, 2 on bad input (the target
exists or equals the source). Run it weekly; an untested backup is not a backup."""

FILES_RESTORE_HELP = """\
Restore one file or directory from the files archive: download the archive, verify its SHA-256 against
the manifest, extract only --path into a hidden staging directory beside --to (same filesystem), check
every file's SHA-256 and every symlink's target against the manifest, then rename it into place.
Symlinks come back as symlinks (absolute ones too, e.g. Laravel's public/storage) and are never
followed; members with absolute or '..' names make it refuse the archive. Any failure (a full disk, a
mismatch, Ctrl-C) leaves nothing at --to, so the re-run works. Never overwrites: existing targets under
--to are refused (exit 2), as is a --to that is a file (checked before the download)."""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("db-backup", help="dump the database to S3 now (same code as the nightly job)",
                       description=DB_BACKUP_HELP, formatter_class=fmt)
    p.add_argument("--database", help="database to dump (default: the stack's dumps.database)")
    p.add_argument("--bucket", help="dump bucket (default: the stack's dumps.bucketName)")
    p.add_argument("--prefix", help="key prefix (default: the stack's dumps.prefix)")
    creds = p.add_mutually_exclusive_group()
    creds.add_argument("--password-parameter", help="SSM SecureString with the password (default: the stack's)")
    creds.add_argument("--defaults-file", type=Path, help="client option file with user, password, socket")
    p.add_argument("--user", help="database user with --password-parameter (default: the stack's dumps.user)")
    p.add_argument("--socket", help="server socket with --password-parameter (default: the client's)")
    p.add_argument("--db-host", help="server host with --password-parameter")
    p.add_argument("--port", type=port_number, help="server port with --db-host (1-65535)")
    p.add_argument("--compression", choices=tuple(qd.COMPRESSORS), help="default: the stack's dumps.compression")
    p.add_argument("--priority", choices=tuple(qd.PRIORITIES),
                   help="CPU/IO priority of the dump pipeline: low (nice 10, I/O best-effort 7), idle "
                        "(nice 19, I/O idle) or normal (default: the stack's dumps.priority, low)")
    p.add_argument("--verify", choices=tuple(qd.VERIFY_MODES),
                   help="what proves the dump whole before it is published: frames (zstd's frame structure, "
                        "no extra CPU) or decompress (all of it again, ~1.3 CPU-s/GB, and the trailer read; "
                        "default: the stack's dumps.verify, frames)")
    add_common_options(p)
    p.set_defaults(handler=run_db_backup)

    p = sub.add_parser("db-restore-drill", help="restore a dump into a scratch database and check it",
                       description=DRILL_HELP, formatter_class=fmt)
    _add_source_options(p, "the dump <prefix>/<database>/latest.json names", "a dump's", "dumps.prefix")
    p.add_argument("--database", help="source database (default: the manifest's, or the stack's with --latest)")
    p.add_argument("--target-database", required=True, help="scratch database to create; must not exist")
    p.add_argument("--defaults-file", type=Path,
                   help="client option file of a user that may create/drop the scratch database "
                        "(default: the client's own option files, e.g. root over the unix socket)")
    p.add_argument("--keep", action="store_true", help="keep the scratch database for inspection")
    p.add_argument("--pitr", action="store_true",
                   help="with --latest: restore to the newest shipped binlog point (dump + binlogs, db-restore) "
                        "and exit 1 when the RPO it shows exceeds binlog.rpoBoundSeconds")
    p.add_argument("--binlog-prefix", help="with --pitr: binlog key prefix (default: the stack's binlog.prefix)")
    add_common_options(p)
    p.set_defaults(handler=run_db_restore_drill)

    p = sub.add_parser("files-restore", help="restore a file or directory from the files archive",
                       description=FILES_RESTORE_HELP, formatter_class=fmt)
    _add_source_options(p, "the archive <prefix>/<host>/latest.json names", "an archive's", "dumps.filesPrefix")
    p.add_argument("--path", required=True, help="absolute path as archived, e.g. /var/www/quickport/.env")
    p.add_argument("--to", required=True, type=Path,
                   help="directory to restore into, new or existing (--path is recreated under it)")
    p.add_argument("--host", help="host the archive came from (default: the only host under the prefix)")
    add_common_options(p)
    p.set_defaults(handler=run_files_restore)


def _add_source_options(p: argparse.ArgumentParser, latest: str, whose: str, prefix_key: str) -> None:
    """--latest | --manifest, and where they are: --bucket, --prefix."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--latest", action="store_true", help=latest)
    which.add_argument("--manifest", help=f"key of {whose} .manifest.json")
    p.add_argument("--bucket", help="dump bucket (default: the stack's dumps.bucketName)")
    p.add_argument("--prefix", help=f"key prefix (default: the stack's {prefix_key})")


# --- input checks and rendering ---------------------------------------------------------------------

def _check(value: str, field: str, pattern: re.Pattern, allowed: str) -> str:
    if not pattern.match(value or ""):
        raise UsageError(f"{field} {value!r}: {allowed}")
    return value


def _dump_location(ctx: Context) -> tuple[str, str]:
    a = ctx.args
    bucket = _check(a.bucket or ctx.config.dumps.bucket_name, "--bucket", qd.BUCKET_RE, "must be an S3 bucket name")
    prefix = _check(a.prefix or ctx.config.dumps.prefix, "--prefix", qd.PREFIX_RE, PREFIX_RULE)
    return bucket, prefix


def _scratch_fate(report: dict[str, Any]) -> str:
    if report["kept"]:
        return "kept"
    if "drop_error" in report:
        return f"NOT dropped: {report['drop_error']}; drop it by hand"
    return "dropped afterwards"


def _drill_text(report: dict[str, Any]) -> str:
    lines = [f"restore drill of s3://{report['bucket']}/{report['key']}",
             f"  sha256 verified {report['sha256']}; restored into {report['target_database']}"
             f" ({_scratch_fate(report)})", ""]
    width = max([len(t["table"]) for t in report["tables"]] + [5])
    lines.append(f"  {'table':<{width}}  {'manifest':>10}  {'restored':>10}")
    for t in report["tables"]:
        fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
        lines.append(f"  {t['table']:<{width}}  {fmt(t['expected']):>10}  {fmt(t['restored']):>10}"
                     f"  {'ok' if t['ok'] else 'MISMATCH'}")
    for o in report["objects"]:
        lines.append(f"  {o['kind']}: {', '.join(o['restored']) or '-'}"
                     f"  {'ok' if o['ok'] else 'MISMATCH, manifest has: ' + (', '.join(o['expected']) or '-')}")
    lines += ["", "RESULT: restore verified" if report["ok"]
              else "RESULT: MISMATCH, this dump does not restore as recorded"]
    return "\n".join(lines)


def _defaults_file(path):
    if path is not None and not path.is_file():
        raise UsageError(f"--defaults-file {path}: no such file")
    return path


def run_db_backup(ctx: Context) -> int:
    a = ctx.args

    def stack(key: str) -> str:
        """A dumps.* value from the stack config, read only when a flag leaves it out: with every
        flag given, db-backup needs no stack file (a machine without the checkout)."""
        return getattr(ctx.config.dumps, key)

    bucket, prefix = _dump_location(ctx)
    defaults_file = _defaults_file(a.defaults_file)
    request = flow.DumpRequest(
        database=_check(a.database or stack("database"), "--database", DATABASE_RE, DATABASE_RULE),
        bucket=bucket, prefix=prefix, compression=a.compression or stack("compression"),
        priority=a.priority or stack("priority"), verify=a.verify or stack("verify"),
        defaults_file=defaults_file,
        password_parameter="" if defaults_file else a.password_parameter or stack("password_parameter"),
        user=a.user or ("" if defaults_file else stack("user")), socket=a.socket, db_host=a.db_host, port=a.port)
    manifest = flow.db_backup(ctx, request)
    binlog = manifest.get("binlog")
    position = (f"binlog {binlog['file']}:{binlog['position']} gtid {binlog['gtid'] or '-'}" if binlog
                else "no binlog (log_bin is OFF: no point-in-time recovery from this dump)")
    ctx.emit(manifest, f"dump s3://{bucket}/{manifest['key']}\n"
                       f"  {manifest['bytes']} bytes {manifest['compression']}, sha256 {manifest['sha256']}\n"
                       f"  server {manifest['server_version']}, {position}\n"
                       f"  manifest {qd.manifest_key_for(manifest['key'])}")
    return EXIT_OK


def run_db_restore_drill(ctx: Context) -> int:
    a = ctx.args
    if a.pitr:
        from scripts.commands import pitr  # pitr imports this module's checks
        return pitr.run_drill_pitr(ctx)
    bucket, prefix = _dump_location(ctx)
    target = _check(a.target_database, "--target-database", DATABASE_RE, DATABASE_RULE)
    if a.database:
        _check(a.database, "--database", DATABASE_RE, DATABASE_RULE)
    defaults_file = _defaults_file(a.defaults_file)
    source_hint = a.database or (ctx.config.dumps.database if a.latest else None)
    if source_hint == target:
        raise UsageError(f"--target-database {target!r}: must differ from the source database")
    report = flow.drill(ctx, flow.DrillRequest(
        bucket=bucket, target=target, latest_key=f"{prefix}/{source_hint}/latest.json" if a.latest else None,
        manifest_key=a.manifest, database=a.database, defaults_file=defaults_file, keep=bool(a.keep)))
    ctx.emit(report, _drill_text(report))
    return EXIT_OK if report["ok"] else EXIT_FAILED


def run_files_restore(ctx: Context) -> int:
    a = ctx.args
    if not a.path.startswith("/") or ".." in a.path.split("/") or a.path.rstrip("/") == "":
        raise UsageError(f"--path {a.path!r}: must be an absolute path as archived, without '..'")
    bucket = _check(a.bucket or ctx.config.dumps.bucket_name, "--bucket", qd.BUCKET_RE, "must be an S3 bucket name")
    prefix = _check(a.prefix or ctx.config.dumps.files_prefix, "--prefix", qd.PREFIX_RE, PREFIX_RULE)
    host = _check(a.host, "--host", qd.HOST_RE, "must be a hostname") if a.host else None
    destination = directory_target("--to", a.to)
    report = flow.files_restore(ctx, flow.FilesArchiveRequest(
        bucket=bucket, prefix=prefix, path=a.path, destination=destination, latest=bool(a.latest),
        host=host, manifest_key=a.manifest))
    problems = report["problems"]
    ctx.emit(report, "\n".join([
        f"restored {a.path} from s3://{bucket}/{report['key']} into {report['to']}",
        f"  archive sha256 verified {report['archive_sha256']}; {report['files']} file(s) "
        + ("verified against the manifest" if not problems else "with problems:"),
        *[f"  {p}" for p in problems]]))
    return EXIT_OK if not problems else EXIT_FAILED
