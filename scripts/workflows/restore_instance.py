"""Section 6.1: restore the production instance's root volume from a snapshot.

Plan first (read-only: every step with ids, and what blocks it), then execute: a safety snapshot of
the current root, then either an EC2 replace-root-volume task or the seed's six detach steps (with a
rollback to the original root if a step fails), then check the result. The old root is never deleted.
"""
from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from components.errors import ConfigError
from components.naming import snapshot_name
from components.tags import REPLACED_TAG, RESTORE_MARKER_TAG, RESTORE_RUN_TAG, RESTORED_FROM_TAG
from scripts.aws import ec2 as ec2api
from scripts.aws import sts as stsapi
from scripts.aws.errors import AWS_ERRORS, describe
from scripts.errors import CommandError, UsageError
from scripts.oplog import current_user, operation
from scripts.times import iso_utc, utcnow
from scripts.workflows.base import Session

METHODS = ("replace-root", "detach")
# What a restore step can raise that must still end in rollback/cleanup and a one-line message.
RESTORE_FAILURES = (CommandError,) + AWS_ERRORS


def new_run_id() -> str:
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def who() -> str:
    return f"{current_user()}@{socket.gethostname()}"


@dataclass
class InstancePlan:
    method: str
    instance_id: str
    instance_state: str
    availability_zone: str
    root_device: str
    root_volume: dict[str, Any]
    snapshot: dict[str, Any]
    elastic_ip: Optional[dict[str, Any]]
    safety_snapshot_name: str
    new_volume_settings: dict[str, Any]
    region: str
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    foreign: Optional[str] = None     # why the snapshot is not this instance's (--allow-foreign-snapshot)

    @property
    def snapshot_id(self) -> str:
        return self.snapshot["SnapshotId"]

    @property
    def root_volume_id(self) -> str:
        return self.root_volume["VolumeId"]

    def to_json(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "method": self.method, "region": self.region,
            "instance": {"id": self.instance_id, "state": self.instance_state,
                         "availabilityZone": self.availability_zone, "rootDeviceName": self.root_device},
            "currentRootVolume": {k: self.root_volume.get(k) for k in
                                  ("VolumeId", "VolumeType", "Size", "Iops", "Throughput", "Encrypted")},
            "snapshot": {"id": snap["SnapshotId"], "name": ec2api.tags_of(snap).get("Name"),
                         "state": snap.get("State"), "volumeId": snap.get("VolumeId"),
                         "sizeGiB": snap.get("VolumeSize"), "started": iso_utc(snap.get("StartTime"))},
            "elasticIp": self.elastic_ip, "safetySnapshotName": self.safety_snapshot_name,
            "newVolume": self.new_volume_settings if self.method == "detach" else None,
            "foreignSnapshot": self.foreign,
            "steps": self.steps, "warnings": self.warnings, "blockers": self.blockers,
        }


def resolve_snapshot(ec2, id_or_name: str) -> dict[str, Any]:
    snap = ec2api.find_snapshot(ec2, id_or_name)
    if snap is None:
        raise UsageError(f"--snapshot {id_or_name!r}: no snapshot with that id or Name tag in "
                         f"{ec2.meta.region_name}; `backupctl list` shows the strategy's snapshots")
    return snap


def root_lineage(ec2, iid: str, current_root: str) -> set[str]:
    """The volumes that are or were `iid`'s root: the current one, those its own snapshots were taken
    of (tag Instance=iid, the Volume tag agreeing with the snapshot's VolumeId: CLI, baseline and
    safety snapshots) and the volumes restores made for it (tag Instance=iid)."""
    volumes = {current_root}
    for snap in ec2api.snapshots_of_instance(ec2, iid):
        recorded = ec2api.tags_of(snap).get("Volume")
        if snap.get("VolumeId") and recorded in (None, snap.get("VolumeId")):
            volumes.add(snap["VolumeId"])
    volumes.update(v["VolumeId"] for v in ec2api.volumes_tagged(ec2, "Instance", iid))
    return volumes


def foreign_reason(snap: dict[str, Any], iid: str, current_root: str, lineage: set[str]) -> Optional[str]:
    """None when `snap` is of this instance (Instance tag absent or iid, volume in its root lineage)."""
    owner = ec2api.tags_of(snap).get("Instance")
    if owner is not None and owner != iid:
        return f"{snap['SnapshotId']} belongs to instance {owner} (tag Instance), not {iid}"
    if snap.get("VolumeId") not in lineage:
        return (f"{snap['SnapshotId']} is of volume {snap.get('VolumeId')}, neither {iid}'s current root "
                f"{current_root} nor a former root of it")
    return None


def resolve_instance_snapshot(ec2, ref: str, iid: str, current_root: str,
                              allow_foreign: bool) -> tuple[dict[str, Any], Optional[str]]:
    """The snapshot `ref` (id or Name tag) names for restoring `iid`, and why it is foreign (None: it
    is this instance's). A name resolves among this instance's snapshots only; UsageError (exit 2)
    when none or several match, or for a foreign one without allow_foreign."""
    lineage = root_lineage(ec2, iid, current_root)
    allow = "; restoring it onto " + iid + " needs --allow-foreign-snapshot (the plan then says so)"
    if ref.startswith("snap-"):
        snap = resolve_snapshot(ec2, ref)
        reason = foreign_reason(snap, iid, current_root, lineage)
        if reason and not allow_foreign:
            raise UsageError(f"--snapshot {ref}: {reason}{allow}")
        return snap, reason
    named = ec2api.snapshots_named(ec2, ref)
    named = [s for s in named if s.get("State") != "error"] or named
    if not named:
        resolve_snapshot(ec2, ref)   # raises the one "no such snapshot" message
    own = [s for s in named if foreign_reason(s, iid, current_root, lineage) is None]
    pool = named if allow_foreign else own
    if not pool:
        others = "; ".join(str(foreign_reason(s, iid, current_root, lineage)) for s in named)
        raise UsageError(f"--snapshot {ref!r}: no snapshot of {iid} has that name, only others: {others}. Give "
                         f"the id with --allow-foreign-snapshot if you really mean one of them")
    if len(pool) > 1:
        listed = ", ".join(f"{s['SnapshotId']} (volume {s.get('VolumeId')}, started {iso_utc(s.get('StartTime'))}"
                           f"{', foreign' if s not in own else ''})" for s in pool)
        raise UsageError(f"--snapshot {ref!r}: {len(pool)} snapshots have that name: {listed}; give one by id")
    return pool[0], foreign_reason(pool[0], iid, current_root, lineage)


def build_instance_plan(session: Session, iid: str, method: str, snapshot_ref: str,
                        allow_foreign: bool = False) -> InstancePlan:
    """Read-only: everything the restore will touch, every step with ids, and what blocks it."""
    ec2 = session.client("ec2")
    instance = ec2api.describe_instance(ec2, iid)
    root = ec2api.describe_volume(ec2, ec2api.root_volume_id(instance))
    snapshot, foreign = resolve_instance_snapshot(ec2, snapshot_ref, iid, root["VolumeId"], allow_foreign)
    address = ec2api.elastic_ip(ec2, iid)
    eip = {"PublicIp": address.get("PublicIp"), "AllocationId": address.get("AllocationId")} if address else None
    now = utcnow()
    try:
        safety_name = snapshot_name(now.date(), f"restore-{snapshot['SnapshotId']}-{now:%H%M%S}")
    except ConfigError as e:  # cannot happen for a real snapshot id; keep the one-line contract anyway
        raise UsageError(str(e)) from None
    plan = InstancePlan(
        method=method, instance_id=iid, instance_state=instance["State"]["Name"],
        availability_zone=instance["Placement"]["AvailabilityZone"], root_device=instance["RootDeviceName"],
        root_volume=root, snapshot=snapshot, elastic_ip=eip, safety_snapshot_name=safety_name,
        new_volume_settings=ec2api.volume_settings_like(root, snapshot), region=session.region, foreign=foreign)
    plan.steps = _plan_steps(plan)
    _find_blockers(ec2, plan, instance)
    return plan


def _plan_steps(plan: InstancePlan) -> list[str]:
    iid, root_id, sid, eip = plan.instance_id, plan.root_volume_id, plan.snapshot_id, plan.elastic_ip
    steps = [f"tag {iid} {RESTORE_MARKER_TAG} (refuses a second restore meanwhile)",
             f"safety snapshot of the current root {root_id} named {plan.safety_snapshot_name}; wait until completed"]
    if plan.method == "replace-root":
        steps += [
            f"create a replace-root-volume task: instance {iid}, snapshot {sid}, DeleteReplacedRootVolume=false "
            f"(the instance reboots; its id, network interfaces and Elastic IP stay)",
            "poll the task until succeeded (fail on failed / failed-detached)",
        ]
    else:
        settings = plan.new_volume_settings
        steps += [
            f"stop {iid}; wait until stopped",
            f"detach the root {root_id} from {plan.root_device}; wait until available",
            f"create a volume from {sid} in {plan.availability_zone} ({settings['VolumeType']}, {settings['Size']} GiB"
            + (f", {settings['Iops']} IOPS" if settings.get("Iops") else "")
            + (f", {settings['Throughput']} MiB/s" if settings.get("Throughput") else "")
            + "); wait until available",
            f"attach it to {iid} at {plan.root_device}; wait until in-use",
            f"start {iid}; wait until running",
            f"associate the Elastic IP {eip['AllocationId']} ({eip['PublicIp']}) with {iid}" if eip
            else "no Elastic IP to re-associate",
        ]
    steps.append(f"check: {iid} running on the new root"
                 + (f", Elastic IP {eip['PublicIp']} associated" if eip else ""))
    steps.append(f"tag the old root {root_id} {REPLACED_TAG}=<time> (kept, never deleted); "
                 f"remove the {RESTORE_MARKER_TAG} tag; print the recovery time")
    return steps


def _find_blockers(ec2, plan: InstancePlan, instance: dict[str, Any]) -> None:
    """What stops the plan (blockers) or deserves a second look (warnings)."""
    iid, sid, method, snapshot = plan.instance_id, plan.snapshot_id, plan.method, plan.snapshot
    if snapshot.get("State") != "completed":
        plan.blockers.append(f"snapshot {sid} is {snapshot.get('State')}, not completed")
    marker = ec2api.restore_marker(instance)
    if marker:
        plan.blockers.append(
            f"a restore is already in progress on {iid} ({RESTORE_MARKER_TAG}={marker}); if it is stale "
            f"(that run is no longer running): aws ec2 delete-tags --resources {iid} --tags "
            f"Key={RESTORE_MARKER_TAG} --region {plan.region}")
    try:
        active = ec2api.active_replace_root_tasks(ec2, iid)
    except RESTORE_FAILURES as e:
        # replace-root cannot work without this API; detach only loses a second line of defence.
        active = []
        problem = f"could not list replace-root-volume tasks of {iid}: {failure_message(e)}"
        (plan.blockers if method == "replace-root" else plan.warnings).append(problem)
    if active:
        plan.blockers.append("a replace-root-volume task is already running on " + iid + ": " + ", ".join(
            f"{t['ReplaceRootVolumeTaskId']} ({t.get('TaskState')})" for t in active))
    if snapshot.get("VolumeId") != plan.root_volume_id:
        plan.warnings.append(
            f"snapshot {sid} is of volume {snapshot.get('VolumeId')}, not of the current root {plan.root_volume_id}"
            + (": replace-root accepts only snapshots of this instance's root volume lineage; AWS may "
               "reject it (use --method detach then)" if method == "replace-root" else ""))
    if method == "replace-root" and plan.instance_state != "running":
        plan.blockers.append(f"replace-root needs a running instance; {iid} is {plan.instance_state} "
                             f"(start it, or use --method detach)")
    if method == "detach" and not plan.elastic_ip:
        plan.warnings.append(f"{iid} has no Elastic IP: its public IP changes when it is stopped and started")
    if method == "detach" and plan.instance_state not in ("running", "stopped"):
        plan.blockers.append(f"{iid} is {plan.instance_state}; wait until it is running or stopped")


@dataclass
class DetachProgress:
    """What the detach method has changed so far (drives rollback and the next-steps text)."""
    was_running: bool
    stopped: bool = False
    old_detached: bool = False
    new_volume_id: Optional[str] = None
    new_attached: bool = False
    started: bool = False


def _detach_next_steps(plan: InstancePlan, state: DetachProgress) -> list[str]:
    """The exact commands that bring the instance back to its original root from `state`."""
    iid, r = plan.instance_id, f"--region {plan.region}"
    steps = [f"aws ec2 stop-instances --instance-ids {iid} {r}",
             f"aws ec2 wait instance-stopped --instance-ids {iid} {r}"]
    if state.new_attached and state.new_volume_id:
        steps += [f"aws ec2 detach-volume --volume-id {state.new_volume_id} --instance-id {iid} {r}",
                  f"aws ec2 wait volume-available --volume-ids {state.new_volume_id} {r}"]
    if state.old_detached:
        steps += [f"aws ec2 attach-volume --volume-id {plan.root_volume_id} --instance-id {iid} "
                  f"--device {plan.root_device} {r}",
                  f"aws ec2 wait volume-in-use --volume-ids {plan.root_volume_id} {r}"]
    steps += [f"aws ec2 start-instances --instance-ids {iid} {r}",
              f"aws ec2 wait instance-running --instance-ids {iid} {r}"]
    if plan.elastic_ip:
        steps.append(f"aws ec2 associate-address --allocation-id {plan.elastic_ip['AllocationId']} "
                     f"--instance-id {iid} --allow-reassociation {r}")
    return steps


def _rollback_detach(ec2, plan: InstancePlan, state: DetachProgress, timeout: float, poll: float,
                     progress: Callable[[str], None]) -> None:
    """Put the original root back and start the instance (if it was running). Raises on failure."""
    iid = plan.instance_id
    progress(f"rollback: putting the original root {plan.root_volume_id} back on {iid}")
    current = ec2api.describe_instance(ec2, iid)
    if current["State"]["Name"] not in ("stopped",):
        ec2api.stop_instance(ec2, iid, timeout, poll)
    if state.new_attached and state.new_volume_id:
        ec2api.detach_volume(ec2, state.new_volume_id, iid, plan.root_device)
        ec2api.wait_volume_available(ec2, state.new_volume_id, timeout, poll)
        state.new_attached = False
    if state.old_detached:
        ec2api.attach_volume(ec2, plan.root_volume_id, iid, plan.root_device)
        ec2api.wait_volume_in_use(ec2, plan.root_volume_id, timeout, poll)
        state.old_detached = False
    if state.was_running:
        ec2api.start_instance(ec2, iid, timeout, poll)
        if plan.elastic_ip:
            ec2api.associate_elastic_ip(ec2, plan.elastic_ip["AllocationId"], iid)


def _restore_detach(ec2, plan: InstancePlan, run_id: str, timeout: float, poll: float,
                    progress: Callable[[str], None]) -> str:
    """The seed's six steps; returns the new root volume id. On a failure, rolls back and raises
    RestoreFailed carrying whether the rollback worked and the next steps."""
    iid = plan.instance_id
    state = DetachProgress(was_running=plan.instance_state == "running")
    step = "stop"
    try:
        if state.was_running:
            progress(f"1/6 stopping {iid}")
            ec2api.stop_instance(ec2, iid, timeout, poll)
            state.stopped = True
        step = "detach the root"
        progress(f"2/6 detaching the root {plan.root_volume_id} from {plan.root_device}")
        ec2api.detach_volume(ec2, plan.root_volume_id, iid, plan.root_device)
        state.old_detached = True
        ec2api.wait_volume_available(ec2, plan.root_volume_id, timeout, poll)
        step = "create the volume"
        progress(f"3/6 creating a volume from {plan.snapshot_id} in {plan.availability_zone}")
        state.new_volume_id = ec2api.create_volume_from_snapshot(
            ec2, plan.snapshot_id, plan.availability_zone, plan.new_volume_settings,
            {"Name": f"{iid}-root-restored-{plan.snapshot_id}", RESTORED_FROM_TAG: plan.snapshot_id,
             RESTORE_RUN_TAG: run_id, "Instance": iid})
        ec2api.wait_volume_available(ec2, state.new_volume_id, timeout, poll)
        step = "attach the new root"
        progress(f"4/6 attaching {state.new_volume_id} at {plan.root_device}")
        ec2api.attach_volume(ec2, state.new_volume_id, iid, plan.root_device)
        state.new_attached = True
        ec2api.wait_volume_in_use(ec2, state.new_volume_id, timeout, poll)
        step = "start"
        progress(f"5/6 starting {iid}")
        ec2api.start_instance(ec2, iid, timeout, poll)
        state.started = True
    except KeyboardInterrupt:
        # No automatic rollback against the operator's wish; leave the way back on screen.
        progress(f"interrupted during step '{step}'; to put {iid} back on its original root, run:")
        for command in _detach_next_steps(plan, state):
            progress(f"  {command}")
        raise
    except Exception as e:  # whatever broke, the instance must not stay half-restored
        cause = f"step '{step}' failed: {failure_message(e)}"
        try:
            _rollback_detach(ec2, plan, state, timeout, poll, progress)
        except Exception as rollback_error:
            unused = (f"; the new volume {state.new_volume_id} (from {plan.snapshot_id}) is not in use: delete it "
                      f"once {iid} is back on {plan.root_volume_id}" if state.new_volume_id else "")
            next_steps = _detach_next_steps(plan, state) + (
                [f"aws ec2 delete-volume --volume-id {state.new_volume_id} --region {plan.region}"]
                if state.new_volume_id else [])
            raise RestoreFailed(f"{cause}; rollback failed too: {failure_message(rollback_error)}{unused}",
                                rolled_back=False, next_steps=next_steps,
                                new_volume_id=state.new_volume_id) from None
        keep = (f"; the unused new volume {state.new_volume_id} is kept: delete it with aws ec2 delete-volume "
                f"--volume-id {state.new_volume_id} --region {plan.region}" if state.new_volume_id else "")
        raise RestoreFailed(f"{cause}; rolled back: {iid} is back on its original root {plan.root_volume_id}"
                            + (" and running" if state.was_running else "") + keep,
                            rolled_back=True, next_steps=[], new_volume_id=state.new_volume_id) from None
    if plan.elastic_ip:
        progress(f"6/6 associating the Elastic IP {plan.elastic_ip['PublicIp']} with {iid}")
        try:
            ec2api.associate_elastic_ip(ec2, plan.elastic_ip["AllocationId"], iid)
        except RESTORE_FAILURES as e:
            # The instance already runs on the restored root: rolling that back would undo a good
            # restore for a networking step; say exactly what to run instead.
            raise RestoreFailed(
                f"step 'associate the Elastic IP' failed: {failure_message(e)}; {iid} runs on the restored root "
                f"{state.new_volume_id} without it", rolled_back=False, new_volume_id=state.new_volume_id,
                next_steps=[f"aws ec2 associate-address --allocation-id {plan.elastic_ip['AllocationId']} "
                            f"--instance-id {iid} --allow-reassociation --region {plan.region}"]) from None
    else:
        progress("6/6 no Elastic IP to re-associate")
    return state.new_volume_id


def _restore_replace_root(ec2, plan: InstancePlan, run_id: str, timeout: float, poll: float,
                          progress: Callable[[str], None]) -> str:
    iid = plan.instance_id
    progress(f"creating a replace-root-volume task for {iid} from {plan.snapshot_id}")
    task = ec2api.create_replace_root_task(
        ec2, iid, plan.snapshot_id, {"Name": f"restore {iid} from {plan.snapshot_id}",
                                     RESTORE_RUN_TAG: run_id, RESTORED_FROM_TAG: plan.snapshot_id},
        client_token=run_id)
    task_id = task["ReplaceRootVolumeTaskId"]
    final = ec2api.wait_replace_root_task(ec2, task_id, timeout, progress, poll_seconds=poll)
    state = final.get("TaskState")
    r = f"--region {plan.region}"
    if state == "failed":
        raise RestoreFailed(
            f"replace-root-volume task {task_id} failed; AWS keeps {iid} on its original root "
            f"{plan.root_volume_id}", rolled_back=True,
            next_steps=[f"aws ec2 describe-replace-root-volume-tasks --replace-root-volume-task-ids {task_id} {r}",
                        f"backupctl restore-instance --snapshot {plan.snapshot_id} --method detach"])
    if state == "failed-detached":
        raise RestoreFailed(
            f"replace-root-volume task {task_id} ended failed-detached: {iid} has NO root volume attached",
            rolled_back=False, next_steps=[
                f"aws ec2 stop-instances --instance-ids {iid} {r}",
                f"aws ec2 wait instance-stopped --instance-ids {iid} {r}",
                f"aws ec2 attach-volume --volume-id {plan.root_volume_id} --instance-id {iid} "
                f"--device {plan.root_device} {r}",
                f"aws ec2 wait volume-in-use --volume-ids {plan.root_volume_id} {r}",
                f"aws ec2 start-instances --instance-ids {iid} {r}"])
    ec2api.wait_instance_running(ec2, iid, timeout, poll)   # the task reboots the instance
    return ec2api.root_volume_id(ec2api.describe_instance(ec2, iid))


class RestoreFailed(CommandError):
    """A restore step failed. rolled_back: True the instance is back as it was, False it is not
    (next_steps say what to do), None nothing had been changed on the instance yet."""

    def __init__(self, message: str, *, rolled_back: Optional[bool], next_steps: list[str],
                 new_volume_id: Optional[str] = None):
        super().__init__(message)
        self.rolled_back = rolled_back
        self.next_steps = next_steps
        self.new_volume_id = new_volume_id


def failure_message(e: BaseException) -> str:
    return str(e) if isinstance(e, CommandError) else describe(e)


def verify_restored(ec2, plan: InstancePlan, new_root: Optional[str]) -> list[dict[str, Any]]:
    """The end checks: running, root is the restored volume (not the old one), Elastic IP associated."""
    instance = ec2api.describe_instance(ec2, plan.instance_id)
    state = instance["State"]["Name"]
    checks = [{"name": "instance running", "ok": state == "running", "detail": f"state {state}"}]
    try:
        current = ec2api.root_volume_id(instance)
    except CommandError as e:
        current = None
        checks.append({"name": "restored root attached", "ok": False, "detail": str(e)})
    if current is not None:
        ok = current != plan.root_volume_id and (new_root is None or current == new_root)
        checks.append({"name": "restored root attached", "ok": ok,
                       "detail": f"{current} at {instance['RootDeviceName']} (old root {plan.root_volume_id})"})
    if plan.elastic_ip:
        address = ec2api.address_by_allocation(ec2, plan.elastic_ip["AllocationId"])
        on = (address or {}).get("InstanceId")
        checks.append({"name": "Elastic IP associated", "ok": on == plan.instance_id,
                       "detail": f"{plan.elastic_ip['PublicIp']} is associated with {on or 'nothing'}"})
    return checks


@dataclass
class InstanceRestore:
    """What an executed restore did. `error` set: it failed (rolled_back/next_steps say how it stands)."""
    run_id: str
    plan: InstancePlan
    safety_snapshot: Optional[dict[str, str]] = None
    new_root: Optional[str] = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    restore_seconds: float = 0.0
    error: Optional[RestoreFailed] = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c["ok"] for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"executed": True, "runId": self.run_id, "plan": self.plan.to_json(), "ok": self.ok}
        if self.safety_snapshot:
            doc["safetySnapshot"] = self.safety_snapshot
        if self.error is not None:
            doc.update({"error": str(self.error), "rolledBack": self.error.rolled_back,
                        "nextSteps": self.error.next_steps, "seconds": self.seconds})
        else:
            doc.update({"newRootVolumeId": self.new_root, "oldRootVolumeId": self.plan.root_volume_id,
                        "checks": self.checks, "recoverySeconds": self.seconds,
                        "restoreStepSeconds": self.restore_seconds})
        return doc


def _claim(ec2, iid: str, marker: str) -> None:
    """Mutual exclusion: write our marker, then read it back; whoever's value is there owns the instance."""
    ec2api.set_restore_marker(ec2, iid, marker)
    holder = ec2api.restore_marker(ec2api.describe_instance(ec2, iid))
    if holder != marker:
        raise CommandError(f"another restore took {iid} at the same moment ({RESTORE_MARKER_TAG}={holder}); "
                           f"nothing changed")


def _safety_snapshot(session: Session, ec2, plan: InstancePlan, run_id: str, timeout: float,
                     poll: float) -> dict[str, str]:
    iid = plan.instance_id
    session.progress(f"safety snapshot of {plan.root_volume_id}: {plan.safety_snapshot_name}")
    instance = ec2api.describe_instance(ec2, iid)
    tags = {"Reason": f"safety copy before restoring {iid} from {plan.snapshot_id}", "Instance": iid,
            "Volume": plan.root_volume_id, RESTORE_RUN_TAG: run_id}
    try:
        tags["CreatedBy"] = stsapi.caller_arn(session.client("sts"))
    except RESTORE_FAILURES:
        pass  # the snapshot is still tagged with the run; CreatedBy is informative only
    safety = ec2api.create_root_snapshot(ec2, instance, plan.safety_snapshot_name, tags)
    ec2api.wait_snapshot_completed(ec2, safety["SnapshotId"], timeout, session.progress, poll_seconds=poll)
    session.log("restore-instance-safety-snapshot", run_id=run_id, snapshot_id=safety["SnapshotId"])
    return {"id": safety["SnapshotId"], "name": plan.safety_snapshot_name}


def execute_instance_restore(session: Session, plan: InstancePlan, timeout: float, poll: float) -> InstanceRestore:
    """Run a plan without blockers. Failures come back in the result (logged), not as exceptions."""
    ec2 = session.client("ec2")
    iid = plan.instance_id
    outcome = InstanceRestore(run_id=new_run_id(), plan=plan)
    marker = f"{utcnow().isoformat(timespec='seconds')} {outcome.run_id} {who()}"
    with operation(session.log, "restore-instance", run_id=outcome.run_id, start={"plan": plan.to_json()}) as op:
        started = time.monotonic()
        _claim(ec2, iid, marker)
        try:
            outcome.safety_snapshot = _safety_snapshot(session, ec2, plan, outcome.run_id, timeout, poll)
            restore_started = time.monotonic()
            method = _restore_replace_root if plan.method == "replace-root" else _restore_detach
            outcome.new_root = method(ec2, plan, outcome.run_id, timeout, poll, session.progress)
            outcome.restore_seconds = round(time.monotonic() - restore_started, 1)
            ec2api.tag_resources(ec2, [plan.root_volume_id], {REPLACED_TAG: utcnow().isoformat(timespec="seconds"),
                                                              RESTORE_RUN_TAG: outcome.run_id})
            outcome.checks = verify_restored(ec2, plan, outcome.new_root)
        except RestoreFailed as e:
            outcome.error = e
        except RESTORE_FAILURES as e:
            outcome.error = RestoreFailed(failure_message(e), rolled_back=None, next_steps=[])
        finally:
            try:
                ec2api.clear_restore_marker(ec2, iid, marker)
            except RESTORE_FAILURES as e:
                session.progress(f"warning: could not remove {RESTORE_MARKER_TAG} from {iid}: {failure_message(e)}; "
                                 f"run aws ec2 delete-tags --resources {iid} --tags Key={RESTORE_MARKER_TAG} "
                                 f"--region {plan.region}")
        outcome.seconds = round(time.monotonic() - started, 1)
        failure = outcome.error
        if failure is not None:
            op.end("failed", error=str(failure), rolled_back=failure.rolled_back, next_steps=failure.next_steps,
                   new_volume_id=failure.new_volume_id)
        else:
            op.end("finished", ok=outcome.ok, new_root=outcome.new_root, old_root=plan.root_volume_id,
                   recovery_seconds=outcome.seconds, checks=outcome.checks)
    return outcome
