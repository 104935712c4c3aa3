"""Pre-maintenance snapshots (seed sections 3.1, 5 and 8): take, verify, lock, unlock, list.

Taking one reads like the runbook: find the instance's current root volume, snapshot it under
prod-root-<UTC date>-before-<action> (or make an AMI for OS/kernel/architecture changes), wait until
it is complete, optionally lock it, then run the section 8 checklist.
"""
from __future__ import annotations

import datetime as dt
import re
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from components.naming import snapshot_name
from components.tags import RETAIN_UNTIL_TAG, SNAPSHOT_CLAIM_TAG, STRATEGY_TAG_KEY
from scripts.aws import ec2 as ec2api
from scripts.aws import sts as stsapi
from scripts.aws.errors import AWS_ERRORS, describe, error_code
from scripts.errors import CommandError, UsageError
from scripts.oplog import current_user, operation
from scripts.times import iso_utc, parse_time, utcnow
from scripts.workflows.base import Session
from scripts.workflows.checklist import CheckItem, Checklist, run_checklist

# Section 5: actions that change what boots (the OS, its release, the kernel, the boot loader, the C
# library, the CPU architecture) get an AMI: a whole, launchable image; a root-volume snapshot cannot
# be launched on its own. The vocabulary, by what the action's words (split at "-") name; the first
# match decides and is reported as the reason. docs/cli-snapshots.md carries the same table.
AMI_VOCABULARY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("an operating-system change", ("os", "distro", "distribution", "operating-system", "rebase")),
    ("a distribution and its version", (
        "ubuntu", "debian", "centos", "rhel", "redhat", "rocky", "rockylinux", "alma", "almalinux", "fedora",
        "amazon-linux", "amazonlinux", "amzn", "al2", "al2023", "sles", "suse", "opensuse", "oracle-linux",
        "ol8", "ol9", "el7", "el8", "el9", "el10", "bookworm", "bullseye", "buster", "trixie", "focal",
        "jammy", "noble", "bionic")),
    ("a release, dist or system upgrade", (
        "release-upgrade", "dist-upgrade", "distupgrade", "system-upgrade", "full-upgrade", "major-upgrade",
        "leapp", "do-release-upgrade")),
    ("an architecture change", (
        "arch", "architecture", "arm", "arm64", "aarch64", "x86", "x86-64", "x64", "amd64", "i386", "i686",
        "graviton", "graviton2", "graviton3", "graviton4")),
    ("the kernel", ("kernel", "linux-kernel", "kpatch", "livepatch", "initramfs", "initrd", "dracut", "vmlinuz")),
    ("the boot loader", ("grub", "grub2", "bootloader", "boot-loader", "uefi", "efi", "systemd-boot")),
    ("the C library", ("glibc", "libc", "libc6")),
)
# A distribution's name with its version glued on (ubuntu24, rhel9, al2023, centos7, debian12).
_DISTRO_WITH_VERSION = re.compile(r"^(ubuntu|debian|centos|rhel|rocky|alma|almalinux|fedora|al|amzn|sles|el|ol)"
                                  r"[0-9]+$")


@dataclass(frozen=True)
class KindChoice:
    kind: str          # snapshot | ami
    reason: str        # why, in words an operator reads in the output


def classify_action(action: str) -> KindChoice:
    """What the section 5 vocabulary makes of `action`: an AMI and the words that decided, or a snapshot."""
    words = action.split("-")
    phrases = [w for w in words] + ["-".join(words[i:i + n]) for n in (2, 3) for i in range(len(words) - n + 1)]
    for what, vocabulary in AMI_VOCABULARY:
        for phrase in phrases:
            if phrase in vocabulary:
                return KindChoice("ami", f"{phrase!r} names {what}, which changes what boots (seed section 5)")
    for word in words:
        if _DISTRO_WITH_VERSION.match(word):
            return KindChoice("ami", f"{word!r} names a distribution and its version, which changes what "
                                     f"boots (seed section 5)")
    return KindChoice("snapshot", "no word of the action names the OS, its release, the kernel, the boot "
                                  "loader, glibc or the architecture (seed section 5 vocabulary)")


def needs_ami(action: str) -> bool:
    return classify_action(action).kind == "ami"


DEFAULT_REUSE_WITHIN_MINUTES = 30.0
DEFAULT_RETAIN_DAYS = 30
# Two runs for the same name at once: each writes its claim on the instance, waits this long for
# EC2's eventually consistent tags to settle, and re-reads: the run whose claim is there creates,
# the other waits for that snapshot and reuses it. A claim older than CLAIM_STALE_SECONDS is a dead
# run's and is taken over.
CLAIM_SETTLE_SECONDS = 1.5
CLAIM_STALE_SECONDS = 600.0
CLAIM_POLL_SECONDS = 2.0


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
    kind_reason: str = ""
    reuse_within_minutes: float = DEFAULT_REUSE_WITHIN_MINUTES
    retain_days: int = DEFAULT_RETAIN_DAYS


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
    kind_reason: str = ""
    reuse_note: str = ""                         # why it reused, or why it did not
    retain_until: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.checklist.ok

    @property
    def snapshot_id(self) -> str:
        return self.snapshot["SnapshotId"]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "kind": self.kind, "kindReason": self.kind_reason,
                               "instanceId": self.instance_id, "rootVolumeId": self.root_volume_id,
                               "reused": self.reused, "reuseNote": self.reuse_note,
                               "retainUntil": self.retain_until}
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
    """Snapshot (or AMI) + lock + checklist, logged as one operation: snapshot-started, then exactly
    one of snapshot-finished / -failed / -interrupted. Raises CommandError on failure."""
    ec2 = session.client("ec2")
    iid = request.instance_id
    base = snapshot_name(utcnow().date(), request.action)
    with operation(session.log, "snapshot", action=request.action, kind=request.kind, instance_id=iid) as op:
        session.progress(f"instance {iid}: reading its root volume and Elastic IP")
        instance = ec2api.describe_instance(ec2, iid)
        root = ec2api.root_volume_id(instance)
        address = ec2api.elastic_ip(ec2, iid)
        retain_until = iso_utc(utcnow() + dt.timedelta(days=request.retain_days))
        tags = {"Reason": request.action, "Instance": iid, "Volume": root, RETAIN_UNTIL_TAG: str(retain_until)}
        if address:
            tags["ElasticIp"] = f"{address.get('PublicIp')} {address.get('AllocationId') or ''}".strip()
        result = TakeResult(name=base, kind=request.kind, instance_id=iid, root_volume_id=root, snapshot={},
                            checklist=Checklist(snapshot_id="", snapshot_name=base, instance_id=iid),
                            kind_reason=request.kind_reason, retain_until=retain_until)
        try:
            with _claim(session, ec2, iid, base):
                if request.kind == "ami":
                    snapshots = _take_image(session, ec2, request, base, tags, result)
                else:
                    snapshots = [_take_snapshot(session, ec2, request, instance, base, tags, result)]
            if request.lock:
                result.locks = [lock(session, ec2, s["SnapshotId"], request.lock) for s in snapshots]
        except (CommandError,) + AWS_ERRORS as e:
            message = str(e) if isinstance(e, CommandError) else describe(e)
            op.end("failed", name=result.name, volume_id=root, error=message)
            raise
        root_snapshot = snapshots[0]
        result.snapshot = snapshot_summary(root_snapshot)
        result.checklist = checklist_for(session, ec2, root_snapshot, iid)
        if result.image is not None:
            result.checklist.items.insert(0, CheckItem("image available", result.image["State"] == "available",
                                                       f"{result.image['ImageId']} is {result.image['State']}"))
        session.log("checklist", snapshot_id=root_snapshot["SnapshotId"], ok=result.checklist.ok,
                    failed=[i.name for i in result.checklist.items if not i.ok])
        op.end("finished", name=result.name, snapshot_id=root_snapshot["SnapshotId"], reused=result.reused,
               ok=result.checklist.ok)
    return result


@contextmanager
def _claim(session: Session, ec2, iid: str, base: str) -> Iterator[None]:
    """Hold the instance's snapshot claim for `base` while deciding reuse-or-create and creating
    (see CLAIM_SETTLE_SECONDS). A run that finds another's live claim waits until it is released."""
    mine = f"{base} {uuid.uuid4().hex[:8]} {iso_utc(utcnow())} {current_user()}@{socket.gethostname()}"
    announced = False
    deadline = time.monotonic() + CLAIM_STALE_SECONDS + 60
    while True:
        if time.monotonic() > deadline:
            raise CommandError(f"could not take the snapshot claim ({SNAPSHOT_CLAIM_TAG}) on {iid} within "
                               f"{(CLAIM_STALE_SECONDS + 60) / 60:g} minutes; nothing was created")
        holder = ec2api.instance_tag(ec2api.describe_instance(ec2, iid), SNAPSHOT_CLAIM_TAG)
        if holder is None or not _claim_is_live(holder):
            ec2api.set_instance_tag(ec2, iid, SNAPSHOT_CLAIM_TAG, mine)
            time.sleep(CLAIM_SETTLE_SECONDS)
            holder = ec2api.instance_tag(ec2api.describe_instance(ec2, iid), SNAPSHOT_CLAIM_TAG)
            if holder == mine:
                break
        if not announced:
            session.progress(f"another backupctl run is taking a snapshot of {iid} ({SNAPSHOT_CLAIM_TAG}="
                             f"{holder}); waiting for it, then its snapshot is reused if it fits")
            announced = True
        time.sleep(CLAIM_POLL_SECONDS)
    try:
        yield
    finally:
        try:
            ec2api.clear_instance_tag(ec2, iid, SNAPSHOT_CLAIM_TAG, mine)
        except AWS_ERRORS as e:
            session.progress(f"warning: could not remove {SNAPSHOT_CLAIM_TAG} from {iid}: {describe(e)}; "
                             f"other runs take it over after {CLAIM_STALE_SECONDS / 60:g} minutes")


def _claim_is_live(value: str) -> bool:
    parts = value.split()
    claimed = parse_time(parts[2]) if len(parts) > 2 else None
    return claimed is not None and (utcnow() - claimed).total_seconds() < CLAIM_STALE_SECONDS


def _next_name(action: str, taken: list[str]) -> str:
    """Today's name for `action`, else its -2, -3, ... (components/naming.py): the first nobody has."""
    n = 1
    while snapshot_name(utcnow().date(), action, n) in taken:
        n += 1
    return snapshot_name(utcnow().date(), action, n)


def _reusable(found: list[dict[str, Any]], started_key: str, request: TakeRequest,
              result: TakeResult) -> Optional[dict[str, Any]]:
    """The newest of `found` when it is younger than --reuse-within; sets result.reuse_note either way."""
    if not found:
        return None
    newest = found[0]
    started = parse_time(newest.get(started_key))
    age_minutes = (utcnow() - started).total_seconds() / 60 if started else float("inf")
    label = newest.get("SnapshotId") or newest.get("ImageId")
    if age_minutes < request.reuse_within_minutes:
        result.reuse_note = (f"reused {label}: {age_minutes:.0f} min old, younger than --reuse-within "
                             f"{request.reuse_within_minutes:g} min")
        return newest
    result.reuse_note = (f"did not reuse {label}: {age_minutes:.0f} min old, older than --reuse-within "
                         f"{request.reuse_within_minutes:g} min, so a new one was taken")
    return None


def _take_snapshot(session: Session, ec2, request: TakeRequest, instance: dict[str, Any], base: str,
                   tags: dict[str, str], result: TakeResult) -> dict[str, Any]:
    root = tags["Volume"]
    family = ec2api.snapshots_in_family(ec2, base)
    same = [s for s in family if s.get("State") != "error" and s.get("VolumeId") == root
            and ec2api.tags_of(s).get("Reason") in (None, request.action)]
    snap = _reusable(same, "StartTime", request, result)
    if snap is not None:
        result.reused = True
        result.name = ec2api.tags_of(snap).get("Name", base)
        result.retain_until = ec2api.tags_of(snap).get(RETAIN_UNTIL_TAG)
        session.progress(f"reusing {result.name}: {snap['SnapshotId']} ({snap.get('State')}), no second snapshot")
        session.log("snapshot-reused", snapshot_id=snap["SnapshotId"], name=result.name, volume_id=root)
    else:
        result.name = name = _next_name(request.action, [ec2api.tags_of(s).get("Name", "") for s in family])
        tags = {**tags, "CreatedBy": stsapi.caller_arn(session.client("sts"))}
        snap = ec2api.create_root_snapshot(ec2, instance, name, tags)
        session.progress(f"snapshot {snap['SnapshotId']} of {root} started as {name}"
                         + (f" ({result.reuse_note})" if result.reuse_note else ""))
        session.log("snapshot-created", snapshot_id=snap["SnapshotId"], name=name, volume_id=root,
                    instance_id=tags["Instance"], created_by=tags["CreatedBy"], retain_until=tags[RETAIN_UNTIL_TAG])
    # Always re-read: CreateSnapshot's answer is not a describe, and a reused one may still be pending.
    return ec2api.wait_snapshot_completed(ec2, snap["SnapshotId"], request.timeout_seconds, session.progress)


def _take_image(session: Session, ec2, request: TakeRequest, base: str, tags: dict[str, str],
                result: TakeResult) -> list[dict[str, Any]]:
    iid = request.instance_id
    family = ec2api.images_in_family(ec2, base)
    image = _reusable([i for i in family if i.get("State") not in ("failed", "deregistered", "invalid")],
                      "CreationDate", request, result)
    if image:
        result.reused = True
        result.name = image.get("Name", base)
        session.progress(f"reusing the AMI {result.name}: {image['ImageId']} ({image.get('State')})")
        session.log("image-reused", image_id=image["ImageId"], name=result.name)
        image_id = image["ImageId"]
    else:
        result.name = name = _next_name(request.action, [i.get("Name", "") for i in family])
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
        snap_tags = {**ec2api.tags_of(image), "Name": result.name, "Image": image_id, **tags}
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


def find_snapshot_or_fail(session: Session, ec2, ref: str, instance_id: Optional[str] = None) -> dict[str, Any]:
    """The snapshot `ref` (id or Name tag) names. A name several snapshots share (two runs racing,
    snapshots made by hand or by an older version) resolves to `instance_id`'s one (tag Instance) when exactly one
    is; otherwise UsageError (exit 2) listing them: never the newest by guess, as lock and unlock act
    on what they find."""
    if ref.startswith("snap-"):
        snap = ec2api.describe_snapshot(ec2, ref)
        candidates = [snap] if snap else []
    else:
        named = ec2api.snapshots_named(ec2, ref)
        candidates = [s for s in named if s.get("State") != "error"] or named
        own = [s for s in candidates if instance_id and ec2api.tags_of(s).get("Instance") == instance_id]
        if len(candidates) > 1 and len(own) == 1:
            candidates = own
    if not candidates:
        raise CommandError(f"snapshot {ref} not found in {session.region} (owned by this account)")
    if len(candidates) > 1:
        listed = ", ".join(f"{s['SnapshotId']} (instance {ec2api.tags_of(s).get('Instance', '?')}, volume "
                           f"{s.get('VolumeId')}, started {iso_utc(s.get('StartTime'))})" for s in candidates)
        whose = f" (not exactly one of them is {instance_id}'s)" if instance_id else ""
        raise UsageError(f"snapshot {ref!r}: {len(candidates)} snapshots have that name{whose}: {listed}; "
                         f"give one by id")
    return candidates[0]


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
        snap = find_snapshot_or_fail(session, ec2, ref, instance_id)
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


def unlock(session: Session, ref: str, instance_id: Optional[str] = None) -> UnlockResult:
    """Remove a governance lock (or a compliance lock in its cooling-off period)."""
    ec2 = session.client("ec2")
    sid = find_snapshot_or_fail(session, ec2, ref, instance_id)["SnapshotId"]
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
