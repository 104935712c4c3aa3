"""Point-in-time restore from the dump bucket alone: db-restore, db-events, db-restore-drill --pitr.

1. Read the dumps' manifests and the binlog chains' indexes (docs/pitr.md has the layout).
2. Plan: the newest dump finished by T whose binlog coordinates lie in a chain that covers T without a
   gap; the segments from the dump's file to the one that holds second T.
3. Download the dump and every segment, each checked against its SHA-256 before the server is touched.
4. Restore the dump into the new database, then `mariadb-binlog --start-position --stop-datetime
   --database --rewrite-db --disable-log-bin | mariadb NAME`. Any failure (or Ctrl-C) drops NAME: a
   database is presented as restored only after every step succeeded.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from scripts.agent import quickport_dump as qd
from scripts.aws import s3 as s3api
from scripts.aws.errors import AWS_ERRORS, describe
from scripts.errors import CommandError, UsageError
from scripts.times import parse_time, utcnow
from scripts.workflows.base import Session
from scripts.workflows.binlog_index import index_key, read_chain_index
from scripts.workflows.database import (
    Client,
    download_verified,
    restored_inventory,
    schema_exists,
    sql_ident,
    sql_string,
)

# Measured by bench/bench_pitr.py on the 2-core build machine (docs/pitr.md: 119.8 MiB of zstd dump
# plus 28.5 MiB of binlogs in 38.0 s, download and checks included): MiB of dump + binlog restored per
# second. Only for the dry run's estimate; a server with more cores restores faster.
RESTORE_MIB_PER_SECOND = 3.9
ONE_SECOND = dt.timedelta(seconds=1)
INCOMPLETE_COMMENT = "quickport-backup: INCOMPLETE point-in-time restore in progress; not a usable copy"


def isoz(t: Optional[dt.datetime]) -> Optional[str]:
    return None if t is None else t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tool_time(t: dt.datetime) -> str:
    """A time as mariadb-binlog reads it: local time of its zone, which the children get as UTC."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def tool_env() -> dict[str, str]:
    """The children's minimal environment (no secrets), in UTC: mariadb-binlog reads --start/stop-
    datetime and prints event times in its local zone."""
    return {**qd.child_env(), "TZ": "UTC"}


def file_number(name: str) -> int:
    """mariadb-bin.000012 -> 12 (the server numbers its binlog files consecutively)."""
    try:
        return int(name.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        raise CommandError(f"{name!r} is not a binlog file name (base.NNNNNN)") from None


# --- what is in the bucket --------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    chain: str
    file: str
    key: str
    bytes: int
    sha256: str
    first_gtid: Optional[str]
    last_gtid: Optional[str]
    first_event_at: Optional[dt.datetime]
    last_event_at: Optional[dt.datetime]

    def describe(self) -> dict[str, Any]:
        return {"file": self.file, "key": self.key, "bytes": self.bytes, "sha256": self.sha256,
                "first_gtid": self.first_gtid, "last_gtid": self.last_gtid,
                "first_event_at": isoz(self.first_event_at), "last_event_at": isoz(self.last_event_at)}


@dataclass(frozen=True)
class Chain:
    id: str
    server_id: int
    segments: tuple[Segment, ...]
    confirmed_at: Optional[dt.datetime]
    closed: Optional[dict[str, Any]]
    confirmed_file: Optional[str] = None       # the server's binlog end the shipper last saw, all
    confirmed_position: Optional[int] = None   # before it shipped

    @property
    def restorable_until(self) -> Optional[dt.datetime]:
        """The last second a restore can reach: the newest shipped event, or later if the shipper
        confirmed since that nothing more was written (an idle database is not a stale one)."""
        times = [t for t in (self.confirmed_at, *(s.last_event_at for s in self.segments)) if t]
        return max(times) if times else None

    def missing_between(self, first: int, last: int) -> Optional[str]:
        """The first binlog file numbered first..last that the chain does not hold."""
        have = {file_number(s.file) for s in self.segments}
        base = self.segments[0].file.rsplit(".", 1)[0] if self.segments else "mariadb-bin"
        width = len(self.segments[0].file.rsplit(".", 1)[1]) if self.segments else 6
        return next((f"{base}.{n:0{width}d}" for n in range(first, last + 1) if n not in have), None)


@dataclass(frozen=True)
class Dump:
    manifest_key: str
    manifest: dict[str, Any]
    finished_at: dt.datetime

    @property
    def binlog(self) -> Optional[dict[str, Any]]:
        coordinates = self.manifest.get("binlog")
        return coordinates if isinstance(coordinates, dict) and coordinates.get("file") else None


def _segment(chain: str, entry: dict[str, Any]) -> Segment:
    return Segment(chain=chain, file=str(entry["file"]), key=str(entry["key"]), bytes=int(entry["bytes"]),
                   sha256=str(entry["sha256"]), first_gtid=entry.get("first_gtid"),
                   last_gtid=entry.get("last_gtid"), first_event_at=parse_time(entry.get("first_event_at")),
                   last_event_at=parse_time(entry.get("last_event_at")))


def read_chains(s3, bucket: str, prefix: str) -> list[Chain]:
    """Every chain's index under the binlog prefix (head and pages), oldest first."""
    chains = []
    try:
        ids = s3api.binlog_chain_ids(s3, bucket, prefix)
    except AWS_ERRORS as e:
        raise CommandError(f"listing s3://{bucket}/{prefix}/: {describe(e)}") from None
    for chain_id in ids:
        key = index_key(prefix, chain_id)
        try:
            index = read_chain_index(s3, bucket, prefix, chain_id)
        except AWS_ERRORS as e:
            raise CommandError(f"reading the index of chain {chain_id} (s3://{bucket}/{key} and its pages): "
                               f"{describe(e)}") from None
        if index is None:
            raise CommandError(f"reading s3://{bucket}/{key}: NoSuchKey: The specified key does not exist.")
        try:
            segments = tuple(sorted((_segment(chain_id, e) for e in index.get("segments") or []),
                                    key=lambda s: file_number(s.file)))
        except (KeyError, TypeError, ValueError) as e:
            raise CommandError(f"s3://{bucket}/{key}: a segment entry lacks {e}") from None
        chains.append(Chain(id=chain_id, server_id=int(index.get("server_id", 0)), segments=segments,
                            confirmed_at=parse_time(index.get("confirmed_at")), closed=index.get("closed"),
                            confirmed_file=index.get("confirmed_file"),
                            confirmed_position=_int_or_none(index.get("confirmed_position"))))
    return chains


def _int_or_none(value: Any) -> Optional[int]:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def read_dumps(s3, bucket: str, prefix: str, database: str) -> list[Dump]:
    """Every dump manifest of `database`, newest first (by finished_at)."""
    try:
        keys = s3api.dump_manifest_keys(s3, bucket, prefix, database)
    except AWS_ERRORS as e:
        raise CommandError(f"listing s3://{bucket}/{prefix}/{database}/: {describe(e)}") from None
    dumps = []
    for key in keys:
        manifest = s3api.read_json(s3, bucket, key)
        finished = parse_time(manifest.get("finished_at"))
        if finished and manifest.get("key") and manifest.get("sha256"):
            dumps.append(Dump(manifest_key=key, manifest=manifest, finished_at=finished))
    return sorted(dumps, key=lambda d: d.finished_at, reverse=True)


def _gap_record(s3, bucket: str, prefix: str, chain: Chain) -> Optional[dict[str, Any]]:
    with contextlib.suppress(*AWS_ERRORS, ValueError):
        keys = [k for k in s3api.keys_under(s3, bucket, f"{prefix}/gaps/") if k.endswith(f"-{chain.id}.json")]
        if keys:
            return s3api.read_json_object(s3, bucket, sorted(keys)[-1])
    return None


# --- the plan ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreRequest:
    bucket: str
    prefix: str                       # dumps.prefix
    binlog_prefix: str                # binlog.prefix
    database: str                     # the source database (in the dumps and the binlogs)
    target: str                       # the database to create
    to_time: Optional[dt.datetime]    # None: --latest
    defaults_file: Optional[Path] = None      # else the password from the SSM parameter:
    password_parameter: str = ""
    user: str = "root"
    socket: Optional[str] = None
    dry_run: bool = False
    replace: bool = False


@dataclass
class Plan:
    dump: Dump
    chain: Chain
    segments: list[Segment]
    start_position: int
    target_time: dt.datetime          # the second restored through (inclusive)
    latest: bool
    alternatives: list[Dump] = field(default_factory=list)   # older dumps in the same chain, newest first

    @property
    def binlog_bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    @property
    def estimated_seconds(self) -> float:
        return (int(self.dump.manifest["bytes"]) + self.binlog_bytes) / qd.MIB / RESTORE_MIB_PER_SECOND

    def describe(self) -> dict[str, Any]:
        m = self.dump.manifest
        return {"dump": {"manifest": self.dump.manifest_key, "key": m["key"], "bytes": int(m["bytes"]),
                         "sha256": m["sha256"], "finished_at": isoz(self.dump.finished_at),
                         "binlog": self.dump.binlog},
                "chain": self.chain.id, "start_file": (self.dump.binlog or {}).get("file"),
                "start_position": self.start_position,
                "segments": [s.describe() for s in self.segments], "binlog_bytes": self.binlog_bytes,
                "to_time": isoz(self.target_time), "latest": self.latest,
                "stop_datetime": None if self.latest else isoz(self.target_time + ONE_SECOND),
                "estimated_seconds": round(self.estimated_seconds, 2)}


def _chain_of(chains: list[Chain], coordinates: dict[str, Any]) -> Optional[Chain]:
    """The chain holding the dump's binlog file; or the one whose confirmed point is in that file at
    or after the dump's position: the shipper leaves a file open only while it holds no transaction
    to ship, so the dump alone is the database up to confirmed_at (an idle database after the dump)."""
    server_id = int(coordinates.get("server_id") or 0)
    for chain in reversed(chains):
        if server_id and chain.server_id != server_id:
            continue
        if any(s.file == coordinates["file"] for s in chain.segments):
            return chain
        if (chain.confirmed_file == coordinates["file"] and chain.confirmed_position is not None
                and int(coordinates.get("position") or 0) <= chain.confirmed_position):
            return chain
    return None


def _refuse_gap(s3, request: RestoreRequest, chain: Chain, wanted: str, dump: Dump,
                missing: Optional[str]) -> CommandError:
    """Why `wanted` cannot be reached replaying `chain` from the dump, and the latest second that can:
    the chain's end (max(last event, confirmed_at)) when it is whole from the dump's file on; else the
    last event of the unbroken run of segments from the dump's file to the first missing one (a hole
    with or without a gap record; the gap record's own time when the hole is the gap's)."""
    assert dump.binlog is not None
    gap = _gap_record(s3, request.bucket, request.binlog_prefix, chain) if chain.closed else None
    start = file_number(dump.binlog["file"])
    if missing is None and chain.segments:
        missing = chain.missing_between(start, file_number(chain.segments[-1].file))
    if missing is None and gap:
        missing = gap.get("missing_from")
    latest = isoz(chain.restorable_until)
    if missing is not None:
        run = [s.last_event_at for s in chain.segments
               if start <= file_number(s.file) < file_number(missing) and s.last_event_at]
        latest = isoz(_reachable(run, dump.finished_at))
        if gap and gap.get("missing_from") == missing and gap.get("latest_restorable_at"):
            latest = gap["latest_restorable_at"]
    reason = f" ({gap['reason']})" if gap and gap.get("reason") else (
        f" (chain closed: {chain.closed.get('reason')})" if chain.closed else "")
    what = f"segment {missing} of chain {chain.id} is missing{reason}" if missing else \
        f"chain {chain.id} has nothing shipped after {latest}{reason}"
    return CommandError(f"cannot restore to {wanted}: {what}; {_latest_phrase(latest, dump.finished_at)}")


def _reachable(run: list[dt.datetime], dump_finished: dt.datetime) -> Optional[dt.datetime]:
    """The latest second the dump plus an unbroken run of segments (their last event times) reaches:
    the dump holds its start, so its finish is reached only by replaying up to it; None when the run
    ends before that."""
    reached = max(run, default=None)
    return reached if reached and reached >= dump_finished else None


def _latest_phrase(latest: Optional[str], dump_finished: dt.datetime) -> str:
    if latest is None:
        return (f"the binlogs from the dump that finished at {isoz(dump_finished)} end before it finished, so no "
                f"time from it can be reached: choose a time before that dump (an earlier one is used) or take "
                f"a new dump")
    return f"the latest time it can restore to is {latest}"


def plan(session: Session, request: RestoreRequest) -> Plan:
    """Choose the dump and the segments; refuse (one line) what cannot be restored exactly."""
    s3 = session.client("s3")
    dumps = read_dumps(s3, request.bucket, request.prefix, request.database)
    if not dumps:
        raise CommandError(f"no dump of {request.database} under s3://{request.bucket}/{request.prefix}/"
                           f"{request.database}/")
    chains = read_chains(s3, request.bucket, request.binlog_prefix)
    wanted = "the latest shipped point" if request.to_time is None else str(isoz(request.to_time))
    before = dumps if request.to_time is None else [d for d in dumps if d.finished_at <= request.to_time]
    if not before:
        first = min(d.finished_at for d in dumps)
        raise CommandError(f"cannot restore to {wanted}: it is before the first dump of {request.database}, "
                           f"which finished at {isoz(first)}")
    usable = [(d, _chain_of(chains, d.binlog)) for d in before if d.binlog]
    usable = [(d, c) for d, c in usable if c is not None]
    if not usable:
        raise CommandError(f"cannot restore to {wanted}: no dump of {request.database} finished by then has "
                           f"binlog coordinates in a shipped chain under s3://{request.bucket}/"
                           f"{request.binlog_prefix}/ (newest dump: {before[0].manifest_key})")
    dump, chain = usable[0]
    assert dump.binlog is not None and chain is not None   # filtered above
    until = chain.restorable_until
    target = request.to_time or until
    if target is None or until is None or target > until:
        raise _refuse_gap(s3, request, chain, wanted, dump, None)
    start = file_number(dump.binlog["file"])
    needed: list[Segment] = []
    for segment in chain.segments:
        if file_number(segment.file) < start:
            continue
        needed.append(segment)
        # mariadb-binlog stops at the first event at or after T+1s: a file holding one is the last needed.
        if request.to_time is not None and segment.last_event_at and segment.last_event_at >= target + ONE_SECOND:
            break
    missing = chain.missing_between(start, file_number(needed[-1].file)) if needed else None
    if missing:
        raise _refuse_gap(s3, request, chain, wanted, dump, missing)
    if target < dump.finished_at:
        target = dump.finished_at   # --latest on a chain confirmed before the dump finished
    alternatives = [d for d, c in usable[1:] if c is chain]
    return Plan(dump=dump, chain=chain, segments=needed, start_position=int(dump.binlog.get("position") or 4),
                target_time=target.replace(microsecond=0), latest=request.to_time is None,
                alternatives=alternatives)


# --- reading mariadb-binlog's output ----------------------------------------------------------------

# `#261202  6:37:35 server id 1  end_log_pos 2726 CRC32 0xf6e1a63c \tGTID 0-1-14 trans`
HEADER = re.compile(rb"^#(\d{6}) +(\d{1,2}):(\d\d):(\d\d) server id (\d+) +end_log_pos (\d+)[^\t\n]*\t([^\n]*)$",
                    re.MULTILINE)


def _header_time(m: re.Match) -> dt.datetime:
    day = m.group(1).decode()
    return dt.datetime(2000 + int(day[:2]), int(day[2:4]), int(day[4:]), int(m.group(2)), int(m.group(3)),
                       int(m.group(4)), tzinfo=dt.timezone.utc)


class CommitTracker:
    """Follows the replay stream's event headers: the last transaction that reached its commit (Xid,
    or the DDL's query) with something of the database in it. A transaction cut off by
    --stop-datetime never reaches its Xid, so it is never reported; mariadb-binlog's closing ROLLBACK
    (and the client's disconnect) undo it on the server."""

    def __init__(self) -> None:
        self.pending: Optional[tuple[str, bool]] = None   # (gtid, is_ddl)
        self.content = False
        self.last_gtid: Optional[str] = None
        self.last_time: Optional[dt.datetime] = None
        self.transactions = 0
        self.seen_time: Optional[dt.datetime] = None

    def feed(self, lines: bytes) -> None:
        """Whole lines of mariadb-binlog's output."""
        for m in HEADER.finditer(lines):
            body = m.group(7)
            if body.startswith(b"GTID "):
                parts = body.split()
                self.pending, self.content = (parts[1].decode(), parts[-1] == b"ddl"), False
            elif self.pending is None:
                continue
            elif body.startswith(b"Table_map:"):
                self.content = True
            elif body.startswith(b"Xid = ") or (body.startswith(b"Query") and self.pending[1]):
                if self.content or self.pending[1]:
                    self._commit(self.pending[0], _header_time(m))
                self.pending = None
            self.seen_time = _header_time(m)

    def _commit(self, gtid: str, at: dt.datetime) -> None:
        self.last_gtid, self.last_time = gtid, at
        self.transactions += 1


# The source's GTID of each transaction. Replaying it on a server in gtid_strict_mode fails as soon as
# that server's own sequence is ahead (error 1950), even with sql_log_bin=0, and the copy is not the
# source: its transactions take no GTID of the source's domain. Dropped from the stream.
SOURCE_GTID = re.compile(rb"^/\*M!100001 SET @@session\.(?:gtid_seq_no|gtid_domain_id|server_id)=\d+\*//\*!\*/;\n",
                         re.MULTILINE)


def _binlog_argv(segments: list[Path], start_position: Optional[int], stop: Optional[dt.datetime],
                 database: Optional[str], extra: Iterable[str] = ()) -> list[str]:
    program = qd.find_program("mariadb-binlog", "mysqlbinlog")
    if not program:
        raise CommandError("mariadb-binlog is not installed (the MariaDB client package has it)")
    argv = [program, "--no-defaults", *extra]
    if start_position is not None:
        argv.append(f"--start-position={start_position}")   # applies to the first file only
    if stop is not None:
        argv.append(f"--stop-datetime={_tool_time(stop)}")   # the first event at or after it is not read
    if database:
        argv.append(f"--database={database}")
    return [*argv, *map(str, segments)]


class _UnloggedClient(Client):
    """The mariadb client with sql_log_bin=0 for the session: a restore must not land in the target
    server's own binlog (on production that would ship the copy as new writes)."""

    def __init__(self, defaults_file: Optional[Path]):
        super().__init__(defaults_file)
        self.argv.append("--init-command=SET SESSION sql_log_bin=0")


def replay(session: Session, client: Client, plan_: Plan, files: list[Path], source: str, target: str) -> CommitTracker:
    """mariadb-binlog ... | (commit tracker) | mariadb target."""
    stop = None if plan_.latest else plan_.target_time + ONE_SECOND
    argv = _binlog_argv(files, plan_.start_position, stop, source,
                        ["--disable-log-bin", f"--rewrite-db={source}->{target}"])
    tracker = CommitTracker()
    reaper = qd._Reaper()
    env = tool_env()
    try:
        reader = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True)
        reaper.procs.append(reader)
        writer = reaper.start([*client.argv, "--binary-mode", "--default-character-set=utf8mb4", target],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert reader.stdout is not None and writer.stdin is not None
        errors: list[bytes] = []
        drain = threading.Thread(target=lambda: errors.append(reader.stderr.read() if reader.stderr else b""),
                                 daemon=True)
        drain.start()
        fed, next_report, partial = 0, 64 * qd.MIB, b""
        for chunk in iter(lambda: reader.stdout.read(qd.MIB), b""):   # type: ignore[union-attr]
            data = partial + chunk
            cut = data.rfind(b"\n") + 1
            lines, partial = data[:cut], data[cut:]
            tracker.feed(lines)
            try:
                writer.stdin.write(SOURCE_GTID.sub(b"", lines))
            except BrokenPipeError:
                break   # the client died; its exit code says why
            fed += len(chunk)
            if fed >= next_report:
                session.progress(f"replayed {fed / qd.MIB:.0f} MiB of binlog events, at {isoz(tracker.seen_time)}")
                next_report += 64 * qd.MIB
        with contextlib.suppress(BrokenPipeError):
            writer.stdin.write(partial)   # mariadb-binlog ends its output with a newline: normally empty
            writer.stdin.close()
        reader.wait()
        writer.wait()
        drain.join(timeout=10)
    except BaseException:
        reaper.kill_all()
        raise
    if reader.returncode != 0:
        message = (errors[0] if errors else b"").decode("utf-8", "replace").strip().splitlines()
        raise CommandError(f"mariadb-binlog {qd._exit_description(reader)}: {message[-1] if message else ''}")
    if writer.returncode != 0:
        raise CommandError(f"replaying the binlogs into {target} failed: mariadb "
                           f"{qd._exit_description(writer)}: {reaper.message(writer)}")
    return tracker


# --- the restore ------------------------------------------------------------------------------------

def _download_segments(session: Session, s3, bucket: str, segments: list[Segment], directory: Path,
                       dump_finished: Optional[dt.datetime] = None) -> list[Path]:
    """Each segment, verified, in order. With `dump_finished` (the dump the segments roll forward), a
    segment listed but missing or damaged is refused with the latest time the ones before it reach."""
    paths: list[Path] = []
    run: list[dt.datetime] = []
    for segment in segments:
        path = directory / segment.file
        try:
            download_verified(session, s3, {"key": segment.key, "bytes": segment.bytes, "sha256": segment.sha256},
                              bucket, path)
        except CommandError as e:
            latest = (f"; {_latest_phrase(isoz(_reachable(run, dump_finished)), dump_finished)}"
                      if dump_finished else "")
            raise CommandError(f"segment {segment.file} of chain {segment.chain}: {e}{latest}") from None
        if segment.last_event_at:
            run.append(segment.last_event_at)
        paths.append(path)
    return paths


def _download_dump(session: Session, s3, bucket: str, plan_: Plan, directory: Path) -> Path:
    """The planned dump, else (its object damaged) the next older one in the same chain."""
    errors = []
    for dump in [plan_.dump, *plan_.alternatives]:
        path = directory / Path(dump.manifest["key"]).name
        try:
            download_verified(session, s3, dump.manifest, bucket, path)
        except CommandError as e:
            errors.append(str(e))
            session.progress(f"warning: {e}; trying an older dump")
            path.unlink(missing_ok=True)
            continue
        if dump is not plan_.dump:
            start = file_number(dump.binlog["file"]) if dump.binlog else 0
            end = file_number(plan_.segments[0].file) if plan_.segments else None
            older = [s for s in plan_.chain.segments
                     if start <= file_number(s.file) and (end is None or file_number(s.file) < end)]
            plan_.dump, plan_.segments = dump, older + plan_.segments
            plan_.start_position = int(dump.binlog.get("position") or 4) if dump.binlog else 4
        return path
    raise CommandError(errors[0] + ("; no older dump in the chain verifies either" if len(errors) > 1 else ""))


class _Target:
    """The database being built: created by us, dropped by us on any failure; an existing one is
    dropped only with --replace and only once everything was downloaded and verified."""

    def __init__(self, session: Session, client: Client, name: str):
        self.session, self.client, self.name, self.created = session, client, name, False

    def create(self, replace: bool) -> bool:
        existed = schema_exists(self.client, self.name)
        if existed and not replace:
            raise UsageError(f"--target-database {self.name!r}: exists on the server; give --replace to drop "
                             f"and rebuild it, or choose a new name")
        self.created = True
        if existed:
            self.session.progress(f"--replace: dropping the existing database {self.name}")
            self.client.query(f"SET SESSION sql_log_bin=0; DROP DATABASE {sql_ident(self.name)};")
        self.client.query(f"SET SESSION sql_log_bin=0; CREATE DATABASE {sql_ident(self.name)} CHARACTER SET utf8mb4 "
                          f"COMMENT {sql_string(INCOMPLETE_COMMENT)};")
        return existed

    def finish(self, comment: str) -> None:
        self.client.query(f"SET SESSION sql_log_bin=0; ALTER DATABASE {sql_ident(self.name)} "
                          f"COMMENT {sql_string(comment[:1024])};")
        self.created = False

    def drop(self) -> Optional[str]:
        if not self.created:
            return None
        self.created = False
        try:
            self.client.query(f"SET SESSION sql_log_bin=0; DROP DATABASE IF EXISTS {sql_ident(self.name)};")
        except CommandError as e:
            return str(e)
        return None


def restore(session: Session, request: RestoreRequest) -> dict[str, Any]:
    """Plan, then (unless a dry run) build the target database; the report."""
    r = request
    if r.target == r.database:
        raise UsageError(f"--target-database {r.target!r}: must differ from --database (restore into a new "
                         f"database, then swap: docs/pitr.md)")
    planned_at = utcnow()
    plan_ = plan(session, r)
    report: dict[str, Any] = {"database": r.database, "target_database": r.target, "bucket": r.bucket,
                              "dry_run": r.dry_run, "plan": plan_.describe(),
                              "planned_at": isoz(planned_at)}
    if r.dry_run:
        return report
    with _credentials(session, r) as defaults_file:
        return _build(session, r, plan_, report, defaults_file, planned_at)


@contextlib.contextmanager
def _credentials(session: Session, r: RestoreRequest) -> Iterator[Optional[Path]]:
    """The operator's option file, or a 0600 one holding the SSM parameter's password (never argv/env)."""
    if r.defaults_file or not r.password_parameter:
        yield r.defaults_file
        return
    try:
        password = qd.password_from_parameter(r.password_parameter, session.region)
        with qd.client_defaults_file(r.user, password, r.socket) as path:
            del password
            yield Path(path)
    except qd.UsageProblem as e:
        raise UsageError(str(e)) from None
    except qd.BackupFailed as e:
        raise CommandError(str(e)) from None


def _build(session: Session, r: RestoreRequest, plan_: Plan, report: dict[str, Any],
           defaults_file: Optional[Path], planned_at: dt.datetime) -> dict[str, Any]:
    client = _UnloggedClient(defaults_file)
    target = _Target(session, client, r.target)
    s3 = session.client("s3")
    session.log("db-restore-started", database=r.database, target=r.target, to_time=isoz(plan_.target_time),
                dump=plan_.dump.manifest_key, chain=plan_.chain.id, segments=len(plan_.segments))
    started = time.monotonic()
    try:
        with qd.terminate_on_signals(), tempfile.TemporaryDirectory(prefix="quickport-pitr-") as tmp:
            if schema_exists(client, r.target) and not r.replace:   # refuse before any download
                target.create(False)
            dump_path = _download_dump(session, s3, r.bucket, plan_, Path(tmp))
            files = _download_segments(session, s3, r.bucket, plan_.segments, Path(tmp), plan_.dump.finished_at)
            report["plan"] = plan_.describe()
            report["replaced"] = target.create(r.replace)
            session.progress(f"restoring {plan_.dump.manifest['key']} into {r.target}")
            client.restore(session.progress, dump_path, plan_.dump.manifest["compression"], r.target)
            session.progress(f"replaying {len(files)} binlog file(s) from {plan_.segments[0].file if files else '-'}"
                             f":{plan_.start_position} through {isoz(plan_.target_time)}")
            tracker = replay(session, client, plan_, files, r.database, r.target) if files else CommitTracker()
        counts, objects = restored_inventory(client, r.target)
        target.finish(f"quickport-backup: {r.database} restored to {isoz(plan_.target_time)} from "
                      f"{plan_.dump.manifest['key']} and chain {plan_.chain.id}")
    except UsageError:
        raise
    except (CommandError, qd.Terminated, KeyboardInterrupt, OSError) as e:
        drop_error = target.drop()
        leftover = (f"; the partial database {r.target} could NOT be dropped ({drop_error}): drop it by hand"
                    if drop_error else f"; nothing was left named {r.target}")
        session.log("db-restore-failed", database=r.database, target=r.target, error=str(e) or type(e).__name__,
                    drop_error=drop_error)
        if isinstance(e, KeyboardInterrupt):
            session.progress(f"interrupted{leftover}")
            raise
        raise CommandError(f"{e}{leftover}") from None
    last_time = tracker.last_time
    recovered = max([t for t in (last_time, plan_.target_time if not plan_.latest else plan_.chain.restorable_until,
                                 plan_.dump.finished_at) if t])
    report.update({
        "restored_to": isoz(recovered),
        "last_transaction": {"gtid": tracker.last_gtid, "at": isoz(last_time)} if tracker.last_gtid else None,
        "transactions_replayed": tracker.transactions,
        # Measured from when the restore began: the data the archive lacked then, not the restore's length.
        "rpo_seconds": round((planned_at - recovered).total_seconds(), 1),
        "tables": counts, "objects": objects, "seconds": round(time.monotonic() - started, 1)})
    session.log("db-restore-finished", database=r.database, target=r.target, restored_to=report["restored_to"],
                last_gtid=tracker.last_gtid, transactions=tracker.transactions)
    return report


def drill_pitr(session: Session, request: RestoreRequest, *, keep: bool, rpo_bound_seconds: int) -> dict[str, Any]:
    """db-restore-drill --pitr: restore to the newest shipped point into the (new) scratch database,
    then drop it unless kept; ok when the RPO it shows is within the bound."""
    report = restore(session, request)
    report.update(kept=keep, rpo_bound_seconds=rpo_bound_seconds,
                  ok=report["rpo_seconds"] <= rpo_bound_seconds)
    if not keep:
        problem = _Target(session, _UnloggedClient(request.defaults_file), request.target)
        problem.created = True
        drop_error = problem.drop()
        if drop_error:
            report.update(ok=False, drop_error=drop_error)
            session.progress(f"warning: could not drop scratch database {request.target}: {drop_error}")
    session.log("db-restore-drill-pitr-finished", target=request.target, restored_to=report["restored_to"],
                rpo_seconds=report["rpo_seconds"], ok=report["ok"])
    return report


# --- db-events --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventsRequest:
    bucket: str
    binlog_prefix: str
    since: dt.datetime
    until: dt.datetime
    database: Optional[str] = None
    grep: Optional[re.Pattern] = None
    min_rows: int = 1000


_ROWS = re.compile(r"^(Write|Update|Delete)_rows(?:_v1)?: table id (\d+)")
_TABLE_MAP = re.compile(r"^Table_map: `((?:[^`]|``)+)`\.`((?:[^`]|``)+)` mapped to number (\d+)")
_USE = re.compile(r"^use `((?:[^`]|``)+)`/\*!\*/;$")
_VERB = {"Write": "insert", "Update": "update", "Delete": "delete"}


class EventParser:
    """Turns `mariadb-binlog --base64-output=decode-rows` text into transactions: DDL statements and
    row counts per table, with their GTID and time."""

    def __init__(self, chain: str, min_rows: int):
        self.chain, self.min_rows = chain, min_rows
        self.events: list[dict[str, Any]] = []
        self.file: Optional[str] = None
        self.use: Optional[str] = None
        self.tables: dict[str, str] = {}
        self.current: Optional[dict[str, Any]] = None
        self.verb: Optional[tuple[str, str]] = None
        self.statement: Optional[list[str]] = None

    def _close(self) -> None:
        t = self.current
        self.current = None
        if t is None:
            return
        if t["statements"]:
            for statement in t["statements"]:
                self.events.append({"kind": "ddl", "at": t["at"], "gtid": t["gtid"], "chain": self.chain,
                                    "file": t["file"], "position": t["position"], "database": statement[0],
                                    "statement": statement[1]})
        rows = sum(sum(v.values()) for v in t["rows"].values())
        if rows and rows >= self.min_rows:
            self.events.append({"kind": "dml", "at": t["at"], "gtid": t["gtid"], "chain": self.chain,
                                "file": t["file"], "position": t["position"], "rows": rows,
                                "tables": {name: dict(v) for name, v in sorted(t["rows"].items())},
                                "database": sorted({n.split(".")[0] for n in t["rows"]})[0] if t["rows"] else None})

    def line(self, text: str) -> None:
        m = _USE.match(text)
        if m:
            self.use = m.group(1).replace("``", "`")
            return
        if self.statement is not None and not text.startswith("#"):
            if text.endswith("/*!*/;"):
                body = "\n".join([*self.statement, text[:-6]]).strip()
                self.statement = []
                if body and not re.match(r"^(SET |/\*!|use `|BEGIN$|COMMIT$|ROLLBACK$)", body) and self.current:
                    self.current["statements"].append((self.use, body))
                return
            self.statement.append(text)
            return
        if text.startswith("# Number of rows: ") and self.current and self.verb:
            table, verb = self.verb
            counts = self.current["rows"].setdefault(table, {})
            counts[verb] = counts.get(verb, 0) + int(text.split(": ", 1)[1])
            self.verb = None
            return
        header = HEADER.match(text.encode("utf-8", "replace"))
        if not header:
            return
        self.statement = None
        body = header.group(7).decode("utf-8", "replace")
        if body.startswith("GTID "):
            self._close()
            self.current = {"gtid": body.split()[1], "at": isoz(_header_time(header)), "file": self.file,
                            "position": int(header.group(6)), "statements": [], "rows": {}}
        elif body.startswith("Rotate to ") or body.startswith("Stop"):
            self._close()
        elif body.startswith("Query") and self.current is not None:
            self.statement = []
        else:
            tm = _TABLE_MAP.match(body)
            if tm:
                self.tables[tm.group(3)] = f"{tm.group(1)}.{tm.group(2)}".replace("``", "`")
                return
            rows = _ROWS.match(body)
            if rows and self.current is not None:
                self.verb = (self.tables.get(rows.group(2), f"table id {rows.group(2)}"), _VERB[rows.group(1)])

    def finish(self) -> list[dict[str, Any]]:
        self._close()
        return self.events


def _decode(parser: EventParser, argv: list[str]) -> None:
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env(),
                          text=True, errors="replace") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        errors: list[str] = []
        drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        drain.start()
        for text in proc.stdout:
            if not text.startswith(("# at ", "'")):
                parser.line(text.rstrip("\n"))
        drain.join(timeout=10)
    if proc.returncode != 0:
        raise CommandError(f"mariadb-binlog {qd._exit_description(proc)}: {''.join(errors).strip()[-300:]}")


def events(session: Session, request: EventsRequest) -> dict[str, Any]:
    """DDL and large DML between two times, from the shipped segments (each verified first)."""
    r = request
    s3 = session.client("s3")
    chains = read_chains(s3, r.bucket, r.binlog_prefix)
    found: list[dict[str, Any]] = []
    scanned: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quickport-events-") as tmp:
        for chain in chains:
            wanted = [s for s in chain.segments if s.first_event_at and s.last_event_at
                      and s.first_event_at <= r.until + ONE_SECOND and s.last_event_at >= r.since]
            if not wanted:
                continue
            directory = Path(tmp) / chain.id
            directory.mkdir()
            files = _download_segments(session, s3, r.bucket, wanted, directory)
            scanned += [{"chain": chain.id, "file": s.file, "bytes": s.bytes} for s in wanted]
            parser = EventParser(chain.id, r.min_rows)
            for segment, path in zip(wanted, files, strict=True):   # a file at a time: events name it
                parser.file = segment.file
                _decode(parser, _binlog_argv([path], None, r.until + ONE_SECOND, r.database, [
                    "--base64-output=decode-rows", f"--start-datetime={_tool_time(r.since)}"]))
            found += parser.finish()
    if r.grep:
        found = [e for e in found if r.grep.search(e.get("statement") or " ".join(e.get("tables") or {}))]
    found.sort(key=lambda e: (e["at"], e["chain"], file_number(e["file"]), e["position"]))   # one second, two files
    latest = max((c.restorable_until for c in chains if c.restorable_until), default=None)
    return {"since": isoz(r.since), "until": isoz(r.until), "database": r.database, "min_rows": r.min_rows,
            "segments_scanned": scanned, "covered_until": isoz(latest), "events": found}


def parse_utc_second(flag: str, value: str) -> dt.datetime:
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", value or ""):
        raise UsageError(f"{flag} {value!r}: must be a UTC time YYYY-MM-DDTHH:MM:SSZ, e.g. 2026-12-02T14:31:59Z")
    parsed = parse_time(value)
    if parsed is None:
        raise UsageError(f"{flag} {value!r}: not a valid date and time")
    return parsed
