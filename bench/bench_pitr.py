#!/usr/bin/env python3
"""Benchmark: point-in-time recovery, in one run against baselines measured in the same run.

1. Restore time. Builds a ~--dump-mb MB CRM-like database on a logging server, dumps it with the agent
   to a moto S3 server, writes ~--binlog-mb MB of binlog events after the dump, ships them, then on a
   scratch server (no binlog) measures
     ours   backupctl db-restore --latest (S3 download + SHA-256 of every object, dump, replay)
     base   zstd -dc dump | mariadb; mariadb-binlog --start-position ... files | mariadb
            (the files already local: the floor the tools set)
   best wall time of --rounds each; goal ours <= 1.10x base.
2. RPO over --crash-runs crash runs per interval (--intervals): a row every 50 ms with the real shipper
   (scripts/agent/binlog_ship.py --follow), server and shipper SIGKILLed together at a random moment,
   data directory deleted, db-restore --latest into a fresh server; lost = kill time - newest
   recovered row. min / median / max per interval.
The shipper's CPU at 200 rows/s is part A's bench (bench/bench_binlog_ship.py on branch pitr-ship).

    .venv/bin/python bench/bench_pitr.py [--dump-mb 1000] [--binlog-mb 100] [--rounds 2]
                                         [--intervals 5,30] [--crash-runs 10] [--json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_dump import build_database, log  # noqa: E402

from scripts.agent import quickport_dump  # noqa: E402
from scripts.offline.emulator import running_emulator  # noqa: E402
from tests.fixtures.binlog_chain import SHIPPER, Session, Shipper, server_pid  # noqa: E402
from tests.fixtures.mariadb import BACKUP_PASSWORD, binaries_present, grant_backup, running_mariadb  # noqa: E402

BUCKET = "qp-bench-pitr"
ROWS_PER_BINLOG_MB = 9000   # ~115 bytes of row event per inserted position row, measured once


def backupctl(*argv: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "backupctl"), *argv], env=env,
                          capture_output=True, text=True)


def restore_args(database: str, target: str, defaults: str) -> list[str]:
    return ["db-restore", "--latest", "--bucket", BUCKET, "--prefix", "bench", "--binlog-prefix", "binlog",
            "--database", database, "--target-database", target, "--defaults-file", defaults, "--json",
            "--log-file", os.devnull]


def bench_restore(args, env: dict, tmp: Path) -> list[dict]:
    name = "pitr_bench"
    with running_mariadb(buffer_pool="1G", binlog=True) as source, running_mariadb(buffer_pool="1G") as scratch:
        log(f"building {name} (~{args.dump_mb} MB of dump text)")
        build_database(source, name, args.dump_mb)
        source.sql("FLUSH BINARY LOGS")   # the build in files of its own: the binlog MiB are the replay's
        manifest = quickport_dump.dump_database(database=name, bucket=BUCKET, prefix="bench",
                                                defaults_file=source.defaults_file("backup", BACKUP_PASSWORD, tmp))
        rows = args.binlog_mb * ROWS_PER_BINLOG_MB
        log(f"writing ~{args.binlog_mb} MB of binlog events ({rows} rows in 10k-row transactions)")
        base_id = 10 ** 9
        for start in range(0, rows, 10_000):
            source.sql(f"INSERT INTO positions SELECT {base_id} + seq, seq MOD 500, NOW(), 12.9, 77.5, 1, 2, "
                       f"MD5(seq) FROM seq_{start + 1}_to_{start + 10_000}", name)
        shipper = Shipper(source, BUCKET, tmp / "ship-state")
        shipper.ship()
        segments = shipper.segments()   # head and pages
        files = [source.base / "data" / s["file"] for s in segments
                 if int(s["file"].rsplit(".", 1)[1]) >= int(manifest["binlog"]["file"].rsplit(".", 1)[1])]
        binlog_mib = sum(f.stat().st_size for f in files) / 2**20
        dump_path = tmp / "dump.sql.zst"
        subprocess.run(["aws", "s3", "cp", "--quiet", f"s3://{BUCKET}/{manifest['key']}", str(dump_path)],
                       env=env, check=True)
        client = ["mariadb", f"--defaults-file={scratch.root_defaults}"]
        base = (f"zstd -q -dc {dump_path} | {' '.join(client)} r_base && "
                f"TZ=UTC mariadb-binlog --start-position={manifest['binlog']['position']} --database={name} "
                f"'--rewrite-db={name}->r_base' {' '.join(map(str, files))} | {' '.join(client)} r_base")
        best: dict[str, float] = {}
        for r in range(args.rounds):
            for method in ("base", "ours"):
                scratch.sql(f"DROP DATABASE IF EXISTS r_{method};"
                            + ("CREATE DATABASE r_base;" if method == "base" else ""))
                start = time.perf_counter()
                if method == "base":
                    subprocess.run(["bash", "-o", "pipefail", "-c", base], check=True)
                else:
                    done = backupctl(*restore_args(name, "r_ours", scratch.root_defaults), env=env)
                    if done.returncode != 0:
                        raise SystemExit(f"db-restore failed: {done.stderr[-2000:]}")
                wall = time.perf_counter() - start
                log(f"restore round {r + 1} {method}: {wall:.1f}s")
                best[method] = min(wall, best.get(method, wall))
        counts = [scratch.sql(f"SELECT COUNT(*) FROM {db}.positions")[0][0] for db in ("r_base", "r_ours")]
        if counts[0] != counts[1]:
            raise SystemExit(f"the two restores differ: {counts}")
        return [{"dump_mib": round(int(manifest["bytes"]) / 2**20, 1), "binlog_mib": round(binlog_mib, 1),
                 "method": m, "wall_s": round(w, 1), "x_base": round(w / best["base"], 2)}
                for m, w in best.items()]


def crash_run(interval: int, env: dict, tmp: Path) -> float:
    """One crash: the seconds of committed writes lost."""
    with running_mariadb(binlog=True, server_id=3) as source:
        source.sql("CREATE DATABASE crash; CREATE TABLE crash.ticks (id INT AUTO_INCREMENT PRIMARY KEY, "
                   "at DATETIME(3) NOT NULL);")
        grant_backup(source, "crash")
        quickport_dump.dump_database(database="crash", bucket=BUCKET, prefix="bench",
                                     defaults_file=source.defaults_file("backup", BACKUP_PASSWORD, tmp))
        shipper = subprocess.Popen([sys.executable, str(SHIPPER), "--follow", "--interval", str(interval),
                                    "--bucket", BUCKET, "--prefix", "binlog", "--defaults-file",
                                    source.root_defaults, "--state-dir", str(tmp / "state")],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        writer = Session(source, "crash")
        until = time.monotonic() + 2 * interval + random.uniform(0, interval)
        while time.monotonic() < until:
            writer.run("INSERT INTO ticks (at) VALUES (UTC_TIMESTAMP(3));")
            time.sleep(0.05)
        os.kill(server_pid(source), signal.SIGKILL)
        shipper.kill()
        killed = dt.datetime.now(dt.timezone.utc)
        shipper.wait()
        writer.proc.kill()
        writer.proc.wait()
        shutil.rmtree(source.base / "data")
    with running_mariadb(binlog=True, server_id=4) as fresh:
        done = backupctl(*restore_args("crash", "crash_restored", fresh.root_defaults), env=env)
        if done.returncode != 0:
            raise SystemExit(f"crash restore failed: {done.stderr[-2000:]}")
        [[last]] = fresh.sql("SELECT DATE_FORMAT(MAX(at), '%Y-%m-%d %H:%i:%s.%f') FROM crash_restored.ticks")
    shutil.rmtree(tmp / "state", ignore_errors=True)
    return (killed - dt.datetime.fromisoformat(last).replace(tzinfo=dt.timezone.utc)).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dump-mb", type=int, default=1000, help="database size in MB of dump text (default 1000)")
    parser.add_argument("--binlog-mb", type=int, default=100, help="binlog written after the dump (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="restore runs per method; the best counts")
    parser.add_argument("--intervals", default="5,30", help="shipper intervals for the crash runs (default 5,30)")
    parser.add_argument("--crash-runs", type=int, default=10, help="crash runs per interval (default 10)")
    parser.add_argument("--skip-restore", action="store_true", help="only the crash runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not binaries_present():
        sys.exit("bench_pitr: needs the MariaDB binaries (make system-deps)")
    restore_rows: list[dict] = []
    rpo: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="qp-bench-pitr-") as tmp, running_emulator(Path(tmp)):
        env = {**os.environ, "QUICKPORT_NO_VENV": "1"}   # the emulator's AWS_* settings, for the children
        import boto3
        boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
        if not args.skip_restore:
            restore_rows = bench_restore(args, env, Path(tmp))
        if args.crash_runs and not SHIPPER.is_file():
            log("no scripts/agent/binlog_ship.py (branch pitr-ship): crash runs skipped")
        elif args.crash_runs:
            for interval in [int(i) for i in args.intervals.split(",")]:
                for n in range(args.crash_runs):
                    _clear_bucket()
                    lost = crash_run(interval, env, Path(tmp) / f"crash-{interval}-{n}")
                    log(f"crash run {n + 1} at interval {interval}s: {lost:.1f}s lost")
                    rpo.setdefault(interval, []).append(lost)
    load = os.getloadavg()
    rpo_rows = [{"interval_s": i, "runs": len(v), "min_s": round(min(v), 1), "median_s": round(statistics.median(v), 1),
                 "max_s": round(max(v), 1), "bound_s": i + 10} for i, v in rpo.items()]
    if args.json:
        print(json.dumps({"load_average": load, "restore": restore_rows, "rpo": rpo_rows}, indent=2))
        return 0
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    if restore_rows:
        print(f"{'dump MiB':>9} {'binlog MiB':>11} {'method':<6} {'wall s':>7} {'x base':>7}")
        for r in restore_rows:
            print(f"{r['dump_mib']:>9} {r['binlog_mib']:>11} {r['method']:<6} {r['wall_s']:>7} {r['x_base']:>7}")
        ours = next(r for r in restore_rows if r["method"] == "ours")
        print(f"{'MET ' if ours['x_base'] <= 1.10 else 'MISS'} restore ours <= 1.10x base: {ours['x_base']}x")
    for r in rpo_rows:
        print(f"RPO at interval {r['interval_s']}s over {r['runs']} crashes: min {r['min_s']}s median "
              f"{r['median_s']}s max {r['max_s']}s ({'MET' if r['max_s'] <= r['bound_s'] else 'MISS'} "
              f"<= {r['bound_s']}s)")
    return 0


def _clear_bucket() -> None:
    """Each crash run starts from an empty bucket: its own dump and chain only."""
    import boto3
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


if __name__ == "__main__":
    sys.exit(main())
