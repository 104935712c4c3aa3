"""Pure pieces of quickport_dump and the drill's dump inspector: part sizing, counting, header and
trailer facts, the zstd frame walk, the stable command line."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import subprocess
import threading
import time
import zlib
from unittest.mock import ANY

import boto3
import pytest

from scripts.agent import quickport_dump as qd
from scripts.workflows.dump_inventory import DumpInspector

MIB = 1024 * 1024


def test_first_thousand_parts_are_8_mib():
    assert {qd.part_size_for(n) for n in range(1, 1001)} == {8 * MIB}


def test_part_size_doubles_after_every_thousand_parts():
    assert [qd.part_size_for(n) // MIB for n in (1001, 2001, 3001)] == [16, 32, 64]


def test_ten_thousand_parts_hold_more_than_the_5_tib_object_limit():
    assert sum(qd.part_size_for(n) for n in range(1, qd.MAX_PARTS + 1)) > 5 * 1024 ** 4


def test_no_part_exceeds_the_5_gib_part_limit():
    assert max(qd.part_size_for(n) for n in range(1, qd.MAX_PARTS + 1)) <= 5 * 1024 ** 3


def inspect(text: bytes, chunk: int = 7) -> DumpInspector:
    inspector = DumpInspector()
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


def test_dump_facts_read_the_server_version():
    assert qd.dump_facts(MYSQL_STYLE)["server_version"] == "8.0.36"


MARIADB_BINLOG_HEADER = (b"-- Server version\t10.11.19-MariaDB-log\n"
                         b"-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n--\n"
                         b"-- CHANGE MASTER TO MASTER_LOG_FILE='mariadb-bin.000012', MASTER_LOG_POS=1234;\n")


def test_dump_facts_read_the_binlog_position_from_the_header():
    facts = qd.dump_facts(MARIADB_BINLOG_HEADER)
    assert (facts["binlog_file"], facts["binlog_position"]) == ("mariadb-bin.000012", 1234)


def test_dump_facts_read_the_gtid_and_the_trailer_from_a_tail_cut_mid_line():
    tail = b"ng, cut)\n-- SET GLOBAL gtid_slave_pos='0-1-123,1-2-5';\n\n-- Dump completed on 2026-12-02  6:38:08\n"
    facts = qd.dump_facts(tail)
    assert (facts["gtid"], facts["last_line"].startswith(qd.DUMP_TRAILER)) == ("0-1-123,1-2-5", True)


def test_header_read_stops_at_the_first_statement_and_leaves_the_rest_in_the_pipe():
    read_end, write_end = os.pipe()
    os.write(write_end, MARIADB_BINLOG_HEADER + b"--\n\nDROP TABLE IF EXISTS `t`;\n")
    header = qd.read_header(read_end)
    os.write(write_end, b"CREATE TABLE `t` (\n")
    os.close(write_end)
    rest = os.read(read_end, 1024)
    os.close(read_end)
    assert (header.endswith(b"DROP TABLE IF EXISTS `t`;\n"), rest) == (True, b"CREATE TABLE `t` (\n")


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


def test_an_upload_aborted_while_it_is_still_being_created_leaves_nothing(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="qp-parts", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    creating = threading.Event()

    def slow_client():
        creating.set()
        time.sleep(0.5)    # boto3's import and the client, as on a cold start
        return boto3.client("s3")
    upload = qd.StreamingUpload(slow_client, "qp-parts", "k", "application/octet-stream", {})
    assert creating.wait(5)
    upload.abort()
    assert (upload.upload_id is not None, s3.list_multipart_uploads(Bucket="qp-parts").get("Uploads", [])) == (True, [])


def test_a_bucket_that_refuses_the_upload_fails_the_next_write_naming_it(aws):
    upload = qd.StreamingUpload(boto3.client("s3"), "qp-no-such-bucket", "k", "application/octet-stream", {})
    with pytest.raises(qd.BackupFailed, match="starting upload to s3://qp-no-such-bucket/k: NoSuchBucket"):
        for _ in range(4):
            upload.write(os.urandom(8 * MIB))
    assert upload.abort() is None


@pytest.mark.parametrize("argv, field", [
    (["db", "--database", "d", "--bucket", "qp-b", "--prefix", "mysql"], "--password-parameter"),
    (["db", "--database", "bad name", "--bucket", "qp-b", "--prefix", "mysql", "--defaults-file", "/x"], "--database"),
    (["db", "--database", "d", "--bucket", "qp-b", "--prefix", "mysql", "--defaults-file", "/x",
      "--compression", "xz"], "--compression"),
    (["db", "--database", "d", "--bucket", "qp-b", "--prefix", "mysql", "--defaults-file", "/x",
      "--priority", "fast"], "--priority"),
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


def test_multipart_upload_follows_s3s_checksum_protocol(aws):
    # Declared at CreateMultipartUpload, our CRC32 on every part, each part's CRC32 again at completion:
    # checked by the Stubber against S3's service model, then the same upload against the emulator.
    from botocore.stub import Stubber
    data = os.urandom(9 * MIB)
    stubbed = boto3.client("s3")
    stub = Stubber(stubbed)
    stub.add_response("create_multipart_upload", {"UploadId": "u1"}, {
        "Bucket": "qp-parts", "Key": "k", "ContentType": "application/octet-stream", "Metadata": {},
        "ChecksumAlgorithm": "CRC32"})
    crcs = []
    for number, part in ((1, data[:qd.part_size_for(1)]), (2, data[qd.part_size_for(1):])):
        crc = base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode()
        crcs.append(crc)
        stub.add_response("upload_part", {"ETag": f'"e{number}"'}, {
            "Bucket": "qp-parts", "Key": "k", "UploadId": "u1", "PartNumber": number, "Body": ANY,
            "ChecksumCRC32": crc})
    stub.add_response("complete_multipart_upload", {"ETag": '"done"'}, {
        "Bucket": "qp-parts", "Key": "k", "UploadId": "u1", "MultipartUpload": {"Parts": [
            {"PartNumber": 1, "ETag": '"e1"', "ChecksumCRC32": crcs[0]},
            {"PartNumber": 2, "ETag": '"e2"', "ChecksumCRC32": crcs[1]}]}})
    with stub:
        upload = qd.StreamingUpload(stubbed, "qp-parts", "k", "application/octet-stream", {})
        upload.write(data)
        assert upload.complete() == '"done"'
        stub.assert_no_pending_responses()

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="qp-parts", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    upload = qd.StreamingUpload(s3, "qp-parts", "k", "application/octet-stream", {})
    upload.write(data)
    upload.complete()
    assert s3.get_object(Bucket="qp-parts", Key="k")["Body"].read() == data


# --- ZstdFrames: the structure walk that proves a compressed stream whole without decompressing it --

def zstd(data: bytes, *options: str) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", "-1", *options], input=data, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def mixed_frame() -> bytes:
    """One zstd frame holding a raw block (random bytes), an RLE block (zeros) and compressed blocks."""
    rng = random.Random(12)
    return zstd(rng.randbytes(200_000) + b"\0" * 300_000 + b"INSERT INTO t VALUES (1,'abc');\n" * 3000, "--check")


def walk(stream, chunk: int = 0) -> int:
    """Frames in `stream` fed whole (chunk 0) or `chunk` bytes at a time; raises BackupFailed."""
    frames, view = qd.ZstdFrames(), memoryview(stream)
    step = chunk or len(view) or 1
    for start in range(0, len(view), step):
        frames.feed(view[start:start + step])
    frames.finish()
    return frames.frames


@pytest.mark.parametrize("chunk", [0, 1, 7, 65536])
def test_a_whole_zstd_frame_passes_however_it_is_chunked(mixed_frame, chunk):
    assert walk(mixed_frame, chunk) == 1


def test_frames_concatenate_and_skippable_frames_are_passed_over(mixed_frame):
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"notes"
    assert walk(zstd(b"-- header\n", "--check") + skippable + mixed_frame, 3) == 2


def test_every_cut_of_a_frame_fails(mixed_frame):
    view = memoryview(mixed_frame)
    passed = []
    for end in range(len(view)):
        with contextlib.suppress(qd.BackupFailed):
            walk(view[:end])
            passed.append(end)
    assert passed == []


@pytest.mark.parametrize("extra", [b"\0", b"\x28\xb5\x2f", b"\x28\xb5\x2f\xfd", b"\x28\xb5\x2f\xfd\x04", b"garbage!"])
def test_bytes_after_the_last_frame_fail(mixed_frame, extra):
    with pytest.raises(qd.BackupFailed, match="not whole zstd frames"):
        walk(mixed_frame + extra)


def test_a_frame_without_its_content_checksum_fails(mixed_frame):
    with pytest.raises(qd.BackupFailed, match="no content checksum"):
        walk(zstd(b"INSERT INTO t VALUES (1);\n" * 1000, "--no-check"))


def test_a_reserved_block_type_fails(mixed_frame):
    header = 4 + 1 + 1      # magic, descriptor, window descriptor (no dictionary, no content size)
    assert mixed_frame[4] & 0xE3 == 0, "the sample is expected to carry neither a content size nor a dictionary"
    corrupt = bytearray(mixed_frame)
    corrupt[header] |= 0b110   # block type 3
    with pytest.raises(qd.BackupFailed, match="reserved block type"):
        walk(bytes(corrupt))


def test_an_empty_stream_fails():
    with pytest.raises(qd.BackupFailed, match="no frame at all"):
        walk(b"")
