#!/usr/bin/env python3
"""Benchmark: our streaming dump against a raw dump and against the seed's way, in the same run.

Starts its own MariaDB server and moto S3 server, builds a ~100 MB and a ~1 GB database of CRM-like
rows (GPS positions as the GT06 server writes them, customer notes), then for each size measures
  raw   mariadb-dump ... > /dev/null                       (the floor: what the dump alone costs)
  ours  scripts/agent/quickport_dump.py db ... (zstd, streamed multipart to S3, counts, SHA-256)
  seed  mariadb-dump > file; gzip file; aws s3 cp file.gz s3://...   (the classic script)
Wall time is the best of --rounds runs; peak RSS is that of the largest process of each pipeline
(wait4's ru_maxrss covers the process and every descendant it reaped). Prints ratios against raw.
Targets: ours <= 1.15x raw; seed/ours >= 2; ours' peak RSS at 1 GB no larger than at 100 MB.

    .venv/bin/python bench/bench_dump.py [--sizes 100,1000] [--rounds 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.agent.quickport_dump import DUMP_OPTIONS  # noqa: E402
from tests.fixtures.mariadb import BACKUP_PASSWORD, binaries_present, grant_backup, running_mariadb  # noqa: E402

BUCKET = "qp-bench-dumps"
# Rows per MB of dump text, measured once: ~95 bytes per position row, ~190 per note row.
POSITIONS_PER_MB = 8000
NOTES_PER_MB = 1600


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_database(db, name: str, megabytes: int) -> None:
    positions, notes = megabytes * POSITIONS_PER_MB, megabytes * NOTES_PER_MB
    db.sql(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4;")
    db.sql("""
        CREATE TABLE positions (id BIGINT PRIMARY KEY, device_id INT NOT NULL, recorded_at DATETIME NOT NULL,
          lat DECIMAL(9,6) NOT NULL, lng DECIMAL(9,6) NOT NULL, speed SMALLINT, course SMALLINT,
          raw VARCHAR(80)) ENGINE=InnoDB;
        CREATE TABLE notes (id INT PRIMARY KEY, customer_id INT NOT NULL, body TEXT) ENGINE=InnoDB;
    """, name)
    batch = 1_000_000
    for start in range(0, positions, batch):
        end = min(positions, start + batch)
        db.sql(f"""INSERT INTO positions SELECT seq, seq MOD 500, '2026-01-01' + INTERVAL seq SECOND,
                   12.9 + (seq MOD 10000) / 100000, 77.5 + (seq MOD 7919) / 100000, seq MOD 120, seq MOD 360,
                   CONCAT('7878', LEFT(MD5(seq), 24), '0d0a') FROM seq_{start + 1}_to_{end};""", name)
    for start in range(0, notes, batch):
        end = min(notes, start + batch)
        db.sql(f"""INSERT INTO notes SELECT seq, seq MOD 5000,
                   CONCAT_WS(' ', 'Customer', seq MOD 5000, 'called about invoice', MD5(seq), 'status',
                             ELT(1 + seq MOD 4, 'paid', 'pending', 'overdue', 'disputed'),
                             REPEAT('follow up next week. ', 1 + seq MOD 5))
                   FROM seq_{start + 1}_to_{end};""", name)
    grant_backup(db, name)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv, env=None, **kw) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) of the largest process in the tree `argv` starts, and the CPU
    seconds of that tree. GNU time measures them: a child forked straight from this Python process
    would inherit its RSS high-water mark in ru_maxrss; time's own children start small."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", report.name, *argv], env=env, check=True, **kw)
        wall = time.perf_counter() - start
        rss, user, system = report.read().split()[-3:]
        return wall, int(rss), float(user) + float(system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="database sizes in MB (default: 100,1000)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per method; the best wall time counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not binaries_present() or not os.access("/usr/bin/time", os.X_OK):
        sys.exit("bench_dump: needs the MariaDB binaries (make system-deps) and GNU time (apt-get install time)")
    sizes = [int(s) for s in args.sizes.split(",")]

    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "ap-south-1", "AWS_REGION": "ap-south-1"}
    results = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/data.json", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        import boto3
        boto3.client("s3", endpoint_url=endpoint, region_name="ap-south-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
        with running_mariadb(buffer_pool="1G") as db, tempfile.TemporaryDirectory(prefix="qp-bench-") as tmp:
            defaults = db.defaults_file("backup", BACKUP_PASSWORD, Path(tmp))
            aws = str(Path(sys.executable).parent / "aws")
            for size in sizes:
                name = f"bench_{size}mb"
                log(f"building {name} (~{size} MB of dump text)")
                t = time.perf_counter()
                build_database(db, name, size)
                log(f"built in {time.perf_counter() - t:.0f}s")
                dump = ["mariadb-dump", f"--defaults-file={defaults}", *DUMP_OPTIONS, name]
                dump_file = Path(tmp) / f"{name}.sql"
                methods = {  # called in this iteration only: the loop variables are the ones meant
                    "raw": lambda: timed(dump, stdout=subprocess.DEVNULL),
                    "ours": lambda: timed([sys.executable,
                                           str(ROOT / "scripts" / "agent" / "quickport_dump.py"), "db",
                                           "--database", name, "--bucket", BUCKET, "--prefix", "bench",
                                           "--defaults-file", defaults], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                    "seed": lambda: timed(["bash", "-c",
                                           'set -e; "${@:3}" > "$1"; gzip -f "$1"; '
                                           '"$2" s3 cp --quiet "$1.gz" "s3://' + BUCKET + '/seed/$(basename "$1").gz"; '
                                           'rm -f "$1.gz"', "seed", str(dump_file), aws, *dump], env=env),
                }
                timed(dump, stdout=subprocess.DEVNULL)  # warm the buffer pool / page cache for everyone
                dump_bytes = int(subprocess.run(f"{' '.join(dump)} | wc -c", shell=True, capture_output=True,
                                                text=True).stdout)
                best: dict[str, tuple[float, int, float, float]] = {}
                for r in range(args.rounds):
                    for method, run in methods.items():
                        moto_before = cpu_seconds(moto.pid)
                        wall, rss, cpu = run()
                        moto_cpu = cpu_seconds(moto.pid) - moto_before
                        log(f"{name} round {r + 1} {method}: {wall:.2f}s, peak RSS {rss / 1024:.0f} MiB, "
                            f"CPU {cpu:.1f}s (+ S3 emulator {moto_cpu:.1f}s)")
                        if method not in best or wall < best[method][0]:
                            best[method] = (wall, max(rss, best.get(method, (0, 0))[1]), cpu, moto_cpu)
                        else:
                            best[method] = (*best[method][:1], max(rss, best[method][1]), *best[method][2:])
                raw = best["raw"][0]
                for method, (wall, rss, cpu, moto_cpu) in best.items():
                    results.append({"size_mb": size, "dump_mib": round(dump_bytes / 2**20, 1), "method": method,
                                    "wall_s": round(wall, 2), "x_raw": round(wall / raw, 2),
                                    "peak_rss_mib": round(rss / 1024, 1), "cpu_s": round(cpu, 1),
                                    "emulator_cpu_s": round(moto_cpu, 1)})
                db.sql(f"DROP DATABASE {name};")
    finally:
        moto.terminate()
        moto.wait(timeout=30)

    def pick(size, method):
        return next(r for r in results if r["size_mb"] == size and r["method"] == method)
    checks = []
    for size in sizes:
        ours, seed = pick(size, "ours"), pick(size, "seed")
        checks.append((f"{size} MB: ours <= 1.15x raw", ours["x_raw"] <= 1.15, f"{ours['x_raw']}x"))
        checks.append((f"{size} MB: seed/ours >= 2", seed["wall_s"] / ours["wall_s"] >= 2,
                       f"{seed['wall_s'] / ours['wall_s']:.2f}x"))
    if len(sizes) > 1:
        small, large = pick(min(sizes), "ours"), pick(max(sizes), "ours")
        checks.append((f"ours peak RSS at {max(sizes)} MB <= at {min(sizes)} MB",
                       large["peak_rss_mib"] <= small["peak_rss_mib"] * 1.05,
                       f"{large['peak_rss_mib']} vs {small['peak_rss_mib']} MiB (5% noise allowed)"))
    if args.json:
        print(json.dumps({"results": results, "checks": [{"check": c, "met": m, "value": v} for c, m, v in checks]},
                         indent=2))
    else:
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'size':>6} {'dump MiB':>9} {'method':<6} {'wall s':>8} {'x raw':>6} {'peak RSS MiB':>13} "
              f"{'CPU s':>6} {'S3 emu CPU s':>13}")
        for r in results:
            print(f"{r['size_mb']:>6} {r['dump_mib']:>9} {r['method']:<6} {r['wall_s']:>8} {r['x_raw']:>6} "
                  f"{r['peak_rss_mib']:>13} {r['cpu_s']:>6} {r['emulator_cpu_s']:>13}")
        print()
        for check, met, value in checks:
            print(f"{'MET ' if met else 'MISS'} {check}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
