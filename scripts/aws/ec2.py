"""EC2: the instance, its root volume, snapshots and their locks, AMIs, volumes, Elastic IPs and
replace-root-volume tasks. Each function takes a boto3 EC2 client first and returns AWS's shapes."""
from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Callable, Iterable, Optional

from botocore.exceptions import ClientError

from components.naming import SNAPSHOT_NAME_PREFIX
from components.tags import RESTORE_MARKER_TAG, STRATEGY_TAG_KEY, STRATEGY_TAG_VALUE
from scripts.aws.errors import error_code
from scripts.aws.waits import Progress, noop, poll_until, wait
from scripts.errors import CommandError

# Pre-maintenance snapshots can take a long time the first time a volume is snapshotted (a full
# copy); the boto3 waiter's 40 x 15 s = 10 minutes is too short, hence our own polling loop.
DEFAULT_POLL_SECONDS = 15.0
# DescribeSnapshots/DescribeImages are eventually consistent: a just-created id can be NotFound.
NOT_FOUND_GRACE_SECONDS = 120.0
# Task states in which AWS is still working on a root-volume replacement ("failing" ends in failed*).
ACTIVE_TASK_STATES = ("pending", "in-progress", "failing")
FAILED_TASK_STATES = ("failed", "failed-detached")
# Device names a temporary volume may take on a helper (the AWS-recommended range for EBS data volumes).
DATA_DEVICE_NAMES = tuple(f"/dev/sd{c}" for c in "fghijklmnop")

def _region(client) -> str:
    return client.meta.region_name


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    """AWS's [{'Key','Value'}] list as a dict."""
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


# --- the instance -----------------------------------------------------------------------------------

def describe_instance(ec2, instance_id: str) -> dict[str, Any]:
    """The instance as DescribeInstances returns it; CommandError if it does not exist."""
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as e:
        if error_code(e) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            raise CommandError(f"instance {instance_id} not found in {_region(ec2)}") from None
        raise
    for reservation in reservations:
        for instance in reservation.get("Instances", []):
            if instance["InstanceId"] == instance_id:
                return instance
    raise CommandError(f"instance {instance_id} not found in {_region(ec2)}")


def root_volume_id(instance: dict[str, Any]) -> str:
    """The EBS volume attached at the instance's RootDeviceName (not simply the first mapping)."""
    root_device = instance.get("RootDeviceName")
    for mapping in instance.get("BlockDeviceMappings") or []:
        if mapping.get("DeviceName") == root_device and "Ebs" in mapping:
            return mapping["Ebs"]["VolumeId"]
    raise CommandError(f"instance {instance['InstanceId']} has no EBS volume attached at its root "
                       f"device {root_device!r}")


def elastic_ip(ec2, instance_id: str) -> Optional[dict[str, Any]]:
    """The Elastic IP associated with the instance (the Address: PublicIp, AllocationId,
    AssociationId, ...), or None when it has none."""
    addresses = ec2.describe_addresses(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}])["Addresses"]
    vpc = [a for a in addresses if a.get("AllocationId")]
    return (vpc or addresses or [None])[0]


# --- snapshots --------------------------------------------------------------------------------------

def describe_snapshot(ec2, snapshot_id: str) -> Optional[dict[str, Any]]:
    """One snapshot by id, or None when it does not exist."""
    try:
        snaps = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    except ClientError as e:
        if error_code(e) in ("InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed",
                              "InvalidParameterValue"):
            return None
        raise
    return snaps[0] if snaps else None


def _newest_first(snapshots: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(snapshots, key=lambda s: s.get("StartTime") or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                  reverse=True)


def snapshots_by_name(ec2, names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Our own snapshots whose Name tag is one of the names, grouped by name, newest first."""
    names = list(names)
    found: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    if not names:
        return found
    pages = ec2.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], Filters=[{"Name": "tag:Name", "Values": names}])
    for page in pages:
        for snap in page.get("Snapshots", []):
            name = tags_of(snap).get("Name")
            if name in found:
                found[name].append(snap)
    return {name: _newest_first(snaps) for name, snaps in found.items()}


def snapshots_named(ec2, name: str) -> list[dict[str, Any]]:
    """Our account's snapshots with tag Name=name, newest first."""
    return snapshots_by_name(ec2, [name])[name]


def snapshots_in_family(ec2, base_name: str) -> list[dict[str, Any]]:
    """Our snapshots named `base_name` or `base_name-<n>` (a same-day re-run's name), newest first."""
    pattern = re.compile(rf"^{re.escape(base_name)}(?:-[0-9]+)?$")
    pages = ec2.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], Filters=[{"Name": "tag:Name", "Values": [base_name, f"{base_name}-*"]}])
    return _newest_first(s for page in pages for s in page.get("Snapshots", [])
                         if pattern.match(tags_of(s).get("Name", "")))


def snapshots_of_instance(ec2, instance_id: str) -> list[dict[str, Any]]:
    """Our snapshots tagged Instance=instance_id (the CLI's, the baselines', the safety snapshots)."""
    pages = ec2.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], Filters=[{"Name": "tag:Instance", "Values": [instance_id]}])
    return _newest_first(s for page in pages for s in page.get("Snapshots", []))


def volumes_tagged(ec2, key: str, value: str) -> list[dict[str, Any]]:
    pages = ec2.get_paginator("describe_volumes").paginate(Filters=[{"Name": f"tag:{key}", "Values": [value]}])
    return [v for page in pages for v in page.get("Volumes", [])]


def find_snapshot(ec2, id_or_name: str) -> Optional[dict[str, Any]]:
    """A snapshot by id (snap-...) or by its Name tag. Among several with that name, the newest one
    that is not in state error. None when nothing matches."""
    if id_or_name.startswith("snap-"):
        return describe_snapshot(ec2, id_or_name)
    candidates = snapshots_named(ec2, id_or_name)
    usable = [s for s in candidates if s.get("State") != "error"]
    found = usable or candidates
    return found[0] if found else None


def create_root_snapshot(ec2, instance: dict[str, Any], name: str, tags: dict[str, str],
                         description: Optional[str] = None) -> dict[str, Any]:
    """CreateSnapshot of the instance's root volume, tagged at creation (so it is never untagged,
    which the guard-rails policy relies on). `tags` is merged over Name and Strategy."""
    volume_id = root_volume_id(instance)
    all_tags = {"Name": name, STRATEGY_TAG_KEY: STRATEGY_TAG_VALUE, **tags}
    return ec2.create_snapshot(
        VolumeId=volume_id,
        Description=description or f"{name} (root volume {volume_id} of {instance['InstanceId']})",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(all_tags)}])


def progress_percent(progress: Optional[str]) -> str:
    return (progress or "0%").strip()


def wait_snapshot_completed(ec2, snapshot_id: str, timeout: float, progress: Progress = noop, *,
                            poll_seconds: float = DEFAULT_POLL_SECONDS,
                            clock: Callable[[], float] = time.monotonic,
                            sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll DescribeSnapshots until the snapshot is `completed` (same acceptors as the boto3
    `snapshot_completed` waiter, plus a progress line whenever Progress changes). CommandError on
    state `error` (with StateMessage) or when `timeout` seconds pass first."""
    def failed(snap: dict[str, Any]) -> Optional[str]:
        if snap.get("State") != "error":
            return None
        return f"ended in state error: {snap.get('StateMessage') or 'no StateMessage given'}"

    def timed_out(last: Optional[dict[str, Any]]) -> str:
        percent = progress_percent(last.get("Progress")) if last else "unknown"
        return (f"snapshot {snapshot_id} not completed after {timeout / 60:g} minutes (last progress {percent}); "
                f"it keeps running in AWS: check it later with `backupctl verify {snapshot_id}` or re-run with "
                f"a longer --timeout")

    return poll_until(
        f"snapshot {snapshot_id}", lambda: describe_snapshot(ec2, snapshot_id),
        done=lambda snap: snap.get("State") == "completed", failed=failed,
        status=lambda snap: ("completed (100%)" if snap.get("State") == "completed"
                             else f"{snap.get('State')} {progress_percent(snap.get('Progress'))}"),
        timed_out=timed_out, timeout=timeout, progress=progress, poll_seconds=poll_seconds,
        not_found_grace=NOT_FOUND_GRACE_SECONDS, clock=clock, sleep=sleep)


def tag_resources(ec2, resource_ids: Iterable[str], tags: dict[str, str]) -> None:
    ids = list(resource_ids)
    if ids:
        ec2.create_tags(Resources=ids, Tags=tag_list(tags))


# --- snapshot locks (EBS snapshot lock; not in moto, tested with botocore Stubber) --------------------

def lock_snapshot(ec2, snapshot_id: str, mode: str, days: int,
                  cool_off_hours: Optional[int] = None) -> dict[str, Any]:
    """LockSnapshot for `days` days. CoolOffPeriod is only sent for compliance (the API rejects it
    for governance); omitting it locks compliance immediately, with no cooling-off."""
    params: dict[str, Any] = {"SnapshotId": snapshot_id, "LockMode": mode, "LockDuration": days}
    if mode == "compliance" and cool_off_hours:
        params["CoolOffPeriod"] = cool_off_hours
    response = ec2.lock_snapshot(**params)
    response.pop("ResponseMetadata", None)
    return response


def describe_locks(ec2, snapshot_ids: list[str]) -> dict[str, dict[str, Any]]:
    """DescribeLockedSnapshots for these ids: snapshot id -> LockedSnapshotsInfo (absent = unlocked)."""
    locks: dict[str, dict[str, Any]] = {}
    snapshot_ids = sorted(set(snapshot_ids))
    for start in range(0, len(snapshot_ids), 200):
        kwargs: dict[str, Any] = {"SnapshotIds": snapshot_ids[start:start + 200]}
        while True:
            page = ec2.describe_locked_snapshots(**kwargs)
            for info in page.get("Snapshots", []):
                locks[info["SnapshotId"]] = info
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return locks


def describe_lock(ec2, snapshot_id: str) -> Optional[dict[str, Any]]:
    return describe_locks(ec2, [snapshot_id]).get(snapshot_id)


def unlock_snapshot(ec2, snapshot_id: str) -> None:
    ec2.unlock_snapshot(SnapshotId=snapshot_id)


def delete_snapshot(ec2, snapshot_id: str) -> None:
    """DeleteSnapshot: with a Region-level Recycle Bin rule the snapshot goes to the Recycle Bin."""
    ec2.delete_snapshot(SnapshotId=snapshot_id)


def snapshots_behind_images(ec2) -> dict[str, str]:
    """snapshot id -> id of our AMI that uses it (such a snapshot cannot be deleted before the AMI)."""
    images = ec2.describe_images(Owners=["self"])["Images"]
    return {sid: image["ImageId"] for image in images for sid in image_snapshot_ids(image)}


# --- AMIs (section 5: OS, kernel or architecture changes) ----------------------------------------------

def find_image(ec2, name: str) -> Optional[dict[str, Any]]:
    """Our AMI with this name (AMI names are unique per account and region), or None."""
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
    usable = [i for i in images if i.get("State") not in ("failed", "deregistered", "invalid")]
    return (usable or [None])[0]


def images_in_family(ec2, base_name: str) -> list[dict[str, Any]]:
    """Our AMIs named `base_name` or `base_name-<n>`, newest first (CreationDate)."""
    pattern = re.compile(rf"^{re.escape(base_name)}(?:-[0-9]+)?$")
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name",
                                                            "Values": [base_name, f"{base_name}-*"]}])["Images"]
    return sorted((i for i in images if pattern.match(i.get("Name", ""))),
                  key=lambda i: i.get("CreationDate") or "", reverse=True)


def describe_image(ec2, image_id: str) -> Optional[dict[str, Any]]:
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as e:
        if error_code(e) in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed"):
            return None
        raise
    return images[0] if images else None


def create_image(ec2, instance_id: str, name: str, tags: dict[str, str], *, reboot: bool) -> str:
    """CreateImage of the whole instance. Tags go on the image at creation; its snapshots are tagged
    once they exist (tag_image_snapshots), since their ids are only known then."""
    all_tags = {"Name": name, STRATEGY_TAG_KEY: STRATEGY_TAG_VALUE, **tags}
    return ec2.create_image(
        InstanceId=instance_id, Name=name, NoReboot=not reboot,
        Description=f"{name} (whole instance {instance_id})",
        TagSpecifications=[{"ResourceType": "image", "Tags": tag_list(all_tags)}])["ImageId"]


def image_snapshot_ids(image: dict[str, Any]) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings") or []
            if m.get("Ebs", {}).get("SnapshotId")]


def image_root_snapshot_id(image: dict[str, Any]) -> Optional[str]:
    for m in image.get("BlockDeviceMappings") or []:
        if m.get("DeviceName") == image.get("RootDeviceName") and m.get("Ebs", {}).get("SnapshotId"):
            return m["Ebs"]["SnapshotId"]
    return None


def wait_image_available(ec2, image_id: str, timeout: float, progress: Progress = noop, *,
                         poll_seconds: float = DEFAULT_POLL_SECONDS,
                         clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll DescribeImages until `available` (acceptors of the boto3 `image_available` waiter);
    CommandError on `failed` (with StateReason) or timeout."""
    def failed(image: dict[str, Any]) -> Optional[str]:
        state = image.get("State")
        if state not in ("failed", "invalid", "deregistered"):
            return None
        return f"ended in state {state}: {(image.get('StateReason') or {}).get('Message') or 'no reason given'}"

    return poll_until(
        f"image {image_id}", lambda: describe_image(ec2, image_id),
        done=lambda image: image.get("State") == "available", failed=failed,
        status=lambda image: str(image.get("State")),
        timed_out=lambda _: (f"image {image_id} not available after {timeout / 60:g} minutes; it keeps being "
                             f"created in AWS: re-run the same command later to pick it up"),
        timeout=timeout, progress=progress, poll_seconds=poll_seconds, not_found_grace=NOT_FOUND_GRACE_SECONDS,
        clock=clock, sleep=sleep)


# --- listing ------------------------------------------------------------------------------------------

def strategy_snapshots(ec2) -> list[dict[str, Any]]:
    """Our snapshots tagged Strategy=quickport-backup or named prod-root-*, newest first.
    (Filters with different names are ANDed, so this is two queries merged by id.)"""
    paginator = ec2.get_paginator("describe_snapshots")
    found: dict[str, dict[str, Any]] = {}
    for filters in ([{"Name": f"tag:{STRATEGY_TAG_KEY}", "Values": [STRATEGY_TAG_VALUE]}],
                    [{"Name": "tag:Name", "Values": [SNAPSHOT_NAME_PREFIX + "*"]}]):
        for page in paginator.paginate(OwnerIds=["self"], Filters=filters):
            for snap in page["Snapshots"]:
                found[snap["SnapshotId"]] = snap
    return _newest_first(found.values())


# --- volumes ----------------------------------------------------------------------------------------

def describe_volume(ec2, volume_id: str) -> dict[str, Any]:
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


def volume_settings_like(volume: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    """CreateVolume parameters that reproduce `volume`'s type and performance for a volume made from
    `snapshot`: same type, IOPS (io1/io2/gp3) and throughput (gp3), at least the snapshot's size and
    the old volume's size (a grown root stays grown). Encryption follows the snapshot (a volume from
    an encrypted snapshot is always encrypted with the snapshot's key); an unencrypted snapshot gives
    an encrypted volume when the old volume was encrypted, with the old volume's key."""
    params: dict[str, Any] = {"VolumeType": volume.get("VolumeType", "gp3"),
                              "Size": max(int(snapshot.get("VolumeSize") or 0), int(volume.get("Size") or 0))}
    if params["VolumeType"] in ("io1", "io2", "gp3") and volume.get("Iops"):
        params["Iops"] = volume["Iops"]
    if params["VolumeType"] == "gp3" and volume.get("Throughput"):
        params["Throughput"] = volume["Throughput"]
    if not snapshot.get("Encrypted") and volume.get("Encrypted"):
        params["Encrypted"] = True
        if volume.get("KmsKeyId"):
            params["KmsKeyId"] = volume["KmsKeyId"]
    return params


def create_volume_from_snapshot(ec2, snapshot_id: str, availability_zone: str, settings: dict[str, Any],
                                tags: dict[str, str]) -> str:
    """CreateVolume from the snapshot in that AZ, tagged at creation; returns the volume id."""
    return ec2.create_volume(SnapshotId=snapshot_id, AvailabilityZone=availability_zone,
                             TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(tags)}],
                             **settings)["VolumeId"]


def wait_volume_available(ec2, volume_id: str, timeout: float, poll_seconds: float) -> None:
    wait(ec2, "volume_available", f"volume {volume_id}", timeout, poll_seconds, VolumeIds=[volume_id])


def wait_volume_in_use(ec2, volume_id: str, timeout: float, poll_seconds: float) -> None:
    wait(ec2, "volume_in_use", f"volume {volume_id}", timeout, poll_seconds, VolumeIds=[volume_id])


def detach_volume(ec2, volume_id: str, instance_id: str, device: str) -> None:
    # InstanceId and Device pin the detach to the attachment we mean (never whatever else it is on).
    ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)


def attach_volume(ec2, volume_id: str, instance_id: str, device: str) -> None:
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)


def delete_volume(ec2, volume_id: str) -> None:
    ec2.delete_volume(VolumeId=volume_id)


def free_device_name(instance: dict[str, Any]) -> str:
    """The first of /dev/sdf../dev/sdp the instance does not use (xvdX counts as sdX)."""
    used = {m.get("DeviceName", "").replace("/dev/xvd", "/dev/sd") for m in instance.get("BlockDeviceMappings") or []}
    for name in DATA_DEVICE_NAMES:
        if name not in used:
            return name
    raise CommandError(f"instance {instance['InstanceId']} has no free device name in /dev/sdf../dev/sdp")


# --- instances --------------------------------------------------------------------------------------

def stop_instance(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    ec2.stop_instances(InstanceIds=[instance_id])
    wait(ec2, "instance_stopped", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


def start_instance(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    ec2.start_instances(InstanceIds=[instance_id])
    wait(ec2, "instance_running", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


def wait_instance_running(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    wait(ec2, "instance_running", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


def run_helper_instance(ec2, *, image_id: str, instance_type: str, subnet_id: str,
                        instance_profile: dict[str, str], security_group_ids: list[str],
                        image: dict[str, Any], tags: dict[str, str]) -> str:
    """RunInstances for one temporary helper: IMDSv2 only, terminates itself on an OS shutdown,
    its own root volume deleted with it, tagged at creation. Returns the instance id."""
    params: dict[str, Any] = {
        "ImageId": image_id, "InstanceType": instance_type, "MinCount": 1, "MaxCount": 1,
        "SubnetId": subnet_id, "IamInstanceProfile": instance_profile,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list(tags)},
                              {"ResourceType": "volume", "Tags": tag_list(tags)}],
    }
    if security_group_ids:
        params["SecurityGroupIds"] = security_group_ids
    root = _helper_root_mapping(image)
    if root:
        params["BlockDeviceMappings"] = [root]
    return ec2.run_instances(**params)["Instances"][0]["InstanceId"]


def _helper_root_mapping(image: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The AMI's own root mapping with DeleteOnTermination forced on: a custom AMI made with it off
    would otherwise leave the helper's root volume behind."""
    for m in image.get("BlockDeviceMappings") or []:
        if m.get("DeviceName") == image.get("RootDeviceName") and m.get("Ebs", {}).get("SnapshotId"):
            ebs = {k: m["Ebs"][k] for k in ("SnapshotId", "VolumeSize", "VolumeType") if k in m["Ebs"]}
            return {"DeviceName": m["DeviceName"], "Ebs": {**ebs, "DeleteOnTermination": True}}
    return None


def terminate_instance(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    ec2.terminate_instances(InstanceIds=[instance_id])
    wait(ec2, "instance_terminated", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


# --- the in-progress marker (detach restores have no AWS-side task to look for) -----------------------

def instance_tag(instance: dict[str, Any], key: str) -> Optional[str]:
    return tags_of(instance).get(key)


def set_instance_tag(ec2, instance_id: str, key: str, value: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": key, "Value": value}])


def clear_instance_tag(ec2, instance_id: str, key: str, value: str) -> None:
    """DeleteTags with the Value given: removes the tag only while it still holds `value`."""
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": key, "Value": value}])


def restore_marker(instance: dict[str, Any]) -> Optional[str]:
    return tags_of(instance).get(RESTORE_MARKER_TAG)


def set_restore_marker(ec2, instance_id: str, value: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": RESTORE_MARKER_TAG, "Value": value}])


def clear_restore_marker(ec2, instance_id: str, value: str) -> None:
    # With the Value given, DeleteTags removes the tag only while it still holds OUR value.
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": RESTORE_MARKER_TAG, "Value": value}])


# --- Elastic IP -------------------------------------------------------------------------------------

def associate_elastic_ip(ec2, allocation_id: str, instance_id: str) -> None:
    ec2.associate_address(AllocationId=allocation_id, InstanceId=instance_id, AllowReassociation=True)


def address_by_allocation(ec2, allocation_id: str) -> Optional[dict[str, Any]]:
    try:
        addresses = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"]
    except ClientError as e:
        if error_code(e) in ("InvalidAllocationID.NotFound", "InvalidAllocationID.Malformed"):
            return None
        raise
    return addresses[0] if addresses else None


# --- replace-root-volume tasks (not in moto: tested with botocore Stubber) ----------------------------

def replace_root_tasks(ec2, instance_id: str) -> list[dict[str, Any]]:
    paginator = ec2.get_paginator("describe_replace_root_volume_tasks")
    tasks: list[dict[str, Any]] = []
    for page in paginator.paginate(Filters=[{"Name": "instance-id", "Values": [instance_id]}]):
        tasks.extend(page.get("ReplaceRootVolumeTasks", []))
    return tasks


def active_replace_root_tasks(ec2, instance_id: str) -> list[dict[str, Any]]:
    return [t for t in replace_root_tasks(ec2, instance_id) if t.get("TaskState") in ACTIVE_TASK_STATES]


def create_replace_root_task(ec2, instance_id: str, snapshot_id: str, tags: dict[str, str],
                             client_token: str) -> dict[str, Any]:
    """CreateReplaceRootVolumeTask from a snapshot, KEEPING the replaced root volume. The client
    token makes a retried request (standard retries) create one task, not two."""
    return ec2.create_replace_root_volume_task(
        InstanceId=instance_id, SnapshotId=snapshot_id, DeleteReplacedRootVolume=False,
        ClientToken=client_token,
        TagSpecifications=[{"ResourceType": "replace-root-volume-task", "Tags": tag_list(tags)}],
    )["ReplaceRootVolumeTask"]


def describe_replace_root_task(ec2, task_id: str) -> dict[str, Any]:
    tasks = ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])["ReplaceRootVolumeTasks"]
    if not tasks:
        raise CommandError(f"replace-root-volume task {task_id} not found")
    return tasks[0]


def wait_replace_root_task(ec2, task_id: str, timeout: float, progress: Progress = noop, *,
                           poll_seconds: float = 15.0, clock: Callable[[], float] = time.monotonic,
                           sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll DescribeReplaceRootVolumeTasks (EC2 has no waiter for it) until `succeeded`, with a
    progress line on every state change. Returns the task; the caller handles failed states.
    CommandError when `timeout` seconds pass first (the task keeps running in AWS)."""
    def timed_out(last: Optional[dict[str, Any]]) -> str:
        return (f"replace-root-volume task {task_id} still {(last or {}).get('TaskState')} after "
                f"{timeout / 60:g} minutes; it keeps running in AWS: aws ec2 describe-replace-root-volume-tasks "
                f"--replace-root-volume-task-ids {task_id}")

    return poll_until(
        f"replace-root-volume task {task_id}", lambda: describe_replace_root_task(ec2, task_id),
        done=lambda task: task.get("TaskState") == "succeeded" or task.get("TaskState") in FAILED_TASK_STATES,
        failed=lambda _: None, status=lambda task: str(task.get("TaskState")), timed_out=timed_out,
        timeout=timeout, progress=progress, poll_seconds=poll_seconds, not_found_grace=0.0, clock=clock, sleep=sleep)


# --- account settings -------------------------------------------------------------------------------

def snapshot_block_public_access_state(ec2) -> str:
    return ec2.get_snapshot_block_public_access_state()["State"]


def ebs_encryption_by_default(ec2) -> bool:
    return bool(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])


def ebs_default_kms_key(ec2) -> str:
    """The key new encrypted volumes get: an ARN, or alias/aws/ebs for the AWS managed key."""
    return ec2.get_ebs_default_kms_key_id()["KmsKeyId"]
