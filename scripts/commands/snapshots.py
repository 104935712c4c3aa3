"""Pre-maintenance snapshots (seed sections 3.1, 5 and 8): snapshot, verify, guard, lock, unlock, list.

Arguments and rendering; the steps are scripts/workflows/snapshots.py.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from typing import Optional

from components.config import LOCK_MODES
from components.errors import ConfigError
from components.naming import parse_snapshot_name, validate_action
from scripts.commands.base import Context, add_common_options, number_in_range
from scripts.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, UsageError
from scripts.oplog import mask_argv, operation
from scripts.workflows import snapshots as flow
from scripts.workflows.checklist import Checklist
from scripts.workflows.guard import run_command

DEFAULT_TIMEOUT_MINUTES = 60.0
MAX_TIMEOUT_MINUTES = 24 * 60
LOCK_DAYS_RANGE = (1, 36500)        # LockSnapshot LockDuration (RetentionPeriodRequestDays)
COOL_OFF_HOURS_RANGE = (1, 72)      # LockSnapshot CoolOffPeriod (CoolOffPeriodRequestHours)
RETAIN_DAYS_RANGE = (1, 36500)

SNAPSHOT_ID_RE = re.compile(r"^snap-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
IMAGE_ID_RE = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


# --- argument parsing ------------------------------------------------------------------------------

SNAPSHOT_HELP = """\
Seed 3.1 + 8: snapshot the production instance's CURRENT root volume before maintenance, named
prod-root-<UTC date>-before-<ACTION>, tagged (Name, Reason, Instance, Volume, CreatedBy, ElasticIp,
RetainUntil, Strategy=quickport-backup), wait until completed (progress lines), optionally lock it,
then run the section 8 checklist. A same-day re-run reuses today's snapshot of this action only if it
is younger than --reuse-within (default 30 minutes); otherwise it takes a new one named
...-before-<ACTION>-2 (-3, ...). Two runs at once converge on one snapshot (a claim on the instance).
RetainUntil (now + --retain-days, default 30) is when `backupctl prune` may delete it.

Seed 5: actions naming the OS, a distribution or its version, a release/dist/system upgrade, the
kernel, grub, glibc or a CPU architecture (the vocabulary in docs/cli-snapshots.md, e.g.
ubuntu-22-to-24, arm64-migration, dnf-system-upgrade, kernel-upgrade) make an AMI of the whole
instance instead; the output says which kind and why, and --kind (with --force) overrides it. The
AMI is made WITHOUT a reboot unless you pass --reboot (crash-consistent, like the snapshot; --reboot
gives a file-system-consistent image but restarts production).

Exit: 0 snapshot completed and checklist passed; 1 snapshot failed, timed out or a checklist item
failed; 2 bad input (nothing was created)."""

VERIFY_HELP = """\
Seed 8: re-run the section 8 checklist on an existing snapshot (snap-... id or prod-root-... name;
an ami-... id checks the AMI and its root snapshot) against the instance's current state.
Exit: 0 all items passed; 1 an item failed or the snapshot does not exist; 2 malformed SNAPSHOT."""

GUARD_HELP = """\
Take and verify the pre-maintenance snapshot, then run COMMAND (the argv after --, run as given,
no shell) and return its exit code. COMMAND never runs if the snapshot or the checklist fails
(exit 1). Ctrl-C while COMMAND runs goes to COMMAND itself (it is in the foreground), and guard waits
for it to finish its clean-up however long that takes; a SIGTERM to guard is passed on to COMMAND.
Press Ctrl-C again within 3 s to send COMMAND SIGTERM, a third time for SIGKILL. Secret-looking
arguments (--password=..., -pX, *PASSWORD*=..., *SECRET*=..., *TOKEN*=...) are masked in the log.
Example: backupctl guard --action php-upgrade -- sudo apt-get install -y php8.3"""

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


def _minutes(flag: str = "--timeout"):
    return number_in_range(flag, 0, MAX_TIMEOUT_MINUTES, "minutes", open_low=True)


def _int_range(flag: str, lo: int, hi: int, unit: str):
    return number_in_range(flag, lo, hi, unit, integer=True)


def _add_snapshot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--action", required=True,
                   help="what the maintenance is, lowercase kebab-case, e.g. php-upgrade (max 48 chars)")
    p.add_argument("--lock", choices=LOCK_MODES, help="lock the snapshot once completed")
    p.add_argument("--lock-days", type=_int_range("--lock-days", *LOCK_DAYS_RANGE, "days"),
                   help="lock duration in days (required with --lock)")
    p.add_argument("--cool-off-hours", type=_int_range("--cool-off-hours", *COOL_OFF_HOURS_RANGE, "hours"),
                   help="compliance only: hours in which the lock can still be removed")
    p.add_argument("--yes", action="store_true", help="confirm a compliance lock (cannot be undone)")
    p.add_argument("--kind", choices=("snapshot", "ami"),
                   help="override the kind the action implies (needs --force)")
    p.add_argument("--force", action="store_true", help="allow --kind to override the action's kind")
    p.add_argument("--reboot", action="store_true",
                   help="AMI only: let EC2 reboot the instance for a file-system-consistent image")
    p.add_argument("--timeout", type=_minutes(), default=DEFAULT_TIMEOUT_MINUTES,
                   help=f"minutes to wait for completion (default {DEFAULT_TIMEOUT_MINUTES:g})")
    p.add_argument("--reuse-within", type=number_in_range("--reuse-within", 0, MAX_TIMEOUT_MINUTES, "minutes"),
                   default=flow.DEFAULT_REUSE_WITHIN_MINUTES, metavar="MIN",
                   help="reuse today's snapshot of this action only when it is younger than this "
                        f"(default {flow.DEFAULT_REUSE_WITHIN_MINUTES:g}; 0 never reuses); otherwise a new "
                        "one is named ...-before-<action>-2, -3, ...")
    p.add_argument("--retain-days", type=_int_range("--retain-days", *RETAIN_DAYS_RANGE, "days"), default=None,
                   metavar="DAYS", help="tag RetainUntil = now + DAYS; `backupctl prune` may delete it after "
                   f"that (default: the stack's snapshots.retainDays, else {flow.DEFAULT_RETAIN_DAYS})")


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
    p.add_argument("--days", required=True, type=_int_range("--days", *LOCK_DAYS_RANGE, "days"))
    p.add_argument("--cool-off-hours", type=_int_range("--cool-off-hours", *COOL_OFF_HOURS_RANGE, "hours"),
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


def _resolve_kind(args) -> flow.KindChoice:
    implied = flow.classify_action(args.action)
    if args.kind is None or args.kind == implied.kind:
        choice = implied
    elif not args.force:
        if args.kind == "ami":
            raise UsageError(f"--kind ami: action {args.action!r} takes a snapshot ({implied.reason}); AMIs "
                             f"are never made casually: add --force if you really want one")
        raise UsageError(f"--kind snapshot: action {args.action!r} changes what boots ({implied.reason}), so "
                         f"seed section 5 requires an AMI; add --force to take only a snapshot")
    else:
        choice = flow.KindChoice(args.kind, f"--kind {args.kind} --force overrides the vocabulary, which says "
                                            f"{implied.kind}: {implied.reason}")
    if args.reboot and choice.kind != "ami":
        raise UsageError("--reboot: only applies to an AMI (--kind ami)")
    return choice


def _retain_days(ctx: Context) -> int:
    if ctx.args.retain_days is not None:
        return int(ctx.args.retain_days)
    try:
        return ctx.config.snapshot_retain_days
    except UsageError:   # no stack file (every value given on the command line): the default
        return flow.DEFAULT_RETAIN_DAYS


def _check_snapshot_ref(ref: str, *, allow_image: bool = False) -> None:
    if SNAPSHOT_ID_RE.match(ref) or (allow_image and IMAGE_ID_RE.match(ref)):
        return
    try:
        parse_snapshot_name(ref, key="SNAPSHOT")
    except ConfigError as e:
        allowed = "snap-<8 or 17 hex digits>, " + ("ami-<8 or 17 hex digits>, " if allow_image else "")
        raise UsageError(f"{e}; or give a snapshot id: {allowed.rstrip(', ')}") from None


# --- rendering ---------------------------------------------------------------------------------------

def render_checklist(checklist: Checklist) -> str:
    title = f"Section 8 checklist for {checklist.snapshot_id}" + (
        f" ({checklist.snapshot_name})" if checklist.snapshot_name else "")
    lines = [title]
    lines += [f"  [{'ok' if i.ok else 'FAIL'}] {i.name}: {i.detail}" for i in checklist.items]
    lines.append("  checklist passed" if checklist.ok else "  checklist FAILED: do not start the maintenance")
    return "\n".join(lines)


def render_take(result: flow.TakeResult) -> str:
    snap = result.snapshot
    head = (f"AMI {result.image['ImageId']} ({result.name}), root snapshot {snap['SnapshotId']}"
            if result.image is not None else f"Snapshot {snap['SnapshotId']} ({result.name})")
    lines = [f"{head}{' [reused]' if result.reused else ''}",
             f"  instance {result.instance_id}, root volume {result.root_volume_id}, started {snap['StartTime']}",
             f"  kind {result.kind}: {result.kind_reason}"]
    if result.reuse_note:
        lines.append(f"  {result.reuse_note}")
    lines.append(f"  kept until {result.retain_until or 'unknown (no RetainUntil tag)'}")
    for lock in result.locks:
        lines.append(f"  locked {lock.get('SnapshotId')}: {lock.get('LockState')} until {lock.get('LockExpiresOn')}")
    lines.append(render_checklist(result.checklist))
    return "\n".join(lines)


def _quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


# --- handlers ----------------------------------------------------------------------------------------

def _take(ctx: Context) -> flow.TakeResult:
    """Check the snapshot options, then take the snapshot (or AMI), lock it and run section 8."""
    args = ctx.args
    action = _check_action(args.action)
    _check_lock_options(args.lock, args.lock_days, args.cool_off_hours, args.yes, "--lock-days")
    choice = _resolve_kind(args)
    lock = flow.LockRequest(args.lock, args.lock_days, args.cool_off_hours) if args.lock else None
    request = flow.TakeRequest(action=action, kind=choice.kind, kind_reason=choice.reason, instance_id=ctx.instance_id,
                               timeout_seconds=args.timeout * 60, lock=lock, reboot=args.reboot,
                               reuse_within_minutes=args.reuse_within, retain_days=_retain_days(ctx))
    ctx.progress(f"kind: {choice.kind} ({choice.reason})")
    return flow.take(ctx, request)


def run_snapshot(ctx: Context) -> int:
    result = _take(ctx)
    ctx.emit(result.to_json(), render_take(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def run_verify(ctx: Context) -> int:
    _check_snapshot_ref(ctx.args.snapshot, allow_image=True)
    result = flow.verify(ctx, ctx.args.snapshot, ctx.instance_id)
    ctx.emit(result.to_json(), render_checklist(result.checklist))
    return EXIT_OK if result.checklist.ok else EXIT_FAILED


def run_guard(ctx: Context) -> int:
    argv = list(ctx.args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("COMMAND: give the maintenance command after --, e.g. "
                         "backupctl guard --action php-upgrade -- sudo apt-get install -y php8.3")
    try:
        result = _take(ctx)
    except CommandError as e:
        raise CommandError(f"{e}; COMMAND NOT RUN: {_quote(mask_argv(argv))}") from None
    doc = result.to_json()
    if not result.ok:
        doc["command"] = {"argv": mask_argv(argv), "run": False}
        ctx.log("guard-refused", argv=mask_argv(argv), snapshot_id=result.snapshot_id)
        ctx.emit(doc, render_take(result) + f"\nCOMMAND NOT RUN: {_quote(mask_argv(argv))}")
        return EXIT_FAILED
    if not ctx.json:
        print(render_take(result), flush=True)
    shown = mask_argv(argv)
    ctx.progress(f"running: {_quote(shown)}")
    with operation(ctx.log, "guard-command", argv=shown, snapshot_id=result.snapshot_id) as op:
        outcome = run_command(argv, stdout_to_stderr=ctx.json, say=ctx.progress)
        if outcome.problem:
            print(f"backupctl guard: {outcome.problem}", file=sys.stderr)
        code = outcome.exit_code
        op.end("interrupted" if outcome.signals else "finished", exit_code=code,
               signals=outcome.signals, sent=outcome.sent)
    doc["command"] = {"argv": shown, "run": True, "exitCode": code}
    if outcome.signals:
        doc["command"]["signals"] = outcome.signals
    if ctx.json:
        ctx.emit(doc, "")
    else:
        print(f"command exited {code}; the pre-maintenance snapshot is {result.snapshot_id}")
    return code


def run_lock(ctx: Context) -> int:
    args = ctx.args
    _check_snapshot_ref(args.snapshot)
    if args.cool_off_hours is not None and args.mode != "compliance":
        raise UsageError(f"--cool-off-hours {args.cool_off_hours}: only applies to mode compliance")
    ec2 = ctx.client("ec2")
    snap = flow.find_snapshot_or_fail(ctx, ec2, args.snapshot, ctx.instance_id)
    sid = snap["SnapshotId"]
    name = flow.snapshot_summary(snap)["Name"]
    plan = {"SnapshotId": sid, "Name": name, "LockMode": args.mode,
            "LockDuration": args.days, "CoolOffPeriod": args.cool_off_hours}
    if args.mode == "compliance" and not args.yes:
        cool = (f"it can be removed only in the first {args.cool_off_hours} hours" if args.cool_off_hours
                else "with no cooling-off period, it is final immediately")
        ctx.emit({"plan": plan, "done": False, "reason": "compliance lock needs --yes"},
                 f"Would lock {sid} ({name}) in COMPLIANCE mode for {args.days} days: nobody can "
                 f"unlock it, shorten it or delete the snapshot until it expires; {cool}.\n"
                 f"Nothing done. Re-run with --yes to lock it.")
        return EXIT_USAGE
    result = flow.lock(ctx, ec2, sid, flow.LockRequest(args.mode, args.days, args.cool_off_hours))
    ctx.emit({"plan": plan, "done": True, "lock": result},
             f"Locked {sid} ({name}): {result.get('LockState')} until {result.get('LockExpiresOn')}"
             + (f", cooling-off until {result.get('CoolOffPeriodExpiresOn')}"
                if result.get("CoolOffPeriodExpiresOn") else ""))
    return EXIT_OK


def run_unlock(ctx: Context) -> int:
    _check_snapshot_ref(ctx.args.snapshot)
    result = flow.unlock(ctx, ctx.args.snapshot, ctx.instance_id)
    doc = {"SnapshotId": result.snapshot_id, "LockState": result.lock_state, "unlocked": result.unlocked}
    if not result.unlocked:
        ctx.emit(doc, f"{result.snapshot_id} is not locked{' (its lock expired)' if result.lock_state else ''}: "
                      f"nothing to do")
    else:
        ctx.emit(doc, f"Unlocked {result.snapshot_id} (was {result.lock_state}); it can be deleted again")
    return EXIT_OK


def run_list(ctx: Context) -> int:
    listing = flow.list_snapshots(ctx)
    rows = listing.rows
    header = ("NAME", "ID", "AGE", "STATE", "SIZE", "LOCK", "LOCK EXPIRES")
    table = [header] + [(r["Name"] or "-", r["SnapshotId"], r["Age"], r["State"], f"{r['SizeGiB']} GiB",
                         r["LockState"], r["LockExpiresOn"] or "-") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    text = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
    if not rows:
        text = f"no strategy snapshots in {ctx.region}"
    if listing.lock_error:
        text += f"\nlock status unknown: {listing.lock_error}"
    ctx.emit({"region": ctx.region, "snapshots": rows, "lockError": listing.lock_error}, text)
    return EXIT_OK
