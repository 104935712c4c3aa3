"""Pure pieces of quickport_dump: part sizing, the dump inspector, the stable command line."""
from __future__ import annotations

import hashlib
import os

import boto3
import pytest

from scripts.agent import quickport_dump as qd

MIB = 1024 * 1024


def test_first_thousand_parts_are_8_mib():
    assert {qd.part_size_for(n) for n in range(1, 1001)} == {8 * MIB}


def test_part_size_doubles_after_every_thousand_parts():
    assert [qd.part_size_for(n) // MIB for n in (1001, 2001, 3001)] == [16, 32, 64]


def test_ten_thousand_parts_hold_more_than_the_5_tib_object_limit():
    assert sum(qd.part_size_for(n) for n in range(1, qd.MAX_PARTS + 1)) > 5 * 1024 ** 4


def test_no_part_exceeds_the_5_gib_part_limit():
    assert max(qd.part_size_for(n) for n in range(1, qd.MAX_PARTS + 1)) <= 5 * 1024 ** 3


def inspect(text: bytes, chunk: int = 7) -> qd.DumpInspector:
    inspector = qd.DumpInspector()
    for i in range(0, len(text), chunk):
        inspector.feed(text[i:i + chunk])
    inspector.finish()
    return inspector


MYSQL_STYLE = (b"-- Server version\t8.0.36\n"
               b"CREATE TABLE `t` (\n  `a` int\n);\n"
               b"INSERT INTO `t` VALUES (1,'x),(y'),(2,'it\\'s \\\\'),(3,NULL);\n"
               b"INSERT INTO `t` VALUES (4,'),(\\n;\\n(');\n"
               b"CREATE TABLE `empty` (\n  `a` int\n);\n"
               b"-- Dump completed on 2026-11-26 10:00:00\n")


def test_inspector_counts_rows_of_single_line_inserts_with_tricky_strings():
    assert inspect(MYSQL_STYLE).tables == {"t": 4, "empty": 0}


def test_inspector_reads_the_server_version():
    assert inspect(MYSQL_STYLE).server_version == "8.0.36"


def test_inspector_flags_a_stream_without_its_trailer():
    assert inspect(MYSQL_STYLE.rsplit(b"-- Dump completed", 1)[0]).completed is False


def test_inspector_flags_a_stream_cut_inside_an_insert():
    assert inspect(MYSQL_STYLE + b"INSERT INTO `t` VALUES (5,'a'),\n").completed is False


def test_stream_larger_than_a_part_uploads_in_parts_with_its_hash(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="qp-parts", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    data = os.urandom(20 * MIB)
    upload = qd.StreamingUpload(s3, "qp-parts", "k", "application/octet-stream", {})
    for i in range(0, len(data), 3 * MIB):
        upload.write(data[i:i + 3 * MIB])
    upload.complete()
    body = s3.get_object(Bucket="qp-parts", Key="k")["Body"].read()
    assert (upload.parts, upload.sha256.hexdigest(), hashlib.sha256(body).hexdigest()) == \
        (3, hashlib.sha256(data).hexdigest(), hashlib.sha256(data).hexdigest())


def test_aborted_upload_leaves_no_object_and_no_pending_upload(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="qp-parts", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    upload = qd.StreamingUpload(s3, "qp-parts", "k", "application/octet-stream", {})
    upload.write(os.urandom(9 * MIB))
    upload.abort()
    assert (s3.list_objects_v2(Bucket="qp-parts").get("KeyCount"),
            s3.list_multipart_uploads(Bucket="qp-parts").get("Uploads", [])) == (0, [])


@pytest.mark.parametrize("argv, field", [
    (["db", "--database", "d", "--bucket", "qp-b", "--prefix", "mysql"], "--password-parameter"),
    (["db", "--database", "bad name", "--bucket", "qp-b", "--prefix", "mysql", "--defaults-file", "/x"], "--database"),
    (["db", "--database", "d", "--bucket", "qp-b", "--prefix", "mysql", "--defaults-file", "/x",
      "--compression", "xz"], "--compression"),
    (["files", "--bucket", "qp-b", "--prefix", "files"], "--path"),
])
def test_bad_command_line_exits_2_naming_the_field(argv, field, capsys):
    with pytest.raises(SystemExit) as exit_:
        qd.main(argv)
    assert (exit_.value.code, field in capsys.readouterr().err) == (2, True)


def test_relative_files_path_exits_2(capsys):
    code = qd.main(["files", "--bucket", "qp-b", "--prefix", "files", "--path", "relative/path"])
    assert (code, "--path 'relative/path'" in capsys.readouterr().err) == (2, True)


MARIADB_STYLE = (b"CREATE TABLE `t` (\n  `a` int\n);\n"
                 b"INSERT INTO `t` VALUES\n(1,'x),(y'),\n(2,'a\\nb),\\n(c'),\n(3,NULL);\n"
                 b"INSERT INTO `t` VALUES\n(4,'),(');\n"
                 b"-- Dump completed on 2026-11-26 10:00:00\n")


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
def test_inspector_counts_rows_of_one_row_per_line_inserts_at_any_chunking(chunk):
    assert inspect(MARIADB_STYLE, chunk).tables == {"t": 4}


def test_retries_default_to_six_attempts(monkeypatch):
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert qd.s3_client("ap-south-1").meta.config.retries["total_max_attempts"] == 6


def test_aws_max_attempts_overrides_the_retry_default(monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    assert qd.s3_client("ap-south-1").meta.config.retries["total_max_attempts"] == 2


def test_user_with_a_newline_is_refused_naming_the_user_option():
    # A newline would let the value add its own options to the [client] file.
    with pytest.raises(qd.UsageProblem, match="^--user: must not contain newline"):
        with qd.client_defaults_file("backup\npassword=x", "secret"):
            pass
