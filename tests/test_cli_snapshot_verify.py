"""`backupctl verify`: the section 8 checklist re-run on an existing snapshot (the emulator)."""
from __future__ import annotations

import datetime as dt
import time

TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()


def _take(backupctl, inst, action="php-upgrade") -> dict:
    result = backupctl("snapshot", "--action", action, "--json", *inst.common_args())
    assert result.code == 0, result.err
    return result.json()["snapshot"]


def test_verify_by_name_passes_for_a_snapshot_of_the_current_root(prod_instance, backupctl):
    _take(backupctl, prod_instance)

    result = backupctl("verify", f"prod-root-{TODAY}-before-php-upgrade", *prod_instance.common_args())

    assert result.code == 0
    assert "checklist passed" in result.out


def test_verify_by_id_reports_the_snapshot_and_checklist_as_json(prod_instance, backupctl):
    snap = _take(backupctl, prod_instance)

    doc = backupctl("verify", snap["SnapshotId"], "--json", *prod_instance.common_args()).json()

    assert doc["snapshot"]["SnapshotId"] == snap["SnapshotId"]
    assert [i["name"] for i in doc["checklist"]["items"] if i["ok"]] == [
        "state completed", "volume is the current root volume", "instance id recorded",
        "Elastic IP noted", "timestamp logged"]


def test_verify_of_a_snapshot_of_another_volume_fails_with_exit_1(prod_instance, backupctl):
    ec2 = prod_instance.ec2
    other = ec2.create_volume(AvailabilityZone="ap-south-1a", Size=8)["VolumeId"]
    name = f"prod-root-{TODAY}-before-disk-cleanup"
    ec2.create_snapshot(VolumeId=other, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "Name", "Value": name}, {"Key": "Instance", "Value": prod_instance.instance_id}]}])

    result = backupctl("verify", name, *prod_instance.common_args())

    assert result.code == 1
    assert f"[FAIL] volume is the current root volume: snapshot of {other}" in result.out


def test_verify_after_the_root_volume_was_replaced_fails(prod_instance, backupctl):
    snap = _take(backupctl, prod_instance)
    ec2 = prod_instance.ec2
    ec2.stop_instances(InstanceIds=[prod_instance.instance_id])
    ec2.detach_volume(VolumeId=prod_instance.root_volume_id, InstanceId=prod_instance.instance_id)
    new_root = ec2.create_volume(AvailabilityZone="ap-south-1a", Size=8)["VolumeId"]
    ec2.attach_volume(VolumeId=new_root, InstanceId=prod_instance.instance_id, Device=prod_instance.root_device)

    result = backupctl("verify", snap["SnapshotId"], *prod_instance.common_args())

    assert result.code == 1
    assert f"instance root is {new_root}" in result.out


def test_verify_of_a_snapshot_without_the_instance_tag_fails_that_item(prod_instance, backupctl):
    ec2 = prod_instance.ec2
    name = f"prod-root-{TODAY}-before-manual-work"
    ec2.create_snapshot(VolumeId=prod_instance.root_volume_id, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": [{"Key": "Name", "Value": name}]}])

    result = backupctl("verify", name, *prod_instance.common_args())

    assert result.code == 1
    assert "[FAIL] instance id recorded" in result.out


def test_verify_of_an_unknown_snapshot_exits_1(prod_instance, backupctl):
    result = backupctl("verify", "snap-0123456789abcdef0", *prod_instance.common_args())

    assert result.code == 1
    assert "snap-0123456789abcdef0 not found in ap-south-1" in result.err


def test_verify_of_an_unknown_name_exits_1(prod_instance, backupctl):
    result = backupctl("verify", f"prod-root-{TODAY}-before-never-taken", *prod_instance.common_args())

    assert result.code == 1
    assert "not found" in result.err


def test_verify_of_a_malformed_reference_exits_2_with_the_forms_allowed(prod_instance, backupctl):
    result = backupctl("verify", "my-backup", *prod_instance.common_args())

    assert result.code == 2
    assert "prod-root-YYYY-MM-DD-before-<action>" in result.err and "snap-" in result.err


def test_verify_writes_an_operations_log_line(prod_instance, backupctl):
    snap = _take(backupctl, prod_instance)

    backupctl("verify", snap["SnapshotId"], *prod_instance.common_args())

    last = prod_instance.log_lines()[-1]
    assert (last["command"], last["event"], last["snapshot_id"], last["ok"]) == (
        "verify", "verify", snap["SnapshotId"], True)


def test_verify_of_an_ami_checks_the_image_and_its_root_snapshot(prod_instance, backupctl):
    image_id = prod_instance.ec2.create_image(InstanceId=prod_instance.instance_id,
                                              Name=f"prod-root-{TODAY}-before-os-upgrade")["ImageId"]
    [image] = prod_instance.ec2.describe_images(ImageIds=[image_id])["Images"]
    root_snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]

    doc = backupctl("verify", image_id, "--json", *prod_instance.common_args()).json()

    assert doc["checklist"]["items"][0] == {"name": "image available", "ok": True,
                                            "detail": f"{image_id} is available"}
    assert doc["snapshot"]["SnapshotId"] == root_snapshot


def test_verify_of_an_unknown_ami_exits_1(prod_instance, backupctl):
    result = backupctl("verify", "ami-0123456789abcdef0", *prod_instance.common_args())

    assert result.code == 1
    assert "image ami-0123456789abcdef0 not found" in result.err


def test_verify_by_a_name_another_instance_shares_checks_this_instances_snapshot(prod_instance, backupctl):
    ours = _take(backupctl, prod_instance)
    name = f"prod-root-{TODAY}-before-php-upgrade"
    ec2 = prod_instance.ec2   # a same-named snapshot of another instance (by hand, or a race)
    time.sleep(1.1)           # and takes it later: StartTime has whole seconds
    other = ec2.create_volume(AvailabilityZone="ap-south-1a", Size=8)["VolumeId"]
    ec2.create_snapshot(VolumeId=other, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "Name", "Value": name}, {"Key": "Instance", "Value": "i-0fedcba9876543210"}]}])

    doc = backupctl("verify", name, "--json", *prod_instance.common_args()).json()

    assert doc["snapshot"]["SnapshotId"] == ours["SnapshotId"] and doc["checklist"]["ok"]
