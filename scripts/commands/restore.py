"""`backupctl restore-instance` (section 6.1) and `backupctl restore-files` (section 6.2).

Both print the exact plan and change nothing without --yes. Arguments and rendering; the steps are
scripts/workflows/restore_instance.py and scripts/workflows/restore_files.py.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional

from components.tags import REPLACED_TAG
from scripts.aws.ec2 import tags_of
from scripts.commands.base import Context, add_common_options, number_in_range
from scripts.errors import EXIT_FAILED, EXIT_OK, UsageError
from scripts.times import iso_utc, utcnow
from scripts.workflows import restore_files as files_flow
from scripts.workflows import restore_instance as instance_flow

METHODS = instance_flow.METHODS
INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
AMI_ID_RE = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
SG_ID_RE = re.compile(r"^sg-(?:[0-9a-f]{8}|[0-9a-f]{17})$")

RESTORE_INSTANCE_HELP = """\
Section 6.1: restore the production instance's root volume from a snapshot (id or Name tag).
A Name resolves only among THIS instance's snapshots (tag Instance, and of its current or a former
root volume); several with that name: exit 2 listing their ids. A snapshot of another instance or
volume is refused (exit 2) unless --allow-foreign-snapshot, which the plan shows in capitals.

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
the production instance role has) or to --attach-to an existing helper, then through SSM Run Command
mounts it read-only, packs the paths and hands them back through the dump bucket (restores/<run>/),
and unpacks them into --to DIR. Afterwards (also when a step fails) it detaches and deletes the
temporary volume, terminates the helper it made and deletes its restores/<run>/ output; nothing that
existed before is deleted.
Without --yes: print the plan, change nothing. Exit 0 files restored, 1 a step failed, 2 bad input."""


_minutes = number_in_range("--timeout", 0, 24 * 60, "minutes", open_low=True)
_seconds = number_in_range("--poll-seconds", 0, 300, "seconds", open_low=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore-instance", help="section 6.1: restore the root volume from a snapshot",
                       description=RESTORE_INSTANCE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snapshot", required=True, metavar="SNAPSHOT", help="snapshot id (snap-...) or Name tag")
    p.add_argument("--method", choices=METHODS, default="replace-root",
                   help="replace-root (default: EC2 replace-root-volume task) or detach (the six manual steps)")
    p.add_argument("--yes", action="store_true", help="execute the plan (without it: print the plan only)")
    p.add_argument("--allow-foreign-snapshot", action="store_true",
                   help="accept a snapshot of ANOTHER instance or volume (never needed for this instance's own "
                        "snapshots; the plan then says so in capitals)")
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


# --- input checks (all before any AWS call, so bad input changes nothing) --------------------------------

def _instance_id(ctx: Context) -> str:
    iid = ctx.instance_id
    if not INSTANCE_ID_RE.match(iid):
        raise UsageError(f"--instance-id {iid!r}: must be an EC2 instance id, i- followed by 8 or 17 hex digits")
    return iid


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


def _files_request(ctx: Context) -> files_flow.FilesRequest:
    args = ctx.args
    paths = _validate_paths(args.path)
    destination = _destination(args.to)
    if args.helper_ami and not AMI_ID_RE.match(args.helper_ami):
        raise UsageError(f"--helper-ami {args.helper_ami!r}: must be an AMI id, ami- followed by 8 or 17 hex digits")
    for sg in args.helper_security_group:
        if not SG_ID_RE.match(sg):
            raise UsageError(f"--helper-security-group {sg!r}: must be a security group id, sg- and 8 or 17 hex digits")
    if args.attach_to and not INSTANCE_ID_RE.match(args.attach_to):
        raise UsageError(f"--attach-to {args.attach_to!r}: must be an EC2 instance id, i- followed by 8 or 17 "
                         f"hex digits")
    return files_flow.FilesRequest(
        instance_id=_instance_id(ctx), snapshot_ref=args.snapshot, paths=paths, destination=destination,
        bucket=args.bucket or ctx.config.dumps.bucket_name, attach_to=args.attach_to,
        helper_ami=args.helper_ami, helper_type=args.helper_type, helper_profile=args.helper_profile,
        security_groups=tuple(args.helper_security_group))


# --- rendering -------------------------------------------------------------------------------------------

def _plan_head(executing: bool, what: str) -> str:
    return ("Executing" if executing else "Plan (nothing changed; re-run with --yes to execute):") + f" {what}"


def _numbered(steps: list[str]) -> list[str]:
    return [f"  {i}. {s}" for i, s in enumerate(steps, 1)]


def render_instance_plan(plan: instance_flow.InstancePlan, executing: bool) -> str:
    snap, vol = plan.snapshot, plan.root_volume
    name = tags_of(snap).get("Name")
    eip = (f"{plan.elastic_ip['PublicIp']} ({plan.elastic_ip['AllocationId']})" if plan.elastic_ip
           else "none associated")
    lines = [f"!!! FOREIGN SNAPSHOT (--allow-foreign-snapshot): {plan.foreign}; production's root will be "
             f"built from it !!!"] if plan.foreign else []
    lines += [_plan_head(executing, f"restore-instance, method {plan.method}, region {plan.region}"),
             f"  instance        {plan.instance_id} ({plan.instance_state}) in {plan.availability_zone}",
             f"  root device     {plan.root_device}",
             f"  current root    {vol['VolumeId']} ({vol.get('VolumeType')}, {vol.get('Size')} GiB"
             f"{', encrypted' if vol.get('Encrypted') else ''})",
             f"  snapshot        {snap['SnapshotId']}{f' {name}' if name else ''} ({snap.get('State')}, "
             f"{snap.get('VolumeSize')} GiB, of {snap.get('VolumeId')}, started {iso_utc(snap.get('StartTime'))})",
             f"  Elastic IP      {eip}",
             "Steps:", *_numbered(plan.steps)]
    lines += [f"Warning: {w}" for w in plan.warnings]
    lines += [f"BLOCKED: {b}" for b in plan.blockers]
    return "\n".join(lines)


def render_instance_restore(run: instance_flow.InstanceRestore) -> str:
    plan = run.plan
    if run.error is not None:
        text = [f"RESTORE FAILED: {run.error}"]
        if run.error.next_steps:
            text += ["Do next, in this order:", *_numbered(run.error.next_steps)]
        return "\n".join(text)
    safety = run.safety_snapshot or {}
    return "\n".join([
        f"Restore of {plan.instance_id} from {plan.snapshot_id} ({plan.method}) "
        f"{'finished' if run.ok else 'finished with FAILED checks'}",
        *[f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}" for c in run.checks],
        f"  safety snapshot {safety.get('id')} ({plan.safety_snapshot_name})",
        f"  old root {plan.root_volume_id} kept, tagged {REPLACED_TAG}",
        f"  recovery time {run.seconds:.1f} s (restore step {run.restore_seconds:.1f} s, the rest is the "
        f"safety snapshot)",
    ])


def render_files_plan(plan: files_flow.FilesPlan, executing: bool) -> str:
    lines = [_plan_head(executing, f"restore-files from {plan.snapshot['SnapshotId']}, region {plan.region}"),
             f"  paths           {' '.join(plan.paths)}", f"  to              {plan.destination}/",
             "Steps:", *_numbered(plan.steps)]
    lines += [f"BLOCKED: {b}" for b in plan.blockers]
    return "\n".join(lines)


def render_files_restore(run: files_flow.FilesRestore) -> str:
    names = run.restored
    if run.error is not None:
        text = [f"RESTORE-FILES FAILED: {run.error}"]
    else:
        text = [f"Restored {len(names)} entries into {run.plan.destination}/ in {run.seconds:.1f} s:"]
        text += [f"  {n}" for n in names[:50]] + ([f"  ... and {len(names) - 50} more"] if len(names) > 50 else [])
    if run.leftovers:
        text += ["Cleanup incomplete; run:", *[f"  {c}" for c in run.leftovers]]
    else:
        text.append("Cleanup done: the temporary volume"
                    + (" and helper instance" if run.created.helper_id else "") + " are gone.")
    return "\n".join(text)


# --- handlers --------------------------------------------------------------------------------------------

def run_restore_instance(ctx: Context) -> int:
    args = ctx.args
    plan = instance_flow.build_instance_plan(ctx, _instance_id(ctx), args.method, args.snapshot,
                                             allow_foreign=args.allow_foreign_snapshot)
    if not args.yes or plan.blockers:
        ctx.emit({"executed": False, "ok": not plan.blockers, "plan": plan.to_json()},
                 render_instance_plan(plan, False))
        ctx.log("restore-instance-plan", plan=plan.to_json())
        return EXIT_FAILED if plan.blockers else EXIT_OK
    if not ctx.json:
        print(render_instance_plan(plan, True), flush=True)
    run = instance_flow.execute_instance_restore(ctx, plan, args.timeout * 60, args.poll_seconds)
    ctx.emit(run.to_json(), render_instance_restore(run))
    return EXIT_OK if run.ok else EXIT_FAILED


def run_restore_files(ctx: Context) -> int:
    request = _files_request(ctx)
    run_id = instance_flow.new_run_id()
    plan = files_flow.build_files_plan(ctx, request, run_id)
    if not ctx.args.yes or plan.blockers:
        ctx.emit({"executed": False, "ok": not plan.blockers, "plan": plan.to_json()},
                 render_files_plan(plan, False))
        ctx.log("restore-files-plan", plan=plan.to_json())
        return EXIT_FAILED if plan.blockers else EXIT_OK
    if not ctx.json:
        print(render_files_plan(plan, True), flush=True)
    run = files_flow.execute_files_restore(ctx, plan, run_id, ctx.args.timeout * 60, ctx.args.poll_seconds)
    ctx.emit(run.to_json(), render_files_restore(run))
    return EXIT_OK if run.ok else EXIT_FAILED
