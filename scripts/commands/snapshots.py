"""Pre-maintenance snapshots (seed sections 3.1, 5 and 8): snapshot, verify, guard, lock, unlock, list.

The workflow reads like the runbook: find the instance's current root volume, snapshot it under
prod-root-<UTC date>-before-<action> (or make an AMI for OS/kernel/architecture changes), wait until
it is complete, optionally lock it, then run the section 8 checklist. AWS calls are in scripts/ec2ops.py.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
from typing import Any, Optional

from botocore.exceptions import BotoCoreError, ClientError

from components.config import ConfigError, LOCK_MODES, parse_snapshot_name, snapshot_name, validate_action
from scripts import ec2ops
from scripts.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, Context, UsageError,
                            add_common_options, aws_error_message, utcnow)

DEFAULT_TIMEOUT_MINUTES = 60.0
MAX_TIMEOUT_MINUTES = 24 * 60
LOCK_DAYS_RANGE = (1, 36500)        # LockSnapshot LockDuration (RetentionPeriodRequestDays)
COOL_OFF_HOURS_RANGE = (1, 72)      # LockSnapshot CoolOffPeriod (CoolOffPeriodRequestHours)

# Section 5: these change what boots (OS, kernel, architecture). A root-volume snapshot cannot be
# launched on its own, so they get an AMI: a whole, launchable image. An action is one of them when
# one of its words is below, or it contains the words release-upgrade (do-release-upgrade).
AMI_ACTION_WORDS = ("os", "kernel", "distro", "architecture", "arch")
AMI_ACTION_PHRASES = ("release-upgrade",)

SNAPSHOT_ID_RE = re.compile(r"^snap-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
IMAGE_ID_RE = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


def needs_ami(action: str) -> bool:
    words = action.split("-")
    return any(w in AMI_ACTION_WORDS for w in words) or any(
        re.search(rf"(^|-){p}($|-)", action) for p in AMI_ACTION_PHRASES)


# --- argument parsing ------------------------------------------------------------------------------

SNAPSHOT_HELP = """\
Seed 3.1 + 8: snapshot the production instance's CURRENT root volume before maintenance, named
prod-root-<UTC date>-before-<ACTION>, tagged (Name, Reason, Instance, Volume, CreatedBy, ElasticIp,
Strategy=quickport-backup), wait until completed (progress lines), optionally lock it, then run the
section 8 checklist. Re-running the same action on the same day reuses that day's snapshot.

Seed 5: actions whose words include os, kernel, distro, architecture/arch (or release-upgrade) make an
AMI of the whole instance instead. The AMI is made WITHOUT a reboot unless you pass --reboot (crash-
consistent, like the snapshot; --reboot gives a file-system-consistent image but restarts production).

Exit: 0 snapshot completed and checklist passed; 1 snapshot failed, timed out or a checklist item
failed; 2 bad input (nothing was created)."""

VERIFY_HELP = """\
Seed 8: re-run the section 8 checklist on an existing snapshot (snap-... id or prod-root-... name;
an ami-... id checks the AMI and its root snapshot) against the instance's current state.
Exit: 0 all items passed; 1 an item failed or the snapshot does not exist; 2 malformed SNAPSHOT."""

GUARD_HELP = """\
Take and verify the pre-maintenance snapshot, then run COMMAND (the argv after --, run as given,
no shell) and return its exit code. COMMAND never runs if the snapshot or the checklist fails
(exit 1). Example: backupctl guard --action php-upgrade -- sudo apt-get install -y php8.3"""

LOCK_HELP = """\
Lock a snapshot (EBS snapshot lock) for --days days. governance: privileged IAM users can unlock or
shorten it. compliance: NOBODY can unlock, shorten it or delete the snapshot until it expires (only
within --cool-off-hours of locking); it needs --yes and without it only prints what it would do."""

UNLOCK_HELP = """\
Remove a governance lock (or a compliance lock still in its cooling-off period). A compliance lock
past its cooling-off period cannot be removed by anyone: refused with exit 1 and its expiry."""

LIST_HELP = """\
The strategy's snapshots (tag Strategy=quickport-backup or Name prod-root-*), newest first: name, id,
age, state, size, lock mode and lock expiry (DescribeLockedSnapshots; "unknown" and why if that call
is not available)."""


def _minutes(value: str) -> float:
    try:
        minutes = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timeout {value!r}: must be a number of minutes") from None
    if not 0 < minutes <= MAX_TIMEOUT_MINUTES:
        raise argparse.ArgumentTypeError(
            f"--timeout {value!r}: must be more than 0 and at most {MAX_TIMEOUT_MINUTES:g} minutes")
    return minutes


def _int_range(flag: str, lo: int, hi: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not lo <= number <= hi:
            raise argparse.ArgumentTypeError(f"{flag} {value!r}: must be a whole number from {lo} to {hi}")
        return number
    return parse


def _add_snapshot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--action", required=True,
                   help="what the maintenance is, lowercase kebab-case, e.g. php-upgrade (max 48 chars)")
    p.add_argument("--lock", choices=LOCK_MODES, help="lock the snapshot once completed")
    p.add_argument("--lock-days", type=_int_range("--lock-days", *LOCK_DAYS_RANGE),
                   help="lock duration in days (required with --lock)")
    p.add_argument("--cool-off-hours", type=_int_range("--cool-off-hours", *COOL_OFF_HOURS_RANGE),
                   help="compliance only: hours in which the lock can still be removed")
    p.add_argument("--yes", action="store_true", help="confirm a compliance lock (cannot be undone)")
    p.add_argument("--kind", choices=("snapshot", "ami"),
                   help="override the kind the action implies (needs --force)")
    p.add_argument("--force", action="store_true", help="allow --kind to override the action's kind")
    p.add_argument("--reboot", action="store_true",
                   help="AMI only: let EC2 reboot the instance for a file-system-consistent image")
    p.add_argument("--timeout", type=_minutes, default=DEFAULT_TIMEOUT_MINUTES,
                   help=f"minutes to wait for completion (default {DEFAULT_TIMEOUT_MINUTES:g})")


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("snapshot", help="pre-maintenance snapshot (or AMI) + section 8 checklist",
                       description=SNAPSHOT_HELP, formatter_class=fmt)
    _add_snapshot_options(p)
    add_common_options(p)
    p.set_defaults(handler=run_snapshot)

    p = sub.add_parser("verify", help="re-run the section 8 checklist on a snapshot",
                       description=VERIFY_HELP, formatter_class=fmt)
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snap-... id, prod-root-... name or ami-... id")
    add_common_options(p)
    p.set_defaults(handler=run_verify)

    p = sub.add_parser("guard", help="snapshot + checklist, then run a maintenance command",
                       description=GUARD_HELP, formatter_class=fmt)
    _add_snapshot_options(p)
    add_common_options(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the maintenance command, after --")
    p.set_defaults(handler=run_guard)

    p = sub.add_parser("lock", help="lock a snapshot (governance or compliance)",
                       description=LOCK_HELP, formatter_class=fmt)
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snap-... id or prod-root-... name")
    p.add_argument("--mode", required=True, choices=LOCK_MODES)
    p.add_argument("--days", required=True, type=_int_range("--days", *LOCK_DAYS_RANGE))
    p.add_argument("--cool-off-hours", type=_int_range("--cool-off-hours", *COOL_OFF_HOURS_RANGE),
                   help="compliance only: hours in which the lock can still be removed")
    p.add_argument("--yes", action="store_true", help="confirm a compliance lock (cannot be undone)")
    add_common_options(p)
    p.set_defaults(handler=run_lock)

    p = sub.add_parser("unlock", help="remove a governance lock", description=UNLOCK_HELP,
                       formatter_class=fmt)
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snap-... id or prod-root-... name")
    add_common_options(p)
    p.set_defaults(handler=run_unlock)

    p = sub.add_parser("list", help="the strategy's snapshots with their locks", description=LIST_HELP,
                       formatter_class=fmt)
    add_common_options(p)
    p.set_defaults(handler=run_list)


# --- input checks (all before any AWS call, so bad input changes nothing) ----------------------------

def _check_action(action: str) -> str:
    try:
        return validate_action(action, key="--action")
    except ConfigError as e:
        raise UsageError(str(e)) from None


def _check_lock_options(mode: Optional[str], days: Optional[int], cool_off: Optional[int], yes: bool,
                        days_flag: str) -> None:
    if mode is None:
        if days is not None or cool_off is not None:
            raise UsageError(f"{days_flag}/--cool-off-hours need --lock governance|compliance")
        return
    if days is None:
        raise UsageError(f"{days_flag} is required with a lock: a whole number from {LOCK_DAYS_RANGE[0]} "
                         f"to {LOCK_DAYS_RANGE[1]}")
    if cool_off is not None and mode != "compliance":
        raise UsageError(f"--cool-off-hours {cool_off}: only applies to mode compliance")
    if mode == "compliance" and not yes:
        raise UsageError("a compliance lock cannot be undone by anyone (no unlock, no shorter duration, "
                         "no deletion until it expires); add --yes to confirm")


def _resolve_kind(args) -> str:
    implied = "ami" if needs_ami(args.action) else "snapshot"
    if args.kind is None or args.kind == implied:
        kind = implied
    elif not args.force:
        if args.kind == "ami":
            raise UsageError(f"--kind ami: action {args.action!r} does not change the OS, kernel or "
                             f"architecture, so the strategy takes a snapshot; AMIs are never made "
                             f"casually: add --force if you really want one")
        raise UsageError(f"--kind snapshot: action {args.action!r} changes the OS, kernel or architecture, "
                         f"so seed section 5 requires an AMI; add --force to take only a snapshot")
    else:
        kind = args.kind
    if args.reboot and kind != "ami":
        raise UsageError("--reboot: only applies to an AMI (--kind ami)")
    return kind


def _check_snapshot_ref(ref: str, *, allow_image: bool = False) -> None:
    if SNAPSHOT_ID_RE.match(ref) or (allow_image and IMAGE_ID_RE.match(ref)):
        return
    try:
        parse_snapshot_name(ref, key="SNAPSHOT")
    except ConfigError as e:
        allowed = "snap-<8 or 17 hex digits>, " + ("ami-<8 or 17 hex digits>, " if allow_image else "")
        raise UsageError(f"{e}; or give a snapshot id: {allowed.rstrip(', ')}") from None


def _find_snapshot_or_fail(ctx: Context, ec2, ref: str) -> dict[str, Any]:
    snap = ec2ops.find_snapshot(ec2, ref)
    if snap is None:
        raise CommandError(f"snapshot {ref} not found in {ctx.region} (owned by this account)")
    return snap


# --- the snapshot workflow (shared by snapshot and guard) ---------------------------------------------

def _snapshot_summary(snap: dict[str, Any]) -> dict[str, Any]:
    return {"SnapshotId": snap["SnapshotId"], "Name": ec2ops.tags_of(snap).get("Name"),
            "VolumeId": snap.get("VolumeId"), "State": snap.get("State"),
            "StartTime": ec2ops.iso_utc(snap.get("StartTime")), "VolumeSize": snap.get("VolumeSize"),
            "Tags": ec2ops.tags_of(snap)}


def _recorder(ctx: Context):
    return lambda **details: ctx.log("snapshot-timestamp", **details)


def _take(ctx: Context) -> dict[str, Any]:
    """Snapshot (or AMI) + lock + checklist. Returns the result document; raises on failure."""
    args = ctx.args
    action = _check_action(args.action)
    _check_lock_options(args.lock, args.lock_days, args.cool_off_hours, args.yes, "--lock-days")
    kind = _resolve_kind(args)
    instance_id = ctx.instance_id
    ec2 = ctx.client("ec2")
    name = snapshot_name(utcnow().date(), action)

    ctx.progress(f"instance {instance_id}: reading its root volume and Elastic IP")
    instance = ec2ops.describe_instance(ec2, instance_id)
    root = ec2ops.root_volume_id(instance)
    address = ec2ops.elastic_ip(ec2, instance_id)
    tags = {"Reason": action, "Instance": instance_id, "Volume": root}
    if address:
        tags["ElasticIp"] = f"{address.get('PublicIp')} {address.get('AllocationId') or ''}".strip()

    doc: dict[str, Any] = {"name": name, "kind": kind, "instanceId": instance_id, "rootVolumeId": root}
    try:
        if kind == "ami":
            snapshots, image = _take_image(ctx, ec2, instance_id, name, tags, doc)
            doc["image"] = {"ImageId": image["ImageId"], "Name": image.get("Name"), "State": image.get("State")}
        else:
            snapshots = [_take_snapshot(ctx, ec2, instance, name, tags, doc)]
        if args.lock:
            doc["locks"] = [_lock(ctx, ec2, s["SnapshotId"], args.lock, args.lock_days, args.cool_off_hours)
                            for s in snapshots]
    except (CommandError, ClientError, BotoCoreError) as e:
        message = str(e) if isinstance(e, CommandError) else aws_error_message(e)
        ctx.log("snapshot-failed", name=name, instance_id=instance_id, volume_id=root, error=message)
        raise
    root_snapshot = snapshots[0]
    doc["snapshot"] = _snapshot_summary(root_snapshot)
    checklist = ec2ops.run_checklist(ec2, root_snapshot, instance_id, record=_recorder(ctx))
    if kind == "ami":
        checklist.items.insert(0, ec2ops.CheckItem("image available", doc["image"]["State"] == "available",
                                                   f"{doc['image']['ImageId']} is {doc['image']['State']}"))
    ctx.log("checklist", snapshot_id=root_snapshot["SnapshotId"], ok=checklist.ok,
            failed=[i.name for i in checklist.items if not i.ok])
    doc["checklist"] = checklist.to_json()
    doc["_checklist"] = checklist
    return doc


def _take_snapshot(ctx: Context, ec2, instance, name: str, tags: dict[str, str], doc) -> dict[str, Any]:
    root = tags["Volume"]
    existing = [s for s in ec2ops.snapshots_named(ec2, name)
                if s.get("State") != "error" and s.get("VolumeId") == root]
    if existing:
        snap = existing[0]
        doc["reused"] = True
        ctx.progress(f"reusing today's {name}: {snap['SnapshotId']} ({snap.get('State')}), no second snapshot")
        ctx.log("snapshot-reused", snapshot_id=snap["SnapshotId"], name=name, volume_id=root)
    else:
        doc["reused"] = False
        tags = {**tags, "CreatedBy": ec2ops.caller_arn(ctx.client("sts"))}
        snap = ec2ops.create_root_snapshot(ec2, instance, name, tags)
        ctx.progress(f"snapshot {snap['SnapshotId']} of {root} started as {name}")
        ctx.log("snapshot-created", snapshot_id=snap["SnapshotId"], name=name, volume_id=root,
                instance_id=tags["Instance"], created_by=tags["CreatedBy"])
    # Always re-read: CreateSnapshot's answer is not a describe, and a reused one may still be pending.
    return ec2ops.wait_snapshot_completed(ec2, snap["SnapshotId"], ctx.args.timeout * 60, ctx.progress)


def _take_image(ctx: Context, ec2, instance_id: str, name: str, tags: dict[str, str], doc):
    image = ec2ops.find_image(ec2, name)
    if image:
        doc["reused"] = True
        ctx.progress(f"reusing today's AMI {name}: {image['ImageId']} ({image.get('State')})")
        ctx.log("image-reused", image_id=image["ImageId"], name=name)
        image_id = image["ImageId"]
    else:
        doc["reused"] = False
        if not ctx.args.reboot:
            print("warning: making the AMI WITHOUT a reboot: it is crash-consistent (like a snapshot "
                  "of a running disk). Stop MariaDB and the GT06 server first, or pass --reboot.",
                  file=sys.stderr)
        tags = {**tags, "CreatedBy": ec2ops.caller_arn(ctx.client("sts"))}
        image_id = ec2ops.create_image(ec2, instance_id, name, tags, reboot=ctx.args.reboot)
        ctx.progress(f"AMI {image_id} of {instance_id} started as {name}"
                     + (" (instance reboots)" if ctx.args.reboot else ""))
        ctx.log("image-created", image_id=image_id, name=name, instance_id=instance_id,
                reboot=ctx.args.reboot, created_by=tags["CreatedBy"])
        doc["createdBy"] = tags["CreatedBy"]
    image = ec2ops.wait_image_available(ec2, image_id, ctx.args.timeout * 60, ctx.progress)
    snapshot_ids = ec2ops.image_snapshot_ids(image)
    root_id = ec2ops.image_root_snapshot_id(image)
    if not root_id:
        raise CommandError(f"image {image_id} has no EBS root snapshot")
    # The image's snapshots only exist now: tag them like a pre-maintenance snapshot (the checklist
    # reads Instance; the guard-rails policy protects Strategy-tagged snapshots). Only untagged ones:
    # the guard rails deny re-tagging a snapshot that already carries the Strategy tag (a re-run).
    root = ec2ops.describe_snapshot(ec2, root_id)
    if root is None:
        raise CommandError(f"root snapshot {root_id} of image {image_id} not found")
    if ec2ops.STRATEGY_TAG[0] not in ec2ops.tags_of(root):
        snap_tags = {**ec2ops.tags_of(image), "Name": name, "Image": image_id, **tags}
        ec2ops.tag_resources(ec2, snapshot_ids, snap_tags)
        root = ec2ops.describe_snapshot(ec2, root_id)
    return [root] + [{"SnapshotId": sid} for sid in snapshot_ids if sid != root_id], image


def _lock(ctx: Context, ec2, snapshot_id: str, mode: str, days: int, cool_off: Optional[int]) -> dict[str, Any]:
    ctx.progress(f"locking {snapshot_id} in {mode} mode for {days} days")
    result = ec2ops.lock_snapshot(ec2, snapshot_id, mode, days, cool_off)
    ctx.log("snapshot-locked", snapshot_id=snapshot_id, mode=mode, days=days, cool_off_hours=cool_off,
            lock_state=result.get("LockState"), expires=result.get("LockExpiresOn"))
    return _json_safe(result)


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (ec2ops.iso_utc(v) if isinstance(v, dt.datetime) else v) for k, v in d.items()
            if k != "ResponseMetadata"}


def _render_take(doc: dict[str, Any], checklist: ec2ops.Checklist) -> str:
    snap = doc["snapshot"]
    head = (f"AMI {doc['image']['ImageId']} ({doc['name']}), root snapshot {snap['SnapshotId']}"
            if doc["kind"] == "ami" else f"Snapshot {snap['SnapshotId']} ({doc['name']})")
    lines = [f"{head}{' [reused]' if doc.get('reused') else ''}",
             f"  instance {doc['instanceId']}, root volume {doc['rootVolumeId']}, started {snap['StartTime']}"]
    for lock in doc.get("locks", []):
        lines.append(f"  locked {lock.get('SnapshotId')}: {lock.get('LockState')} until {lock.get('LockExpiresOn')}")
    lines.append(checklist.render())
    return "\n".join(lines)


def run_snapshot(ctx: Context) -> int:
    doc = _take(ctx)
    checklist = doc.pop("_checklist")
    ctx.emit(doc, _render_take(doc, checklist))
    return EXIT_OK if checklist.ok else EXIT_FAILED


# --- verify ------------------------------------------------------------------------------------------

def run_verify(ctx: Context) -> int:
    ref = ctx.args.snapshot
    _check_snapshot_ref(ref, allow_image=True)
    instance_id = ctx.instance_id
    ec2 = ctx.client("ec2")
    image = None
    if ref.startswith("ami-"):
        image = ec2ops.describe_image(ec2, ref)
        if image is None:
            raise CommandError(f"image {ref} not found in {ctx.region}")
        root_id = ec2ops.image_root_snapshot_id(image)
        snap = ec2ops.describe_snapshot(ec2, root_id) if root_id else None
        if snap is None:
            raise CommandError(f"image {ref} has no root snapshot in {ctx.region}")
    else:
        snap = _find_snapshot_or_fail(ctx, ec2, ref)
    checklist = ec2ops.run_checklist(ec2, snap, instance_id, record=_recorder(ctx))
    if image is not None:
        checklist.items.insert(0, ec2ops.CheckItem("image available", image.get("State") == "available",
                                                   f"{image['ImageId']} is {image.get('State')}"))
    ctx.log("verify", snapshot_id=snap["SnapshotId"], ok=checklist.ok,
            failed=[i.name for i in checklist.items if not i.ok])
    doc = {"snapshot": _snapshot_summary(snap), "checklist": checklist.to_json()}
    if image is not None:
        doc["image"] = {"ImageId": image["ImageId"], "State": image.get("State")}
    ctx.emit(doc, checklist.render())
    return EXIT_OK if checklist.ok else EXIT_FAILED


# --- guard -------------------------------------------------------------------------------------------

def run_guard(ctx: Context) -> int:
    argv = list(ctx.args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("COMMAND: give the maintenance command after --, e.g. "
                         "backupctl guard --action php-upgrade -- sudo apt-get install -y php8.3")
    try:
        doc = _take(ctx)
    except CommandError as e:
        raise CommandError(f"{e}; COMMAND NOT RUN: {_quote(argv)}") from None
    checklist = doc.pop("_checklist")
    if not checklist.ok:
        doc["command"] = {"argv": argv, "run": False}
        ctx.log("guard-refused", argv=argv, snapshot_id=doc["snapshot"]["SnapshotId"])
        ctx.emit(doc, _render_take(doc, checklist) + f"\nCOMMAND NOT RUN: {_quote(argv)}")
        return EXIT_FAILED
    if not ctx.json:
        print(_render_take(doc, checklist), flush=True)
    ctx.progress(f"running: {_quote(argv)}")
    ctx.log("guard-command-started", argv=argv, snapshot_id=doc["snapshot"]["SnapshotId"])
    try:
        # No shell: the argv is run exactly as given. With --json the command's stdout goes to
        # stderr so that stdout stays one JSON document.
        sys.stdout.flush()
        sys.stderr.flush()
        completed = subprocess.run(argv, stdout=2 if ctx.json else None)  # 2: our stderr's fd
        code = completed.returncode if completed.returncode >= 0 else 128 - completed.returncode
    except FileNotFoundError:
        code = 127
        print(f"backupctl guard: {argv[0]}: command not found", file=sys.stderr)
    except PermissionError:
        code = 126
        print(f"backupctl guard: {argv[0]}: permission denied", file=sys.stderr)
    ctx.log("guard-command-finished", argv=argv, exit_code=code, snapshot_id=doc["snapshot"]["SnapshotId"])
    doc["command"] = {"argv": argv, "run": True, "exitCode": code}
    if ctx.json:
        ctx.emit(doc, "")
    else:
        print(f"command exited {code}; the pre-maintenance snapshot is {doc['snapshot']['SnapshotId']}")
    return code


def _quote(argv: list[str]) -> str:
    import shlex
    return " ".join(shlex.quote(a) for a in argv)


# --- lock / unlock -----------------------------------------------------------------------------------

def run_lock(ctx: Context) -> int:
    args = ctx.args
    _check_snapshot_ref(args.snapshot)
    if args.cool_off_hours is not None and args.mode != "compliance":
        raise UsageError(f"--cool-off-hours {args.cool_off_hours}: only applies to mode compliance")
    ec2 = ctx.client("ec2")
    snap = _find_snapshot_or_fail(ctx, ec2, args.snapshot)
    sid = snap["SnapshotId"]
    plan = {"SnapshotId": sid, "Name": ec2ops.tags_of(snap).get("Name"), "LockMode": args.mode,
            "LockDuration": args.days, "CoolOffPeriod": args.cool_off_hours}
    if args.mode == "compliance" and not args.yes:
        cool = (f"it can be removed only in the first {args.cool_off_hours} hours" if args.cool_off_hours
                else "with no cooling-off period, it is final immediately")
        ctx.emit({"plan": plan, "done": False, "reason": "compliance lock needs --yes"},
                 f"Would lock {sid} ({plan['Name']}) in COMPLIANCE mode for {args.days} days: nobody can "
                 f"unlock it, shorten it or delete the snapshot until it expires; {cool}.\n"
                 f"Nothing done. Re-run with --yes to lock it.")
        return EXIT_USAGE
    result = _lock(ctx, ec2, sid, args.mode, args.days, args.cool_off_hours)
    ctx.emit({"plan": plan, "done": True, "lock": result},
             f"Locked {sid} ({plan['Name']}): {result.get('LockState')} until {result.get('LockExpiresOn')}"
             + (f", cooling-off until {result.get('CoolOffPeriodExpiresOn')}"
                if result.get("CoolOffPeriodExpiresOn") else ""))
    return EXIT_OK


def run_unlock(ctx: Context) -> int:
    _check_snapshot_ref(ctx.args.snapshot)
    ec2 = ctx.client("ec2")
    snap = _find_snapshot_or_fail(ctx, ec2, ctx.args.snapshot)
    sid = snap["SnapshotId"]
    lock = ec2ops.describe_lock(ec2, sid)
    state = (lock or {}).get("LockState")
    if state in (None, "expired"):
        ctx.emit({"SnapshotId": sid, "LockState": state, "unlocked": False},
                 f"{sid} is not locked{' (its lock expired)' if state else ''}: nothing to do")
        return EXIT_OK
    if state == "compliance":
        expires = ec2ops.iso_utc(lock.get("LockExpiresOn"))
        ctx.log("unlock-refused", snapshot_id=sid, lock_state=state, expires=expires)
        raise CommandError(f"{sid} is locked in compliance mode until {expires} and its cooling-off period "
                           f"ended ({ec2ops.iso_utc(lock.get('CoolOffPeriodExpiresOn'))}): a compliance lock "
                           f"cannot be removed by anyone; it expires on its own")
    try:
        ec2ops.unlock_snapshot(ec2, sid)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("UnauthorizedOperation", "AccessDenied",
                                                        "AccessDeniedException"):
            raise CommandError(
                f"{aws_error_message(e)}; the guard-rails IAM policy denies ec2:UnlockSnapshot on snapshots "
                f"tagged Strategy=quickport-backup: unlocking one is a break-glass step for a role without "
                f"that policy") from None
        raise
    ctx.log("snapshot-unlocked", snapshot_id=sid, previous_lock_state=state)
    ctx.emit({"SnapshotId": sid, "LockState": state, "unlocked": True},
             f"Unlocked {sid} (was {state}); it can be deleted again")
    return EXIT_OK


# --- list --------------------------------------------------------------------------------------------

def _age(started: Optional[dt.datetime], now: dt.datetime) -> str:
    if not isinstance(started, dt.datetime):
        return "?"
    seconds = max(0, int((now - started).total_seconds()))
    days, rest = divmod(seconds, 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def run_list(ctx: Context) -> int:
    ec2 = ctx.client("ec2")
    snaps = ec2ops.strategy_snapshots(ec2)
    locks: dict[str, dict[str, Any]] = {}
    lock_error = None
    if snaps:
        try:
            locks = ec2ops.describe_locks(ec2, [s["SnapshotId"] for s in snaps])
        except (ClientError, BotoCoreError) as e:
            lock_error = f"DescribeLockedSnapshots failed: {aws_error_message(e)}"
        except Exception as e:  # e.g. an endpoint without the API answers with a non-XML 500
            lock_error = f"DescribeLockedSnapshots not available: {type(e).__name__}"
    now = utcnow()
    rows = []
    for s in snaps:
        lock = locks.get(s["SnapshotId"])
        rows.append({
            "Name": ec2ops.tags_of(s).get("Name", ""), "SnapshotId": s["SnapshotId"],
            "Age": _age(s.get("StartTime"), now), "StartTime": ec2ops.iso_utc(s.get("StartTime")),
            "State": s.get("State"), "SizeGiB": s.get("VolumeSize"),
            "LockState": "unknown" if lock_error else (lock or {}).get("LockState", "none"),
            "LockExpiresOn": None if lock_error else ec2ops.iso_utc((lock or {}).get("LockExpiresOn")),
        })
    ctx.log("list", count=len(rows), lock_error=lock_error)
    header = ("NAME", "ID", "AGE", "STATE", "SIZE", "LOCK", "LOCK EXPIRES")
    table = [header] + [(r["Name"] or "-", r["SnapshotId"], r["Age"], r["State"], f"{r['SizeGiB']} GiB",
                         r["LockState"], r["LockExpiresOn"] or "-") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    text = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)
    if not rows:
        text = f"no strategy snapshots in {ctx.region}"
    if lock_error:
        text += f"\nlock status unknown: {lock_error}"
    ctx.emit({"region": ctx.region, "snapshots": rows, "lockError": lock_error}, text)
    return EXIT_OK
