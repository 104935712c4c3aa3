"""The binlog shipper (scripts/agent/binlog_ship.py) against real MariaDB servers with binary logs and the
moto S3 server: what lands in S3 (per docs/binlog-shipping.md and the PITR contract), restart safety,
S3 outages and the spool bound, gaps, --follow and its signals, --check and the password rule."""
from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import boto3
import pytest

from scripts.agent import binlog_ship
from scripts.aws import s3 as s3api
from scripts.offline.emulator import free_port
from tests.fixtures.binlog_chain import PAGED_SHIPPER, chain_segments, get_json, page_key
from tests.fixtures.mariadb import MariaDB, running_mariadb, s3_keys

SCRIPT = str(Path(binlog_ship.__file__))
PREFIX = "binlog"
BINLOG_PASSWORD = 'Bl#g "p\\ss\' $(id) ;--'
PARAMETER = "/quickport/test/mysql/binlog-password"
SEGMENT_KEYS = {"format", "chain", "server_id", "file", "key", "bytes", "sha256", "first_gtid", "last_gtid",
                "first_event_at", "last_event_at", "end_position", "previous_file", "shipped_at"}
INDEX_KEYS = {"format", "chain", "server_id", "host", "started_at", "first_file", "pages", "segments", "confirmed_at",
              "confirmed_file", "confirmed_position", "closed"}
ENTRY_KEYS = {"file", "key", "bytes", "sha256", "first_gtid", "last_gtid", "first_event_at", "last_event_at"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --- arrangement -------------------------------------------------------------------------------------

def binlog_user(db: MariaDB, directory: Path) -> str:
    """The shipper's user with exactly the grants docs/binlog-shipping.md lists; its option file."""
    escaped = BINLOG_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    db.sql(f"CREATE USER IF NOT EXISTS 'binlog'@'localhost' IDENTIFIED BY '{escaped}';"
           "GRANT REPLICATION SLAVE, BINLOG MONITOR, RELOAD ON *.* TO 'binlog'@'localhost';")
    return db.defaults_file("binlog", BINLOG_PASSWORD, directory)


def write_rows(db: MariaDB, database: str, count: int, payload: int = 16) -> None:
    db.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`; USE `{database}`;"
           "CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY AUTO_INCREMENT, body BLOB);"
           f"INSERT INTO t (body) SELECT RANDOM_BYTES({payload}) FROM seq_1_to_{count};")


def server_files(db: MariaDB) -> dict[str, bytes]:
    """The server's closed binlog files, read from its data directory."""
    logs = [row[0] for row in db.sql("SHOW BINARY LOGS")]
    return {name: (db.base / "data" / name).read_bytes() for name in logs[:-1]}


def gtid_pos(db: MariaDB) -> str:
    return db.sql("SELECT @@gtid_binlog_pos")[0][0]


def get_bytes(bucket: str, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def index_of(bucket: str, chain: str) -> dict[str, Any]:
    return get_json(bucket, f"{PREFIX}/{chain}/index.json")


def ship_argv(bucket: str, defaults: str, state: Path, *extra: str) -> list[str]:
    return [sys.executable, SCRIPT, "--bucket", bucket, "--prefix", PREFIX, "--defaults-file", defaults,
            "--state-dir", str(state), *extra]


def ship(bucket: str, defaults: str, state: Path, *extra: str, env: Optional[dict[str, str]] = None,
         timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(ship_argv(bucket, defaults, state, "--once", "--json", *extra), capture_output=True,
                          text=True, env=env, timeout=timeout)


def once_argv(bucket: str, defaults: str, state: Path, page_segments: Optional[int]) -> list[str]:
    """One interval: `--once --json`, or (with `page_segments`) the agent's Shipper with that page size."""
    if page_segments is None:
        return ship_argv(bucket, defaults, state, "--once", "--json")
    return [sys.executable, str(PAGED_SHIPPER), str(page_segments), bucket, PREFIX, defaults, str(state)]


def ship_paged(bucket: str, defaults: str, state: Path, page_segments: int,
               env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(once_argv(bucket, defaults, state, page_segments), capture_output=True, text=True,
                          env=env, timeout=180)


def new_files(db: MariaDB, database: str, count: int) -> None:
    """`count` closed binlog files, each with a transaction."""
    for _ in range(count):
        write_rows(db, database, 3)
        db.sql("FLUSH BINARY LOGS")


def versions(bucket: str, key: str) -> list[dict[str, Any]]:
    """Every version of the key, oldest first (the bucket is versioned)."""
    found = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return sorted((v for v in found if v["Key"] == key), key=lambda v: v["LastModified"])


def assert_chain_complete(db: MariaDB, bucket: str, chain: str) -> dict[str, Any]:
    """Every closed file of the server is in the chain once, in order, byte for byte (head and pages).
    Returns the head with `segments` standing for all of them."""
    index = {**index_of(bucket, chain), "segments": chain_segments(bucket, chain, PREFIX)}
    files = server_files(db)
    names = [s["file"] for s in index["segments"]]
    assert names == sorted(set(names)), "a segment is listed twice or out of order"
    assert names == [n for n in sorted(files) if n >= index["first_file"]]
    for entry in index["segments"]:
        body = get_bytes(bucket, entry["key"])
        assert body == files[entry["file"]]
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    return index


class FaultyEndpoint:
    """A pass-through HTTP proxy in front of the emulator that runs `on_request(method, path)` first; it
    returns False to drop the request (the connection closes without an answer), as a network fault."""

    def __init__(self, upstream: str, on_request: Callable[[str, str], bool]):
        host, port = upstream.replace("http://", "").split(":")
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not outer.on_request(self.command, self.path):
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.on_request = on_request
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def killed_at(upstream: str, argv: list[str], kill_when: Callable[[str, str], bool]) -> int:
    """Run `argv` with S3 behind a FaultyEndpoint; at the first request for which `kill_when(method, key)`
    is true, SIGKILL the run and drop that request. The run's exit code."""
    proc: dict[str, subprocess.Popen] = {}

    def on_request(method: str, path: str) -> bool:
        if kill_when(method, path.split("?")[0]):
            proc["p"].send_signal(signal.SIGKILL)
            return False
        return True
    proxy = FaultyEndpoint(upstream, on_request)
    try:
        proc["p"] = subprocess.Popen(argv, env={**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc["p"].communicate(timeout=120)
    finally:
        proxy.close()
    return proc["p"].returncode


@pytest.fixture
def shipper_server(tmp_path):
    """A server of this test's own (purges, restarts and flushes do not reach other tests)."""
    with running_mariadb("64M", binlog=True) as db:
        yield db


# --- what lands in S3 --------------------------------------------------------------------------------

def test_once_ships_closed_files_with_manifests_and_index_exactly_per_contract(binlog_server, dump_bucket,
                                                                              tmp_path):
    defaults = binlog_user(binlog_server, tmp_path)
    write_rows(binlog_server, "ship_contract", 50)
    result = ship(dump_bucket, defaults, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    chain = report["chain"]
    assert re.match(r"^\d{8}T\d{6}Z-s1$", chain)
    index = assert_chain_complete(binlog_server, dump_bucket, chain)
    assert set(index) == INDEX_KEYS and index["format"] == "quickport-binlog-index/2"
    assert index["closed"] is None and index["server_id"] == 1
    assert index["pages"] == (len(index["segments"]) - 1) // 100   # the session's server: usually 0
    assert report["segments"] == [s["file"] for s in index["segments"]]
    # Everything up to the server's newest GTID is shipped, and the confirmed point is where it was.
    assert index["segments"][-1]["last_gtid"] == gtid_pos(binlog_server)
    assert (index["confirmed_file"], index["confirmed_at"]) == (report["confirmed_file"], report["confirmed_at"])
    assert binlog_ship.next_binlog(index["confirmed_file"]) == binlog_server.sql("SHOW MASTER STATUS")[0][0]
    previous = None
    for entry in index["segments"]:
        assert set(entry) == ENTRY_KEYS
        manifest = get_json(dump_bucket, entry["key"] + ".json")
        assert set(manifest) == SEGMENT_KEYS
        assert manifest["format"] == "quickport-binlog-segment/1" and manifest["chain"] == chain
        assert manifest["key"] == f"{PREFIX}/{chain}/{entry['file']}"
        assert {k: manifest[k] for k in ENTRY_KEYS} == entry
        assert manifest["end_position"] == manifest["bytes"] and manifest["previous_file"] == previous
        assert TIME_RE.match(manifest["shipped_at"]) and TIME_RE.match(manifest["first_event_at"])
        head = boto3.client("s3").head_object(Bucket=dump_bucket, Key=entry["key"], ChecksumMode="ENABLED")
        assert head["ContentType"] == "application/octet-stream" and "ChecksumCRC32" in head
        previous = entry["file"]


def test_event_times_are_utc_whatever_the_machine_time_zone(binlog_server, dump_bucket, tmp_path):
    defaults = binlog_user(binlog_server, tmp_path)
    write_rows(binlog_server, "ship_tz", 5)
    before = binlog_ship.utcnow().replace(microsecond=0)
    result = ship(dump_bucket, defaults, tmp_path / "state", env={**os.environ, "TZ": "Asia/Kolkata"})
    assert result.returncode == 0, result.stderr
    last = index_of(dump_bucket, json.loads(result.stdout)["chain"])["segments"][-1]
    # IST is 5:30 ahead: a local-time reading would be hours off.
    assert abs((binlog_ship.parse_time(last["last_event_at"]) - before).total_seconds()) < 60


def test_idle_server_refreshes_the_confirmed_point_without_a_new_file(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    write_rows(shipper_server, "ship_idle", 5)
    assert ship(dump_bucket, defaults, tmp_path / "state").returncode == 0
    files = [row[0] for row in shipper_server.sql("SHOW BINARY LOGS")]
    time.sleep(1.1)
    second = ship(dump_bucket, defaults, tmp_path / "state")
    time.sleep(1.1)
    third = json.loads(ship(dump_bucket, defaults, tmp_path / "state").stdout)
    assert second.returncode == 0
    assert json.loads(second.stdout)["segments"] == [] and third["segments"] == []
    # (the server's own Binlog_checkpoint event may still land in the current file: not a transaction)
    assert [row[0] for row in shipper_server.sql("SHOW BINARY LOGS")] == files, "an idle interval rotated"
    index = index_of(dump_bucket, third["chain"])
    assert index["confirmed_at"] == third["confirmed_at"] > json.loads(second.stdout)["confirmed_at"]


# --- restart safety ----------------------------------------------------------------------------------

def test_killed_between_upload_and_index_resumes_without_gap_or_duplicate(shipper_server, aws, dump_bucket,
                                                                         tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    assert ship(dump_bucket, defaults, state).returncode == 0
    write_rows(shipper_server, "ship_kill", 20)
    # The segment and its manifest are in; the index is not.
    at_index = killed_at(aws, ship_argv(dump_bucket, defaults, state, "--once"),
                         lambda method, key: method == "PUT" and key.endswith("/index.json"))
    assert at_index == -signal.SIGKILL
    chain = json.loads((state / "state.json").read_text())["index"]["chain"]
    before = index_of(dump_bucket, chain)
    write_rows(shipper_server, "ship_kill", 20)
    result = ship(dump_bucket, defaults, state)
    assert result.returncode == 0, result.stderr
    index = assert_chain_complete(shipper_server, dump_bucket, chain)
    assert len(index["segments"]) == len(before["segments"]) + 2
    assert index["segments"][-1]["last_gtid"] == gtid_pos(shipper_server)


def test_killed_after_recording_a_segment_but_before_unspooling_it_goes_on_shipping(shipper_server, aws,
                                                                                   dump_bucket, tmp_path):
    # No S3 request falls between state.json naming the segment and the spooled copy going, so the
    # kill is arranged as it leaves things: the segment recorded and still in the spool.
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    assert ship(dump_bucket, defaults, state).returncode == 0
    write_rows(shipper_server, "ship_unspool", 20)
    assert ship(dump_bucket, defaults, state).returncode == 0
    chain = json.loads((state / "state.json").read_text())["index"]["chain"]
    last = index_of(dump_bucket, chain)["segments"][-1]
    spooled = state / "spool" / chain / last["file"]
    spooled.write_bytes(get_bytes(dump_bucket, last["key"]))

    write_rows(shipper_server, "ship_unspool", 20)
    result = ship(dump_bucket, defaults, state)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["segments"], "nothing shipped: the stale spooled file blocked the rest"
    index = assert_chain_complete(shipper_server, dump_bucket, chain)
    assert index["segments"][-1]["last_gtid"] == gtid_pos(shipper_server)
    assert not spooled.exists()


@pytest.mark.parametrize("page_segments", [None, 2], ids=["once", "pages-of-2"])
def test_killed_at_random_points_the_chain_stays_complete(shipper_server, dump_bucket, tmp_path, page_segments):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    for delay in (0.05, 0.15, 0.3, 0.5, 0.8):
        write_rows(shipper_server, "ship_chaos", 30)
        shipper_server.sql("FLUSH BINARY LOGS")
        p = subprocess.Popen(once_argv(dump_bucket, defaults, state, page_segments), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait()
    result = subprocess.run(once_argv(dump_bucket, defaults, state, page_segments), capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    index = assert_chain_complete(shipper_server, dump_bucket, json.loads(result.stdout)["chain"])
    assert index["segments"][-1]["last_gtid"] == gtid_pos(shipper_server)
    assert not list((state / "spool").rglob("mariadb-bin.*"))


# --- the paged index ---------------------------------------------------------------------------------

def test_a_chain_spanning_several_pages_never_rewrites_more_than_one_page(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    new_files(shipper_server, "ship_pages", 4)
    first = ship_paged(dump_bucket, defaults, state, 3)
    assert first.returncode == 0, first.stderr
    new_files(shipper_server, "ship_pages", 6)
    second = ship_paged(dump_bucket, defaults, state, 3)
    assert second.returncode == 0, second.stderr
    chain = json.loads(second.stdout)["chain"]
    index = assert_chain_complete(shipper_server, dump_bucket, chain)
    head = index_of(dump_bucket, chain)
    count = len(index["segments"])
    assert count >= 10   # the 10 files closed here (and any the server closed before)
    # Sealed while the head would hold more than 3: the head keeps the newest 1..3.
    assert head["pages"] == (count - 1) // 3 and head["segments"] == index["segments"][3 * head["pages"]:]
    for number in range(head["pages"]):
        page = get_json(dump_bucket, page_key(chain, number))
        assert page == {"format": "quickport-binlog-index-page/1", "chain": chain, "page": number,
                        "segments": index["segments"][3 * number:3 * number + 3]}
        assert len(versions(dump_bucket, page_key(chain, number))) == 1, "a page is written once"
    # Every rewrite of the head, from the first to the last: at most one page of entries.
    s3 = boto3.client("s3")
    rewrites = versions(dump_bucket, f"{PREFIX}/{chain}/index.json")
    assert len(rewrites) >= count
    page_bytes = max(s3.head_object(Bucket=dump_bucket, Key=page_key(chain, n))["ContentLength"]
                     for n in range(head["pages"]))
    for version in rewrites:
        body = json.loads(s3.get_object(Bucket=dump_bucket, Key=f"{PREFIX}/{chain}/index.json",
                                        VersionId=version["VersionId"])["Body"].read())
        assert 1 <= len(body["segments"]) <= 3 and version["Size"] <= page_bytes + 512
    # state.json holds the head only.
    saved = json.loads((state / "state.json").read_text())
    assert saved["format"] == "quickport-binlog-state/2" and saved["index"] == head
    # The readers list chains one level below the prefix: index/ is not taken for a chain.
    assert s3api.binlog_chain_ids(s3, dump_bucket, PREFIX) == [chain]


def test_killed_between_a_page_and_the_head_resumes_without_gap_or_duplicate(shipper_server, aws, dump_bucket,
                                                                             tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    assert ship_paged(dump_bucket, defaults, state, 2).returncode == 0
    new_files(shipper_server, "ship_page_kill", 3)
    sealed: list[str] = []

    def head_after_a_page(method: str, key: str) -> bool:   # the page is in; the head counting it is not
        if method == "PUT" and "/index/" in key:
            sealed.append(key)
        return method == "PUT" and key.endswith("/index.json") and bool(sealed)
    assert killed_at(aws, once_argv(dump_bucket, defaults, state, 2), head_after_a_page) == -signal.SIGKILL
    assert len(sealed) == 1
    chain = json.loads((state / "state.json").read_text())["index"]["chain"]
    assert index_of(dump_bucket, chain)["pages"] == 0, "the head never counted the page"
    written = get_json(dump_bucket, page_key(chain, 0))
    new_files(shipper_server, "ship_page_kill", 2)
    result = ship_paged(dump_bucket, defaults, state, 2)
    assert result.returncode == 0, result.stderr
    index = assert_chain_complete(shipper_server, dump_bucket, chain)
    assert index["segments"][-1]["last_gtid"] == gtid_pos(shipper_server)
    assert get_json(dump_bucket, page_key(chain, 0)) == written, "the page was sealed again as it was"
    assert index_of(dump_bucket, chain)["pages"] == (len(index["segments"]) - 1) // 2


def test_a_chain_of_an_older_agent_goes_on_paged(shipper_server, dump_bucket, tmp_path):
    """state.json and index.json as the agent before paging left them (every segment in the index):
    the same chain continues, its old entries sealed into pages before the first /2 head."""
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    new_files(shipper_server, "ship_upgrade", 4)
    assert ship(dump_bucket, defaults, state).returncode == 0
    saved = json.loads((state / "state.json").read_text())
    old = {k: v for k, v in saved["index"].items() if k != "pages"}
    old["format"] = "quickport-binlog-index/1"
    (state / "state.json").write_text(json.dumps({**saved, "format": "quickport-binlog-state/1", "index": old}))
    boto3.client("s3").put_object(Bucket=dump_bucket, Key=f"{PREFIX}/{old['chain']}/index.json",
                                  Body=json.dumps(old).encode(), ChecksumAlgorithm="CRC32")
    new_files(shipper_server, "ship_upgrade", 1)
    result = ship_paged(dump_bucket, defaults, state, 2)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chain"] == old["chain"] and json.loads(result.stdout)["gap"] is None
    index = assert_chain_complete(shipper_server, dump_bucket, old["chain"])
    head = index_of(dump_bucket, old["chain"])
    assert head["format"] == "quickport-binlog-index/2" and head["pages"] == (len(index["segments"]) - 1) // 2
    assert index["segments"][:len(old["segments"])] == old["segments"]


# --- S3 outages and the spool ------------------------------------------------------------------------

def unreachable_env() -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"}


def test_s3_unreachable_spools_says_so_and_catches_up(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    assert ship(dump_bucket, defaults, state).returncode == 0
    for _ in range(3):
        write_rows(shipper_server, "ship_outage", 10)
        down = ship(dump_bucket, defaults, state, env=unreachable_env())
        assert down.returncode == 1
        assert "S3 unreachable" in down.stderr and "spooled" in down.stderr and "MiB" in down.stderr
    spooled = sorted(p.name for p in (state / "spool").rglob("mariadb-bin.*"))
    assert len(spooled) == 3
    report = json.loads(down.stdout)
    assert report["ok"] is False and report["spooled"] == 3
    up = ship(dump_bucket, defaults, state)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["segments"][:3] == spooled
    index = assert_chain_complete(shipper_server, dump_bucket, json.loads(up.stdout)["chain"])
    assert index["segments"][-1]["last_gtid"] == gtid_pos(shipper_server)
    assert not list((state / "spool").rglob("mariadb-bin.*"))


def test_spool_bound_stops_reading_and_the_server_keeps_the_rest(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    assert ship(dump_bucket, defaults, state).returncode == 0
    for _ in range(3):   # three closed files of ~7 MiB against a 16 MiB spool
        write_rows(shipper_server, "ship_bound", 7 * 1024, payload=1024)
        shipper_server.sql("FLUSH BINARY LOGS")
    down = ship(dump_bucket, defaults, state, "--spool-megabytes", "16", env=unreachable_env())
    assert down.returncode == 1
    assert "SPOOL FULL" in down.stderr
    spool = list((state / "spool").rglob("mariadb-bin.*"))
    assert len(spool) == 2 and sum(p.stat().st_size for p in spool) <= 16 * 1024 * 1024
    up = ship(dump_bucket, defaults, state, "--spool-megabytes", "16")
    assert up.returncode == 0, up.stderr
    assert_chain_complete(shipper_server, dump_bucket, json.loads(up.stdout)["chain"])


# --- gaps --------------------------------------------------------------------------------------------

def purge_to(db: MariaDB, name: str) -> None:
    """PURGE BINARY LOGS TO name; the server keeps a file until InnoDB no longer needs it for crash
    recovery (its Binlog_checkpoint), so repeat until it is really gone."""
    def purged() -> bool:
        db.sql(f"PURGE BINARY LOGS TO '{name}'")
        return db.sql("SHOW BINARY LOGS")[0][0] == name
    wait_for(purged, timeout=60)


def test_binlog_purged_before_shipping_is_a_gap_and_a_new_chain(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    first = json.loads(ship(dump_bucket, defaults, state).stdout)
    write_rows(shipper_server, "ship_gap", 10)
    shipper_server.sql("FLUSH BINARY LOGS")
    missing = binlog_ship.next_binlog(first["segments"][-1])
    current = shipper_server.sql("SHOW MASTER STATUS")[0][0]
    purge_to(shipper_server, current)
    write_rows(shipper_server, "ship_gap", 10)
    result = ship(dump_bucket, defaults, state)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    gap = report["gap"]
    assert gap["reason"] == "purged before shipped" and gap["missing_from"] == missing
    assert gap["after_file"] == first["segments"][-1] and gap["chain"] == first["chain"]
    assert gap["latest_restorable_at"] == first["confirmed_at"]
    gap_keys = [k for k in s3_keys(dump_bucket) if k.startswith(f"{PREFIX}/gaps/")]
    assert len(gap_keys) == 1 and gap_keys[0].endswith(f"-{first['chain']}.json")
    assert get_json(dump_bucket, gap_keys[0]) == {**gap, "format": "quickport-binlog-gap/1"}
    old = index_of(dump_bucket, first["chain"])
    assert old["closed"]["reason"] == "purged before shipped"
    assert report["chain"] != first["chain"]
    new = index_of(dump_bucket, report["chain"])
    assert new["first_file"] == current and new["segments"][0]["file"] == current
    assert "GAP" in result.stderr and missing in result.stderr
    # The next run carries on in the new chain: no second gap.
    assert ship(dump_bucket, defaults, state).returncode == 0


def test_changed_server_id_is_a_gap(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    first = json.loads(ship(dump_bucket, defaults, state).stdout)
    shipper_server.sql("SET GLOBAL server_id = 7")
    write_rows(shipper_server, "ship_sid", 3)
    result = ship(dump_bucket, defaults, state)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["gap"]["reason"] == "server id changed" and report["chain"].endswith("-s7")
    assert index_of(dump_bucket, first["chain"])["closed"]["reason"] == "server id changed"
    # The new chain starts where the old one stopped: the next file is still on the server.
    assert index_of(dump_bucket, report["chain"])["first_file"] == report["gap"]["missing_from"]


def test_reset_binlog_sequence_is_a_gap(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    for _ in range(2):
        write_rows(shipper_server, "ship_reset", 3)
        assert ship(dump_bucket, defaults, state).returncode == 0
    shipper_server.sql("RESET MASTER")
    write_rows(shipper_server, "ship_reset", 3)
    result = ship(dump_bucket, defaults, state)
    assert result.returncode == 1
    assert json.loads(result.stdout)["gap"]["reason"] == "binlog sequence reset"


# --- --follow ----------------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def follow(bucket: str, defaults: str, state: Path, interval: str) -> subprocess.Popen:
    return subprocess.Popen(ship_argv(bucket, defaults, state, "--follow", "--json", "--interval", interval),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def confirmed_at(state: Path) -> Optional[str]:
    try:
        return json.loads((state / "state.json").read_text())["index"]["confirmed_at"]
    except (FileNotFoundError, ValueError):
        return None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_ships_what_there_is_and_exits_0(shipper_server, dump_bucket, tmp_path, signum):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    proc = follow(dump_bucket, defaults, state, "300")
    try:
        wait_for(lambda: confirmed_at(state) is not None)
        write_rows(shipper_server, "ship_term", 25)   # committed after the first interval, long before the next
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and lines[-1]["segments"]
    index = assert_chain_complete(shipper_server, dump_bucket, lines[-1]["chain"])
    assert index["segments"][-1]["last_gtid"] == gtid_pos(shipper_server)


def restart(db: MariaDB) -> subprocess.Popen:
    """Stop the server cleanly and start it again on the same data directory (it rotates its binlog)."""
    subprocess.run(["mariadb-admin", f"--defaults-file={db.root_defaults}", "shutdown"], check=True)
    wait_for(lambda: not (db.base / "mysqld.pid").exists())   # removed at the end of a clean shutdown
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={db.base / 'data'}", f"--socket={db.socket}", f"--port={db.port}",
         "--bind-address=127.0.0.1", f"--pid-file={db.base / 'mysqld.pid'}", "--skip-name-resolve",
         "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=256M", "--log-bin=mariadb-bin", "--server-id=1",
         "--binlog-format=ROW", "--sync-binlog=1", "--gtid-strict-mode=1",
         *(["--user=root"] if os.geteuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["mariadb-admin", f"--defaults-file={db.root_defaults}", "ping"],
                                    capture_output=True).returncode == 0)
    return server


def test_server_restart_during_follow_continues_the_chain(shipper_server, dump_bucket, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    proc = follow(dump_bucket, defaults, state, "5")
    restarted = None
    try:
        wait_for(lambda: confirmed_at(state) is not None)
        write_rows(shipper_server, "ship_restart", 10)
        restarted = restart(shipper_server)
        write_rows(shipper_server, "ship_restart", 10)
        target = gtid_pos(shipper_server)
        wait_for(lambda: (json.loads((state / "state.json").read_text())["index"]["segments"] or [{}])[-1]
                 .get("last_gtid") == target, timeout=90)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        chains = {json.loads(line)["chain"] for line in out.splitlines()}
        assert len(chains) == 1 and not any(json.loads(line)["gap"] for line in out.splitlines())
        assert_chain_complete(shipper_server, dump_bucket, chains.pop())
    finally:
        proc.kill()
        if restarted:   # the fixture's own process is gone; stop ours before it removes the directory
            restarted.terminate()
            restarted.wait(timeout=60)


# --- --check -----------------------------------------------------------------------------------------

def test_check_names_each_missing_setting_and_grant(mariadb_server, tmp_path):
    mariadb_server.sql("CREATE USER IF NOT EXISTS 'nogrants'@'localhost' IDENTIFIED BY 'pw'")
    defaults = mariadb_server.defaults_file("nogrants", "pw", tmp_path)
    result = subprocess.run([sys.executable, SCRIPT, "--check", "--defaults-file", defaults],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    for text in ("log_bin is OFF: set log_bin=mariadb-bin", "binlog_format is MIXED: set binlog_format=ROW",
                 "sync_binlog is 0: set sync_binlog=1", "gtid_strict_mode is OFF: set gtid_strict_mode=1",
                 "run GRANT REPLICATION SLAVE ON *.* TO 'nogrants'@'localhost'",
                 "run GRANT BINLOG MONITOR ON *.* TO 'nogrants'@'localhost'",
                 "run GRANT RELOAD ON *.* TO 'nogrants'@'localhost'"):
        assert text in result.stdout
    assert "server_id" not in result.stdout and "binlog_row_image" not in result.stdout


def test_check_applies_settings_as_a_drop_in_and_never_restarts(mariadb_server, tmp_path):
    drop_in = tmp_path / "my.cnf.d" / "90-quickport-binlog.cnf"
    drop_in.parent.mkdir()
    started = mariadb_server.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                                 "WHERE VARIABLE_NAME = 'UPTIME'")[0][0]
    result = subprocess.run([sys.executable, SCRIPT, "--check", "--json", "--defaults-file",
                             mariadb_server.root_defaults, "--apply-settings", str(drop_in)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["restart_needed"] is True and report["written"] == str(drop_in)
    text = drop_in.read_text()
    assert "[mariadb]" in text
    for line in ("log_bin=mariadb-bin", "binlog_format=ROW", "sync_binlog=1", "gtid_strict_mode=1"):
        assert line in text.splitlines()
    assert oct(drop_in.stat().st_mode & 0o777) == "0o644"
    assert not [p for p in drop_in.parent.iterdir() if p != drop_in], "no temporary file left behind"
    # The server was not restarted (its uptime kept counting) and still runs without binlogs.
    uptime = mariadb_server.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                                "WHERE VARIABLE_NAME = 'UPTIME'")[0][0]
    assert int(uptime) >= int(started)
    assert mariadb_server.sql("SELECT @@log_bin")[0][0] == "0"


def test_check_passes_on_a_ready_server(binlog_server, tmp_path):
    defaults = binlog_user(binlog_server, tmp_path)
    result = subprocess.run([sys.executable, SCRIPT, "--check", "--defaults-file", defaults],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("ok:")


def test_check_flags_server_retention_shorter_than_a_day(shipper_server, tmp_path):
    defaults = binlog_user(shipper_server, tmp_path)
    shipper_server.sql("SET GLOBAL binlog_expire_logs_seconds = 3600")
    result = subprocess.run([sys.executable, SCRIPT, "--check", "--defaults-file", defaults],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "binlog_expire_logs_seconds is 3600: set expire_logs_days=7" in result.stdout


# --- the password rule, metrics, usage ---------------------------------------------------------------

def recording_shims(directory: Path) -> Path:
    """mariadb and mariadb-binlog first on PATH, appending their argv and environment to proc.log."""
    directory.mkdir()
    for name in ("mariadb", "mariadb-binlog"):
        real = binlog_ship.find_program(name)
        (directory / name).write_text(f'#!/bin/sh\necho {name} >> "{directory}/names.log"\n'
                                      f'cat /proc/$$/cmdline /proc/$$/environ >> "{directory}/proc.log"\n'
                                      f'exec "{real}" "$@"\n')
        (directory / name).chmod(0o755)
    return directory


def test_password_never_in_argv_or_environment_and_the_option_file_goes(shipper_server, dump_bucket, tmp_path):
    binlog_user(shipper_server, tmp_path)
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=BINLOG_PASSWORD, Type="SecureString")
    shims = recording_shims(tmp_path / "shims")
    write_rows(shipper_server, "ship_secret", 5)
    result = subprocess.run(
        [sys.executable, SCRIPT, "--once", "--bucket", dump_bucket, "--password-parameter", PARAMETER,
         "--user", "binlog", "--socket", shipper_server.socket, "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    names = set((shims / "names.log").read_text().split())
    assert names == {"mariadb", "mariadb-binlog"}
    recorded = (shims / "proc.log").read_bytes()
    assert BINLOG_PASSWORD.encode() not in recorded and b"AWS_SECRET_ACCESS_KEY" not in recorded
    assert b"--defaults-file=/dev/shm/quickport-binlog-" in recorded
    assert not [p for p in Path("/dev/shm").glob("quickport-binlog-*")]


def test_metrics_published_with_stack_and_database(binlog_server, dump_bucket, tmp_path):
    defaults = binlog_user(binlog_server, tmp_path)
    write_rows(binlog_server, "ship_metrics", 3)
    result = ship(dump_bucket, defaults, tmp_path / "state", "--metrics-stack", "prod", "--database", "crm")
    assert result.returncode == 0, result.stderr
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="QuickportBackup")["Metrics"]
    names = {m["MetricName"] for m in metrics
             if {(d["Name"], d["Value"]) for d in m["Dimensions"]} == {("Stack", "prod"), ("Database", "crm")}}
    assert names == {"BinlogShipLagSeconds", "BinlogChainBroken", "BinlogSegmentsShipped"}


def test_metrics_outage_is_a_warning_not_a_failure(binlog_server, dump_bucket, tmp_path):
    defaults = binlog_user(binlog_server, tmp_path)
    # CloudWatch is a POST API; S3 PUTs and GETs still pass.
    proxy = FaultyEndpoint(os.environ["AWS_ENDPOINT_URL"], lambda m, p: m != "POST")
    try:
        result = ship(dump_bucket, defaults, tmp_path / "state", "--metrics-stack", "prod", "--database", "crm",
                      env={**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint, "AWS_MAX_ATTEMPTS": "1"})
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    assert "warning: could not publish CloudWatch metrics" in result.stderr


@pytest.mark.parametrize("argv, message", [
    (["--once", "--defaults-file", "/x", "--interval", "3", "--bucket", "qp-test-dumps"],
     "--interval '3': must be a whole number from 5 to 300"),
    (["--once", "--defaults-file", "/x"], "--bucket: required with --once and --follow"),
    (["--once", "--bucket", "qp-test-dumps"], "one of the arguments --defaults-file --password-parameter is required"),
    (["--follow", "--bucket", "Bad_Bucket", "--defaults-file", "/x"], "--bucket 'Bad_Bucket': must be an S3 bucket"),
    (["--once", "--bucket", "qp-test-dumps", "--defaults-file", "/nonexistent"], "--defaults-file /nonexistent"),
    (["--once", "--bucket", "qp-test-dumps", "--defaults-file", "/x", "--metrics-stack", "prod"],
     "--metrics-stack and --database: give both or neither"),
])
def test_bad_usage_is_one_line_and_exit_2(argv, message, tmp_path):
    argv = [str(tmp_path / "x.cnf") if a == "/x" else a for a in argv]
    (tmp_path / "x.cnf").write_text("[client]\n")
    result = subprocess.run([sys.executable, SCRIPT, *argv, "--state-dir", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "s").exists()


def test_two_shippers_on_one_state_dir_refuse(binlog_server, dump_bucket, tmp_path):
    defaults = binlog_user(binlog_server, tmp_path)
    state = tmp_path / "state"
    proc = follow(dump_bucket, defaults, state, "300")
    try:
        wait_for(lambda: confirmed_at(state) is not None)
        second = ship(dump_bucket, defaults, state)
        assert second.returncode == 1 and "another shipper holds" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


# --- backupctl binlog-ship ---------------------------------------------------------------------------

def test_backupctl_binlog_ship_once_runs_the_agent_and_passes_json_through(binlog_server, dump_bucket, tmp_path,
                                                                          backupctl):
    defaults = binlog_user(binlog_server, tmp_path)
    write_rows(binlog_server, "ship_cli", 5)
    result = backupctl("binlog-ship", "--once", "--json", "--bucket", dump_bucket, "--defaults-file", defaults,
                       "--state-dir", str(tmp_path / "state"), "--log-file", str(tmp_path / "ops.jsonl"))
    assert result.code == 0, result.err
    report = json.loads(result.out)        # exactly one document: the agent's
    assert report["ok"] is True and report["segments"]
    assert_chain_complete(binlog_server, dump_bucket, report["chain"])
    events = [json.loads(line)["event"] for line in (tmp_path / "ops.jsonl").read_text().splitlines()]
    assert events == ["started", "finished"]


def test_backupctl_binlog_ship_passes_the_agents_failure_code_through(binlog_server, dump_bucket, tmp_path,
                                                                     backupctl):
    wrong = tmp_path / "wrong.cnf"
    wrong.write_text(f"[client]\nuser=binlog\npassword=nope\nsocket={binlog_server.socket}\n")
    result = backupctl("binlog-ship", "--once", "--json", "--bucket", dump_bucket, "--defaults-file", str(wrong),
                       "--state-dir", str(tmp_path / "state"), "--log-file", str(tmp_path / "ops.jsonl"))
    assert result.code == 1
    assert json.loads(result.out)["ok"] is False and "Access denied" in result.err


@pytest.mark.parametrize("argv, message", [
    (["--once", "--interval", "4"], "--interval '4': must be a whole number of seconds from 5 to 300"),
    (["--once", "--prefix", "Bin/"], "--prefix 'Bin/': must be lowercase"),
    (["--once", "--defaults-file", "/nonexistent.cnf"], "--defaults-file /nonexistent.cnf: no such file"),
    (["--once", "--state-dir", "CONFIG/state"], "/state: cannot be created ("),
    (["--interval", "30"], "one of the arguments --once --follow is required"),
])
def test_backupctl_binlog_ship_bad_input_is_one_line_exit_2(argv, message, backupctl, prod):
    argv = [a.replace("CONFIG", str(prod.config_file)) for a in argv]   # a file cannot hold a directory
    result = backupctl("binlog-ship", *argv, *prod.common_args(), "--bucket", "qp-test-dumps",
                       *([] if "--defaults-file" in argv else ["--defaults-file", str(prod.config_file)]))
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1


def test_backupctl_binlog_ship_follow_forwards_sigterm_and_exits_0(shipper_server, dump_bucket, tmp_path):
    from tests.fixtures.cli import LAUNCHER
    defaults = binlog_user(shipper_server, tmp_path)
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "binlog-ship", "--follow", "--interval", "300",
                             "--bucket", dump_bucket, "--defaults-file", defaults, "--state-dir", str(state),
                             "--log-file", str(tmp_path / "ops.jsonl")],
                            env={**os.environ, "QUICKPORT_NO_VENV": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: confirmed_at(state) is not None)
        write_rows(shipper_server, "ship_cli_term", 5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    index = json.loads((state / "state.json").read_text())["index"]
    assert index["segments"][-1]["last_gtid"] == gtid_pos(shipper_server)
