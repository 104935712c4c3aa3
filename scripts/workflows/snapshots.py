"""Pre-maintenance snapshots (seed sections 3.1, 5 and 8): take, verify, lock, unlock, list.

Taking one reads like the runbook: find the instance's current root volume, snapshot it under
prod-root-<UTC date>-before-<action> (or make an AMI for OS/kernel/architecture changes), wait until
it is complete, optionally lock it, then run the section 8 checklist.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from components.naming import snapshot_name
from components.tags import STRATEGY_TAG_KEY
from scripts.aws import ec2 as ec2api
from scripts.aws import sts as stsapi
from scripts.aws.errors import AWS_ERRORS, describe, error_code
from scripts.errors import CommandError
from scripts.times import iso_utc, utcnow
from scripts.workflows.base import Session
from scripts.workflows.checklist import CheckItem, Checklist, run_checklist

# Section 5: these change what boots (OS, kernel, architecture). A root-volume snapshot cannot be
# launched on its own, so they get an AMI: a whole, launchable image. An action is one of them when
# one of its words is below, or it contains the words release-upgrade (do-release-upgrade).
AMI_ACTION_WORDS = ("os", "kernel", "distro", "architecture", "arch")
AMI_ACTION_PHRASES = ("release-upgrade",)


def needs_ami(action: str) -> bool:
    words = action.split("-")
    return any(w in AMI_ACTION_WORDS for w in words) or any(
        re.search(rf"(^|-){p}($|-)", action) for p in AMI_ACTION_PHRASES)


@dataclass(frozen=True)
class LockRequest:
    mode: str                      # governance | compliance
    days: int
    cool_off_hours: Optional[int] = None


@dataclass(frozen=True)
class TakeRequest:
    """A checked request: the command layer validated every field."""
    action: str
    kind: str                      # snapshot | ami
    instance_id: str
    timeout_seconds: float
    lock: Optional[LockRequest] = None
    reboot: bool = False           # AMI only


@dataclass
class TakeResult:
    name: str
    kind: str
    instance_id: str
    root_volume_id: str
    snapshot: dict[str, Any]                     # summary of the (root) snapshot
    checklist: Checklist
    reused: bool = False
    image: Optional[dict[str, Any]] = None       # AMI only: ImageId, Name, State
    created_by: Optional[str] = None             # AMI only, when this run made it
    locks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checklist.ok

    @property
    def snapshot_id(self) -> str:
        return self.snapshot["SnapshotId"]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "kind": self.kind, "instanceId": self.instance_id,
                               "rootVolumeId": self.root_volume_id, "reused": self.reused}
        if self.image is not None:
            doc["image"] = self.image
        if self.created_by:
            doc["createdBy"] = self.created_by
        if self.locks:
            doc["locks"] = self.locks
        doc["snapshot"] = self.snapshot
        doc["checklist"] = self.checklist.to_json()
        return doc


def snapshot_summary(snap: dict[str, Any]) -> dict[str, Any]:
    tags = ec2api.tags_of(snap)
    return {"SnapshotId": snap["SnapshotId"], "Name": tags.get("Name"), "VolumeId": snap.get("VolumeId"),
            "State": snap.get("State"), "StartTime": iso_utc(snap.get("StartTime")),
            "VolumeSize": snap.get("VolumeSize"), "Tags": tags}


def checklist_for(session: Session, ec2, snapshot: dict[str, Any], instance_id: str) -> Checklist:
    """Run section 8 on `snapshot`, logging its timestamp line as item 5 requires."""
    return run_checklist(ec2, snapshot, instance_id,
                         record=lambda **details: session.log("snapshot-timestamp", **details))


def take(session: Session, request: TakeRequest) -> TakeResult:
    """Snapshot (or AMI) + lock + checklist. Raises CommandError (logged as snapshot-failed)."""
    ec2 = session.client("ec2")
    iid = request.instance_id
    name = snapshot_name(utcnow().date(), request.action)
    session.progress(f"instance {iid}: reading its root volume and Elastic IP")
    instance = ec2api.describe_instance(ec2, iid)
    root = ec2api.root_volume_id(instance)
    address = ec2api.elastic_ip(ec2, iid)
    tags = {"Reason": request.action, "Instance": iid, "Volume": root}
    if address:
        tags["ElasticIp"] = f"{address.get('PublicIp')} {address.get('AllocationId') or ''}".strip()
    result = TakeResult(name=name, kind=request.kind, instance_id=iid, root_volume_id=root, snapshot={},
                        checklist=Checklist(snapshot_id="", snapshot_name=name, instance_id=iid))
    try:
        if request.kind == "ami":
            snapshots = _take_image(session, ec2, request, name, tags, result)
        else:
            snapshots = [_take_snapshot(session, ec2, request, instance, name, tags, result)]
        if request.lock:
            result.locks = [lock(session, ec2, s["SnapshotId"], request.lock) for s in snapshots]
    except (CommandError,) + AWS_ERRORS as e:
        message = str(e) if isinstance(e, CommandError) else describe(e)
        session.log("snapshot-failed", name=name, instance_id=iid, volume_id=root, error=message)
        raise
    root_snapshot = snapshots[0]
    result.snapshot = snapshot_summary(root_snapshot)
    result.checklist = checklist_for(session, ec2, root_snapshot, iid)
    if result.image is not None:
        result.checklist.items.insert(0, CheckItem("image available", result.image["State"] == "available",
                                                   f"{result.image['ImageId']} is {result.image['State']}"))
    session.log("checklist", snapshot_id=root_snapshot["SnapshotId"], ok=result.checklist.ok,
                failed=[i.name for i in result.checklist.items if not i.ok])
    return result


def _take_snapshot(session: Session, ec2, request: TakeRequest, instance: dict[str, Any], name: str,
                   tags: dict[str, str], result: TakeResult) -> dict[str, Any]:
    root = tags["Volume"]
    existing = [s for s in ec2api.snapshots_named(ec2, name)
                if s.get("State") != "error" and s.get("VolumeId") == root]
    if existing:
        snap = existing[0]
        result.reused = True
        session.progress(f"reusing today's {name}: {snap['SnapshotId']} ({snap.get('State')}), no second snapshot")
        session.log("snapshot-reused", snapshot_id=snap["SnapshotId"], name=name, volume_id=root)
    else:
        tags = {**tags, "CreatedBy": stsapi.caller_arn(session.client("sts"))}
        snap = ec2api.create_root_snapshot(ec2, instance, name, tags)
        session.progress(f"snapshot {snap['SnapshotId']} of {root} started as {name}")
        session.log("snapshot-created", snapshot_id=snap["SnapshotId"], name=name, volume_id=root,
                    instance_id=tags["Instance"], created_by=tags["CreatedBy"])
    # Always re-read: CreateSnapshot's answer is not a describe, and a reused one may still be pending.
    return ec2api.wait_snapshot_completed(ec2, snap["SnapshotId"], request.timeout_seconds, session.progress)


def _take_image(session: Session, ec2, request: TakeRequest, name: str, tags: dict[str, str],
                result: TakeResult) -> list[dict[str, Any]]:
    iid = request.instance_id
    image = ec2api.find_image(ec2, name)
    if image:
        result.reused = True
        session.progress(f"reusing today's AMI {name}: {image['ImageId']} ({image.get('State')})")
        session.log("image-reused", image_id=image["ImageId"], name=name)
        image_id = image["ImageId"]
    else:
        if not request.reboot:
            session.progress("warning: making the AMI WITHOUT a reboot: it is crash-consistent (like a "
                             "snapshot of a running disk). Stop MariaDB and the GT06 server first, or pass --reboot.")
        tags = {**tags, "CreatedBy": stsapi.caller_arn(session.client("sts"))}
        image_id = ec2api.create_image(ec2, iid, name, tags, reboot=request.reboot)
        session.progress(f"AMI {image_id} of {iid} started as {name}"
                         + (" (instance reboots)" if request.reboot else ""))
        session.log("image-created", image_id=image_id, name=name, instance_id=iid,
                    reboot=request.reboot, created_by=tags["CreatedBy"])
        result.created_by = tags["CreatedBy"]
    image = ec2api.wait_image_available(ec2, image_id, request.timeout_seconds, session.progress)
    result.image = {"ImageId": image["ImageId"], "Name": image.get("Name"), "State": image.get("State")}
    snapshot_ids = ec2api.image_snapshot_ids(image)
    root_id = ec2api.image_root_snapshot_id(image)
    if not root_id:
        raise CommandError(f"image {image_id} has no EBS root snapshot")
    # The image's snapshots only exist now: tag them like a pre-maintenance snapshot (the checklist
    # reads Instance; the guard-rails policy protects Strategy-tagged snapshots). Only untagged ones:
    # the guard rails deny re-tagging a snapshot that already carries the Strategy tag (a re-run).
    root = ec2api.describe_snapshot(ec2, root_id)
    if root is None:
        raise CommandError(f"root snapshot {root_id} of image {image_id} not found")
    if STRATEGY_TAG_KEY not in ec2api.tags_of(root):
        snap_tags = {**ec2api.tags_of(image), "Name": name, "Image": image_id, **tags}
        ec2api.tag_resources(ec2, snapshot_ids, snap_tags)
        root = ec2api.describe_snapshot(ec2, root_id)
        if root is None:
            raise CommandError(f"root snapshot {root_id} of image {image_id} vanished while being tagged")
    return [root] + [{"SnapshotId": sid} for sid in snapshot_ids if sid != root_id]


def lock(session: Session, ec2, snapshot_id: str, request: LockRequest) -> dict[str, Any]:
    """LockSnapshot, logged; returns EC2's answer with timestamps as ISO strings."""
    session.progress(f"locking {snapshot_id} in {request.mode} mode for {request.days} days")
    result = ec2api.lock_snapshot(ec2, snapshot_id, request.mode, request.days, request.cool_off_hours)
    session.log("snapshot-locked", snapshot_id=snapshot_id, mode=request.mode, days=request.days,
                cool_off_hours=request.cool_off_hours, lock_state=result.get("LockState"),
                expires=result.get("LockExpiresOn"))
    return {k: (iso_utc(v) if isinstance(v, dt.datetime) else v) for k, v in result.items()}


def find_snapshot_or_fail(session: Session, ec2, ref: str) -> dict[str, Any]:
    snap = ec2api.find_snapshot(ec2, ref)
    if snap is None:
        raise CommandError(f"snapshot {ref} not found in {session.region} (owned by this account)")
    return snap


# --- verify ------------------------------------------------------------------------------------------

@dataclass
class VerifyResult:
    snapshot: dict[str, Any]
    checklist: Checklist
    image: Optional[dict[str, Any]] = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"snapshot": snapshot_summary(self.snapshot), "checklist": self.checklist.to_json()}
        if self.image is not None:
            doc["image"] = {"ImageId": self.image["ImageId"], "State": self.image.get("State")}
        return doc


def verify(session: Session, ref: str, instance_id: str) -> VerifyResult:
    """Section 8 again on a snapshot (id or name), or on an AMI's root snapshot."""
    ec2 = session.client("ec2")
    image = None
    if ref.startswith("ami-"):
        image = ec2api.describe_image(ec2, ref)
        if image is None:
            raise CommandError(f"image {ref} not found in {session.region}")
        root_id = ec2api.image_root_snapshot_id(image)
        snap = ec2api.describe_snapshot(ec2, root_id) if root_id else None
        if snap is None:
            raise CommandError(f"image {ref} has no root snapshot in {session.region}")
    else:
        snap = find_snapshot_or_fail(session, ec2, ref)
    checklist = checklist_for(session, ec2, snap, instance_id)
    if image is not None:
        checklist.items.insert(0, CheckItem("image available", image.get("State") == "available",
                                            f"{image['ImageId']} is {image.get('State')}"))
    session.log("verify", snapshot_id=snap["SnapshotId"], ok=checklist.ok,
                failed=[i.name for i in checklist.items if not i.ok])
    return VerifyResult(snapshot=snap, checklist=checklist, image=image)


# --- unlock ------------------------------------------------------------------------------------------

@dataclass
class UnlockResult:
    snapshot_id: str
    lock_state: Optional[str]
    unlocked: bool


def unlock(session: Session, ref: str) -> UnlockResult:
    """Remove a governance lock (or a compliance lock in its cooling-off period)."""
    ec2 = session.client("ec2")
    sid = find_snapshot_or_fail(session, ec2, ref)["SnapshotId"]
    current = ec2api.describe_lock(ec2, sid)
    state = (current or {}).get("LockState")
    if current is None or state in (None, "expired"):
        return UnlockResult(sid, state, unlocked=False)
    if state == "compliance":
        expires = iso_utc(current.get("LockExpiresOn"))
        session.log("unlock-refused", snapshot_id=sid, lock_state=state, expires=expires)
        raise CommandError(f"{sid} is locked in compliance mode until {expires} and its cooling-off period "
                           f"ended ({iso_utc(current.get('CoolOffPeriodExpiresOn'))}): a compliance lock "
                           f"cannot be removed by anyone; it expires on its own")
    try:
        ec2api.unlock_snapshot(ec2, sid)
    except AWS_ERRORS as e:
        if error_code(e) in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            raise CommandError(
                f"{describe(e)}; the guard-rails IAM policy denies ec2:UnlockSnapshot on snapshots "
                f"tagged Strategy=quickport-backup: unlocking one is a break-glass step for a role without "
                f"that policy") from None
        raise
    session.log("snapshot-unlocked", snapshot_id=sid, previous_lock_state=state)
    return UnlockResult(sid, state, unlocked=True)


# --- list --------------------------------------------------------------------------------------------

def age(started: Any, now: dt.datetime) -> str:
    if not isinstance(started, dt.datetime):
        return "?"
    seconds = max(0, int((now - started).total_seconds()))
    days, rest = divmod(seconds, 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


@dataclass
class Listing:
    rows: list[dict[str, Any]]
    lock_error: Optional[str]


def list_snapshots(session: Session) -> Listing:
    """The strategy's snapshots, newest first, with their locks ("unknown" and why if that API fails)."""
    ec2 = session.client("ec2")
    snaps = ec2api.strategy_snapshots(ec2)
    locks: dict[str, dict[str, Any]] = {}
    lock_error = None
    if snaps:
        try:
            locks = ec2api.describe_locks(ec2, [s["SnapshotId"] for s in snaps])
        except AWS_ERRORS as e:
            lock_error = f"DescribeLockedSnapshots failed: {describe(e)}"
        except Exception as e:  # whatever else the lock API does must not hide the snapshots themselves
            lock_error = f"DescribeLockedSnapshots not available: {type(e).__name__}"
    now = utcnow()
    rows = []
    for s in snaps:
        info = locks.get(s["SnapshotId"])
        rows.append({
            "Name": ec2api.tags_of(s).get("Name", ""), "SnapshotId": s["SnapshotId"],
            "Age": age(s.get("StartTime"), now), "StartTime": iso_utc(s.get("StartTime")),
            "State": s.get("State"), "SizeGiB": s.get("VolumeSize"),
            "LockState": "unknown" if lock_error else (info or {}).get("LockState", "none"),
            "LockExpiresOn": None if lock_error else iso_utc((info or {}).get("LockExpiresOn")),
        })
    session.log("list", count=len(rows), lock_error=lock_error)
    return Listing(rows, lock_error)
