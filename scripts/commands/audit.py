"""`backupctl audit`: the live account checked against the strategy (seed section 9)."""
from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from scripts import auditops, ec2ops
from scripts.common import EXIT_FAILED, EXIT_OK, Context, UsageError, add_common_options, utcnow

OK, FAIL, UNCHECKED = "ok", "FAIL", "could-not-check"
STRATEGY_MIN_RETENTION_DAYS = 7
DEFAULT_MAX_AGE_HOURS = 26   # a daily job plus two hours of slack for its start and completion windows

# Error codes meaning "the thing is not there": that is a finding (FAIL), not an inability to look.
NOT_FOUND_CODES = {"ResourceNotFoundException", "NoSuchBucket", "InvalidSnapshot.NotFound",
                   "InvalidVolume.NotFound", "InvalidInstanceID.NotFound"}
# A vault policy that denies these to everyone makes manual deletion impossible; shortening the
# lifecycle is deletion by another route.
VAULT_DENY_ACTIONS = ("backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle")
LOCKED_SNAPSHOT_STATES = ("governance", "compliance", "compliance-cooloff")

HELP = f"""\
Check the live account against the backup strategy, one line per check: ok, FAIL, or
could-not-check (with why: AccessDenied, an API the endpoint lacks, ...).

  recovery-point        the instance has a completed AWS Backup recovery point younger than
                        --max-age-hours (default {DEFAULT_MAX_AGE_HOURS}) in the vault
  backup-plan           the plan's rule into the vault keeps points >= 7 days, runs at least daily
  vault-lock            the vault is locked with MinRetentionDays >= the configured minimum
  vault-access-policy   the vault policy denies {', '.join(VAULT_DENY_ACTIONS)} to everyone
  recycle-bin           a Region-level EBS_SNAPSHOT retention rule keeps >= 7 days and is locked
  baseline <name>       each configured baseline snapshot exists, is completed and locked
  snapshot-block-public-access   the account blocks all public sharing of snapshots
  dump-fresh            the newest database dump (latest.json and its manifest) is younger than
                        --max-age-hours
  dump-bucket-versioning / dump-bucket-public-access / dump-bucket-encryption
                        the dump bucket is versioned, blocks all public access, encrypts with SSE-KMS

Exit 0 when every check is ok, 1 otherwise (could-not-check counts as not ok), 2 on bad usage."""


@dataclass
class Check:
    name: str
    status: str
    detail: str


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="check the live account against the strategy", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-age-hours", type=_positive_hours, default=DEFAULT_MAX_AGE_HOURS, metavar="HOURS",
                   help=f"newest recovery point and dump must be younger than this (default {DEFAULT_MAX_AGE_HOURS})")
    add_common_options(p)
    p.set_defaults(handler=run_audit)


def _positive_hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = -1
    if not 1 <= hours <= 24 * 365:
        raise argparse.ArgumentTypeError(f"--max-age-hours {value!r}: must be a number of hours from 1 to 8760")
    return hours


# --- helpers ------------------------------------------------------------------------------------

def _age(when: dt.datetime, now: dt.datetime) -> str:
    hours = (now - when).total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; an AWS error becomes could-not-check with the reason (not-found is a FAIL)."""
    from botocore.exceptions import ClientError
    try:
        result = fn()
    except auditops.AWS_ERRORS as e:
        code = e.response.get("Error", {}).get("Code", "") if isinstance(e, ClientError) else ""
        return [Check(name, FAIL if code in NOT_FOUND_CODES else UNCHECKED, auditops.error_reason(e))]
    except ValueError as e:  # an unreadable JSON document (vault policy, latest.json, manifest)
        return [Check(name, UNCHECKED, f"unreadable JSON: {e}")]
    return result if isinstance(result, list) else [result]


def _parse_time(value: Any) -> Optional[dt.datetime]:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return None


_CRON = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def runs_at_least_daily(expression: str) -> bool:
    """True when a schedule fires every day: cron with every day of month, month and weekday, or a
    rate of at most one day."""
    m = _CRON.match(expression or "")
    if m:
        _minutes, _hours, day_of_month, month, day_of_week, _year = m.groups()
        return day_of_month in ("*", "?") and month == "*" and day_of_week in ("*", "?")
    r = _RATE.match(expression or "")
    if r:
        minutes = int(r.group(1)) * {"minute": 1, "hour": 60, "day": 1440}[r.group(2).rstrip("s")]
        return 1 <= minutes <= 1440
    return False


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _denies_to_everyone(statement: dict[str, Any], action: str, vault_name: str) -> bool:
    """An unconditional Deny of the action to every principal on every recovery point of the vault."""
    if statement.get("Effect") != "Deny" or statement.get("Condition") or "NotAction" in statement \
            or "NotPrincipal" in statement:
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))):
        return False
    resources = [str(r) for r in _as_list(statement.get("Resource", []))]
    if not any(r == "*" or r.endswith(f":backup-vault:{vault_name}") or r.endswith(":recovery-point:*")
               for r in resources):
        return False
    return any(fnmatch.fnmatch(action.lower(), str(a).lower()) for a in _as_list(statement.get("Action", [])))


# --- the checks ---------------------------------------------------------------------------------

def check_recovery_point(ctx: Context, now: dt.datetime, max_age_h: float) -> Check:
    name, vault = "recovery-point", ctx.config.backup.vault_name
    arn = auditops.instance_arn(ctx.region, auditops.account_id(ctx.client("sts")), ctx.instance_id)
    points = [p for p in auditops.recovery_points(ctx.client("backup"), vault, arn)
              if p.get("Status") in ("COMPLETED", "AVAILABLE")]
    if not points:
        return Check(name, FAIL, f"no completed recovery point of {ctx.instance_id} in vault {vault}")
    newest = max(points, key=lambda p: p["CreationDate"])
    created = _parse_time(newest["CreationDate"])
    fresh = now - created <= dt.timedelta(hours=max_age_h)
    return Check(name, OK if fresh else FAIL,
                 f"newest {newest['RecoveryPointArn'].rsplit(':', 1)[-1]} is {_age(created, now)} old"
                 + ("" if fresh else f" (must be younger than {max_age_h:g} h)"))


def check_backup_plan(ctx: Context) -> Check:
    name, cfg = "backup-plan", ctx.config.backup
    plan = auditops.find_backup_plan(ctx.client("backup"), cfg.plan_name)
    if plan is None:
        return Check(name, FAIL, f"no backup plan named {cfg.plan_name}")
    rules = [r for r in plan["BackupPlan"].get("Rules", []) if r.get("TargetBackupVaultName") == cfg.vault_name]
    if not rules:
        return Check(name, FAIL, f"plan {cfg.plan_name} has no rule into vault {cfg.vault_name}")
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.retention_days)
    problems, seen = [], []
    for rule in rules:
        keep = rule.get("Lifecycle", {}).get("DeleteAfterDays")
        schedule = rule.get("ScheduleExpression", "")
        seen.append(f"rule {rule.get('RuleName')}: {schedule}, keeps " + (f"{keep} days" if keep else "forever"))
        if keep is not None and keep < need:
            problems.append(f"rule {rule.get('RuleName')} keeps recovery points {keep} days; the strategy requires at least {need}")
        if not runs_at_least_daily(schedule):
            problems.append(f"rule {rule.get('RuleName')} schedule {schedule!r} does not run every day")
    return Check(name, FAIL if problems else OK, "; ".join(problems or seen))


def check_vault_lock(ctx: Context) -> Check:
    name, cfg = "vault-lock", ctx.config.backup
    vault = auditops.describe_vault(ctx.client("backup"), cfg.vault_name)
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.vault_lock.min_retention_days)
    if not vault.get("Locked"):
        return Check(name, FAIL, f"vault {cfg.vault_name} has no vault lock")
    lo, hi = vault.get("MinRetentionDays"), vault.get("MaxRetentionDays")
    if lo is None or lo < need:
        return Check(name, FAIL, f"vault {cfg.vault_name} lock MinRetentionDays is {lo}; must be at least {need}")
    lock_date = _parse_time(vault.get("LockDate"))
    mode = ("compliance, immutable since" if lock_date and lock_date <= utcnow()
            else "compliance, changeable until" if lock_date else "governance")
    return Check(name, OK, f"locked, retention {lo}..{hi if hi is not None else '-'} days ({mode}"
                           + (f" {lock_date:%Y-%m-%d %H:%M}Z)" if lock_date else ")"))


def check_vault_access_policy(ctx: Context) -> Check:
    name, vault = "vault-access-policy", ctx.config.backup.vault_name
    policy = auditops.vault_access_policy(ctx.client("backup"), vault)
    if policy is None:
        return Check(name, FAIL, f"vault {vault} has no access policy; deletion of recovery points is not denied")
    statements = _as_list(policy.get("Statement", []))
    missing = [a for a in VAULT_DENY_ACTIONS if not any(_denies_to_everyone(s, a, vault) for s in statements)]
    if missing:
        return Check(name, FAIL, f"vault {vault} policy does not deny {', '.join(missing)} to every principal "
                                 "without conditions")
    return Check(name, OK, f"denies {', '.join(VAULT_DENY_ACTIONS)} to every principal")


def check_recycle_bin(ctx: Context) -> Check:
    name, cfg = "recycle-bin", ctx.config.recycle_bin
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.retention_days)
    rules = auditops.recycle_bin_rules(ctx.client("rbin"), "EBS_SNAPSHOT")
    if not rules:
        return Check(name, FAIL, "no Recycle Bin retention rule for EBS_SNAPSHOT")
    findings = []
    for rule in rules:
        period = rule.get("RetentionPeriod", {})
        days = period.get("RetentionPeriodValue", 0) if period.get("RetentionPeriodUnit") == "DAYS" else 0
        problems = []
        if rule.get("ResourceTags"):
            problems.append("tag-level (retains only tagged snapshots)")
        if days < need:
            problems.append(f"retains {days} days, needs at least {need}")
        if cfg.lock and rule.get("LockState") != "locked":
            problems.append(f"lock state {rule.get('LockState') or 'never locked'}, must be locked")
        if rule.get("Status") not in (None, "available"):
            problems.append(f"status {rule.get('Status')}")
        if not problems:
            return Check(name, OK, f"rule {rule.get('Identifier')}: Region-level, {days} days, "
                                   f"{rule.get('LockState') or 'unlocked'}")
        findings.append(f"rule {rule.get('Identifier')}: " + ", ".join(problems))
    return Check(name, FAIL, "; ".join(findings))


def check_baselines(ctx: Context, now: dt.datetime) -> list[Check]:
    baselines = ctx.config.baselines
    if not baselines:
        return [Check("baselines", OK, "no baseline snapshots configured")]
    ec2 = ctx.client("ec2")
    found = auditops.snapshots_by_name(ec2, [b.name for b in baselines])
    checks: dict[str, Check] = {}
    candidates: dict[str, dict[str, Any]] = {}
    for b in baselines:
        name = f"baseline {b.name}"
        snaps = [s for s in found[b.name] if s.get("State") != "error"]
        if not snaps:
            checks[b.name] = Check(name, FAIL, "no snapshot with this Name tag")
        elif len(snaps) > 1:
            checks[b.name] = Check(name, FAIL, f"{len(snaps)} snapshots carry this name: "
                                               + ", ".join(s["SnapshotId"] for s in snaps))
        elif snaps[0]["State"] != "completed":
            checks[b.name] = Check(name, FAIL, f"{snaps[0]['SnapshotId']} is {snaps[0]['State']}, not completed")
        elif snaps[0].get("VolumeId") != b.volume_id:
            checks[b.name] = Check(name, FAIL, f"{snaps[0]['SnapshotId']} is of {snaps[0].get('VolumeId')}, "
                                               f"not the configured {b.volume_id}")
        else:
            candidates[b.name] = snaps[0]
    if candidates:
        try:
            locks = ec2ops.describe_locks(ec2, [s["SnapshotId"] for s in candidates.values()])
        except auditops.AWS_ERRORS as e:  # the lock API failing must not hide the results above
            reason = auditops.error_reason(e)
            for b_name, snap in candidates.items():
                checks[b_name] = Check(f"baseline {b_name}", UNCHECKED,
                                       f"{snap['SnapshotId']} completed; lock state unknown: {reason}")
            locks = None
        for b_name, snap in candidates.items() if locks is not None else ():
            info = locks.get(snap["SnapshotId"])
            expires = _parse_time(info.get("LockExpiresOn")) if info else None
            state = info.get("LockState") if info else None
            if state in LOCKED_SNAPSHOT_STATES and (expires is None or expires > now):
                until = f" until {expires:%Y-%m-%d}" if expires else ""
                checks[b_name] = Check(f"baseline {b_name}", OK, f"{snap['SnapshotId']} completed, {state} lock{until}")
            else:
                checks[b_name] = Check(f"baseline {b_name}", FAIL,
                                       f"{snap['SnapshotId']} completed but not locked"
                                       + (f" (lock {state})" if state else ""))
    return [checks[b.name] for b in baselines]


def check_snapshot_block_public_access(ctx: Context) -> Check:
    state = auditops.snapshot_block_public_access_state(ctx.client("ec2"))
    ok = state == "block-all-sharing"
    return Check("snapshot-block-public-access", OK if ok else FAIL,
                 f"state {state}" + ("" if ok else "; must be block-all-sharing"))


def _manifest_end_time(manifest: dict[str, Any]) -> Optional[dt.datetime]:
    """When the dump finished, per scripts/quickport_dump.py's manifest ("finished_at", UTC ISO 8601)."""
    return _parse_time(manifest.get("finished_at"))


def _manifest_key_from_latest(latest: dict[str, Any]) -> Optional[str]:
    """latest.json names its manifest ("manifest"); older writers named only the dump ("key")."""
    if isinstance(latest.get("manifest"), str):
        return latest["manifest"]
    return latest["key"] + ".manifest.json" if isinstance(latest.get("key"), str) else None


def check_dump_fresh(ctx: Context, now: dt.datetime, max_age_h: float) -> Check:
    name, d = "dump-fresh", ctx.config.dumps
    s3 = ctx.client("s3")
    base = f"{d.prefix}/{d.database}/"
    source, end = None, None
    latest = auditops.read_json_object(s3, d.bucket_name, base + "latest.json")
    if latest is not None:
        manifest_key = _manifest_key_from_latest(latest)
        manifest = auditops.read_json_object(s3, d.bucket_name, manifest_key) if manifest_key else None
        end = _manifest_end_time(manifest) if manifest else None
        source = manifest_key
        if end is None:
            return Check(name, FAIL, f"latest.json points at {manifest_key or 'nothing'}, "
                                     "which is not a readable manifest with an end time")
    else:
        # No latest.json: the newest manifest still proves a good dump (it is written after the upload).
        newest = auditops.newest_object(s3, d.bucket_name, base, ".manifest.json")
        if newest is None:
            return Check(name, FAIL, f"no dump manifest under s3://{d.bucket_name}/{base}")
        source, end = newest["Key"], _parse_time(newest["LastModified"])
    fresh = now - end <= dt.timedelta(hours=max_age_h)
    return Check(name, OK if fresh else FAIL, f"{source} finished {_age(end, now)} ago"
                 + ("" if fresh else f" (must be younger than {max_age_h:g} h)"))


def check_bucket_versioning(ctx: Context) -> Check:
    bucket = ctx.config.dumps.bucket_name
    status = auditops.bucket_versioning(ctx.client("s3"), bucket)
    return Check("dump-bucket-versioning", OK if status == "Enabled" else FAIL,
                 f"versioning {status or 'never enabled'}" + ("" if status == "Enabled" else "; must be Enabled"))


PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def check_bucket_public_access(ctx: Context) -> Check:
    block = auditops.bucket_public_access_block(ctx.client("s3"), ctx.config.dumps.bucket_name)
    if block is None:
        return Check("dump-bucket-public-access", FAIL, "no public access block on the bucket")
    off = [f for f in PAB_FLAGS if not block.get(f)]
    return Check("dump-bucket-public-access", FAIL if off else OK,
                 f"{', '.join(off)} off; all four must be on" if off else "all four public access blocks on")


def check_bucket_encryption(ctx: Context) -> Check:
    rules = auditops.bucket_encryption_rules(ctx.client("s3"), ctx.config.dumps.bucket_name)
    algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
    kms = [r for r in rules if r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "").startswith("aws:kms")]
    if not kms:
        return Check("dump-bucket-encryption", FAIL,
                     f"default encryption {', '.join(a for a in algorithms if a) or 'none'}; must be SSE-KMS (aws:kms)")
    default = kms[0]["ApplyServerSideEncryptionByDefault"]
    key = default.get("KMSMasterKeyID") or "the AWS managed key"
    return Check("dump-bucket-encryption", OK, f"SSE-KMS with {key}"
                 + (", bucket key on" if kms[0].get("BucketKeyEnabled") else ""))


# --- the command --------------------------------------------------------------------------------

def collect_checks(ctx: Context) -> list[Check]:
    now = utcnow()
    max_age = ctx.args.max_age_hours
    plan: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("recovery-point", lambda: check_recovery_point(ctx, now, max_age)),
        ("backup-plan", lambda: check_backup_plan(ctx)),
        ("vault-lock", lambda: check_vault_lock(ctx)),
        ("vault-access-policy", lambda: check_vault_access_policy(ctx)),
        ("recycle-bin", lambda: check_recycle_bin(ctx)),
        ("baselines", lambda: check_baselines(ctx, now)),
        ("snapshot-block-public-access", lambda: check_snapshot_block_public_access(ctx)),
        ("dump-fresh", lambda: check_dump_fresh(ctx, now, max_age)),
        ("dump-bucket-versioning", lambda: check_bucket_versioning(ctx)),
        ("dump-bucket-public-access", lambda: check_bucket_public_access(ctx)),
        ("dump-bucket-encryption", lambda: check_bucket_encryption(ctx)),
    ]
    checks: list[Check] = []
    for name, fn in plan:
        if not ctx.json:
            ctx.progress(f"checking {name}")
        checks.extend(_guarded(name, fn))
    return checks


def render_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    status_width = max(len(c.status) for c in checks)
    return "\n".join(f"{c.status:<{status_width}}  {c.name:<{width}}  {c.detail}" for c in checks)


def run_audit(ctx: Context) -> int:
    ctx.config  # a bad stack config is a usage error before any AWS call
    if not ctx.instance_id:
        raise UsageError("--instance-id: required when the stack config has no instanceId")
    checks = collect_checks(ctx)
    ok = all(c.status == OK for c in checks)
    failed = [c.name for c in checks if c.status != OK]
    ctx.log("audit", instance=ctx.instance_id, region=ctx.region, ok=ok, not_ok=failed)
    summary = ("all checks ok" if ok else
               f"{len(failed)} of {len(checks)} checks not ok: {', '.join(failed)}")
    text = (f"Audit of {ctx.instance_id} in {ctx.region} against the backup strategy "
            f"({utcnow():%Y-%m-%d %H:%M}Z)\n\n{render_table(checks)}\n\n{summary}")
    ctx.emit({"checks": [asdict(c) for c in checks], "ok": ok}, text)
    return EXIT_OK if ok else EXIT_FAILED
