"""Logical backups and the proof they restore: db-backup, db-restore-drill, files-restore.

The dump itself is scripts/agent/quickport_dump.py, the same code the SSM document runs on the
instance; here are the operator's sides of it: run it now, restore a dump into a scratch database and
compare it with its manifest, and restore files from the nightly archive.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from scripts.agent import quickport_dump as qd
from scripts.aws import s3 as s3api
from scripts.aws.errors import AWS_ERRORS, describe
from scripts.errors import CommandError, UsageError
from scripts.oplog import operation
from scripts.workflows.base import Session
from scripts.workflows.dump_inventory import DumpInspector

# --- dumps in S3 ------------------------------------------------------------------------------------

def download_verified(session: Session, s3, manifest: dict[str, Any], bucket: str, path: Path) -> str:
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
                session.progress(f"downloaded {done[0] / qd.MIB:.0f} of {size / qd.MIB:.0f} MiB")
    session.progress(f"downloading s3://{bucket}/{key} ({size / qd.MIB:.1f} MiB)")
    try:
        s3api.download(s3, bucket, key, str(path), on_bytes)
    except AWS_ERRORS + (OSError,) as e:   # OSError: a full or unwritable local disk
        raise CommandError(f"downloading s3://{bucket}/{key}: {describe(e)}") from None
    session.progress("downloaded; checking its size and SHA-256 against the manifest")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(qd.MIB), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != manifest["sha256"] or path.stat().st_size != size:
        raise CommandError(f"s3://{bucket}/{key}: SHA-256 {actual} ({path.stat().st_size} bytes) does not match "
                           f"the manifest's {manifest['sha256']} ({size} bytes); refusing to restore it")
    session.progress(f"SHA-256 verified: {actual}")
    return actual


def resolve_manifest(s3, bucket: str, latest_key: Optional[str],
                     manifest_key: Optional[str]) -> tuple[str, dict[str, Any]]:
    if manifest_key is None:
        if latest_key is None:
            raise UsageError("give --latest or --manifest")
        latest = s3api.read_json(s3, bucket, latest_key)
        manifest_key = latest.get("manifest")
        if not manifest_key:
            raise CommandError(f"s3://{bucket}/{latest_key} names no manifest")
    manifest = s3api.read_json(s3, bucket, manifest_key)
    missing = [k for k in ("key", "bytes", "sha256", "compression") if k not in manifest]
    if missing or manifest.get("compression") not in qd.COMPRESSORS:
        raise CommandError(f"s3://{bucket}/{manifest_key} is not a dump manifest (missing {missing or 'compression'})")
    wrong = manifest_type_error(manifest)
    if wrong:
        raise CommandError(f"s3://{bucket}/{manifest_key} is not a usable manifest: {wrong}")
    return manifest_key, manifest


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def manifest_type_error(manifest: dict[str, Any]) -> Optional[str]:
    """What is wrong-typed in a manifest (None: nothing). A manifest is data someone could have
    edited or truncated; each field the restore reads is checked here, so a bad one is one line
    naming it, not a traceback half-way through (`"bytes": "lots"`, `"tables": null`)."""
    if not isinstance(manifest.get("key"), str) or not manifest["key"]:
        return f"key {_shown(manifest.get('key'))} must be an object key"
    if not _count(manifest.get("bytes")):
        return f"bytes {_shown(manifest.get('bytes'))} must be a whole number of bytes"
    if not isinstance(manifest.get("sha256"), str) or not _is_sha256(manifest["sha256"]):
        return f"sha256 {_shown(manifest.get('sha256'))} must be 64 hex digits"
    if "tables" in manifest:
        tables = manifest["tables"]
        if not isinstance(tables, dict) or not all(isinstance(k, str) and _count(v) for k, v in tables.items()):
            return f"tables {_shown(tables)} must map each table name to its row count"
    if "objects" in manifest:
        objects = manifest["objects"]
        if not isinstance(objects, dict) or not all(
                isinstance(v, list) and all(isinstance(n, str) for n in v) for v in objects.values()):
            return f"objects {_shown(objects)} must map each kind to a list of names"
    if "files" in manifest:
        files = manifest["files"]
        if not isinstance(files, list):
            return f"files {_shown(files)} must be a list of files"
        for f in files:
            if not (isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("type"), str)):
                return f"files entry {_shown(f)} must have a path and a type"
            if f["type"] == "file" and not (_count(f.get("size")) and isinstance(f.get("sha256"), str)):
                return f"files entry {_shown(f['path'])} must have a size and a sha256"
    return None


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)



# A quoted literal in a client's message: a row value (Duplicate entry 'alice@example.com', Incorrect
# string value: '\xF0...'), so never shown; the error's code, state, line and wording say what broke.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"")
CHILD_ERROR_MAX = 200


def child_error(stderr_text: str) -> str:
    """One line for a client tool's failure, fit for stderr, --json and the operations log: its last
    non-empty line (MariaDB prints `ERROR 1062 (23000) at line 41: ...` last), every quoted value
    replaced by '?', capped at CHILD_ERROR_MAX characters."""
    lines = [line.strip() for line in stderr_text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = _QUOTED.sub("'?'", lines[-1])
    return line if len(line) <= CHILD_ERROR_MAX else line[:CHILD_ERROR_MAX] + "..."


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
            why = child_error(out.stderr.decode("utf-8", "replace")) or f"exit {out.returncode}"
            raise CommandError(f"mariadb: {why}")
        return [line.split("\t") for line in out.stdout.decode("utf-8").splitlines()]

    def restore(self, progress: Callable[[str], None], dump: Path, compression: str,
                database: str) -> DumpInspector:
        """decompressor < dump | mariadb <database>, with progress from the bytes fed in; returns what
        the dump holds (rows per table, objects), counted by a second decompressor beside the restore
        so that the restore's own pipe never waits for Python."""
        _, decompress, _ = qd.COMPRESSORS[compression]
        if not qd.find_program(decompress[0]):
            raise CommandError(f"{decompress[0]} is not installed; it is needed to read this dump")
        reaper = qd._Reaper()
        size = dump.stat().st_size
        inventory = DumpInspector()
        try:
            unpack = reaper.start(decompress, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert unpack.stdin is not None and unpack.stdout is not None  # both are pipes
            client = reaper.start([*self.argv, "--binary-mode", "--default-character-set=utf8mb4", database],
                                  stdin=unpack.stdout, stdout=subprocess.DEVNULL)
            unpack.stdout.close()  # the client owns the read end now
            with open(dump, "rb") as source:
                count = reaper.start(decompress, stdin=source, stdout=subprocess.PIPE)
            counter = threading.Thread(target=_inventory, args=(count.stdout, inventory), daemon=True,
                                       name="inventory")
            counter.start()
            fed, next_report = 0, 64 * qd.MIB
            with open(dump, "rb") as f:
                for block in iter(lambda: f.read(qd.MIB), b""):
                    try:
                        unpack.stdin.write(block)
                    except BrokenPipeError:
                        break  # the client or decompressor died; their exit codes say why
                    fed += len(block)
                    if fed >= next_report:
                        progress(f"restored {fed / qd.MIB:.0f} of {size / qd.MIB:.0f} MiB (compressed)")
                        next_report += 256 * qd.MIB
            with contextlib.suppress(BrokenPipeError):
                unpack.stdin.close()
            unpack.wait()
            client.wait()
            counter.join()
            count.wait()
        except BaseException:
            reaper.kill_all()
            raise
        if client.returncode != 0:
            raise CommandError(f"restore into {database} failed: mariadb {qd._exit_description(client)}: "
                               f"{child_error(reaper.message(client))}")
        if unpack.returncode != 0 or count.returncode != 0:
            raise CommandError(f"{decompress[0]} {qd._exit_description(unpack if unpack.returncode else count)}: "
                               f"{reaper.message(unpack) or reaper.message(count)}")
        if not inventory.completed:
            raise CommandError("the dump ends without its '-- Dump completed' trailer; it is truncated")
        return inventory


def _inventory(source, inventory: DumpInspector) -> None:
    """Feed the decompressed dump to the inspector (a thread: it runs while the restore does)."""
    with source:
        for chunk in iter(lambda: source.read(qd.MIB), b""):
            inventory.feed(chunk)
    inventory.finish()


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
        counts = {t: int(r[0]) for t, r in zip(tables, rows, strict=False)}
    objects = {}
    for kind, sql in (
            ("views", f"SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {s}"),
            ("triggers", f"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {s}"),
            ("routines", f"SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {s}"),
            ("events", f"SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {s}")):
        objects[kind] = sorted(r[0] for r in client.query(sql + ";"))
    return counts, objects


def compare(manifest: dict[str, Any], counts: dict[str, int], objects: dict[str, list[str]]) -> dict[str, Any]:
    """The restored tables, row counts and objects against `manifest`'s "tables" and "objects" (the
    drill passes what the dump itself holds, counted as it restored)."""
    expected: dict[str, int] = manifest.get("tables", {})
    tables = []
    for name in sorted(set(expected) | set(counts)):
        want, got = expected.get(name), counts.get(name)
        tables.append({"table": name, "expected": want, "restored": got, "ok": want == got})
    object_checks = []
    for kind, names in sorted((manifest.get("objects") or {}).items()):
        present = objects.get(kind, [])
        object_checks.append({"kind": kind, "expected": sorted(names), "restored": present,
                              "ok": sorted(names) == present})
    ok = all(t["ok"] for t in tables) and all(o["ok"] for o in object_checks)
    return {"ok": ok, "tables": tables, "objects": object_checks}


# --- db-backup --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DumpRequest:
    database: str
    bucket: str
    prefix: str
    compression: str
    priority: str = qd.DEFAULT_PRIORITY
    verify: str = qd.DEFAULT_VERIFY
    defaults_file: Optional[Path] = None      # else the password from the SSM parameter:
    password_parameter: str = ""
    user: str = "backup"
    socket: Optional[str] = None
    db_host: Optional[str] = None
    port: Optional[int] = None

    @property
    def credentials(self) -> str:
        return (f"defaults file {self.defaults_file}" if self.defaults_file
                else f"SSM parameter {self.password_parameter}")


def db_backup(session: Session, request: DumpRequest) -> dict[str, Any]:
    """Dump now with the nightly code; returns the manifest. Nothing is published on failure."""
    r = request
    with operation(session.log, "db-backup", database=r.database, bucket=r.bucket,
                   start={"prefix": r.prefix, "credentials": r.credentials}) as op:
        try:
            with qd.terminate_on_signals():
                common = dict(database=r.database, bucket=r.bucket, prefix=r.prefix, compression=r.compression,
                              priority=r.priority, verify=r.verify, s3=session.client("s3"),
                              progress=session.progress)
                if r.defaults_file:
                    manifest = qd.dump_database(defaults_file=str(r.defaults_file), **common)
                else:
                    password = qd.password_from_parameter(r.password_parameter, session.region)
                    with qd.client_defaults_file(r.user, password, r.socket, r.db_host, r.port) as path:
                        del password
                        manifest = qd.dump_database(defaults_file=path, **common)
        except qd.UsageProblem as e:
            raise UsageError(str(e)) from None
        except (qd.BackupFailed, qd.Terminated) as e:
            op.end("failed", error=str(e))
            raise CommandError(f"{e}; nothing was published") from None
        op.end("succeeded", key=manifest["key"], sha256=manifest["sha256"], bytes=manifest["bytes"])
    return manifest


# --- db-restore-drill -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DrillRequest:
    bucket: str
    target: str                         # the scratch database; must not exist
    latest_key: Optional[str] = None    # <prefix>/<db>/latest.json, or:
    manifest_key: Optional[str] = None
    database: Optional[str] = None      # the source the operator expects (checked against the manifest)
    defaults_file: Optional[Path] = None
    keep: bool = False


class _Scratch:
    """The drill's scratch database: dropped once unless kept; a failed drop is reported, because a
    copy of production data left on the server needs a person."""

    def __init__(self, session: Session, client: "Client", name: str, keep: bool, report: dict[str, Any]):
        self.session, self.client, self.name, self.keep, self.report = session, client, name, keep, report
        self.created = False

    def create(self) -> None:
        self.client.query(f"CREATE DATABASE {sql_ident(self.name)} CHARACTER SET utf8mb4;")
        self.created = True

    def drop(self) -> None:
        if self.created and not self.keep:
            self.created = False
            try:
                self.client.query(f"DROP DATABASE {sql_ident(self.name)};")
            except CommandError as e:
                self.report["drop_error"] = str(e)
                self.session.progress(f"warning: could not drop scratch database {self.name}: {e}; drop it by hand")


def _check_drill_source(request: DrillRequest, manifest_key: str, manifest: dict[str, Any]) -> None:
    source, target = manifest.get("database"), request.target
    if request.database and source != request.database:
        raise UsageError(f"--database {request.database!r}: the manifest {manifest_key} is a dump of {source!r}")
    if source == target:
        raise UsageError(f"--target-database {target!r}: must differ from the source database")


def _drill_target(client: "Client", request: DrillRequest) -> str:
    target = request.target
    if schema_exists(client, target):
        raise UsageError(f"--target-database {target!r}: exists on the server; the drill only restores into "
                         f"a new database (choose another name, or drop it yourself)")
    return target


def drill(session: Session, request: DrillRequest) -> dict[str, Any]:
    """Restore a dump into a new scratch database and compare it with its manifest; the report."""
    s3 = session.client("s3")
    manifest_key, manifest = resolve_manifest(s3, request.bucket, request.latest_key, request.manifest_key)
    _check_drill_source(request, manifest_key, manifest)   # bad input is exit 2 before any tool is needed
    client = Client(request.defaults_file)
    target = _drill_target(client, request)
    session.log("db-restore-drill-started", manifest=manifest_key, target=target)
    report: dict[str, Any] = {"bucket": request.bucket, "manifest": manifest_key, "key": manifest["key"],
                              "database": manifest.get("database"), "target_database": target,
                              "kept": request.keep}
    scratch = _Scratch(session, client, target, request.keep, report)
    try:
        with qd.terminate_on_signals(), tempfile.TemporaryDirectory(prefix="quickport-drill-") as tmp:
            dump = Path(tmp) / Path(manifest["key"]).name
            report["sha256"] = download_verified(session, s3, manifest, request.bucket, dump)
            scratch.create()
            session.progress(f"restoring into scratch database {target}")
            dumped = client.restore(session.progress, dump, manifest["compression"], target)
        session.progress("comparing tables, row counts and objects with what the dump holds")
        counts, objects = restored_inventory(client, target)
        expected = {"tables": dumped.tables, "objects": dumped.objects}
        report.update(compare(expected, counts, objects))
    except (CommandError, qd.Terminated, OSError) as e:   # OSError: a full disk for the download
        scratch.drop()
        leftover = (f"; scratch database {target} was NOT dropped ({report['drop_error']}): drop it by hand"
                    if "drop_error" in report else "")
        session.log("db-restore-drill-failed", manifest=manifest_key, target=target, error=str(e),
                    drop_error=report.get("drop_error"))
        raise CommandError(f"{e}{leftover}") from None
    finally:
        scratch.drop()
    if "drop_error" in report:
        report["ok"] = False
    session.log("db-restore-drill-finished", manifest=manifest_key, target=target, ok=report["ok"],
                mismatches=[t["table"] for t in report["tables"] if not t["ok"]] +
                [o["kind"] for o in report["objects"] if not o["ok"]],
                drop_error=report.get("drop_error"))
    return report


# --- files-restore ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FilesArchiveRequest:
    bucket: str
    prefix: str
    path: str                            # absolute, as archived
    destination: Path                    # resolved
    latest: bool = False
    host: Optional[str] = None           # with latest: default, the only host under the prefix
    manifest_key: Optional[str] = None


def single_host(s3, bucket: str, prefix: str) -> str:
    try:
        hosts = s3api.child_prefixes(s3, bucket, prefix)
    except Exception as e:  # botocore errors and the like: one line naming what was listed
        raise CommandError(f"listing s3://{bucket}/{prefix}/: {describe(e)}") from None
    if len(hosts) != 1:
        raise UsageError(f"--host: required; hosts under s3://{bucket}/{prefix}/ are: {', '.join(hosts) or 'none'}")
    return hosts[0]


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/")


# What the "data" filter drops from a link too: archived owners and modes (a link's mode is moot).
_NO_OWNER: dict[str, Any] = {"uid": None, "gid": None, "uname": None, "gname": None, "mode": None}


def _links_as_links(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's "data" filter, except that a symbolic link comes back as the link it was, wherever
    it points (Laravel's `storage:link` makes public/storage an absolute one). A link is only ever
    created, never followed: the filter resolves every member's own path, so a later member whose
    path runs through a link that leaves the tree is refused, and nothing is written through it."""
    if member.issym():
        tarfile.tar_filter(member, dest)   # its own name must stay inside dest
        return member.replace(**_NO_OWNER, deep=False)
    return tarfile.data_filter(member, dest)


def _extract(session: Session, tar: tarfile.TarFile, member: str, destination: Path, manifest_key: str,
             manifest: dict[str, Any]) -> None:
    """Extract only `member` (and what is under it) into `destination` after refusing unsafe members
    of the archive; symlinks come back as symlinks (`_links_as_links`)."""
    members = tar.getmembers()
    bad = [m.name for m in members if _unsafe(m.name) or (m.islnk() and _unsafe(m.linkname))]
    if bad:
        session.log("files-restore-refused", manifest=manifest_key, unsafe_member=bad[0])
        raise CommandError(f"archive {manifest['key']} has an unsafe member {bad[0]!r} (absolute or '..'); "
                           f"refusing to extract anything from it")
    selected = [m for m in members if m.name == member or m.name.startswith(member + "/")]
    # Run the filter over every member first: one it refuses (a device file, a hard link leaving
    # the tree) stops the restore in one line before anything is written.
    for m in selected:
        try:
            _links_as_links(m, str(destination))
        except tarfile.FilterError as e:
            session.log("files-restore-refused", manifest=manifest_key, unsafe_member=m.name)
            target = f" (-> {m.linkname})" if m.issym() or m.islnk() else ""
            raise CommandError(f"archive {manifest['key']}: {e}{target}; refusing to extract "
                               f"anything from it") from None
    destination.mkdir(parents=True, exist_ok=True)
    tar.extractall(destination, members=selected, filter=_links_as_links)


def _verify_staged(staging: Path, wanted: list[dict[str, Any]]) -> list[str]:
    """Each file's SHA-256 and each link's target in the staging tree against the manifest."""
    problems = []
    for f in wanted:
        staged = staging / f["path"].strip("/")
        if f["type"] == "file":
            digest = None
            if staged.is_file() and not staged.is_symlink():
                h = hashlib.sha256()
                with open(staged, "rb") as data:
                    for block in iter(lambda: data.read(qd.MIB), b""):
                        h.update(block)
                digest = h.hexdigest()
            if digest != f["sha256"]:
                problems.append(f"{f['path']}: sha256 {digest} != manifest {f['sha256']}")
        elif f["type"] == "symlink" and "target" in f:
            target = os.readlink(staged) if staged.is_symlink() else None
            if target != f["target"]:
                problems.append(f"{f['path']}: link to {target!r} != manifest {f['target']!r}")
    return problems


def _move_into_place(staging: Path, destination: Path) -> None:
    """Rename the verified tree into `destination` (same filesystem: renames, no copies). A new
    destination is one rename; into an existing directory, each entry it lacks is renamed in, and
    should a rename fail, the ones done are moved back, so it is all or nothing."""
    if not os.path.lexists(destination):
        os.rename(staging, destination)
        return
    done: list[tuple[Path, Path]] = []
    try:
        pending = [(staging, destination)]
        while pending:
            source_dir, target_dir = pending.pop()
            for entry in sorted(source_dir.iterdir()):
                target = target_dir / entry.name
                if target.is_dir() and not target.is_symlink() and entry.is_dir() and not entry.is_symlink():
                    pending.append((entry, target))
                elif os.path.lexists(target):   # checked before the download; appeared since
                    raise FileExistsError(f"{target} appeared during the restore; restore never overwrites")
                else:
                    os.rename(entry, target)
                    done.append((target, entry))
    except BaseException:
        for target, entry in reversed(done):
            os.rename(target, entry)
        raise


def files_restore(session: Session, request: FilesArchiveRequest) -> dict[str, Any]:
    """Restore one path from the nightly files archive: extract it into a hidden staging directory
    beside --to (same filesystem), verify every file's SHA-256 and every link's target against the
    manifest, then rename it into place. Any failure (a full disk, a mismatch, Ctrl-C) leaves nothing
    at --to that was not there before, so the re-run works."""
    r = request
    member, destination = r.path.strip("/"), r.destination
    s3 = session.client("s3")
    latest_key = None
    if r.latest:
        latest_key = f"{r.prefix}/{r.host or single_host(s3, r.bucket, r.prefix)}/latest.json"
    manifest_key, manifest = resolve_manifest(s3, r.bucket, latest_key, r.manifest_key)
    wanted = [f for f in manifest.get("files") or []
              if f["path"].strip("/") == member or f["path"].strip("/").startswith(member + "/")]
    if not wanted:
        raise CommandError(f"--path {r.path}: not in the archive {manifest['key']}")
    clashes = [f["path"] for f in wanted if os.path.lexists(destination / f["path"].strip("/"))
               and not (f.get("type") == "dir" and (destination / f["path"].strip("/")).is_dir())]
    if clashes:
        raise UsageError(f"--to {destination}: {destination / clashes[0].strip('/')} exists; restore never "
                         f"overwrites, choose an empty directory")
    session.log("files-restore-started", manifest=manifest_key, path=r.path, to=str(destination))
    created = [p for p in (destination.parent, *destination.parent.parents) if not os.path.lexists(p)]
    staging: Optional[Path] = None
    try:
        with qd.terminate_on_signals(), tempfile.TemporaryDirectory(prefix="quickport-files-") as tmp:
            archive = Path(tmp) / "archive"
            sha = download_verified(session, s3, manifest, r.bucket, archive)
            tar_path = Path(tmp) / "archive.tar"
            _, decompress, _ = qd.COMPRESSORS[manifest["compression"]]
            with open(archive, "rb") as src, open(tar_path, "wb") as out:
                unpack = subprocess.run(decompress, stdin=src, stdout=out, stderr=subprocess.PIPE,
                                        env=qd.child_env())
            if unpack.returncode != 0:
                raise CommandError(f"{decompress[0]} failed: {unpack.stderr.decode(errors='replace').strip()}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.restoring-", dir=destination.parent))
            session.progress(f"extracting into {staging} (beside {destination}), then verifying")
            with tarfile.open(tar_path, "r:") as tar:
                _extract(session, tar, member, staging, manifest_key, manifest)
            problems = _verify_staged(staging, wanted)
            if problems:
                raise CommandError(f"{len(problems)} restored file(s) differ from the manifest, nothing was put "
                                   f"at {destination}: {problems[0]}")
            _move_into_place(staging, destination)
    except BaseException as e:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for parent in created:   # innermost first: only the empty ones this run made
            with contextlib.suppress(OSError):
                parent.rmdir()
        interrupted = isinstance(e, (KeyboardInterrupt, qd.Terminated))
        session.log("files-restore-interrupted" if interrupted else "files-restore-failed", manifest=manifest_key,
                    path=r.path, to=str(destination), error=str(e) or type(e).__name__)
        if isinstance(e, tarfile.TarError):   # e.g. a member that would be written through a link
            raise CommandError(f"archive {manifest['key']}: {e}; refusing it, nothing was put at "
                               f"{destination}") from None
        if isinstance(e, OSError):   # e.g. a full disk: one line naming what failed
            raise CommandError(f"restoring {r.path} into {destination}: {e.strerror or e}; nothing was put "
                               f"there (staging removed), fix it and re-run") from None
        raise
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    files = sum(f.get("type") == "file" for f in wanted)
    session.log("files-restore-finished", manifest=manifest_key, path=r.path, to=str(destination),
                files=files, ok=True)
    return {"bucket": r.bucket, "manifest": manifest_key, "key": manifest["key"], "archive_sha256": sha,
            "path": r.path, "to": str(destination), "files": files, "ok": True, "problems": []}
