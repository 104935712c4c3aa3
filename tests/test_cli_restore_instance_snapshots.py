"""restore-instance: which snapshot a --snapshot reference may name (only the target instance's own,
unless --allow-foreign-snapshot), and the operations log of a restore that is interrupted or whose
rollback fails. The emulator answers; replace-root tasks (not in moto) through the same stub as
tests/test_cli_restore_instance.py."""
from __future__ import annotations

import json

from components import tags as restoreops
from tests.fixtures.aws_account import AZ, client
from tests.test_cli_restore_instance import FAST, interrupted_detach_restore, no_replace_root_tasks
from tests.test_cli_restore_support import account_state

OTHER_INSTANCE = "i-0fedcba9876543210"


def _foreign_snapshot(prod, name: str) -> str:
    """What `guard --action X --instance-id OTHER` leaves: a snapshot of OTHER's root with the same Name."""
    ec2 = client("ec2")
    volume = ec2.create_volume(AvailabilityZone=AZ, Size=8)["VolumeId"]
    tags = {"Name": name, "Strategy": "quickport-backup", "Instance": OTHER_INSTANCE, "Volume": volume}
    return ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": k, "Value": v} for k, v in tags.items()]}])["SnapshotId"]


def _plan(backupctl, prod, ref: str, *extra: str):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    return backupctl("restore-instance", "--snapshot", ref, "--method", "detach", "--json", *extra,
                     *prod.common_args(), clients={"ec2": ec2})


def test_a_name_resolves_to_this_instances_snapshot_not_another_instances_newer_one(prod, backupctl):
    _foreign_snapshot(prod, prod.snapshot_name)     # newer, same Name

    result = _plan(backupctl, prod, prod.snapshot_name)

    assert result.code == 0, result.err
    assert result.json()["plan"]["snapshot"]["id"] == prod.snapshot_id
    assert result.json()["plan"]["foreignSnapshot"] is None


def test_a_name_only_another_instance_has_is_exit_2_naming_it(prod, backupctl):
    foreign = _foreign_snapshot(prod, "prod-root-2026-12-01-before-other-work")

    result = _plan(backupctl, prod, "prod-root-2026-12-01-before-other-work")

    assert result.code == 2
    assert foreign in result.err and OTHER_INSTANCE in result.err and "--allow-foreign-snapshot" in result.err


def test_a_foreign_snapshot_by_id_is_refused_without_the_flag_and_changes_nothing(prod, backupctl):
    foreign = _foreign_snapshot(prod, "prod-root-2026-12-01-before-other-work")
    before = account_state(client("ec2"))

    result = _plan(backupctl, prod, foreign, "--yes")

    assert result.code == 2
    assert "--allow-foreign-snapshot" in result.json()["error"]
    assert account_state(client("ec2")) == before


def test_allow_foreign_snapshot_shows_it_loudly_in_the_plan(prod, backupctl):
    foreign = _foreign_snapshot(prod, "prod-root-2026-12-01-before-other-work")
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)

    result = backupctl("restore-instance", "--snapshot", foreign, "--method", "detach", "--allow-foreign-snapshot",
                       *prod.common_args(), clients={"ec2": ec2})

    assert result.code == 0, result.err
    assert result.out.startswith(f"!!! FOREIGN SNAPSHOT (--allow-foreign-snapshot): {foreign} belongs to instance "
                                 f"{OTHER_INSTANCE}")


def test_two_snapshots_of_this_instance_with_one_name_are_exit_2_listing_both(prod, backupctl):
    ec2 = client("ec2")
    second = ec2.create_snapshot(VolumeId=prod.root_volume_id, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "Name", "Value": prod.snapshot_name}, {"Key": "Instance", "Value": prod.instance_id}]}])["SnapshotId"]

    result = _plan(backupctl, prod, prod.snapshot_name)

    assert result.code == 2
    assert prod.snapshot_id in result.err and second in result.err and "give one by id" in result.err


def test_a_snapshot_of_a_former_root_is_this_instances_own(prod, backupctl):
    ec2 = client("ec2")
    # A restore replaced the root: the snapshot is now of a former root volume (recorded in its tags).
    ec2.stop_instances(InstanceIds=[prod.instance_id])
    ec2.detach_volume(VolumeId=prod.root_volume_id, InstanceId=prod.instance_id)
    new_root = ec2.create_volume(AvailabilityZone=AZ, Size=8)["VolumeId"]
    ec2.attach_volume(VolumeId=new_root, InstanceId=prod.instance_id, Device=prod.root_device)

    result = _plan(backupctl, prod, prod.snapshot_name)

    assert result.code == 0, result.err
    assert result.json()["plan"]["snapshot"]["id"] == prod.snapshot_id
    assert result.json()["plan"]["foreignSnapshot"] is None


# --- the operations log (item 13) ----------------------------------------------------------------------

def _restore_events(prod) -> list[dict]:
    return [json.loads(line) for line in prod.log_file.read_text().splitlines()
            if json.loads(line)["event"].startswith("restore-instance-") and
            json.loads(line)["event"] != "restore-instance-safety-snapshot"]


def test_a_failed_rollback_names_the_unused_new_volume(prod, backupctl):
    ec2 = client("ec2")
    stub = no_replace_root_tasks(ec2)
    stub.add_client_error("attach_volume", "IncorrectState", "vol is busy", 400)
    stub.add_client_error("attach_volume", "IncorrectState", "still busy", 400)

    result = backupctl("restore-instance", "--snapshot", prod.snapshot_id, "--method", "detach", "--yes", *FAST,
                       *prod.common_args(), clients={"ec2": ec2})

    [new] = [v["VolumeId"] for v in client("ec2").describe_volumes(Filters=[
        {"Name": f"tag:{restoreops.RESTORED_FROM_TAG}", "Values": [prod.snapshot_id]}])["Volumes"]]
    assert result.code == 1
    assert f"the new volume {new}" in result.out and f"aws ec2 delete-volume --volume-id {new}" in result.out
    end = _restore_events(prod)[-1]
    assert (end["event"], end["new_volume_id"]) == ("restore-instance-failed", new)


def test_ctrl_c_during_a_restore_logs_restore_instance_interrupted(prod, backupctl):
    (code, _, _), _ = interrupted_detach_restore(backupctl, prod)

    assert code == 130
    assert [e["event"] for e in _restore_events(prod)] == ["restore-instance-started", "restore-instance-interrupted"]
