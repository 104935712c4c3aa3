"""Behaviour the layering restructure must keep (found by a review of that change): each test
failed on the restructured code before its fix."""
from __future__ import annotations

import io
import json
import shutil
import socket
from pathlib import Path

from botocore.response import StreamingBody

from scripts import cli
from scripts.agent import quickport_dump
from scripts.aws.session import new_client
from scripts.offline.stubs import PartialStubber

ROOT = Path(__file__).resolve().parent.parent
HOST = "prod-web-1"


class _Stalling(io.RawIOBase):
    """A response body whose every read times out, as a connection that stalls mid-download."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise socket.timeout("timed out")


def _archived(bucket: str, tmp_path: Path) -> dict:
    source = tmp_path / "src" / "var" / "www" / "quickport"
    source.mkdir(parents=True)
    (source / ".env").write_text("APP_KEY=base64:abc\n")
    return quickport_dump.archive_files(paths=[str(source / ".env")], bucket=bucket, prefix="files", host=HOST)


def test_a_download_that_keeps_stalling_is_one_line_exit_1_not_a_traceback(dump_bucket, backupctl, tmp_path):
    """s3transfer gives up with boto3's RetriesExceededError, which is no botocore error."""
    manifest = _archived(dump_bucket, tmp_path)
    s3 = new_client("s3", "ap-south-1")
    stubber = PartialStubber(s3, {"HeadObject", "GetObject"}, passthrough=True)
    stubber.add_response("head_object", {"ContentLength": manifest["bytes"], "ETag": '"x"'})
    for _ in range(5):   # s3transfer's download attempts
        stubber.add_response("get_object", {"Body": StreamingBody(_Stalling(), manifest["bytes"]),
                                            "ContentLength": manifest["bytes"]})
    stubber.activate()

    result = backupctl("files-restore", "--latest", "--bucket", dump_bucket, "--prefix", "files",
                       "--path", manifest["paths"][0], "--to", str(tmp_path / "out"),
                       "--log-file", str(tmp_path / "ops.jsonl"), clients={"s3": s3})

    last = result.err.strip().splitlines()[-1]
    assert result.code == 1 and "Traceback" not in result.err
    assert last == (f"backupctl files-restore: failed: downloading s3://{dump_bucket}/{manifest['key']}: "
                    f"Max Retries Exceeded")
    assert not (tmp_path / "out").exists()


def test_db_backup_with_every_value_given_needs_no_stack_file(backupctl, tmp_path):
    defaults = tmp_path / "client.cnf"
    defaults.write_text(f"[client]\nuser=backup\npassword=x\nsocket={tmp_path / 'no.sock'}\n")
    defaults.chmod(0o600)

    result = backupctl("db-backup", "--bucket", "qp-test-dumps", "--prefix", "mysql", "--database", "crm",
                       "--compression", "zstd", "--priority", "low", "--verify", "frames",
                       "--defaults-file", str(defaults),
                       "--config-file", str(tmp_path / "absent.yaml"), "--log-file", str(tmp_path / "ops.jsonl"))

    assert result.code == 1, result.err      # the server is not there: a failure, not a usage error
    assert "absent.yaml" not in result.err and "pre-flight" in result.err


def test_a_drill_of_the_wrong_database_is_exit_2_even_without_the_mariadb_client(aws, backupctl, tmp_path,
                                                                                 monkeypatch):
    s3 = new_client("s3", "ap-south-1")
    s3.create_bucket(Bucket="qp-drill", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    key = "mysql/other_db/x.sql.zst"
    s3.put_object(Bucket="qp-drill", Key=key + ".manifest.json", Body=json.dumps({
        "format": quickport_dump.MANIFEST_FORMAT, "key": key, "bytes": 1, "sha256": "0" * 64,
        "compression": "zstd", "database": "other_db"}).encode())
    bin_dir = tmp_path / "bin"   # a PATH without the mariadb client
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    result = backupctl("db-restore-drill", "--manifest", key + ".manifest.json", "--bucket", "qp-drill",
                       "--prefix", "mysql", "--database", "quickport", "--target-database", "scratch",
                       "--config-file", str(ROOT / "Pulumi.prod.yaml"), "--log-file", str(tmp_path / "ops.jsonl"))

    assert result.code == 2 and "--database 'quickport'" in result.err and "other_db" in result.err


def test_list_still_shows_the_snapshots_when_the_lock_api_breaks_unexpectedly(prod_instance, backupctl):
    from scripts.offline.standin import tag_snapshot
    sid = tag_snapshot(prod_instance, "prod-root-2026-11-20-before-php-upgrade")
    ec2 = new_client("ec2", "ap-south-1")

    def broken(model, **_):
        if model.name == "DescribeLockedSnapshots":
            raise RuntimeError("something nobody expected")
    ec2.meta.events.register("before-call.ec2.*", broken)

    result = backupctl("list", "--json", *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0
    doc = result.json()
    assert [s["SnapshotId"] for s in doc["snapshots"]] == [sid]
    assert doc["lockError"] == "DescribeLockedSnapshots not available: RuntimeError"


def test_a_closed_pipe_under_a_redirected_stdout_ends_quietly(monkeypatch):
    """The demo runs commands with stdout redirected to objects without a file descriptor."""
    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert cli.main(["preview", "--json", "--no-policies"]) == 141


def test_the_launcher_uses_its_own_checkout_from_any_directory(backupctl, tmp_path):
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  quickport-backup:instanceId: i-bogus\n")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")   # another project around the directory

    result = backupctl.launch("preview", "--no-policies", "--json", cwd=tmp_path, timeout=300)

    assert result.code == 0, result.err
    assert json.loads(result.out)["summary"]["create"] > 30


def test_policy_violations_come_in_the_same_order_every_time():
    """The engine registers resources in a different order on each run; the report must not follow."""
    import dataclasses

    from components.config import read_stack_file, stack_file
    from scripts.offline.engine import run_stack_program
    from scripts.offline.policy_gate import PolicyGate
    raw = read_stack_file(stack_file("prod", ROOT))
    resources = [dataclasses.replace(r, inputs={**r.inputs, "forceDestroy": True})
                 if r.type in ("aws:s3/bucket:Bucket", "aws:backup/vault:Vault") else r
                 for r in run_stack_program(raw, root=ROOT)]
    with PolicyGate(stack_config=raw, pack_dir=ROOT / "policies") as gate:
        forward = gate.evaluate(resources).violations
        backward = gate.evaluate(list(reversed(resources))).violations
    assert len({v.urn for v in forward if v.policy == "no-force-destroy"}) >= 2
    assert forward == backward
    assert [(v.policy, v.urn) for v in forward] == sorted((v.policy, v.urn) for v in forward)
