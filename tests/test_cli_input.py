"""Hostile input to backupctl (issue 9, items 7, 9, 10): every refusal is one line naming the field,
exit 2 for usage or configuration, exit 1 for bad data found in AWS, and with --json one JSON document
on stdout, also for the errors argparse itself catches."""
from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from components.config import stack_file
from scripts.agent import quickport_dump

IID = "i-0123456789abcdef0"


def _one_line_json(result, code: int, *words: str) -> dict:
    """The contract: exit `code`, one `backupctl ...` line on stderr, one JSON document on stdout."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    document = json.loads(result.out)
    assert (result.code, len(lines), lines[0].startswith("backupctl"), document["ok"], document["exitCode"]) == \
        (code, 1, True, False, code), result.err
    assert all(w in lines[0] and w in document["error"] for w in words), (lines, document)
    return document


# --- item 9: usage errors argparse catches still print one JSON document ------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["snapshot", "--action", "-php"], "--action"),
    (["snapshot", "--action", "php-upgrade", "--lock-days", "0"], "--lock-days"),
    (["snapshot", "--action", "php-upgrade", "--lock", "weird"], "--lock"),
    (["snapshot", "--action", "php-upgrade", "--timeout", "0"], "--timeout"),
    (["cost", "--usd-inr", "nan"], "--usd-inr"),
])
def test_a_usage_error_caught_by_argparse_is_one_json_document_with_json(backupctl, tmp_path, argv, flag):
    result = backupctl(*argv, "--json", "--log-file", str(tmp_path / "ops.jsonl"))
    document = _one_line_json(result, 2, flag)
    assert document["command"] == argv[0]


def test_json_after_the_guard_separator_is_the_command_s_not_ours(backupctl, tmp_path):
    result = backupctl("guard", "--action", "php-upgrade", "--lock-days", "0", "--", "echo", "--json")
    assert (result.code, result.out) == (2, "")


# --- item 10: argument types -------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["list", "--region", "ap south 1"], "--region"),
    (["list", "--region", "ap-south-\u0661"], "--region"),           # an Arabic-Indic digit one
    (["list", "--instance-id", "bogus;id"], "--instance-id"),
    (["list", "--instance-id", ""], "--instance-id"),                # "$UNSET_VAR": never production
    (["audit", "--instance-id", ""], "--instance-id"),
    (["db-backup", "--port", "99999999"], "--port"),
    (["snapshot", "--action", "php-upgrade", "--lock", "governance", "--lock-days", "3_0"], "--lock-days"),
    (["snapshot", "--action", "php-upgrade", "--lock", "governance", "--lock-days", "\u0663\u0660"], "--lock-days"),
    (["lock", "snap-0123456789abcdef0", "--mode", "governance", "--days", "\u0663\u0660"], "--days"),
    (["cost", "--usd-inr", "8_4"], "--usd-inr"),
])
def test_a_malformed_argument_is_exit_2_naming_the_flag(backupctl, tmp_path, argv, flag):
    _one_line_json(backupctl(*argv, "--json", "--log-file", str(tmp_path / "ops.jsonl")), 2, flag)


def test_an_empty_instance_id_reaches_no_aws_call(backupctl, aws, tmp_path):
    # A moto account is there to answer: the refusal must come before any call, not after a fallback.
    result = backupctl("list", "--instance-id", "", "--log-file", str(tmp_path / "ops.jsonl"))
    assert (result.code, "--instance-id ''" in result.err) == (2, True)


def test_a_malformed_region_in_the_environment_is_exit_2_naming_it(backupctl, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "ap south 1")
    result = backupctl("list", "--instance-id", IID, "--json", "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 2, "AWS_REGION")


def test_files_restore_to_an_existing_file_fails_before_the_download(backupctl, dump_bucket, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("not a directory\n")
    # No archive exists at all: a check after the download would fail on the missing latest.json.
    result = backupctl("files-restore", "--latest", "--bucket", dump_bucket, "--prefix", "files", "--host", "web",
                       "--path", "/etc/app.env", "--to", str(target), "--json",
                       "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 2, "--to", "not a directory")


def test_files_restore_to_a_path_under_a_file_fails_before_the_download(backupctl, dump_bucket, tmp_path):
    (tmp_path / "a-file").write_text("not a directory\n")
    result = backupctl("files-restore", "--latest", "--bucket", dump_bucket, "--prefix", "files", "--host", "web",
                       "--path", "/etc/app.env", "--to", str(tmp_path / "a-file" / "out"), "--json",
                       "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 2, "--to", "not a directory")


# --- item 7: a malformed endpoint, config value or manifest is one line ------------------------------

@pytest.mark.parametrize("endpoint, reason", [
    ("not a url", "http"), ("http://[::1", "Invalid IPv6 URL"), ("http://127.0.0.1:99999", "Port out of range")])
def test_a_malformed_endpoint_url_is_one_line_exit_2(backupctl, aws, tmp_path, monkeypatch, endpoint, reason):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    result = backupctl("list", "--instance-id", IID, "--json", "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 2, "AWS_ENDPOINT_URL", reason)


def test_a_malformed_per_service_endpoint_url_is_named(backupctl, aws, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://[::1")
    result = backupctl("list", "--instance-id", IID, "--json", "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 2, "AWS_ENDPOINT_URL_EC2")


def test_a_numeric_aws_region_in_the_config_is_one_line_exit_2(backupctl, tmp_path):
    config = tmp_path / "Pulumi.x.yaml"
    config.write_text(stack_file("prod").read_text().replace("aws:region: ap-south-1", "aws:region: 5"))
    result = backupctl("cost", "--config-file", str(config), "--json", "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 2, "aws:region = 5")


def _publish_manifest(bucket: str, **fields) -> str:
    """A manifest (and its object) as the dump script publishes them, with `fields` overridden."""
    body = b"not really zstd"
    key = "mysql/crm/2026/11/26/crm-20261126T000000Z.sql.zst"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    manifest = {"key": key, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                "compression": "zstd", "database": "crm", "tables": {"invoices": 3}, "objects": {},
                "finished_at": "2026-11-26T00:00:00Z", **fields}
    return quickport_dump.publish(s3, bucket, "mysql/crm/latest.json", manifest)


@pytest.mark.parametrize("fields, named", [
    ({"bytes": "lots"}, "bytes 'lots'"), ({"tables": None}, "tables None"), ({"bytes": True}, "bytes True"),
    ({"sha256": 7}, "sha256 7"), ({"objects": {"views": None}}, "objects")])
def test_a_drill_of_a_wrong_typed_manifest_is_one_line_exit_1(backupctl, dump_bucket, tmp_path, fields, named):
    manifest_key = _publish_manifest(dump_bucket, **fields)
    result = backupctl("db-restore-drill", "--manifest", manifest_key, "--bucket", dump_bucket, "--prefix", "mysql",
                       "--target-database", "scratch", "--json", "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 1, manifest_key, named)


@pytest.mark.parametrize("files", [None, "all", [None], [{"path": "/etc/x", "type": "file", "size": "big"}]])
def test_a_files_restore_of_a_wrong_typed_manifest_is_one_line_exit_1(backupctl, dump_bucket, tmp_path, files):
    manifest_key = _publish_manifest(dump_bucket, files=files)
    result = backupctl("files-restore", "--manifest", manifest_key, "--bucket", dump_bucket, "--prefix", "files",
                       "--path", "/etc/x", "--to", str(tmp_path / "out"), "--json",
                       "--log-file", str(tmp_path / "ops.jsonl"))
    _one_line_json(result, 1, "files")
