#!/usr/bin/env python3
"""Benchmark: the two ways of shipping binlogs that issue 10 names, at 200 small inserts/s, in one run.

Starts its own MariaDB server (binary logs as docs/binlog-shipping.md requires) and moto S3 server, then
for each --intervals value and each design runs a writer of 200 single-row transactions per second for
--seconds while the shipper runs:
  A  scripts/agent/binlog_ship.py --follow (FLUSH BINARY LOGS when there were writes, ship closed files)
  B  a prototype: mariadb-binlog --read-from-remote-server --raw --stop-never into a spool, and every
     interval the growing file's new bytes PUT as one more object (what "upload the growing file" costs)
Measured per run:
  RPO      for every row: the time its transaction first sat in S3 minus its commit time (the writer
           records each commit's time and GTID; the server's binlog gives each GTID's end position)
  CPU      user+system seconds of the shipper and every child it reaped (wait4), per minute
  PUTs     object versions written under the prefix, per hour; bytes likewise
Prints a table with the machine's load; B's figures are also given as a ratio of A's in the same run.

    .venv/bin/python bench/bench_binlog_ship.py [--intervals 5,30] [--seconds 60] [--rate 200] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.offline.emulator import running_emulator  # noqa: E402
from tests.fixtures.mariadb import binaries_present, running_mariadb  # noqa: E402

AGENT = ROOT / "scripts" / "agent" / "binlog_ship.py"
BUCKET = "qp-bench-binlog"
REGION = "ap-south-1"
PASSWORD = "bench-binlog-pw"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- design B: the prototype, run as its own process so its CPU is measured like A's --------------

def design_b_worker(argv: list[str]) -> int:
    """--design-b DEFAULTS SPOOL PREFIX INTERVAL FIRST_FILE: follow with --stop-never, upload new bytes."""
    import boto3
    defaults, spool, prefix, interval, first = argv[0], Path(argv[1]), argv[2], int(argv[3]), argv[4]
    spool.mkdir(parents=True, exist_ok=True)
    follower = subprocess.Popen(["mariadb-binlog", f"--defaults-file={defaults}", "--read-from-remote-server",
                                 "--raw", "--stop-never", f"--result-file={spool}/", first],
                                stderr=subprocess.DEVNULL)
    s3 = boto3.client("s3", region_name=REGION)
    shipped: dict[str, int] = {}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ship_new_bytes() -> None:
        for path in sorted(spool.iterdir()):
            size = path.stat().st_size
            done = shipped.get(path.name, 0)
            if size <= done:
                continue
            with open(path, "rb") as f:
                f.seek(done)
                body = f.read(size - done)
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{path.name}.{done:012d}", Body=body,
                          ChecksumAlgorithm="CRC32")
            shipped[path.name] = size
            print(json.dumps({"time": time.time(), "file": path.name, "size": size}), flush=True)
    while not stop.wait(interval):
        ship_new_bytes()
    ship_new_bytes()
    follower.terminate()
    follower.wait()
    return 0


# --- the writer ------------------------------------------------------------------------------------

class Writer:
    """Single-row transactions at `rate` per second through one mariadb client; records (commit time,
    GTID) of each as the client reports it back."""

    def __init__(self, db, rate: int):
        self.db, self.rate = db, rate
        self.commits: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = subprocess.Popen(["mariadb", f"--defaults-file={self.db.root_defaults}", "--batch",
                                   "--skip-column-names", "--unbuffered", "bench"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert client.stdin and client.stdout
        start, n = time.monotonic(), 0
        while not self.stop.is_set():
            due = start + n / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            client.stdin.write("INSERT INTO t (body) VALUES (RANDOM_BYTES(64)); SELECT @@last_gtid;\n")
            client.stdin.flush()
            gtid = client.stdout.readline().strip()
            self.commits.append((time.time(), gtid))
            n += 1
        client.stdin.close()
        client.wait()

    def __enter__(self) -> "Writer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


# --- measuring -------------------------------------------------------------------------------------

GTID_RE = re.compile(r"end_log_pos (\d+) .*\tGTID (\d+-\d+-\d+)")
XID_RE = re.compile(r"end_log_pos (\d+) .*\tXid = ")


def commit_positions(datadir: Path) -> dict[str, tuple[str, int]]:
    """GTID -> (binlog file, end position of its commit event), from the server's own files."""
    found: dict[str, tuple[str, int]] = {}
    for path in sorted(datadir.glob("mariadb-bin.[0-9]*")):
        out = subprocess.run(["mariadb-binlog", "--no-defaults", str(path)], capture_output=True, text=True,
                             env={**os.environ, "TZ": "UTC"}).stdout
        current = None
        for line in out.splitlines():
            if not line.startswith("#"):
                continue
            m = GTID_RE.search(line)
            if m:
                current = m.group(2)
                continue
            m = XID_RE.search(line)
            if m and current:
                found[current] = (path.name, int(m.group(1)))
                current = None
    return found


def s3_totals(prefix: str) -> tuple[int, int]:
    import boto3
    s3 = boto3.client("s3", region_name=REGION)
    puts = size = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for v in page.get("Versions", []):
            puts += 1
            size += v["Size"]
    return puts, size


def wait_rusage(proc: subprocess.Popen) -> float:
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def run_design(design: str, db, defaults: str, interval: int, seconds: int, rate: int, work: Path) -> dict:
    prefix = f"bench-{design.lower()}-{interval}"
    db.sql("DROP DATABASE IF EXISTS bench; CREATE DATABASE bench;"
           "CREATE TABLE bench.t (id INT PRIMARY KEY AUTO_INCREMENT, body VARBINARY(64)) ENGINE=InnoDB;")
    db.sql("FLUSH BINARY LOGS")
    first = db.sql("SHOW MASTER STATUS")[0][0]
    if design == "A":
        argv = [sys.executable, str(AGENT), "--follow", "--json", "--bucket", BUCKET, "--prefix", prefix,
                "--defaults-file", defaults, "--interval", str(interval), "--state-dir", str(work / prefix),
                "--region", REGION]
    else:
        argv = [sys.executable, __file__, "--design-b", defaults, str(work / prefix), prefix, str(interval), first]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events: list[tuple[float, dict]] = []

    def read() -> None:
        assert proc.stdout
        for line in proc.stdout:
            events.append((time.time(), json.loads(line)))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1)   # the shipper is up before the first write
    started = time.monotonic()
    with Writer(db, rate) as writer:
        time.sleep(seconds)
    elapsed = time.monotonic() - started
    time.sleep(interval + 2)   # one more interval ships the tail
    proc.send_signal(signal.SIGTERM)
    cpu = wait_rusage(proc)
    reader.join(timeout=30)
    positions = commit_positions(db.base / "data")
    covered: dict[str, list[tuple[float, int]]] = {}
    for at, event in events:
        if design == "A":
            for name in event.get("segments") or []:
                covered.setdefault(name, []).append((at, 1 << 62))
        else:
            covered.setdefault(event["file"], []).append((at, event["size"]))
    rpo = []
    for commit_time, gtid in writer.commits:
        name, end = positions.get(gtid, (None, 0))
        times = [at for at, size in covered.get(name or "", []) if size >= end]
        if times:
            rpo.append(min(times) - commit_time)
    puts, size = s3_totals(prefix)
    per_hour = 3600 / (elapsed + interval + 2)
    return {"design": design, "interval": interval, "rows": len(writer.commits), "rows_in_s3": len(rpo),
            "rpo_min": min(rpo), "rpo_median": statistics.median(rpo), "rpo_max": max(rpo),
            "cpu_per_minute": cpu * 60 / (elapsed + interval + 3),
            "puts_per_hour": puts * per_hour, "mib_per_hour": size * per_hour / 2**20}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--design-b":
        return design_b_worker(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--intervals", default="5,30")
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if not binaries_present():
        print("MariaDB binaries are not installed", file=sys.stderr)
        return 2
    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="qp-bench-binlog-") as tmp, running_emulator(Path(tmp)), \
            running_mariadb("256M", binlog=True) as db:
        import boto3
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        db.sql(f"CREATE USER binlog@localhost IDENTIFIED BY '{PASSWORD}';"
               "GRANT REPLICATION SLAVE, BINLOG MONITOR, RELOAD ON *.* TO binlog@localhost;")
        defaults = db.defaults_file("binlog", PASSWORD, Path(tmp) / "client")
        for interval in [int(x) for x in a.intervals.split(",")]:
            for design in ("A", "B"):
                log(f"design {design}, interval {interval} s, {a.rate} rows/s for {a.seconds} s")
                results.append(run_design(design, db, defaults, interval, a.seconds, a.rate, Path(tmp)))
    load_after = os.getloadavg()
    if a.json:
        print(json.dumps({"load_before": load_before, "load_after": load_after, "results": results}, indent=1))
        return 0
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs "
          f"(uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()})")
    print(f"{'design':<7}{'interval':>9}{'rows':>7}{'in S3':>7}{'RPO min':>9}{'median':>8}{'max':>7}"
          f"{'CPU s/min':>10}{'PUT/h':>8}{'MiB/h':>8}")
    for r in results:
        print(f"{r['design']:<7}{r['interval']:>8}s{r['rows']:>7}{r['rows_in_s3']:>7}{r['rpo_min']:>8.1f}s"
              f"{r['rpo_median']:>7.1f}s{r['rpo_max']:>6.1f}s{r['cpu_per_minute']:>10.2f}{r['puts_per_hour']:>8.0f}"
              f"{r['mib_per_hour']:>8.1f}")
    for interval in sorted({r["interval"] for r in results}):
        a_r, b_r = [next(r for r in results if r["interval"] == interval and r["design"] == d) for d in "AB"]
        print(f"interval {interval} s, B/A: RPO median {b_r['rpo_median'] / a_r['rpo_median']:.2f}x, "
              f"CPU {b_r['cpu_per_minute'] / a_r['cpu_per_minute']:.2f}x, "
              f"PUTs {b_r['puts_per_hour'] / a_r['puts_per_hour']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
