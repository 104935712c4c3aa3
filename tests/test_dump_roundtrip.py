"""Round trip on a real MariaDB: dump to S3 (moto), restore with the drill, compare with the source."""
from __future__ import annotations

import json

import boto3
import pytest

from scripts import quickport_dump
from tests.fixtures.mariadb import BACKUP_PASSWORD, SEED_TABLES, seed_database

BUCKET = "qp-dumps"


@pytest.fixture
def bucket(aws):
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    return BUCKET


def test_dump_manifest_counts_rows_per_table(mariadb_server, bucket, tmp_path):
    seed_database(mariadb_server, "crm_rt")
    defaults = mariadb_server.defaults_file("backup", BACKUP_PASSWORD, tmp_path)
    manifest = quickport_dump.dump_database(database="crm_rt", bucket=bucket, prefix="mysql",
                                            defaults_file=defaults)
    assert manifest["tables"] == SEED_TABLES
