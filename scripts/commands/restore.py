"""`backupctl restore-instance` (section 6.1) and `backupctl restore-files` (section 6.2).

Both print the exact plan and change nothing without --yes. restore-instance always takes a safety
snapshot of the current root first and never deletes the old root; restore-files deletes only what it
created (temporary volume, helper instance, its own S3 output), also when a step fails.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from components.config import RESTORES_PREFIX, ConfigError, snapshot_name
from scripts import ec2ops, restoreops as ops
from scripts.common import (EXIT_FAILED, EXIT_OK, CommandError, Context, UsageError, add_common_options,
                            _user, aws_error_message, utcnow)

METHODS = ("replace-root", "detach")
INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
AMI_ID_RE = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
SG_ID_RE = re.compile(r"^sg-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
# ResponseParserError is not a BotoCoreError: an endpoint answering garbage (a proxy's HTML page, an
# emulator without the API) must still end in rollback/cleanup and a one-line message.
AWS_FAILURES = (CommandError, ClientError, BotoCoreError, ResponseParserError)

RESTORE_INSTANCE_HELP = """\
Section 6.1: restore the production instance's root volume from a snapshot (id or Name tag).

Without --yes: print the plan (instance, current root volume, AZ, device, snapshot, Elastic IP, every
step) and change nothing. With --yes:
  0. a safety snapshot of the CURRENT root volume (always; waited until completed);
  replace-root (default): an EC2 replace-root-volume task (keeps the instance id, network interfaces
     and Elastic IP; the instance reboots; the old root is kept); needs a running instance and a
     snapshot of this instance's root volume;
  detach: stop, detach the root, create a volume from the snapshot in the same AZ (same type/IOPS/
     throughput/encryption), attach it at the RootDeviceName, start, re-associate the Elastic IP.
     If a step fails, the original root is put back and the instance started again; if that fails too,
     the exact commands to run next are printed.
Both end by checking the instance runs on the new root with its Elastic IP and print the recovery
time. The old root volume is never deleted (tagged quickport:replaced-by-restore). A second restore
while one runs is refused (instance tag quickport:restore-in-progress; active replace-root tasks).
Exit 0 restored (or plan printed), 1 a step or check failed, 2 bad input (e.g. unknown snapshot)."""

RESTORE_FILES_HELP = """\
Section 6.2: copy single files or directories out of an EBS snapshot without touching production.
(To restore from the nightly files archive in the dump bucket instead, use `files-restore`.)

Creates a volume from the snapshot in the production instance's AZ, attaches it to a temporary helper
instance (production's subnet; AMI: production's own or --helper-ami; instance profile: production's
own or --helper-profile; it needs SSM and s3:PutObject on the dump bucket's restores/ prefix, which
the production instance role has) or to --attach-to an existing helper, then through SSM Run Command mounts it read-only, packs the paths and
hands them back through the dump bucket (restores/<run>/), and unpacks them into --to DIR. Afterwards
(also when a step fails) it detaches and deletes the temporary volume, terminates the helper it made
and deletes its restores/<run>/ output; nothing that existed before is deleted.
Without --yes: print the plan, change nothing. Exit 0 files restored, 1 a step failed, 2 bad input."""


def _minutes(value: str) -> float:
    try:
        minutes = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of minutes") from None
    if not 0 < minutes <= 24 * 60:
        raise argparse.ArgumentTypeError(f"{value!r}: must be more than 0 and at most 1440 minutes")
    return minutes


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 300:
        raise argparse.ArgumentTypeError(f"{value!r}: must be more than 0 and at most 300 seconds")
    return seconds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore-instance", help="section 6.1: restore the root volume from a snapshot",
                       description=RESTORE_INSTANCE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snapshot", required=True, metavar="SNAPSHOT", help="snapshot id (snap-...) or Name tag")
    p.add_argument("--method", choices=METHODS, default="replace-root",
                   help="replace-root (default: EC2 replace-root-volume task) or detach (the six manual steps)")
    p.add_argument("--yes", action="store_true", help="execute the plan (without it: print the plan only)")
    p.add_argument("--timeout", type=_minutes, default=60.0, metavar="MIN",
                   help="limit for each long wait: snapshot, task, stop/start (default 60 minutes)")
    p.add_argument("--poll-seconds", type=_seconds, default=15.0, metavar="S",
                   help="how often long waits check AWS (default 15)")
    add_common_options(p)
    p.set_defaults(handler=run_restore_instance)

    f = sub.add_parser("restore-files", help="section 6.2: copy paths out of an EBS snapshot via a temporary volume",
                       description=RESTORE_FILES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--snapshot", required=True, metavar="SNAPSHOT", help="snapshot id (snap-...) or Name tag")
    f.add_argument("--path", required=True, action="extend", nargs="+", metavar="P",
                   help="absolute path inside the snapshot's filesystem (repeatable), e.g. /var/www/quickport/.env")
    f.add_argument("--to", type=Path, default=None, metavar="DIR",
                   help="new directory for the restored files (default ./restored-<UTC time>/)")
    f.add_argument("--attach-to", default=None, metavar="INSTANCE",
                   help="use this existing helper instance (same AZ, SSM-managed) instead of launching one")
    f.add_argument("--helper-ami", default=None, metavar="AMI", help="AMI of the temporary helper "
                   "(default: the production instance's own AMI)")
    f.add_argument("--helper-type", default="t3.micro", metavar="TYPE", help="helper instance type (default t3.micro)")
    f.add_argument("--helper-profile", default=None, metavar="NAME",
                   help="instance profile of the helper (default: the production instance's profile)")
    f.add_argument("--helper-security-group", action="append", default=[], metavar="SG",
                   help="security group of the helper (repeatable; default: the VPC's default group)")
    f.add_argument("--bucket", default=None, help="bucket for the helper's output (default: the stack's dump bucket)")
    f.add_argument("--yes", action="store_true", help="execute the plan (without it: print the plan only)")
    f.add_argument("--timeout", type=_minutes, default=30.0, metavar="MIN",
                   help="limit for each long wait (default 30 minutes)")
    f.add_argument("--poll-seconds", type=_seconds, default=10.0, metavar="S",
                   help="how often long waits check AWS (default 10)")
    add_common_options(f)
    f.set_defaults(handler=run_restore_files)


# --- shared lookups -------------------------------------------------------------------------------------

def _resolve_snapshot(ec2, id_or_name: str) -> dict[str, Any]:
    snap = ec2ops.find_snapshot(ec2, id_or_name)
    if snap is None:
        raise UsageError(f"--snapshot {id_or_name!r}: no snapshot with that id or Name tag in "
                         f"{ec2.meta.region_name}; `backupctl list` shows the strategy's snapshots")
    return snap


def _instance_id(ctx: Context) -> str:
    iid = ctx.instance_id
    if not INSTANCE_ID_RE.match(iid):
        raise UsageError(f"--instance-id {iid!r}: must be an EC2 instance id, i- followed by 8 or 17 hex digits")
    return iid


def _run_id() -> str:
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _who() -> str:
    return f"{_user()}@{socket.gethostname()}"


# --- restore-instance -------------------------------------------------------------------------------------

@dataclass
class InstancePlan:
    method: str
    instance_id: str
    instance_state: str
    availability_zone: str
    root_device: str
    root_volume: dict[str, Any]
    snapshot: dict[str, Any]
    elastic_ip: Optional[dict[str, str]]
    safety_snapshot_name: str
    new_volume_settings: dict[str, Any]
    region: str
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

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
            "snapshot": {"id": snap["SnapshotId"], "name": ec2ops.tags_of(snap).get("Name"),
                         "state": snap.get("State"), "volumeId": snap.get("VolumeId"),
                         "sizeGiB": snap.get("VolumeSize"), "started": ec2ops.iso_utc(snap.get("StartTime"))},
            "elasticIp": self.elastic_ip, "safetySnapshotName": self.safety_snapshot_name,
            "newVolume": self.new_volume_settings if self.method == "detach" else None,
            "steps": self.steps, "warnings": self.warnings, "blockers": self.blockers,
        }

    def render(self, executing: bool) -> str:
        snap = self.snapshot
        name = ec2ops.tags_of(snap).get("Name")
        vol = self.root_volume
        eip = (f"{self.elastic_ip['PublicIp']} ({self.elastic_ip['AllocationId']})" if self.elastic_ip
               else "none associated")
        head = ("Executing" if executing else "Plan (nothing changed; re-run with --yes to execute):") + \
            f" restore-instance, method {self.method}, region {self.region}"
        lines = [head,
                 f"  instance        {self.instance_id} ({self.instance_state}) in {self.availability_zone}",
                 f"  root device     {self.root_device}",
                 f"  current root    {vol['VolumeId']} ({vol.get('VolumeType')}, {vol.get('Size')} GiB"
                 f"{', encrypted' if vol.get('Encrypted') else ''})",
                 f"  snapshot        {snap['SnapshotId']}{f' {name}' if name else ''} ({snap.get('State')}, "
                 f"{snap.get('VolumeSize')} GiB, of {snap.get('VolumeId')}, started {ec2ops.iso_utc(snap.get('StartTime'))})",
                 f"  Elastic IP      {eip}",
                 "Steps:"]
        lines += [f"  {i}. {s}" for i, s in enumerate(self.steps, 1)]
        lines += [f"Warning: {w}" for w in self.warnings]
        lines += [f"BLOCKED: {b}" for b in self.blockers]
        return "\n".join(lines)


def build_instance_plan(ec2, ctx: Context, method: str, snapshot_ref: str) -> InstancePlan:
    """Read-only: everything the restore will touch, every step with ids, and what blocks it."""
    iid = _instance_id(ctx)
    snapshot = _resolve_snapshot(ec2, snapshot_ref)
    instance = ec2ops.describe_instance(ec2, iid)
    root_id = ec2ops.root_volume_id(instance)
    root = ops.describe_volume(ec2, root_id)
    address = ec2ops.elastic_ip(ec2, iid)
    eip = {"PublicIp": address.get("PublicIp"), "AllocationId": address.get("AllocationId")} if address else None
    sid = snapshot["SnapshotId"]
    now = utcnow()
    try:
        safety_name = snapshot_name(now.date(), f"restore-{sid}-{now:%H%M%S}")
    except ConfigError as e:  # cannot happen for a real snapshot id; keep the one-line contract anyway
        raise UsageError(str(e)) from None
    plan = InstancePlan(
        method=method, instance_id=iid, instance_state=instance["State"]["Name"],
        availability_zone=instance["Placement"]["AvailabilityZone"], root_device=instance["RootDeviceName"],
        root_volume=root, snapshot=snapshot, elastic_ip=eip, safety_snapshot_name=safety_name,
        new_volume_settings=ops.volume_settings_like(root, snapshot), region=ctx.region)

    plan.steps.append(f"tag {iid} {ops.RESTORE_MARKER_TAG} (refuses a second restore meanwhile)")
    plan.steps.append(f"safety snapshot of the current root {root_id} named {safety_name}; wait until completed")
    if method == "replace-root":
        plan.steps += [
            f"create a replace-root-volume task: instance {iid}, snapshot {sid}, DeleteReplacedRootVolume=false "
            f"(the instance reboots; its id, network interfaces and Elastic IP stay)",
            "poll the task until succeeded (fail on failed / failed-detached)",
        ]
    else:
        settings = plan.new_volume_settings
        plan.steps += [
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
    plan.steps.append(f"check: {iid} running on the new root"
                      + (f", Elastic IP {eip['PublicIp']} associated" if eip else ""))
    plan.steps.append(f"tag the old root {root_id} {ops.REPLACED_TAG}=<time> (kept, never deleted); "
                      f"remove the {ops.RESTORE_MARKER_TAG} tag; print the recovery time")

    if snapshot.get("State") != "completed":
        plan.blockers.append(f"snapshot {sid} is {snapshot.get('State')}, not completed")
    marker = ops.restore_marker(instance)
    if marker:
        plan.blockers.append(
            f"a restore is already in progress on {iid} ({ops.RESTORE_MARKER_TAG}={marker}); if it is stale "
            f"(that run is no longer running): aws ec2 delete-tags --resources {iid} --tags "
            f"Key={ops.RESTORE_MARKER_TAG} --region {ctx.region}")
    try:
        active = ops.active_replace_root_tasks(ec2, iid)
    except AWS_FAILURES as e:
        # replace-root cannot work without this API; detach only loses a second line of defence.
        active = []
        problem = f"could not list replace-root-volume tasks of {iid}: {_message(e)}"
        (plan.blockers if method == "replace-root" else plan.warnings).append(problem)
    if active:
        plan.blockers.append("a replace-root-volume task is already running on " + iid + ": " + ", ".join(
            f"{t['ReplaceRootVolumeTaskId']} ({t.get('TaskState')})" for t in active))
    if snapshot.get("VolumeId") != root_id:
        plan.warnings.append(
            f"snapshot {sid} is of volume {snapshot.get('VolumeId')}, not of the current root {root_id}"
            + (": replace-root accepts only snapshots of this instance's root volume lineage; AWS may "
               "reject it (use --method detach then)" if method == "replace-root" else ""))
    if method == "replace-root" and plan.instance_state != "running":
        plan.blockers.append(f"replace-root needs a running instance; {iid} is {plan.instance_state} "
                             f"(start it, or use --method detach)")
    if method == "detach" and not eip:
        plan.warnings.append(f"{iid} has no Elastic IP: its public IP changes when it is stopped and started")
    if method == "detach" and plan.instance_state not in ("running", "stopped"):
        plan.blockers.append(f"{iid} is {plan.instance_state}; wait until it is running or stopped")
    return plan


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
    current = ec2ops.describe_instance(ec2, iid)
    if current["State"]["Name"] not in ("stopped",):
        ops.stop_instance(ec2, iid, timeout, poll)
    if state.new_attached and state.new_volume_id:
        ops.detach_volume(ec2, state.new_volume_id, iid, plan.root_device)
        ops.wait_volume_available(ec2, state.new_volume_id, timeout, poll)
        state.new_attached = False
    if state.old_detached:
        ops.attach_volume(ec2, plan.root_volume_id, iid, plan.root_device)
        ops.wait_volume_in_use(ec2, plan.root_volume_id, timeout, poll)
        state.old_detached = False
    if state.was_running:
        ops.start_instance(ec2, iid, timeout, poll)
        if plan.elastic_ip:
            ops.associate_elastic_ip(ec2, plan.elastic_ip["AllocationId"], iid)


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
            ops.stop_instance(ec2, iid, timeout, poll)
            state.stopped = True
        step = "detach the root"
        progress(f"2/6 detaching the root {plan.root_volume_id} from {plan.root_device}")
        ops.detach_volume(ec2, plan.root_volume_id, iid, plan.root_device)
        state.old_detached = True
        ops.wait_volume_available(ec2, plan.root_volume_id, timeout, poll)
        step = "create the volume"
        progress(f"3/6 creating a volume from {plan.snapshot_id} in {plan.availability_zone}")
        state.new_volume_id = ops.create_volume_from_snapshot(
            ec2, plan.snapshot_id, plan.availability_zone, plan.new_volume_settings,
            {"Name": f"{iid}-root-restored-{plan.snapshot_id}", ops.RESTORED_FROM_TAG: plan.snapshot_id,
             ops.RESTORE_RUN_TAG: run_id, "Instance": iid})
        ops.wait_volume_available(ec2, state.new_volume_id, timeout, poll)
        step = "attach the new root"
        progress(f"4/6 attaching {state.new_volume_id} at {plan.root_device}")
        ops.attach_volume(ec2, state.new_volume_id, iid, plan.root_device)
        state.new_attached = True
        ops.wait_volume_in_use(ec2, state.new_volume_id, timeout, poll)
        step = "start"
        progress(f"5/6 starting {iid}")
        ops.start_instance(ec2, iid, timeout, poll)
        state.started = True
    except KeyboardInterrupt:
        # No automatic rollback against the operator's wish; leave the way back on screen.
        progress(f"interrupted during step '{step}'; to put {iid} back on its original root, run:")
        for command in _detach_next_steps(plan, state):
            progress(f"  {command}")
        raise
    except Exception as e:  # whatever broke, the instance must not stay half-restored
        cause = f"step '{step}' failed: {_message(e)}"
        try:
            _rollback_detach(ec2, plan, state, timeout, poll, progress)
        except Exception as rollback_error:
            raise RestoreFailed(f"{cause}; rollback failed too: {_message(rollback_error)}",
                                rolled_back=False, next_steps=_detach_next_steps(plan, state),
                                new_volume_id=state.new_volume_id) from None
        keep = (f"; the unused new volume {state.new_volume_id} is kept: delete it with aws ec2 delete-volume "
                f"--volume-id {state.new_volume_id} --region {plan.region}" if state.new_volume_id else "")
        raise RestoreFailed(f"{cause}; rolled back: {iid} is back on its original root {plan.root_volume_id}"
                            + (" and running" if state.was_running else "") + keep,
                            rolled_back=True, next_steps=[], new_volume_id=state.new_volume_id) from None
    if plan.elastic_ip:
        progress(f"6/6 associating the Elastic IP {plan.elastic_ip['PublicIp']} with {iid}")
        try:
            ops.associate_elastic_ip(ec2, plan.elastic_ip["AllocationId"], iid)
        except AWS_FAILURES as e:
            # The instance already runs on the restored root: rolling that back would undo a good
            # restore for a networking step; say exactly what to run instead.
            raise RestoreFailed(
                f"step 'associate the Elastic IP' failed: {_message(e)}; {iid} runs on the restored root "
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
    task = ops.create_replace_root_task(
        ec2, iid, plan.snapshot_id, {"Name": f"restore {iid} from {plan.snapshot_id}",
                                     ops.RESTORE_RUN_TAG: run_id, ops.RESTORED_FROM_TAG: plan.snapshot_id},
        client_token=run_id)
    task_id = task["ReplaceRootVolumeTaskId"]
    final = ops.wait_replace_root_task(ec2, task_id, timeout, progress, poll_seconds=poll)
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
    ops.wait_instance_running(ec2, iid, timeout, poll)   # the task reboots the instance
    return ec2ops.root_volume_id(ec2ops.describe_instance(ec2, iid))


class RestoreFailed(CommandError):
    """A restore step failed. rolled_back: True the instance is back as it was, False it is not
    (next_steps say what to do), None nothing had been changed on the instance yet."""

    def __init__(self, message: str, *, rolled_back: Optional[bool], next_steps: list[str],
                 new_volume_id: Optional[str] = None):
        super().__init__(message)
        self.rolled_back = rolled_back
        self.next_steps = next_steps
        self.new_volume_id = new_volume_id


def _message(e: BaseException) -> str:
    return str(e) if isinstance(e, CommandError) else aws_error_message(e)


def verify_restored(ec2, plan: InstancePlan, new_root: Optional[str]) -> list[dict[str, Any]]:
    """The end checks: running, root is the restored volume (not the old one), Elastic IP associated."""
    instance = ec2ops.describe_instance(ec2, plan.instance_id)
    state = instance["State"]["Name"]
    checks = [{"name": "instance running", "ok": state == "running", "detail": f"state {state}"}]
    try:
        current = ec2ops.root_volume_id(instance)
    except CommandError as e:
        current = None
        checks.append({"name": "restored root attached", "ok": False, "detail": str(e)})
    if current is not None:
        ok = current != plan.root_volume_id and (new_root is None or current == new_root)
        checks.append({"name": "restored root attached", "ok": ok,
                       "detail": f"{current} at {instance['RootDeviceName']} (old root {plan.root_volume_id})"})
    if plan.elastic_ip:
        address = ops.address_by_allocation(ec2, plan.elastic_ip["AllocationId"])
        on = (address or {}).get("InstanceId")
        checks.append({"name": "Elastic IP associated", "ok": on == plan.instance_id,
                       "detail": f"{plan.elastic_ip['PublicIp']} is associated with {on or 'nothing'}"})
    return checks


def run_restore_instance(ctx: Context) -> int:
    args = ctx.args
    ec2 = ctx.client("ec2")
    plan = build_instance_plan(ec2, ctx, args.method, args.snapshot)
    if not args.yes or plan.blockers:
        ctx.emit({"executed": False, "ok": not plan.blockers, "plan": plan.to_json()}, plan.render(False))
        ctx.log("restore-instance-plan", plan=plan.to_json())
        return EXIT_FAILED if plan.blockers else EXIT_OK

    timeout, poll = args.timeout * 60, args.poll_seconds
    iid = plan.instance_id
    run_id = _run_id()
    marker = f"{utcnow().isoformat(timespec='seconds')} {run_id} {_who()}"
    if not ctx.json:
        print(plan.render(True), flush=True)
    ctx.log("restore-instance-started", run_id=run_id, plan=plan.to_json())
    started = time.monotonic()

    # Mutual exclusion: write our marker, then read it back; whoever's value is there owns the instance.
    ops.set_restore_marker(ec2, iid, marker)
    holder = ops.restore_marker(ec2ops.describe_instance(ec2, iid))
    if holder != marker:
        raise CommandError(f"another restore took {iid} at the same moment ({ops.RESTORE_MARKER_TAG}={holder}); "
                           f"nothing changed")
    result: dict[str, Any] = {"executed": True, "runId": run_id, "plan": plan.to_json()}
    try:
        ctx.progress(f"safety snapshot of {plan.root_volume_id}: {plan.safety_snapshot_name}")
        instance = ec2ops.describe_instance(ec2, iid)
        tags = {"Reason": f"safety copy before restoring {iid} from {plan.snapshot_id}", "Instance": iid,
                "Volume": plan.root_volume_id, ops.RESTORE_RUN_TAG: run_id}
        try:
            tags["CreatedBy"] = ec2ops.caller_arn(ctx.client("sts"))
        except AWS_FAILURES:
            pass  # the snapshot is still tagged with the run; CreatedBy is informative only
        safety = ec2ops.create_root_snapshot(ec2, instance, plan.safety_snapshot_name, tags)
        ec2ops.wait_snapshot_completed(ec2, safety["SnapshotId"], timeout, ctx.progress, poll_seconds=poll)
        result["safetySnapshot"] = {"id": safety["SnapshotId"], "name": plan.safety_snapshot_name}
        ctx.log("restore-instance-safety-snapshot", run_id=run_id, snapshot_id=safety["SnapshotId"])

        restore_started = time.monotonic()
        if plan.method == "replace-root":
            new_root = _restore_replace_root(ec2, plan, run_id, timeout, poll, ctx.progress)
        else:
            new_root = _restore_detach(ec2, plan, run_id, timeout, poll, ctx.progress)
        restore_seconds = time.monotonic() - restore_started
        replaced_at = utcnow().isoformat(timespec="seconds")
        ops.tag(ec2, plan.root_volume_id, {ops.REPLACED_TAG: replaced_at, ops.RESTORE_RUN_TAG: run_id})
        checks = verify_restored(ec2, plan, new_root)
    except RestoreFailed as e:
        return _report_failure(ctx, result, e, started)
    except AWS_FAILURES as e:
        return _report_failure(ctx, result, RestoreFailed(
            _message(e), rolled_back=None, next_steps=[]), started)
    finally:
        try:
            ops.clear_restore_marker(ec2, iid, marker)
        except AWS_FAILURES as e:
            ctx.progress(f"warning: could not remove {ops.RESTORE_MARKER_TAG} from {iid}: {_message(e)}; run "
                         f"aws ec2 delete-tags --resources {iid} --tags Key={ops.RESTORE_MARKER_TAG} "
                         f"--region {plan.region}")

    total = time.monotonic() - started
    ok = all(c["ok"] for c in checks)
    result.update({"ok": ok, "newRootVolumeId": new_root, "oldRootVolumeId": plan.root_volume_id,
                   "checks": checks, "recoverySeconds": round(total, 1), "restoreStepSeconds": round(restore_seconds, 1)})
    ctx.log("restore-instance-finished", run_id=run_id, ok=ok, new_root=new_root, old_root=plan.root_volume_id,
            recovery_seconds=round(total, 1), checks=checks)
    lines = [f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}" for c in checks]
    text = "\n".join([
        f"Restore of {iid} from {plan.snapshot_id} ({plan.method}) {'finished' if ok else 'finished with FAILED checks'}",
        *lines,
        f"  safety snapshot {result['safetySnapshot']['id']} ({plan.safety_snapshot_name})",
        f"  old root {plan.root_volume_id} kept, tagged {ops.REPLACED_TAG}",
        f"  recovery time {total:.1f} s (restore step {restore_seconds:.1f} s, the rest is the safety snapshot)",
    ])
    ctx.emit(result, text)
    return EXIT_OK if ok else EXIT_FAILED


def _report_failure(ctx: Context, result: dict[str, Any], e: RestoreFailed, started: float) -> int:
    result.update({"ok": False, "error": str(e), "rolledBack": e.rolled_back, "nextSteps": e.next_steps,
                   "seconds": round(time.monotonic() - started, 1)})
    ctx.log("restore-instance-failed", run_id=result.get("runId"), error=str(e), rolled_back=e.rolled_back,
            next_steps=e.next_steps)
    text = [f"RESTORE FAILED: {e}"]
    if e.next_steps:
        text.append("Do next, in this order:")
        text += [f"  {i}. {s}" for i, s in enumerate(e.next_steps, 1)]
    ctx.emit(result, "\n".join(text))
    return EXIT_FAILED


# --- restore-files ----------------------------------------------------------------------------------------

def _validate_paths(paths: list[str]) -> list[str]:
    clean: list[str] = []
    for p in paths:
        if (not p.startswith("/") or p.rstrip("/") == "" or "\0" in p or "\n" in p
                or ".." in p.split("/")):
            raise UsageError(f"--path {p!r}: must be an absolute path inside the snapshot, without '..', not '/'")
        p = p.rstrip("/")
        if p not in clean:
            clean.append(p)
    return clean


def _destination(to: Optional[Path]) -> Path:
    dest = to or Path(f"restored-{utcnow():%Y%m%dT%H%M%SZ}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"--to {str(dest)!r}: exists and is not an empty directory; choose a new directory")
    return dest


@dataclass
class FilesPlan:
    instance_id: str
    availability_zone: str
    subnet_id: str
    snapshot: dict[str, Any]
    paths: list[str]
    destination: Path
    bucket: str
    output_prefix: str
    helper_id: Optional[str]            # --attach-to; None: launch one
    helper_ami: Optional[str]
    helper_type: str
    helper_profile: Optional[dict[str, str]]
    security_groups: list[str]
    region: str
    steps: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance_id, "availabilityZone": self.availability_zone, "subnet": self.subnet_id,
                "snapshot": {"id": self.snapshot["SnapshotId"], "name": ec2ops.tags_of(self.snapshot).get("Name"),
                             "sizeGiB": self.snapshot.get("VolumeSize"), "state": self.snapshot.get("State")},
                "paths": self.paths, "to": str(self.destination), "bucket": self.bucket,
                "outputPrefix": self.output_prefix, "attachTo": self.helper_id,
                "helper": None if self.helper_id else {"ami": self.helper_ami, "type": self.helper_type,
                                                       "profile": self.helper_profile,
                                                       "securityGroups": self.security_groups},
                "steps": self.steps, "blockers": self.blockers, "region": self.region}

    def render(self, executing: bool) -> str:
        head = ("Executing" if executing else "Plan (nothing changed; re-run with --yes to execute):") + \
            f" restore-files from {self.snapshot['SnapshotId']}, region {self.region}"
        lines = [head, f"  paths           {' '.join(self.paths)}", f"  to              {self.destination}/",
                 "Steps:"]
        lines += [f"  {i}. {s}" for i, s in enumerate(self.steps, 1)]
        lines += [f"BLOCKED: {b}" for b in self.blockers]
        return "\n".join(lines)


def build_files_plan(ec2, ctx: Context, run_id: str) -> FilesPlan:
    args = ctx.args
    paths = _validate_paths(args.path)
    destination = _destination(args.to)
    if args.helper_ami and not AMI_ID_RE.match(args.helper_ami):
        raise UsageError(f"--helper-ami {args.helper_ami!r}: must be an AMI id, ami- followed by 8 or 17 hex digits")
    for sg in args.helper_security_group:
        if not SG_ID_RE.match(sg):
            raise UsageError(f"--helper-security-group {sg!r}: must be a security group id, sg- and 8 or 17 hex digits")
    if args.attach_to and not INSTANCE_ID_RE.match(args.attach_to):
        raise UsageError(f"--attach-to {args.attach_to!r}: must be an EC2 instance id, i- followed by 8 or 17 hex digits")
    iid = _instance_id(ctx)
    snapshot = _resolve_snapshot(ec2, args.snapshot)
    prod = ec2ops.describe_instance(ec2, iid)
    bucket = args.bucket or ctx.config.dumps.bucket_name
    profile = ({"Name": args.helper_profile} if args.helper_profile
               else ({"Arn": prod["IamInstanceProfile"]["Arn"]} if prod.get("IamInstanceProfile") else None))
    plan = FilesPlan(
        instance_id=iid, availability_zone=prod["Placement"]["AvailabilityZone"], subnet_id=prod.get("SubnetId", ""),
        snapshot=snapshot, paths=paths, destination=destination, bucket=bucket,
        output_prefix=f"{RESTORES_PREFIX}/{run_id}", helper_id=args.attach_to,
        helper_ami=args.helper_ami or prod.get("ImageId"), helper_type=args.helper_type, helper_profile=profile,
        security_groups=list(args.helper_security_group), region=ctx.region)
    sid, az = snapshot["SnapshotId"], plan.availability_zone
    if snapshot.get("State") != "completed":
        plan.blockers.append(f"snapshot {sid} is {snapshot.get('State')}, not completed")
    plan.steps.append(f"create a temporary volume from {sid} ({snapshot.get('VolumeSize')} GiB) in {az}; "
                      f"wait until available")
    if args.attach_to:
        helper = ec2ops.describe_instance(ec2, args.attach_to)
        if args.attach_to == iid:
            plan.blockers.append(f"--attach-to {iid} is the production instance: use a separate helper")
        if helper["Placement"]["AvailabilityZone"] != az:
            plan.blockers.append(f"--attach-to {args.attach_to} is in {helper['Placement']['AvailabilityZone']}, "
                                 f"the volume must be in {az} (the production instance's AZ)")
        if helper["State"]["Name"] != "running":
            plan.blockers.append(f"--attach-to {args.attach_to} is {helper['State']['Name']}, not running")
        plan.steps.append(f"attach it to the existing helper {args.attach_to} at {ops.free_device_name(helper)}")
    else:
        if plan.helper_ami and ec2ops.describe_image(ec2, plan.helper_ami) is None:
            plan.blockers.append(f"helper AMI {plan.helper_ami} does not exist (any more) in {ctx.region}; give "
                                 f"--helper-ami (a current Amazon Linux or Ubuntu AMI with the SSM agent)")
        if not profile:
            plan.blockers.append(f"{iid} has no instance profile to lend the helper; give --helper-profile "
                                 f"(an instance profile with AmazonSSMManagedInstanceCore and s3:PutObject "
                                 f"on {bucket}/restores/*)")
        if not plan.subnet_id:
            plan.blockers.append(f"{iid} has no subnet (not in a VPC); use --attach-to")
        plan.steps.append(
            f"launch a temporary helper: {plan.helper_type} from {plan.helper_ami} in {plan.subnet_id} ({az}), "
            f"instance profile {next(iter(profile.values())) if profile else '?'}, "
            f"security groups {', '.join(plan.security_groups) or 'the VPC default'}; wait until running")
        plan.steps.append("attach the temporary volume to the helper at /dev/sdf")
    plan.steps += [
        "through SSM Run Command: find the volume's device, mount it read-only, pack the paths and encrypt "
        "them to a one-time key held only by this command",
        f"the SSM agent saves the output in s3://{bucket}/{plan.output_prefix}/; download, decrypt, check "
        f"sha256, unpack into {destination}/",
        "clean up (also after a failure): "
        + ("terminate the helper (its root volume goes with it), " if not args.attach_to else
           f"detach the temporary volume from {args.attach_to}, ")
        + f"delete the temporary volume, delete the output objects under s3://{bucket}/{plan.output_prefix}/; "
        "nothing else is deleted",
    ]
    return plan


@dataclass
class Created:
    """Everything this run created: the only things cleanup may delete."""
    volume_id: Optional[str] = None
    helper_id: Optional[str] = None
    attached_to: Optional[str] = None
    device: Optional[str] = None


def _cleanup(ec2, s3, plan: FilesPlan, created: Created, timeout: float, poll: float,
             progress: Callable[[str], None]) -> list[str]:
    """Delete what the run created; returns the commands for whatever could not be cleaned up."""
    r = f"--region {plan.region}"
    leftovers: list[str] = []
    if created.helper_id:
        try:
            progress(f"cleanup: terminating the helper {created.helper_id}")
            ops.terminate_instance(ec2, created.helper_id, timeout, poll)
            created.attached_to = None   # a terminated instance releases its volumes
        except AWS_FAILURES as e:
            progress(f"cleanup: {_message(e)}")
            leftovers.append(f"aws ec2 terminate-instances --instance-ids {created.helper_id} {r}")
    if created.volume_id:
        try:
            if created.attached_to:
                progress(f"cleanup: detaching {created.volume_id} from {created.attached_to}")
                ops.detach_volume(ec2, created.volume_id, created.attached_to, created.device)
            ops.wait_volume_available(ec2, created.volume_id, timeout, poll)
            progress(f"cleanup: deleting the temporary volume {created.volume_id}")
            ops.delete_volume(ec2, created.volume_id)
        except AWS_FAILURES as e:
            progress(f"cleanup: {_message(e)}")
            if created.attached_to:
                leftovers.append(f"aws ec2 detach-volume --volume-id {created.volume_id} "
                                 f"--instance-id {created.attached_to} {r}")
            leftovers.append(f"aws ec2 delete-volume --volume-id {created.volume_id} {r}")
    try:
        removed = ops.delete_prefix(s3, plan.bucket, plan.output_prefix + "/")
        if removed:
            progress(f"cleanup: deleted {removed} output object(s) under s3://{plan.bucket}/{plan.output_prefix}/")
    except AWS_FAILURES as e:
        # Not a leftover that fails the run: the output is ciphertext whose key is gone.
        progress(f"cleanup: warning: could not delete s3://{plan.bucket}/{plan.output_prefix}/ "
                 f"({_message(e)}); it holds only encrypted output of this run")
    return leftovers


def _unpack(archive: bytes, destination: Path) -> list[str]:
    """Unpack into a sibling temporary directory, then rename: the destination appears complete or not
    at all. The 'data' filter refuses absolute paths, '..', devices and links leaving the tree."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            names = tar.getnames()
            tar.extractall(staging, filter="data")
        if destination.exists():
            destination.rmdir()   # only ever an empty directory (checked in the plan)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return names


def run_restore_files(ctx: Context) -> int:
    args = ctx.args
    ec2 = ctx.client("ec2")
    run_id = _run_id()
    plan = build_files_plan(ec2, ctx, run_id)
    if not args.yes or plan.blockers:
        ctx.emit({"executed": False, "ok": not plan.blockers, "plan": plan.to_json()}, plan.render(False))
        ctx.log("restore-files-plan", plan=plan.to_json())
        return EXIT_FAILED if plan.blockers else EXIT_OK

    ssm, s3 = ctx.client("ssm"), ctx.client("s3")
    timeout, poll = args.timeout * 60, args.poll_seconds
    if not ctx.json:
        print(plan.render(True), flush=True)
    ctx.log("restore-files-started", run_id=run_id, plan=plan.to_json())
    started = time.monotonic()
    created = Created()
    tags = {ops.RESTORE_RUN_TAG: run_id, "quickport:created-by": "backupctl restore-files",
            ops.RESTORED_FROM_TAG: plan.snapshot["SnapshotId"]}
    names: list[str] = []
    error: Optional[BaseException] = None
    try:
        sid = plan.snapshot["SnapshotId"]
        ctx.progress(f"creating a temporary volume from {sid} in {plan.availability_zone}")
        created.volume_id = ops.create_volume_from_snapshot(
            ec2, sid, plan.availability_zone, {"VolumeType": "gp3"},
            {"Name": f"quickport-restore-files-{run_id}", **tags})
        if plan.helper_id:
            helper_id = plan.helper_id
        else:
            image = ec2ops.describe_image(ec2, plan.helper_ami)
            if image is None:
                raise CommandError(f"helper AMI {plan.helper_ami} not found (give --helper-ami)")
            ctx.progress(f"launching the temporary helper ({plan.helper_type}, {plan.helper_ami})")
            created.helper_id = helper_id = ops.run_helper_instance(
                ec2, image_id=plan.helper_ami, instance_type=plan.helper_type, subnet_id=plan.subnet_id,
                instance_profile=plan.helper_profile, security_group_ids=plan.security_groups,
                image=image,
                tags={"Name": f"quickport-restore-helper-{run_id}", **tags})
            ctx.log("restore-files-helper", run_id=run_id, helper_id=helper_id)
        ops.wait_volume_available(ec2, created.volume_id, timeout, poll)
        ops.wait_instance_running(ec2, helper_id, timeout, poll)
        device = ops.free_device_name(ec2ops.describe_instance(ec2, helper_id))
        ctx.progress(f"attaching {created.volume_id} to {helper_id} at {device}")
        ops.attach_volume(ec2, created.volume_id, helper_id, device)
        created.attached_to, created.device = helper_id, device
        ops.wait_volume_in_use(ec2, created.volume_id, timeout, poll)

        ctx.progress(f"mounting read-only and packing {len(plan.paths)} path(s) through SSM on {helper_id}")
        transport_key = ops.new_transport_key()
        script = ops.restore_files_script(created.volume_id, device, plan.paths, ops.public_pem(transport_key))
        command_id = ops.send_shell_script(
            ssm, helper_id, script, comment=f"quickport restore-files {run_id}",
            execution_timeout=max(60, int(timeout)), output_bucket=plan.bucket, output_prefix=plan.output_prefix,
            output_region=plan.region, ready_timeout=timeout, poll_seconds=poll, progress=ctx.progress)
        ops.wait_command(ssm, command_id, helper_id, timeout, poll)
        command_prefix = f"{plan.output_prefix}/{command_id}/"
        key = ops.command_output_key(s3, plan.bucket, command_prefix)
        if key is None:
            stderr_key = ops.command_output_key(s3, plan.bucket, command_prefix, "stderr")
            if stderr_key:
                raise CommandError(f"the helper's script failed: {ops.last_line(s3, plan.bucket, stderr_key)}")
            raise CommandError(f"the SSM agent wrote no output under s3://{plan.bucket}/{command_prefix}: "
                               f"the helper's instance profile needs s3:PutObject there")
        with tempfile.TemporaryDirectory(prefix="quickport-restore-") as tmp:
            local = os.path.join(tmp, "stdout")
            ops.download(s3, plan.bucket, key, local)
            archive = ops.decode_restore_output(Path(local).read_text(encoding="ascii", errors="replace"),
                                                transport_key)
        names = _unpack(archive, plan.destination)
    except (AWS_FAILURES + (tarfile.TarError, OSError, ValueError)) as e:
        error = e
    finally:
        leftovers = _cleanup(ec2, s3, plan, created, timeout, poll, ctx.progress)

    seconds = round(time.monotonic() - started, 1)
    result = {"executed": True, "runId": run_id, "ok": error is None and not leftovers,
              "restored": names, "to": str(plan.destination), "created": vars(created),
              "leftovers": leftovers, "seconds": seconds, "plan": plan.to_json()}
    if error is not None:
        result["error"] = _message(error)
    ctx.log("restore-files-finished", run_id=run_id, ok=result["ok"], error=result.get("error"),
            restored=len(names), leftovers=leftovers, seconds=seconds)
    text: list[str] = []
    if error is not None:
        text.append(f"RESTORE-FILES FAILED: {_message(error)}")
    else:
        text.append(f"Restored {len(names)} entries into {plan.destination}/ in {seconds:.1f} s:")
        text += [f"  {n}" for n in names[:50]] + ([f"  ... and {len(names) - 50} more"] if len(names) > 50 else [])
    if leftovers:
        text.append("Cleanup incomplete; run:")
        text += [f"  {c}" for c in leftovers]
    else:
        text.append("Cleanup done: the temporary volume"
                    + (" and helper instance" if created.helper_id else "") + " are gone.")
    ctx.emit(result, "\n".join(text))
    return EXIT_OK if result["ok"] else EXIT_FAILED
