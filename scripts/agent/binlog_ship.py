#!/usr/bin/env python3
"""binlog_ship: MariaDB's binary logs shipped to S3, one closed file at a time, for point-in-time recovery.

Runs on the instance as the systemd service quickport-binlog (the SSM document installs it) and on an
operator's machine through `backupctl binlog-ship`. Python 3.9+, stdlib + boto3 only, no project imports.

    python3 binlog_ship.py (--once | --follow [--interval S]) --bucket B --prefix P \
        (--defaults-file F | --password-parameter NAME [--user U] [--socket S]) [--state-dir D] \
        [--spool-megabytes N] [--region R] [--metrics-stack STACK --database DB] [--json]
    python3 binlog_ship.py --check (--defaults-file F | --password-parameter NAME ...) [--apply-settings FILE]

Each interval (docs/binlog-shipping.md): SHOW MASTER STATUS; if the current file holds a transaction not
yet shipped, FLUSH BINARY LOGS closes it; every closed file not yet shipped is read byte for byte with
`mariadb-binlog --read-from-remote-server --raw` into the spool, hashed, uploaded to
P/<chain>/<file>, described by P/<chain>/<file>.json, recorded in the chain's index, then in
state.json, and only then removed from the spool. A kill at any point resumes at the first file not in
state.json: no gap, no duplicate (uploads are idempotent by key). S3 down: files stay spooled (bounded).
A purged, reset or re-identified server is a gap: a gap record, the chain closed, a new chain.

The index is paged, so no rewrite grows with the chain's age: the head P/<chain>/index.json (rewritten
each interval) holds the chain's metadata, the confirmed point, the number of sealed pages and the
newest 1..INDEX_PAGE_SEGMENTS segment entries; older entries are sealed, INDEX_PAGE_SEGMENTS at a time,
into immutable pages P/<chain>/index/<NNNNN>.json, each written before the first head that counts it.
state.json holds the head only (bounded too).

Exit codes: 0 ok, 1 a failure or a gap (--once) or a failed check, 2 bad usage.
Needs s3:PutObject under P/ and ssm:GetParameter for the password; never reads from S3.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MIB = 1024 * 1024
SEGMENT_FORMAT = "quickport-binlog-segment/1"
INDEX_FORMAT = "quickport-binlog-index/2"            # the head: P/<chain>/index.json
INDEX_FORMAT_V1 = "quickport-binlog-index/1"         # every segment in the head (a state.json of an older agent)
PAGE_FORMAT = "quickport-binlog-index-page/1"        # a sealed page: P/<chain>/index/<NNNNN>.json
GAP_FORMAT = "quickport-binlog-gap/1"
STATE_FORMAT = "quickport-binlog-state/2"            # /2 embeds a /2 head; a /1 state is taken over at start
STATE_FORMAT_V1 = "quickport-binlog-state/1"
# Segment entries a sealed page holds; the head holds the newest 1..this many. ~340 B an entry (measured):
# every head rewrite (twice an interval with writes, every version kept by Object Lock) stays under ~35 KB
# whatever the chain's age, and a reader gets a chain 37 days old at 30 s in ~1100 pages.
INDEX_PAGE_SEGMENTS = 100
METRICS_NAMESPACE = "QuickportBackup"   # components/signals.py alarms on these names
DEFAULT_STATE_DIR = "/var/lib/quickport-binlog"
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*$")
STACK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
DATABASE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
USER_RE = re.compile(r"^[A-Za-z0-9_]{1,80}$")
BINLOG_NAME_RE = re.compile(r"^(?P<base>[A-Za-z0-9_.-]+)\.(?P<number>[0-9]{6,})$")
# A header line of `mariadb-binlog` (TZ=UTC): "#261202  6:36:55 server id 1  end_log_pos 1348 ... GTID 0-1-7"
GTID_LINE_RE = re.compile(r"^#(\d{6})\s+(\d{1,2}):(\d\d):(\d\d)\s+server id \d+\s+end_log_pos \d+.*\tGTID "
                          r"(\d+-\d+-\d+)")
# Events a server writes on its own (rotation, checkpoints): a file holding only these has no transaction.
HOUSEKEEPING_EVENTS = {"Format_desc", "Gtid_list", "Binlog_checkpoint", "Rotate", "Start_encryption"}
FIRST_EVENT_POSITION = 4   # after the 4-byte magic number
# Privileges the shipper needs (docs/binlog-shipping.md); alternatives that also satisfy each one.
REQUIRED_GRANTS = {
    "REPLICATION SLAVE": ("REPLICATION SLAVE", "ALL PRIVILEGES"),           # read binlogs as a replica
    # SHOW BINARY LOGS / MASTER STATUS / BINLOG EVENTS (10.5.2+; REPLICATION CLIENT is its old alias)
    "BINLOG MONITOR": ("BINLOG MONITOR", "REPLICATION CLIENT", "ALL PRIVILEGES"),
    "RELOAD": ("RELOAD", "ALL PRIVILEGES"),                                  # FLUSH BINARY LOGS
}
MIN_SERVER_RETENTION_SECONDS = 86400


class ShipFailed(Exception):
    """This interval failed; nothing was recorded as shipped that is not in S3. str() is one line."""


class UsageProblem(Exception):
    """Bad input: one line naming the field and what is allowed."""


class Terminated(BaseException):
    """A signal asked --once to stop; BaseException so no `except Exception` swallows it."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def isoformat(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def log(message: str) -> None:
    """One line per event on stderr (journald keeps it for the service)."""
    print(f"{utcnow():%H:%M:%SZ} binlog_ship: {message}", file=sys.stderr, flush=True)


# --- small helpers; the same ideas as quickport_dump.py (kept apart: each agent file is embedded alone) --

def child_env() -> Dict[str, str]:
    """Children get no AWS credentials and no MYSQL_PWD; TZ=UTC makes mariadb-binlog print UTC times."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


def find_program(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise ShipFailed(f"{names[0]} is not installed (the MariaDB client package provides it)")


def retries() -> Dict[str, Any]:
    """Standard retry mode; AWS_MAX_ATTEMPTS wins. Few attempts: the next interval retries anyway."""
    try:
        attempts = max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "3")))
    except ValueError:
        attempts = 3
    return {"mode": "standard", "total_max_attempts": attempts}


def aws_config(**extra: Any):
    from botocore.config import Config
    settings: Dict[str, Any] = {"retries": retries(), "user_agent_extra": "quickport-binlog",
                                "connect_timeout": 5, "read_timeout": 60, **extra}
    try:
        # An Object-Locked bucket refuses PutObject without a checksum: pin CRC32 (botocore >= 1.36).
        return Config(request_checksum_calculation="when_supported", **settings)
    except TypeError:
        return Config(**settings)


def aws_error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _option_value(field: str, value: str) -> str:
    if any(c in value for c in "\n\r\0"):
        raise UsageProblem(f"{field}: must not contain newline, carriage return or NUL characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def client_defaults_file(user: str, password: str, socket_path: Optional[str] = None):
    """A [client] option file, 0600 in a private 0700 directory in memory, removed on exit: the password
    reaches mariadb and mariadb-binlog only through it, never argv or a child's environment."""
    directory = tempfile.mkdtemp(prefix=f"quickport-binlog-{os.getpid()}-",
                                 dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(directory, "client.cnf")
    try:
        lines = ["[client]", f"user={_option_value('--user', user)}",
                 f"password={_option_value('password', password)}"]
        if socket_path:
            lines.append(f"socket={_option_value('--socket', socket_path)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def password_from_parameter(name: str, region: Optional[str]) -> str:
    import boto3
    ssm = boto3.session.Session().client("ssm", region_name=region, config=aws_config())
    try:
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as e:  # botocore ClientError/BotoCoreError: one line, no traceback
        raise ShipFailed(f"reading password parameter {name}: {aws_error(e)}") from None
    return value.rstrip("\n")


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write, fsync, rename: a reader (or a restart after kill -9) sees the old file or the new one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def binlog_number(name: str) -> Tuple[str, int]:
    m = BINLOG_NAME_RE.match(name)
    if not m:
        raise ShipFailed(f"unexpected binary log name {name!r}")
    return m.group("base"), int(m.group("number"))


def next_binlog(name: str) -> str:
    base, number = binlog_number(name)
    width = len(name) - len(base) - 1
    return f"{base}.{number + 1:0{width}d}"


# --- the server, through the real client tools ------------------------------------------------------

class Server:
    """SQL through `mariadb`, binlogs through `mariadb-binlog`, both with --defaults-file only."""

    def __init__(self, defaults_file: str):
        self.defaults_file = defaults_file

    def sql(self, statements: str) -> List[List[str]]:
        client = find_program("mariadb", "mysql")
        try:
            out = subprocess.run([client, f"--defaults-file={self.defaults_file}", "--batch", "--skip-column-names"],
                                 input=statements.encode(), capture_output=True, env=child_env(), timeout=60,
                                 start_new_session=True)
        except subprocess.TimeoutExpired:
            raise ShipFailed("the database server did not answer within 60 s") from None
        if out.returncode != 0:
            message = out.stderr.decode(errors="replace").strip().splitlines()
            raise ShipFailed(f"database server: {message[-1] if message else 'mariadb exited ' + str(out.returncode)}")
        return [line.split("\t") for line in out.stdout.decode(errors="replace").splitlines()]

    def variables(self, names: List[str]) -> Dict[str, str]:
        quoted = ",".join(f"'{n}'" for n in names)
        rows = self.sql(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({quoted});")
        return {r[0].lower(): (r[1] if len(r) > 1 else "") for r in rows}

    def status(self) -> Tuple[int, Tuple[str, int], List[Tuple[str, int]]]:
        """(server_id, (current file, position), [(file, size)] oldest first) in one round trip."""
        rows = self.sql("SELECT 'id', @@server_id; SHOW MASTER STATUS; SHOW BINARY LOGS;")
        if len(rows) < 2 or rows[0][0] != "id" or len(rows[1]) < 2:
            raise ShipFailed("binary logging is off on the server (log_bin); run --check")
        logs = [(r[0], int(r[1])) for r in rows[2:] if len(r) >= 2]
        return int(rows[0][1]), (rows[1][0], int(rows[1][1])), logs

    def has_transactions(self, file: str, position: int) -> bool:
        """Whether `file` holds any event after `position` other than the server's own housekeeping."""
        rows = self.sql(f"SHOW BINLOG EVENTS IN '{file}' FROM {int(position)} LIMIT 20;")
        return any(len(r) > 2 and r[2] not in HOUSEKEEPING_EVENTS for r in rows)

    def flush(self) -> None:
        self.sql("FLUSH BINARY LOGS;")

    def read_raw(self, file: str, directory: str) -> str:
        """Copy one closed binlog file byte for byte into `directory` (replication protocol, --raw)."""
        tool = find_program("mariadb-binlog", "mysqlbinlog")
        try:
            out = subprocess.run([tool, f"--defaults-file={self.defaults_file}", "--read-from-remote-server",
                                  "--raw", f"--result-file={directory}/", file],
                                 capture_output=True, env=child_env(), timeout=3600, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise ShipFailed(f"reading {file} from the server took over an hour") from None
        if out.returncode != 0:
            message = out.stderr.decode(errors="replace").strip().splitlines()
            raise ShipFailed(f"mariadb-binlog reading {file}: "
                             f"{message[-1] if message else 'exit ' + str(out.returncode)}")
        return os.path.join(directory, file)


def describe_file(path: str) -> Dict[str, Any]:
    """sha256, size, first/last GTID and their event times (UTC) of a local binlog file."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            digest.update(chunk)
            size += len(chunk)
    tool = find_program("mariadb-binlog", "mysqlbinlog")
    proc = subprocess.Popen([tool, "--no-defaults", "--base64-output=decode-rows", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(), start_new_session=True)
    first: Optional[Tuple[str, str]] = None
    last: Optional[Tuple[str, str]] = None
    assert proc.stdout is not None
    for raw in proc.stdout:
        if not raw.startswith(b"#") or b"\tGTID " not in raw:
            continue
        m = GTID_LINE_RE.match(raw.decode(errors="replace"))
        if not m:
            continue
        day, hour, minute, second, gtid = m.groups()
        when = f"20{day[0:2]}-{day[2:4]}-{day[4:6]}T{int(hour):02d}:{minute}:{second}Z"
        first = first or (gtid, when)
        last = (gtid, when)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise ShipFailed(f"mariadb-binlog cannot parse {os.path.basename(path)}: {message[-1] if message else ''}")
    return {"bytes": size, "sha256": digest.hexdigest(),
            "first_gtid": first[0] if first else None, "last_gtid": last[0] if last else None,
            "first_event_at": first[1] if first else None, "last_event_at": last[1] if last else None}


# --- S3 --------------------------------------------------------------------------------------------

class Store:
    """The bucket, write-only: segments, manifests, the index, gap records."""

    def __init__(self, bucket: str, prefix: str, region: Optional[str]):
        import boto3
        self.bucket, self.prefix = bucket, prefix
        self.s3 = boto3.session.Session().client("s3", region_name=region, config=aws_config())

    def put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                               ChecksumAlgorithm="CRC32")
        except Exception as e:  # noqa: BLE001 - one line; the caller keeps the spool
            raise S3Unavailable(f"s3://{self.bucket}/{key}: {aws_error(e)}") from None

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as f:
            self.put(key, f.read(), "application/octet-stream")

    def put_json(self, key: str, document: Dict[str, Any]) -> None:
        self.put(key, (json.dumps(document, indent=1) + "\n").encode(), "application/json")


class S3Unavailable(ShipFailed):
    """An upload failed: what was read stays in the spool for the next interval."""


# --- the shipper -----------------------------------------------------------------------------------

class Shipper:
    """One chain at a time; state.json (written after the index) is the truth after a restart.
    `index_page_segments`: entries per sealed index page (the head holds at most this many)."""

    def __init__(self, server: Server, store: Store, state_dir: str, spool_megabytes: int,
                 progress: Callable[[str], None] = log, index_page_segments: int = INDEX_PAGE_SEGMENTS):
        if index_page_segments < 1:
            raise ValueError(f"index_page_segments {index_page_segments}: must be at least 1")
        self.server, self.store, self.progress = server, store, progress
        self.page_segments = index_page_segments
        self.state_dir = state_dir
        self.spool_root = os.path.join(state_dir, "spool")
        self.spool_limit = spool_megabytes * MIB
        self.state_path = os.path.join(state_dir, "state.json")
        os.makedirs(self.spool_root, mode=0o700, exist_ok=True)
        self.state: Optional[Dict[str, Any]] = self._load()
        # A read cut short by a kill leaves files under .reading/: never trusted, always re-read.
        shutil.rmtree(os.path.join(self.spool_root, ".reading"), ignore_errors=True)
        self.spool_full_reported = False

    # state ---------------------------------------------------------------------------------------
    def _load(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ShipFailed(f"{self.state_path} is unreadable ({e}); move it aside to start a new chain") from None
        if state.get("format") not in (STATE_FORMAT, STATE_FORMAT_V1) or "index" not in state:
            raise ShipFailed(f"{self.state_path} is not a {STATE_FORMAT} file; move it aside to start a new chain")
        if state["format"] == STATE_FORMAT_V1:
            # An older agent's chain, every segment in its index: the same chain goes on paged. The next
            # index write seals its full pages (each before the head counting it); until then S3 keeps
            # the /1 head, which readers take as it is.
            state["format"] = STATE_FORMAT
            state["index"].update(format=INDEX_FORMAT, pages=0)
        return state

    def _save(self) -> None:
        assert self.state is not None
        write_atomically(self.state_path, (json.dumps(self.state, indent=1) + "\n").encode())

    @property
    def index(self) -> Dict[str, Any]:
        assert self.state is not None
        return self.state["index"]

    def chain_key(self, name: str) -> str:
        return f"{self.store.prefix}/{self.index['chain']}/{name}"

    def _publish(self, index: Dict[str, Any]) -> Dict[str, Any]:
        """Write the chain's index: first each full page its head would hold beyond the page size,
        sealed (written once, before any head counts it; the same key and body again after a restart),
        then the head. Returns the head as written, for the caller to adopt and save; on S3Unavailable
        nothing is adopted (state.json still says what S3 surely has)."""
        head = dict(index)
        size, chain = self.page_segments, f"{self.store.prefix}/{index['chain']}"
        while len(head["segments"]) > size:
            number = head["pages"]
            self.store.put_json(f"{chain}/index/{number:05d}.json", {
                "format": PAGE_FORMAT, "chain": head["chain"], "page": number, "segments": head["segments"][:size]})
            head.update(pages=number + 1, segments=head["segments"][size:])
        self.store.put_json(f"{chain}/index.json", head)
        return head

    def spool_dir(self) -> str:
        path = os.path.join(self.spool_root, self.index["chain"])
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def spool_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.spool_root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.path.getsize(os.path.join(root, name))
        return total

    def expected_file(self) -> str:
        segments = self.index["segments"]
        return next_binlog(segments[-1]["file"]) if segments else self.index["first_file"]

    def latest_restorable_at(self) -> Optional[str]:
        times = [t for t in (self.index["segments"][-1]["last_event_at"] if self.index["segments"] else None,
                             self.index.get("confirmed_at")) if t]
        return max(times) if times else None

    def _start_chain(self, server_id: int, first_file: str, now: dt.datetime) -> None:
        # A chain id is its start to the second: a gap found in the second the old chain started must not
        # reuse the old id (the new head would overwrite the closed one), so the new chain starts a second on.
        while self.state is not None and f"{now:%Y%m%dT%H%M%SZ}-s{server_id}" == self.index["chain"]:
            now += dt.timedelta(seconds=1)
        chain = f"{now:%Y%m%dT%H%M%SZ}-s{server_id}"
        self.state = {"format": STATE_FORMAT, "bucket": self.store.bucket, "prefix": self.store.prefix,
                      "baseline": None,
                      "index": {"format": INDEX_FORMAT, "chain": chain, "server_id": server_id,
                                "host": socket.gethostname(), "started_at": isoformat(now),
                                "first_file": first_file, "pages": 0, "segments": [], "confirmed_at": None,
                                "confirmed_file": None, "confirmed_position": None, "closed": None}}
        self._save()
        self.progress(f"chain {chain} starts at {first_file}")

    # gaps ----------------------------------------------------------------------------------------
    def _gap_reason(self, server_id: int, logs: List[Tuple[str, int]]) -> Optional[str]:
        if server_id != self.index["server_id"]:
            return "server id changed"
        expected = self.expected_file()
        if os.path.exists(os.path.join(self.spool_dir(), expected)):
            return None
        names = dict(logs)
        if expected in names:
            segments = self.index["segments"]
            last = segments[-1] if segments else None
            if last and last["file"] in names and names[last["file"]] != last["bytes"]:
                return "binlog sequence reset"     # same name, other content: a restored/reset server
            return None
        base, number = binlog_number(expected)
        numbers = [binlog_number(n) for n, _ in logs]
        if any(b != base for b, _ in numbers) or not numbers or max(n for _, n in numbers) < number:
            return "binlog sequence reset"
        return "purged before shipped"

    def _record_gap(self, reason: str, server_id: int, logs: List[Tuple[str, int]],
                    now: dt.datetime) -> Dict[str, Any]:
        old = self.index
        segments = old["segments"]
        gap = {"format": GAP_FORMAT, "chain": old["chain"], "detected_at": isoformat(now),
               "after_file": segments[-1]["file"] if segments else None,
               "missing_from": self.expected_file(), "reason": reason,
               "latest_restorable_at": self.latest_restorable_at()}
        self.store.put_json(f"{self.store.prefix}/gaps/{now:%Y%m%dT%H%M%SZ}-{old['chain']}.json", gap)
        self._publish({**old, "closed": {"at": isoformat(now), "reason": reason}})
        shutil.rmtree(os.path.join(self.spool_root, old["chain"]), ignore_errors=True)
        # The new chain: the next expected file if this server still has it (a changed id), else its oldest.
        names = [n for n, _ in logs]
        first = gap["missing_from"] if reason == "server id changed" and gap["missing_from"] in names else names[0]
        self.progress(f"GAP in chain {old['chain']}: {reason}; missing from {gap['missing_from']}, latest "
                      f"restorable time {gap['latest_restorable_at'] or 'none'}; a new chain is usable from "
                      "the next dump on")
        self._start_chain(server_id, first, now)
        return gap

    # one interval --------------------------------------------------------------------------------
    def interval(self) -> Dict[str, Any]:
        """Flush if needed, ship every closed file, refresh the confirmed point. Returns the report;
        raises ShipFailed (S3Unavailable keeps what was read in the spool)."""
        now = utcnow()
        server_id, (current, position), logs = self.server.status()
        if not logs:
            raise ShipFailed("the server lists no binary logs")
        if self.state is None:
            self._start_chain(server_id, logs[0][0], now)
        report: Dict[str, Any] = {"chain": self.index["chain"], "segments": [], "gap": None}
        ship_error: Optional[str] = None
        # What is spooled goes first: a gap is judged only with an empty spool, so a spooled file is
        # never dropped with its chain.
        try:
            self._upload_spooled(report)
        except S3Unavailable as e:
            ship_error = f"S3 unreachable ({e}); {self._spool_summary()}"
        if ship_error is None and not self._spooled():
            reason = self._gap_reason(server_id, logs)
            if reason:
                report["gap"] = self._record_gap(reason, server_id, logs, now)
                report["chain"] = self.index["chain"]
        baseline = self.state["baseline"] if self.state else None
        start = baseline["position"] if baseline and baseline["file"] == current else FIRST_EVENT_POSITION
        moved = self.server.has_transactions(current, start)
        after = current
        if moved:
            self.server.flush()
            _sid, (after, _pos), logs = self.server.status()
        closed = [(n, size) for n, size in logs if n != after]
        try:
            self._read_pending(closed)
        except ShipFailed as e:
            ship_error = ship_error or str(e)
        if ship_error is None:
            try:
                self._upload_spooled(report)
            except S3Unavailable as e:
                ship_error = f"S3 unreachable ({e}); {self._spool_summary()}"
        everything_shipped = ship_error is None and not self._unshipped(closed)
        if everything_shipped:
            assert self.state is not None
            self.state["baseline"] = ({"file": after, "position": FIRST_EVENT_POSITION} if moved
                                      else {"file": current, "position": position})
            try:
                self.state["index"] = self._publish({**self.index, "confirmed_at": isoformat(now),
                                                     "confirmed_file": current, "confirmed_position": position})
            except S3Unavailable as e:
                ship_error = f"S3 unreachable ({e}); {self._spool_summary()}"
            else:
                self._save()
        report.update(confirmed_at=self.index["confirmed_at"], confirmed_file=self.index["confirmed_file"],
                      confirmed_position=self.index["confirmed_position"], spool_bytes=self.spool_bytes(),
                      spooled=len(self._spooled()), error=ship_error,
                      latest_restorable_at=self.latest_restorable_at())
        if ship_error:
            raise IntervalFailed(ship_error, report)
        return report

    def _spool_summary(self) -> str:
        return (f"{len(self._spooled())} file(s) spooled, {self.spool_bytes() / MIB:.1f} of "
                f"{self.spool_limit / MIB:.0f} MiB")

    def _spooled(self) -> List[str]:
        directory = self.spool_dir()
        return sorted(n for n in os.listdir(directory) if BINLOG_NAME_RE.match(n))

    def _unshipped(self, closed: List[Tuple[str, int]]) -> List[Tuple[str, int]]:
        """Closed files at or after the next expected one, in order."""
        expected = binlog_number(self.expected_file())
        return [(n, s) for n, s in closed if binlog_number(n)[0] == expected[0]
                and binlog_number(n)[1] >= expected[1]]

    def _read_pending(self, closed: List[Tuple[str, int]]) -> None:
        spool = self.spool_dir()
        have = set(self._spooled())
        for name, size in self._unshipped(closed):
            if name in have:
                continue
            if self.spool_bytes() + size > self.spool_limit:
                if not self.spool_full_reported:
                    self.progress(f"SPOOL FULL: {self._spool_summary()}; not reading {name} and later files "
                                  "until S3 takes the spool (the server keeps them)")
                    self.spool_full_reported = True
                return
            self.spool_full_reported = False
            reading = os.path.join(self.spool_root, ".reading")
            shutil.rmtree(reading, ignore_errors=True)
            os.makedirs(reading, mode=0o700)
            path = self.server.read_raw(name, reading)
            got = os.path.getsize(path)
            if got != size:
                raise ShipFailed(f"read {got} bytes of {name}, the server lists {size}; retrying next interval")
            os.replace(path, os.path.join(spool, name))
            os.rmdir(reading)

    def _upload_spooled(self, report: Dict[str, Any]) -> None:
        spool = self.spool_dir()
        expected = binlog_number(self.expected_file())
        for name in self._spooled():
            if binlog_number(name)[0] == expected[0] and binlog_number(name)[1] < expected[1]:
                # Recorded in state.json by a run killed before it could unlink it: shipped. Left in
                # place it would block every later file (they go in order) and the gap check.
                os.unlink(os.path.join(spool, name))
        for name in self._spooled():
            if name != self.expected_file():
                break                       # never out of order: a missing one is read or is a gap
            path = os.path.join(spool, name)
            described = describe_file(path)
            segments = self.index["segments"]
            key = self.chain_key(name)
            manifest = {"format": SEGMENT_FORMAT, "chain": self.index["chain"], "server_id": self.index["server_id"],
                        "file": name, "key": key, "bytes": described["bytes"], "sha256": described["sha256"],
                        "first_gtid": described["first_gtid"], "last_gtid": described["last_gtid"],
                        "first_event_at": described["first_event_at"], "last_event_at": described["last_event_at"],
                        "end_position": described["bytes"],
                        "previous_file": segments[-1]["file"] if segments else None,
                        "shipped_at": isoformat(utcnow())}
            self.store.put_file(key, path)
            self.store.put_json(key + ".json", manifest)
            entry = {k: manifest[k] for k in ("file", "key", "bytes", "sha256", "first_gtid", "last_gtid",
                                              "first_event_at", "last_event_at")}
            # On S3Unavailable nothing is recorded: shipped again (same key, same bytes) next time.
            assert self.state is not None
            self.state["index"] = self._publish({**self.index, "segments": [*segments, entry]})
            self._save()
            os.unlink(path)                 # only now: uploaded and recorded
            report["segments"].append(name)
            self.progress(f"shipped {name} ({described['bytes']} bytes, last GTID {described['last_gtid'] or '-'})")


class IntervalFailed(ShipFailed):
    def __init__(self, message: str, report: Dict[str, Any]):
        super().__init__(message)
        self.report = report


# --- metrics ---------------------------------------------------------------------------------------

def publish_metrics(stack: str, database: str, report: Dict[str, Any], region: Optional[str]) -> Optional[str]:
    """BinlogShipLagSeconds, BinlogChainBroken, BinlogSegmentsShipped. Best effort: a warning line."""
    dimensions = [{"Name": "Stack", "Value": stack}, {"Name": "Database", "Value": database}]
    data: List[Dict[str, Any]] = [
        {"MetricName": "BinlogChainBroken", "Dimensions": dimensions, "Value": 1.0 if report.get("gap") else 0.0,
         "Unit": "Count"},
        {"MetricName": "BinlogSegmentsShipped", "Dimensions": dimensions,
         "Value": float(len(report.get("segments") or [])), "Unit": "Count"}]
    if report.get("confirmed_at"):
        lag = (utcnow() - parse_time(report["confirmed_at"])).total_seconds()
        data.append({"MetricName": "BinlogShipLagSeconds", "Dimensions": dimensions, "Value": round(max(lag, 0), 1),
                     "Unit": "Seconds"})
    try:
        import boto3
        boto3.session.Session().client("cloudwatch", region_name=region, config=aws_config()).put_metric_data(
            Namespace=METRICS_NAMESPACE, MetricData=data)
    except Exception as e:  # noqa: BLE001 - best effort by design
        return f"could not publish CloudWatch metrics ({aws_error(e)})"
    return None


# --- --check ---------------------------------------------------------------------------------------

CHECK_VARIABLES = ["log_bin", "binlog_format", "sync_binlog", "server_id", "gtid_strict_mode", "binlog_row_image",
                   "expire_logs_days", "binlog_expire_logs_seconds"]


def check_server(server: Server, interval: int) -> Tuple[List[str], Dict[str, str], List[str]]:
    """(problems, settings to write into a drop-in, GRANT statements to run). Each problem names the
    setting, its value and what to set."""
    v = server.variables(CHECK_VARIABLES)
    problems: List[str] = []
    settings: Dict[str, str] = {}

    def need(name: str, ok: bool, setting: str, why: str) -> None:
        if not ok:
            problems.append(f"{name} is {v.get(name, 'unset')!s}: set {setting} ({why})")
            key, _, value = setting.partition("=")
            settings[key] = value

    need("log_bin", v.get("log_bin", "OFF").upper() in ("ON", "1"), "log_bin=mariadb-bin", "binary logging")
    need("binlog_format", v.get("binlog_format", "").upper() == "ROW", "binlog_format=ROW",
         "replay must not depend on statement context")
    need("sync_binlog", v.get("sync_binlog") == "1", "sync_binlog=1", "no committed transaction lost on a crash")
    need("server_id", v.get("server_id", "0") not in ("0", ""), "server_id=1", "identifies the chain")
    need("gtid_strict_mode", v.get("gtid_strict_mode", "").upper() in ("ON", "1"), "gtid_strict_mode=1",
         "GTIDs must be strictly increasing")
    need("binlog_row_image", v.get("binlog_row_image", "").upper() == "FULL", "binlog_row_image=FULL",
         "rows replay without the old row")
    seconds = float(v.get("binlog_expire_logs_seconds") or 0) or float(v.get("expire_logs_days") or 0) * 86400
    floor = max(MIN_SERVER_RETENTION_SECONDS, 100 * interval)
    if seconds and seconds < floor:
        name = "binlog_expire_logs_seconds" if "binlog_expire_logs_seconds" in v else "expire_logs_days"
        need(name, False, "expire_logs_days=7",
             f"the server must keep binlogs far longer than the {interval} s interval: 0 or >= {floor:.0f} s")
    grants_rows = server.sql("SELECT CURRENT_USER(); SHOW GRANTS;")
    account = grants_rows[0][0] if grants_rows else "?"
    user, _, host = account.partition("@")
    granted: set = set()
    for row in grants_rows[1:]:
        m = re.match(r"^GRANT (.+?) ON \*\.\* TO ", row[0])
        if m:
            granted.update(p.strip().upper() for p in m.group(1).split(","))
    statements = []
    for privilege, satisfied_by in REQUIRED_GRANTS.items():
        if not granted.intersection(satisfied_by):
            statement = f"GRANT {privilege} ON *.* TO '{user}'@'{host}'"
            problems.append(f"grant {privilege} missing for {account}: run {statement}")
            statements.append(statement)
    return problems, settings, statements


def write_settings(path: str, settings: Dict[str, str]) -> None:
    """The drop-in option file, atomically ([mariadb] is read by every MariaDB server version)."""
    lines = ["# Written by quickport binlog_ship.py --check --apply-settings: point-in-time recovery needs these.",
             "# Takes effect at the next server restart (never restarted by the shipper).", "[mariadb]"]
    lines += [f"{k}={val}" for k, val in settings.items()]
    write_atomically(path, ("\n".join(lines) + "\n").encode(), mode=0o644)


# --- command line ----------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _pattern(name: str, pattern: "re.Pattern[str]", allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise argparse.ArgumentTypeError(f"{name} {value!r}: {allowed}")
        return value
    return check


def _whole(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = lo - 1
        if not lo <= number <= hi:
            raise argparse.ArgumentTypeError(f"{name} {value!r}: must be a whole number from {lo} to {hi}")
        return number
    return check


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="binlog_ship.py", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one interval: flush, ship every closed file, exit")
    mode.add_argument("--follow", action="store_true", help="ship every --interval seconds until SIGTERM/SIGINT")
    mode.add_argument("--check", action="store_true", help="verify the server settings and the user's grants")
    p.add_argument("--bucket", type=_pattern("--bucket", BUCKET_RE, "must be an S3 bucket name"))
    p.add_argument("--prefix", default="binlog",
                   type=_pattern("--prefix", PREFIX_RE, "must be lowercase a-z 0-9 . _ - segments separated by /"))
    creds = p.add_mutually_exclusive_group(required=True)
    creds.add_argument("--defaults-file", help="client option file with user/password/socket (used as is)")
    creds.add_argument("--password-parameter", help="SSM SecureString parameter holding the password")
    p.add_argument("--user", default="binlog", type=_pattern("--user", USER_RE, "must be 1-80 of A-Z a-z 0-9 _"),
                   help="database user with --password-parameter (default: binlog)")
    p.add_argument("--socket", help="server socket with --password-parameter (default: the client's)")
    p.add_argument("--interval", type=_whole("--interval", 5, 300), default=30, help="seconds, 5..300 (default 30)")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help=f"state.json and spool/ (default {DEFAULT_STATE_DIR})")
    p.add_argument("--spool-megabytes", type=_whole("--spool-megabytes", 16, 1048576), default=1024,
                   help="bound of the local spool while S3 is unreachable (default 1024)")
    p.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    p.add_argument("--metrics-stack", type=_pattern("--metrics-stack", STACK_RE, "must be a Pulumi stack name"),
                   help=f"publish Binlog* metrics to {METRICS_NAMESPACE} with dimension Stack=this (best effort)")
    p.add_argument("--database", type=_pattern("--database", DATABASE_RE, "must be 1-64 of A-Z a-z 0-9 _"),
                   help="Database dimension of the metrics (with --metrics-stack)")
    p.add_argument("--apply-settings", metavar="FILE",
                   help="with --check: write the missing settings into this drop-in option file (no restart)")
    p.add_argument("--json", action="store_true", help="one JSON document (--follow: one JSON line per interval)")
    return p


def validate(args: argparse.Namespace) -> None:
    if not args.check and not args.bucket:
        raise UsageProblem("--bucket: required with --once and --follow")
    if args.apply_settings and not args.check:
        raise UsageProblem("--apply-settings: only with --check")
    if args.apply_settings and not os.path.isabs(args.apply_settings):
        raise UsageProblem(f"--apply-settings {args.apply_settings!r}: must be an absolute path")
    if bool(args.metrics_stack) != bool(args.database):
        raise UsageProblem("--metrics-stack and --database: give both or neither")
    if args.defaults_file and not os.path.isfile(args.defaults_file):
        raise UsageProblem(f"--defaults-file {args.defaults_file}: no such file")


@contextlib.contextmanager
def credentials(args: argparse.Namespace):
    if args.defaults_file:
        yield args.defaults_file
        return
    password = password_from_parameter(args.password_parameter, args.region)
    with client_defaults_file(args.user, password, args.socket) as path:
        del password
        yield path


@contextlib.contextmanager
def state_lock(state_dir: str):
    """One shipper per state directory (the service and a manual run must not interleave)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ShipFailed(f"another shipper holds {state_dir}/lock") from None
        yield
    finally:
        os.close(fd)


def _emit(args: argparse.Namespace, document: Dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(document, indent=None if args.follow else 1), flush=True)
    else:
        print(text, flush=True)


def _summary(report: Dict[str, Any]) -> str:
    shipped = ", ".join(report["segments"]) or "nothing new"
    return (f"chain {report['chain']}: shipped {shipped}; confirmed {report.get('confirmed_file')}:"
            f"{report.get('confirmed_position')} at {report.get('confirmed_at')}")


def run_check(args: argparse.Namespace, defaults_file: str) -> int:
    problems, settings, statements = check_server(Server(defaults_file), args.interval)
    written = None
    if args.apply_settings and settings:
        write_settings(args.apply_settings, settings)
        written = args.apply_settings
    document = {"ok": not problems, "problems": problems, "settings": settings, "grants": statements,
                "written": written, "restart_needed": bool(written)}
    lines = [f"FAIL {p}" for p in problems] or ["ok: the server and the user are ready for binlog shipping"]
    if written:
        lines.append(f"wrote {written}: restart MariaDB to apply it (not done here), then run --check again")
    _emit(args, document, "\n".join(lines))
    return EXIT_OK if not problems else EXIT_FAILED


def run_ship(args: argparse.Namespace, defaults_file: str) -> int:
    store = Store(args.bucket, args.prefix, args.region)
    shipper = Shipper(Server(defaults_file), store, args.state_dir, args.spool_megabytes)

    def one() -> Tuple[Dict[str, Any], Optional[str]]:
        try:
            report, error = shipper.interval(), None
        except IntervalFailed as e:
            report, error = e.report, str(e)
        except ShipFailed as e:
            report = {"chain": shipper.index["chain"] if shipper.state else None, "segments": [], "gap": None}
            error = str(e)
        report["ok"] = error is None and not report.get("gap")
        report["error"] = error
        if args.metrics_stack:
            warning = publish_metrics(args.metrics_stack, args.database, report, args.region)
            if warning:
                log(f"warning: {warning}")
        return report, error

    if args.once:
        report, error = one()
        if error:
            log(f"FAILED: {error}")
        _emit(args, report, _summary(report) if not error else f"FAILED: {error}")
        return EXIT_OK if report["ok"] else EXIT_FAILED

    stop = threading.Event()

    def on_signal(signum, _frame):
        if not stop.is_set():
            log(f"{signal.Signals(signum).name}: shipping what there is, then stopping")
        stop.set()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)
    log(f"following every {args.interval} s into s3://{args.bucket}/{args.prefix}/ (state {args.state_dir})")
    while True:
        final = stop.is_set()
        started = time.monotonic()
        report, error = one()
        if error:
            log(f"interval failed: {error}; retrying in {args.interval} s")
        if args.json or report["segments"] or report.get("gap"):
            _emit(args, report, _summary(report))
        if final:
            if error:
                log(f"final ship failed: {error}")
                return EXIT_FAILED
            return EXIT_OK
        stop.wait(max(0.0, args.interval - (time.monotonic() - started)))


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        validate(args)
        previous = signal.getsignal(signal.SIGTERM)
        if args.once or args.check:
            def terminate(signum, _frame):
                raise Terminated(f"stopped by signal {signal.Signals(signum).name}")
            signal.signal(signal.SIGTERM, terminate)
        try:
            with credentials(args) as defaults_file:
                if args.check:
                    return run_check(args, defaults_file)
                with state_lock(args.state_dir):
                    return run_ship(args, defaults_file)
        finally:
            signal.signal(signal.SIGTERM, previous)
    except UsageProblem as e:
        return _fail(args, EXIT_USAGE, str(e))
    except ShipFailed as e:
        return _fail(args, EXIT_FAILED, str(e))
    except (Terminated, KeyboardInterrupt) as e:
        return _fail(args, EXIT_FAILED, str(e) or "interrupted")
    except OSError as e:   # the state directory or spool: unwritable, full disk
        return _fail(args, EXIT_FAILED, f"local file system: {e}")


def _fail(args: argparse.Namespace, code: int, message: str) -> int:
    print(f"binlog_ship: {'error' if code == EXIT_USAGE else 'FAILED'}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "exitCode": code, "error": message}))
    return code


if __name__ == "__main__":
    sys.exit(main())
