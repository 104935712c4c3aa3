"""`backupctl audit`: the live account checked against the strategy (seed section 9).

Each check returns ok, FAIL or could-not-check with one line of detail; an AWS error becomes
could-not-check with its reason, except "not found", which is a finding (FAIL).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from components.config import StackConfig
from components.schedules import runs_at_least_daily
from components.signals import alarm_specs, resource_name
from components.tags import RETAIN_UNTIL_TAG
from scripts.aws import backup as backupapi
from scripts.aws import ec2 as ec2api
from scripts.aws import monitoring as monitoringapi
from scripts.aws import rbin as rbinapi
from scripts.aws import s3 as s3api
from scripts.aws import sts as stsapi
from scripts.aws.errors import AWS_ERRORS, NOT_FOUND_CODES, describe, error_code
from scripts.times import iso_utc, parse_time
from scripts.workflows.base import Session
from scripts.workflows.binlog_index import IndexUnreadable, read_chain_index

OK, FAIL, UNCHECKED = "ok", "FAIL", "could-not-check"
STRATEGY_MIN_RETENTION_DAYS = 7
# A vault policy that denies these to everyone makes manual deletion impossible; shortening the
# lifecycle is deletion by another route; replacing the policy would lift both.
VAULT_DENY_ACTIONS = ("backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle",
                      "backup:PutBackupVaultAccessPolicy")
# (actions, resource suffix) the dump bucket policy denies to everyone: old versions, and itself.
BUCKET_POLICY_DENIES = ((("s3:DeleteObjectVersion",), "/*"), (("s3:PutBucketPolicy", "s3:DeleteBucketPolicy"), ""))
GUARD_RAILS_POLICY = "quickport-backup-operator-guard-rails"   # components/guard_rails.py's policy name
LOCKED_SNAPSHOT_STATES = ("governance", "compliance", "compliance-cooloff")
PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    data: Optional[dict[str, Any]] = field(default=None)   # machine-readable findings (--json), e.g. the PITR window


@dataclass
class AuditScope:
    """What every check reads: the session's clients, the stack config, the instance and the clock."""
    session: Session
    config: StackConfig
    instance_id: str
    now: dt.datetime
    max_age_hours: float

    @property
    def region(self) -> str:
        return self.session.region

    def client(self, service: str) -> Any:
        return self.session.client(service)


def _age(when: dt.datetime, now: dt.datetime) -> str:
    hours = (now - when).total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; an AWS error becomes could-not-check with the reason (not-found is a FAIL)."""
    try:
        result = fn()
    except AWS_ERRORS as e:
        return [Check(name, FAIL if error_code(e) in NOT_FOUND_CODES else UNCHECKED, describe(e, operation=True))]
    except IndexUnreadable as e:  # a binlog chain's head or page missing or not what the head says: a finding
        return [Check(name, FAIL, str(e))]
    except ValueError as e:  # an unreadable JSON document (vault policy, latest.json, manifest)
        return [Check(name, UNCHECKED, f"unreadable JSON: {e}")]
    return result if isinstance(result, list) else [result]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _denies_to_everyone(statement: dict[str, Any], action: str, vault_name: str) -> bool:
    """An unconditional Deny of the action to every principal on every recovery point of the vault."""
    resources = [str(r) for r in _as_list(statement.get("Resource", []))]
    return _denies_everyone(statement, (action,)) and any(
        r == "*" or r.endswith(f":backup-vault:{vault_name}") or r.endswith(":recovery-point:*") for r in resources)


def _denies_everyone(statement: dict[str, Any], actions: tuple[str, ...]) -> bool:
    """An unconditional Deny to every principal covering all `actions` (wildcards honoured)."""
    if statement.get("Effect") != "Deny" or statement.get("Condition") or "NotAction" in statement \
            or "NotPrincipal" in statement:
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))):
        return False
    patterns = [str(a).lower() for a in _as_list(statement.get("Action", []))]
    return all(any(fnmatch.fnmatch(a.lower(), p) for p in patterns) for a in actions)


# --- the checks ---------------------------------------------------------------------------------

def check_recovery_point(scope: AuditScope) -> Check:
    name, vault = "recovery-point", scope.config.backup.vault_name
    arn = stsapi.instance_arn(scope.region, stsapi.account_id(scope.client("sts")), scope.instance_id)
    points = [p for p in backupapi.recovery_points(scope.client("backup"), vault, arn)
              if p.get("Status") in ("COMPLETED", "AVAILABLE")]
    if not points:
        return Check(name, FAIL, f"no completed recovery point of {scope.instance_id} in vault {vault}")
    newest = max(points, key=lambda p: p["CreationDate"])
    created = parse_time(newest["CreationDate"])
    if created is None:
        return Check(name, UNCHECKED, f"recovery point {newest['RecoveryPointArn']} has no readable CreationDate")
    fresh = scope.now - created <= dt.timedelta(hours=scope.max_age_hours)
    return Check(name, OK if fresh else FAIL,
                 f"newest {newest['RecoveryPointArn'].rsplit(':', 1)[-1]} is {_age(created, scope.now)} old"
                 + ("" if fresh else f" (must be younger than {scope.max_age_hours:g} h)"))


def check_backup_plan(scope: AuditScope) -> Check:
    name, cfg = "backup-plan", scope.config.backup
    plan = backupapi.find_backup_plan(scope.client("backup"), cfg.plan_name)
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
            problems.append(f"rule {rule.get('RuleName')} keeps recovery points {keep} days; the strategy "
                            f"requires at least {need}")
        if not runs_at_least_daily(schedule):
            problems.append(f"rule {rule.get('RuleName')} schedule {schedule!r} does not run every day")
    return Check(name, FAIL if problems else OK, "; ".join(problems or seen))


def check_vault_lock(scope: AuditScope) -> Check:
    name, cfg = "vault-lock", scope.config.backup
    vault = backupapi.describe_vault(scope.client("backup"), cfg.vault_name)
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.vault_lock.min_retention_days)
    if not vault.get("Locked"):
        return Check(name, FAIL, f"vault {cfg.vault_name} has no vault lock")
    lo, hi = vault.get("MinRetentionDays"), vault.get("MaxRetentionDays")
    if lo is None or lo < need:
        return Check(name, FAIL, f"vault {cfg.vault_name} lock MinRetentionDays is {lo}; must be at least {need}")
    lock_date = parse_time(vault.get("LockDate"))
    mode = ("compliance, immutable since" if lock_date and lock_date <= scope.now
            else "compliance, changeable until" if lock_date else "governance")
    live_mode = "compliance" if lock_date else "governance"
    if live_mode != cfg.vault_lock.mode:
        return Check(name, FAIL, f"vault {cfg.vault_name} lock is {live_mode} mode"
                     + (f" (LockDate {lock_date:%Y-%m-%d %H:%M}Z)" if lock_date else " (no LockDate)")
                     + f"; backup.vaultLock.mode is {cfg.vault_lock.mode}")
    return Check(name, OK, f"locked, retention {lo}..{hi if hi is not None else '-'} days ({mode}"
                           + (f" {lock_date:%Y-%m-%d %H:%M}Z)" if lock_date else ")"))


def check_vault_access_policy(scope: AuditScope) -> Check:
    name, vault = "vault-access-policy", scope.config.backup.vault_name
    policy = backupapi.vault_access_policy(scope.client("backup"), vault)
    if policy is None:
        return Check(name, FAIL, f"vault {vault} has no access policy; deletion of recovery points is not denied")
    statements = _as_list(policy.get("Statement", []))
    missing = [a for a in VAULT_DENY_ACTIONS if not any(_denies_to_everyone(s, a, vault) for s in statements)]
    if missing:
        return Check(name, FAIL, f"vault {vault} policy does not deny {', '.join(missing)} to every principal "
                                 "without conditions")
    return Check(name, OK, f"denies {', '.join(VAULT_DENY_ACTIONS)} to every principal")


def _recycle_bin_check(scope: AuditScope, name: str, resource_type: str, what: str) -> Check:
    """A Region-level rule for `resource_type` keeping >= 7 days, locked when recycleBin.lock."""
    cfg = scope.config.recycle_bin
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.retention_days)
    rules = rbinapi.recycle_bin_rules(scope.client("rbin"), resource_type)
    if not rules:
        return Check(name, FAIL, f"no Recycle Bin retention rule for {resource_type}")
    findings = []
    for rule in rules:
        period = rule.get("RetentionPeriod", {})
        days = period.get("RetentionPeriodValue", 0) if period.get("RetentionPeriodUnit") == "DAYS" else 0
        problems = []
        if rule.get("ResourceTags"):
            problems.append(f"tag-level (retains only tagged {what})")
        if rule.get("ExcludeResourceTags"):
            problems.append(f"excludes tagged {what} (and cannot be locked)")
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


def check_recycle_bin(scope: AuditScope) -> Check:
    return _recycle_bin_check(scope, "recycle-bin", "EBS_SNAPSHOT", "snapshots")


def check_recycle_bin_images(scope: AuditScope) -> Check:
    return _recycle_bin_check(scope, "recycle-bin-images", "EC2_IMAGE", "AMIs")


def check_baselines(scope: AuditScope) -> list[Check]:
    baselines = scope.config.baselines
    if not baselines:
        return [Check("baselines", OK, "no baseline snapshots configured")]
    ec2 = scope.client("ec2")
    found = ec2api.snapshots_by_name(ec2, [b.name for b in baselines])
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
            locks = ec2api.describe_locks(ec2, [s["SnapshotId"] for s in candidates.values()])
        except AWS_ERRORS as e:  # the lock API failing must not hide the results above
            reason = describe(e, operation=True)
            for b_name, snap in candidates.items():
                checks[b_name] = Check(f"baseline {b_name}", UNCHECKED,
                                       f"{snap['SnapshotId']} completed; lock state unknown: {reason}")
            locks = None
        for b_name, snap in candidates.items() if locks is not None else ():
            info = (locks or {}).get(snap["SnapshotId"])
            expires = parse_time(info.get("LockExpiresOn")) if info else None
            state = info.get("LockState") if info else None
            if state in LOCKED_SNAPSHOT_STATES and (expires is None or expires > scope.now):
                until = f" until {expires:%Y-%m-%d}" if expires else ""
                checks[b_name] = Check(f"baseline {b_name}", OK, f"{snap['SnapshotId']} completed, {state} lock{until}")
            else:
                checks[b_name] = Check(f"baseline {b_name}", FAIL,
                                       f"{snap['SnapshotId']} completed but not locked"
                                       + (f" (lock {state})" if state else ""))
    return [checks[b.name] for b in baselines]


def check_expired_snapshots(scope: AuditScope) -> Check:
    """Lists the CLI snapshots past their RetainUntil tag (a cost, not a weakness: ok either way)."""
    expired = [s for s in ec2api.strategy_snapshots(scope.client("ec2"))
               if (until := parse_time(ec2api.tags_of(s).get(RETAIN_UNTIL_TAG))) is not None and until <= scope.now]
    if not expired:
        return Check("expired-snapshots", OK, "no strategy snapshot is past its RetainUntil")
    return Check("expired-snapshots", OK, f"{len(expired)} past RetainUntil (`backupctl prune` plans their deletion): "
                 + ", ".join(f"{s['SnapshotId']} {ec2api.tags_of(s).get('Name', '')} until "
                             f"{ec2api.tags_of(s)[RETAIN_UNTIL_TAG]}".strip() for s in expired))


def check_snapshot_block_public_access(scope: AuditScope) -> Check:
    state = ec2api.snapshot_block_public_access_state(scope.client("ec2"))
    ok = state == "block-all-sharing"
    return Check("snapshot-block-public-access", OK if ok else FAIL,
                 f"state {state}" + ("" if ok else "; must be block-all-sharing"))


def _manifest_end_time(manifest: dict[str, Any]) -> Optional[dt.datetime]:
    """When the dump finished, per scripts/agent/quickport_dump.py's manifest ("finished_at", UTC ISO 8601)."""
    return parse_time(manifest.get("finished_at"))


def _manifest_key_from_latest(latest: dict[str, Any]) -> Optional[str]:
    """latest.json names its manifest ("manifest"); older writers named only the dump ("key")."""
    if isinstance(latest.get("manifest"), str):
        return latest["manifest"]
    return latest["key"] + ".manifest.json" if isinstance(latest.get("key"), str) else None


# Clock skew allowed between the instance that wrote finished_at and this machine.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)


def _dump_object_problem(s3, bucket: str, manifest: dict[str, Any]) -> Optional[str]:
    """Why the manifest's dump object does not back it up (None: it exists with the manifest's size).
    A manifest is written after its object, but the object can be gone (a lifecycle rule, a hand) or
    another one (an overwrite): only the object restores."""
    key, size = manifest.get("key"), manifest.get("bytes")
    if not isinstance(key, str) or isinstance(size, bool) or not isinstance(size, int):
        return "names no dump object key and size (key, bytes)"
    actual = s3api.object_size(s3, bucket, key)
    if actual is None:
        return f"its dump object s3://{bucket}/{key} does not exist"
    if actual != size:
        return f"its dump object s3://{bucket}/{key} is {actual} bytes, the manifest says {size}"
    return None


def check_dump_fresh(scope: AuditScope) -> Check:
    name, d = "dump-fresh", scope.config.dumps
    s3 = scope.client("s3")
    base = f"{d.prefix}/{d.database}/"
    source, end = None, None
    latest = s3api.read_json_object(s3, d.bucket_name, base + "latest.json")
    if latest is not None:
        manifest_key = _manifest_key_from_latest(latest)
        manifest = s3api.read_json_object(s3, d.bucket_name, manifest_key) if manifest_key else None
        end = _manifest_end_time(manifest) if manifest else None
        source = manifest_key
        if end is None:
            return Check(name, FAIL, f"latest.json points at {manifest_key or 'nothing'}, "
                                     "which is not a readable manifest with an end time")
        assert manifest is not None   # end came from it
        missing = _dump_object_problem(s3, d.bucket_name, manifest)
        if missing:
            return Check(name, FAIL, f"{manifest_key}: {missing}")
    else:
        # No latest.json: the newest manifest still proves a good dump (it is written after the upload).
        newest = s3api.newest_object(s3, d.bucket_name, base, ".manifest.json")
        if newest is None:
            return Check(name, FAIL, f"no dump manifest under s3://{d.bucket_name}/{base}")
        source, end = newest["Key"], parse_time(newest["LastModified"])
        if end is None:
            return Check(name, UNCHECKED, f"{source} has no readable LastModified")
    if end - scope.now > FUTURE_TOLERANCE:
        return Check(name, FAIL, f"{source} says it finished {_age(scope.now, end)} in the future "
                                 f"({iso_utc(end)}); a clock or a manifest is wrong, so it proves no dump")
    fresh = scope.now - end <= dt.timedelta(hours=scope.max_age_hours)
    return Check(name, OK if fresh else FAIL, f"{source} finished {_age(end, scope.now)} ago"
                 + ("" if fresh else f" (must be younger than {scope.max_age_hours:g} h)"))


def check_bucket_versioning(scope: AuditScope) -> Check:
    bucket = scope.config.dumps.bucket_name
    status = s3api.bucket_versioning(scope.client("s3"), bucket)
    return Check("dump-bucket-versioning", OK if status == "Enabled" else FAIL,
                 f"versioning {status or 'never enabled'}" + ("" if status == "Enabled" else "; must be Enabled"))


def check_bucket_public_access(scope: AuditScope) -> Check:
    block = s3api.bucket_public_access_block(scope.client("s3"), scope.config.dumps.bucket_name)
    if block is None:
        return Check("dump-bucket-public-access", FAIL, "no public access block on the bucket")
    off = [f for f in PAB_FLAGS if not block.get(f)]
    return Check("dump-bucket-public-access", FAIL if off else OK,
                 f"{', '.join(off)} off; all four must be on" if off else "all four public access blocks on")


def check_bucket_encryption(scope: AuditScope) -> Check:
    rules = s3api.bucket_encryption_rules(scope.client("s3"), scope.config.dumps.bucket_name)
    algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
    kms = [r for r in rules
           if r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "").startswith("aws:kms")]
    if not kms:
        return Check("dump-bucket-encryption", FAIL,
                     f"default encryption {', '.join(a for a in algorithms if a) or 'none'}; must be SSE-KMS (aws:kms)")
    default = kms[0]["ApplyServerSideEncryptionByDefault"]
    key = default.get("KMSMasterKeyID") or "the AWS managed key"
    return Check("dump-bucket-encryption", OK, f"SSE-KMS with {key}"
                 + (", bucket key on" if kms[0].get("BucketKeyEnabled") else ""))


def check_alarms(scope: AuditScope) -> Check:
    """Every dead-man's-switch alarm exists, and none is in ALARM."""
    name, cfg = "alarms", scope.config
    prefix = resource_name(cfg.stack, "")
    interval = cfg.binlog.interval_seconds if cfg.binlog.enabled else None   # as BackupMonitoringArgs
    expected = {resource_name(cfg.stack, spec.key)
                for spec in alarm_specs(cfg.stack, cfg.dumps.database, cfg.backup.vault_name, interval)}
    alarms = {a["AlarmName"]: a for a in monitoringapi.alarms_named_with_prefix(scope.client("cloudwatch"), prefix)}
    missing = sorted(expected - set(alarms))
    firing = [a for a in alarms.values() if a.get("StateValue") == "ALARM"]
    quiet = sorted(n for n, a in alarms.items() if a.get("StateValue") == "INSUFFICIENT_DATA")
    problems = [f"{a['AlarmName']} in ALARM since {parse_time(a.get('StateUpdatedTimestamp')) or '?'}: "
                f"{a.get('StateReason', 'no reason given')}" for a in sorted(firing, key=lambda a: a["AlarmName"])]
    problems += [f"{n} does not exist" for n in missing]
    if problems:
        return Check(name, FAIL, "; ".join(problems))
    if quiet:
        return Check(name, UNCHECKED, f"{', '.join(quiet)} not evaluated yet (INSUFFICIENT_DATA)")
    return Check(name, OK, f"{len(alarms)} alarms, none in ALARM: {', '.join(sorted(alarms))}")


def check_bucket_object_lock(scope: AuditScope) -> Check:
    name, lock = "dump-bucket-object-lock", scope.config.dumps.object_lock
    bucket = scope.config.dumps.bucket_name
    config = s3api.object_lock_configuration(scope.client("s3"), bucket)
    if not config or config.get("ObjectLockEnabled") != "Enabled":
        return Check(name, FAIL, f"S3 Object Lock is off on {bucket}; dumps.objectLock needs it on "
                                 f"({lock.mode} for {lock.days} days): pulumi up turns it on")
    retention = config.get("Rule", {}).get("DefaultRetention", {})
    days = retention.get("Days") if retention.get("Days") is not None else (retention.get("Years") or 0) * 365
    mode = str(retention.get("Mode", "")).lower()
    if not retention:
        return Check(name, FAIL, f"Object Lock on {bucket} has no default retention; new versions are not locked")
    if mode != lock.mode or days < lock.days:
        return Check(name, FAIL, f"default retention {mode or '?'} {days} days; dumps.objectLock is "
                                 f"{lock.mode} {lock.days} days")
    return Check(name, OK, f"every new version locked: {mode}, {days} days")


def _tls_only(statement: dict[str, Any]) -> bool:
    """Deny of s3:* (or *) to everyone when aws:SecureTransport is false."""
    condition = statement.get("Condition") or {}
    insecure = any(op.lower() == "bool" and str(tests.get("aws:SecureTransport", "")).lower() == "false"
                   for op, tests in condition.items() if isinstance(tests, dict))
    return (statement.get("Effect") == "Deny" and insecure and "NotAction" not in statement
            and _denies_everyone({**statement, "Condition": None}, ("s3:GetObject", "s3:PutObject")))


def check_bucket_policy(scope: AuditScope) -> Check:
    name, bucket = "dump-bucket-policy", scope.config.dumps.bucket_name
    policy = s3api.bucket_policy(scope.client("s3"), bucket)
    if policy is None:
        return Check(name, FAIL, f"{bucket} has no bucket policy: plain HTTP, version deletion and policy "
                                 "changes are not denied")
    statements = _as_list(policy.get("Statement", []))
    missing = [] if any(_tls_only(s) for s in statements) else ["TLS-only (Deny s3:* when aws:SecureTransport "
                                                                 "is false)"]
    for actions, suffix in BUCKET_POLICY_DENIES:
        if not any(_denies_everyone(s, actions) and any(str(r) == "*" or str(r).endswith(bucket + suffix)
                                                        for r in _as_list(s.get("Resource", [])))
                   for s in statements):
            missing.append(f"Deny {', '.join(actions)} to everyone")
    if missing:
        return Check(name, FAIL, f"{bucket} policy lacks: " + "; ".join(missing))
    return Check(name, OK, "TLS only; DeleteObjectVersion and policy changes denied to everyone (root excepted by S3)")


def _rule_prefix(rule: dict[str, Any]) -> Optional[str]:
    """The rule's prefix ('' for the whole bucket), or None for tag/size filters."""
    flt = rule.get("Filter")
    if flt is None:
        return rule.get("Prefix", "")
    if set(flt) - {"Prefix"}:
        return None
    return flt.get("Prefix", "")


def check_bucket_lifecycle(scope: AuditScope) -> Check:
    name, d = "dump-bucket-lifecycle", scope.config.dumps
    rules = [r for r in s3api.bucket_lifecycle_rules(scope.client("s3"), d.bucket_name) if r.get("Status") == "Enabled"]
    problems = []
    if not any(_rule_prefix(r) == "" and r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation", 99) <= 7
               for r in rules):
        problems.append("no bucket-wide rule aborting incomplete multipart uploads within 7 days")
    for prefix in (d.prefix, d.files_prefix):
        mine = [r for r in rules if _rule_prefix(r) == f"{prefix}/" and "Expiration" in r]
        if not mine:
            problems.append(f"no rule expiring {prefix}/")
    floor = STRATEGY_MIN_RETENTION_DAYS
    for rule in rules:
        expire, old = rule.get("Expiration", {}), rule.get("NoncurrentVersionExpiration", {})
        rid = rule.get("ID", "?")
        if "Date" in expire:
            problems.append(f"rule {rid} expires objects on a fixed date {expire['Date']}")
        if expire.get("Days") is not None and expire["Days"] < floor:
            problems.append(f"rule {rid} expires objects after {expire['Days']} days (< {floor})")
        if old.get("NoncurrentDays") is not None and old["NoncurrentDays"] < floor:
            problems.append(f"rule {rid} expires old versions after {old['NoncurrentDays']} days (< {floor})")
        if _rule_prefix(rule) in (f"{d.prefix}/", f"{d.files_prefix}/") and expire.get("Days", d.retention_days) \
                < d.retention_days:
            problems.append(f"rule {rid} expires after {expire['Days']} days; dumps.retentionDays is "
                            f"{d.retention_days}")
    binlog = scope.config.binlog
    if binlog.enabled:
        problems += _binlog_lifecycle_problems(rules, f"{binlog.prefix}/", binlog.retention_days)
    if problems:
        return Check(name, FAIL, "; ".join(problems))
    return Check(name, OK, f"{len(rules)} rules: {d.prefix}/ and {d.files_prefix}/ expire after >= "
                           f"{d.retention_days} days, old versions >= {floor}, uploads aborted bucket-wide"
                           + (f"; {binlog.prefix}/ segments kept >= {binlog.retention_days} days" if binlog.enabled
                              else ""))


def _binlog_lifecycle_problems(rules: list[dict[str, Any]], prefix: str, need: int) -> list[str]:
    """The binlog prefix has its own expiring rule, and no rule that reaches it (bucket-wide, its own,
    narrower; tag filters only narrow) expires segments before binlog.retentionDays."""
    problems = [] if any(_rule_prefix(r) == prefix and "Expiration" in r for r in rules) else [
        f"no rule expiring {prefix} (binlog.retentionDays is {need})"]
    for rule in rules:
        flt = rule.get("Filter") or {}
        reach = flt.get("Prefix", flt.get("And", {}).get("Prefix", rule.get("Prefix", "")))
        expire = rule.get("Expiration", {}).get("Days")
        if (prefix.startswith(reach) or reach.startswith(prefix)) and expire is not None and expire < need:
            problems.append(f"rule {rule.get('ID', '?')} expires {prefix} segments after {expire} days; "
                            f"binlog.retentionDays is {need}")
    return problems


# --- point-in-time recovery: the shipper's chains (docs/pitr.md has the layout) ---------------------

BINLOG_STALE_INTERVALS = 4        # as the binlog-lag alarm: "behind by more than a few intervals"
BINLOG_STALE_SLACK_SECONDS = 60   # one upload and the clock skew between the instance and us
BINLOG_SKIPPED = "skipped: binlog.enabled is false"
_BINLOG_FILE = re.compile(r"^(?P<base>.+)\.(?P<seq>\d+)$")


@dataclass
class Chain:
    """One chain's index as scripts/workflows/binlog_index.py reads it: the head, `segments` every entry."""
    chain_id: str
    index: dict[str, Any]

    @property
    def server_id(self) -> Any:
        return self.index.get("server_id")

    @property
    def closed(self) -> Optional[dict[str, Any]]:
        closed = self.index.get("closed")
        return closed if isinstance(closed, dict) else None

    def segments(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Segments by (base name, sequence number)."""
        found = {}
        for segment in self.index.get("segments") or []:
            parsed = _binlog_seq(segment.get("file"))
            if parsed:
                found[parsed] = segment
        return found

    def holds(self, binlog: dict[str, Any]) -> bool:
        """Is the dump coordinate's file in this chain (shipped, or the file it confirmed last)?"""
        parsed = _binlog_seq(binlog.get("file"))
        if parsed is None or (binlog.get("server_id") is not None and self.server_id is not None
                              and binlog["server_id"] != self.server_id):
            return False
        return parsed in self.segments() or parsed == _binlog_seq(self.index.get("confirmed_file"))

    def reach(self, binlog: dict[str, Any]) -> Optional[dt.datetime]:
        """The latest restorable time replaying from the coordinate's file without a hole: the newest
        event of the unbroken run of segments, or confirmed_at when the run reaches the confirmed file."""
        start = _binlog_seq(binlog.get("file"))
        if start is None or not self.holds(binlog):
            return None
        base, seq = start
        segments = self.segments()
        latest: list[dt.datetime] = []
        while (base, seq) in segments:
            when = parse_time(segments[(base, seq)].get("last_event_at"))
            latest += [when] if when else []
            seq += 1
        confirmed = _binlog_seq(self.index.get("confirmed_file"))
        beyond = any(b == base and n > seq for b, n in segments)   # a hole, then more segments
        if confirmed and confirmed[0] == base and confirmed[1] <= seq and not beyond:
            when = parse_time(self.index.get("confirmed_at"))
            latest += [when] if when else []
        return max(latest) if latest else None


def _binlog_seq(name: Any) -> Optional[tuple[str, int]]:
    match = _BINLOG_FILE.match(name) if isinstance(name, str) else None
    return (match.group("base"), int(match.group("seq"))) if match else None


def _chains(scope: AuditScope) -> list[Chain]:
    """Every chain's index under the binlog prefix, oldest first (chain ids start with their UTC start); a
    chain without a head yet (its first segment is being shipped) is left out."""
    s3, bucket, prefix = scope.client("s3"), scope.config.dumps.bucket_name, scope.config.binlog.prefix
    chains = []
    for chain_id in s3api.binlog_chain_ids(s3, bucket, prefix):
        index = read_chain_index(s3, bucket, prefix, chain_id)
        if index is not None:
            chains.append(Chain(chain_id, index))
    return chains


def _gaps_since(scope: AuditScope, since: dt.datetime) -> list[dict[str, Any]]:
    """Gap records detected after `since` (their key starts with the detection time)."""
    s3, bucket, prefix = scope.client("s3"), scope.config.dumps.bucket_name, scope.config.binlog.prefix
    found = []
    for key in sorted(s3api.keys_under(s3, bucket, f"{prefix}/gaps/")):
        stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
        try:
            detected = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            detected = None   # an unexpected name: read it to be sure
        if detected is None or detected >= since:
            record = s3api.read_json_object(s3, bucket, key) or {}
            when = parse_time(record.get("detected_at")) or detected
            if when is None or when >= since:
                found.append({**record, "key": key})
    return found


def _latest_dump(scope: AuditScope) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    """The latest dump's manifest key and manifest (latest.json names it), or (None, None)."""
    s3, d = scope.client("s3"), scope.config.dumps
    latest = s3api.read_json_object(s3, d.bucket_name, f"{d.prefix}/{d.database}/latest.json")
    key = _manifest_key_from_latest(latest) if latest else None
    manifest = s3api.read_json_object(s3, d.bucket_name, key) if key else None
    return key, manifest


def _no_coordinates(manifest_key: str, manifest: dict[str, Any]) -> Optional[str]:
    """Why a dump cannot start a replay, or None when it records its binlog coordinates."""
    if "binlog" not in manifest:
        return (f"latest dump {manifest_key} records no binlog coordinates (written by a dump agent older than "
                f"the coordinates; update the SSM document): point-in-time replay has no starting point")
    binlog = manifest["binlog"]
    if not isinstance(binlog, dict) or not binlog.get("file"):
        return (f"latest dump {manifest_key} has binlog: null (log_bin was OFF on the server when it was "
                f"dumped): point-in-time replay has no starting point")
    return None


def _since(then: dt.datetime, now: dt.datetime) -> str:
    seconds = (now - then).total_seconds()
    if abs(seconds) < 600:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else _age(then, now)


def check_binlog_shipping(scope: AuditScope) -> Check:
    """The shipper confirmed the server's binlog end recently, no gap since the latest dump, and the
    latest dump's binlog file is in a live (unclosed) chain."""
    name, binlog = "binlog-shipping", scope.config.binlog
    if not binlog.enabled:
        return Check(name, OK, BINLOG_SKIPPED)
    bucket = scope.config.dumps.bucket_name
    threshold = BINLOG_STALE_INTERVALS * binlog.interval_seconds + BINLOG_STALE_SLACK_SECONDS
    rule = f"threshold {threshold} s = {BINLOG_STALE_INTERVALS} x {binlog.interval_seconds} s interval + " \
           f"{BINLOG_STALE_SLACK_SECONDS} s"
    chains = _chains(scope)
    if not chains:
        return Check(name, FAIL, f"no binlog chain under s3://{bucket}/{binlog.prefix}/: nothing was ever shipped "
                                 "(is the quickport-binlog service running on the instance?)")
    newest = chains[-1]
    problems = []
    confirmed = parse_time(newest.index.get("confirmed_at"))
    if newest.closed:
        problems.append(f"newest chain {newest.chain_id} was closed at {newest.closed.get('at')} "
                        f"({newest.closed.get('reason')}) and no chain follows it")
    elif confirmed is None:
        problems.append(f"newest chain {newest.chain_id} has no readable confirmed_at")
    elif (scope.now - confirmed).total_seconds() > threshold:
        problems.append(f"newest chain {newest.chain_id} last confirmed {_since(confirmed, scope.now)} ago "
                        f"({rule}): the shipper is behind or stopped")
    manifest_key, manifest = _latest_dump(scope)
    if manifest is None or manifest_key is None:
        d = scope.config.dumps
        problems.append(f"no latest dump under s3://{bucket}/{d.prefix}/{d.database}/ to replay the binlogs from")
    else:
        dumped = _manifest_end_time(manifest)
        for gap in _gaps_since(scope, dumped or scope.now - dt.timedelta(days=36500)):
            problems.append(f"gap recorded at {gap.get('detected_at', '?')} in chain {gap.get('chain', '?')} "
                            f"({gap.get('reason', '?')}, missing from {gap.get('missing_from', '?')}) after the latest "
                            f"dump: no restore past {gap.get('latest_restorable_at', '?')} until the next dump")
        why = _no_coordinates(manifest_key, manifest)
        if why:
            problems.append(why)
        elif not any(chain.holds(manifest["binlog"]) for chain in chains if not chain.closed):
            coordinate = manifest["binlog"]
            problems.append(f"latest dump {manifest_key} starts at {coordinate.get('file')}:"
                            f"{coordinate.get('position')} (server {coordinate.get('server_id')}), which no live "
                            f"chain holds")
    if problems:
        return Check(name, FAIL, "; ".join(problems))
    assert confirmed is not None and manifest is not None
    segments = newest.index.get("segments") or []
    return Check(name, OK, f"chain {newest.chain_id}: confirmed {_since(confirmed, scope.now)} ago ({rule}), "
                           f"{len(segments)} segments, last {segments[-1].get('file') if segments else 'none yet'}; "
                           f"latest dump starts at {manifest['binlog']['file']}:{manifest['binlog'].get('position')}, "
                           f"no gap since it")


def _dump_manifests(scope: AuditScope) -> list[tuple[str, dict[str, Any]]]:
    """Every good dump's manifest (a manifest is written only after its dump completed), oldest first."""
    s3, d = scope.client("s3"), scope.config.dumps
    found = []
    for key in sorted(k for k in s3api.keys_under(s3, d.bucket_name, f"{d.prefix}/{d.database}/")
                      if k.endswith(".manifest.json")):
        manifest = s3api.read_json_object(s3, d.bucket_name, key)
        if isinstance(manifest, dict) and _manifest_end_time(manifest):
            found.append((key, manifest))
    return found


def pitr_windows(dumps: list[tuple[str, dict[str, Any]]],
                 chains: list[Chain]) -> list[tuple[dt.datetime, dt.datetime]]:
    """The restorable periods: from each dump with binlog coordinates to the furthest an unbroken
    chain replays it, merged where they overlap."""
    spans = []
    for _, manifest in dumps:
        binlog, end = manifest.get("binlog"), _manifest_end_time(manifest)
        if not isinstance(binlog, dict) or end is None:
            continue
        reach = [r for r in (chain.reach(binlog) for chain in chains) if r is not None]
        if reach or any(chain.holds(binlog) for chain in chains):
            spans.append((end, max([end, *reach])))
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _z(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_pitr_window(scope: AuditScope) -> Check:
    """How far back, and how recently, a point-in-time restore can go."""
    name = "pitr-window"
    if not scope.config.binlog.enabled:
        return Check(name, OK, BINLOG_SKIPPED)
    dumps, chains = _dump_manifests(scope), _chains(scope)
    windows = pitr_windows(dumps, chains)
    if not windows:
        with_coordinates = sum(1 for _, m in dumps if isinstance(m.get("binlog"), dict))
        return Check(name, FAIL, f"no point-in-time window: {len(dumps)} dumps ({with_coordinates} with binlog "
                                 f"coordinates), {len(chains)} chains, and no chain holds a dump's binlog file",
                     data={"earliest": None, "latest": None, "windows": []})
    earliest, latest = windows[0][0], windows[-1][1]
    data = {"earliest": _z(earliest), "latest": _z(latest),
            "windows": [{"from": _z(a), "to": _z(b)} for a, b in windows]}
    holes = "" if len(windows) == 1 else f" in {len(windows)} windows (" + ", ".join(
        f"{_z(a)}..{_z(b)}" for a, b in windows) + ")"
    return Check(name, OK, f"restorable from {_z(earliest)} ({_age(earliest, scope.now)} ago) to {_z(latest)} "
                           f"({_since(latest, scope.now)} ago){holes}", data=data)


MIGRATE_TO_ENCRYPTED = (
    "migrate: snapshot the root (backupctl snapshot --action encrypt-root), make an encrypted copy "
    "(aws ec2 copy-snapshot --source-snapshot-id SNAP --source-region {region} --encrypted{key}), then "
    "backupctl restore-instance --snapshot COPY --method detach --yes; downtime: the instance is stopped "
    "while the new root volume is created and attached (minutes; the first reads after start are slower "
    "while the volume loads from the snapshot)")


def check_root_volume_encryption(scope: AuditScope) -> Check:
    name, cfg = "root-volume-encryption", scope.config
    ec2 = scope.client("ec2")
    volume_id = ec2api.root_volume_id(ec2api.describe_instance(ec2, scope.instance_id))
    volume = ec2api.describe_volume(ec2, volume_id)
    key_hint = "" if not cfg.ebs_encryption.customer_managed else " --kms-key-id <your customer managed key>"
    migrate = MIGRATE_TO_ENCRYPTED.format(region=scope.region, key=key_hint)
    if not volume.get("Encrypted"):
        return Check(name, FAIL, f"root volume {volume_id} is not encrypted, nor are its snapshots and recovery "
                                 f"points; {migrate}")
    key = volume.get("KmsKeyId")
    if cfg.backup.air_gapped_vault and (not key or monitoringapi.key_manager(scope.client("kms"), key) == "AWS"):
        return Check(name, FAIL, f"root volume {volume_id} is encrypted with the AWS managed aws/ebs key; AWS Backup "
                                 f"copies EC2 recovery points to the air-gapped vault only from a customer managed "
                                 f"key; {migrate}")
    return Check(name, OK, f"root volume {volume_id} encrypted" + (f" with {key}" if key else ""))


def check_ebs_encryption_by_default(scope: AuditScope) -> Check:
    name, wanted = "ebs-encryption-by-default", scope.config.ebs_encryption
    ec2 = scope.client("ec2")
    if not ec2api.ebs_encryption_by_default(ec2):
        return Check(name, FAIL, f"EBS encryption by default is off in {scope.region}: new volumes (and restored "
                                 "roots) can be unencrypted")
    if not wanted.customer_managed:
        return Check(name, OK, "on (AWS managed key)")
    key = ec2api.ebs_default_kms_key(ec2)
    if key.startswith("alias/aws/") or (wanted.default_kms_key != "stack" and key != wanted.default_kms_key):
        return Check(name, FAIL, f"on, but new volumes get {key}; ebsEncryption.defaultKmsKey is "
                                 f"{wanted.default_kms_key}")
    return Check(name, OK, f"on, default key {key}")


def check_air_gapped_vault(scope: AuditScope) -> Check:
    name, wanted = "air-gapped-vault", scope.config.backup.air_gapped_vault
    if wanted is None:
        return Check(name, OK, "not configured (backup.airGappedVault)")
    vault_name = f"{scope.config.backup.plan_name}-air-gapped"[:50]
    vault = backupapi.describe_vault(scope.client("backup"), vault_name)
    problems = []
    if vault.get("VaultType") != "LOGICALLY_AIR_GAPPED_BACKUP_VAULT":
        problems.append(f"type {vault.get('VaultType') or 'unknown'}, not LOGICALLY_AIR_GAPPED_BACKUP_VAULT")
    if vault.get("VaultState") not in (None, "AVAILABLE"):
        problems.append(f"state {vault.get('VaultState')}")
    if (vault.get("MinRetentionDays") or 0) < wanted.min_retention_days:
        problems.append(f"MinRetentionDays {vault.get('MinRetentionDays')} < {wanted.min_retention_days}")
    if problems:
        return Check(name, FAIL, f"vault {vault_name}: " + ", ".join(problems))
    return Check(name, OK, f"vault {vault_name}: air-gapped, retention {vault.get('MinRetentionDays')}.."
                           f"{vault.get('MaxRetentionDays')} days, {vault.get('NumberOfRecoveryPoints', 0)} points")


def check_guard_rails_attached(scope: AuditScope) -> Check:
    name, wanted = "guard-rails-attached", scope.config.guard_rails
    arn = stsapi.managed_policy_arn(scope.region, stsapi.account_id(scope.client("sts")), GUARD_RAILS_POLICY)
    live = monitoringapi.policy_entities(scope.client("iam"), arn)
    missing = [f"group {g}" for g in wanted.operator_groups if g not in live["groups"]]
    missing += [f"role {r}" for r in wanted.operator_roles if r not in live["roles"]]
    missing += [f"user {u}" for u in wanted.operator_users if u not in live["users"]]
    attached = [f"{kind[:-1]} {n}" for kind, names in live.items() for n in names]
    if missing or not attached:
        return Check(name, FAIL, f"{GUARD_RAILS_POLICY} is attached to " + (", ".join(attached) or "nobody")
                     + (f"; not to {', '.join(missing)}" if missing else ""))
    return Check(name, OK, f"{GUARD_RAILS_POLICY} attached to {', '.join(attached)}")


def check_api_call_trail(scope: AuditScope) -> Check:
    """API-call alerts exist only while a trail logs this region's management events."""
    name = "api-call-trail"
    trails = monitoringapi.logging_trails(scope.client("cloudtrail"))
    logging = [t for t in trails if t.get("Status", {}).get("IsLogging")]
    ours = resource_name(scope.config.stack, "management-events")
    if scope.config.monitoring.trail == "create" and not any(t.get("Name") == ours for t in logging):
        state = "stopped" if any(t.get("Name") == ours for t in trails) else "missing"
        return Check(name, FAIL, f"trail {ours} is {state}: API calls that weaken the backups raise no alert")
    if not logging:
        return Check(name, FAIL, "no trail is logging in this region: API calls that weaken the backups raise no "
                                 "alert (monitoring.trail: existing needs one)")
    return Check(name, OK, "logging: " + ", ".join(sorted(t["Name"] for t in logging)))


CHECKS: tuple[tuple[str, Callable[[AuditScope], Check | list[Check]]], ...] = (
    ("recovery-point", check_recovery_point),
    ("backup-plan", check_backup_plan),
    ("vault-lock", check_vault_lock),
    ("vault-access-policy", check_vault_access_policy),
    ("recycle-bin", check_recycle_bin),
    ("recycle-bin-images", check_recycle_bin_images),
    ("baselines", check_baselines),
    ("expired-snapshots", check_expired_snapshots),
    ("snapshot-block-public-access", check_snapshot_block_public_access),
    ("dump-fresh", check_dump_fresh),
    ("dump-bucket-versioning", check_bucket_versioning),
    ("dump-bucket-public-access", check_bucket_public_access),
    ("dump-bucket-encryption", check_bucket_encryption),
    ("dump-bucket-object-lock", check_bucket_object_lock),
    ("dump-bucket-policy", check_bucket_policy),
    ("dump-bucket-lifecycle", check_bucket_lifecycle),
    ("binlog-shipping", check_binlog_shipping),
    ("pitr-window", check_pitr_window),
    ("alarms", check_alarms),
    ("api-call-trail", check_api_call_trail),
    ("root-volume-encryption", check_root_volume_encryption),
    ("ebs-encryption-by-default", check_ebs_encryption_by_default),
    ("air-gapped-vault", check_air_gapped_vault),
    ("guard-rails-attached", check_guard_rails_attached),
)


def collect_checks(scope: AuditScope, progress: Optional[Callable[[str], None]] = None) -> list[Check]:
    checks: list[Check] = []
    for name, check in CHECKS:
        if progress:
            progress(f"checking {name}")
        checks.extend(_guarded(name, functools.partial(check, scope)))
    return checks
