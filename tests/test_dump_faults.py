"""Every failure exits non-zero and publishes nothing: no object at the final key, no manifest,
latest.json untouched, no multipart upload left behind (real MariaDB, real processes, moto server)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from scripts.agent import quickport_dump
from scripts.offline.emulator import Emulator, free_port
from tests.fixtures.mariadb import running_children, s3_keys, seed_database

SCRIPT = str(Path(quickport_dump.__file__))
SOURCE = "crm_faults"


def dump_cli(bucket: str, defaults: str, database: str = SOURCE, *extra: str) -> list[str]:
    return ["db", "--database", database, "--bucket", bucket, "--prefix", "mysql",
            "--defaults-file", defaults, *extra]


@pytest.fixture
def published(mariadb_server, dump_bucket, backup_defaults):
    """A good dump of SOURCE already published; returns the bucket state to compare with afterwards."""
    seed_database(mariadb_server, SOURCE)
    assert quickport_dump.main(dump_cli(dump_bucket, backup_defaults)) == 0
    return bucket_state(dump_bucket, SOURCE)


def bucket_state(bucket: str, database: str) -> dict:
    s3 = boto3.client("s3")
    latest = s3.get_object(Bucket=bucket, Key=f"mysql/{database}/latest.json")["Body"].read()
    return {"keys": s3_keys(bucket), "latest": latest,
            "uploads": s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def wait_for_uploaded_part(bucket: str, timeout: float = 120) -> dict:
    """The in-progress multipart upload once at least one part has landed (the dump is mid-stream)."""
    s3 = boto3.client("s3")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            if s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts"):
                return upload
        time.sleep(0.05)
    raise AssertionError("no part was uploaded in time")


def previous_latest(bucket: str, database: str) -> dict:
    """Stands for an earlier good dump: a latest.json that must stay byte-for-byte as it is."""
    boto3.client("s3").put_object(Bucket=bucket, Key=f"mysql/{database}/latest.json",
                                  Body=b'{"manifest": "mysql/earlier.manifest.json"}\n')
    return bucket_state(bucket, database)


def test_dump_killed_mid_stream_publishes_nothing(mariadb_server, dump_bucket, backup_defaults, big_database):
    before = previous_latest(dump_bucket, big_database)
    proc = subprocess.Popen([sys.executable, SCRIPT, *dump_cli(dump_bucket, backup_defaults, big_database)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    upload = wait_for_uploaded_part(dump_bucket)
    dump_pid = next(pid for pid, name in running_children(proc.pid) if name in ("mariadb-dump", "mysqldump"))
    os.kill(dump_pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, upload["Key"] in s3_keys(dump_bucket), bucket_state(dump_bucket, big_database)) == \
        (1, False, before), err.decode()


def test_dump_killed_mid_stream_names_the_signal(mariadb_server, dump_bucket, backup_defaults, big_database):
    proc = subprocess.Popen([sys.executable, SCRIPT, *dump_cli(dump_bucket, backup_defaults, big_database)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_uploaded_part(dump_bucket)
    dump_pid = next(pid for pid, name in running_children(proc.pid) if name in ("mariadb-dump", "mysqldump"))
    os.kill(dump_pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert "was killed by SIGKILL" in err


def test_terminating_the_script_mid_stream_publishes_nothing(mariadb_server, dump_bucket, backup_defaults,
                                                             big_database):
    proc = subprocess.Popen([sys.executable, SCRIPT, *dump_cli(dump_bucket, backup_defaults, big_database)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    upload = wait_for_uploaded_part(dump_bucket)
    children = running_children(proc.pid)
    proc.send_signal(signal.SIGTERM)  # what an SSM command timeout sends
    proc.communicate(timeout=120)
    s3 = boto3.client("s3")
    assert (proc.returncode, s3_keys(dump_bucket), s3.list_multipart_uploads(Bucket=dump_bucket).get("Uploads", []),
            [pid for pid, _ in children if os.path.exists(f"/proc/{pid}/cmdline")]) == (1, [], [], []), upload


def test_wrong_password_publishes_nothing(published, mariadb_server, dump_bucket, tmp_path):
    wrong = mariadb_server.defaults_file("backup", "not-the-password", tmp_path / "wrong")
    assert (quickport_dump.main(dump_cli(dump_bucket, wrong)), bucket_state(dump_bucket, SOURCE)) == (1, published)


def test_unreachable_s3_endpoint_fails_without_publishing(published, dump_bucket, backup_defaults, monkeypatch):
    closed_port = free_port()   # bound, then released: nothing listens on it
    real_endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    code = quickport_dump.main(dump_cli(dump_bucket, backup_defaults))
    monkeypatch.setenv("AWS_ENDPOINT_URL", real_endpoint)
    assert (code, bucket_state(dump_bucket, SOURCE)) == (1, published)


def test_s3_going_away_mid_stream_leaves_no_object(mariadb_server, dump_bucket, backup_defaults, big_database):
    second = Emulator().start()   # a second server on the same in-process state, stopped mid-stream
    env = {**os.environ, "AWS_ENDPOINT_URL": second.endpoint, "AWS_MAX_ATTEMPTS": "2"}
    proc = subprocess.Popen([sys.executable, SCRIPT, *dump_cli(dump_bucket, backup_defaults, big_database)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    upload = wait_for_uploaded_part(dump_bucket)
    second.stop()
    proc.communicate(timeout=180)
    # The abort could not reach S3 either: the incomplete upload stays (the bucket's lifecycle rule
    # removes it), but nothing exists at the final key and nothing was published.
    assert (proc.returncode, s3_keys(dump_bucket)) == (1, []), upload


def test_missing_bucket_fails_without_creating_anything(mariadb_server, aws, backup_defaults, capsys):
    seed_database(mariadb_server, SOURCE)
    code = quickport_dump.main(dump_cli("qp-no-such-bucket", backup_defaults))
    assert (code, "NoSuchBucket" in capsys.readouterr().err,
            [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]) == (1, True, [])


def _fake_program(directory: Path, name: str, script: str, monkeypatch) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")


def test_failing_compressor_publishes_nothing(published, dump_bucket, backup_defaults, tmp_path, monkeypatch):
    # A zstd that reads a little, then fails as on a full disk or a crash.
    _fake_program(tmp_path / "bin", "zstd", "head -c 65536 >/dev/null; echo 'zstd: write error' >&2; exit 1\n",
                  monkeypatch)
    assert (quickport_dump.main(dump_cli(dump_bucket, backup_defaults)), bucket_state(dump_bucket, SOURCE)) == \
        (1, published)


def test_dump_that_exits_0_without_its_trailer_is_rejected_by_verify_decompress(published, dump_bucket,
                                                                              backup_defaults, tmp_path, monkeypatch):
    # A dump tool that stops half-way yet reports success: only the missing trailer gives it away, and
    # only --verify decompress reads it at backup time (the default leaves it to the drill and restores).
    real = quickport_dump.find_program("mariadb-dump", "mysqldump")
    _fake_program(tmp_path / "bin", "mariadb-dump", f'"{real}" "$@" | head -n 30\nexit 0\n', monkeypatch)
    code = quickport_dump.main(dump_cli(dump_bucket, backup_defaults, SOURCE, "--verify", "decompress"))
    assert (code, bucket_state(dump_bucket, SOURCE)) == (1, published)


# A zstd that reads everything and reports success but writes only part of its output: every exit
# status says 0. Cut at 1 KB (inside the first block), or cut and padded with what looks like a next frame.
CUT_COMPRESSORS = {
    "cut": "head -c 1024; cat >/dev/null",
    "cut-and-padded": "head -c 1024; cat >/dev/null; printf '\\050\\265\\057\\375'",
}


@pytest.mark.parametrize("verify, expected", [("frames", "not whole zstd frames"),
                                              ("decompress", "does not decompress")])
@pytest.mark.parametrize("cut", sorted(CUT_COMPRESSORS))
def test_compressor_that_exits_0_with_a_cut_stream_is_rejected(published, dump_bucket, backup_defaults, tmp_path,
                                                              monkeypatch, capsys, cut, verify, expected):
    real = quickport_dump.find_program("zstd")
    _fake_program(tmp_path / "bin", "zstd",
                  f'case " $* " in *" -d "*) exec "{real}" "$@";; esac\n'
                  f'"{real}" "$@" | {{ {CUT_COMPRESSORS[cut]}; }}\nexit 0\n', monkeypatch)
    code = quickport_dump.main(dump_cli(dump_bucket, backup_defaults, SOURCE, "--verify", verify))
    assert (code, bucket_state(dump_bucket, SOURCE), expected in capsys.readouterr().err) == (1, published, True)


def test_a_header_frame_cut_short_is_rejected_even_when_the_stream_after_it_fills_the_gap(
        published, dump_bucket, backup_defaults, tmp_path, monkeypatch, capsys):
    # The dump's header is compressed as a frame of its own. Here that frame lacks its 4-byte content
    # checksum and the stream's output begins with 4 stray bytes: walked as one stream, the stray bytes
    # stand in for the checksum and every frame looks whole (CI once published such a cut header).
    real = quickport_dump.find_program("zstd")
    _fake_program(tmp_path / "bin", "zstd",
                  f'case " $* " in *" -d "*) exec "{real}" "$@";; esac\n'
                  'input=$(mktemp); cat >"$input"\n'
                  f'if head -c 512 "$input" | grep -q "MariaDB dump"; then "{real}" "$@" <"$input" | head -c -4\n'
                  f'else printf QPQP; "{real}" "$@" <"$input"; fi\n'
                  'rm -f "$input"; exit 0\n', monkeypatch)
    code = quickport_dump.main(dump_cli(dump_bucket, backup_defaults, SOURCE))
    error = capsys.readouterr().err
    assert (code, bucket_state(dump_bucket, SOURCE), "the compressed header frame is not whole zstd frames" in error) \
        == (1, published, True), error


def test_a_cut_compressor_stream_fails_a_files_archive_too(aws, dump_bucket, tmp_path, monkeypatch, capsys):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / ".env").write_bytes(os.urandom(300_000))
    real = quickport_dump.find_program("zstd")
    _fake_program(tmp_path / "bin", "zstd", f'"{real}" "$@" | {{ {CUT_COMPRESSORS["cut"]}; }}\nexit 0\n', monkeypatch)
    code = quickport_dump.main(["files", "--bucket", dump_bucket, "--prefix", "files", "--host", "app1",
                                "--path", str(tmp_path / "app")])
    assert (code, "not whole zstd frames" in capsys.readouterr().err, s3_keys(dump_bucket)) == (1, True, [])


def test_backup_user_without_mysql_proc_grant_is_refused(mariadb_server, dump_bucket, tmp_path, capsys):
    seed_database(mariadb_server, SOURCE)
    mariadb_server.sql("CREATE USER IF NOT EXISTS 'noproc'@'localhost' IDENTIFIED BY 'np';"
                       f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{SOURCE}`.* TO 'noproc'@'localhost';")
    defaults = mariadb_server.defaults_file("noproc", "np", tmp_path)
    code = quickport_dump.main(dump_cli(dump_bucket, defaults))
    assert (code, "GRANT SELECT ON mysql.proc" in capsys.readouterr().err, s3_keys(dump_bucket)) == (1, True, [])


def test_backup_user_without_trigger_grant_is_refused(mariadb_server, dump_bucket, tmp_path, capsys):
    seed_database(mariadb_server, SOURCE)
    mariadb_server.sql("CREATE USER IF NOT EXISTS 'notrig'@'localhost' IDENTIFIED BY 'nt';"
                       f"GRANT SELECT, SHOW VIEW, EVENT ON `{SOURCE}`.* TO 'notrig'@'localhost';"
                       "GRANT SELECT ON mysql.proc TO 'notrig'@'localhost';")
    defaults = mariadb_server.defaults_file("notrig", "nt", tmp_path)
    code = quickport_dump.main(dump_cli(dump_bucket, defaults))
    assert (code, "TRIGGER" in capsys.readouterr().err, s3_keys(dump_bucket)) == (1, True, [])


def test_failure_with_json_prints_one_json_document(mariadb_server, aws, backup_defaults, capsys):
    seed_database(mariadb_server, SOURCE)
    code = quickport_dump.main(dump_cli("qp-no-such-bucket", backup_defaults, SOURCE, "--json"))
    document = json.loads(capsys.readouterr().out)
    assert (code, document["ok"], document["exitCode"]) == (1, False, 1)
