"""`backupctl db-restore` (to any second) and `db-events` (find the second): point-in-time recovery.

Arguments and rendering; the steps are scripts/workflows/pitr.py. The runbook is docs/pitr.md.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from scripts.agent import quickport_dump as qd
from scripts.commands.base import Context, add_common_options, number_in_range
from scripts.commands.database import DATABASE_RE, DATABASE_RULE, PREFIX_RULE, _check, _defaults_file
from scripts.errors import EXIT_FAILED, EXIT_OK, UsageError
from scripts.workflows import pitr as flow

DB_RESTORE_HELP = """\
Restore a database to any second of the binlog window, from the dump bucket alone (the source server may
be gone): the newest dump finished by --to-time whose binlog position lies in a shipped chain, then the
shipped binlogs from that position through the second --to-time inclusive, for --database only,
rewritten into --target-database. A transaction committed after that second is not applied.

Every object is checked against its SHA-256 before the server is touched; a gap in the needed binlogs,
a time before the first dump or after the last shipped point is refused with the latest time that can
be restored. The target is created new (an existing one only with --replace, dropped once everything
verified); any failure or Ctrl-C drops it again. The restore never writes to the server's own binlog.
Find the second with `backupctl db-events`; always --dry-run first. Runbook: docs/pitr.md."""

DB_EVENTS_HELP = """\
List DDL (ALTER, DROP, CREATE, TRUNCATE, ...) and large row changes (at least --min-rows rows in one
transaction) between two UTC times, with their GTIDs, from the shipped binlogs (each verified against its
SHA-256). Use it to find "just before the mistake": restore to one second before the event's time."""

TIME_RULE = "YYYY-MM-DDTHH:MM:SSZ"


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("db-restore", help="restore a database to any second (dump + shipped binlogs)",
                       description=DB_RESTORE_HELP, formatter_class=fmt)
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--to-time", metavar=TIME_RULE, help="restore through this second (UTC, inclusive)")
    when.add_argument("--latest", action="store_true", help="restore through the newest shipped point")
    _add_location(p)
    p.add_argument("--prefix", help="dump key prefix (default: the stack's dumps.prefix)")
    p.add_argument("--database", help="source database (default: the stack's dumps.database)")
    p.add_argument("--target-database", required=True, help="database to create on the server; must not exist "
                                                            "unless --replace")
    creds = p.add_mutually_exclusive_group()
    creds.add_argument("--defaults-file", type=Path, help="client option file of a user that may create the "
                                                          "database and SET sql_log_bin (default: the client's own)")
    creds.add_argument("--password-parameter", help="SSM SecureString with the password of --user")
    p.add_argument("--user", default="root", help="database user with --password-parameter (default: root)")
    p.add_argument("--socket", help="server socket with --password-parameter (default: the client's)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (dump, segments, bytes, estimated "
                                                          "time) and change nothing")
    p.add_argument("--replace", action="store_true", help="drop an existing --target-database first")
    add_common_options(p)
    p.set_defaults(handler=run_db_restore)

    p = sub.add_parser("db-events", help="list DDL and large row changes in the shipped binlogs",
                       description=DB_EVENTS_HELP, formatter_class=fmt)
    p.add_argument("--since", required=True, metavar=TIME_RULE, help="from this second (UTC)")
    p.add_argument("--until", required=True, metavar=TIME_RULE, help="through this second (UTC, inclusive)")
    p.add_argument("--grep", help="only events whose statement or table names match this regular expression")
    p.add_argument("--database", help="only this database's events (default: all)")
    p.add_argument("--min-rows", type=number_in_range("--min-rows", 1, 10 ** 9, "rows", integer=True),
                   default=1000, help="a row change is large from this many rows in one transaction (default 1000)")
    _add_location(p)
    add_common_options(p)
    p.set_defaults(handler=run_db_events)


def _add_location(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bucket", help="dump bucket (default: the stack's dumps.bucketName)")
    p.add_argument("--binlog-prefix", help="binlog key prefix (default: the stack's binlog.prefix)")


def _bucket_and_binlog_prefix(ctx: Context) -> tuple[str, str]:
    a = ctx.args
    bucket = _check(a.bucket or ctx.config.dumps.bucket_name, "--bucket", qd.BUCKET_RE, "must be an S3 bucket name")
    prefix = _check(getattr(a, "binlog_prefix", None) or ctx.config.binlog.prefix, "--binlog-prefix",
                    qd.PREFIX_RE, PREFIX_RULE)
    return bucket, prefix


def restore_request(ctx: Context, target: str, *, latest: bool, dry_run: bool = False,
                    replace: bool = False) -> flow.RestoreRequest:
    """The request from db-restore's (or the drill's) flags, stack defaults for what they leave out."""
    a = ctx.args
    bucket, binlog_prefix = _bucket_and_binlog_prefix(ctx)
    prefix = _check(a.prefix or ctx.config.dumps.prefix, "--prefix", qd.PREFIX_RE, PREFIX_RULE)
    database = _check(a.database or ctx.config.dumps.database, "--database", DATABASE_RE, DATABASE_RULE)
    to_time = None if latest else flow.parse_utc_second("--to-time", a.to_time)
    defaults_file = _defaults_file(getattr(a, "defaults_file", None))
    return flow.RestoreRequest(
        bucket=bucket, prefix=prefix, binlog_prefix=binlog_prefix, database=database,
        target=_check(target, "--target-database", DATABASE_RE, DATABASE_RULE), to_time=to_time,
        defaults_file=defaults_file, password_parameter=getattr(a, "password_parameter", None) or "",
        user=getattr(a, "user", None) or "root", socket=getattr(a, "socket", None),
        dry_run=dry_run, replace=replace)


def _plan_text(report: dict[str, Any]) -> list[str]:
    p = report["plan"]
    d = p["dump"]
    lines = [f"plan: {report['database']} -> {report['target_database']} through "
             f"{'the latest shipped point, ' if p['latest'] else ''}{p['to_time']}",
             f"  dump     s3://{report['bucket']}/{d['key']} ({d['bytes']} bytes, finished {d['finished_at']})",
             f"  replay   chain {p['chain']} from {p['start_file']}:{p['start_position']}"
             + (f", stop before {p['stop_datetime']}" if p["stop_datetime"] else "")]
    for s in p["segments"]:
        lines.append(f"    {s['file']:<22} {s['bytes']:>12} bytes  {s['first_event_at'] or '-'} .. "
                     f"{s['last_event_at'] or '-'}")
    lines.append(f"  total    {d['bytes'] + p['binlog_bytes']} bytes; estimated {p['estimated_seconds']:.0f} s")
    return lines


def _restore_text(report: dict[str, Any]) -> str:
    lines = _plan_text(report)
    if report["dry_run"]:
        return "\n".join([*lines, "", "DRY RUN: nothing was downloaded or changed"])
    last = report["last_transaction"]
    lines += ["", f"restored {report['target_database']} to {report['restored_to']}"
              + (" (replaced the existing database)" if report.get("replaced") else ""),
              f"  last applied transaction {last['gtid']} at {last['at']}" if last
              else "  no binlog transaction of the database after the dump",
              f"  {report['transactions_replayed']} transaction(s) replayed in {report['seconds']} s; "
              f"now - restored point = {report['rpo_seconds']} s"]
    width = max([len(t) for t in report["tables"]] + [5])
    lines.append(f"  {'table':<{width}}  {'rows':>10}")
    lines += [f"  {t:<{width}}  {n:>10}" for t, n in report["tables"].items()]
    return "\n".join(lines)


def run_db_restore(ctx: Context) -> int:
    a = ctx.args
    request = restore_request(ctx, a.target_database, latest=bool(a.latest), dry_run=bool(a.dry_run),
                              replace=bool(a.replace))
    report = flow.restore(ctx, request)
    ctx.emit(report, _restore_text(report))
    return EXIT_OK


def _events_text(report: dict[str, Any]) -> str:
    lines = [f"events {report['since']} .. {report['until']}"
             + (f" in {report['database']}" if report["database"] else "")
             + f" ({len(report['segments_scanned'])} segment(s) scanned; shipped through {report['covered_until']})"]
    for e in report["events"]:
        where = f"{e['gtid']:<12} {e['file']}:{e['position']}"
        if e["kind"] == "ddl":
            statement = " ".join(e["statement"].split())
            lines.append(f"  {e['at']}  {where}  DDL  {e['database'] or '-'}: {statement[:200]}")
        else:
            tables = ", ".join(f"{t} " + "/".join(f"{v} {k}" for k, v in c.items()) for t, c in e["tables"].items())
            lines.append(f"  {e['at']}  {where}  DML  {e['rows']} rows: {tables}")
    if not report["events"]:
        lines.append("  no DDL and no row change of at least "
                     f"{report['min_rows']} rows in this window")
    return "\n".join(lines)


def run_db_events(ctx: Context) -> int:
    a = ctx.args
    bucket, binlog_prefix = _bucket_and_binlog_prefix(ctx)
    since, until = flow.parse_utc_second("--since", a.since), flow.parse_utc_second("--until", a.until)
    if until < since:
        raise UsageError(f"--until {a.until!r}: must not be before --since {a.since!r}")
    if a.database:
        _check(a.database, "--database", DATABASE_RE, DATABASE_RULE)
    try:
        grep = re.compile(a.grep, re.IGNORECASE) if a.grep else None
    except re.error as e:
        raise UsageError(f"--grep {a.grep!r}: not a regular expression ({e})") from None
    report = flow.events(ctx, flow.EventsRequest(bucket=bucket, binlog_prefix=binlog_prefix, since=since,
                                                 until=until, database=a.database, grep=grep,
                                                 min_rows=a.min_rows))
    ctx.emit(report, _events_text(report))
    return EXIT_OK


# --- db-restore-drill --pitr ------------------------------------------------------------------------

def run_drill_pitr(ctx: Context) -> int:
    """The drill's --pitr: restore to the newest shipped point into the scratch database, report the
    recovered point and the RPO it shows; exit 1 above binlog.rpoBoundSeconds."""
    a = ctx.args
    if a.manifest:
        raise UsageError("--pitr: give --latest, not --manifest (the plan picks the dump for the newest point)")
    request = restore_request(ctx, a.target_database, latest=True)
    bound = ctx.config.binlog.rpo_bound_seconds
    report = flow.drill_pitr(ctx, request, keep=bool(a.keep), rpo_bound_seconds=bound)
    lines = _restore_text(report).splitlines()
    lines += ["", f"  scratch database {report['target_database']} "
                  + ("kept" if report["kept"] else "dropped afterwards"),
              f"RESULT: {'ok' if report['ok'] else 'FAILED'}: recovered point {report['restored_to']}, RPO "
              f"{report['rpo_seconds']} s (bound {bound} s)"]
    ctx.emit(report, "\n".join(lines))
    return EXIT_OK if report["ok"] else EXIT_FAILED
