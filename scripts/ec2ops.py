"""Thin EC2/STS functions the backupctl commands share. Each takes a boto3 client first.

Rules of this module: one AWS concept per function, shapes as AWS returns them (dicts from the
botocore service model), no printing (progress goes through a callback), and a failure a person must
act on raises CommandError with one line (exit 1). Workflows live in scripts/commands/.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional

from botocore.exceptions import ClientError

from scripts.common import CommandError

STRATEGY_TAG = ("Strategy", "quickport-backup")   # the guard-rails IAM policy protects this tag
SNAPSHOT_NAME_PREFIX = "prod-root-"

# Pre-maintenance snapshots can take a long time the first time a volume is snapshotted (a full
# copy); the boto3 waiter's 40 x 15 s = 10 minutes is too short, hence our own polling loop.
DEFAULT_POLL_SECONDS = 15.0
# DescribeSnapshots/DescribeImages are eventually consistent: a just-created id can be NotFound.
NOT_FOUND_GRACE_SECONDS = 120.0

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def _region(client) -> str:
    return client.meta.region_name


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    """AWS's [{'Key','Value'}] list as a dict."""
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


# --- identity ---------------------------------------------------------------------------------------

def caller_arn(sts) -> str:
    """The ARN of whoever runs the command (recorded as the snapshot's CreatedBy tag)."""
    return sts.get_caller_identity()["Arn"]


# --- the instance -----------------------------------------------------------------------------------

def describe_instance(ec2, instance_id: str) -> dict[str, Any]:
    """The instance as DescribeInstances returns it; CommandError if it does not exist."""
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as e:
        if _error_code(e) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
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
        if _error_code(e) in ("InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed",
                              "InvalidParameterValue"):
            return None
        raise
    return snaps[0] if snaps else None


def snapshots_named(ec2, name: str) -> list[dict[str, Any]]:
    """Our account's snapshots with tag Name=name, newest first."""
    paginator = ec2.get_paginator("describe_snapshots")
    found = []
    for page in paginator.paginate(OwnerIds=["self"], Filters=[{"Name": "tag:Name", "Values": [name]}]):
        found.extend(page["Snapshots"])
    return sorted(found, key=lambda s: s.get("StartTime") or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                  reverse=True)


def find_snapshot(ec2, id_or_name: str) -> Optional[dict[str, Any]]:
    """A snapshot by id (snap-...) or by its Name tag. Among several with that name, the newest one
    that is not in state error. None when nothing matches."""
    if id_or_name.startswith("snap-"):
        return describe_snapshot(ec2, id_or_name)
    candidates = snapshots_named(ec2, id_or_name)
    usable = [s for s in candidates if s.get("State") != "error"]
    return (usable or candidates or [None])[0]


def create_root_snapshot(ec2, instance: dict[str, Any], name: str, tags: dict[str, str],
                         description: Optional[str] = None) -> dict[str, Any]:
    """CreateSnapshot of the instance's root volume, tagged at creation (so it is never untagged,
    which the guard-rails policy relies on). `tags` is merged over Name and Strategy."""
    volume_id = root_volume_id(instance)
    all_tags = {"Name": name, STRATEGY_TAG[0]: STRATEGY_TAG[1], **tags}
    return ec2.create_snapshot(
        VolumeId=volume_id,
        Description=description or f"{name} (root volume {volume_id} of {instance['InstanceId']})",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(all_tags)}])


def _percent(progress: Optional[str]) -> str:
    return (progress or "0%").strip()


def wait_snapshot_completed(ec2, snapshot_id: str, timeout: float, progress: Progress = _noop, *,
                            poll_seconds: float = DEFAULT_POLL_SECONDS,
                            clock: Callable[[], float] = time.monotonic,
                            sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll DescribeSnapshots until the snapshot is `completed` (same acceptors as the boto3
    `snapshot_completed` waiter, plus a progress line whenever Progress changes). CommandError on
    state `error` (with StateMessage) or when `timeout` seconds pass first."""
    deadline = clock() + timeout
    started = clock()
    last_percent = None
    while True:
        snap = describe_snapshot(ec2, snapshot_id)
        if snap is None:
            if clock() - started > NOT_FOUND_GRACE_SECONDS:
                raise CommandError(f"snapshot {snapshot_id} no longer exists")
        else:
            state = snap.get("State")
            percent = _percent(snap.get("Progress"))
            if state == "completed":
                if last_percent != "100%":
                    progress(f"snapshot {snapshot_id}: completed (100%)")
                return snap
            if state == "error":
                reason = snap.get("StateMessage") or "no StateMessage given"
                raise CommandError(f"snapshot {snapshot_id} ended in state error: {reason}")
            if percent != last_percent:
                progress(f"snapshot {snapshot_id}: {state} {percent}")
                last_percent = percent
        remaining = deadline - clock()
        if remaining <= 0:
            raise CommandError(
                f"snapshot {snapshot_id} not completed after {timeout / 60:g} minutes "
                f"(last progress {last_percent or 'unknown'}); it keeps running in AWS: check it "
                f"later with `backupctl verify {snapshot_id}` or re-run with a longer --timeout")
        sleep(min(poll_seconds, remaining))


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


# --- AMIs (section 5: OS, kernel or architecture changes) ----------------------------------------------

def find_image(ec2, name: str) -> Optional[dict[str, Any]]:
    """Our AMI with this name (AMI names are unique per account and region), or None."""
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
    usable = [i for i in images if i.get("State") not in ("failed", "deregistered", "invalid")]
    return (usable or [None])[0]


def describe_image(ec2, image_id: str) -> Optional[dict[str, Any]]:
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as e:
        if _error_code(e) in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed"):
            return None
        raise
    return images[0] if images else None


def create_image(ec2, instance_id: str, name: str, tags: dict[str, str], *, reboot: bool) -> str:
    """CreateImage of the whole instance. Tags go on the image at creation; its snapshots are tagged
    once they exist (tag_image_snapshots), since their ids are only known then."""
    all_tags = {"Name": name, STRATEGY_TAG[0]: STRATEGY_TAG[1], **tags}
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


def wait_image_available(ec2, image_id: str, timeout: float, progress: Progress = _noop, *,
                         poll_seconds: float = DEFAULT_POLL_SECONDS,
                         clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll DescribeImages until `available` (acceptors of the boto3 `image_available` waiter);
    CommandError on `failed` (with StateReason) or timeout."""
    deadline = clock() + timeout
    started = clock()
    last_state = None
    while True:
        image = describe_image(ec2, image_id)
        if image is None:
            if clock() - started > NOT_FOUND_GRACE_SECONDS:
                raise CommandError(f"image {image_id} no longer exists")
        else:
            state = image.get("State")
            if state == "available":
                progress(f"image {image_id}: available")
                return image
            if state in ("failed", "invalid", "deregistered"):
                reason = (image.get("StateReason") or {}).get("Message") or "no reason given"
                raise CommandError(f"image {image_id} ended in state {state}: {reason}")
            if state != last_state:
                progress(f"image {image_id}: {state}")
                last_state = state
        remaining = deadline - clock()
        if remaining <= 0:
            raise CommandError(f"image {image_id} not available after {timeout / 60:g} minutes; it keeps "
                               f"being created in AWS: re-run the same command later to pick it up")
        sleep(min(poll_seconds, remaining))


# --- listing ------------------------------------------------------------------------------------------

def strategy_snapshots(ec2) -> list[dict[str, Any]]:
    """Our snapshots tagged Strategy=quickport-backup or named prod-root-*, newest first.
    (Filters with different names are ANDed, so this is two queries merged by id.)"""
    paginator = ec2.get_paginator("describe_snapshots")
    found: dict[str, dict[str, Any]] = {}
    for filters in ([{"Name": f"tag:{STRATEGY_TAG[0]}", "Values": [STRATEGY_TAG[1]]}],
                    [{"Name": "tag:Name", "Values": [SNAPSHOT_NAME_PREFIX + "*"]}]):
        for page in paginator.paginate(OwnerIds=["self"], Filters=filters):
            for snap in page["Snapshots"]:
                found[snap["SnapshotId"]] = snap
    return sorted(found.values(),
                  key=lambda s: s.get("StartTime") or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                  reverse=True)


# --- the section 8 checklist ---------------------------------------------------------------------------

@dataclass
class CheckItem:
    name: str
    ok: bool
    detail: str


@dataclass
class Checklist:
    """Section 8, after every pre-maintenance snapshot. `ok` only when every item passed."""
    snapshot_id: str
    snapshot_name: Optional[str]
    instance_id: str
    items: list[CheckItem] = field(default_factory=list)
    elastic_ip: Optional[dict[str, str]] = None
    root_volume_id: Optional[str] = None
    started: Optional[str] = None

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(i.ok for i in self.items)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ok"] = self.ok
        return doc

    def render(self) -> str:
        title = f"Section 8 checklist for {self.snapshot_id}" + (f" ({self.snapshot_name})" if self.snapshot_name else "")
        lines = [title]
        lines += [f"  [{'ok' if i.ok else 'FAIL'}] {i.name}: {i.detail}" for i in self.items]
        lines.append("  checklist passed" if self.ok else "  checklist FAILED: do not start the maintenance")
        return "\n".join(lines)


def iso_utc(value: Any) -> Optional[str]:
    """A timestamp as ISO 8601 in UTC (botocore returns them in the local zone of the parser)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return None if value is None else str(value)


def run_checklist(ec2, snapshot: dict[str, Any], instance_id: str,
                  record: Optional[Callable[..., bool]] = None) -> Checklist:
    """The section 8 checks on `snapshot` (a DescribeSnapshots entry) for `instance_id`:
    1 state completed; 2 its volume is the instance's CURRENT root volume; 3 the instance id is
    recorded (tag Instance); 4 the Elastic IP is noted (the instance's associated EIP);
    5 the timestamp is logged: `record(**details)` writes the operations-log line and returns
    whether it was written (without `record`, the item fails: nothing was logged)."""
    tags = tags_of(snapshot)
    sid = snapshot["SnapshotId"]
    result = Checklist(snapshot_id=sid, snapshot_name=tags.get("Name"), instance_id=instance_id,
                       started=iso_utc(snapshot.get("StartTime")))
    add = result.items.append

    state = snapshot.get("State")
    add(CheckItem("state completed", state == "completed",
                  f"state {state}, progress {_percent(snapshot.get('Progress'))}"
                  + (f": {snapshot['StateMessage']}" if snapshot.get("StateMessage") else "")))

    try:
        instance = describe_instance(ec2, instance_id)
        current_root = root_volume_id(instance)
    except CommandError as e:
        instance, current_root = None, None
        add(CheckItem("volume is the current root volume", False, str(e)))
    if current_root is not None:
        result.root_volume_id = current_root
        same = snapshot.get("VolumeId") == current_root
        add(CheckItem("volume is the current root volume", same,
                      f"snapshot of {snapshot.get('VolumeId')}, instance root is {current_root}"
                      + ("" if same else ": this snapshot would NOT restore the current root")))

    recorded = tags.get("Instance")
    add(CheckItem("instance id recorded", recorded == instance_id,
                  f"tag Instance={recorded}" if recorded == instance_id
                  else f"tag Instance is {recorded!r}, expected {instance_id}"))

    address = elastic_ip(ec2, instance_id) if instance is not None else None
    if address:
        result.elastic_ip = {"PublicIp": address.get("PublicIp"), "AllocationId": address.get("AllocationId")}
        add(CheckItem("Elastic IP noted", True,
                      f"{address.get('PublicIp')} ({address.get('AllocationId')})"))
    else:
        add(CheckItem("Elastic IP noted", False,
                      f"instance {instance_id} has no associated Elastic IP: after a restore its public "
                      f"address would change; associate the Elastic IP first"))

    logged = bool(record and record(snapshot_id=sid, snapshot_name=tags.get("Name"), instance_id=instance_id,
                                    volume_id=snapshot.get("VolumeId"), snapshot_started=result.started,
                                    elastic_ip=result.elastic_ip, state=state))
    add(CheckItem("timestamp logged", logged,
                  f"started {result.started}; operations log line written" if logged
                  else f"started {result.started}; the operations log line could NOT be written"))
    return result
