#!/usr/bin/env python3
"""quickport_dump: MariaDB logical dumps and file archives streamed to S3 that cannot silently fail.

Runs on the instance (embedded verbatim in the SSM document; needs only python3 + boto3, Python 3.9+)
and on an operator's machine through `backupctl db-backup`. Stdlib + boto3 only, no project imports.

    python3 quickport_dump.py db --database DB --bucket B --prefix P \
        (--password-parameter NAME | --defaults-file F) [--user U] [--compression zstd|gzip] \
        [--priority low|idle|normal] [--verify frames|decompress] [--socket S | --db-host H [--port N]] \
        [--region R] [--metrics-stack STACK] [--json]
    python3 quickport_dump.py files --bucket B --prefix P --path P [--path P ...] \
        [--host NAME] [--compression zstd|gzip] [--region R] [--json]

Pipeline: mariadb-dump -> zstd|gzip (reading the dump's pipe itself) -> (this process: SHA-256, parts)
-> S3 multipart upload; this process reads only the dump's header lines (binlog position) and the
compressed stream, whose zstd frames it walks as they pass (--verify decompress: a second
decompressor reads it again to its end, ~1.3 CPU-s per GB). All children run at a low CPU and I/O
priority (--priority). Nothing touches local disk except the 0600 client defaults file holding the
password, removed on exit. The upload is completed only when the dump and the compressor both exited
0 and the stream is whole zstd frames, each with its content checksum (decompress: the uploaded bytes
decompress whole and end with the dump's "-- Dump completed" trailer); otherwise it is aborted, so no
object ever appears at the final key. The manifest is written after the upload, and
<prefix>/<db>/latest.json after the manifest: a dump is good only if its manifest exists. Row counts,
the content checksum and the trailer are checked by db-restore-drill and by every restore.

Exit codes: 0 ok, 1 the backup failed (nothing published), 2 bad usage.
Only s3:PutObject and s3:AbortMultipartUpload are needed (no reads), plus ssm:GetParameter.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, NoReturn, Optional

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

MIB = 1024 * 1024
FIRST_PART_SIZE = 8 * MIB
# Part size doubles every 1,000 parts: 10,000 parts then reach ~8 TiB, beyond S3's 5 TiB object
# limit, while a typical dump (< 8 GiB) uploads in 8 MiB parts and memory stays small.
PART_SIZE_DOUBLING_EVERY = 1000
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10000
# One part uploading, one queued, one filling: enough to keep the pipe moving (S3 takes a part faster
# than the dump compresses one) and a memory ceiling of ~3 parts that every dump reaches early.
UPLOAD_THREADS = 1
QUEUED_PARTS = 1
# Part buffers are allocated once and reused, so memory does not grow with the dump (no allocator churn).
POOL_BUFFERS = UPLOAD_THREADS + QUEUED_PARTS + 1
READ_CHUNK = 1 * MIB
PIPE_SIZE = 1 * MIB         # bigger pipes: fewer wake-ups between dump, this process and compressor
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)   # Python < 3.10 lacks the constant

DUMP_OPTIONS = ("--single-transaction", "--quick", "--routines", "--triggers", "--events",
                "--hex-blob", "--default-character-set=utf8mb4")
DUMP_TRAILER = b"-- Dump completed"
COMPRESSORS = {
    # name: (compress argv, decompress argv, file suffix). zstd -1 compresses ~10x faster than gzip -6
    # at a better ratio; one thread keeps up with mariadb-dump and leaves the other core to production.
    "zstd": (["zstd", "-q", "-c", "-1", "--check"], ["zstd", "-q", "-d", "-c"], ".zst"),
    "gzip": (["gzip", "-c", "-6"], ["gzip", "-d", "-c"], ".gz"),
}
PRIORITIES = {
    # name: (nice increment, ionice arguments) for every process of the dump pipeline, so that the
    # Laravel app and the GT06 ingestion keep the CPU and the disk. The server's own work is not ours.
    "low": (10, ["-c", "2", "-n", "7"]),   # best-effort class, lowest level: yields, never starves
    "idle": (19, ["-c", "3"]),             # disk only when nobody else wants it: may crawl on a busy box
    "normal": (0, []),
}
DEFAULT_PRIORITY = "low"
VERIFY_MODES = {
    # name: what proves the uploaded dump whole before it is published (besides every exit status).
    "frames": "zstd's frame structure walked as it passes (no extra CPU); gzip is always decompressed",
    "decompress": "decompressed again to its end (~1.3 CPU-s per GB of dump text) and the dump's trailer read",
}
DEFAULT_VERIFY = "frames"
DATABASE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*$")
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
STACK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
METRICS_NAMESPACE = "QuickportBackup"   # the stack's alarms watch these (components/monitoring.py)
MANIFEST_FORMAT = "quickport-backup-manifest/1"


class BackupFailed(Exception):
    """The backup failed; nothing was published. str() is the one-line reason."""


class UsageProblem(Exception):
    """Bad input: one line naming the field and what is allowed."""


class Terminated(BaseException):
    """A signal asked us to stop; BaseException so no `except Exception` swallows it."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def isoformat(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def stderr_progress(message: str) -> None:
    print(f"{utcnow():%H:%M:%SZ} {message}", file=sys.stderr, flush=True)


# --- small helpers ----------------------------------------------------------------------------------

def part_size_for(part_number: int) -> int:
    """Size of part N (1-based): 8 MiB, doubling every 1,000 parts, capped at S3's 5 GiB."""
    return min(FIRST_PART_SIZE << ((part_number - 1) // PART_SIZE_DOUBLING_EVERY), MAX_PART_SIZE)


def find_program(*names: str) -> Optional[str]:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def choose_compression(preferred: str) -> str:
    """zstd when its binary exists (much faster at a better ratio), else gzip (always present)."""
    if preferred == "zstd" and find_program("zstd"):
        return "zstd"
    if find_program("gzip"):
        return "gzip"
    raise BackupFailed("no compressor found: install zstd or gzip")


def child_env() -> Dict[str, str]:
    """A minimal environment for children: no AWS credentials, no MYSQL_PWD, nothing secret."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LC_ALL": "C"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


def priority_prefix(priority: str) -> List[str]:
    """`nice -n N ionice -t -c C [-n L]` before a child's argv (each only if installed; -t: an ionice
    the kernel refuses still runs the command)."""
    increment, io = PRIORITIES[priority]
    nice, ionice = find_program("nice"), find_program("ionice")
    prefix = [nice, "-n", str(increment)] if increment and nice else []
    return prefix + ([ionice, "-t", *io] if io and ionice else [])


def enlarge_pipe(fileobj: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(fileobj.fileno(), F_SETPIPE_SZ, PIPE_SIZE)


def retries() -> Dict[str, Any]:
    """Standard retry mode (backoff with jitter), 6 attempts: a nightly job on a real network should
    ride out a few transient errors. AWS_MAX_ATTEMPTS still wins, as it does for any AWS tool."""
    try:
        attempts = max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "6")))
    except ValueError:
        attempts = 6
    return {"mode": "standard", "total_max_attempts": attempts}


def s3_client(region: Optional[str]):
    import boto3
    from botocore.config import Config
    # AWS_ENDPOINT_URL is honoured by botocore itself. A bucket with Object Lock default retention
    # refuses PutObject and UploadPart without a checksum header; "when_supported" (boto3's default,
    # CRC32) is pinned so AWS_REQUEST_CHECKSUM_CALCULATION=when_required cannot switch it off.
    # botocore < 1.36 has no such setting (nor the variable) and sends Content-MD5 on both itself.
    # payload_signing_enabled=False: every body already carries a CRC32 that S3 checks, under TLS, so
    # SigV4 need not SHA-256 it again (what botocore does by default for streaming uploads over https).
    settings: Dict[str, Any] = {"retries": retries(), "user_agent_extra": "quickport-dump",
                                "s3": {"payload_signing_enabled": False}}
    try:
        config = Config(request_checksum_calculation="when_supported", **settings)
    except TypeError:
        config = Config(**settings)
    return boto3.session.Session().client("s3", region_name=region, config=config)


def aws_error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def terminate_on_signals():
    """Turn SIGTERM/SIGHUP (an SSM timeout, a closed terminal) into an exception so every `finally`
    runs: children killed, multipart upload aborted, defaults file removed."""
    def handler(signum, _frame):
        raise Terminated(f"stopped by signal {signal.Signals(signum).name}")
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --- credentials --------------------------------------------------------------------------------

def _option_value(field: str, value: str) -> str:
    """Quote a value for a MariaDB option file (the parser unescapes \\\\ and \\" inside quotes)."""
    if any(c in value for c in "\n\r\0"):
        raise UsageProblem(f"{field}: must not contain newline, carriage return or NUL characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def client_defaults_file(user: str, password: str, socket_path: Optional[str] = None,
                         host: Optional[str] = None, port: Optional[int] = None):
    """A [client] option file, mode 0600 in a private 0700 directory, removed on exit. The password
    reaches the client only through this file: never argv (visible in ps) nor a child's environment."""
    # /dev/shm: memory, never written to a disk; the pid in the name lets an operator clean up after kill -9.
    directory = tempfile.mkdtemp(prefix=f"quickport-dump-{os.getpid()}-",
                                 dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(directory, "client.cnf")
    try:
        lines = ["[client]", f"user={_option_value('--user', user)}",
                 f"password={_option_value('password', password)}"]
        if socket_path:
            lines.append(f"socket={_option_value('--socket', socket_path)}")
        if host:
            lines.append(f"host={_option_value('--db-host', host)}")
        if port:
            lines.append(f"port={int(port)}")
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
    from botocore.config import Config
    ssm = boto3.session.Session().client("ssm", region_name=region, config=Config(retries=retries()))
    try:
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as e:  # botocore ClientError/BotoCoreError: one line, no traceback
        raise BackupFailed(f"reading password parameter {name}: {aws_error(e)}") from None
    return value.rstrip("\n")


# --- S3 multipart upload with growing parts and a running SHA-256 ----------------------------------

class StreamingUpload:
    """Accepts a byte stream, uploads it as multipart parts in the background, hashes it on the way.
    `complete()` publishes the object; `abort()` (also on any error) guarantees nothing appears.

    `s3` is a client, or a callable that makes one. The upload thread makes the client and creates
    the multipart upload while the caller already fills the first part: boto3's import and that round
    trip (~0.3 s) no longer hold up the dump's pipe. A failure to start is raised by the next write."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str, metadata: Dict[str, str]):
        self._make_client: Callable[[], Any] = s3 if callable(s3) else (lambda: s3)
        self.s3: Any = None
        self.bucket, self.key = bucket, key
        self._content_type, self._metadata = content_type, metadata
        self.upload_id: Optional[str] = None
        self._opened = threading.Event()
        self._ended = False            # completed or aborted
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self._buffer: Optional[bytearray] = None   # the part being filled
        self._fill = 0
        self._pool: "queue.Queue[bytearray]" = queue.Queue()
        self._allocated = 0
        self._next_part = 1
        self._parts: Dict[int, Dict[str, Any]] = {}
        self._error: Optional[BaseException] = None
        self._queue: "queue.Queue[Optional[tuple]]" = queue.Queue(maxsize=QUEUED_PARTS)
        self._workers = [threading.Thread(target=self._work, args=(i == 0,), daemon=True, name=f"upload-{i}")
                         for i in range(UPLOAD_THREADS)]
        for w in self._workers:
            w.start()

    def _open(self) -> None:
        try:
            self.s3 = self._make_client()
            # CRC32 declared at the start, sent with every part and listed again at completion: S3's
            # documented multipart checksum protocol (s3transfer's too). Parts carrying a checksum the
            # upload was not created with are refused by S3 (at UploadPart or completion); Object Lock needs one.
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self._content_type, Metadata=self._metadata,
                ChecksumAlgorithm="CRC32")["UploadId"]
        except Exception as e:
            self._error = BackupFailed(f"starting upload to s3://{self.bucket}/{self.key}: {aws_error(e)}")
        except BaseException as e:  # noqa: BLE001 - e.g. KeyboardInterrupt: re-raised by the writer thread
            self._error = e
        finally:
            self._opened.set()

    def _work(self, opens: bool) -> None:
        if opens:
            self._open()
        self._opened.wait()
        while True:
            item = self._queue.get()
            if item is None:
                return
            number, body = item
            try:
                if self._error is None:
                    # Our own CRC32 in the header: botocore then sends the buffer as it is instead of
                    # re-framing it as aws-chunked with a trailer (several copies of every byte).
                    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode("ascii")
                    etag = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                               PartNumber=number, Body=body, ChecksumCRC32=crc)["ETag"]
                    self._parts[number] = {"PartNumber": number, "ETag": etag, "ChecksumCRC32": crc}
            except BaseException as e:  # noqa: BLE001 - reported to the writer thread
                self._error = e
            finally:
                if isinstance(body, bytearray):
                    self._pool.put(body)

    def _check(self) -> None:
        if isinstance(self._error, BackupFailed):
            raise BackupFailed(str(self._error))
        if self._error is not None and not isinstance(self._error, Exception):
            raise self._error      # KeyboardInterrupt, SystemExit: the writer thread stops as they ask
        if self._error is not None:
            raise BackupFailed(f"uploading to s3://{self.bucket}/{self.key}: {aws_error(self._error)}")

    def _submit(self, body: bytes) -> None:
        if self._next_part > MAX_PARTS:
            raise BackupFailed(f"stream exceeds {MAX_PARTS} parts")
        while True:  # a bounded put that notices a failed worker instead of blocking for ever
            self._check()
            try:
                self._queue.put((self._next_part, body), timeout=1)
                break
            except queue.Full:
                continue
        self._next_part += 1

    def _take_buffer(self, size: int) -> bytearray:
        """A free part buffer of exactly `size` bytes: a returned one, or a new one up to the pool size."""
        while True:
            try:
                buffer = self._pool.get_nowait()
            except queue.Empty:
                if self._allocated < POOL_BUFFERS:
                    self._allocated += 1
                    return bytearray(size)
                self._check()
                try:
                    buffer = self._pool.get(timeout=1)
                except queue.Empty:
                    continue
            if len(buffer) == size:
                return buffer
            self._allocated -= 1  # the part size grew: let the smaller buffer go

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.bytes += len(data)
        with memoryview(data) as view:
            offset = 0
            while offset < len(view):
                if self._buffer is None:
                    self._buffer, self._fill = self._take_buffer(part_size_for(self._next_part)), 0
                n = min(len(self._buffer) - self._fill, len(view) - offset)
                self._buffer[self._fill:self._fill + n] = view[offset:offset + n]
                self._fill += n
                offset += n
                if self._fill == len(self._buffer):
                    full, self._buffer = self._buffer, None
                    self._submit(full)

    def _drain(self) -> None:
        for _ in self._workers:
            while any(w.is_alive() for w in self._workers):   # no worker left to take it: do not wait
                try:
                    self._queue.put(None, timeout=1)
                    break
                except queue.Full:
                    continue
        for w in self._workers:
            w.join()

    def complete(self) -> str:
        """Upload the last part and publish the object. Returns its ETag."""
        if self._buffer is not None and self._fill:
            with memoryview(self._buffer) as view:
                last = bytes(view[:self._fill])
            self._buffer = None
            self._submit(last)
        elif self._next_part == 1:
            self._submit(b"")  # an empty stream is still one (empty) part
        self._drain()
        self._check()
        parts = [self._parts[n] for n in sorted(self._parts)]
        try:
            result = self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": parts})
        except Exception as e:
            raise BackupFailed(f"completing upload of s3://{self.bucket}/{self.key}: {aws_error(e)}") from None
        self._ended = True
        return result.get("ETag", "")

    @property
    def parts(self) -> int:
        return self._next_part - 1

    def abort(self) -> Optional[str]:
        """Abort the upload (idempotent). Returns a warning line if S3 could not be told."""
        if self._ended:
            return None
        self._ended = True
        self._error = self._error or BackupFailed("aborted")
        # Unblock and stop workers without waiting for a queue that may be full.
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        for _ in self._workers:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
        for w in self._workers:
            w.join(timeout=60)   # the opener too: an upload it is still creating is then aborted
        upload_id = self.upload_id
        if upload_id is None:
            return None          # never created: nothing to abort
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except Exception as e:
            return (f"could not abort multipart upload {upload_id} ({aws_error(e)}); no object exists, "
                    f"the bucket's lifecycle rule removes the parts")
        return None


# --- what the dump says about itself: header and trailer lines -----------------------------------

_SERVER_VERSION = re.compile(rb"^-- Server version\s+(.+?)\s*$")
# --master-data=2 --gtid: the binlog position in the header, the GTID position just before the trailer.
_BINLOG_POSITION = re.compile(rb"^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+);")
_GTID_POSITION = re.compile(rb"^-- SET GLOBAL gtid_slave_pos='([^']*)';")
# The header ends at the first line that is neither a comment nor a /*! ... */ setting.
_HEADER_END = re.compile(rb"\n[^-/\n]")
HEADER_LIMIT = 1 * MIB
TAIL_BYTES = 16 * 1024      # the GTID line and the trailer are the last ~1 KB of every dump


def dump_facts(text: bytes) -> Dict[str, Any]:
    """Server version, binlog file/position, GTID position and the last non-empty line, from whole
    lines of a dump's header or tail (a tail's cut first line matches nothing)."""
    facts: Dict[str, Any] = {"server_version": None, "binlog_file": None, "binlog_position": None,
                             "gtid": None, "last_line": b""}
    for line in text.splitlines():
        if line.startswith(b"-- "):
            version, position, gtid = (p.match(line) for p in (_SERVER_VERSION, _BINLOG_POSITION, _GTID_POSITION))
            if version and facts["server_version"] is None:
                facts["server_version"] = version.group(1).decode("utf-8", "replace")
            if position:
                facts["binlog_file"], facts["binlog_position"] = position.group(1).decode(), int(position.group(2))
            if gtid:
                facts["gtid"] = gtid.group(1).decode() or None   # '' on a server that never logged a transaction
        if line.strip():
            facts["last_line"] = line
    return facts


def read_header(fd: int) -> bytes:
    """The dump's first lines, through its binlog position, read with os.read (nothing beyond them is
    buffered in this process): the compressor then reads the rest of the same pipe itself."""
    data = bytearray()
    while len(data) < HEADER_LIMIT and not _HEADER_END.search(data):
        chunk = os.read(fd, 64 * 1024)
        if not chunk:
            break
        data += chunk
    return bytes(data)


# --- the pipeline ---------------------------------------------------------------------------------

class _Reaper:
    """Children of one pipeline: killed on any failure, their stderr kept for the error message."""

    def __init__(self) -> None:
        self.procs: List[subprocess.Popen] = []
        self.stderr: Dict[int, bytearray] = {}
        self._threads: List[threading.Thread] = []

    def start(self, argv: List[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, env=child_env(), close_fds=True, **kw)
        self.procs.append(proc)
        buf = self.stderr[proc.pid] = bytearray()

        def collect() -> None:
            for line in proc.stderr or ():
                if len(buf) < 64 * 1024:
                    buf.extend(line)
        t = threading.Thread(target=collect, daemon=True)
        t.start()
        self._threads.append(t)
        return proc

    def message(self, proc: subprocess.Popen) -> str:
        for t in self._threads:
            t.join(timeout=5)
        text = self.stderr.get(proc.pid, b"").decode("utf-8", "replace").strip()
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=30)


def _exit_description(proc: subprocess.Popen) -> str:
    code = proc.returncode
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited {code}"


def _upload_stream(source, upload: StreamingUpload, progress: Callable[[str], None],
                   tee: Optional[Callable[[bytes], None]] = None) -> None:
    next_report = 64 * MIB
    while True:
        chunk = source.read(READ_CHUNK)
        if not chunk:
            return
        upload.write(chunk)
        if tee:
            tee(chunk)
        if upload.bytes >= next_report:
            progress(f"uploaded {upload.bytes / MIB:.0f} MiB compressed ({upload.parts} parts)")
            next_report += 256 * MIB


# --- db -----------------------------------------------------------------------------------------

def dump_key(prefix: str, database: str, started: dt.datetime, suffix: str) -> str:
    return (f"{prefix}/{database}/{started:%Y/%m/%d}/{database}-{started:%Y%m%dT%H%M%SZ}.sql{suffix}")


def manifest_key_for(key: str) -> str:
    return key + ".manifest.json"


def dump_program() -> str:
    program = find_program("mariadb-dump", "mysqldump")
    if not program:
        raise BackupFailed("neither mariadb-dump nor mysqldump is installed")
    return program


def _put_json(s3, bucket: str, key: str, document: Dict[str, Any]) -> None:
    body = (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    except Exception as e:
        raise BackupFailed(f"writing s3://{bucket}/{key}: {aws_error(e)}") from None


def publish(s3, bucket: str, latest_key: str, manifest: Dict[str, Any]) -> str:
    """Manifest first, then latest.json: a reader that finds latest.json always finds its manifest."""
    manifest_key = manifest_key_for(manifest["key"])
    _put_json(s3, bucket, manifest_key, manifest)
    _put_json(s3, bucket, latest_key, {
        "format": MANIFEST_FORMAT, "manifest": manifest_key, "key": manifest["key"],
        "sha256": manifest["sha256"], "bytes": manifest["bytes"], "finished_at": manifest["finished_at"]})
    return manifest_key


PREFLIGHT_SQL = """\
SELECT 1 FROM mysql.proc LIMIT 0;
SELECT (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE = 'TRIGGER')
     + (SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES
        WHERE PRIVILEGE_TYPE = 'TRIGGER' AND '{database}' LIKE TABLE_SCHEMA);
SELECT @@log_bin, @@server_id;
"""
# Binlog coordinates of the dump's snapshot, for point-in-time recovery. With --single-transaction
# MariaDB (5.3+) reads them from the snapshot itself (binlog_snapshot_file/position): no global read
# lock and no RELOAD or BINLOG MONITOR grant. Passed only when log_bin is ON: otherwise the dump refuses.
BINLOG_DUMP_OPTIONS = ("--master-data=2", "--gtid")


def _client(defaults_file: str, sql: str) -> subprocess.CompletedProcess:
    client = find_program("mariadb", "mysql")
    if not client:
        raise BackupFailed("neither the mariadb nor the mysql client is installed")
    return subprocess.run([client, f"--defaults-file={defaults_file}", "--batch", "--skip-column-names"],
                          input=sql.encode(), capture_output=True, env=child_env(), timeout=120)


def preflight(defaults_file: str, database: str) -> Dict[str, int]:
    """Fail loudly where mariadb-dump would silently leave things out: without SELECT on mysql.proc
    it dumps no routines, without TRIGGER no triggers, and both still exit 0. Also proves the
    credentials work before anything is uploaded. Returns the server's log_bin (0/1) and server_id."""
    out = _client(defaults_file, PREFLIGHT_SQL.format(database=database))
    message = out.stderr.decode("utf-8", "replace").strip().splitlines()
    if out.returncode != 0:
        detail = message[-1] if message else f"exit {out.returncode}"
        if "mysql" in detail and "proc" in detail:
            detail += ("; mariadb-dump would silently omit routines: GRANT SELECT ON mysql.proc "
                       "to the backup user")
        raise BackupFailed(f"database pre-flight check failed: {detail}")
    lines = out.stdout.decode("utf-8", "replace").split()
    if lines[:1] == ["0"]:
        raise BackupFailed(f"the database user lacks the TRIGGER privilege on {database}; mariadb-dump "
                           f"would silently omit triggers: GRANT TRIGGER ON `{database}`.* to it")
    try:
        return {"log_bin": int(lines[1]), "server_id": int(lines[2])}
    except (IndexError, ValueError):
        raise BackupFailed(f"database pre-flight check: unexpected answer {' '.join(lines)!r}") from None


_BINLOG_FILE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


def gtid_at(defaults_file: str, binlog_file: str, position: int) -> Optional[str]:
    """The GTID position of a binlog coordinate, asked of the server the way mariadb-dump --gtid asks
    it (BINLOG_GTID_POS, no privilege needed): the dump writes it only at its very end, which this
    process does not read. None if the server no longer has that binlog (or never logged a GTID)."""
    if not _BINLOG_FILE.match(binlog_file):
        return None
    out = _client(defaults_file, f"SELECT BINLOG_GTID_POS('{binlog_file}', {int(position)});\n")
    value = out.stdout.decode("utf-8", "replace").strip() if out.returncode == 0 else ""
    return value if value and value != "NULL" else None


def binlog_coordinates(head: Dict[str, Any], gtid: Optional[str], server: Dict[str, int]) -> Optional[Dict[str, Any]]:
    """Where point-in-time replay starts: the snapshot's binlog file/position (header) and GTID position
    (`gtid`, else a GTID line in the header), or None when the server does not log binlogs. With
    log_bin ON, a dump without a binlog position is refused."""
    if not server["log_bin"]:
        return None
    if head["binlog_file"] is None:
        raise BackupFailed("the server logs binlogs but the dump has no binlog position "
                           "(its CHANGE MASTER line is missing); point-in-time recovery could not start from it")
    return {"file": head["binlog_file"], "position": head["binlog_position"], "gtid": gtid or head["gtid"],
            "server_id": server["server_id"]}


class _TailCheck:
    """Decompresses the uploaded bytes once more, in parallel at C speed, and keeps the last TAIL_BYTES
    of the dump text: proves the object decompresses whole (zstd's content checksum, gzip's CRC) and
    ends with the dump's own trailer, without this process reading the raw stream."""

    def __init__(self, reaper: "_Reaper", prefix: List[str], decompress: List[str]) -> None:
        tail = find_program("tail")
        if not tail:
            raise BackupFailed("tail (coreutils) is not installed")
        self.unpack = reaper.start(prefix + decompress, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        enlarge_pipe(self.unpack.stdin)
        enlarge_pipe(self.unpack.stdout)
        self.tail = reaper.start(prefix + [tail, "-c", str(TAIL_BYTES)], stdin=self.unpack.stdout,
                                 stdout=subprocess.PIPE)
        assert self.unpack.stdout is not None and self.unpack.stdin is not None   # both are pipes
        self.unpack.stdout.close()   # tail owns the read end
        self.sink, self.broken = self.unpack.stdin, False

    def feed(self, chunk: bytes) -> None:
        if not self.broken:
            try:
                self.sink.write(chunk)
            except BrokenPipeError:   # the decompressor gave up on the stream; its exit status says why
                self.broken = True

    def finish(self, reaper: "_Reaper", name: str) -> bytes:
        with contextlib.suppress(BrokenPipeError):
            self.sink.close()
        assert self.tail.stdout is not None
        text = self.tail.stdout.read()
        self.unpack.wait()
        self.tail.wait()
        if self.unpack.returncode != 0 or self.broken:
            raise BackupFailed(f"the compressed dump does not decompress ({name} {_exit_description(self.unpack)}: "
                               f"{reaper.message(self.unpack) or 'no message'})")
        if self.tail.returncode != 0:
            raise BackupFailed(f"tail {_exit_description(self.tail)}: {reaper.message(self.tail)}")
        return text


class ZstdFrames:
    """Walks zstd frames as they pass (RFC 8878 3.1: frame header, block headers, content checksum),
    without decompressing: the stream must be whole frames, each with its checksum, and nothing more.
    The checksum itself is verified by the drill and every restore. ~8 block headers per MB of text."""

    MAGIC, SKIPPABLE, SKIPPABLE_MASK = 0xFD2FB528, 0x184D2A50, 0xFFFFFFF0
    MAX_BLOCK = 128 * 1024
    # Frame_Content_Size field bytes by its 2-bit flag; flag 0 means 1 byte only in a single segment.
    _FCS_BYTES, _DICTIONARY_ID_BYTES = (0, 2, 4, 8), (0, 1, 2, 4)

    def __init__(self, name: str = "the compressed stream") -> None:
        self.name = name
        self.offset = 0            # bytes of the stream seen
        self.frames = 0            # complete zstd frames
        self._state, self._need = "magic", 4
        self._pending = bytearray()
        self._skip = 0             # block content (or skippable frame data) still to pass over
        self._frame_start = 0

    def feed(self, chunk: bytes) -> None:
        pos, size = 0, len(chunk)
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._pending), size - pos)
            self._pending += chunk[pos:pos + take]
            pos += take
            if self._state == "magic" and len(self._pending) == take:
                self._frame_start = self.offset + pos - take   # a frame (or trailing bytes) begins here
            if len(self._pending) == self._need:
                field, self._pending = bytes(self._pending), bytearray()
                self._advance(field, self.offset + pos - len(field))
        self.offset += size

    def _bad(self, what: str) -> NoReturn:
        raise BackupFailed(f"{self.name} is not whole zstd frames: {what}")

    def _advance(self, field: bytes, at: int) -> None:
        value = int.from_bytes(field, "little")
        state = self._state
        if state == "magic":
            if value == self.MAGIC:
                self._state, self._need = "descriptor", 1
            elif value & self.SKIPPABLE_MASK == self.SKIPPABLE:
                self._state, self._need = "skippable", 4
            else:
                self._bad(f"no frame magic number at byte {at} (0x{value:08x})")
        elif state == "skippable":
            self._skip, self._state, self._need = value, "magic", 4
        elif state == "descriptor":
            if value & 0x08:
                self._bad(f"a reserved frame header bit set at byte {at}")
            if not value & 0x04:
                self._bad(f"the frame at byte {self._frame_start} has no content checksum")
            single_segment = bool(value & 0x20)
            fcs_flag = value >> 6
            rest = ((0 if single_segment else 1) + self._DICTIONARY_ID_BYTES[value & 0x03]
                    + (1 if fcs_flag == 0 and single_segment else self._FCS_BYTES[fcs_flag]))
            self._state, self._need = ("header", rest) if rest else ("block", 3)
        elif state == "header":
            self._state, self._need = "block", 3
        elif state == "block":
            block_type, block_size = (value >> 1) & 0x03, value >> 3
            if block_type == 3:
                self._bad(f"a reserved block type at byte {at}")
            if block_size > self.MAX_BLOCK:
                self._bad(f"a block of {block_size} bytes at byte {at} (at most {self.MAX_BLOCK})")
            self._skip = 1 if block_type == 1 else block_size   # an RLE block stores its one byte
            if value & 0x01:
                self._state, self._need = "checksum", 4
        elif state == "checksum":
            self.frames += 1
            self._state, self._need = "magic", 4

    def finish(self) -> None:
        """Raises BackupFailed unless the stream ended exactly after a complete frame."""
        if self._state != "magic" or self._pending or self._skip:
            self._bad(f"it ends inside the frame starting at byte {self._frame_start} ({self.offset} bytes in all)")
        if not self.frames:
            self._bad("no frame at all")


def compress_frame(argv: List[str], data: bytes, name: str) -> bytes:
    """data as one complete zstd frame / gzip member; frames concatenate into one stream."""
    out = subprocess.run(argv, input=data, capture_output=True, env=child_env(), timeout=300)
    if out.returncode != 0:
        raise BackupFailed(f"{name} exited {out.returncode}: {out.stderr.decode('utf-8', 'replace').strip()}")
    return out.stdout


def dump_database(*, database: str, bucket: str, prefix: str, defaults_file: str,
                  compression: str = "zstd", priority: str = DEFAULT_PRIORITY, verify: str = DEFAULT_VERIFY,
                  region: Optional[str] = None, s3=None,
                  progress: Callable[[str], None] = stderr_progress) -> Dict[str, Any]:
    """Dump one database to S3 and publish its manifest and latest.json. Returns the manifest.
    Raises BackupFailed (nothing published, upload aborted) on any failure.

    mariadb-dump's stdout is the compressor's stdin: this process reads only the header (os.read, a
    few KB, compressed as a frame of its own) and then the compressed stream (SHA-256, parts, and the
    check). Completeness: every exit status (mariadb-dump exits 0 only after writing its last line),
    and by `verify`: the zstd frames whole (frames) or the object decompressed again and the trailer
    found at its end (decompress, and always with gzip)."""
    if not DATABASE_RE.match(database):
        raise UsageProblem(f"database {database!r}: must be 1-64 characters A-Z a-z 0-9 _")
    if priority not in PRIORITIES:
        raise UsageProblem(f"priority {priority!r}: must be one of {', '.join(PRIORITIES)}")
    if verify not in VERIFY_MODES:
        raise UsageProblem(f"verify {verify!r}: must be one of {', '.join(VERIFY_MODES)}")
    compression = choose_compression(compression)
    compress_argv, decompress_argv, suffix = COMPRESSORS[compression]
    server = preflight(defaults_file, database)
    options = DUMP_OPTIONS + (BINLOG_DUMP_OPTIONS if server["log_bin"] else ())
    dump_argv = [dump_program(), f"--defaults-file={defaults_file}", *options, "--", database]
    gentle = priority_prefix(priority)
    started = utcnow()
    key = dump_key(prefix, database, started, suffix)
    progress(f"dumping {database} to s3://{bucket}/{key} ({compression}, priority {priority})")
    reaper = _Reaper()
    upload: Optional[StreamingUpload] = None
    try:
        dump = reaper.start(gentle + dump_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert dump.stdout is not None
        enlarge_pipe(dump.stdout)
        # boto3 loads and the upload is created on the upload thread while the dump already flows.
        upload = StreamingUpload(s3 or (lambda: s3_client(region)), bucket, key, "application/sql",
                                 {"database": database, "compression": compression})
        header = read_header(dump.stdout.fileno())
        head = dump_facts(header)
        compressor = reaper.start(gentle + compress_argv, stdin=dump.stdout, stdout=subprocess.PIPE)
        dump.stdout.close()   # the compressor owns the read end: if it dies, the dump fails on EPIPE
        enlarge_pipe(compressor.stdout)
        walk: Optional[ZstdFrames] = None
        check: Optional[_TailCheck] = None
        if verify == "frames" and compression == "zstd":
            walk = ZstdFrames()
            feed = walk.feed
        else:
            check = _TailCheck(reaper, gentle, decompress_argv)
            feed = check.feed
        first = compress_frame(gentle + compress_argv, header, compression)
        if walk:
            # Walked on its own: a cut in it would otherwise be read on into the stream that follows,
            # whose bytes can happen to complete the structure (seen when a cut header frame was accepted).
            header_walk = ZstdFrames("the compressed header frame")
            header_walk.feed(first)
            header_walk.finish()
            walk.offset = len(first)   # byte offsets in its errors are the object's
        else:
            feed(first)
        upload.write(first)
        try:
            _upload_stream(compressor.stdout, upload, progress, feed)
        except BaseException:
            reaper.kill_all()
            raise
        dump.wait()
        compressor.wait()
        if dump.returncode != 0:
            raise BackupFailed(f"{os.path.basename(dump_argv[0])} {_exit_description(dump)}: "
                               f"{reaper.message(dump) or 'no message'}")
        if compressor.returncode != 0:
            raise BackupFailed(f"{compression} {_exit_description(compressor)}: {reaper.message(compressor)}")
        tail_gtid = None
        if walk:
            walk.finish()
        elif check:
            tail = dump_facts(check.finish(reaper, compression))
            if not tail["last_line"].startswith(DUMP_TRAILER):
                raise BackupFailed("the dump ended without its '-- Dump completed' trailer (truncated)")
            tail_gtid = tail["gtid"]
        gtid = (gtid_at(defaults_file, head["binlog_file"], head["binlog_position"])
                if server["log_bin"] and head["binlog_file"] else None)
        binlog = binlog_coordinates(head, gtid or tail_gtid, server)
        progress(f"dump complete; finishing the upload ({upload.bytes / MIB:.0f} MiB compressed)")
        etag = upload.complete()
    except BaseException:
        reaper.kill_all()
        warning = upload.abort() if upload else None
        if warning:
            progress(f"warning: {warning}")
        raise
    finished = utcnow()
    manifest = {
        "format": MANIFEST_FORMAT, "kind": "database",
        "bucket": bucket, "key": key, "bytes": upload.bytes, "sha256": upload.sha256.hexdigest(),
        "etag": etag, "parts": upload.parts, "compression": compression,
        "database": database, "server_version": head["server_version"],
        "dump_tool": os.path.basename(dump_argv[0]), "dump_options": list(options), "priority": priority,
        "verified": "frames" if walk else "decompress",
        "host": socket.gethostname(),
        "started_at": isoformat(started), "finished_at": isoformat(finished),
        "binlog": binlog,
    }
    publish(upload.s3, bucket, f"{prefix}/{database}/latest.json", manifest)
    progress(f"done: {upload.bytes} bytes, sha256 {upload.sha256.hexdigest()[:12]}")
    return manifest


# --- files --------------------------------------------------------------------------------------

class _HashingReader:
    def __init__(self, f) -> None:
        self.f, self.sha256, self.bytes = f, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.sha256.update(data)
        self.bytes += len(data)
        return data


def _walk(path: str):
    """The path, then (for a directory) everything under it, sorted, without following symlinks."""
    yield path
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                yield os.path.join(root, name)


def _write_tar(paths: List[str], sink, entries: List[Dict[str, Any]]) -> None:
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for top in paths:
            for path in _walk(top):
                info = tar.gettarinfo(path, arcname=path.lstrip("/"))
                if info is None:  # sockets and the like: nothing to restore
                    continue
                entry: Dict[str, Any] = {"path": path, "type": "file" if info.isfile() else
                                         "dir" if info.isdir() else "symlink" if info.issym() else "other",
                                         "mode": f"{info.mode:04o}"}
                if info.isfile():
                    with open(path, "rb") as f:
                        reader = _HashingReader(f)
                        tar.addfile(info, reader)
                    entry.update(size=reader.bytes, sha256=reader.sha256.hexdigest())
                else:
                    if info.issym():
                        entry["target"] = info.linkname
                    tar.addfile(info)
                entries.append(entry)


def archive_files(*, paths: List[str], bucket: str, prefix: str, host: Optional[str] = None,
                  compression: str = "zstd", region: Optional[str] = None, s3=None,
                  progress: Callable[[str], None] = stderr_progress) -> Dict[str, Any]:
    """Archive paths (tar, compressed) to <prefix>/<host>/YYYY/MM/DD/<host>-<ts>.tar.zst|.gz with the
    same manifest/latest discipline as database dumps. Returns the manifest."""
    host = host or socket.gethostname().split(".")[0]
    for p in paths:
        if not os.path.isabs(p) or ".." in p.split("/"):
            raise UsageProblem(f"--path {p!r}: must be an absolute path without '..'")
        if not os.path.lexists(p):
            raise BackupFailed(f"--path {p}: no such file or directory")
    compression = choose_compression(compression)
    compress_argv, _, suffix = COMPRESSORS[compression]
    started = utcnow()
    key = f"{prefix}/{host}/{started:%Y/%m/%d}/{host}-{started:%Y%m%dT%H%M%SZ}.tar{suffix}"
    progress(f"archiving {len(paths)} path(s) to s3://{bucket}/{key} ({compression})")
    reaper = _Reaper()
    entries: List[Dict[str, Any]] = []
    upload = StreamingUpload(s3 or (lambda: s3_client(region)), bucket, key, "application/x-tar",
                             {"host": host, "compression": compression})
    try:
        compressor = reaper.start(compress_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        errors: List[BaseException] = []

        sink = compressor.stdin
        assert sink is not None  # started with stdin=PIPE

        def produce() -> None:
            try:
                _write_tar(paths, sink, entries)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
            finally:
                with contextlib.suppress(OSError, ValueError):
                    sink.close()
        producer = threading.Thread(target=produce, daemon=True, name="tar")
        producer.start()
        walk = ZstdFrames() if compression == "zstd" else None
        _upload_stream(compressor.stdout, upload, progress, walk.feed if walk else None)
        producer.join()
        compressor.wait()
        if errors:
            raise BackupFailed(f"archiving: {errors[0]}")
        if compressor.returncode != 0:
            raise BackupFailed(f"{compression} {_exit_description(compressor)}: {reaper.message(compressor)}")
        if walk:
            walk.finish()
        etag = upload.complete()
    except BaseException:
        reaper.kill_all()
        warning = upload.abort()
        if warning:
            progress(f"warning: {warning}")
        raise
    manifest = {
        "format": MANIFEST_FORMAT, "kind": "files",
        "bucket": bucket, "key": key, "bytes": upload.bytes, "sha256": upload.sha256.hexdigest(),
        "etag": etag, "parts": upload.parts, "compression": compression, "host": host,
        "paths": list(paths), "started_at": isoformat(started), "finished_at": isoformat(utcnow()),
        "files": entries,
    }
    publish(upload.s3, bucket, f"{prefix}/{host}/latest.json", manifest)
    progress(f"done: {upload.bytes} bytes, {sum(e['type'] == 'file' for e in entries)} files, "
             f"sha256 {upload.sha256.hexdigest()[:12]}")
    return manifest


# --- CloudWatch metrics (the dead-man's switch watches them) --------------------------------------

def publish_dump_metrics(stack: str, database: str, manifest: Optional[Dict[str, Any]], seconds: float,
                         region: Optional[str]) -> Optional[str]:
    """DumpSucceeded (1 or 0), and for a good dump DumpBytes and DumpDurationSeconds, dimensions Stack
    and Database. Best effort: returns a warning line instead of raising, so a metrics outage never
    fails a dump (the missing DumpSucceeded then raises the stack's alarm, which is the point)."""
    dimensions = [{"Name": "Stack", "Value": stack}, {"Name": "Database", "Value": database}]
    data: List[Dict[str, Any]] = [{"MetricName": "DumpSucceeded", "Dimensions": dimensions,
                                   "Value": 1.0 if manifest else 0.0, "Unit": "Count"}]
    if manifest:
        data += [{"MetricName": "DumpBytes", "Dimensions": dimensions, "Value": float(manifest["bytes"]),
                  "Unit": "Bytes"},
                 {"MetricName": "DumpDurationSeconds", "Dimensions": dimensions, "Value": round(seconds, 3),
                  "Unit": "Seconds"}]
    try:
        import boto3
        from botocore.config import Config
        cloudwatch = boto3.session.Session().client(
            "cloudwatch", region_name=region,
            config=Config(retries={"mode": "standard", "total_max_attempts": 3}, user_agent_extra="quickport-dump"))
        cloudwatch.put_metric_data(Namespace=METRICS_NAMESPACE, MetricData=data)
    except Exception as e:  # noqa: BLE001 - best effort by design
        return f"could not publish CloudWatch metrics ({aws_error(e)}); the dump's own result stands"
    return None


# --- command line -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _pattern(name: str, pattern: re.Pattern, allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise argparse.ArgumentTypeError(f"{name} {value!r}: {allowed}")
        return value
    return check


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="quickport_dump.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", metavar="MODE", parser_class=_Parser)
    sub.required = True
    bucket = _pattern("--bucket", BUCKET_RE, "must be an S3 bucket name")
    prefix = _pattern("--prefix", PREFIX_RE, "must be lowercase a-z 0-9 . _ - segments separated by /")

    db = sub.add_parser("db", help="dump one MariaDB database to S3")
    db.add_argument("--database", required=True,
                    type=_pattern("--database", DATABASE_RE, "must be 1-64 characters A-Z a-z 0-9 _"))
    db.add_argument("--bucket", required=True, type=bucket)
    db.add_argument("--prefix", required=True, type=prefix)
    creds = db.add_mutually_exclusive_group(required=True)
    creds.add_argument("--password-parameter", help="SSM SecureString parameter holding the password")
    creds.add_argument("--defaults-file", help="client option file with user/password/socket (used as is)")
    db.add_argument("--user", default="backup", help="database user with --password-parameter (default: backup)")
    db.add_argument("--socket", help="server socket with --password-parameter (default: the client's)")
    db.add_argument("--db-host", help="server host with --password-parameter (default: the client's)")
    db.add_argument("--port", type=int, help="server port with --db-host")
    db.add_argument("--priority", choices=tuple(PRIORITIES), default=DEFAULT_PRIORITY,
                    help="CPU/IO priority of the dump pipeline: low (default; nice 10, best-effort 7), "
                         "idle (nice 19, idle I/O class) or normal")
    db.add_argument("--verify", choices=tuple(VERIFY_MODES), default=DEFAULT_VERIFY,
                    help="what proves the dump whole before it is published: frames (default; " +
                         VERIFY_MODES["frames"] + ") or decompress (" + VERIFY_MODES["decompress"] + ")")
    db.add_argument("--metrics-stack", type=_pattern("--metrics-stack", STACK_RE, "must be a Pulumi stack name"),
                    help=f"publish DumpSucceeded/DumpBytes/DumpDurationSeconds to CloudWatch namespace "
                         f"{METRICS_NAMESPACE} with dimension Stack=this (best effort)")

    files = sub.add_parser("files", help="archive files and directories to S3")
    files.add_argument("--bucket", required=True, type=bucket)
    files.add_argument("--prefix", required=True, type=prefix)
    files.add_argument("--path", required=True, action="append", dest="paths", help="absolute path (repeatable)")
    files.add_argument("--host", type=_pattern("--host", HOST_RE, "must be a hostname (A-Z a-z 0-9 . -)"),
                       help="name under the prefix (default: this machine's short hostname)")
    for p in (db, files):
        p.add_argument("--compression", choices=tuple(COMPRESSORS), default="zstd",
                       help="zstd (default; gzip when zstd is not installed) or gzip")
        p.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
        p.add_argument("--json", action="store_true", help="print the manifest as JSON on success")
    return parser


def run(args: argparse.Namespace) -> Dict[str, Any]:
    if args.mode == "files":
        return archive_files(paths=args.paths, bucket=args.bucket, prefix=args.prefix, host=args.host,
                             compression=args.compression, region=args.region)
    common = dict(database=args.database, bucket=args.bucket, prefix=args.prefix,
                  compression=args.compression, priority=args.priority, verify=args.verify, region=args.region)
    if args.defaults_file:
        if not os.path.isfile(args.defaults_file):
            raise UsageProblem(f"--defaults-file {args.defaults_file}: no such file")
        return dump_database(defaults_file=args.defaults_file, **common)
    password = password_from_parameter(args.password_parameter, args.region)
    with client_defaults_file(args.user, password, args.socket, args.db_host, args.port) as path:
        del password
        return dump_database(defaults_file=path, **common)


def _fail(args: argparse.Namespace, code: int, kind: str, message: str) -> int:
    """One line on stderr for people; with --json also one JSON document on stdout for machines."""
    print(f"quickport_dump {args.mode}: {kind}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"mode": args.mode, "ok": False, "exitCode": code, "error": message}))
    return code


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    manifest: Optional[Dict[str, Any]] = None
    try:
        with terminate_on_signals():
            manifest = run(args)
    except UsageProblem as e:
        return _fail(args, EXIT_USAGE, "error", str(e))
    except (BackupFailed, Terminated) as e:
        code = _fail(args, EXIT_FAILED, "FAILED, nothing published", str(e))
    except KeyboardInterrupt:
        code = _fail(args, EXIT_FAILED, "FAILED, nothing published", "interrupted")
    except Exception as e:  # an unexpected error: still one line, still nothing published
        code = _fail(args, EXIT_FAILED, "FAILED, nothing published", f"{type(e).__name__}: {aws_error(e)}")
    else:
        code = EXIT_OK
        if args.json:
            print(json.dumps(manifest, indent=2))
        else:
            print(f"s3://{manifest['bucket']}/{manifest['key']} sha256={manifest['sha256']} bytes={manifest['bytes']}")
    if getattr(args, "metrics_stack", None):
        warning = publish_dump_metrics(args.metrics_stack, args.database, manifest, time.monotonic() - started,
                                       args.region)
        if warning:
            print(f"quickport_dump {args.mode}: warning: {warning}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
