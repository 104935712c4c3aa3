"""backupctl restore-files (section 6.2) against the emulator. moto's SSM accepts commands but runs
nothing, so FakeAgent plays the helper's SSM agent: it runs the product's real shell script (lsblk,
mount and umount replaced by stand-ins) over a fixture tree and writes the stdout to S3 as the agent
would."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.errors import CommandError
from scripts.offline.stubs import PartialStubber
from scripts.workflows import restore_files
from tests.fixtures.aws_account import AZ, client
from tests.test_cli_restore_support import FakeAgent, account_state, describe_instance

FAST = ["--poll-seconds", "0.2", "--timeout", "1"]
ENV_TEXT = "APP_KEY=base64:restored-from-snapshot\nDB_PASSWORD=not-in-argv\n"


@pytest.fixture
def snapshot_tree(tmp_path) -> Path:
    """The files as they are inside the snapshot's filesystem."""
    root = tmp_path / "snapshot-fs"
    (root / "var/www/quickport").mkdir(parents=True)
    (root / "var/www/quickport/.env").write_text(ENV_TEXT)
    (root / "opt/gt06-server/conf").mkdir(parents=True)
    (root / "opt/gt06-server/server.js").write_text("// gt06 listener\n")
    (root / "opt/gt06-server/conf/ports.json").write_text('{"tcp": 5023}\n')
    return root


def run_files(backupctl, prod, *args, ec2=None, ssm=None):
    clients = {k: v for k, v in (("ec2", ec2), ("ssm", ssm)) if v is not None}
    result = backupctl("restore-files", "--snapshot", prod.snapshot_id, *args, *prod.common_args(), clients=clients)
    return result.code, result.out, result.err


def created_by_run(ec2, run_id: str):
    """Instances and volumes tagged with the run: (id, state) pairs."""
    flt = [{"Name": "tag:quickport:restore-run", "Values": [run_id]}]
    instances = [(i["InstanceId"], i["State"]["Name"])
                 for r in ec2.describe_instances(Filters=flt)["Reservations"] for i in r["Instances"]]
    volumes = [(v["VolumeId"], v["State"]) for v in ec2.describe_volumes(Filters=flt)["Volumes"]]
    return instances, volumes


def failed_restore(backupctl, prod, tmp_path, path, *, ec2=None, ssm=None) -> dict:
    """Restore `path` to tmp_path/o with --yes: the run must exit 1 with its helper terminated and its
    temporary volume deleted. Its --json result."""
    code, out, _ = run_files(backupctl, prod, "--path", path, "--to", str(tmp_path / "o"), "--yes", "--json", *FAST,
                             ec2=ec2, ssm=ssm)
    result = json.loads(out)
    instances, volumes = created_by_run(client("ec2"), result["runId"])
    assert code == 1
    assert [s for _, s in instances] == ["terminated"] and volumes == []
    return result


def restore(backupctl, prod, tmp_path, snapshot_tree, *extra, fstype="ext4"):
    ssm = client("ssm")
    agent = FakeAgent(ssm, tmp_path / "agent", snapshot_tree, fstype=fstype)
    dest = tmp_path / "out"
    code, out, err = run_files(backupctl, prod, "--path", "/var/www/quickport/.env", "/opt/gt06-server",
                               "--to", str(dest), "--yes", "--json", *FAST, *extra, ssm=ssm)
    return code, json.loads(out), dest, agent, err


# --- the plan -----------------------------------------------------------------------------------------

def test_files_plan_without_yes_changes_nothing(prod, backupctl, tmp_path):
    ec2 = client("ec2")
    before = account_state(ec2)
    code, out, _ = run_files(backupctl, prod, "--path", "/var/www/quickport/.env", "--to", str(tmp_path / "out"))
    assert code == 0
    assert "re-run with --yes" in out
    assert account_state(ec2) == before
    assert not (tmp_path / "out").exists()


def test_files_plan_uses_production_az_subnet_ami_and_profile(prod, backupctl, tmp_path):
    code, out, _ = run_files(backupctl, prod, "--path", "/etc/hosts", "--to", str(tmp_path / "o"), "--json")
    plan = json.loads(out)["plan"]
    assert code == 0
    assert (plan["availabilityZone"], plan["subnet"], plan["helper"]["ami"], plan["helper"]["profile"]) == \
           (AZ, prod.subnet_id, prod.image_id, {"Arn": prod.profile_arn})


def test_relative_path_is_a_usage_error(prod, backupctl, tmp_path):
    code, _, err = run_files(backupctl, prod, "--path", "var/www/quickport/.env", "--to", str(tmp_path / "o"))
    assert code == 2
    assert "--path 'var/www/quickport/.env': must be an absolute path" in err


def test_path_with_dotdot_is_a_usage_error(prod, backupctl, tmp_path):
    code, _, err = run_files(backupctl, prod, "--path", "/var/www/../../etc/shadow", "--to", str(tmp_path / "o"))
    assert code == 2
    assert "without '..'" in err


def test_existing_non_empty_destination_is_refused(prod, backupctl, tmp_path):
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    code, _, err = run_files(backupctl, prod, "--path", "/etc/hosts", "--to", str(dest), "--yes")
    assert code == 2
    assert (dest / "keep.txt").read_text() == "mine"
    assert "not an empty directory" in err


def test_unknown_snapshot_for_files_is_a_usage_error(prod, backupctl, tmp_path):
    result = backupctl("restore-files", "--snapshot", "snap-0123456789abcdef0", "--path", "/etc/hosts",
                       "--to", str(tmp_path / "o"), *prod.common_args())
    assert result.code == 2
    assert "--snapshot 'snap-0123456789abcdef0': no snapshot" in result.err


def test_attach_to_the_production_instance_is_refused(prod, backupctl, tmp_path):
    code, out, _ = run_files(backupctl, prod, "--path", "/etc/hosts", "--to", str(tmp_path / "o"),
                             "--attach-to", prod.instance_id, "--yes")
    assert code == 1
    assert "is the production instance" in out


# --- end to end ---------------------------------------------------------------------------------------

def test_restored_files_have_the_snapshot_content(prod, backupctl, tmp_path, snapshot_tree):
    code, result, dest, _, err = restore(backupctl, prod, tmp_path, snapshot_tree)
    assert code == 0, result.get("error")
    assert (dest / "var/www/quickport/.env").read_text() == ENV_TEXT
    assert (dest / "opt/gt06-server/conf/ports.json").read_text() == '{"tcp": 5023}\n'


def test_volume_is_mounted_read_only(prod, backupctl, tmp_path, snapshot_tree):
    _, _, _, agent, _ = restore(backupctl, prod, tmp_path, snapshot_tree)
    assert agent.mount_log.read_text().split()[:5] == ["-t", "ext4", "-o", "ro", "/dev/nvme1n1p1"]


def test_xfs_volume_is_mounted_with_nouuid(prod, backupctl, tmp_path, snapshot_tree):
    _, _, _, agent, _ = restore(backupctl, prod, tmp_path, snapshot_tree, fstype="xfs")
    assert agent.mount_log.read_text().split()[:4] == ["-t", "xfs", "-o", "ro,nouuid"]


def test_helper_and_temporary_volume_are_gone_after_success(prod, backupctl, tmp_path, snapshot_tree):
    ec2 = client("ec2")
    code, result, _, _, _ = restore(backupctl, prod, tmp_path, snapshot_tree)
    instances, volumes = created_by_run(ec2, result["runId"])
    assert code == 0
    assert [state for _, state in instances] == ["terminated"]
    assert [v for v, _ in volumes if v == result["created"]["volume_id"]] == []


def test_helper_output_is_deleted_from_the_bucket(prod, backupctl, tmp_path, snapshot_tree):
    _, result, _, _, _ = restore(backupctl, prod, tmp_path, snapshot_tree)
    listed = client("s3").list_objects_v2(Bucket=prod.bucket, Prefix="restores/")
    assert result["ok"]
    assert listed.get("Contents", []) == []


def test_production_instance_and_its_volumes_are_untouched(prod, backupctl, tmp_path, snapshot_tree):
    ec2 = client("ec2")
    before = describe_instance(ec2, prod.instance_id)
    restore(backupctl, prod, tmp_path, snapshot_tree)
    after = describe_instance(ec2, prod.instance_id)
    assert (after["State"], after["BlockDeviceMappings"]) == (before["State"], before["BlockDeviceMappings"])


def test_path_missing_from_snapshot_fails_naming_it_and_cleans_up(prod, backupctl, tmp_path, snapshot_tree):
    ssm = client("ssm")
    FakeAgent(ssm, tmp_path / "agent", snapshot_tree)
    result = failed_restore(backupctl, prod, tmp_path, "/etc/quickport/missing.conf", ssm=ssm)
    assert "not in the snapshot: /etc/quickport/missing.conf" in result["error"]


# --- failures: cleanup never touches what existed before -------------------------------------------------

def test_failure_without_agent_output_still_terminates_helper_and_deletes_volume(prod, backupctl, tmp_path):
    failed_restore(backupctl, prod, tmp_path, "/etc/hosts")
    assert not (tmp_path / "o").exists()


def test_failed_attach_cleans_up_and_keeps_pre_existing_resources(prod, backupctl, tmp_path):
    ec2 = client("ec2")
    spare = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
    stub = PartialStubber(ec2, {"AttachVolume"}, passthrough=True)
    stub.add_client_error("attach_volume", "VolumeInUse", "attachment point /dev/sdf is already in use", 400)
    stub.activate()
    failed_restore(backupctl, prod, tmp_path, "/etc/hosts", ec2=ec2)
    remaining = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    assert {spare, prod.root_volume_id} <= remaining
    assert describe_instance(ec2, prod.instance_id)["State"]["Name"] == "running"


def test_attach_to_existing_helper_detaches_and_deletes_only_the_temporary_volume(prod, backupctl, tmp_path,
                                                                                    snapshot_tree):
    ec2 = client("ec2")
    helper = ec2.run_instances(ImageId=prod.image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                               SubnetId=prod.subnet_id)["Instances"][0]["InstanceId"]
    code, result, dest, _, _ = restore(backupctl, prod, tmp_path, snapshot_tree, "--attach-to", helper)
    helper_now = describe_instance(ec2, helper)
    assert code == 0, result
    assert helper_now["State"]["Name"] == "running"
    assert [m["DeviceName"] for m in helper_now["BlockDeviceMappings"]] == ["/dev/sda1"]
    assert created_by_run(ec2, result["runId"]) == ([], [])
    assert (dest / "var/www/quickport/.env").exists()


# --- what SSM keeps: the archive is encrypted to the run's one-time key ----------------------------------

def test_archive_in_the_ssm_output_cannot_be_read_without_the_runs_key(prod, backupctl, tmp_path, snapshot_tree):
    _, _, _, agent, _ = restore(backupctl, prod, tmp_path, snapshot_tree)
    stdout = agent.results[-1].stdout.decode("ascii")
    with pytest.raises(CommandError, match="could not be decrypted"):
        restore_files.decode_restore_output(stdout, restore_files.new_transport_key())


def test_damaged_archive_is_rejected(prod, backupctl, tmp_path, snapshot_tree):
    ssm = client("ssm")
    agent = FakeAgent(ssm, tmp_path / "agent", snapshot_tree)

    def damage(http_response=None, parsed=None, **_):
        key = next(k for k in (o["Key"] for o in client("s3").list_objects_v2(
            Bucket=prod.bucket, Prefix="restores/").get("Contents", [])) if k.endswith("/stdout"))
        body = client("s3").get_object(Bucket=prod.bucket, Key=key)["Body"].read().decode()
        lines = body.splitlines()
        i = lines.index(restore_files.END_MARK) - 1   # inside the ciphertext
        lines[i] = ("B" if lines[i][0] != "B" else "C") + lines[i][1:]
        client("s3").put_object(Bucket=prod.bucket, Key=key, Body="\n".join(lines) + "\n")

    ssm.meta.events.register("after-call.ssm.SendCommand", damage)  # after the agent has written
    code, out, _ = run_files(backupctl, prod, "--path", "/var/www/quickport/.env", "--to", str(tmp_path / "o"),
                             "--yes", "--json", *FAST, ssm=ssm)
    assert agent.results
    assert code == 1
    assert "damaged" in json.loads(out)["error"] or "could not be decrypted" in json.loads(out)["error"]
    assert not (tmp_path / "o").exists()


def test_failed_ssm_command_reports_its_stderr_and_cleans_up(prod, backupctl, tmp_path):
    ssm = client("ssm")
    stub = PartialStubber(ssm, {"GetCommandInvocation"}, passthrough=True)
    failed = {"CommandId": "c0ffee00-0000-4000-8000-000000000000", "Status": "Failed", "ResponseCode": 32,
              "StandardErrorContent": "mount: /mnt/quickport-restore.x: wrong fs type, bad option\n"}
    for _ in range(2):   # the command_executed waiter's look, then ours
        stub.add_response("get_command_invocation", failed)
    stub.activate()
    result = failed_restore(backupctl, prod, tmp_path, "/etc/hosts", ssm=ssm)
    assert "ended Failed (exit 32): mount: /mnt/quickport-restore.x: wrong fs type" in result["error"]


def test_missing_helper_ami_blocks_the_plan_before_anything_is_created(prod, backupctl, tmp_path):
    ec2 = client("ec2")
    before = account_state(ec2)
    code, out, _ = run_files(backupctl, prod, "--path", "/etc/hosts", "--to", str(tmp_path / "o"),
                             "--helper-ami", "ami-0123456789abcdef0", "--yes")
    assert code == 1
    assert "helper AMI ami-0123456789abcdef0 does not exist" in out
    assert account_state(ec2) == before
