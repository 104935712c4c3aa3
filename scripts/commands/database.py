"""`backupctl db-backup`, `db-restore-drill`, `files-restore`: logical backups and the proof they restore.

The dump itself is scripts/quickport_dump.py, the same code the SSM document runs on the instance.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

from scripts import quickport_dump as qd
from scripts.common import EXIT_FAILED, EXIT_OK, CommandError, Context, UsageError, add_common_options, aws_error_message

DATABASE_RE = qd.DATABASE_RE

DB_BACKUP_HELP = """\
Dump one database to S3 now, with the code the instance runs nightly (scripts/quickport_dump.py):
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
the manifest, extract only --path into --to (members with absolute or '..' names make it refuse the
archive), then check each restored file's SHA-256 against the manifest. Never overwrites: existing
targets under --to are refused."""


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
    p.add_argument("--port", type=int, help="server port with --db-host")
    p.add_argument("--compression", choices=tuple(qd.COMPRESSORS), help="default: the stack's dumps.compression")
    add_common_options(p)
    p.set_defaults(handler=run_db_backup)

    p = sub.add_parser("db-restore-drill", help="restore a dump into a scratch database and check it",
                       description=DRILL_HELP, formatter_class=fmt)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--latest", action="store_true", help="the dump <prefix>/<database>/latest.json names")
    which.add_argument("--manifest", help="key of a dump's .manifest.json")
    p.add_argument("--bucket", help="dump bucket (default: the stack's dumps.bucketName)")
    p.add_argument("--prefix", help="key prefix (default: the stack's dumps.prefix)")
    p.add_argument("--database", help="source database (default: the manifest's, or the stack's with --latest)")
    p.add_argument("--target-database", required=True, help="scratch database to create; must not exist")
    p.add_argument("--defaults-file", type=Path,
                   help="client option file of a user that may create/drop the scratch database "
                        "(default: the client's own option files, e.g. root over the unix socket)")
    p.add_argument("--keep", action="store_true", help="keep the scratch database for inspection")
    add_common_options(p)
    p.set_defaults(handler=run_db_restore_drill)

    p = sub.add_parser("files-restore", help="restore a file or directory from the files archive",
                       description=FILES_RESTORE_HELP, formatter_class=fmt)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--latest", action="store_true", help="the archive <prefix>/<host>/latest.json names")
    which.add_argument("--manifest", help="key of an archive's .manifest.json")
    p.add_argument("--path", required=True, help="absolute path as archived, e.g. /var/www/quickport/.env")
    p.add_argument("--to", required=True, type=Path, help="directory to restore into (the path is recreated under it)")
    p.add_argument("--bucket", help="bucket (default: the stack's dumps.bucketName)")
    p.add_argument("--prefix", help="key prefix (default: the stack's dumps.filesPrefix)")
    p.add_argument("--host", help="host the archive came from (default: the only host under the prefix)")
    add_common_options(p)
    p.set_defaults(handler=run_files_restore)


# --- thin S3 functions ------------------------------------------------------------------------------

def read_json(s3, bucket: str, key: str) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:
        raise CommandError(f"reading s3://{bucket}/{key}: {aws_error_message(e)}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise CommandError(f"s3://{bucket}/{key} is not JSON") from None


def download_verified(ctx: Context, s3, manifest: dict[str, Any], bucket: str, path: Path) -> str:
    """Download the manifest's object (s3transfer: ranged, parallel, retried) and check its size and
    SHA-256 against the manifest before anything else uses it. Returns the SHA-256."""
    key, size = manifest["key"], int(manifest["bytes"])
    done = [0, 0]
    lock = threading.Lock()

    def on_bytes(n: int) -> None:
        with lock:
            done[0] += n
            if done[0] - done[1] >= 256 * qd.MIB:
                done[1] = done[0]
                ctx.progress(f"downloaded {done[0] / qd.MIB:.0f} of {size / qd.MIB:.0f} MiB")
    ctx.progress(f"downloading s3://{bucket}/{key} ({size / qd.MIB:.1f} MiB)")
    try:
        s3.download_file(bucket, key, str(path), Callback=on_bytes)
    except Exception as e:
        raise CommandError(f"downloading s3://{bucket}/{key}: {aws_error_message(e)}") from None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(qd.MIB), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != manifest["sha256"] or path.stat().st_size != size:
        raise CommandError(f"s3://{bucket}/{key}: SHA-256 {actual} ({path.stat().st_size} bytes) does not match "
                           f"the manifest's {manifest['sha256']} ({size} bytes); refusing to restore it")
    ctx.progress(f"SHA-256 verified: {actual}")
    return actual


def resolve_manifest(ctx: Context, s3, bucket: str, latest_key: Optional[str],
                     manifest_key: Optional[str]) -> tuple[str, dict[str, Any]]:
    if manifest_key is None:
        latest = read_json(s3, bucket, latest_key)
        manifest_key = latest.get("manifest")
        if not manifest_key:
            raise CommandError(f"s3://{bucket}/{latest_key} names no manifest")
    manifest = read_json(s3, bucket, manifest_key)
    missing = [k for k in ("key", "bytes", "sha256", "compression") if k not in manifest]
    if missing or manifest.get("compression") not in qd.COMPRESSORS:
        raise CommandError(f"s3://{bucket}/{manifest_key} is not a dump manifest (missing {missing or 'compression'})")
    return manifest_key, manifest


# --- the MariaDB client -----------------------------------------------------------------------------

class Client:
    """The mariadb command-line client with the operator's option file (or the client's own files)."""

    def __init__(self, defaults_file: Optional[Path]):
        program = qd.find_program("mariadb", "mysql")
        if not program:
            raise CommandError("neither the mariadb nor the mysql client is installed")
        self.argv = [program] + ([f"--defaults-file={defaults_file}"] if defaults_file else [])

    def query(self, sql: str) -> list[list[str]]:
        out = subprocess.run([*self.argv, "--batch", "--skip-column-names", "--default-character-set=utf8mb4"],
                             input=sql.encode(), capture_output=True, env=qd.child_env(), timeout=3600)
        if out.returncode != 0:
            lines = out.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CommandError(f"mariadb: {lines[-1] if lines else f'exit {out.returncode}'}")
        return [line.split("\t") for line in out.stdout.decode("utf-8").splitlines()]

    def restore(self, ctx: Context, dump: Path, compression: str, database: str) -> None:
        """decompressor < dump | mariadb <database>, with progress from the bytes fed in."""
        _, decompress, _ = qd.COMPRESSORS[compression]
        if not qd.find_program(decompress[0]):
            raise CommandError(f"{decompress[0]} is not installed; it is needed to read this dump")
        reaper = qd._Reaper()
        size = dump.stat().st_size
        try:
            unpack = reaper.start(decompress, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            client = reaper.start([*self.argv, "--binary-mode", "--default-character-set=utf8mb4", database],
                                  stdin=unpack.stdout, stdout=subprocess.DEVNULL)
            unpack.stdout.close()  # the client owns the read end now
            fed, next_report = 0, 64 * qd.MIB
            with open(dump, "rb") as f:
                for block in iter(lambda: f.read(qd.MIB), b""):
                    try:
                        unpack.stdin.write(block)
                    except BrokenPipeError:
                        break  # the client or decompressor died; their exit codes say why
                    fed += len(block)
                    if fed >= next_report:
                        ctx.progress(f"restored {fed / qd.MIB:.0f} of {size / qd.MIB:.0f} MiB (compressed)")
                        next_report += 256 * qd.MIB
            with contextlib.suppress(BrokenPipeError):
                unpack.stdin.close()
            unpack.wait()
            client.wait()
        except BaseException:
            reaper.kill_all()
            raise
        if client.returncode != 0:
            raise CommandError(f"restore into {database} failed: mariadb {qd._exit_description(client)}: "
                               f"{reaper.message(client)}")
        if unpack.returncode != 0:
            raise CommandError(f"{decompress[0]} {qd._exit_description(unpack)}: {reaper.message(unpack)}")


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_ident(value: str) -> str:
    return "`" + value.replace("`", "``") + "`"


def schema_exists(client: Client, name: str) -> bool:
    return bool(client.query(f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {sql_string(name)};"))


def restored_inventory(client: Client, database: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Base tables with exact row counts, and the views/triggers/routines/events of `database`."""
    s = sql_string(database)
    tables = [r[0] for r in client.query(
        f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {s} "
        f"AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME;")]
    counts: dict[str, int] = {}
    if tables:
        rows = client.query("".join(f"SELECT COUNT(*) FROM {sql_ident(database)}.{sql_ident(t)};\n" for t in tables))
        counts = {t: int(r[0]) for t, r in zip(tables, rows)}
    objects = {}
    for kind, sql in (
            ("views", f"SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {s}"),
            ("triggers", f"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {s}"),
            ("routines", f"SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {s}"),
            ("events", f"SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {s}")):
        objects[kind] = sorted(r[0] for r in client.query(sql + ";"))
    return counts, objects


def compare(manifest: dict[str, Any], counts: dict[str, int], objects: dict[str, list[str]]) -> dict[str, Any]:
    expected: dict[str, int] = manifest.get("tables", {})
    tables = []
    for name in sorted(set(expected) | set(counts)):
        want, got = expected.get(name), counts.get(name)
        tables.append({"table": name, "expected": want, "restored": got, "ok": want == got})
    object_checks = []
    for kind, names in sorted((manifest.get("objects") or {}).items()):
        got = objects.get(kind, [])
        object_checks.append({"kind": kind, "expected": sorted(names), "restored": got,
                              "ok": sorted(names) == got})
    ok = all(t["ok"] for t in tables) and all(o["ok"] for o in object_checks)
    return {"ok": ok, "tables": tables, "objects": object_checks}


# --- handlers ---------------------------------------------------------------------------------------

def _check(value: str, field: str, pattern: re.Pattern, allowed: str) -> str:
    if not pattern.match(value or ""):
        raise UsageError(f"{field} {value!r}: {allowed}")
    return value


def _dump_location(ctx: Context) -> tuple[str, str]:
    a = ctx.args
    bucket = _check(a.bucket or ctx.config.dumps.bucket_name, "--bucket", qd.BUCKET_RE, "must be an S3 bucket name")
    prefix = _check(a.prefix or ctx.config.dumps.prefix, "--prefix", qd.PREFIX_RE,
                    "must be lowercase a-z 0-9 . _ - segments separated by /")
    return bucket, prefix


def run_db_backup(ctx: Context) -> int:
    a = ctx.args
    bucket, prefix = _dump_location(ctx)
    database = _check(a.database or ctx.config.dumps.database, "--database", DATABASE_RE,
                      "must be 1-64 characters A-Z a-z 0-9 _")
    compression = a.compression or ctx.config.dumps.compression
    if a.defaults_file is not None and not a.defaults_file.is_file():
        raise UsageError(f"--defaults-file {a.defaults_file}: no such file")
    source = f"defaults file {a.defaults_file}" if a.defaults_file else \
        f"SSM parameter {a.password_parameter or ctx.config.dumps.password_parameter}"
    ctx.log("db-backup-started", database=database, bucket=bucket, prefix=prefix, credentials=source)
    try:
        with qd.terminate_on_signals():
            common = dict(database=database, bucket=bucket, prefix=prefix, compression=compression,
                          s3=ctx.client("s3"), progress=ctx.progress)
            if a.defaults_file:
                manifest = qd.dump_database(defaults_file=str(a.defaults_file), **common)
            else:
                password = qd.password_from_parameter(a.password_parameter or ctx.config.dumps.password_parameter,
                                                      ctx.region)
                with qd.client_defaults_file(a.user or ctx.config.dumps.user, password,
                                             a.socket, a.db_host, a.port) as path:
                    del password
                    manifest = qd.dump_database(defaults_file=path, **common)
    except qd.UsageProblem as e:
        raise UsageError(str(e)) from None
    except (qd.BackupFailed, qd.Terminated) as e:
        ctx.log("db-backup-failed", database=database, bucket=bucket, error=str(e))
        raise CommandError(f"{e}; nothing was published") from None
    ctx.log("db-backup-succeeded", database=database, bucket=bucket, key=manifest["key"],
            sha256=manifest["sha256"], bytes=manifest["bytes"])
    rows = sum(manifest["tables"].values())
    ctx.emit(manifest, f"dump s3://{bucket}/{manifest['key']}\n"
                       f"  {manifest['bytes']} bytes {manifest['compression']}, sha256 {manifest['sha256']}\n"
                       f"  {len(manifest['tables'])} tables, {rows} rows, server {manifest['server_version']}\n"
                       f"  manifest {qd.manifest_key_for(manifest['key'])}")
    return EXIT_OK


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
    lines += ["", "RESULT: restore verified" if report["ok"] else "RESULT: MISMATCH, this dump does not restore as recorded"]
    return "\n".join(lines)


def run_db_restore_drill(ctx: Context) -> int:
    a = ctx.args
    bucket, prefix = _dump_location(ctx)
    target = _check(a.target_database, "--target-database", DATABASE_RE, "must be 1-64 characters A-Z a-z 0-9 _")
    if a.database:
        _check(a.database, "--database", DATABASE_RE, "must be 1-64 characters A-Z a-z 0-9 _")
    if a.defaults_file is not None and not a.defaults_file.is_file():
        raise UsageError(f"--defaults-file {a.defaults_file}: no such file")
    source_hint = a.database or (ctx.config.dumps.database if a.latest else None)
    if source_hint == target:
        raise UsageError(f"--target-database {target!r}: must differ from the source database")
    s3 = ctx.client("s3")
    manifest_key, manifest = resolve_manifest(
        ctx, s3, bucket, f"{prefix}/{source_hint}/latest.json" if a.latest else None, a.manifest)
    source = manifest.get("database")
    if a.database and source != a.database:
        raise UsageError(f"--database {a.database!r}: the manifest {manifest_key} is a dump of {source!r}")
    if source == target:
        raise UsageError(f"--target-database {target!r}: must differ from the source database")
    client = Client(a.defaults_file)
    if schema_exists(client, target):
        raise UsageError(f"--target-database {target!r}: exists on the server; the drill only restores into "
                         f"a new database (choose another name, or drop it yourself)")
    ctx.log("db-restore-drill-started", manifest=manifest_key, target=target)
    report: dict[str, Any] = {"bucket": bucket, "manifest": manifest_key, "key": manifest["key"],
                              "database": source, "target_database": target, "kept": bool(a.keep)}
    created = False

    def drop_scratch() -> None:
        """Drop the scratch database once; a failure is reported, because a copy of production
        data left on the server needs a person."""
        nonlocal created
        if created and not a.keep:
            created = False
            try:
                client.query(f"DROP DATABASE {sql_ident(target)};")
            except CommandError as e:
                report["drop_error"] = str(e)
                ctx.progress(f"warning: could not drop scratch database {target}: {e}; drop it by hand")

    try:
        with qd.terminate_on_signals(), tempfile.TemporaryDirectory(prefix="quickport-drill-") as tmp:
            dump = Path(tmp) / Path(manifest["key"]).name
            report["sha256"] = download_verified(ctx, s3, manifest, bucket, dump)
            client.query(f"CREATE DATABASE {sql_ident(target)} CHARACTER SET utf8mb4;")
            created = True
            ctx.progress(f"restoring into scratch database {target}")
            client.restore(ctx, dump, manifest["compression"], target)
        ctx.progress("comparing tables, row counts and objects with the manifest")
        counts, objects = restored_inventory(client, target)
        report.update(compare(manifest, counts, objects))
    except (CommandError, qd.Terminated) as e:
        drop_scratch()
        leftover = (f"; scratch database {target} was NOT dropped ({report['drop_error']}): drop it by hand"
                    if "drop_error" in report else "")
        ctx.log("db-restore-drill-failed", manifest=manifest_key, target=target, error=str(e),
                drop_error=report.get("drop_error"))
        raise CommandError(f"{e}{leftover}") from None
    finally:
        drop_scratch()
    if "drop_error" in report:
        report["ok"] = False
    ctx.log("db-restore-drill-finished", manifest=manifest_key, target=target, ok=report["ok"],
            mismatches=[t["table"] for t in report["tables"] if not t["ok"]] +
                       [o["kind"] for o in report["objects"] if not o["ok"]],
            drop_error=report.get("drop_error"))
    ctx.emit(report, _drill_text(report))
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _single_host(s3, bucket: str, prefix: str) -> str:
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/", Delimiter="/")
        hosts = [cp["Prefix"][len(prefix) + 1:].rstrip("/") for page in pages for cp in page.get("CommonPrefixes", [])]
    except Exception as e:
        raise CommandError(f"listing s3://{bucket}/{prefix}/: {aws_error_message(e)}") from None
    if len(hosts) != 1:
        raise UsageError(f"--host: required; hosts under s3://{bucket}/{prefix}/ are: {', '.join(hosts) or 'none'}")
    return hosts[0]


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/")


def run_files_restore(ctx: Context) -> int:
    a = ctx.args
    if not a.path.startswith("/") or ".." in a.path.split("/") or a.path.rstrip("/") == "":
        raise UsageError(f"--path {a.path!r}: must be an absolute path as archived, without '..'")
    bucket = _check(a.bucket or ctx.config.dumps.bucket_name, "--bucket", qd.BUCKET_RE, "must be an S3 bucket name")
    prefix = _check(a.prefix or ctx.config.dumps.files_prefix, "--prefix", qd.PREFIX_RE,
                    "must be lowercase a-z 0-9 . _ - segments separated by /")
    member = a.path.strip("/")
    s3 = ctx.client("s3")
    latest_key = None
    if a.latest:
        host = _check(a.host, "--host", qd.HOST_RE, "must be a hostname") if a.host else _single_host(s3, bucket, prefix)
        latest_key = f"{prefix}/{host}/latest.json"
    manifest_key, manifest = resolve_manifest(ctx, s3, bucket, latest_key, a.manifest)
    wanted = [f for f in manifest.get("files", [])
              if f["path"].strip("/") == member or f["path"].strip("/").startswith(member + "/")]
    if not wanted:
        raise CommandError(f"--path {a.path}: not in the archive {manifest['key']}")
    destination = a.to.resolve()
    clashes = [f["path"] for f in wanted if os.path.lexists(destination / f["path"].strip("/"))
               and f.get("type") != "dir"]
    if clashes:
        raise UsageError(f"--to {a.to}: {destination / clashes[0].strip('/')} exists; restore never overwrites, "
                         f"choose an empty directory")
    ctx.log("files-restore-started", manifest=manifest_key, path=a.path, to=str(destination))
    with qd.terminate_on_signals(), tempfile.TemporaryDirectory(prefix="quickport-files-") as tmp:
        archive = Path(tmp) / "archive"
        sha = download_verified(ctx, s3, manifest, bucket, archive)
        tar_path = Path(tmp) / "archive.tar"
        _, decompress, _ = qd.COMPRESSORS[manifest["compression"]]
        with open(archive, "rb") as src, open(tar_path, "wb") as out:
            unpack = subprocess.run(decompress, stdin=src, stdout=out, stderr=subprocess.PIPE, env=qd.child_env())
        if unpack.returncode != 0:
            raise CommandError(f"{decompress[0]} failed: {unpack.stderr.decode(errors='replace').strip()}")
        with tarfile.open(tar_path, "r:") as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if _unsafe(m.name) or (m.islnk() and _unsafe(m.linkname))]
            if bad:
                ctx.log("files-restore-refused", manifest=manifest_key, unsafe_member=bad[0])
                raise CommandError(f"archive {manifest['key']} has an unsafe member {bad[0]!r} (absolute or '..'); "
                                   f"refusing to extract anything from it")
            selected = [m for m in members if m.name == member or m.name.startswith(member + "/")]
            # Run the "data" filter over every member first: one it refuses (e.g. an absolute symlink)
            # must stop the restore in one line before anything is written, not half-way with a traceback.
            for m in selected:
                try:
                    tarfile.data_filter(m, str(destination))
                except tarfile.FilterError as e:
                    ctx.log("files-restore-refused", manifest=manifest_key, unsafe_member=m.name)
                    target = f" (-> {m.linkname})" if m.issym() or m.islnk() else ""
                    raise CommandError(f"archive {manifest['key']}: {e}{target}; refusing to extract "
                                       f"anything from it") from None
            destination.mkdir(parents=True, exist_ok=True)
            # The "data" filter also refuses links pointing outside the destination and device files.
            tar.extractall(destination, members=selected, filter="data")
    problems = []
    for f in wanted:
        if f.get("type") != "file":
            continue
        restored = destination / f["path"].strip("/")
        digest = hashlib.sha256(restored.read_bytes()).hexdigest() if restored.is_file() else None
        if digest != f["sha256"]:
            problems.append(f"{restored}: sha256 {digest} != manifest {f['sha256']}")
    files = sum(f.get("type") == "file" for f in wanted)
    ctx.log("files-restore-finished", manifest=manifest_key, path=a.path, to=str(destination),
            files=files, ok=not problems)
    report = {"bucket": bucket, "manifest": manifest_key, "key": manifest["key"], "archive_sha256": sha,
              "path": a.path, "to": str(destination), "files": files, "ok": not problems, "problems": problems}
    ctx.emit(report, "\n".join([f"restored {a.path} from s3://{bucket}/{manifest['key']} into {destination}",
                                f"  archive sha256 verified {sha}; {files} file(s) "
                                + ("verified against the manifest" if not problems else "with problems:"),
                                *[f"  {p}" for p in problems]]))
    return EXIT_OK if not problems else EXIT_FAILED
