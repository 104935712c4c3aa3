"""The agent writes into a bucket with S3 Object Lock default retention, and what it wrote is locked.

S3 refuses any upload into a bucket with default retention that carries neither Content-MD5 nor an
x-amz-sdk-checksum-algorithm header (PutObject and every UploadPart). boto3 sends CRC32 by default;
the agent pins that so an instance environment with AWS_REQUEST_CHECKSUM_CALCULATION=when_required
cannot turn the nightly dump into a nightly failure. moto checks the header on PutObject (not on
UploadPart) and enforces the lock on DeleteObject with a VersionId: a real MariaDB dump, a real
files archive, a real moto server.

moto 5.2.5 does not apply a bucket's default retention to an object completed by
CompleteMultipartUpload (its complete_multipart_upload stores the key without a lock), so for the
dump and the tar archive themselves these tests show that the multipart upload succeeds into the
locked bucket, not that the object is locked; S3 applies default retention to every new version,
multipart ones included (docs/database.md, "Object Lock").
"""
from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.exceptions import ClientError

from scripts.agent import quickport_dump
from tests.fixtures.mariadb import s3_keys

HOST = "prod-web-1"


def dump_cli(bucket: str, defaults: str, database: str) -> list[str]:
    return ["db", "--database", database, "--bucket", bucket, "--prefix", "mysql", "--defaults-file", defaults]


def assert_every_version_locked(bucket: str, keys: list[str], days: int = 30) -> None:
    s3 = boto3.client("s3")
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days - 1)
    for key in keys:
        versions = [v for v in s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"] if v["Key"] == key]
        assert versions, key
        for version in versions:
            head = s3.head_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
            assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] > soon, key
            with pytest.raises(ClientError) as refused:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
            assert refused.value.response["Error"]["Code"] == "AccessDenied", key


@pytest.mark.slow
def test_multipart_dump_manifest_and_latest_json_are_published_and_locked(mariadb_server, locked_dump_bucket,
                                                                        backup_defaults, big_database):
    assert quickport_dump.main(dump_cli(locked_dump_bucket, backup_defaults, big_database)) == 0
    keys = s3_keys(locked_dump_bucket)
    [dump] = [k for k in keys if k.endswith(".sql.zst")]
    manifest = f"{dump}.manifest.json"
    assert sorted(keys) == sorted([dump, manifest, f"mysql/{big_database}/latest.json"])
    parts = boto3.client("s3").head_object(Bucket=locked_dump_bucket, Key=dump)["ETag"]
    assert parts.strip('"').endswith(tuple(f"-{n}" for n in range(2, 100)))  # a real multipart object
    assert_every_version_locked(locked_dump_bucket, [manifest, f"mysql/{big_database}/latest.json"])


def test_files_archive_and_its_manifest_are_published_and_locked(locked_dump_bucket, tmp_path):
    env = tmp_path / "var" / "www" / "quickport" / ".env"
    env.parent.mkdir(parents=True)
    env.write_text("APP_KEY=base64:abc\n")
    manifest = quickport_dump.archive_files(paths=[str(env)], bucket=locked_dump_bucket, prefix="files", host=HOST)
    keys = s3_keys(locked_dump_bucket)
    assert sorted(keys) == sorted([manifest["key"], manifest["key"] + ".manifest.json", f"files/{HOST}/latest.json"])
    assert_every_version_locked(locked_dump_bucket, [manifest["key"] + ".manifest.json", f"files/{HOST}/latest.json"])


def test_a_later_latest_json_leaves_the_earlier_one_locked_underneath(mariadb_server, locked_dump_bucket,
                                                                     backup_defaults, tmp_path):
    env = tmp_path / "app.env"
    env.write_text("A=1\n")
    for _ in range(2):
        quickport_dump.archive_files(paths=[str(env)], bucket=locked_dump_bucket, prefix="files", host=HOST)
    s3 = boto3.client("s3")
    versions = [v for v in s3.list_object_versions(Bucket=locked_dump_bucket, Prefix=f"files/{HOST}/latest.json")
                ["Versions"]]
    assert len(versions) == 2
    assert_every_version_locked(locked_dump_bucket, [f"files/{HOST}/latest.json"])


def test_uploads_carry_a_checksum_even_when_the_environment_asks_for_none(locked_dump_bucket, tmp_path,
                                                                          monkeypatch):
    # AWS_REQUEST_CHECKSUM_CALCULATION=when_required makes boto3 drop the checksum a locked bucket needs.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    env = tmp_path / "app.env"
    env.write_text("A=1\n")
    code = quickport_dump.main(["files", "--bucket", locked_dump_bucket, "--prefix", "files", "--path", str(env),
                                "--host", HOST])
    assert code == 0
    assert f"files/{HOST}/latest.json" in s3_keys(locked_dump_bucket)
